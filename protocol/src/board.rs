//! The board: words and where they are, and the pure rules that change it.
//!
//! The server applies every stored atom with [`Board::apply`]; the browser
//! applies the same atoms to its copy, so both agree by construction.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ids::WordId;
use crate::limits::{MAX_COORDINATE, MAX_WORDS, MAX_WORD_TEXT};

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

/// The `update` of a `modify` atom.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WordUpdate {
    pub text: String,
}

/// A change to a board that is stored (`moving` is transient and never is).
#[derive(Clone, Debug, PartialEq)]
pub enum BoardOp {
    Replace(Vec<Word>),
    Add(Word),
    Move { id: WordId, x: f64, y: f64 },
    Delete(WordId),
    Modify { id: WordId, text: String },
}

/// Why an atom could not be applied. The board is unchanged.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BoardError {
    #[error("no word {0} on this board")]
    UnknownWord(WordId),
    #[error("word {0} is already on this board")]
    DuplicateWord(WordId),
    #[error("a board holds at most {MAX_WORDS} words")]
    TooManyWords,
    #[error("a word's text must be 1 to {MAX_WORD_TEXT} characters")]
    BadText,
    #[error("coordinates must be within ±{MAX_COORDINATE}")]
    BadCoordinate,
}

/// All the words of one room, in the order they were added.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct Board {
    pub words: Vec<Word>,
}

impl Board {
    pub fn new(words: Vec<Word>) -> Result<Board, BoardError> {
        let mut board = Board::default();
        board.apply(BoardOp::Replace(words))?;
        Ok(board)
    }

    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    pub fn get(&self, id: &WordId) -> Option<&Word> {
        self.words.iter().find(|w| &w.id == id)
    }

    fn position(&self, id: &WordId) -> Result<usize, BoardError> {
        self.words
            .iter()
            .position(|w| &w.id == id)
            .ok_or_else(|| BoardError::UnknownWord(id.clone()))
    }

    fn top_z(&self) -> u64 {
        self.words.iter().map(|w| w.z).max().unwrap_or(0)
    }

    /// Checks that `op` can be applied, without applying it.
    pub fn check(&self, op: &BoardOp) -> Result<(), BoardError> {
        match op {
            BoardOp::Replace(words) => {
                if words.len() > MAX_WORDS {
                    return Err(BoardError::TooManyWords);
                }
                for (i, w) in words.iter().enumerate() {
                    check_word(w)?;
                    if words[..i].iter().any(|o| o.id == w.id) {
                        return Err(BoardError::DuplicateWord(w.id.clone()));
                    }
                }
                Ok(())
            }
            BoardOp::Add(word) => {
                check_word(word)?;
                if self.get(&word.id).is_some() {
                    return Err(BoardError::DuplicateWord(word.id.clone()));
                }
                if self.words.len() >= MAX_WORDS {
                    return Err(BoardError::TooManyWords);
                }
                Ok(())
            }
            BoardOp::Move { id, x, y } => {
                check_point(*x, *y)?;
                self.position(id).map(drop)
            }
            BoardOp::Delete(id) => self.position(id).map(drop),
            BoardOp::Modify { id, text } => {
                check_text(text)?;
                self.position(id).map(drop)
            }
        }
    }

    /// Applies `op`, or changes nothing and says why.
    pub fn apply(&mut self, op: BoardOp) -> Result<(), BoardError> {
        self.check(&op)?;
        match op {
            BoardOp::Replace(words) => self.words = words,
            BoardOp::Add(mut word) => {
                word.z = self.top_z() + 1;
                self.words.push(word);
            }
            BoardOp::Move { id, x, y } => {
                let z = self.top_z() + 1;
                let i = self.position(&id)?;
                let word = &mut self.words[i];
                word.x = x;
                word.y = y;
                word.z = z;
            }
            BoardOp::Delete(id) => {
                let i = self.position(&id)?;
                self.words.remove(i);
            }
            BoardOp::Modify { id, text } => {
                let i = self.position(&id)?;
                self.words[i].text = text;
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

fn check_text(text: &str) -> Result<(), BoardError> {
    let n = text.chars().count();
    if n == 0 || n > MAX_WORD_TEXT {
        return Err(BoardError::BadText);
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

fn check_word(w: &Word) -> Result<(), BoardError> {
    check_text(&w.text)?;
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
            Board::new(vec![word("a", 0.0), word("a", 1.0)]),
            Err(BoardError::DuplicateWord(_))
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
            Err(BoardError::BadText)
        );
    }

    #[test]
    fn delete_and_modify_apply() {
        let mut b = Board::new(vec![word("a", 0.0), word("b", 0.0)]).unwrap();
        b.apply(BoardOp::Modify {
            id: id("b"),
            text: "sun".into(),
        })
        .unwrap();
        b.apply(BoardOp::Delete(id("a"))).unwrap();
        assert_eq!(b.words.len(), 1);
        assert_eq!(b.words[0].text, "sun");
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
