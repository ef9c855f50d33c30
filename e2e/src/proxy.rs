//! A loopback TCP proxy in front of the server that a test can cut like a
//! lost network: the page is loaded through it, so its WebSocket goes
//! through it too. [`CutProxy::cut`] drops every proxied connection — both
//! TCP halves, no WebSocket close frame, so the server sees a drop, not a
//! leave — and drops new ones at once until [`CutProxy::restore`]. What
//! the server sent on connections accepted since the last restore is
//! recorded, and [`WsCapture`] reads the WebSocket frames out of it, so a
//! test can see exactly what a reconnecting page was told. Pointed at
//! another upstream with [`CutProxy::switch_to`], it stands in for a load
//! balancer sending a page to another node of a cluster.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

/// The proxy: listens on 127.0.0.1, forwards to the server.
pub struct CutProxy {
    /// The proxy's own port: load pages from `http://127.0.0.1:{port}`.
    pub port: u16,
    shared: Arc<Mutex<State>>,
    accept: JoinHandle<()>,
}

struct State {
    /// Where new connections are forwarded.
    upstream: SocketAddr,
    cut: bool,
    /// Forward only the client's request head, nothing after it.
    stall: bool,
    /// Shared by the connections accepted since the last
    /// [`CutProxy::withhold_uploads`]: set, they forward nothing more from
    /// the client. That call sets it and starts a new one for later
    /// connections.
    withhold: Arc<AtomicBool>,
    /// The copying tasks of every live connection.
    tasks: Vec<AbortHandle>,
    /// Server→client bytes of each connection accepted since the last restore.
    recorded: Vec<Arc<Mutex<Vec<u8>>>>,
    /// Connections dropped on arrival while cut.
    refused: usize,
}

impl CutProxy {
    /// Start forwarding 127.0.0.1:(a free port) to 127.0.0.1:`upstream`.
    pub async fn start(upstream: u16) -> Result<CutProxy> {
        CutProxy::start_to(SocketAddr::from(([127, 0, 0, 1], upstream))).await
    }

    /// Start forwarding 127.0.0.1:(a free port) to `upstream`.
    pub async fn start_to(upstream: SocketAddr) -> Result<CutProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Mutex::new(State {
            upstream,
            cut: false,
            stall: false,
            withhold: Arc::new(AtomicBool::new(false)),
            tasks: Vec::new(),
            recorded: Vec::new(),
            refused: 0,
        }));
        let accept = tokio::spawn(accept_loop(listener, shared.clone()));
        Ok(CutProxy {
            port,
            shared,
            accept,
        })
    }

    /// `http://127.0.0.1:PROXY{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.lock().expect("proxy state lock")
    }

    /// Drop every proxied connection (no close frames) and every new one
    /// until [`CutProxy::restore`].
    pub fn cut(&self) {
        let mut state = self.state();
        state.cut = true;
        state.refused = 0;
        for task in state.tasks.drain(..) {
            task.abort();
        }
    }

    /// Forward again; recording starts afresh with the next connection.
    pub fn restore(&self) {
        self.reopen(false);
    }

    /// Like [`CutProxy::restore`], but from new connections forward only
    /// the client's HTTP request head: a page's socket opens and gets the
    /// server's `hello`, but what the page then sends (its `newClient`)
    /// never reaches the server.
    pub fn stall(&self) {
        self.reopen(true);
    }

    /// From now on, what pages send on their open connections is thrown
    /// away, while the server's frames still reach them: the frames a page
    /// sends just before its node dies, which the page wrote but the node
    /// never applied. New connections forward both ways again.
    pub fn withhold_uploads(&self) {
        let mut state = self.state();
        state.withhold.store(true, Ordering::SeqCst);
        state.withhold = Arc::new(AtomicBool::new(false));
    }

    /// Forward new connections to `upstream` from now on, as a load
    /// balancer does once a node is gone; connections already proxied stay
    /// as they are. Recording starts afresh with the next connection.
    pub fn switch_to(&self, upstream: SocketAddr) {
        let mut state = self.state();
        state.upstream = upstream;
        state.recorded.clear();
        state.tasks.retain(|t| !t.is_finished());
    }

    fn reopen(&self, stall: bool) {
        let mut state = self.state();
        state.cut = false;
        state.stall = stall;
        state.recorded.clear();
        state.tasks.retain(|t| !t.is_finished());
    }

    /// How many connections arrived (and were dropped) since the last cut.
    pub fn refused(&self) -> usize {
        self.state().refused
    }

    /// What the server sent on each connection accepted since the last
    /// restore, in the order they were accepted.
    pub fn recorded(&self) -> Vec<Vec<u8>> {
        self.state()
            .recorded
            .iter()
            .map(|r| r.lock().expect("recording lock").clone())
            .collect()
    }

    /// The WebSocket connections among [`CutProxy::recorded`], decoded.
    pub fn websockets(&self) -> Result<Vec<WsCapture>> {
        self.recorded()
            .iter()
            .filter(|bytes| bytes.starts_with(b"HTTP/1.1 101"))
            .map(|bytes| WsCapture::parse(bytes))
            .collect()
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.accept.abort();
        if let Ok(mut state) = self.shared.lock() {
            for task in state.tasks.drain(..) {
                task.abort();
            }
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Mutex<State>>) {
    while let Ok((client, _)) = listener.accept().await {
        let (recording, stall, withhold, upstream) = {
            let mut state = shared.lock().expect("proxy state lock");
            if state.cut {
                state.refused += 1;
                drop(client);
                continue;
            }
            let recording = Arc::new(Mutex::new(Vec::new()));
            state.recorded.push(recording.clone());
            (
                recording,
                state.stall,
                state.withhold.clone(),
                state.upstream,
            )
        };
        let Ok(server) = TcpStream::connect(upstream).await else {
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let (mut client_r, mut client_w) = client.into_split();
        let (mut server_r, mut server_w) = server.into_split();
        let up = tokio::spawn(async move {
            let mut buf = vec![0u8; 16 * 1024];
            // While stalling: the request head seen so far, and whether it ended.
            let (mut head, mut head_sent) = (Vec::new(), false);
            while let Ok(n) = client_r.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                let chunk = if withhold.load(Ordering::SeqCst) {
                    &buf[..0]
                } else if !stall {
                    &buf[..n]
                } else if head_sent {
                    &buf[..0]
                } else {
                    let before = head.len();
                    head.extend_from_slice(&buf[..n]);
                    match head.windows(4).position(|w| w == b"\r\n\r\n") {
                        // Not found among the first `before` bytes, so `end + 4 > before`.
                        Some(end) => {
                            head_sent = true;
                            &buf[..end + 4 - before]
                        }
                        None => &buf[..n],
                    }
                };
                if server_w.write_all(chunk).await.is_err() {
                    break;
                }
            }
            let _ = server_w.shutdown().await;
        });
        let down = tokio::spawn(async move {
            let mut buf = vec![0u8; 16 * 1024];
            while let Ok(n) = server_r.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                recording
                    .lock()
                    .expect("recording lock")
                    .extend_from_slice(&buf[..n]);
                if client_w.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
            let _ = client_w.shutdown().await;
        });
        let mut state = shared.lock().expect("proxy state lock");
        if state.cut {
            // Cut while this one was connecting upstream.
            up.abort();
            down.abort();
        } else {
            state.tasks.retain(|t| !t.is_finished());
            state.tasks.push(up.abort_handle());
            state.tasks.push(down.abort_handle());
        }
    }
}

/// One WebSocket connection as the server spoke it: the handshake
/// response and every text message, in order.
#[derive(Debug)]
pub struct WsCapture {
    /// The HTTP 101 response head.
    pub head: String,
    /// Some frame had an RSV bit set (a negotiated extension such as
    /// permessage-deflate would set RSV1).
    pub rsv_bits: bool,
    /// Some frame was masked (a server must never mask).
    pub masked: bool,
    /// Every complete text message, parsed as JSON.
    pub messages: Vec<Value>,
}

impl WsCapture {
    pub fn parse(bytes: &[u8]) -> Result<WsCapture> {
        let end = bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .context("no end of the HTTP response head")?;
        let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
        let mut rest = &bytes[end + 4..];
        let (mut rsv_bits, mut masked) = (false, false);
        let mut messages = Vec::new();
        let mut partial: Vec<u8> = Vec::new();
        let mut in_text = false;
        while rest.len() >= 2 {
            let (b0, b1) = (rest[0], rest[1]);
            let fin = b0 & 0x80 != 0;
            rsv_bits |= b0 & 0x70 != 0;
            let opcode = b0 & 0x0f;
            masked |= b1 & 0x80 != 0;
            let (len, mut at) = match b1 & 0x7f {
                126 if rest.len() >= 4 => (u16::from_be_bytes([rest[2], rest[3]]) as usize, 4),
                127 if rest.len() >= 10 => {
                    let mut n = [0u8; 8];
                    n.copy_from_slice(&rest[2..10]);
                    (u64::from_be_bytes(n) as usize, 10)
                }
                126 | 127 => break,
                n => (n as usize, 2),
            };
            let mask = if b1 & 0x80 != 0 {
                if rest.len() < at + 4 {
                    break;
                }
                at += 4;
                Some([rest[at - 4], rest[at - 3], rest[at - 2], rest[at - 1]])
            } else {
                None
            };
            if rest.len() < at + len {
                // Cut mid-frame: what came before is complete.
                break;
            }
            let mut payload = rest[at..at + len].to_vec();
            if let Some(mask) = mask {
                for (i, b) in payload.iter_mut().enumerate() {
                    *b ^= mask[i % 4];
                }
            }
            rest = &rest[at + len..];
            match opcode {
                0x1 => {
                    partial = payload;
                    in_text = true;
                }
                0x0 if in_text => partial.extend_from_slice(&payload),
                _ => continue,
            }
            if fin && in_text {
                let text = std::str::from_utf8(&partial).context("a text frame is not UTF-8")?;
                let value: Value = serde_json::from_str(text)
                    .with_context(|| format!("a text frame is not JSON: {text}"))?;
                messages.push(value);
                in_text = false;
            }
        }
        if !head.starts_with("HTTP/1.1 101") {
            bail!("not a WebSocket upgrade: {head}");
        }
        Ok(WsCapture {
            head,
            rsv_bits,
            masked,
            messages,
        })
    }

    /// Whether the server agreed to a WebSocket extension (e.g. permessage-deflate).
    pub fn extensions(&self) -> bool {
        self.head.lines().any(|l| {
            l.to_ascii_lowercase()
                .starts_with("sec-websocket-extensions")
        })
    }

    /// The `action` of every message, in order.
    pub fn actions(&self) -> Vec<String> {
        self.messages
            .iter()
            .map(|m| m["action"].as_str().unwrap_or("?").to_string())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(b0: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![b0];
        if payload.len() < 126 {
            f.push(payload.len() as u8);
        } else {
            f.push(126);
            f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn reads_text_messages_after_the_handshake_and_stops_at_a_cut_frame() {
        let mut bytes = b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n".to_vec();
        bytes.extend(frame(0x81, br#"{"action":"hello"}"#));
        let long = format!(r#"{{"action":"talkToRoom","data":"{}"}}"#, "x".repeat(300));
        bytes.extend(frame(0x01, &long.as_bytes()[..100]));
        bytes.extend(frame(0x80, &long.as_bytes()[100..]));
        bytes.extend(frame(0x89, b"ping"));
        let last = frame(0x81, br#"{"action":"resumed"}"#);
        bytes.extend(&last[..last.len() - 3]);
        let ws = WsCapture::parse(&bytes).unwrap();
        assert_eq!(ws.actions(), ["hello", "talkToRoom"]);
        assert!(!ws.rsv_bits && !ws.masked && !ws.extensions());
    }
}
