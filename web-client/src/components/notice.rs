//! A short-lived message about something the server refused, or a lasting
//! one about why the page is not in its room. A screen reader hears it
//! through the room's announcer, not from here.

use gloo_timers::callback::Timeout;
use yew::prelude::*;

use crate::room_state::Action;

/// How long a notice stays up.
const SHOW_MS: u32 = 5_000;

#[derive(Properties, PartialEq)]
pub struct NoticeProps {
    pub notice: Option<String>,
    /// Stays until dismissed: it explains a state that lasts (the room
    /// refused us), not a moment.
    #[prop_or_default]
    pub lasting: bool,
    pub dispatch: Callback<Action>,
}

#[component]
pub fn Notice(props: &NoticeProps) -> Html {
    {
        let dispatch = props.dispatch.clone();
        use_effect_with(
            (props.notice.clone(), props.lasting),
            move |(notice, lasting)| {
                let timer = (notice.is_some() && !lasting)
                    .then(|| Timeout::new(SHOW_MS, move || dispatch.emit(Action::DismissNotice)));
                move || drop(timer)
            },
        );
    }
    let Some(text) = props.notice.clone() else {
        return html! {};
    };
    let dismiss = props.dispatch.reform(|_: MouseEvent| Action::DismissNotice);
    html! {
        <div id="notice" class="notice">
            <span>{ text }</span>
            <button class="icon-button" onclick={dismiss} aria-label="Dismiss">{ "×" }</button>
        </div>
    }
}
