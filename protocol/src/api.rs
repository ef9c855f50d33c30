//! The bodies of the server API (`/api/rooms/…`), for the app's backend,
//! not for browsers: what it sends and what it gets back. Their JSON
//! Schemas are generated like the frames' (`protocol/schema/api.schema.json`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::board::Word;
use crate::ids::ClientId;
use crate::server::PresenceEntry;

/// The `from` of a message the app's backend published: a member's `from`
/// is always an object (the server overwrites whatever a member wrote
/// there), so this string is the server's alone.
pub const FROM_SERVER: &str = "server";

/// `POST /api/rooms/{room}/publish`: delivered to every member as
/// `{"action": action, "data": data, "from": "server", "seq", "epoch"}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    /// Any action a member may send too (`talkToRoom`, or the app's own);
    /// one only the server sends is refused (`reserved_action`).
    pub action: String,
    #[serde(default)]
    pub data: Value,
    /// The same key within the server's idempotency window publishes once:
    /// a retry gets the first publish's `epoch` and `seq` back.
    #[serde(
        rename = "idempotencyKey",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub idempotency_key: Option<String>,
}

/// Where a published message is in its room's history.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Published {
    pub epoch: u64,
    pub seq: u64,
}

/// `GET /api/rooms/{room}`: the room as it is now.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RoomView {
    pub room: String,
    pub epoch: u64,
    /// The number of the room's latest frame.
    pub seq: u64,
    /// Most recently active first, as in `presence`.
    pub members: Vec<PresenceEntry>,
    pub words: Vec<Word>,
}

/// `GET /api/rooms/{room}/history?after=SEQ&limit=N`: the numbered frames
/// after `SEQ` every member was sent (private messages are left out), as
/// the members got them, oldest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HistoryPage {
    pub epoch: u64,
    pub frames: Vec<Value>,
}

/// The `410` of the history: the room no longer holds the frames right
/// after `after` (or `epoch` is not the one the caller knew); `oldest` is
/// the first it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct HistoryGone {
    pub epoch: u64,
    pub oldest: u64,
}

/// `POST /api/rooms/{room}/disconnect`: one member by `id`, or every seat
/// of the app's `user`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DisconnectRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<ClientId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Refuse the user's (or, for an anonymous member, its address's)
    /// joins of this room for this long (at most the server's bound).
    #[serde(
        rename = "banSeconds",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ban_seconds: Option<u64>,
}

/// How many seats a disconnect gave up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Disconnected {
    pub disconnected: usize,
}

/// Every refusal of the API, with its HTTP status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ApiError {
    pub error: ApiErrorBody,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ApiErrorBody {
    /// Stable: `unauthorized` (401), `not_found` (404, also every API
    /// path while the server has no `--api-key`), `malformed_json`,
    /// `invalid_message`, `invalid_room_name` (400), `reserved_action`
    /// (400), `method_not_allowed` (405), `too_large` (413), `unavailable`
    /// (503).
    pub code: String,
    /// Human-readable detail; not stable.
    pub message: String,
}

/// A webhook's body (README "Webhooks"), signed in the
/// `Attractio-Signature` header: `t=<unix seconds>,v1=<hex HMAC-SHA256 of
/// "<t>.<body>">` with the server's `--webhook-secret`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WebhookEvent {
    /// The same for every delivery of the event: receivers dedupe by it.
    pub id: String,
    /// `room.created`, `room.vacated`, `member.joined`, `member.left`,
    /// `message`.
    #[serde(rename = "type")]
    pub kind: String,
    pub room: String,
    pub epoch: u64,
    /// The room's position (its latest frame) when the entry that caused
    /// the event was applied: a gap means events were missed, and
    /// `GET /api/rooms/{room}/history?after=` has what they were about.
    pub seq: u64,
    /// When the room applied it, in ms since the Unix epoch.
    pub at: u64,
    /// A member's `{id, name, color, user?, role?}` (`member.left` adds
    /// `reason`: `left`, `window ended`, `kicked`, `room closed`), a
    /// `message`'s `{from, message}` (`from` a member or `"server"`), or
    /// `null`.
    pub data: Value,
}

/// Every body of the API, for one schema file.
#[derive(JsonSchema)]
#[allow(dead_code)]
pub struct ApiBodies {
    publish: PublishRequest,
    published: Published,
    room: RoomView,
    history: HistoryPage,
    history_gone: HistoryGone,
    disconnect: DisconnectRequest,
    disconnected: Disconnected,
    error: ApiError,
    webhook: WebhookEvent,
}
