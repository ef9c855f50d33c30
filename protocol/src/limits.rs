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
/// Largest coordinate magnitude accepted for a word position or move delta.
pub const MAX_COORDINATE: f64 = 1_000_000.0;
