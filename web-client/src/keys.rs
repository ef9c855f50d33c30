//! What a key pressed on a focused word means. The fridge turns these into
//! the same messages a pointer drag sends (`freeze`, `moving`, `moveEnd`,
//! `unfreeze`), so others see a keyboard move as they see a drag.

/// Fridge pixels one arrow press moves a word.
pub const STEP: f64 = 6.0;
/// Fridge pixels one arrow press moves a word with Shift held.
pub const BIG_STEP: f64 = 48.0;

/// A key's meaning on a focused word.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum WordKey {
    /// Move by `(dx, dy)` fridge pixels, picking the word up first if needed.
    Nudge(f64, f64),
    /// Pick the word up, or drop it where it is.
    PickUpOrDrop,
    /// Remove the word (after the person confirms).
    Remove,
    /// Put a picked-up word back where it was picked up.
    Cancel,
}

/// The meaning of `key` (a `KeyboardEvent.key`) with Shift held or not;
/// `None` for keys that belong to the browser (Tab, shortcuts).
pub fn word_key(key: &str, shift: bool) -> Option<WordKey> {
    let step = if shift { BIG_STEP } else { STEP };
    Some(match key {
        "ArrowLeft" => WordKey::Nudge(-step, 0.0),
        "ArrowRight" => WordKey::Nudge(step, 0.0),
        "ArrowUp" => WordKey::Nudge(0.0, -step),
        "ArrowDown" => WordKey::Nudge(0.0, step),
        "Enter" | " " => WordKey::PickUpOrDrop,
        "Delete" | "Backspace" => WordKey::Remove,
        "Escape" => WordKey::Cancel,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrows_move_a_word_and_shift_moves_it_further() {
        assert_eq!(
            word_key("ArrowRight", false),
            Some(WordKey::Nudge(STEP, 0.0))
        );
        assert_eq!(
            word_key("ArrowUp", true),
            Some(WordKey::Nudge(0.0, -BIG_STEP))
        );
    }

    #[test]
    fn enter_and_space_pick_up_and_drop_delete_removes_escape_cancels() {
        assert_eq!(word_key("Enter", false), Some(WordKey::PickUpOrDrop));
        assert_eq!(word_key(" ", false), Some(WordKey::PickUpOrDrop));
        assert_eq!(word_key("Delete", false), Some(WordKey::Remove));
        assert_eq!(word_key("Escape", false), Some(WordKey::Cancel));
        assert_eq!(word_key("Tab", false), None);
    }
}
