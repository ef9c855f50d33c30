//! Another member of a room without a browser: raw JSON frames on a
//! WebSocket straight to the server (not through any proxy). Every frame
//! it receives is kept, so a test can check what the room was told and how
//! often.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::wait::eventually;

type Sink = SplitSink<WebSocketStream<MaybeTlsStream<TcpStream>>, Message>;

pub struct Peer {
    pub room: String,
    /// The name the server gave this peer (from `hello`).
    pub name: String,
    sink: Sink,
    frames: Arc<Mutex<Vec<Value>>>,
    reader: JoinHandle<()>,
}

impl Peer {
    /// Connect to the server on `port`, join `room` and wait for its board
    /// (`hydrate`) or `newRoom`.
    pub async fn join(port: u16, room: &str) -> Result<Peer> {
        let mut peer = Peer::connect(port, room).await?;
        peer.send(json!({"action":"newClient"})).await?;
        peer.wait_for("the peer's board", |f| {
            f["action"] == "hydrate" || f["action"] == "newRoom"
        })
        .await?;
        Ok(peer)
    }

    /// Connect to the server on `port` and take the session of
    /// `resume_token` in `room` (held, or still connected elsewhere: that
    /// connection is then closed as replaced); wait for `resumed`.
    pub async fn resume(port: u16, room: &str, resume_token: &str) -> Result<Peer> {
        let mut peer = Peer::connect(port, room).await?;
        peer.send(json!({"action":"newClient","resumeToken":resume_token}))
            .await?;
        peer.wait_for("the peer's resumed", |f| f["action"] == "resumed")
            .await?;
        Ok(peer)
    }

    /// Whether the server closed this peer's socket.
    pub fn is_closed(&self) -> bool {
        self.reader.is_finished()
    }

    /// Connect to the server on `port` and wait for `hello`, for `room`.
    async fn connect(port: u16, room: &str) -> Result<Peer> {
        let (socket, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/ws"))
            .await
            .context("a raw WebSocket client cannot connect")?;
        let (sink, mut stream) = socket.split();
        let frames = Arc::new(Mutex::new(Vec::new()));
        let reader = {
            let frames = frames.clone();
            tokio::spawn(async move {
                while let Some(Ok(message)) = stream.next().await {
                    if let Message::Text(text) = message {
                        if let Ok(frame) = serde_json::from_str::<Value>(&text) {
                            frames.lock().expect("frames lock").push(frame);
                        }
                    }
                }
            })
        };
        let mut peer = Peer {
            room: room.to_string(),
            name: String::new(),
            sink,
            frames,
            reader,
        };
        let hello = peer
            .wait_for("the peer's hello", |f| f["action"] == "hello")
            .await?;
        peer.name = hello["data"]["name"]
            .as_str()
            .context("hello without a name")?
            .to_string();
        Ok(peer)
    }

    /// Send one frame, tagged with the room.
    pub async fn send(&mut self, mut frame: Value) -> Result<()> {
        frame["room"] = json!(self.room);
        self.sink
            .send(Message::text(frame.to_string()))
            .await
            .context("the peer's socket is gone")
    }

    pub async fn say(&mut self, line: &str) -> Result<()> {
        self.send(json!({"action":"talkToRoom","data":line})).await
    }

    /// Every frame received so far.
    pub fn frames(&self) -> Vec<Value> {
        self.frames.lock().expect("frames lock").clone()
    }

    /// The frames received so far that match `pred`.
    pub fn matching(&self, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        self.frames().into_iter().filter(|f| pred(f)).collect()
    }

    /// Wait until a received frame matches `pred`; the latest such frame.
    pub async fn wait_for(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Result<Value> {
        eventually(what, || async {
            let frames = self.frames();
            if let Some(frame) = frames.iter().rev().find(|f| pred(f)) {
                return Ok(frame.clone());
            }
            if self.reader.is_finished() {
                bail!("the peer's socket closed; it got {frames:?}");
            }
            Err(anyhow!("{} frame(s), none matching", frames.len()))
        })
        .await
    }

    /// The room's members as this peer knows them, most recently active
    /// first: the last `presence` list with every `presenceDiff` after it
    /// applied (leaves removed, joins appended, away/back marked, `order`
    /// followed). Entries are `{id, name, color, away?}`.
    pub fn presence(&self) -> Vec<Value> {
        let mut list: Vec<Value> = Vec::new();
        let ids =
            |d: &Value, key: &str| -> Vec<Value> { d[key].as_array().cloned().unwrap_or_default() };
        for f in self.frames() {
            let d = &f["data"];
            match f["action"].as_str() {
                Some("presence") => list = d.as_array().cloned().unwrap_or_default(),
                Some("presenceDiff") => {
                    let leaves = ids(d, "leaves");
                    list.retain(|m| !leaves.contains(&m["id"]));
                    for join in ids(d, "joins") {
                        list.retain(|m| m["id"] != join["id"]);
                        list.push(join);
                    }
                    for (key, away) in [("away", true), ("back", false)] {
                        for id in ids(d, key) {
                            for m in list.iter_mut().filter(|m| m["id"] == id) {
                                m["away"] = json!(away);
                            }
                        }
                    }
                    if let Some(order) = d["order"].as_array() {
                        list.sort_by_key(|m| {
                            order
                                .iter()
                                .position(|id| *id == m["id"])
                                .unwrap_or(usize::MAX)
                        });
                    }
                }
                _ => {}
            }
        }
        list
    }

    /// Wait until this peer's [`Peer::presence`] satisfies `pred`; that list.
    pub async fn wait_for_presence(
        &self,
        what: &str,
        pred: impl Fn(&[Value]) -> bool,
    ) -> Result<Vec<Value>> {
        eventually(what, || async {
            let list = self.presence();
            if pred(&list) {
                return Ok(list);
            }
            if self.reader.is_finished() {
                bail!("the peer's socket closed; presence is {list:?}");
            }
            Err(anyhow!("presence is {list:?}"))
        })
        .await
    }

    /// Close with a close frame (a leave).
    pub async fn close(mut self) -> Result<()> {
        let _ = tokio::time::timeout(Duration::from_secs(5), self.sink.close()).await;
        self.reader.abort();
        Ok(())
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.reader.abort();
    }
}
