//! The room is full: the three rooms the server suggests, as links.

use yew::prelude::*;

#[derive(Properties, PartialEq)]
pub struct RoomFullProps {
    pub room: String,
    pub links: Vec<String>,
}

#[component]
pub fn RoomFull(props: &RoomFullProps) -> Html {
    let links = props.links.iter().map(|href| {
        html! { <li key={href.clone()}><a href={href.clone()}>{ href.trim_start_matches('/').to_owned() }</a></li> }
    });
    html! {
        <section id="room-full" class="card room-full">
            <h2>{ "This fridge is full" }</h2>
            <p>{ format!("Everyone who fits is already crowded around “{}”. These fridges have room:", props.room) }</p>
            <ul>{ for links }</ul>
            <p class="muted small">{ "Or wait here: reload the page in a little while." }</p>
        </section>
    }
}
