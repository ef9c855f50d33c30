//! Moving words with the keyboard. Enter or Space on a focused word picks
//! it up (`freeze`), arrow keys move it (one `moving` per press: a held key
//! repeats about as often as a drag sends; Shift for bigger steps), Enter or Space drops it (`moveEnd`, then
//! `unfreeze`), Escape puts it back (`unfreeze` alone: everyone's copy
//! returns to the stored place), Delete removes it once the person
//! confirms. An arrow on a word not yet picked up picks it up first.
//!
//! Each step is announced through the room's live region, and the focus
//! stays on the word even when its move changes the reading order (the
//! magnets are drawn in that order, so the element is moved in the page).

use std::cell::RefCell;
use std::rc::Rc;

use protocol::{ClientMessage, WordId};
use wasm_bindgen::JsCast;
use web_sys::{Element, HtmlElement};
use yew::prelude::*;

use crate::keys::{word_key, WordKey};
use crate::layout::drag_position;
use crate::room_state::{Action, RoomState};
use crate::web;

/// A word picked up with the keyboard.
struct Carry {
    id: WordId,
    /// Its stored position when picked up.
    start: (f64, f64),
    /// Where it is now.
    at: (f64, f64),
    /// Its drawn size, to keep it on the fridge.
    size: (f64, f64),
}

/// What the fridge wires to its keyboard and focus events.
pub struct WordKeys {
    pub onkeydown: Callback<KeyboardEvent>,
    pub onfocusout: Callback<FocusEvent>,
}

/// The word element an event is on (not a text box inside it), and its id.
fn focused_word(e: &Event) -> Option<(HtmlElement, WordId)> {
    let el: HtmlElement = e.target()?.dyn_into().ok()?;
    if !el.class_list().contains("word") {
        return None;
    }
    let id = WordId::new(&el.get_attribute("data-id")?).ok()?;
    Some((el, id))
}

/// The word element for `id` inside `fridge`.
fn word_element(fridge: &NodeRef, id: &WordId) -> Option<HtmlElement> {
    let fridge = fridge.cast::<Element>()?;
    let children = fridge.children();
    (0..children.length())
        .filter_map(|i| children.item(i))
        .find(|c| c.get_attribute("data-id").as_deref() == Some(id.as_str()))?
        .dyn_into()
        .ok()
}

#[hook]
pub fn use_word_keys(
    fridge: NodeRef,
    state: UseReducerHandle<RoomState>,
    send: Callback<ClientMessage>,
    dispatch: Callback<Action>,
) -> WordKeys {
    let carry: Rc<RefCell<Option<Carry>>> = use_mut_ref(|| None);
    // The word that must keep the focus through this render.
    let keep_focus: Rc<RefCell<Option<WordId>>> = use_mut_ref(|| None);
    {
        let (fridge, carry, keep_focus) = (fridge.clone(), carry.clone(), keep_focus.clone());
        use_effect(move || {
            let wanted = keep_focus.borrow().clone();
            if let Some(id) = wanted {
                let document = web::window().document();
                let lost = document
                    .and_then(|d| d.active_element())
                    .is_none_or(|a| a.tag_name() == "BODY");
                if lost {
                    if let Some(el) = word_element(&fridge, &id) {
                        let _ = el.focus();
                    }
                }
                if carry.borrow().is_none() {
                    *keep_focus.borrow_mut() = None;
                }
            }
        });
    }

    let announce = move |text: String| dispatch.emit(Action::Announce(text));

    let onkeydown = {
        let (carry, keep_focus, fridge, send) = (
            carry.clone(),
            keep_focus.clone(),
            fridge.clone(),
            send.clone(),
        );
        Callback::from(move |e: KeyboardEvent| {
            let Some((el, id)) = focused_word(&e) else {
                return;
            };
            if e.ctrl_key() || e.alt_key() || e.meta_key() {
                return;
            }
            let Some(key) = word_key(&e.key(), e.shift_key()) else {
                return;
            };
            let Some(word) = state.board.get(&id) else {
                return;
            };
            let text = word.text.clone();
            e.prevent_default();
            let mut slot = carry.borrow_mut();
            // Our freeze lost to someone else's, or the word went away.
            if slot
                .as_ref()
                .is_some_and(|c| state.my_hold.as_ref() != Some(&c.id))
            {
                *slot = None;
            }
            let carrying = slot.as_ref().is_some_and(|c| c.id == id);
            if !carrying && state.my_hold.is_some() {
                // A pointer drag or an edit is going on: it has the word.
                return;
            }
            let held_by = state.holders.get(&id).map(|h| h.name.clone());
            let pick_up = |slot: &mut Option<Carry>| -> bool {
                if let Some(name) = &held_by {
                    announce(format!("“{text}” is held by {name}."));
                    return false;
                }
                send.emit(ClientMessage::Freeze {
                    element_id: id.clone(),
                });
                *slot = Some(Carry {
                    id: id.clone(),
                    start: (word.x, word.y),
                    at: (word.x, word.y),
                    size: (el.offset_width() as f64, el.offset_height() as f64),
                });
                *keep_focus.borrow_mut() = Some(id.clone());
                true
            };
            match key {
                WordKey::PickUpOrDrop if carrying => {
                    let c = slot.take().expect("carrying");
                    drop(slot);
                    send.emit(ClientMessage::MoveEnd {
                        element_id: id.clone(),
                        final_x: c.at.0,
                        final_y: c.at.1,
                    });
                    send.emit(ClientMessage::Unfreeze { element_id: id });
                    announce(format!("Dropped “{text}”."));
                }
                WordKey::PickUpOrDrop => {
                    if pick_up(&mut slot) {
                        announce(format!(
                            "Picked up “{text}”. Arrow keys move it, Enter drops it, Escape puts it back."
                        ));
                    }
                }
                WordKey::Nudge(dx, dy) => {
                    if !carrying && !pick_up(&mut slot) {
                        return;
                    }
                    let Some(c) = slot.as_mut() else { return };
                    let delta = (c.at.0 - c.start.0 + dx, c.at.1 - c.start.1 + dy);
                    c.at = drag_position(c.start, delta, c.size);
                    let (dx, dy) = (c.at.0 - c.start.0, c.at.1 - c.start.1);
                    drop(slot);
                    send.emit(ClientMessage::Moving {
                        element_id: id,
                        dx,
                        dy,
                    });
                }
                WordKey::Cancel if carrying => {
                    *slot = None;
                    drop(slot);
                    send.emit(ClientMessage::Unfreeze { element_id: id });
                    announce(format!("Put “{text}” back."));
                }
                WordKey::Cancel => {}
                WordKey::Remove => {
                    if let Some(name) = &held_by {
                        announce(format!("“{text}” is held by {name}."));
                        return;
                    }
                    drop(slot);
                    let question = format!("Remove “{text}” from the fridge?");
                    if !web::window()
                        .confirm_with_message(&question)
                        .unwrap_or(false)
                    {
                        return;
                    }
                    // The focus goes on to the next word.
                    let next = el
                        .next_element_sibling()
                        .or_else(|| el.previous_element_sibling())
                        .and_then(|n| n.get_attribute("data-id"))
                        .and_then(|n| WordId::new(&n).ok());
                    if carry.borrow_mut().take().is_some() {
                        send.emit(ClientMessage::Unfreeze {
                            element_id: id.clone(),
                        });
                    }
                    send.emit(ClientMessage::Delete { element_id: id });
                    announce(format!("Removed “{text}”."));
                    if let Some(next) = next.and_then(|n| word_element(&fridge, &n)) {
                        let _ = next.focus();
                    }
                }
            }
        })
    };

    // Focus moving to another control ends a keyboard move where the word is.
    let onfocusout = {
        Callback::from(move |e: FocusEvent| {
            if e.related_target().is_none() {
                // The element was moved in the page (or the page lost the
                // focus): the effect above gives it back.
                return;
            }
            let Some((_, id)) = focused_word(&e) else {
                return;
            };
            let taken = carry.borrow_mut().take_if(|c| c.id == id);
            if let Some(c) = taken {
                *keep_focus.borrow_mut() = None;
                send.emit(ClientMessage::MoveEnd {
                    element_id: id.clone(),
                    final_x: c.at.0,
                    final_y: c.at.1,
                });
                send.emit(ClientMessage::Unfreeze { element_id: id });
            }
        })
    };
    WordKeys {
        onkeydown,
        onfocusout,
    }
}
