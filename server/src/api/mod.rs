//! The server API: the app's backend in the loop (README "From your
//! backend"). It publishes into a room as the server, looks at a room,
//! reads its history, disconnects members and closes rooms, with a key of
//! `--api-key` in `Authorization: Bearer`. Every answer is JSON; every
//! refusal a typed error ([`protocol::api::ApiError`]) with its status.
//!
//! This module only reads requests and writes answers: the room decides,
//! through [`Call`]s it applies like any command (`room/api.rs`), and in
//! cluster mode as entries of its log.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use protocol::api::{
    ApiError, ApiErrorBody, DisconnectRequest, Disconnected, HistoryPage, PublishRequest, Published,
};
use protocol::{ClientMessage, RoomName, ServerMessage};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::admission::AddressKey;
use crate::auth::Access;
use crate::config::Config;
use crate::room::{Answer, Call, Once, Target};
use crate::AppState;
use memory::{Banned, Bans};

mod memory;

/// The API's routes, merged into `http::router`.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/api/rooms/{room}",
            get(view).delete(close).fallback(other_method),
        )
        .route(
            "/api/rooms/{room}/publish",
            post(publish).fallback(other_method),
        )
        .route(
            "/api/rooms/{room}/history",
            get(history).fallback(other_method),
        )
        .route(
            "/api/rooms/{room}/disconnect",
            post(disconnect).fallback(other_method),
        )
}

/// How long a request waits for its room (a room busy loading, or in
/// cluster mode a log that does not answer) before it is told 503.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// Longest `idempotencyKey`, in bytes.
const MAX_IDEMPOTENCY_KEY: usize = 256;

/// What the API keeps between requests: the keys, and the bans.
pub struct Api {
    /// SHA-256 of each key: compared in constant time whatever their
    /// lengths, and the keys themselves are not kept.
    keys: Vec<[u8; 32]>,
    history_limit: usize,
    /// Rejoins refused after a disconnect with `banSeconds`.
    bans: Bans,
}

impl Api {
    pub fn from_config(config: &Config) -> Api {
        Api {
            keys: config
                .api_keys
                .iter()
                .filter(|k| !k.is_empty())
                .map(|k| Sha256::digest(k.as_bytes()).into())
                .collect(),
            history_limit: config.api_history_limit as usize,
            bans: Bans {
                longest: config.api_max_ban,
                max: config.api_bans as usize,
                until: Mutex::new(HashMap::new()),
            },
        }
    }

    /// Refuses the rejoins of a member the app disconnected with a ban,
    /// for `ban` (at most `--api-max-ban`): its user's, or, for a member
    /// without one, its address's. Called by its connection, the one
    /// place that knows the address.
    pub fn ban(
        &self,
        room: &RoomName,
        access: &Access,
        address: AddressKey,
        ban: Option<Duration>,
    ) {
        let Some(ban) = ban.filter(|b| !b.is_zero()) else {
            return;
        };
        let who = match &access.user {
            Some(user) => Banned::User(user.clone()),
            None => Banned::Address(address),
        };
        self.bans.add((room.clone(), who), ban);
    }

    /// How long joins of `room` by this user or address are still refused.
    pub fn banned(
        &self,
        room: &RoomName,
        access: &Access,
        address: AddressKey,
    ) -> Option<Duration> {
        let by_user = access
            .user
            .as_ref()
            .and_then(|u| self.bans.left(&(room.clone(), Banned::User(u.clone()))));
        by_user.or_else(|| self.bans.left(&(room.clone(), Banned::Address(address))))
    }

    /// Whether the request carries one of the keys (for `GET /api/rooms`:
    /// the full list).
    pub fn authorized(&self, headers: &HeaderMap) -> bool {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|k| <[u8; 32]>::from(Sha256::digest(k.trim().as_bytes())));
        let Some(presented) = presented else {
            return false;
        };
        // Every key is compared, so the time taken does not say which.
        self.keys
            .iter()
            .fold(subtle::Choice::from(0), |found, key| {
                found | key.ct_eq(&presented)
            })
            .into()
    }
}

/// A request the API's key let in.
struct Backend;

impl FromRequestParts<Arc<AppState>> for Backend {
    type Rejection = Refusal;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        if state.api.keys.is_empty() {
            return Err(Refusal::NotFound(
                "the server API is off (no --api-key)".into(),
            ));
        }
        if !state.api.authorized(&parts.headers) {
            return Err(Refusal::Unauthorized);
        }
        Ok(Backend)
    }
}

/// Why a request was refused; each is an HTTP status and a stable code.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("an API key is needed: Authorization: Bearer <one of --api-key>")]
    Unauthorized,
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    InvalidRoomName(String),
    #[error("the body is not JSON: {0}")]
    MalformedJson(String),
    #[error("{0}")]
    InvalidMessage(String),
    #[error("`{0}` is sent by the server only; nothing was delivered")]
    ReservedAction(String),
    #[error("the body is over --max-message-bytes ({0} bytes)")]
    TooLarge(usize),
    #[error("{0}")]
    Unavailable(String),
    #[error("this path does not take that method")]
    MethodNotAllowed,
}

impl Refusal {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Refusal::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Refusal::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Refusal::InvalidRoomName(_) => (StatusCode::BAD_REQUEST, "invalid_room_name"),
            Refusal::MalformedJson(_) => (StatusCode::BAD_REQUEST, "malformed_json"),
            Refusal::InvalidMessage(_) => (StatusCode::BAD_REQUEST, "invalid_message"),
            Refusal::ReservedAction(_) => (StatusCode::BAD_REQUEST, "reserved_action"),
            Refusal::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            Refusal::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            Refusal::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let body = ApiError {
            error: ApiErrorBody {
                code: code.into(),
                message: self.to_string(),
            },
        };
        (status, Json(body)).into_response()
    }
}

/// A method an API path does not take: 405, after the key (404 while
/// the API is off, 401 without a key, as for every other path).
async fn other_method(_: Backend) -> Refusal {
    Refusal::MethodNotAllowed
}

/// The `{room}` of a path, as it was written (percent-decoded once); a
/// path that does not decode is an invalid room name, told in JSON.
struct RoomPath(String);

impl FromRequestParts<Arc<AppState>> for RoomPath {
    type Rejection = Refusal;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(room)) => Ok(RoomPath(room)),
            Err(e) => Err(Refusal::InvalidRoomName(e.body_text())),
        }
    }
}

fn room_name(room: &str) -> Result<RoomName, Refusal> {
    RoomName::new(room).map_err(|e| Refusal::InvalidRoomName(format!("room name {room:?} {e}")))
}

/// Asks the room, within [`ANSWER_WITHIN`].
async fn ask(state: &AppState, room: &RoomName, call: Call) -> Result<Answer, Refusal> {
    let unavailable = || Refusal::Unavailable("the room did not answer; try again".into());
    match tokio::time::timeout(ANSWER_WITHIN, state.hub.call(room, call)).await {
        Ok(Some(answer)) => Ok(answer),
        _ => Err(unavailable()),
    }
}

/// Whether `room` exists: open here, stored (one server) or with a log in
/// Redis (cluster mode). A room that does not is not started by a look.
async fn exists(state: &AppState, room: &RoomName) -> Result<bool, Refusal> {
    if state.hub.is_open(room) {
        return Ok(true);
    }
    // cluster hook: a room is its log in Redis
    if let Some(cluster) = state.hub.cluster() {
        return match cluster.epoch(room.as_str()).await {
            Ok((epoch, _)) => Ok(epoch.is_some()),
            Err(e) => Err(Refusal::Unavailable(format!("the cluster's store: {e}"))),
        };
    }
    let store = state.store.clone();
    let name = room.clone();
    match tokio::task::spawn_blocking(move || store.contains(&name)).await {
        Ok(Ok(stored)) => Ok(stored),
        _ => {
            state.metrics.store_errors.fetch_add(1, Relaxed);
            Err(Refusal::Unavailable("the store could not be read".into()))
        }
    }
}

async fn existing(state: &AppState, room: &str) -> Result<RoomName, Refusal> {
    let room = room_name(room)?;
    if !exists(state, &room).await? {
        return Err(no_such_room(&room));
    }
    Ok(room)
}

fn no_such_room(room: &RoomName) -> Refusal {
    Refusal::NotFound(format!("room {room} is neither open nor stored"))
}

/// Reads a JSON body of at most `--max-message-bytes`.
async fn json_body<T: serde::de::DeserializeOwned>(
    state: &AppState,
    body: Body,
) -> Result<T, Refusal> {
    let max = state.config.max_message_bytes;
    let bytes: Bytes = axum::body::to_bytes(body, max)
        .await
        .map_err(|_| Refusal::TooLarge(max))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Data => Refusal::InvalidMessage(e.to_string()),
            _ => Refusal::MalformedJson(e.to_string()),
        }
    })
}

#[derive(Deserialize)]
struct PublishQuery {
    #[serde(default)]
    create: bool,
}

/// `POST /api/rooms/{room}/publish`.
async fn publish(
    State(state): State<Arc<AppState>>,
    _: Backend,
    RoomPath(room): RoomPath,
    query: Result<Query<PublishQuery>, axum::extract::rejection::QueryRejection>,
    body: Body,
) -> Result<Json<Published>, Refusal> {
    let Query(query) = query.map_err(|e| Refusal::InvalidMessage(e.body_text()))?;
    let room = room_name(&room)?;
    let request: PublishRequest = json_body(&state, body).await?;
    if ServerMessage::is_server_only(&request.action) {
        return Err(Refusal::ReservedAction(request.action));
    }
    // A member's board action or request means something only from a
    // member; chat (`talkToRoom`) and the app's own actions may come from
    // the server.
    if ClientMessage::is_known(&request.action) && request.action != "talkToRoom" {
        return Err(Refusal::InvalidMessage(format!(
            "`{}` is a member's action; publish `talkToRoom` or an action of the app's own",
            request.action
        )));
    }
    if request.action.is_empty() {
        return Err(Refusal::InvalidMessage("`action` is empty".into()));
    }
    if !query.create && !exists(&state, &room).await? {
        return Err(no_such_room(&room));
    }
    if let Some(key) = &request.idempotency_key {
        if key.len() > MAX_IDEMPOTENCY_KEY {
            return Err(Refusal::InvalidMessage(format!(
                "`idempotencyKey` is over {MAX_IDEMPOTENCY_KEY} bytes"
            )));
        }
    }
    // The room dedupes by key (`room/api.rs`), so a retry sent to any node
    // of a cluster, or at once with its first try, delivers once.
    let call = Call::Publish {
        action: request.action,
        data: request.data,
        once: request.idempotency_key.map(|key| Once {
            key,
            at_ms: crate::history::now_ms(),
        }),
    };
    Ok(Json(publish_once(&state, &room, call).await?))
}

async fn publish_once(state: &AppState, room: &RoomName, call: Call) -> Result<Published, Refusal> {
    match ask(state, room, call).await? {
        // Counted by the room when it delivers (a retry is not).
        Answer::Published(published) => Ok(published),
        other => Err(unexpected(other)),
    }
}

fn unexpected(answer: Answer) -> Refusal {
    tracing::error!("the room answered {answer:?} to another call");
    Refusal::Unavailable("the room answered something else".into())
}

/// `GET /api/rooms/{room}`.
async fn view(
    State(state): State<Arc<AppState>>,
    _: Backend,
    RoomPath(room): RoomPath,
) -> Result<Response, Refusal> {
    let room = existing(&state, &room).await?;
    match ask(&state, &room, Call::View).await? {
        Answer::View(view) => Ok(Json(view).into_response()),
        other => Err(unexpected(other)),
    }
}

#[derive(Deserialize)]
struct HistoryQuery {
    #[serde(default)]
    after: u64,
    limit: Option<u64>,
}

/// `GET /api/rooms/{room}/history?after=SEQ&limit=N`: `410 {epoch, oldest}`
/// when the room no longer holds the frames right after `SEQ`.
async fn history(
    State(state): State<Arc<AppState>>,
    _: Backend,
    RoomPath(room): RoomPath,
    query: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Refusal> {
    let Query(query) = query.map_err(|e| Refusal::InvalidMessage(e.body_text()))?;
    let room = existing(&state, &room).await?;
    let limit = query.limit.map_or(state.api.history_limit, |l| {
        (l as usize).min(state.api.history_limit)
    });
    let call = Call::History {
        after: query.after,
        limit,
    };
    match ask(&state, &room, call).await? {
        Answer::History(Ok((epoch, frames))) => {
            // Each frame as the members got it (the server wrote it: it is
            // JSON), parsed off the room's task.
            let frames = frames
                .iter()
                .filter_map(|f| serde_json::from_slice(f.as_bytes()).ok())
                .collect();
            Ok(Json(HistoryPage { epoch, frames }).into_response())
        }
        Answer::History(Err(gone)) => Ok((StatusCode::GONE, Json(gone)).into_response()),
        other => Err(unexpected(other)),
    }
}

/// `POST /api/rooms/{room}/disconnect {id}|{user}`.
async fn disconnect(
    State(state): State<Arc<AppState>>,
    _: Backend,
    RoomPath(room): RoomPath,
    body: Body,
) -> Result<Json<Disconnected>, Refusal> {
    let room = room_name(&room)?;
    let request: DisconnectRequest = json_body(&state, body).await?;
    let target = match (request.id, request.user) {
        (Some(id), None) => Target::Member(id),
        (None, Some(user)) => Target::User(user),
        _ => {
            return Err(Refusal::InvalidMessage(
                "name one member: `id`, or `user`".into(),
            ))
        }
    };
    if !exists(&state, &room).await? {
        return Err(no_such_room(&room));
    }
    let call = Call::Disconnect {
        target,
        ban_seconds: request.ban_seconds,
    };
    match ask(&state, &room, call).await? {
        Answer::Disconnected(n) => {
            state.metrics.api_disconnected.fetch_add(n as u64, Relaxed);
            Ok(Json(Disconnected { disconnected: n }))
        }
        other => Err(unexpected(other)),
    }
}

/// `DELETE /api/rooms/{room}`: `204` once the room is closed and its
/// record deleted.
async fn close(
    State(state): State<Arc<AppState>>,
    _: Backend,
    RoomPath(room): RoomPath,
) -> Result<Response, Refusal> {
    let room = existing(&state, &room).await?;
    match ask(&state, &room, Call::Close).await? {
        Answer::Closed(true) => {
            state.metrics.api_rooms_closed.fetch_add(1, Relaxed);
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        Answer::Closed(false) => Err(Refusal::Unavailable(
            "the room was closed but its record could not be deleted; try again".into(),
        )),
        other => Err(unexpected(other)),
    }
}
