//! Limits every party agrees on. The server enforces them; clients can check
//! before sending.

/// Longest room name, in characters.
pub const MAX_ROOM_NAME: usize = 64;
/// Longest word id, in bytes.
pub const MAX_WORD_ID: usize = 64;
/// Longest text of one word, in characters.
pub const MAX_WORD_TEXT: usize = 200;
/// Most words one board may hold.
pub const MAX_WORDS: usize = 2_000;
/// Most bytes of word ids and texts (UTF-8) one board may hold: 2,000
/// words of 64-byte ids and texts of a few words each.
pub const MAX_BOARD_BYTES: usize = 256 * 1024;
/// Largest coordinate magnitude accepted for a word position or move delta.
pub const MAX_COORDINATE: f64 = 1_000_000.0;

/// What one board may hold. A server may set lower bounds than the
/// protocol's own (the default); a board within a server's is within the
/// protocol's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BoardLimits {
    /// Words on the board.
    pub words: usize,
    /// Characters of one word's text.
    pub text_chars: usize,
    /// Bytes of every word's id and text together.
    pub bytes: usize,
}

impl Default for BoardLimits {
    fn default() -> BoardLimits {
        BoardLimits {
            words: MAX_WORDS,
            text_chars: MAX_WORD_TEXT,
            bytes: MAX_BOARD_BYTES,
        }
    }
}
