//! Words for a new fridge: parsing what the user typed or pasted, and the
//! word lists shipped with the app.

use protocol::limits::{MAX_WORDS, MAX_WORD_TEXT};

/// A word list the words dialog offers as a button.
pub struct WordList {
    pub name: &'static str,
    pub words: &'static str,
}

/// The lists shipped with the app, in the order the dialog shows them.
pub const WORD_LISTS: [WordList; 3] = [
    WordList {
        name: "Classic",
        words: "i you we the a and but or is are was be my your our love heart \
                dream night day moon sun light dark sweet bitter soft wild slow \
                fast blue red gold silver song sing dance whisper shout laugh cry \
                kiss touch hold run fly fall rise away home road sea sky rain \
                storm fire ice always never forever only still like as in on \
                under over with without -s -ing -ed ?",
    },
    WordList {
        name: "Sea & sky",
        words: "wave tide salt shell sand shore harbour boat sail anchor gull \
                deep blue drift float sink swim breeze cloud star comet orbit \
                dawn dusk horizon mist fog glow shimmer quiet roar lighthouse \
                island reef pearl current the a of and to under above beyond \
                between is was will -s -ing",
    },
    WordList {
        name: "Kitchen",
        words: "toast butter honey jam coffee tea milk sugar salt pepper bread \
                soup spoon fork knife plate cup kettle oven fridge crumb slice \
                bake boil stir pour spill taste burn fresh stale hungry full \
                breakfast midnight snack lemon garlic onion cheese the a and my \
                your is too more please again -s -ed",
    },
];

/// Splits text into words on any whitespace. Words longer than a magnet
/// allows are cut, and at most [`MAX_WORDS`] are kept.
pub fn parse_words(text: &str) -> Vec<String> {
    text.split_whitespace()
        .map(|w| w.chars().take(MAX_WORD_TEXT).collect())
        .take(MAX_WORDS)
        .collect()
}

/// One word typed into the "add a word" box: trimmed, inner whitespace
/// kept (a magnet may say "once upon"), `None` if nothing is left.
pub fn parse_one_word(text: &str) -> Option<String> {
    let t = text.trim();
    (!t.is_empty()).then(|| t.chars().take(MAX_WORD_TEXT).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_split_on_any_whitespace() {
        assert_eq!(
            parse_words("  the moon\n\tsings\r\n  softly "),
            ["the", "moon", "sings", "softly"]
        );
        assert!(parse_words(" \n\t ").is_empty());
    }

    #[test]
    fn html_looking_text_is_kept_as_it_is() {
        assert_eq!(
            parse_words("<b>bold</b> <img src=x onerror=alert(1)>"),
            ["<b>bold</b>", "<img", "src=x", "onerror=alert(1)>"]
        );
    }

    #[test]
    fn overlong_words_are_cut_and_the_count_is_capped() {
        let long = "x".repeat(MAX_WORD_TEXT + 50);
        assert_eq!(parse_words(&long)[0].chars().count(), MAX_WORD_TEXT);
        let many = "a ".repeat(MAX_WORDS + 10);
        assert_eq!(parse_words(&many).len(), MAX_WORDS);
    }

    #[test]
    fn a_single_added_word_is_trimmed() {
        assert_eq!(parse_one_word("  once upon "), Some("once upon".into()));
        assert_eq!(parse_one_word("   "), None);
    }

    #[test]
    fn every_shipped_list_has_plenty_of_valid_words() {
        for list in &WORD_LISTS {
            let words = parse_words(list.words);
            assert!(words.len() >= 40, "{} is short", list.name);
            assert!(words.iter().all(|w| !w.is_empty()));
        }
    }
}
