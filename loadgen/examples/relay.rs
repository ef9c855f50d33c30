//! A bare-bones room relay used to calibrate the generator: the least work
//! a server can do for the baseline protocol (`newClient` joins, `echo`
//! answers, anything else goes verbatim to the rest of the room), framed
//! once per message and written in batches. Whatever loadgen measures
//! against it is the generator's own ceiling, not a server's.
//!
//! `cargo run --release -p loadgen --example relay -- 127.0.0.1:9000`

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

type Outbox = mpsc::UnboundedSender<Arc<[u8]>>;
type Rooms = Arc<Mutex<HashMap<String, Vec<(u64, Outbox)>>>>;

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9000".into());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(&addr).await?;
        println!("relay listening on http://{}", listener.local_addr()?);
        let rooms: Rooms = Arc::default();
        let mut id = 0;
        loop {
            let (tcp, _) = listener.accept().await?;
            id += 1;
            tokio::spawn(serve(tcp, id, rooms.clone()));
        }
    })
}

async fn serve(tcp: TcpStream, id: u64, rooms: Rooms) -> Option<()> {
    tcp.set_nodelay(true).ok()?;
    let (mut read, mut write) = tcp.into_split();
    let mut buf = Vec::with_capacity(64 * 1024);
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if read.read_buf(&mut buf).await.ok()? == 0 {
            return None;
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let key = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("Sec-WebSocket-Key:")
                .or_else(|| l.strip_prefix("sec-websocket-key:"))
        })?
        .trim()
        .to_string();
    let reply = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        derive_accept_key(key.as_bytes())
    );
    write.write_all(reply.as_bytes()).await.ok()?;
    buf.drain(..end);
    let (tx, mut rx) = mpsc::unbounded_channel::<Arc<[u8]>>();
    tokio::spawn(async move {
        let mut batch = Vec::with_capacity(64 * 1024);
        while let Some(first) = rx.recv().await {
            batch.clear();
            batch.extend_from_slice(&first);
            while batch.len() < 60 * 1024 {
                match rx.try_recv() {
                    Ok(more) => batch.extend_from_slice(&more),
                    Err(_) => break,
                }
            }
            if write.write_all(&batch).await.is_err() {
                break;
            }
        }
    });
    let mut room: Option<String> = None;
    loop {
        let mut pos = 0;
        while let Some((frame, mask)) = loadgen::raw::parse(&buf[pos..]) {
            let (s, e) = (pos + frame.start, pos + frame.end);
            pos = e;
            if let Some(m) = mask {
                for (i, b) in buf[s..e].iter_mut().enumerate() {
                    *b ^= m[i % 4];
                }
            }
            if frame.opcode == 0x8 {
                leave(&rooms, &room, id);
                return None;
            }
            if frame.opcode != 0x1 {
                continue;
            }
            let text = &buf[s..e];
            let out: Arc<[u8]> = server_frame(text).into();
            if loadgen::client::contains(text, br#""newClient""#) {
                let name = room_of(text).unwrap_or_default();
                rooms
                    .lock()
                    .ok()?
                    .entry(name.clone())
                    .or_default()
                    .push((id, tx.clone()));
                room = Some(name);
            } else if loadgen::client::contains(text, br#""echo""#) {
                let _ = tx.send(out);
            } else if let Some(r) = &room {
                let rooms = rooms.lock().ok()?;
                for (_, to) in rooms
                    .get(r)
                    .into_iter()
                    .flatten()
                    .filter(|(other, _)| *other != id)
                {
                    let _ = to.send(out.clone());
                }
            }
        }
        buf.drain(..pos);
        buf.reserve(32 * 1024);
        if read.read_buf(&mut buf).await.unwrap_or(0) == 0 {
            leave(&rooms, &room, id);
            return None;
        }
    }
}

fn leave(rooms: &Rooms, room: &Option<String>, id: u64) {
    if let (Some(r), Ok(mut rooms)) = (room, rooms.lock()) {
        if let Some(members) = rooms.get_mut(r) {
            members.retain(|(other, _)| *other != id);
        }
    }
}

fn room_of(text: &[u8]) -> Option<String> {
    let key = br#""room":""#;
    let at = text.windows(key.len()).position(|w| w == key)? + key.len();
    let len = text[at..].iter().position(|&b| b == b'"')?;
    Some(String::from_utf8_lossy(&text[at..at + len]).into_owned())
}

/// An unmasked server text frame around `payload`.
fn server_frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 4);
    out.push(0x81);
    if payload.len() < 126 {
        out.push(payload.len() as u8);
    } else {
        out.push(126);
        out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    out.extend_from_slice(payload);
    out
}
