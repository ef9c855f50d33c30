//! Identifiers with their validation: a value of these types is always valid.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::limits::{MAX_ROOM_NAME, MAX_WORD_ID};

/// A connection's id, unique for the life of a server process.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(transparent)]
pub struct ClientId(pub u64);

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidName {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {0} characters")]
    TooLong(usize),
    #[error("may only contain a-z, 0-9 and '-' (found {0:?})")]
    BadCharacter(char),
}

/// A room's name: 1 to 64 of `[a-z0-9-]`, the rule the original's page paths
/// followed. Upper-case ASCII letters are folded to lower case, so `/Fridge`
/// and `/fridge` are the same room; anything else outside the set is refused.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(try_from = "String", into = "String")]
#[schemars(with = "String")]
pub struct RoomName(String);

impl RoomName {
    pub fn new(name: &str) -> Result<RoomName, InvalidName> {
        if name.is_empty() {
            return Err(InvalidName::Empty);
        }
        if let Some(c) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
        {
            return Err(InvalidName::BadCharacter(c));
        }
        if name.len() > MAX_ROOM_NAME {
            return Err(InvalidName::TooLong(MAX_ROOM_NAME));
        }
        Ok(RoomName(name.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for RoomName {
    type Error = InvalidName;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        RoomName::new(&s)
    }
}

impl From<RoomName> for String {
    fn from(r: RoomName) -> String {
        r.0
    }
}

impl fmt::Display for RoomName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A word's id on a board: 1 to 64 bytes without control characters.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(try_from = "String", into = "String")]
#[schemars(with = "String")]
pub struct WordId(String);

impl WordId {
    pub fn new(id: &str) -> Result<WordId, InvalidName> {
        if id.is_empty() {
            return Err(InvalidName::Empty);
        }
        if id.len() > MAX_WORD_ID {
            return Err(InvalidName::TooLong(MAX_WORD_ID));
        }
        if let Some(c) = id.chars().find(|c| c.is_control()) {
            return Err(InvalidName::BadCharacter(c));
        }
        Ok(WordId(id.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for WordId {
    type Error = InvalidName;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        WordId::new(&s)
    }
}

impl From<WordId> for String {
    fn from(w: WordId) -> String {
        w.0
    }
}

impl fmt::Display for WordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who someone is in a room, as the server stamps it on what they send.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Member {
    pub id: ClientId,
    /// Random readable name without spaces, e.g. `brave-otter`.
    pub name: String,
    /// CSS colour, `#rrggbb`.
    pub color: String,
}

/// What a member may do in a room: everything (`member`, the default), or
/// only watch (`viewer`: it receives everything and may `echo`, but may
/// not change the board, take words, chat or send private or custom
/// messages). Granted by the token a client joins with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    #[default]
    Member,
    Viewer,
}

impl Role {
    pub fn is_member(&self) -> bool {
        *self == Role::Member
    }
}
