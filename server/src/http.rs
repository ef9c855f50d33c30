//! The HTTP surface, assembled in one place: pages, the WebSocket upgrade,
//! health, metrics and the rooms API.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tower_http::services::ServeDir;

use crate::ws;
use crate::AppState;

pub fn router(state: Arc<AppState>) -> Router {
    let static_dir = state.static_dir.clone();
    Router::new()
        .route("/", get(root))
        .route("/ws", get(upgrade))
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .route("/api/rooms", get(rooms))
        .route("/{room}", get(room_page))
        .fallback_service(ServeDir::new(static_dir))
        .with_state(state)
}

/// `/` is the landing page, or the WebSocket endpoint for the original's
/// client, which connects to the bare origin.
async fn root(
    state: State<Arc<AppState>>,
    headers: HeaderMap,
    ws: Result<ws::Upgrade, ws::NotUpgrade>,
) -> Response {
    match ws {
        Ok(ws) => upgrade(state, headers, ws).await,
        Err(_) => index(&state).await,
    }
}

async fn upgrade(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ws: ws::Upgrade,
) -> Response {
    if !origin_allowed(&state, &headers) {
        return (StatusCode::FORBIDDEN, "origin not allowed").into_response();
    }
    let max = state.config.max_message_bytes;
    ws.on_upgrade(max, move |socket| {
        let tracker = state.connections.clone();
        tracker.track_future(crate::connection::serve(socket, state))
    })
}

/// Browsers send `Origin`; other clients don't and are let through.
fn origin_allowed(state: &AppState, headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else {
        return true;
    };
    if !state.config.allowed_origins.is_empty() {
        return state.config.allowed_origins.iter().any(|a| a == origin);
    }
    let host_of = |o: &str| o.split("://").nth(1).unwrap_or(o).to_owned();
    let origin_host = host_of(origin);
    let same = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|h| h == origin_host);
    let hostname = origin_host
        .rsplit_once(':')
        .map_or(origin_host.as_str(), |(h, _)| h);
    same || matches!(hostname, "localhost" | "127.0.0.1" | "[::1]")
}

async fn room_page(
    State(state): State<Arc<AppState>>,
    axum::extract::Path(room): axum::extract::Path<String>,
) -> Response {
    if protocol::RoomName::new(&room).is_err() {
        // Not a room: maybe an asset.
        if room.starts_with('.') {
            return (StatusCode::NOT_FOUND, "not found").into_response();
        }
        return match tokio::fs::read(state.static_dir.join(&room)).await {
            Ok(bytes) => {
                let mime = match room.rsplit('.').next() {
                    Some("js") => "text/javascript",
                    Some("wasm") => "application/wasm",
                    Some("css") => "text/css",
                    Some("html") => "text/html; charset=utf-8",
                    Some("svg") => "image/svg+xml",
                    Some("png") => "image/png",
                    _ => "application/octet-stream",
                };
                ([(header::CONTENT_TYPE, mime)], bytes).into_response()
            }
            _ => (StatusCode::NOT_FOUND, "not found").into_response(),
        };
    }
    index(&state).await
}

async fn index(state: &AppState) -> Response {
    match tokio::fs::read_to_string(state.static_dir.join("index.html")).await {
        Ok(page) => Html(page).into_response(),
        Err(_) => Html(format!(
            "<!doctype html><title>attractio</title><h1>attractio is running</h1>\
             <p>The web app is not built (looked in <code>{}</code>). Build it with \
             <code>cargo xtask dist</code> or <code>trunk build</code>, or start everything \
             with <code>cargo xtask run</code>. The WebSocket endpoint is <code>/ws</code>.</p>",
            html_escape(&state.static_dir.display().to_string())
        ))
        .into_response(),
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let m = &state.metrics;
    let open = m.connections_opened.load(Relaxed) - m.connections_closed.load(Relaxed);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        m.render(state.hub.len(), open),
    )
}

async fn rooms(State(state): State<Arc<AppState>>) -> Response {
    let store = state.store.clone();
    let stored = tokio::task::spawn_blocking(move || store.count()).await;
    let stored = match stored {
        Ok(Ok(n)) => n,
        _ => {
            state.metrics.store_errors.fetch_add(1, Relaxed);
            0
        }
    };
    let active: Vec<_> = state
        .hub
        .list()
        .into_iter()
        .map(|(room, members)| serde_json::json!({"room": room, "members": members}))
        .collect();
    Json(serde_json::json!({"active": active, "stored": stored})).into_response()
}
