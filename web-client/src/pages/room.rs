//! `/{room}`: the fridge with the side panel (who is here, chat), the
//! connection line, and the dialogs a room may need.

use protocol::RoomName;
use yew::prelude::*;

use crate::components::{
    AddWord, Announcer, Chat, ConnectionStatus, Fridge, Notice, Presence, RoomFull, WordsDialog,
};
use crate::room_state::Connection;
use crate::socket::use_room;

#[derive(Properties, PartialEq)]
pub struct RoomPageProps {
    pub room: RoomName,
}

#[component]
pub fn RoomPage(props: &RoomPageProps) -> Html {
    let socket = use_room(props.room.clone());
    let state = &*socket.state;
    {
        let title = format!("{} · attractio", props.room);
        use_effect_with(title, |title| {
            if let Some(doc) = crate::web::window().document() {
                doc.set_title(title);
            }
        });
    }
    let board_area = match &state.room_full {
        Some(links) => html! { <RoomFull room={props.room.to_string()} links={links.clone()} /> },
        None => html! {
            <>
                <Fridge state={socket.state.clone()} send={socket.send.clone()}
                    dispatch={socket.dispatch.clone()} />
                <AddWord state={socket.state.clone()} send={socket.send.clone()}
                    dispatch={socket.dispatch.clone()} />
            </>
        },
    };
    html! {
        <div class="room-page">
            <header class="topbar">
                <a class="brand" href="/">{ "attractio" }</a>
                <span class="room-name" title="Share this page's address to invite people">
                    { props.room.to_string() }
                </span>
                <ConnectionStatus connection={state.connection.clone()}
                    rtt_ms={state.rtt_ms} queued={state.queued}
                    take_back={socket.take_back.clone()} />
            </header>
            <main class={classes!("room-main", state.room_full.is_some().then_some("full"),
                    (state.connection != Connection::Open).then_some("offline"))}>
                <section class="board-area">{ board_area }</section>
                if state.room_full.is_none() {
                    <aside class="side-panel">
                        <Presence members={state.presence.clone()}
                            me={state.me.as_ref().map(|m| m.member.id)} />
                        <Chat lines={state.chat.clone()} send={socket.send.clone()} />
                    </aside>
                }
            </main>
            if state.asking_for_words && state.room_full.is_none() {
                <WordsDialog state={socket.state.clone()} send={socket.send.clone()}
                    dispatch={socket.dispatch.clone()} />
            }
            <Notice notice={state.notice.clone()}
                lasting={matches!(state.connection, Connection::Refused(_))}
                dispatch={socket.dispatch.clone()} />
            <Announcer news={state.news.clone()} />
        </div>
    }
}
