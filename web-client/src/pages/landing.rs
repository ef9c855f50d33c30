//! `/`: what attractio is, a button that opens a fresh room, a box to go
//! to a named room, and the rooms active right now (`GET /api/rooms`).

use gloo_net::http::Request;
use gloo_timers::callback::Interval;
use protocol::RoomName;
use serde::Deserialize;
use web_sys::HtmlInputElement;
use yew::prelude::*;

use crate::names::random_room_name;
use crate::route::room_href;
use crate::text::fridges_kept;
use crate::web;

/// How often the active-room list refreshes.
const REFRESH_MS: u32 = 5_000;

/// The body of `GET /api/rooms`. `active`, the rooms by name, only comes
/// when the server's operator lets rooms be listed (`--list-rooms`);
/// otherwise the totals.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
struct Rooms {
    #[serde(default)]
    active: Option<Vec<ActiveRoom>>,
    #[serde(default)]
    rooms: u64,
    #[serde(default)]
    members: u64,
    #[serde(default)]
    stored: u64,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
struct ActiveRoom {
    room: String,
    #[serde(default)]
    members: u64,
}

/// The rooms list as the page knows it.
#[derive(Clone, Debug, PartialEq)]
enum Listing {
    Loading,
    Loaded(Rooms),
    Failed,
}

async fn fetch_rooms() -> Listing {
    let Ok(resp) = Request::get("/api/rooms").send().await else {
        return Listing::Failed;
    };
    if !resp.ok() {
        return Listing::Failed;
    }
    match resp.json::<Rooms>().await {
        Ok(rooms) => Listing::Loaded(rooms),
        Err(_) => Listing::Failed,
    }
}

#[component]
pub fn Landing() -> Html {
    let listing = use_state(|| Listing::Loading);
    {
        let listing = listing.clone();
        use_effect_with((), move |_| {
            let load = move || {
                let listing = listing.clone();
                wasm_bindgen_futures::spawn_local(async move {
                    listing.set(fetch_rooms().await);
                });
            };
            load();
            let timer = Interval::new(REFRESH_MS, load);
            move || drop(timer)
        });
    }

    let new_room = Callback::from(|_: MouseEvent| {
        let room = web::with_rng(random_room_name);
        web::go_to_room(&room);
    });

    html! {
        <div class="landing">
            <header class="hero">
                <h1 class="brand-big">{ "attractio" }</h1>
                <p class="tagline">{ "Magnetic poetry on a shared fridge." }</p>
                <p class="pitch">
                    { "Open a room, tip out a box of words, and send the link to friends. \
                       Everyone drags the same magnets in real time: you see their words \
                       glide, who is holding what, and you can chat while you write." }
                </p>
                <button id="new-room" class="button primary big" onclick={new_room}>
                    { "Start a new fridge" }
                </button>
                <JoinForm />
            </header>
            <section class="rooms card">
                <h2>{ "Fridges in use right now" }</h2>
                <ActiveRooms listing={(*listing).clone()} />
            </section>
            <footer class="footnote">
                { "Each fridge lives at its own address — share it and people join you." }
            </footer>
        </div>
    }
}

/// "Go to a room by name".
#[component]
fn JoinForm() -> Html {
    let input = use_node_ref();
    let error = use_state(|| None::<String>);
    let onsubmit = {
        let (input, error) = (input.clone(), error.clone());
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let Some(el) = input.cast::<HtmlInputElement>() else {
                return;
            };
            let name = el.value().trim().to_ascii_lowercase().replace(' ', "-");
            match RoomName::new(&name) {
                Ok(room) => web::go_to_room(&room),
                Err(e) => error.set(Some(format!("A room name {e}."))),
            }
        })
    };
    html! {
        <form class="join-form" {onsubmit}>
            <label for="join-room">{ "or go to a fridge by name" }</label>
            <div class="row">
                <input id="join-room" ref={input} placeholder="kitchen-poets"
                    autocomplete="off" maxlength="64" />
                <button class="button" type="submit">{ "Go" }</button>
            </div>
            if let Some(msg) = (*error).clone() {
                <p class="form-error">{ msg }</p>
            }
        </form>
    }
}

#[derive(Properties, PartialEq)]
struct ActiveRoomsProps {
    listing: Listing,
}

#[component]
fn ActiveRooms(props: &ActiveRoomsProps) -> Html {
    let rooms = match &props.listing {
        Listing::Loading => return html! { <p class="muted">{ "Looking…" }</p> },
        Listing::Failed => {
            return html! {
                <>
                    <ul id="active-rooms"></ul>
                    <p class="muted">{ "The server did not answer; the list will refresh by itself." }</p>
                </>
            }
        }
        Listing::Loaded(rooms) => rooms,
    };
    let Some(active) = &rooms.active else {
        return html! { <Totals rooms={rooms.clone()} /> };
    };
    let items = active.iter().filter_map(|r| {
        let room = RoomName::new(&r.room).ok()?;
        let people = if r.members == 1 { "person" } else { "people" };
        Some(html! {
            <li key={room.to_string()}>
                <a href={room_href(&room)}>{ room.to_string() }</a>
                <span class="members">{ format!("{} {people}", r.members) }</span>
            </li>
        })
    });
    html! {
        <>
            <ul id="active-rooms">{ for items }</ul>
            if active.is_empty() {
                <p class="muted">{ "Nobody is here yet — start a fridge and be the first." }</p>
            }
            if rooms.stored > 0 {
                <p class="muted small">{ fridges_kept(rooms.stored) }</p>
            }
        </>
    }
}

#[derive(Properties, PartialEq)]
struct TotalsProps {
    rooms: Rooms,
}

/// What the page shows when the server does not list rooms by name.
#[component]
fn Totals(props: &TotalsProps) -> Html {
    let Rooms { rooms, members, .. } = props.rooms;
    let people = if members == 1 { "person" } else { "people" };
    let fridges = if rooms == 1 { "fridge" } else { "fridges" };
    html! {
        <>
            <p id="room-totals" class="muted">
                if rooms == 0 {
                    { "Nobody is here yet — start a fridge and be the first." }
                } else {
                    { format!("{members} {people} on {rooms} {fridges} right now.") }
                }
            </p>
            <p class="muted small">{ "Rooms are private here: share a fridge's address to meet." }</p>
        </>
    }
}

#[derive(Properties, PartialEq)]
pub struct NotARoomProps {
    pub segment: String,
}

/// A path that cannot be a room.
#[component]
pub fn NotARoom(props: &NotARoomProps) -> Html {
    html! {
        <div class="landing">
            <section class="card">
                <h1>{ "No such fridge" }</h1>
                <p>
                    { "“" }{ props.segment.clone() }{ "” is not a room name: names use a–z, 0–9 and dashes." }
                </p>
                <p><a class="button" href="/">{ "Back to the start" }</a></p>
            </section>
        </div>
    }
}
