//! The HTTP surface, assembled in one place: pages, the WebSocket upgrade,
//! health, metrics and the rooms API.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::{self, Relaxed};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpSocket};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use tower_http::services::ServeDir;

use crate::admission::{AddressKey, Admission, Admitted, Refusal, SocketSlot};
use crate::ws;
use crate::AppState;

/// The routes, in one table. Everything that is not one of them goes to
/// [`ServeDir`] rooted at the static folder, the only way a request reaches
/// the filesystem: it percent-decodes once, refuses `..`, absolute and
/// drive-prefixed components, and guesses `Content-Type` from the file's
/// extension (`mime_guess`). What it does not find is a room page (the
/// app's `index.html`) when the path is one valid room name, else 404.
///
/// Symlinks inside the static folder are followed, also when they point
/// outside it: the folder is the operator's (trunk never writes links
/// there), and no request can create one. Do not point `--static-dir` at a
/// folder others can write to.
///
/// Every response carries the security headers of [`security_headers`].
pub fn router(state: Arc<AppState>) -> Router {
    let room_pages = get(room_page).with_state(state.clone());
    let assets = ServeDir::new(&state.static_dir)
        .append_index_html_on_directories(false)
        .fallback(room_pages);
    let app = Router::new()
        .route("/", get(root))
        .route("/ws", get(upgrade))
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .route("/api/rooms", get(rooms))
        .merge(crate::api::routes())
        .fallback(move |request: Request| asset(assets.clone(), request))
        .with_state(state);
    security_headers(app)
}

/// The page's Content-Security-Policy: the app's own scripts and wasm
/// (`'wasm-unsafe-eval'` lets `WebAssembly.instantiate` run, and nothing
/// else is evaluated), sockets and fetches to its own origin only (CSP 3
/// lets `'self'` match `ws:`/`wss:` on the same host), styles from its own
/// stylesheet plus the `style` attributes Yew sets to place words, the
/// inline SVG favicon (`data:`), no plugins, no framing, no `<base>`.
/// No inline script: the app starts from `/boot.js` (web-client/index.html).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; \
     script-src 'self' 'wasm-unsafe-eval'; \
     connect-src 'self'; \
     style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; \
     object-src 'none'; \
     base-uri 'none'; \
     frame-ancestors 'none'; \
     form-action 'self'";

/// `Content-Security-Policy` (above), `X-Content-Type-Options: nosniff`
/// (a browser never runs an upload or error text as script) and
/// `Referrer-Policy: same-origin` (room names stay on this site), on every
/// response that does not set its own, through tower-http's header layers;
/// and `Cache-Control: no-cache`.
fn security_headers(app: Router) -> Router {
    use axum::http::HeaderValue;
    use tower_http::set_header::SetResponseHeaderLayer;
    app.layer(SetResponseHeaderLayer::if_not_present(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    ))
    .layer(SetResponseHeaderLayer::if_not_present(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    ))
    .layer(SetResponseHeaderLayer::if_not_present(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    ))
    // Asset names carry no hash (Trunk.toml), so a browser revalidates
    // (a 304 from `Last-Modified`) instead of guessing how long to cache.
    .layer(SetResponseHeaderLayer::if_not_present(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    ))
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
///
/// Each TCP connection holds a slot of [`Admission::accept`] for as long as
/// it is open (an upgraded WebSocket keeps it): at the limit this loop
/// waits, and new connections wait in the kernel's backlog instead of
/// costing a file descriptor.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    admission: Arc<Admission>,
    shutdown: CancellationToken,
) {
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    let requests = TaskTracker::new();
    loop {
        let slot = tokio::select! {
            slot = admission.accept() => slot,
            _ = shutdown.cancelled() => break,
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => (tcp, peer),
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
        let peer = Peer {
            address: AddressKey::of(peer.ip()),
            slot: Arc::new(std::sync::Mutex::new(Some(slot))),
        };
        let app = app
            .clone()
            .map_request(move |mut request: hyper::Request<_>| {
                request.extensions_mut().insert(peer.clone());
                request
            });
        let conn = http1
            .serve_connection(TokioIo::new(tcp), TowerToHyperService::new(app))
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
    peer: Option<Extension<Peer>>,
    ws: Result<ws::Upgrade, ws::NotUpgrade>,
) -> Response {
    match ws {
        Ok(ws) => upgrade(state, headers, peer, ws).await,
        Err(_) => index(&state).await,
    }
}

/// Who is on the other end of a TCP connection, and its accept slot; put
/// into every request's extensions by [`serve`]. An upgrade takes the slot
/// out, so the WebSocket holds it inline instead of through this `Arc`,
/// which ends with the HTTP connection.
#[derive(Clone)]
pub struct Peer {
    address: AddressKey,
    slot: Arc<std::sync::Mutex<Option<SocketSlot>>>,
}

async fn upgrade(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    peer: Option<Extension<Peer>>,
    ws: ws::Upgrade,
) -> Response {
    if !origin_allowed(&state, &headers) {
        return (StatusCode::FORBIDDEN, "origin not allowed").into_response();
    }
    let Some(Extension(peer)) = peer else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "no peer address").into_response();
    };
    // Counted before the upgrade: a refused client never holds a socket
    // task, only this answer.
    let permit = match state.admission.connect(peer.address) {
        Ok(permit) => permit,
        Err(refusal) => return refuse(&state, peer.address, refusal),
    };
    // Nothing follows an upgrade on its TCP connection, so the slot is
    // there to take (at most one upgrade per connection).
    let slot = peer.slot.lock().unwrap_or_else(|p| p.into_inner()).take();
    let Some(slot) = slot else {
        return (StatusCode::BAD_REQUEST, "one upgrade per connection").into_response();
    };
    let admitted = Admitted::new(permit, slot);
    let max = state.config.max_message_bytes;
    ws.on_upgrade(max, move |socket| {
        let tracker = state.connections.clone();
        tracker.track_future(crate::connection::serve(socket, state, admitted))
    })
}

fn refuse(state: &AppState, address: AddressKey, refusal: Refusal) -> Response {
    let limits = &state.metrics.limits;
    let (status, counter, why) = match refusal {
        Refusal::ServerFull => (
            StatusCode::SERVICE_UNAVAILABLE,
            &limits.refused_server_full,
            "the server is at --max-connections; try again later",
        ),
        Refusal::AddressFull => (
            StatusCode::TOO_MANY_REQUESTS,
            &limits.refused_address_full,
            "too many connections from your address (--max-connections-per-ip)",
        ),
    };
    counter.fetch_add(1, Ordering::Relaxed);
    tracing::info!(%address, ?refusal, "upgrade refused");
    (
        status,
        [(header::RETRY_AFTER, refusal.retry_after_secs().to_string())],
        why,
    )
        .into_response()
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

/// Longest path an asset or room page can have, in bytes. The app's files
/// have short names and a room name is at most 64 characters; a longer
/// path is answered 404 here, before the filesystem would refuse it with
/// `ENAMETOOLONG` (which [`ServeDir`] reports as a 500).
const MAX_ASSET_PATH: usize = 255;

async fn asset<S>(assets: S, request: Request) -> Response
where
    S: tower::Service<Request, Error = std::convert::Infallible>,
    S::Response: IntoResponse,
{
    if request.uri().path().len() > MAX_ASSET_PATH {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    }
    match assets.oneshot(request).await {
        Ok(response) => response.into_response(),
        Err(never) => match never {},
    }
}

/// What [`ServeDir`] did not find: the app's page when the path is exactly
/// one valid room name (`/fridge`), else 404. The path is only compared,
/// never joined to a folder.
async fn room_page(State(state): State<Arc<AppState>>, uri: axum::http::Uri) -> Response {
    let is_room = uri
        .path()
        .strip_prefix('/')
        .is_some_and(|room| protocol::RoomName::new(room).is_ok());
    if !is_room {
        return (StatusCode::NOT_FOUND, "not found").into_response();
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
    let store = state.store.clone();
    let sizes = tokio::task::spawn_blocking(move || Ok((store.count()?, store.size_on_disk()?)))
        .await
        .unwrap_or_else(|e| Err(crate::store::StoreError::Task(e.to_string())));
    let (stored, bytes) = sizes.unwrap_or_else(|_| {
        m.store_errors.fetch_add(1, Relaxed);
        (0, 0)
    });
    let mut text = m.render(state.hub.len(), open, state.history.held() as u64);
    text.push_str(&m.limits.render(stored, bytes));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
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
    // cluster hook: the rooms of every node, as their logs count them
    let active = match state.hub.cluster() {
        Some(cluster) => match cluster.rooms().await {
            Ok(rooms) => rooms
                .into_iter()
                .filter(|r| r.members > 0)
                .map(|r| (r.room, r.members))
                .collect(),
            Err(e) => {
                tracing::warn!("listing the cluster's rooms: {e}");
                Vec::new()
            }
        },
        None => state.hub.list(),
    };
    let active: Vec<_> = active
        .into_iter()
        .map(|(room, members)| serde_json::json!({"room": room, "members": members}))
        .collect();
    Json(serde_json::json!({"active": active, "stored": stored})).into_response()
}
