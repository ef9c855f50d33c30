//! Where words go on the fridge: the fridge's size, a word's estimated
//! size, laying out a new board, finding room for one more word, keeping a
//! dragged word on the fridge, and the order a reader meets the words in.
//!
//! Positions are pixels from the fridge's top-left corner and are the same
//! for every member, so the fridge has one fixed size everywhere (a small
//! screen draws it scaled down).

use protocol::limits::MAX_WORDS;
use protocol::{Board, Word, WordId};

use crate::names::{random_token, Rng};

/// The fridge door, in CSS pixels.
pub const FRIDGE_W: f64 = 900.0;
pub const FRIDGE_H: f64 = 600.0;
/// Empty border kept when laying out words.
const MARGIN: f64 = 16.0;
/// Height of one magnet and of one row of magnets.
pub const WORD_H: f64 = 34.0;
const ROW_H: f64 = 46.0;
/// Average width of one character in the magnet font, plus the padding.
const CHAR_W: f64 = 9.5;
const PAD_W: f64 = 22.0;

/// A rectangle on the fridge.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rect {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
}

impl Rect {
    fn overlaps(&self, o: &Rect) -> bool {
        self.x < o.x + o.w && o.x < self.x + self.w && self.y < o.y + o.h && o.y < self.y + self.h
    }
}

/// The width a magnet with `text` is expected to take before it is drawn.
pub fn estimated_width(text: &str) -> f64 {
    (PAD_W + CHAR_W * text.chars().count() as f64).min(FRIDGE_W - 2.0 * MARGIN)
}

fn rect_of(w: &Word) -> Rect {
    Rect {
        x: w.x,
        y: w.y,
        w: estimated_width(&w.text),
        h: WORD_H,
    }
}

/// Hands out word ids that are unique on this board and unlikely to clash
/// with another member's: `<token>-<n>`, the token random per page load.
#[derive(Clone, Debug)]
pub struct WordIds {
    token: String,
    next: u64,
}

impl WordIds {
    pub fn new(rng: &mut Rng) -> WordIds {
        WordIds {
            token: random_token(rng, 6),
            next: 1,
        }
    }

    pub fn fresh(&mut self, board: &Board) -> WordId {
        loop {
            let id = format!("{}-{}", self.token, self.next);
            self.next += 1;
            let id = WordId::new(&id).expect("tokens are short and printable");
            if board.get(&id).is_none() {
                return id;
            }
        }
    }
}

/// Lays out a new board: the words shuffled and set in loose rows with
/// random gaps, like magnets tipped out of the box, the rows spread over
/// the door; words that do not fit in rows go anywhere on the fridge.
/// z follows the order, 1 first.
pub fn lay_out(texts: &[String], rng: &mut Rng, ids: &mut WordIds) -> Vec<Word> {
    let mut order: Vec<usize> = (0..texts.len()).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i + 1));
    }
    // Pass 1: fill rows left to right; each entry is (text, x in row, width).
    let usable_w = FRIDGE_W - 2.0 * MARGIN;
    let mut rows: Vec<Vec<(usize, f64, f64)>> = vec![Vec::new()];
    let mut x = 0.0;
    for &i in &order {
        let w = estimated_width(&texts[i]);
        let row = rows.last_mut().expect("rows is never empty");
        if x + w > usable_w && !row.is_empty() {
            rows.push(Vec::new());
            x = 0.0;
        }
        rows.last_mut()
            .expect("rows is never empty")
            .push((i, x, w));
        x += w + 6.0 + rng.unit() * 18.0;
    }
    // Pass 2: spread the rows that fit over the door's height, each row
    // shifted by a random part of its slack.
    let usable_h = FRIDGE_H - 2.0 * MARGIN - WORD_H;
    let fitting = rows.len().min((usable_h / ROW_H) as usize + 1);
    let spacing = if fitting > 1 {
        (usable_h / (fitting - 1) as f64).min(ROW_H * 1.8)
    } else {
        0.0
    };
    let top = MARGIN + (usable_h - spacing * fitting.saturating_sub(1) as f64) / 2.0;
    let mut words = Vec::with_capacity(texts.len());
    let mut board = Board::default();
    for (r, row) in rows.iter().enumerate() {
        let end = row.last().map_or(0.0, |&(_, x, w)| x + w);
        let shift = rng.unit() * (usable_w - end).max(0.0);
        for &(i, x, w) in row {
            let (px, py) = if r < fitting {
                (
                    MARGIN + shift + x,
                    top + r as f64 * spacing + rng.unit() * 8.0 - 4.0,
                )
            } else {
                random_spot(w, rng)
            };
            let word = Word {
                id: ids.fresh(&board),
                text: texts[i].clone(),
                x: px.round(),
                y: py.clamp(0.0, FRIDGE_H - WORD_H).round(),
                z: words.len() as u64 + 1,
            };
            board.push(word.clone());
            words.push(word);
        }
    }
    words
}

fn random_spot(w: f64, rng: &mut Rng) -> (f64, f64) {
    (
        MARGIN + rng.unit() * (FRIDGE_W - 2.0 * MARGIN - w).max(0.0),
        MARGIN + rng.unit() * (FRIDGE_H - 2.0 * MARGIN - WORD_H),
    )
}

/// A place for one more word: the first of a few random spots that covers
/// no other word, or the last one tried if the fridge is crowded.
pub fn place_new_word(text: &str, board: &Board, rng: &mut Rng) -> (f64, f64) {
    let w = estimated_width(text);
    let mut spot = random_spot(w, rng);
    for _ in 0..40 {
        let r = Rect {
            x: spot.0,
            y: spot.1,
            w,
            h: WORD_H,
        };
        if !board.words().iter().any(|o| rect_of(o).overlaps(&r)) {
            break;
        }
        spot = random_spot(w, rng);
    }
    (spot.0.round(), spot.1.round())
}

/// The board with more words on it: the words already there stay where
/// they are, each new one goes to a free spot on top. Words past the
/// board's limit are left out.
pub fn add_words(board: &Board, texts: &[String], rng: &mut Rng, ids: &mut WordIds) -> Vec<Word> {
    let mut grown = board.clone();
    let room = MAX_WORDS.saturating_sub(grown.words().len());
    for text in texts.iter().take(room) {
        let (x, y) = place_new_word(text, &grown, rng);
        let z = grown.words().iter().map(|w| w.z).max().unwrap_or(0) + 1;
        let word = Word {
            id: ids.fresh(&grown),
            text: text.clone(),
            x,
            y,
            z,
        };
        grown.push(word);
    }
    grown.into_words()
}

/// Where a dragged word ends up: its start plus the pointer's travel, kept
/// inside the fridge (a word `size` big never leaves it).
pub fn drag_position(start: (f64, f64), delta: (f64, f64), size: (f64, f64)) -> (f64, f64) {
    let max_x = (FRIDGE_W - size.0).max(0.0);
    let max_y = (FRIDGE_H - size.1).max(0.0);
    (
        (start.0 + delta.0).clamp(0.0, max_x).round(),
        (start.1 + delta.1).clamp(0.0, max_y).round(),
    )
}

/// The words in reading order, as indexes into `words`: lines from top to
/// bottom, each left to right. A word belongs to the line above when its
/// top is within half a magnet of that line's first word, so the loose rows
/// of a tipped-out box (and words nudged a little) read as lines.
pub fn reading_order(words: &[Word]) -> Vec<usize> {
    let mut by_top: Vec<usize> = (0..words.len()).collect();
    by_top.sort_by(|&a, &b| words[a].y.total_cmp(&words[b].y));
    let mut order = Vec::with_capacity(words.len());
    let mut line: Vec<usize> = Vec::new();
    let mut line_top = f64::NEG_INFINITY;
    for i in by_top {
        if words[i].y - line_top > WORD_H / 2.0 {
            line.sort_by(|&a, &b| words[a].x.total_cmp(&words[b].x));
            order.append(&mut line);
            line_top = words[i].y;
        }
        line.push(i);
    }
    line.sort_by(|&a, &b| words[a].x.total_cmp(&words[b].x));
    order.append(&mut line);
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("word{i}")).collect()
    }

    #[test]
    fn a_laid_out_board_has_every_word_once_inside_the_fridge() {
        let mut rng = Rng::new(7);
        let mut ids = WordIds::new(&mut rng);
        let input = texts(300);
        let words = lay_out(&input, &mut rng, &mut ids);
        assert_eq!(words.len(), 300);
        let board = Board::new(words.clone()).expect("ids are unique, texts valid");
        let mut seen: Vec<_> = board.words().iter().map(|w| w.text.clone()).collect();
        seen.sort();
        let mut expected = input.clone();
        expected.sort();
        assert_eq!(seen, expected);
        for w in &words {
            assert!(
                w.x >= 0.0 && w.x + estimated_width(&w.text) <= FRIDGE_W,
                "{w:?}"
            );
            assert!(w.y >= 0.0 && w.y + WORD_H <= FRIDGE_H, "{w:?}");
        }
    }

    #[test]
    fn words_that_fit_in_rows_do_not_overlap() {
        let mut rng = Rng::new(3);
        let mut ids = WordIds::new(&mut rng);
        let words = lay_out(&texts(40), &mut rng, &mut ids);
        for (i, a) in words.iter().enumerate() {
            for b in &words[i + 1..] {
                assert!(!rect_of(a).overlaps(&rect_of(b)), "{a:?} {b:?}");
            }
        }
    }

    #[test]
    fn fresh_ids_skip_ids_already_on_the_board() {
        let mut rng = Rng::new(9);
        let mut ids = WordIds::new(&mut rng);
        let first = ids.fresh(&Board::default());
        let mut again = WordIds {
            token: ids.token.clone(),
            next: 1,
        };
        let board = Board::new(vec![Word {
            id: first.clone(),
            text: "x".into(),
            x: 0.0,
            y: 0.0,
            z: 1,
        }])
        .unwrap();
        assert_ne!(again.fresh(&board), first);
    }

    #[test]
    fn a_new_word_avoids_the_words_already_there() {
        let mut rng = Rng::new(11);
        let mut ids = WordIds::new(&mut rng);
        let board = Board::new(lay_out(&texts(10), &mut rng, &mut ids)).unwrap();
        let (x, y) = place_new_word("hello", &board, &mut rng);
        let r = Rect {
            x,
            y,
            w: estimated_width("hello"),
            h: WORD_H,
        };
        assert!(!board.words().iter().any(|o| rect_of(o).overlaps(&r)));
    }

    #[test]
    fn more_words_join_the_board_without_moving_the_old_ones() {
        let mut rng = Rng::new(5);
        let mut ids = WordIds::new(&mut rng);
        let board = Board::new(lay_out(&texts(8), &mut rng, &mut ids)).unwrap();
        let more: Vec<String> = vec!["late".into(), "later".into()];
        let grown = Board::new(add_words(&board, &more, &mut rng, &mut ids)).unwrap();
        assert_eq!(grown.words().len(), 10);
        assert_eq!(grown.words()[..8], board.words()[..]);
        let top = board.words().iter().map(|w| w.z).max().unwrap();
        assert!(grown.words()[8..].iter().all(|w| w.z > top));
    }

    #[test]
    fn a_dragged_word_stays_on_the_fridge() {
        assert_eq!(
            drag_position((10.0, 10.0), (-50.0, 5.0), (60.0, 34.0)),
            (0.0, 15.0)
        );
        assert_eq!(
            drag_position((900.0, 600.0), (500.0, 500.0), (60.0, 34.0)),
            (FRIDGE_W - 60.0, FRIDGE_H - 34.0)
        );
    }

    fn at(text: &str, x: f64, y: f64) -> Word {
        Word {
            id: WordId::new(text).unwrap(),
            text: text.into(),
            x,
            y,
            z: 1,
        }
    }

    #[test]
    fn words_read_line_by_line_left_to_right() {
        let words = [
            at("fridge", 300.0, 102.0),
            at("hums", 20.0, 160.0),
            at("the", 40.0, 98.0),
            at("night", 140.0, 151.0),
            at("old", 150.0, 95.0),
            at("at", 80.0, 158.0),
        ];
        let read: Vec<&str> = reading_order(&words)
            .into_iter()
            .map(|i| words[i].text.as_str())
            .collect();
        assert_eq!(read, ["the", "old", "fridge", "hums", "at", "night"]);
    }
}
