//! Who is in the room, in their colours, most recently active first (the
//! server's order); this client's own entry has class `me`.

use protocol::{ClientId, PresenceEntry};
use yew::prelude::*;

#[derive(Properties, PartialEq)]
pub struct PresenceProps {
    pub members: Vec<PresenceEntry>,
    pub me: Option<ClientId>,
}

#[component]
pub fn Presence(props: &PresenceProps) -> Html {
    let items = props.members.iter().map(|p| {
        let me = props.me == Some(p.member.id);
        html! {
            <li key={p.member.id.0.to_string()}
                class={classes!(me.then_some("me"), p.away.then_some("away"))}
                style={format!("--member:{}", p.member.color)}
                title={if p.away { "connection lost — may be back soon" } else { "" }}>
                { p.member.name.clone() }
                if p.away {
                    <span class="away-note">{ "(away)" }</span>
                }
            </li>
        }
    });
    html! {
        <section class="panel presence-panel">
            <h2>{ "Here now" }<span class="count">{ props.members.len() }</span></h2>
            <ul id="presence">{ for items }</ul>
        </section>
    }
}
