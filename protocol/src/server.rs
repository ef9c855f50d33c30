//! Frames the server sends.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::board::{Board, Word, WordUpdate};
use crate::client::CustomMessage;
use crate::error::ErrorBody;
use crate::ids::{ClientId, Member, Role, WordId};
use crate::presence::PresenceDiff;

/// What the server tells a client. Relays of what another member did carry
/// that member as `from`, stamped by the server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "action", rename_all = "camelCase")]
pub enum ServerMessage {
    /// First frame on every connection: who you are.
    Hello {
        data: Hello,
    },
    /// A chat line; without `from` it is the server's (welcome, goodbye).
    TalkToRoom {
        data: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<Member>,
    },
    Echo {
        data: Value,
    },
    PrivateMessage {
        data: Value,
        from: Member,
    },
    /// The room's members, most recently active first: the whole list, sent
    /// once to a member that joins or resumes. Not numbered, never replayed.
    Presence {
        data: Vec<PresenceEntry>,
    },
    /// What changed in the member list since the last `presence` or
    /// `presenceDiff`. Not numbered, never replayed; a resumer gets the
    /// whole list again instead.
    PresenceDiff {
        data: PresenceDiff,
    },
    /// The room is full: three rooms with no seat taken (present or held
    /// for a resume) right now, as paths (`/fridge-2`).
    RoomFull {
        data: Vec<String>,
    },
    Error {
        data: ErrorBody,
    },
    /// The board, for a client that just joined.
    Hydrate {
        data: Board,
    },
    /// Someone replaced the board.
    Rehydrate {
        data: Board,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<Member>,
    },
    /// No board anywhere: ask the user for words.
    NewRoom,
    /// Please answer with `stateUpdate` or `emptyRoom`.
    RequestCurrentState,
    NewWord {
        data: Word,
        from: Member,
    },
    Moving {
        #[serde(rename = "elementID")]
        element_id: WordId,
        dx: f64,
        dy: f64,
        from: Member,
    },
    MoveEnd {
        #[serde(rename = "elementID")]
        element_id: WordId,
        #[serde(rename = "finalX")]
        final_x: f64,
        #[serde(rename = "finalY")]
        final_y: f64,
        from: Member,
    },
    /// A word was taken; outline it with `color` and `clientName`.
    Freeze {
        #[serde(rename = "elementID")]
        element_id: WordId,
        #[serde(rename = "clientName")]
        client_name: String,
        color: String,
        from: Member,
    },
    /// A word was let go, by its holder or because the holder left.
    Unfreeze {
        #[serde(rename = "elementID")]
        element_id: WordId,
        from: Member,
    },
    Delete {
        #[serde(rename = "elementID")]
        element_id: WordId,
        from: Member,
    },
    Modify {
        #[serde(rename = "elementID")]
        element_id: WordId,
        update: WordUpdate,
        from: Member,
    },
    /// Answer to a `newClient` with `resumeToken`.
    Resumed {
        data: Resumed,
    },
    /// A custom action relayed as sent, with `from` added: the member who
    /// sent it, or the string `"server"` ([`crate::api::FROM_SERVER`]) for
    /// a message the app's backend published (`POST
    /// /api/rooms/{room}/publish`). A member's own `from` is always
    /// replaced by the server, so no member can pass for the backend.
    #[serde(untagged)]
    Custom(CustomMessage),
}

impl ServerMessage {
    /// The actions only the server sends: every `action` of
    /// [`ServerMessage`] that [`crate::ClientMessage`] does not also take.
    /// A client frame naming one is refused with
    /// [`ErrorCode::ReservedAction`](crate::ErrorCode::ReservedAction) and
    /// delivered to no one: relayed, it would pass for the server's word (a
    /// forged `resumed` takes over an identity, a forged `hydrate` wipes a
    /// board). A test walks the generated schemas, so a new variant cannot
    /// be left out.
    pub const SERVER_ONLY: [&'static str; 10] = [
        "hello",
        "presence",
        "presenceDiff",
        "roomFull",
        "error",
        "hydrate",
        "rehydrate",
        "newRoom",
        "requestCurrentState",
        "resumed",
    ];

    /// Whether `action` is one of [`ServerMessage::SERVER_ONLY`] (exact,
    /// case-sensitive, as serde reads the tag).
    pub fn is_server_only(action: &str) -> bool {
        ServerMessage::SERVER_ONLY.contains(&action)
    }
}

/// The `data` of `hello`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Hello {
    pub id: ClientId,
    pub name: String,
    pub color: String,
    /// Present this in `newClient` after a dropped connection to resume.
    #[serde(
        rename = "resumeToken",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub resume_token: Option<String>,
}

/// One member in a `presence` list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PresenceEntry {
    #[serde(flatten)]
    pub member: Member,
    /// The member's connection dropped; its seat is held for a while.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub away: bool,
    /// The app's user id (the token's `sub`), for a member that joined
    /// with a token: two seats of one user (two tabs) share it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `viewer` for a read-only member; absent for a full member.
    #[serde(default, skip_serializing_if = "Role::is_member")]
    pub role: Role,
}

/// The `data` of `resumed`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Resumed {
    /// Every message after `lastSeq` was replayed before this frame.
    pub recovered: bool,
    pub id: ClientId,
    pub name: String,
    pub color: String,
    #[serde(rename = "resumeToken")]
    pub resume_token: String,
    /// The highest `opId` of this session the room applied (absent: none,
    /// or the seat was not kept). Operations sent with a higher `opId`
    /// that the client is not sure arrived should be sent again, with the
    /// same `opId`; lower ones were applied and would be dropped as
    /// duplicates.
    #[serde(rename = "lastOp", default, skip_serializing_if = "Option::is_none")]
    pub last_op: Option<u64>,
}

/// A server frame: a message, plus the room's sequence number and epoch on
/// every message that belongs to a room's history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ServerFrame {
    #[serde(flatten)]
    pub message: ServerMessage,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
}

impl ServerFrame {
    pub fn decode(text: &str) -> Result<ServerFrame, serde_json::Error> {
        serde_json::from_str(text)
    }

    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("a ServerFrame always serialises")
    }
}

impl From<ServerMessage> for ServerFrame {
    fn from(message: ServerMessage) -> ServerFrame {
        ServerFrame {
            message,
            seq: None,
            epoch: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The `action` tags a generated schema lists, one per tagged variant
    /// (the untagged `Custom` has none).
    fn tags(schema: &str) -> BTreeSet<String> {
        let schema: Value = serde_json::from_str(schema).unwrap();
        schema["anyOf"]
            .as_array()
            .expect("a tagged enum is an anyOf")
            .iter()
            .filter_map(|v| v["properties"]["action"]["const"].as_str())
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn the_server_only_actions_are_the_server_tags_no_client_message_takes() {
        let server = tags(&crate::schema::server_schema());
        let client = tags(&crate::schema::client_schema());
        assert!(server.contains("hydrate") && client.contains("newClient"));
        let server_only: BTreeSet<String> = server.difference(&client).cloned().collect();
        let listed: BTreeSet<String> = ServerMessage::SERVER_ONLY
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(listed, server_only, "ServerMessage::SERVER_ONLY drifted");
    }
}
