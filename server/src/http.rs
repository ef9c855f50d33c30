//! The HTTP surface, assembled in one place: pages, the WebSocket upgrade,
//! health, metrics and the rooms API.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::{self, Relaxed};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpSocket};
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use tower_http::services::ServeDir;

use crate::admission::{AddressKey, Admitted, Refusal, SocketSlot};
use crate::deadline::WriteDeadline;
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
        .route("/healthz", get(health))
        .route("/readyz", get(health))
        .route("/livez", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .route("/api/rooms", get(rooms))
        .route("/chat/{room}", get(chat_page))
        .merge(crate::api::routes())
        .fallback(move |request: Request| asset(assets.clone(), request))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            refuse_other_hosts,
        ))
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

/// What one unfinished request head may make hyper buffer: 8 KiB, the
/// least hyper allows (its `max_buf_size`; the default is ~400 KB, which
/// every slow or stalled head could hold). hyper allocates its read buffer
/// at this size anyway, so a smaller header limit would save nothing; a
/// browser's request here (no cookies) is well under 1 KB. A larger head
/// ends the connection (431).
const MAX_HEAD_BYTES: usize = 8 * 1024;

/// The answer to a connection over `--max-http-connections-per-ip`,
/// written without waiting (it fits any socket buffer) before the
/// connection is closed.
const ADDRESS_FULL: &[u8] = b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 10\r\n\
    Connection: close\r\nContent-Length: 0\r\n\r\n";

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
/// Each TCP connection holds a slot of
/// [`Admission::accept`](crate::admission::Admission::accept) for as long as
/// it is open (an upgraded WebSocket keeps it): at the limit this loop
/// waits, and new connections wait in the kernel's backlog instead of
/// costing a file descriptor. Until it is upgraded, a connection is also
/// counted against its address (`--max-http-connections-per-ip`: past it,
/// 429 and closed at once), and bounded in time by `--http-timeout`: each
/// request head (the first, and the next on a kept-alive connection, so an
/// idle one ends too) must arrive within it, and a response the client
/// does not take for that long ends the connection ([`WriteDeadline`]).
pub async fn serve(listener: TcpListener, app: Router, state: Arc<AppState>) {
    let (admission, shutdown) = (state.admission.clone(), state.shutdown.clone());
    let timeout = state.config.http_timeout;
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(timeout)
        .max_buf_size(MAX_HEAD_BYTES);
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
        let address = AddressKey::of(peer.ip());
        let Some(http) = admission.open_http(address) else {
            refuse_connection(&state, tcp, address);
            continue;
        };
        // Small frames must not wait for the peer's delayed ACK (Nagle).
        let _ = tcp.set_nodelay(true);
        let peer = Peer {
            address,
            slot: Arc::new(std::sync::Mutex::new(Some(slot))),
        };
        let app = app
            .clone()
            .map_request(move |mut request: hyper::Request<_>| {
                request.extensions_mut().insert(peer.clone());
                request
            });
        let io = TokioIo::new(WriteDeadline::new(tcp, timeout));
        let conn = http1
            .serve_connection(io, TowerToHyperService::new(app))
            .with_upgrades();
        let shutdown = shutdown.clone();
        requests.spawn(async move {
            // Counted as HTTP until it ends or is upgraded (this future
            // ends once the WebSocket has its stream).
            let _http = http;
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

/// A connection past `--max-http-connections-per-ip`: told so if its
/// socket takes the answer at once, and closed; its accept slot is free
/// again before the next accept.
fn refuse_connection(state: &AppState, tcp: tokio::net::TcpStream, address: AddressKey) {
    state
        .metrics
        .limits
        .refused_http_address_full
        .fetch_add(1, Ordering::Relaxed);
    tracing::debug!(%address, "connection refused: --max-http-connections-per-ip");
    let _ = tcp.try_write(ADDRESS_FULL);
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

/// Refuses a request for a host this server does not serve (421), before
/// any route: a page on a DNS-rebinding domain (`evil.example` made to
/// resolve to 127.0.0.1) reaches the server with its own name in `Host`,
/// and would otherwise pass the Origin check, which compares the Origin
/// with `Host`.
async fn refuse_other_hosts(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()));
    match host {
        Some(host) if !host_served(&state.config.allowed_hosts, host) => {
            tracing::debug!(host, "request for a host not served: 421");
            (
                StatusCode::MISDIRECTED_REQUEST,
                "this server does not answer to that host name; \
                 its operator can allow it with --allowed-host",
            )
                .into_response()
        }
        // Browsers always send `Host`; a client that sends none is no page.
        _ => next.run(request).await,
    }
}

/// Whether `host` (a `Host` header: a name or address, maybe a port) is
/// one this server answers to: any IP address (a page can only be made to
/// reach us by a name: an address in its URL is its own origin), the
/// loopback name `localhost`, and the names of `--allowed-host` (lower
/// case, see `config::host_name`), where `.example.com` also takes its
/// subdomains and `*` takes anything.
fn host_served(allowed: &[String], host: &str) -> bool {
    let Ok(authority) = host.parse::<axum::http::uri::Authority>() else {
        return false;
    };
    let name = authority.host();
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    let address = name.trim_start_matches('[').trim_end_matches(']');
    if address.parse::<std::net::IpAddr>().is_ok() || name == "localhost" {
        return true;
    }
    allowed.iter().any(|a| match a.strip_prefix('.') {
        _ if a == "*" => true,
        Some(domain) => name == domain || name.ends_with(a.as_str()),
        None => name == *a,
    })
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

/// The chat app's page (`clients/chat`, bundled into `<static>/chat/`) for
/// `/chat/<room>` when `<room>` is a valid room name, else 404. Its assets
/// live under `/chat/assets/`, which this route never matches.
async fn chat_page(State(state): State<Arc<AppState>>, Path(room): Path<String>) -> Response {
    if protocol::RoomName::new(&room).is_err() {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    }
    match tokio::fs::read_to_string(state.static_dir.join("chat/index.html")).await {
        Ok(page) => Html(page).into_response(),
        Err(_) => (
            StatusCode::NOT_FOUND,
            "the chat app is not built: `cargo xtask run` builds it",
        )
            .into_response(),
    }
}

async fn index(state: &AppState) -> Response {
    match tokio::fs::read_to_string(state.static_dir.join("index.html")).await {
        Ok(page) => Html(page).into_response(),
        // Says nothing of where the server looked: a path on the server is
        // the operator's business (it is in the log, at start).
        Err(_) => Html(
            "<!doctype html><title>attractio</title><h1>attractio is running</h1>\
             <p>The web app is not built. Build it with <code>cargo xtask dist</code> \
             or <code>trunk build</code>, or start everything with \
             <code>cargo xtask run</code>. The WebSocket endpoint is <code>/ws</code>.</p>",
        )
        .into_response(),
    }
}

/// Readiness (`/healthz`, `/readyz`): 200 when this node can serve a join
/// now, else 503, the body (JSON) saying why. One server is ready while it
/// runs; a cluster node while Redis answers, its subscription is up and
/// its rooms apply their logs (`cluster/health.rs`). `/livez` only says
/// the process answers: a probe that restarts the node goes there.
async fn health(State(state): State<Arc<AppState>>) -> Response {
    let (ready, reasons) = match state.hub.cluster() {
        Some(cluster) => {
            let readiness = cluster.health.readiness();
            (readiness.ready, readiness.reasons)
        }
        None => (true, Vec::new()),
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({
        "status": if ready { "ok" } else { "unavailable" },
        "reasons": reasons,
    });
    (status, Json(body)).into_response()
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
    if let Some(cluster) = state.hub.cluster() {
        text.push_str(&cluster.metrics.render());
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

/// `GET /api/rooms`: how many rooms are open and how many members are in
/// them (`rooms`, `members`), and how many rooms are stored (`stored`).
/// With `--list-rooms` also `active`, each open room with members by name
/// with its count; without it no name leaves the server, as a room's name
/// is the only key to it.
/// `/api/rooms`: totals for anyone; the rooms by name with their members
/// only with the operator's say-so (`--list-rooms`, or the server API's
/// key in `Authorization: Bearer`), since a room's name is its only
/// access control on the board.
async fn rooms(State(state): State<Arc<AppState>>, headers: axum::http::HeaderMap) -> Response {
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
    let members: u64 = active.iter().map(|(_, members)| *members as u64).sum();
    let mut answer = serde_json::json!({
        "rooms": active.len(),
        "members": members,
        "stored": stored,
    });
    if state.config.list_rooms || state.api.authorized(&headers) {
        answer["active"] = active
            .into_iter()
            .map(|(room, members)| serde_json::json!({"room": room, "members": members}))
            .collect();
    }
    Json(answer).into_response()
}

#[cfg(test)]
mod tests {
    use super::host_served;

    #[test]
    fn addresses_and_localhost_are_served_and_other_names_only_when_allowed() {
        let none: &[String] = &[];
        for host in [
            "127.0.0.1",
            "127.0.0.1:3000",
            "10.1.2.3:80",
            "[::1]:3000",
            "[2001:db8::1]",
            "localhost",
            "LocalHost:3000",
            "localhost.",
        ] {
            assert!(host_served(none, host), "{host}");
        }
        for host in [
            "evil.example",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "",
            "a b",
        ] {
            assert!(!host_served(none, host), "{host}");
        }
        let allowed = ["fridge.example".to_owned(), ".poets.example".to_owned()];
        for host in ["fridge.example:443", "poets.example", "a.b.poets.example"] {
            assert!(host_served(&allowed, host), "{host}");
        }
        for host in ["www.fridge.example", "xpoets.example", "poets.example.evil"] {
            assert!(!host_served(&allowed, host), "{host}");
        }
        assert!(host_served(&["*".to_owned()], "anything.example"));
    }
}
