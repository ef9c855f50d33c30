//! The words dialog: type or paste words, or start from a shipped word
//! list. On an empty fridge (a new room) submitting lays them out; on a
//! fridge with words it adds them at free spots. Either way the whole board
//! goes out as one `stateUpdate`, so a long list is one message.

use protocol::{Board, ClientMessage};
use web_sys::HtmlTextAreaElement;
use yew::prelude::*;

use crate::layout::{add_words, lay_out};
use crate::room_state::{Action, RoomState};
use crate::web;
use crate::word_lists::{parse_words, WORD_LISTS};

#[derive(Properties, PartialEq)]
pub struct WordsDialogProps {
    pub state: UseReducerHandle<RoomState>,
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
    let fresh = props.state.board.is_empty();

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
        let (input, send, state) = (input.clone(), props.send.clone(), props.state.clone());
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
            let laid_out = web::with_ids(|rng, ids| {
                if state.board.is_empty() {
                    lay_out(&words, rng, ids)
                } else {
                    add_words(&state.board, &words, rng, ids)
                }
            });
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
                <h2 id="words-title">
                    { if fresh { "A brand-new fridge" } else { "More words for the fridge" } }
                </h2>
                <p>{ "Which words go on it? Type or paste them (spaces and new lines separate words), or start from a box:" }</p>
                <div class="word-lists">{ for lists }</div>
                <textarea id="words-input" ref={input} rows="7" aria-label="Words" value={(*text).clone()} {oninput}
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
