//! One word on the fridge. It only draws; the fridge handles the pointer
//! and the keyboard. It is focusable, and tells a screen reader its text
//! and who holds it. While this client edits it, it becomes a small text
//! box.

use std::cell::Cell;
use std::rc::Rc;

use protocol::Word;
use web_sys::HtmlInputElement;
use yew::prelude::*;

use crate::layout::FRIDGE_W;
use crate::room_state::Holder;

/// How an edit ended.
#[derive(Clone, Debug, PartialEq)]
pub enum EditEnd {
    Save(String),
    Delete,
    Cancel,
}

#[derive(Properties, PartialEq)]
pub struct MagnetProps {
    pub word: Word,
    /// Where it is drawn (its stored position plus any drag).
    pub x: f64,
    pub y: f64,
    /// Someone else holds it.
    pub holder: Option<Holder>,
    /// This client is dragging it.
    pub dragging: bool,
    /// Set while this client edits it.
    pub editor: Option<Callback<EditEnd>>,
}

/// A word whose top is this close to the fridge's top edge shows its
/// holder's name below it: above, the name would leave the fridge.
const LABEL_ROOM: f64 = 24.0;
/// A word whose left is this far right on the fridge lines its holder's
/// name up with its right end: from its left end, a long name would leave
/// the fridge.
const LABEL_FROM_RIGHT: f64 = FRIDGE_W - 220.0;

/// A small tilt per word, from its id, so the fridge looks hand-made.
fn tilt(id: &str) -> f64 {
    let h = id
        .bytes()
        .fold(2166136261u32, |h, b| (h ^ b as u32).wrapping_mul(16777619));
    (h % 51) as f64 / 10.0 - 2.5
}

#[component]
pub fn Magnet(props: &MagnetProps) -> Html {
    let w = &props.word;
    let mut style = format!(
        "left:{}px;top:{}px;z-index:{};--tilt:{}deg",
        props.x,
        props.y,
        w.z,
        tilt(w.id.as_str())
    );
    if let Some(h) = &props.holder {
        style.push_str(&format!(";--holder:{}", h.color));
    }
    let class = classes!(
        "word",
        props.holder.is_some().then_some("held"),
        props.dragging.then_some("dragging"),
        props.editor.is_some().then_some("editing"),
        (props.y < LABEL_ROOM).then_some("label-below"),
        (props.x > LABEL_FROM_RIGHT).then_some("label-end"),
    );
    if let Some(done) = &props.editor {
        // A text box and a button inside: no longer a control itself.
        return html! {
            <div {class} {style} data-id={w.id.to_string()}>
                <WordEditor text={w.text.clone()} done={done.clone()} />
            </div>
        };
    }
    let label = match (&props.holder, props.dragging) {
        (Some(h), _) => format!("{}, held by {}", w.text, h.name),
        (None, true) => format!("{}, picked up", w.text),
        (None, false) => w.text.clone(),
    };
    html! {
        <div {class} {style} data-id={w.id.to_string()}
            data-holder={props.holder.as_ref().map(|h| h.name.clone())}
            tabindex="0" role="button" aria-roledescription="word" aria-label={label}
            aria-describedby="fridge-keys">
            { w.text.clone() }
        </div>
    }
}

#[derive(Properties, PartialEq)]
struct WordEditorProps {
    text: String,
    done: Callback<EditEnd>,
}

/// Enter saves, Escape cancels, leaving the box saves, × deletes.
#[component]
fn WordEditor(props: &WordEditorProps) -> Html {
    let input = use_node_ref();
    // Ends once: removing the box blurs it, which must not save again.
    let ended = use_mut_ref(|| Rc::new(Cell::new(false)));
    let end = {
        let (done, ended) = (props.done.clone(), ended.borrow().clone());
        move |how: EditEnd| {
            if !ended.replace(true) {
                done.emit(how);
            }
        }
    };
    {
        let input = input.clone();
        use_effect_with((), move |_| {
            if let Some(el) = input.cast::<HtmlInputElement>() {
                let _ = el.focus();
                el.select();
            }
        });
    }
    let value = {
        let input = input.clone();
        move || {
            input
                .cast::<HtmlInputElement>()
                .map(|el| el.value())
                .unwrap_or_default()
        }
    };
    let onkeydown = {
        let (end, value) = (end.clone(), value.clone());
        Callback::from(move |e: KeyboardEvent| match e.key().as_str() {
            "Enter" => {
                e.prevent_default();
                end(EditEnd::Save(value()));
            }
            "Escape" => end(EditEnd::Cancel),
            _ => {}
        })
    };
    let onblur = {
        let end = end.clone();
        Callback::from(move |_: FocusEvent| end(EditEnd::Save(value())))
    };
    // Pressing the button would blur the box first; keep the focus.
    let keep_focus = Callback::from(|e: PointerEvent| e.prevent_default());
    let keep_focus_mouse = Callback::from(|e: MouseEvent| e.prevent_default());
    let delete = Callback::from(move |_: MouseEvent| end(EditEnd::Delete));
    html! {
        <>
            <input class="word-edit" ref={input} value={props.text.clone()}
                size={(props.text.chars().count().max(3) + 1).to_string()}
                maxlength="200" {onkeydown} {onblur} aria-label="Edit word" />
            <button class="word-delete" type="button" title="Delete this word"
                onpointerdown={keep_focus} onmousedown={keep_focus_mouse} onclick={delete}>
                { "×" }
            </button>
        </>
    }
}
