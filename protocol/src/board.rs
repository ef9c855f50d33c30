//! The board: words and where they are, and the pure rules that change it.
//!
//! The server applies every stored atom with [`Board::apply`]; the browser
//! applies the same atoms to its copy, so both agree by construction.
//!
//! Words are indexed by id, so what one atom costs does not grow with what
//! others put on the board: a lookup is a hash, the stacking top and the
//! board's bytes are kept as words change, and a `Replace`'s duplicate
//! check is a set (its index), built once when the board is made.

use std::collections::HashMap;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ids::WordId;
use crate::limits::{BoardLimits, MAX_COORDINATE};

/// One magnet on the fridge.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Word {
    pub id: WordId,
    pub text: String,
    pub x: f64,
    pub y: f64,
    /// Stacking order: higher is in front. A dropped word gets the highest.
    #[serde(default)]
    pub z: u64,
}

impl Word {
    /// What the word counts for against [`BoardLimits::bytes`]: its id and
    /// text as UTF-8.
    fn bytes(&self) -> usize {
        self.id.as_str().len() + self.text.len()
    }
}

/// The `update` of a `modify` atom.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WordUpdate {
    pub text: String,
}

/// A change to a board that is stored (`moving` is transient and never is).
#[derive(Clone, Debug, PartialEq)]
pub enum BoardOp {
    /// A whole board, indexed already (as it was decoded).
    Replace(Board),
    Add(Word),
    Move {
        id: WordId,
        x: f64,
        y: f64,
    },
    Delete(WordId),
    Modify {
        id: WordId,
        text: String,
    },
}

/// Why an atom could not be applied. The board is unchanged.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BoardError {
    #[error("no word {0} on this board")]
    UnknownWord(WordId),
    #[error("word {0} is already on this board")]
    DuplicateWord(WordId),
    #[error("a board holds at most {0} words")]
    TooManyWords(usize),
    #[error("a board holds at most {0} bytes of word ids and texts")]
    TooManyBytes(usize),
    #[error("a word's text must not be empty")]
    EmptyText,
    #[error("a word's text is at most {0} characters")]
    TextTooLong(usize),
    #[error("coordinates must be within ±{MAX_COORDINATE}")]
    BadCoordinate,
}

/// All the words of one room, in the order they were added. On the wire
/// it is that list of words and nothing else.
#[derive(Clone, Debug, Default)]
pub struct Board {
    words: Vec<Word>,
    /// Where each id is in `words`. Ids are unique on a checked board; a
    /// decoded one may repeat an id, which `index.len() < words.len()`
    /// tells (and [`Board::check`] refuses).
    index: HashMap<WordId, usize>,
    /// The highest `z`: a dropped word goes above it.
    top_z: u64,
    /// Sum of [`Word::bytes`].
    bytes: usize,
}

impl PartialEq for Board {
    fn eq(&self, other: &Board) -> bool {
        self.words == other.words
    }
}

impl Serialize for Board {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.words.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Board {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Board, D::Error> {
        Vec::<Word>::deserialize(d).map(Board::indexed)
    }
}

impl JsonSchema for Board {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Board".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let mut schema = <Vec<Word>>::json_schema(generator);
        schema.insert(
            "description".into(),
            "All the words of one room, in the order they were added.".into(),
        );
        schema
    }
}

impl Board {
    /// A board of `words`, checked against the protocol's own limits.
    pub fn new(words: Vec<Word>) -> Result<Board, BoardError> {
        let board = Board::indexed(words);
        board.check_whole(&BoardLimits::default())?;
        Ok(board)
    }

    /// `words` as they are, indexed but not checked.
    fn indexed(words: Vec<Word>) -> Board {
        let mut index = HashMap::with_capacity(words.len());
        for (i, w) in words.iter().enumerate() {
            index.insert(w.id.clone(), i);
        }
        Board {
            top_z: words.iter().map(|w| w.z).max().unwrap_or(0),
            bytes: words.iter().map(Word::bytes).sum(),
            index,
            words,
        }
    }

    /// The words, in the order they were added (the order on the wire).
    pub fn words(&self) -> &[Word] {
        &self.words
    }

    pub fn into_words(self) -> Vec<Word> {
        self.words
    }

    pub fn len(&self) -> usize {
        self.words.len()
    }

    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// Puts `word` last as it is, unchecked (a client laying words out
    /// before it sends them; the op that carries them is checked).
    pub fn push(&mut self, word: Word) {
        self.top_z = self.top_z.max(word.z);
        self.bytes += word.bytes();
        self.index.insert(word.id.clone(), self.words.len());
        self.words.push(word);
    }

    /// Bytes of word ids and texts (what [`BoardLimits::bytes`] bounds).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn get(&self, id: &WordId) -> Option<&Word> {
        self.index.get(id).map(|&i| &self.words[i])
    }

    fn position(&self, id: &WordId) -> Result<usize, BoardError> {
        self.index
            .get(id)
            .copied()
            .ok_or_else(|| BoardError::UnknownWord(id.clone()))
    }

    /// Checks a whole board: every word, no id twice, within `limits`.
    fn check_whole(&self, limits: &BoardLimits) -> Result<(), BoardError> {
        if self.words.len() > limits.words {
            return Err(BoardError::TooManyWords(limits.words));
        }
        if self.bytes > limits.bytes {
            return Err(BoardError::TooManyBytes(limits.bytes));
        }
        if self.index.len() < self.words.len() {
            // An id was indexed once but listed more often: the first one
            // whose index points elsewhere is a repeat.
            let repeat = self
                .words
                .iter()
                .enumerate()
                .find(|(i, w)| self.index.get(&w.id) != Some(i))
                .map(|(_, w)| w.id.clone());
            if let Some(id) = repeat {
                return Err(BoardError::DuplicateWord(id));
            }
        }
        self.words.iter().try_for_each(|w| check_word(w, limits))
    }

    /// Checks that `op` can be applied within the protocol's own limits,
    /// without applying it.
    pub fn check(&self, op: &BoardOp) -> Result<(), BoardError> {
        self.check_within(op, &BoardLimits::default())
    }

    /// Checks that `op` can be applied within `limits` (a server's, at most
    /// the protocol's), without applying it.
    pub fn check_within(&self, op: &BoardOp, limits: &BoardLimits) -> Result<(), BoardError> {
        match op {
            BoardOp::Replace(board) => board.check_whole(limits),
            BoardOp::Add(word) => {
                check_word(word, limits)?;
                if self.get(&word.id).is_some() {
                    return Err(BoardError::DuplicateWord(word.id.clone()));
                }
                if self.words.len() >= limits.words {
                    return Err(BoardError::TooManyWords(limits.words));
                }
                if self.bytes + word.bytes() > limits.bytes {
                    return Err(BoardError::TooManyBytes(limits.bytes));
                }
                Ok(())
            }
            BoardOp::Move { id, x, y } => {
                check_point(*x, *y)?;
                self.position(id).map(drop)
            }
            BoardOp::Delete(id) => self.position(id).map(drop),
            BoardOp::Modify { id, text } => {
                check_text(text, limits)?;
                let old = &self.words[self.position(id)?];
                if self.bytes - old.text.len() + text.len() > limits.bytes {
                    return Err(BoardError::TooManyBytes(limits.bytes));
                }
                Ok(())
            }
        }
    }

    /// Applies `op`, or changes nothing and says why.
    pub fn apply(&mut self, op: BoardOp) -> Result<(), BoardError> {
        self.check(&op)?;
        self.apply_checked(op)
    }

    /// Applies `op`, which [`Board::check_within`] accepted for this board
    /// (so it is not checked twice). An unknown word still changes nothing.
    pub fn apply_checked(&mut self, op: BoardOp) -> Result<(), BoardError> {
        match op {
            BoardOp::Replace(board) => *self = board,
            BoardOp::Add(mut word) => {
                self.top_z += 1;
                word.z = self.top_z;
                self.bytes += word.bytes();
                self.index.insert(word.id.clone(), self.words.len());
                self.words.push(word);
            }
            BoardOp::Move { id, x, y } => {
                let i = self.position(&id)?;
                self.top_z += 1;
                let word = &mut self.words[i];
                word.x = x;
                word.y = y;
                word.z = self.top_z;
            }
            BoardOp::Delete(id) => {
                let i = self.position(&id)?;
                let word = self.words.remove(i);
                self.index.remove(&id);
                for (j, w) in self.words.iter().enumerate().skip(i) {
                    if let Some(at) = self.index.get_mut(&w.id) {
                        *at = j;
                    }
                }
                self.bytes -= word.bytes();
                if word.z == self.top_z {
                    // What the next drop goes above, as a copy that never
                    // saw this word would work it out.
                    self.top_z = self.words.iter().map(|w| w.z).max().unwrap_or(0);
                }
            }
            BoardOp::Modify { id, text } => {
                let i = self.position(&id)?;
                let word = &mut self.words[i];
                self.bytes = self.bytes - word.text.len() + text.len();
                word.text = text;
            }
        }
        Ok(())
    }

    /// The largest distance any word moved between `self` and `other`, or
    /// `None` when they differ in more than positions (words, texts, order).
    pub fn max_displacement(&self, other: &Board) -> Option<f64> {
        if self.words.len() != other.words.len() {
            return None;
        }
        let mut max: f64 = 0.0;
        for (a, b) in self.words.iter().zip(&other.words) {
            if a.id != b.id || a.text != b.text {
                return None;
            }
            max = max.max((a.x - b.x).abs()).max((a.y - b.y).abs());
        }
        Some(max)
    }
}

fn check_text(text: &str, limits: &BoardLimits) -> Result<(), BoardError> {
    if text.is_empty() {
        return Err(BoardError::EmptyText);
    }
    // Bytes first: a text of more bytes than four per character allowed
    // is too long without counting its characters.
    if text.len() > limits.text_chars * 4 || text.chars().count() > limits.text_chars {
        return Err(BoardError::TextTooLong(limits.text_chars));
    }
    Ok(())
}

fn check_point(x: f64, y: f64) -> Result<(), BoardError> {
    if x.is_finite() && y.is_finite() && x.abs() <= MAX_COORDINATE && y.abs() <= MAX_COORDINATE {
        Ok(())
    } else {
        Err(BoardError::BadCoordinate)
    }
}

fn check_word(w: &Word, limits: &BoardLimits) -> Result<(), BoardError> {
    check_text(&w.text, limits)?;
    check_point(w.x, w.y)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(id: &str, x: f64) -> Word {
        Word {
            id: WordId::new(id).unwrap(),
            text: id.to_owned(),
            x,
            y: 0.0,
            z: 0,
        }
    }

    fn id(s: &str) -> WordId {
        WordId::new(s).unwrap()
    }

    #[test]
    fn a_moved_word_comes_to_the_front() {
        let mut b = Board::new(vec![word("a", 0.0), word("b", 0.0)]).unwrap();
        b.apply(BoardOp::Move {
            id: id("a"),
            x: 5.0,
            y: 6.0,
        })
        .unwrap();
        let a = b.get(&id("a")).unwrap();
        assert_eq!((a.x, a.y), (5.0, 6.0));
        assert!(a.z > b.get(&id("b")).unwrap().z);
    }

    #[test]
    fn atoms_on_missing_words_change_nothing() {
        let mut b = Board::new(vec![word("a", 0.0)]).unwrap();
        let before = b.clone();
        for op in [
            BoardOp::Delete(id("zz")),
            BoardOp::Modify {
                id: id("zz"),
                text: "x".into(),
            },
            BoardOp::Move {
                id: id("zz"),
                x: 1.0,
                y: 1.0,
            },
        ] {
            assert_eq!(b.apply(op), Err(BoardError::UnknownWord(id("zz"))));
        }
        assert_eq!(b, before);
    }

    #[test]
    fn duplicate_ids_and_bad_text_are_refused() {
        assert!(matches!(
            Board::new(vec![word("a", 0.0), word("b", 0.0), word("a", 1.0)]),
            Err(BoardError::DuplicateWord(w)) if w == id("a")
        ));
        let mut b = Board::new(vec![word("a", 0.0)]).unwrap();
        assert_eq!(
            b.apply(BoardOp::Add(word("a", 3.0))),
            Err(BoardError::DuplicateWord(id("a")))
        );
        assert_eq!(
            b.apply(BoardOp::Modify {
                id: id("a"),
                text: String::new()
            }),
            Err(BoardError::EmptyText)
        );
    }

    #[test]
    fn a_decoded_board_with_a_repeated_id_is_refused_as_a_replacement() {
        let decoded: Board = serde_json::from_str(
            r#"[{"id":"a","text":"a","x":0,"y":0},{"id":"a","text":"b","x":1,"y":0}]"#,
        )
        .unwrap();
        assert_eq!(decoded.len(), 2, "decoding keeps every word as sent");
        let b = Board::default();
        assert_eq!(
            b.check(&BoardOp::Replace(decoded)),
            Err(BoardError::DuplicateWord(id("a")))
        );
    }

    #[test]
    fn delete_and_modify_apply() {
        let mut b = Board::new(vec![word("a", 0.0), word("b", 0.0), word("c", 0.0)]).unwrap();
        b.apply(BoardOp::Modify {
            id: id("b"),
            text: "sun".into(),
        })
        .unwrap();
        b.apply(BoardOp::Delete(id("a"))).unwrap();
        assert_eq!(b.len(), 2);
        assert_eq!(b.words()[0].text, "sun");
        // The index follows the words that moved up.
        assert_eq!(b.get(&id("c")).unwrap().id, id("c"));
        assert_eq!(b.get(&id("b")).unwrap().text, "sun");
        assert_eq!(b.bytes(), "b".len() + "sun".len() + 2);
    }

    #[test]
    fn the_wire_form_is_the_list_of_words_in_order() {
        let mut b = Board::new(vec![word("b", 0.0), word("a", 1.0)]).unwrap();
        b.apply(BoardOp::Move {
            id: id("b"),
            x: 2.0,
            y: 0.0,
        })
        .unwrap();
        let json = serde_json::to_string(&b).unwrap();
        assert_eq!(
            json,
            r#"[{"id":"b","text":"b","x":2.0,"y":0.0,"z":1},{"id":"a","text":"a","x":1.0,"y":0.0,"z":0}]"#
        );
        let back: Board = serde_json::from_str(&json).unwrap();
        assert_eq!(back, b);
    }

    #[test]
    fn a_drop_after_the_top_word_is_deleted_goes_where_a_fresh_copy_puts_it() {
        let mut b = Board::new(vec![word("a", 0.0), word("b", 0.0)]).unwrap();
        for w in ["a", "b", "a"] {
            b.apply(BoardOp::Move {
                id: id(w),
                x: 1.0,
                y: 1.0,
            })
            .unwrap();
        }
        b.apply(BoardOp::Delete(id("a"))).unwrap();
        let mut fresh = Board::new(b.words().to_vec()).unwrap();
        let op = BoardOp::Add(word("c", 0.0));
        b.apply(op.clone()).unwrap();
        fresh.apply(op).unwrap();
        assert_eq!(b.words(), fresh.words());
    }

    #[test]
    fn a_servers_limits_bound_words_text_and_bytes() {
        let limits = BoardLimits {
            words: 2,
            text_chars: 3,
            bytes: 8,
        };
        let b = Board::indexed(vec![word("a", 0.0), word("b", 0.0)]);
        assert_eq!(
            b.check_within(&BoardOp::Add(word("c", 0.0)), &limits),
            Err(BoardError::TooManyWords(2))
        );
        let long = Word {
            text: "four".into(),
            ..word("c", 0.0)
        };
        assert_eq!(
            Board::default().check_within(&BoardOp::Add(long), &limits),
            Err(BoardError::TextTooLong(3))
        );
        // 4 bytes held (ids and texts); "b" becoming "xyz" makes 6.
        assert!(b
            .check_within(
                &BoardOp::Modify {
                    id: id("b"),
                    text: "xyz".into()
                },
                &limits
            )
            .is_ok());
        let roomy = BoardLimits { words: 9, ..limits };
        let wide = Word {
            id: id("cccc"),
            text: "ddd".into(),
            ..word("c", 0.0)
        };
        assert_eq!(
            b.check_within(&BoardOp::Add(wide), &roomy),
            Err(BoardError::TooManyBytes(8)),
            "4 held + 7 is over 8"
        );
    }

    #[test]
    fn displacement_is_only_defined_for_the_same_words() {
        let a = Board::new(vec![word("a", 0.0)]).unwrap();
        let b = Board::new(vec![word("a", 3.0)]).unwrap();
        assert_eq!(a.max_displacement(&b), Some(3.0));
        let c = Board::new(vec![word("c", 0.0)]).unwrap();
        assert_eq!(a.max_displacement(&c), None);
    }
}
