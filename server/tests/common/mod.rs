//! Test harness: starts the real server binary on port 0 and talks to it
//! through real sockets.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const WAIT: Duration = Duration::from_secs(5);

pub struct Server {
    pub child: Child,
    pub addr: String,
    pub data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl Server {
    pub fn start(args: &[&str]) -> Server {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let mut s = Server::start_in(&dir, args, None);
        s._tmp = Some(tmp);
        s
    }

    /// Starts on `data_dir`, on `port` if given (for restarts).
    pub fn start_in(data_dir: &Path, args: &[&str], port: Option<u16>) -> Server {
        Server::spawn(data_dir, &data_dir.join("no-app"), args, port)
    }

    /// Starts on a fresh data folder, serving the app from `static_dir`.
    pub fn start_serving(static_dir: &Path, args: &[&str]) -> Server {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = Server::spawn(tmp.path(), static_dir, args, None);
        s._tmp = Some(tmp);
        s
    }

    fn spawn(data_dir: &Path, static_dir: &Path, args: &[&str], port: Option<u16>) -> Server {
        let addr = format!("127.0.0.1:{}", port.unwrap_or(0));
        let (child, addr) = start_binary(&addr, data_dir, static_dir, args);
        Server {
            child,
            addr,
            data_dir: data_dir.to_path_buf(),
            _tmp: None,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.rsplit(':').next().unwrap().parse().unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    pub async fn client(&self) -> Client {
        Client::connect(&self.url("/ws")).await
    }

    /// Joins a fresh client to `room` and returns it with hello read.
    pub async fn joined(&self, room: &str) -> Client {
        let mut c = self.client().await;
        c.join(room).await;
        c
    }

    pub fn signal(&self, sig: i32) {
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    /// SIGTERM, then wait; returns the exit status.
    pub fn stop(mut self) -> (std::process::ExitStatus, Option<tempfile::TempDir>) {
        self.signal(libc::SIGTERM);
        let status = self.child.wait().unwrap();
        (status, self._tmp.take())
    }

    pub fn kill9(mut self) -> Option<tempfile::TempDir> {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self._tmp.take()
    }

    pub async fn get(&self, path: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = TcpStream::connect(&self.addr).await.unwrap();
        s.write_all(
            format!(
                "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                self.addr
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }
}

/// Starts the real binary on `addr` with its data and static folders and
/// `args`, and returns it with the address it printed it listens on.
pub fn start_binary(
    addr: &str,
    data_dir: &Path,
    static_dir: &Path,
    args: &[&str],
) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_attractio"))
        .arg("--addr")
        .arg(addr)
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--static-dir")
        .arg(static_dir)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("server binary starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("attractio listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    (child, addr)
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub hello: Value,
    /// The room's members as this client knows them from every presence
    /// frame it has read so far.
    pub presence: PresenceView,
}

/// A client's view of its room's member list, kept as the README tells a
/// client to keep it (written from the wire description, not with the
/// protocol crate, so it checks the server against the spec): `presence`
/// replaces the list; `presenceDiff` removes `leaves`, appends `joins`
/// (replacing an id already there), marks `away` and `back`, and reorders
/// by `order` when it is given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PresenceView {
    /// `(id, away)`, most recently active first.
    pub members: Vec<(u64, bool)>,
    /// Whole lists (`presence` frames) received.
    pub lists: usize,
}

impl PresenceView {
    /// Applies `v` if it is a presence frame.
    pub fn see(&mut self, v: &Value) {
        let ids = |key: &str| -> Vec<u64> {
            v["data"][key]
                .as_array()
                .map(|a| a.iter().map(|id| id.as_u64().unwrap()).collect())
                .unwrap_or_default()
        };
        let entry = |m: &Value| (m["id"].as_u64().unwrap(), m["away"] == true);
        match v["action"].as_str() {
            Some("presence") => {
                self.lists += 1;
                self.members = v["data"].as_array().unwrap().iter().map(entry).collect();
            }
            Some("presenceDiff") => {
                let leaves = ids("leaves");
                self.members.retain(|(id, _)| !leaves.contains(id));
                for join in v["data"]["joins"].as_array().into_iter().flatten() {
                    let (id, away) = entry(join);
                    match self.members.iter_mut().find(|(m, _)| *m == id) {
                        Some(e) => *e = (id, away),
                        None => self.members.push((id, away)),
                    }
                }
                for (key, away) in [("away", true), ("back", false)] {
                    for id in ids(key) {
                        if let Some(e) = self.members.iter_mut().find(|(m, _)| *m == id) {
                            e.1 = away;
                        }
                    }
                }
                if v["data"].get("order").is_some() {
                    let order = ids("order");
                    self.members.sort_by_key(|(id, _)| {
                        order.iter().position(|o| o == id).unwrap_or(usize::MAX)
                    });
                }
            }
            _ => {}
        }
    }

    pub fn ids(&self) -> Vec<u64> {
        self.members.iter().map(|(id, _)| *id).collect()
    }

    /// Whether `id` is listed and shown as away.
    pub fn is_away(&self, id: u64) -> bool {
        self.members.contains(&(id, true))
    }

    /// Whether `id` is listed and present.
    pub fn is_here(&self, id: u64) -> bool {
        self.members.contains(&(id, false))
    }
}

impl Client {
    pub async fn connect(url: &str) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("connects");
        let mut c = Client {
            ws,
            hello: Value::Null,
            presence: PresenceView::default(),
        };
        c.hello = c.expect("hello").await;
        c
    }

    pub fn id(&self) -> u64 {
        self.hello["data"]["id"].as_u64().unwrap()
    }

    pub fn name(&self) -> String {
        self.hello["data"]["name"].as_str().unwrap().to_owned()
    }

    pub async fn send(&mut self, v: Value) {
        self.ws
            .send(Message::Text(v.to_string().into()))
            .await
            .unwrap();
    }

    pub async fn send_raw(&mut self, m: Message) {
        let _ = self.ws.send(m).await;
    }

    /// Joins and waits for the joiner's board answer (hydrate or newRoom).
    pub async fn join(&mut self, room: &str) -> Value {
        self.send(json!({"action":"newClient","room":room})).await;
        self.expect_any(&["hydrate", "newRoom", "roomFull"]).await
    }

    /// The next text frame, or `None` on timeout / close.
    pub async fn next_within(&mut self, t: Duration) -> Option<Value> {
        loop {
            match tokio::time::timeout(t, self.ws.next()).await {
                Ok(Some(Ok(Message::Text(text)))) => {
                    let v: Value = serde_json::from_str(&text).unwrap();
                    self.presence.see(&v);
                    return Some(v);
                }
                Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) | Err(_) => {
                    return None
                }
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    pub async fn expect(&mut self, action: &str) -> Value {
        self.expect_any(&[action]).await
    }

    /// Skips frames until one with one of `actions` arrives.
    pub async fn expect_any(&mut self, actions: &[&str]) -> Value {
        loop {
            let v = self
                .next_within(WAIT)
                .await
                .unwrap_or_else(|| panic!("no {actions:?} within {WAIT:?}"));
            if actions.contains(&v["action"].as_str().unwrap_or("")) {
                return v;
            }
        }
    }

    /// Reads (and keeps every frame's effect on `presence`) until `done`
    /// holds for the view.
    pub async fn presence_until(&mut self, done: impl Fn(&PresenceView) -> bool) {
        self.presence_until_within(WAIT, done).await
    }

    /// As [`Client::presence_until`], waiting up to `quiet` for each frame
    /// (a dead node's members change presence only once its lease is seen
    /// lapsed, several seconds with nothing else arriving).
    #[allow(dead_code)]
    pub async fn presence_until_within(
        &mut self,
        quiet: Duration,
        done: impl Fn(&PresenceView) -> bool,
    ) {
        while !done(&self.presence) {
            self.next_within(quiet)
                .await
                .unwrap_or_else(|| panic!("presence still {:?}", self.presence));
        }
    }

    /// Reads until nothing arrives for `quiet`; returns what was read.
    pub async fn drain(&mut self, quiet: Duration) -> Vec<Value> {
        let mut got = Vec::new();
        while let Some(v) = self.next_within(quiet).await {
            got.push(v);
        }
        got
    }

    /// Asserts no frame with `action` arrives within `t`.
    pub async fn expect_none(&mut self, action: &str, t: Duration) {
        let deadline = tokio::time::Instant::now() + t;
        while let Some(v) = self
            .next_within(deadline.saturating_duration_since(tokio::time::Instant::now()))
            .await
        {
            assert_ne!(v["action"], action, "unexpected {v}");
        }
    }

    /// A clean close (close frame): a leave, not a drop.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
        while let Ok(Some(Ok(_))) = tokio::time::timeout(WAIT, self.ws.next()).await {}
    }

    /// Reads until the socket closes; returns the close frame's code.
    pub async fn close_code(&mut self) -> Option<u16> {
        loop {
            match tokio::time::timeout(WAIT, self.ws.next()).await {
                Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|f| u16::from(f.code)),
                Ok(Some(Ok(_))) => continue,
                _ => return None,
            }
        }
    }
}

pub fn words(v: &Value) -> Vec<(String, f64, f64)> {
    let mut w: Vec<_> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["id"].as_str().unwrap().to_owned(),
                w["x"].as_f64().unwrap(),
                w["y"].as_f64().unwrap(),
            )
        })
        .collect();
    w.sort_by(|a, b| a.0.cmp(&b.0));
    w
}

pub fn board(n: usize) -> Value {
    Value::Array(
        (0..n)
            .map(|i| json!({"id": format!("w{i}"), "text": format!("word{i}"), "x": 10 * i, "y": 20}))
            .collect(),
    )
}

// Raw sockets, for what no client library would send or read.

/// A WebSocket upgrade request, with the RFC's example key.
pub const UPGRADE_REQUEST: &[u8] =
    b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\n\
    Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

pub async fn tcp(s: &Server) -> TcpStream {
    TcpStream::connect(("127.0.0.1", s.port())).await.unwrap()
}

/// Reads a response head and checks that it accepts the upgrade.
pub async fn read_upgrade(tcp: &mut TcpStream) {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(tcp.read_u8().await.unwrap());
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
}

/// Opens a WebSocket by hand on a raw TCP socket, so the test can send what
/// no client library would.
pub async fn raw_socket(s: &Server) -> TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut tcp = tcp(s).await;
    tcp.write_all(UPGRADE_REQUEST).await.unwrap();
    read_upgrade(&mut tcp).await;
    tcp
}

/// A client frame with its first byte as given, masked.
pub fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [1u8, 2, 3, 4];
    let mut f = vec![first];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n <= usize::from(u16::MAX) => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// One server frame: its first byte and its payload.
pub async fn try_read_frame(
    tcp: &mut (impl tokio::io::AsyncRead + Unpin),
) -> std::io::Result<(u8, Vec<u8>)> {
    use tokio::io::AsyncReadExt;
    let b0 = tcp.read_u8().await?;
    let len = match tcp.read_u8().await? {
        126 => tcp.read_u16().await? as usize,
        127 => tcp.read_u64().await? as usize,
        n => n as usize,
    };
    assert!(
        len < 1 << 24,
        "a frame of {len} bytes: the stream is garbage"
    );
    let mut payload = vec![0; len];
    tcp.read_exact(&mut payload).await?;
    Ok((b0, payload))
}

pub async fn read_frame(tcp: &mut (impl tokio::io::AsyncRead + Unpin)) -> (u8, Vec<u8>) {
    try_read_frame(tcp).await.unwrap()
}

/// Reads server frames until a close frame; returns its code and reason.
pub async fn try_read_close(
    tcp: &mut (impl tokio::io::AsyncRead + Unpin),
) -> std::io::Result<(u16, String)> {
    loop {
        let (b0, payload) = try_read_frame(tcp).await?;
        if b0 & 0x0f == 0x8 {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            return Ok((code, String::from_utf8(payload[2..].to_vec()).unwrap()));
        }
    }
}

pub async fn read_close(tcp: &mut (impl tokio::io::AsyncRead + Unpin)) -> (u16, String) {
    try_read_close(tcp).await.unwrap()
}
