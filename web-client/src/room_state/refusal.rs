//! Why the room will not have this page ([`Refusal`]), and what the user
//! is told about it.

use protocol::ErrorCode;

/// Why the room will not have this page, for good: trying again with the
/// same address would only be refused again, so the page says why and
/// stops (a new link, or a reload after signing in, is a new start).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Our `newClient` got `error forbidden`: a private room, and no token
    /// (or one that does not grant this room).
    Private,
    /// Our `newClient` got `error unauthorized`: the link's token did not
    /// verify (forged, for another server, or expired).
    InvalidToken,
    /// The server closed the socket with `close_code::TOKEN_EXPIRED`: the
    /// token ran out while we were in (this page cannot refresh it).
    TokenExpired,
}

impl Refusal {
    /// The refusal an `error` answering our `newClient` is, if it is one;
    /// any other (the server busy, the room full) is worth a retry.
    pub fn of_join_error(code: ErrorCode) -> Option<Refusal> {
        match code {
            ErrorCode::Forbidden => Some(Refusal::Private),
            ErrorCode::Unauthorized => Some(Refusal::InvalidToken),
            _ => None,
        }
    }

    /// The refusal a close code is, if it is one.
    pub fn of_close(code: u16) -> Option<Refusal> {
        (code == protocol::close_code::TOKEN_EXPIRED).then_some(Refusal::TokenExpired)
    }

    /// A few words for the connection line.
    pub fn short(self) -> &'static str {
        match self {
            Refusal::Private => "private room",
            Refusal::InvalidToken => "link not valid",
            Refusal::TokenExpired => "link expired",
        }
    }

    /// What the user is told, and what to do about it.
    pub fn message(self) -> &'static str {
        match self {
            Refusal::Private => {
                "This room is private: open it with the invite link you were given. \
                 Its address alone does not let you in."
            }
            Refusal::InvalidToken => {
                "This link's access token is not valid or has expired. \
                 Ask whoever invited you for a new link."
            }
            Refusal::TokenExpired => {
                "This link's access token has expired, so you left the room. \
                 Ask whoever invited you for a new link."
            }
        }
    }
}
