//! The HTTP surface, assembled in one place: pages, the WebSocket upgrade,
//! health, metrics and the rooms API.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpSocket};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
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

/// A client has this long to send its request's head (slow-loris guard).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections the kernel may hold for us before we accept them. tokio's
/// `bind` asks for 1,024, and a burst of joins overflows that: the kernel
/// then drops the handshake and the client retries a second later. The
/// kernel caps this at `net.core.somaxconn` (4,096 by default).
const ACCEPT_BACKLOG: u32 = 4096;

/// Binds the listening socket, with the backlog above.
pub fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    // As std's `bind` does on Unix: a restart can reuse the port at once.
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(ACCEPT_BACKLOG)
}

/// Accepts connections and serves HTTP/1.1 on them until `shutdown`, then
/// lets requests in flight finish.
///
/// Our own loop rather than `axum::serve`: that one detects HTTP/2 on every
/// connection and so wraps the socket in a private type, and an upgraded
/// WebSocket can then not get its `TcpStream` back (see
/// `ws::Upgrade::on_upgrade`); nor do browsers speak HTTP/2 without TLS.
pub async fn serve(listener: TcpListener, app: Router, shutdown: CancellationToken) {
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    let requests = TaskTracker::new();
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    // Out of file descriptors, most likely: back off
                    // instead of spinning on the same error.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        // Small frames must not wait for the peer's delayed ACK (Nagle).
        let _ = tcp.set_nodelay(true);
        let conn = http1
            .serve_connection(TokioIo::new(tcp), TowerToHyperService::new(app.clone()))
            .with_upgrades();
        let shutdown = shutdown.clone();
        requests.spawn(async move {
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = shutdown.cancelled() => conn.as_mut().graceful_shutdown(),
            }
            let _ = conn.await;
        });
    }
    drop(listener);
    requests.close();
    requests.wait().await;
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
        m.render(state.hub.len(), open, state.history.held() as u64),
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
