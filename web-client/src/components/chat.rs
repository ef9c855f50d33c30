//! The room's chat: every line as text (the server's welcome and goodbye
//! lines too), and a box to say something (`talkToRoom`).

use protocol::ClientMessage;
use serde_json::Value;
use web_sys::{Element, HtmlInputElement};
use yew::prelude::*;

use crate::room_state::ChatLine;

#[derive(Properties, PartialEq)]
pub struct ChatProps {
    pub lines: Vec<ChatLine>,
    pub send: Callback<ClientMessage>,
}

#[component]
pub fn Chat(props: &ChatProps) -> Html {
    let log = use_node_ref();
    let input = use_node_ref();
    {
        // Keep the newest line in view.
        let log = log.clone();
        use_effect_with(props.lines.len(), move |_| {
            if let Some(el) = log.cast::<Element>() {
                el.set_scroll_top(el.scroll_height());
            }
        });
    }
    let onsubmit = {
        let (input, send) = (input.clone(), props.send.clone());
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let Some(el) = input.cast::<HtmlInputElement>() else {
                return;
            };
            let text = el.value();
            if text.trim().is_empty() {
                return;
            }
            send.emit(ClientMessage::TalkToRoom {
                data: Value::String(text),
            });
            el.set_value("");
        })
    };
    let lines = props.lines.iter().map(|line| {
        let class = classes!(
            line.from.is_none().then_some("system"),
            line.mine.then_some("mine"),
            line.private.then_some("private"),
        );
        match &line.from {
            None => html! { <li {class}>{ line.text.clone() }</li> },
            Some(m) => html! {
                <li {class}>
                    <span class="chat-name" style={format!("--member:{}", m.color)}>
                        { m.name.clone() }
                    </span>
                    { ": " }
                    <span class="chat-text">{ line.text.clone() }</span>
                </li>
            },
        }
    });
    html! {
        <section class="panel chat-panel">
            <h2>{ "Chat" }</h2>
            <div role="log" aria-label="Chat messages">
                <ul id="chat-log" ref={log}>{ for lines }</ul>
            </div>
            <form class="chat-form" {onsubmit}>
                <input id="chat-input" ref={input} placeholder="Say something…"
                    aria-label="Chat message"
                    autocomplete="off" maxlength="2000" />
                <button id="chat-send" class="button" type="submit">{ "Send" }</button>
            </form>
        </section>
    }
}
