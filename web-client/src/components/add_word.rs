//! "Add a word": one more magnet at a free spot (`newWord`), and a way back
//! to the words dialog.

use protocol::{Board, ClientMessage, Word};
use web_sys::HtmlInputElement;
use yew::prelude::*;

use crate::layout::place_new_word;
use crate::room_state::{Action, RoomState};
use crate::web;
use crate::word_lists::parse_one_word;

#[derive(Properties, PartialEq)]
pub struct AddWordProps {
    pub state: UseReducerHandle<RoomState>,
    pub send: Callback<ClientMessage>,
    pub dispatch: Callback<Action>,
}

#[component]
pub fn AddWord(props: &AddWordProps) -> Html {
    let input = use_node_ref();
    let add = {
        let (input, state, send) = (input.clone(), props.state.clone(), props.send.clone());
        move || {
            let Some(el) = input.cast::<HtmlInputElement>() else {
                return;
            };
            let Some(text) = parse_one_word(&el.value()) else {
                return;
            };
            let board: &Board = &state.board;
            let (x, y) = web::with_rng(|rng| place_new_word(&text, board, rng));
            let word = Word {
                id: web::fresh_word_id(board),
                text,
                x,
                y,
                z: 0,
            };
            send.emit(ClientMessage::NewWord { data: word });
            el.set_value("");
        }
    };
    let onsubmit = Callback::from(move |e: SubmitEvent| {
        e.prevent_default();
        add();
    });
    let more = props
        .dispatch
        .reform(|_: MouseEvent| Action::OpenWordsDialog);
    html! {
        <form class="add-word" {onsubmit}>
            <input id="add-word-input" ref={input} placeholder="Add a word…" aria-label="A word to add"
                autocomplete="off" maxlength="200" />
            <button id="add-word" class="button" type="submit">{ "Add" }</button>
            <button id="add-many" type="button" class="button ghost" onclick={more}>{ "Add many…" }</button>
            <span class="hint">{ "Drag words to move them (or Tab to one, Enter, arrows, Enter) · double-click or long-press to edit or delete" }</span>
        </form>
    }
}
