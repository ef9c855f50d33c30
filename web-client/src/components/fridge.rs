//! `#fridge`: the board, its magnets, and dragging them with any pointer
//! (mouse, touch, pen).
//!
//! A drag starts once the pointer has moved a few pixels with a word under
//! it: then `freeze` takes the lock. While dragging, `moving` goes out at
//! most every [`MOVING_EVERY_MS`] with `dx, dy` measured from where the
//! word was when the drag started (so a dropped or coalesced `moving` costs
//! nothing); the drop sends `moveEnd` with the final position, then
//! `unfreeze`. If someone else's `freeze` for the word arrives first, the
//! drag is abandoned. Double-click or long-press (context menu) edits a
//! word.
//!
//! The fridge has one size for everyone ([`FRIDGE_W`] × [`FRIDGE_H`]); on
//! a narrow screen it is scaled down to fit its width, so the whole door is
//! in view on arrival, and pointer travel is scaled back up. Where that
//! makes words small, a zoom button draws it at a readable scale and lets
//! it scroll sideways.
//!
//! The door is a labelled region; its words are drawn in reading order
//! (lines top to bottom, each left to right), so Tab meets them as a reader
//! does. The keyboard is handled in [`super::word_keys`].

use protocol::{ClientMessage, WordId, WordUpdate};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{Element, HtmlElement};
use yew::prelude::*;

use super::magnet::{EditEnd, Magnet};
use super::word_keys::use_word_keys;
use crate::layout::{drag_position, reading_order, FRIDGE_H, FRIDGE_W};
use crate::room_state::{Action, RoomState};
use crate::text::counted;
use crate::web;
use crate::word_lists::parse_one_word;

/// At most ~30 `moving` frames a second.
const MOVING_EVERY_MS: f64 = 33.0;
/// Pointer travel (CSS px) before a press becomes a drag.
const DRAG_THRESHOLD: f64 = 4.0;

/// A press on a word that may become a drag.
struct Drag {
    pointer: i32,
    id: WordId,
    /// Pointer position at the press, in client pixels.
    origin: (f64, f64),
    /// The word's stored position at the press.
    start: (f64, f64),
    /// The word's drawn size, to keep it on the fridge.
    size: (f64, f64),
    /// `freeze` was sent: this is a drag, not a click.
    announced: bool,
    last_sent_ms: f64,
    /// Where the word is now.
    at: (f64, f64),
    element: Element,
}

#[derive(Properties, PartialEq)]
pub struct FridgeProps {
    pub state: UseReducerHandle<RoomState>,
    pub send: Callback<ClientMessage>,
    pub dispatch: Callback<Action>,
}

/// The word element under an event's target, and its id.
fn word_under(e: &Event) -> Option<(Element, WordId)> {
    let target: Element = e.target()?.dyn_into().ok()?;
    let el = target.closest(".word").ok()??;
    let id = WordId::new(&el.get_attribute("data-id")?).ok()?;
    Some((el, id))
}

/// Zoomed in, the fridge is drawn at least this big (words ~13px), and
/// the zoom button is offered only when fitting the width draws it smaller.
const ZOOM_SCALE: f64 = 0.75;

/// Scale that fits the fridge into `wrap`'s width (at most 1), kept up to
/// date on window resizes.
#[hook]
fn use_fit_scale(wrap: NodeRef) -> f64 {
    let scale = use_state_eq(|| 1.0);
    {
        let scale = scale.clone();
        use_effect_with((), move |_| {
            let measure = move || {
                if let Some(el) = wrap.cast::<Element>() {
                    let width = el.client_width() as f64;
                    if width > 0.0 {
                        scale.set((width / FRIDGE_W).min(1.0));
                    }
                }
            };
            measure();
            let on_resize = Closure::<dyn FnMut()>::new(measure);
            let window = web::window();
            let _ = window
                .add_event_listener_with_callback("resize", on_resize.as_ref().unchecked_ref());
            move || {
                let _ = window.remove_event_listener_with_callback(
                    "resize",
                    on_resize.as_ref().unchecked_ref(),
                );
            }
        });
    }
    *scale
}

#[component]
pub fn Fridge(props: &FridgeProps) -> Html {
    let wrap = use_node_ref();
    let fridge = use_node_ref();
    let fit = use_fit_scale(wrap.clone());
    let zoomed = use_state_eq(|| false);
    let zoomable = fit < ZOOM_SCALE;
    let scale = if *zoomed && zoomable { ZOOM_SCALE } else { fit };
    let drag = use_mut_ref(|| None::<Drag>);
    let editing = use_state(|| None::<WordId>);
    let state = &props.state;
    let keys = use_word_keys(
        fridge.clone(),
        state.clone(),
        props.send.clone(),
        props.dispatch.clone(),
    );
    use_words_inside(fridge.clone());

    let onpointerdown = {
        let (state, drag, editing) = (state.clone(), drag.clone(), editing.clone());
        Callback::from(move |e: PointerEvent| {
            if e.button() != 0 {
                return;
            }
            // A drag whose word vanished under it (deleted, board replaced)
            // never saw its pointerup; anything else is a second finger.
            if let Some(d) = drag.borrow().as_ref() {
                if d.element.is_connected() && state.board.get(&d.id).is_some() {
                    return;
                }
            }
            let Some((el, id)) = word_under(&e) else {
                return;
            };
            if editing.as_ref() == Some(&id) || !state.can_grab(&id) {
                return;
            }
            let Some(word) = state.board.get(&id) else {
                return;
            };
            let size = el
                .dyn_ref::<HtmlElement>()
                .map(|h| (h.offset_width() as f64, h.offset_height() as f64))
                .unwrap_or((40.0, 30.0));
            let _ = el.set_pointer_capture(e.pointer_id());
            *drag.borrow_mut() = Some(Drag {
                pointer: e.pointer_id(),
                id,
                origin: (e.client_x() as f64, e.client_y() as f64),
                start: (word.x, word.y),
                size,
                announced: false,
                last_sent_ms: f64::NEG_INFINITY,
                at: (word.x, word.y),
                element: el,
            });
        })
    };

    let onpointermove = {
        let (state, drag, send, dispatch) = (
            state.clone(),
            drag.clone(),
            props.send.clone(),
            props.dispatch.clone(),
        );
        Callback::from(move |e: PointerEvent| {
            let mut slot = drag.borrow_mut();
            let Some(d) = slot.as_mut().filter(|d| d.pointer == e.pointer_id()) else {
                return;
            };
            let delta = (
                (e.client_x() as f64 - d.origin.0) / scale,
                (e.client_y() as f64 - d.origin.1) / scale,
            );
            let id = d.id.clone();
            if !d.announced {
                if delta.0.hypot(delta.1) < DRAG_THRESHOLD || !state.can_grab(&id) {
                    return;
                }
                d.announced = true;
                drop(slot);
                send.emit(ClientMessage::Freeze {
                    element_id: id.clone(),
                });
                slot = drag.borrow_mut();
            } else if state.my_hold.as_ref() != Some(&id) {
                // Someone else's freeze won the race (or the word is gone).
                if let Some(d) = slot.take() {
                    let _ = d.element.release_pointer_capture(d.pointer);
                }
                drop(slot);
                dispatch.emit(Action::DragCancelled(id));
                return;
            }
            let Some(d) = slot.as_mut() else { return };
            d.at = drag_position(d.start, delta, d.size);
            let (dx, dy) = (d.at.0 - d.start.0, d.at.1 - d.start.1);
            let now = web::now_ms();
            let due = now - d.last_sent_ms >= MOVING_EVERY_MS;
            if due {
                d.last_sent_ms = now;
            }
            drop(slot);
            if due {
                // Sending applies it to our state too.
                send.emit(ClientMessage::Moving {
                    element_id: id,
                    dx,
                    dy,
                });
            } else {
                dispatch.emit(Action::Dragged { id, dx, dy });
            }
        })
    };

    let onpointerup = {
        let (state, drag, send) = (state.clone(), drag.clone(), props.send.clone());
        Callback::from(move |e: PointerEvent| {
            let d = {
                let mut slot = drag.borrow_mut();
                if slot.as_ref().is_none_or(|d| d.pointer != e.pointer_id()) {
                    return;
                }
                slot.take()
            };
            let Some(d) = d else { return };
            let _ = d.element.release_pointer_capture(d.pointer);
            if d.announced && state.my_hold.as_ref() == Some(&d.id) {
                send.emit(ClientMessage::MoveEnd {
                    element_id: d.id.clone(),
                    final_x: d.at.0,
                    final_y: d.at.1,
                });
                send.emit(ClientMessage::Unfreeze { element_id: d.id });
            }
        })
    };

    let start_edit = {
        let (state, editing, send) = (state.clone(), editing.clone(), props.send.clone());
        move |e: MouseEvent| {
            let Some((_, id)) = word_under(&e) else {
                return;
            };
            e.prevent_default();
            if !state.can_grab(&id) || state.my_hold.is_some() {
                return;
            }
            send.emit(ClientMessage::Freeze {
                element_id: id.clone(),
            });
            editing.set(Some(id));
        }
    };
    let ondblclick = Callback::from(start_edit.clone());
    let oncontextmenu = Callback::from(start_edit);

    // An edit lasts while we hold the word (someone may have taken it).
    let edited = editing
        .as_ref()
        .filter(|id| state.board.get(id).is_some() && state.my_hold.as_ref() == Some(id))
        .cloned();
    let editor = edited.as_ref().map(|id| {
        let (id, editing, send, state) = (
            id.clone(),
            editing.clone(),
            props.send.clone(),
            state.clone(),
        );
        Callback::from(move |how: EditEnd| {
            editing.set(None);
            if state.my_hold.as_ref() != Some(&id) {
                return;
            }
            let unfreeze = ClientMessage::Unfreeze {
                element_id: id.clone(),
            };
            match how {
                EditEnd::Cancel => send.emit(unfreeze),
                EditEnd::Delete => {
                    send.emit(unfreeze);
                    send.emit(ClientMessage::Delete {
                        element_id: id.clone(),
                    });
                }
                EditEnd::Save(text) => {
                    let old = state.board.get(&id).map(|w| w.text.clone());
                    match parse_one_word(&text) {
                        Some(text) if Some(&text) != old.as_ref() => {
                            send.emit(ClientMessage::Modify {
                                element_id: id.clone(),
                                update: WordUpdate { text },
                            });
                            send.emit(unfreeze);
                        }
                        Some(_) => send.emit(unfreeze),
                        None => {
                            send.emit(unfreeze);
                            send.emit(ClientMessage::Delete {
                                element_id: id.clone(),
                            });
                        }
                    }
                }
            }
        })
    });

    let words = state.board.words();
    let magnets = reading_order(words).into_iter().map(|i| {
        let w = &words[i];
        let (x, y) = state.drawn_position(&w.id).unwrap_or((w.x, w.y));
        let is_edited = edited.as_ref() == Some(&w.id);
        html! {
            <Magnet key={w.id.to_string()} word={w.clone()} {x} {y}
                holder={state.holders.get(&w.id).cloned()}
                dragging={state.my_hold.as_ref() == Some(&w.id) && !is_edited}
                editor={if is_edited { editor.clone() } else { None }} />
        }
    });

    let overlay = if !state.board_loaded {
        html! { <div class="fridge-overlay"><p>{ "Opening the fridge…" }</p></div> }
    } else if state.board.is_empty() && !state.asking_for_words {
        let open = props
            .dispatch
            .reform(|_: MouseEvent| Action::OpenWordsDialog);
        html! {
            <div class="fridge-overlay">
                <p>{ "This fridge is empty." }</p>
                <button class="button primary" onclick={open}>{ "Tip out a box of words" }</button>
            </div>
        }
    } else {
        html! {}
    };

    let fridge_style = format!("width:{FRIDGE_W}px;height:{FRIDGE_H}px;transform:scale({scale})");
    let holder_style = format!("width:{}px;height:{}px", FRIDGE_W * scale, FRIDGE_H * scale);
    let zoom = zoomable.then(|| {
        let (zoomed, on) = (zoomed.clone(), *zoomed);
        let onclick = Callback::from(move |_: MouseEvent| zoomed.set(!on));
        html! {
            <button id="zoom" type="button" class="button ghost small" aria-pressed={on.to_string()}
                {onclick}>
                { if on { "Show the whole fridge" } else { "Zoom in" } }
            </button>
        }
    });
    let label = format!(
        "Fridge door, {}",
        counted(words.len() as u64, "word", "words")
    );
    html! {
        <>
            { for zoom }
            <div class={classes!("fridge-wrap", (*zoomed && zoomable).then_some("zoomed"))}
                ref={wrap}>
                <div class="fridge-holder" style={holder_style}>
                    <div id="fridge" ref={fridge} style={fridge_style} role="region"
                        aria-label={label}
                        {onpointerdown} {onpointermove}
                        onpointerup={onpointerup.clone()} onpointercancel={onpointerup.clone()}
                        onlostpointercapture={onpointerup}
                        {ondblclick} {oncontextmenu}
                        onkeydown={keys.onkeydown} onfocusout={keys.onfocusout}>
                        { for magnets }
                        { overlay }
                    </div>
                </div>
            </div>
            <p id="fridge-keys" class="visually-hidden">
                { "Enter or Space picks a word up and drops it; arrow keys move it, \
                   with Shift in bigger steps; Escape puts it back; Delete removes it." }
            </p>
        </>
    }
}

/// Keeps every drawn word inside the door: a word drawn wider than the
/// layout expected (another font than the one it was placed with) is
/// shifted back in by its overhang. Only the drawing moves; its stored
/// place stays the same for everyone.
#[hook]
fn use_words_inside(fridge: NodeRef) {
    use_effect(move || {
        let Some(fridge) = fridge.cast::<Element>() else {
            return;
        };
        let words = fridge.children();
        for el in (0..words.length()).filter_map(|i| words.item(i)) {
            let Ok(el) = el.dyn_into::<HtmlElement>() else {
                continue;
            };
            if !el.class_list().contains("word") {
                continue;
            }
            let over = |start: i32, size: i32, room: f64| (start + size) as f64 - room;
            let ox = over(el.offset_left(), el.offset_width(), FRIDGE_W).max(0.0);
            let oy = over(el.offset_top(), el.offset_height(), FRIDGE_H).max(0.0);
            let style = el.style();
            let now = style.get_property_value("translate").unwrap_or_default();
            let shift = if ox > 0.0 || oy > 0.0 {
                format!("{}px {}px", -ox, -oy)
            } else {
                String::new()
            };
            if now != shift && !(shift.is_empty() && now.is_empty()) {
                let _ = style.set_property("translate", &shift);
            }
        }
    });
}
