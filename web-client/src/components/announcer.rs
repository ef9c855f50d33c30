//! `#announcer`: the page's one live region. A screen reader hears the
//! room's news from it (who moved, added or removed a word, who joined or
//! left, what the keyboard just did) politely, at most once every
//! [`ANNOUNCE_EVERY_MS`]: news arriving faster is gathered into one
//! sentence, and a burst is cut short with a count.

use std::collections::VecDeque;

use gloo_timers::callback::Interval;
use yew::prelude::*;

/// At most one announcement this often.
const ANNOUNCE_EVERY_MS: u32 = 1_500;
/// At most this many pieces of news in one announcement.
const AT_ONCE: usize = 3;

#[derive(Properties, PartialEq)]
pub struct AnnouncerProps {
    /// The room's news, numbered (`RoomState::news`).
    pub news: Vec<(u64, String)>,
}

#[component]
pub fn Announcer(props: &AnnouncerProps) -> Html {
    let spoken = use_state(String::new);
    let pending = use_mut_ref(VecDeque::<String>::new);
    let read_up_to = use_mut_ref(|| 0u64);
    {
        let mut read = read_up_to.borrow_mut();
        for (n, text) in &props.news {
            if *n > *read {
                pending.borrow_mut().push_back(text.clone());
                *read = *n;
            }
        }
    }
    {
        let (spoken, pending) = (spoken.clone(), pending.clone());
        use_effect_with((), move |_| {
            let timer = Interval::new(ANNOUNCE_EVERY_MS, move || {
                let mut queue = pending.borrow_mut();
                if queue.is_empty() {
                    return;
                }
                let now = queue.len().min(AT_ONCE);
                let mut text: Vec<String> = queue.drain(..now).collect();
                let more = queue.len();
                queue.clear();
                if more > 0 {
                    text.push(format!(
                        "And {more} more change{}.",
                        if more == 1 { "" } else { "s" }
                    ));
                }
                spoken.set(text.join(" "));
            });
            move || drop(timer)
        });
    }
    html! {
        <div id="announcer" class="visually-hidden" role="status" aria-live="polite">
            { (*spoken).clone() }
        </div>
    }
}
