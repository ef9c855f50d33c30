//! The typed errors the server sends back in `{"action":"error"}` frames.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What went wrong, as a stable machine-readable code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame is not valid JSON, or not a JSON object.
    MalformedJson,
    /// Binary frames are not part of the protocol.
    BinaryFrame,
    /// A known action with missing or ill-typed fields, or no `action` at all.
    InvalidMessage,
    /// `newClient` named a room that breaks the naming rule.
    InvalidRoomName,
    /// The action needs a room and the client has not joined one.
    NotJoined,
    /// The message names a room other than the one the client is in.
    WrongRoom,
    /// Too many messages too fast; the message was dropped.
    RateLimited,
    /// The word named does not exist on the board.
    UnknownWord,
    /// A word with that id already exists.
    DuplicateWord,
    /// Another member holds the word (`freeze`).
    WordLocked,
    /// The board or a word is over the limits: the protocol's
    /// (`protocol::limits`) or the server's lower ones (`--max-board-words`,
    /// `--max-word-text`, `--max-board-bytes`).
    BoardTooLarge,
    /// `freeze` of one more word than a member may hold at once (the
    /// server's `--max-locks-per-member`; a drag holds one word). The word
    /// stays free; unfreeze one first.
    TooManyLocks,
    /// A private message to a client that is not in the room.
    UnknownClient,
    /// The server is shutting down or could not do it; try again.
    Unavailable,
    /// The client's address created too many new rooms in the last minute
    /// (the server's `--new-rooms-per-minute`), or has created as many
    /// rooms as it may keep stored (`--max-stored-rooms-per-ip`); the join
    /// was refused and the client stays where it was.
    TooManyRooms,
    /// An action only the server sends (`hydrate`, `resumed`, …; see
    /// [`crate::ServerMessage::SERVER_ONLY`]); it was delivered to no one.
    ReservedAction,
    /// The frame's `opId` is not above the last one the room applied from
    /// this session: it was applied already (a resend after an unknown
    /// outcome), and nothing was done again. Not a failure for a client
    /// that resends on purpose.
    DuplicateOp,
    /// The client may not do this: a join of a room its token does not
    /// grant (or a private room without a token; the client stays where
    /// it was), or a viewer's write (nothing was delivered).
    Forbidden,
    /// The token did not verify: a bad signature, an unknown key, a
    /// refused algorithm, a wrong issuer or audience, expired or not yet
    /// valid, a missing claim. Nothing was done.
    Unauthorized,
    /// The token the connection joined with has expired: send
    /// `refreshToken` with a new one now, or the connection is closed
    /// ([`crate::close_code::TOKEN_EXPIRED`]) after a short grace.
    TokenExpired,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::MalformedJson => "malformed_json",
            ErrorCode::BinaryFrame => "binary_frame",
            ErrorCode::InvalidMessage => "invalid_message",
            ErrorCode::InvalidRoomName => "invalid_room_name",
            ErrorCode::NotJoined => "not_joined",
            ErrorCode::WrongRoom => "wrong_room",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::UnknownWord => "unknown_word",
            ErrorCode::DuplicateWord => "duplicate_word",
            ErrorCode::WordLocked => "word_locked",
            ErrorCode::BoardTooLarge => "board_too_large",
            ErrorCode::TooManyLocks => "too_many_locks",
            ErrorCode::UnknownClient => "unknown_client",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::TooManyRooms => "too_many_rooms",
            ErrorCode::ReservedAction => "reserved_action",
            ErrorCode::DuplicateOp => "duplicate_op",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::TokenExpired => "token_expired",
        }
    }

    /// Every code, for metrics that list them all.
    pub const ALL: [ErrorCode; 20] = [
        ErrorCode::MalformedJson,
        ErrorCode::BinaryFrame,
        ErrorCode::InvalidMessage,
        ErrorCode::InvalidRoomName,
        ErrorCode::NotJoined,
        ErrorCode::WrongRoom,
        ErrorCode::RateLimited,
        ErrorCode::UnknownWord,
        ErrorCode::DuplicateWord,
        ErrorCode::WordLocked,
        ErrorCode::BoardTooLarge,
        ErrorCode::TooManyLocks,
        ErrorCode::UnknownClient,
        ErrorCode::Unavailable,
        ErrorCode::TooManyRooms,
        ErrorCode::ReservedAction,
        ErrorCode::DuplicateOp,
        ErrorCode::Forbidden,
        ErrorCode::Unauthorized,
        ErrorCode::TokenExpired,
    ];
}

/// The `data` of an `error` frame.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorBody {
    pub code: ErrorCode,
    /// Human-readable detail; not stable.
    pub message: String,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ErrorBody {
        ErrorBody {
            code,
            message: message.into(),
        }
    }
}
