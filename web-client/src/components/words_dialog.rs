//! The new-room dialog: type or paste words, or start from a shipped word
//! list; submitting lays them out on the fridge and sends the board.

use protocol::{Board, ClientMessage};
use web_sys::HtmlTextAreaElement;
use yew::prelude::*;

use crate::layout::lay_out;
use crate::room_state::Action;
use crate::web;
use crate::word_lists::{parse_words, WORD_LISTS};

#[derive(Properties, PartialEq)]
pub struct WordsDialogProps {
    pub send: Callback<ClientMessage>,
    pub dispatch: Callback<Action>,
}

#[component]
pub fn WordsDialog(props: &WordsDialogProps) -> Html {
    let text = use_state(String::new);
    let input = use_node_ref();
    {
        let input = input.clone();
        use_effect_with((), move |_| {
            if let Some(el) = input.cast::<HtmlTextAreaElement>() {
                let _ = el.focus();
            }
        });
    }
    let count = parse_words(&text).len();

    let oninput = {
        let text = text.clone();
        Callback::from(move |e: InputEvent| {
            let el: HtmlTextAreaElement = e.target_unchecked_into();
            text.set(el.value());
        })
    };
    let lists = WORD_LISTS.iter().map(|list| {
        let text = text.clone();
        let words = list.words;
        let onclick = Callback::from(move |_: MouseEvent| {
            text.set(parse_words(words).join(" "));
        });
        html! {
            <button type="button" class="button word-list" {onclick}>{ list.name }</button>
        }
    });
    let onsubmit = {
        let (input, send) = (input.clone(), props.send.clone());
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            // The box itself is the truth (it may have been filled without
            // an input event, e.g. by autofill or a script).
            let Some(el) = input.cast::<HtmlTextAreaElement>() else {
                return;
            };
            let words = parse_words(&el.value());
            if words.is_empty() {
                let _ = el.focus();
                return;
            }
            let laid_out = web::with_ids(|rng, ids| lay_out(&words, rng, ids));
            if let Ok(board) = Board::new(laid_out) {
                send.emit(ClientMessage::StateUpdate { data: board });
            }
        })
    };
    let close = props
        .dispatch
        .reform(|_: MouseEvent| Action::CloseWordsDialog);

    html! {
        <div class="dialog-backdrop">
            <form id="words-dialog" class="dialog card" role="dialog" aria-modal="true"
                aria-labelledby="words-title" {onsubmit}>
                <h2 id="words-title">{ "A brand-new fridge" }</h2>
                <p>{ "Which words go on it? Type or paste them (spaces and new lines separate words), or start from a box:" }</p>
                <div class="word-lists">{ for lists }</div>
                <textarea id="words-input" ref={input} rows="7" value={(*text).clone()} {oninput}
                    placeholder="the moon sings softly to my sleepy heart" />
                <div class="dialog-actions">
                    <span class="muted">{ format!("{count} word{}", if count == 1 { "" } else { "s" }) }</span>
                    <button type="button" class="button ghost dialog-close" onclick={close}>{ "Later" }</button>
                    <button id="words-submit" type="submit" class="button primary">
                        { "Put them on the fridge" }
                    </button>
                </div>
            </form>
        </div>
    }
}
