//! A minimal client side of RFC 6455 for the busy scenarios: an HTTP
//! upgrade written by hand, then masked text frames out and unmasked frames
//! parsed in place from a large read buffer that is never zeroed. Receivers
//! handle up to a million small frames a second on one core, which the
//! general-purpose client (a memset of its read buffer and an allocation per
//! frame) cannot. Pings are answered; fragmented messages are reassembled.

use std::sync::Arc;

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use crate::client::Target;

/// Bytes asked of the kernel per read.
const READ_CHUNK: usize = 64 * 1024;

/// The sending half; shared with the receiver, which answers pings.
#[derive(Clone)]
pub struct Sender {
    inner: Arc<Mutex<SenderInner>>,
}

struct SenderInner {
    socket: OwnedWriteHalf,
    /// Reused frame buffer.
    frame: Vec<u8>,
    mask: u32,
}

/// The receiving half.
pub struct Receiver {
    socket: OwnedReadHalf,
    buf: Vec<u8>,
    /// Start of unparsed bytes in `buf`.
    pos: usize,
    /// A fragmented message being reassembled.
    partial: Vec<u8>,
    /// `partial` was handed out whole; clear it on the next call.
    partial_done: bool,
    sender: Sender,
}

/// What a received frame was, as far as the caller cares.
pub enum Incoming<'a> {
    Text(&'a [u8]),
    Closed,
}

/// Connects and upgrades to a WebSocket at `target`.
pub async fn connect(target: &Target) -> Result<(Sender, Receiver)> {
    let mut stream = TcpStream::connect(target.addr).await?;
    stream.set_nodelay(true)?;
    let (host, path) = host_and_path(&target.url);
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut buf = Vec::with_capacity(READ_CHUNK);
    let header_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 16 * 1024 {
            bail!("upgrade response headers too long");
        }
        if stream.read_buf(&mut buf).await? == 0 {
            bail!("closed during the upgrade");
        }
    };
    let status = std::str::from_utf8(&buf[..header_end])
        .ok()
        .and_then(|h| h.split_whitespace().nth(1))
        .unwrap_or_default()
        .to_string();
    if status != "101" {
        bail!("upgrade refused with status {status:?}");
    }
    let (read, write) = stream.into_split();
    let sender = Sender {
        inner: Arc::new(Mutex::new(SenderInner {
            socket: write,
            frame: Vec::with_capacity(256),
            mask: seed_mask(),
        })),
    };
    let receiver = Receiver {
        socket: read,
        buf,
        pos: header_end,
        partial: Vec::new(),
        partial_done: false,
        sender: sender.clone(),
    };
    Ok((sender, receiver))
}

fn host_and_path(url: &str) -> (&str, &str) {
    let rest = url.strip_prefix("ws://").unwrap_or(url);
    match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    }
}

fn seed_mask() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(1);
    t.wrapping_mul(2_654_435_761) | 1
}

impl Sender {
    /// Sends one text frame.
    pub async fn text(&self, payload: &[u8]) -> Result<()> {
        self.frame(0x1, payload).await
    }

    /// Sends a close frame and shuts the socket's write side.
    pub async fn close(&self) {
        let _ = self.frame(0x8, &1000u16.to_be_bytes()).await;
        let _ = self.inner.lock().await.socket.shutdown().await;
    }

    async fn frame(&self, opcode: u8, payload: &[u8]) -> Result<()> {
        let mut inner = self.inner.lock().await;
        let inner = &mut *inner;
        // xorshift: a fresh masking key per frame.
        inner.mask ^= inner.mask << 13;
        inner.mask ^= inner.mask >> 17;
        inner.mask ^= inner.mask << 5;
        encode(&mut inner.frame, opcode, payload, inner.mask.to_be_bytes());
        inner.socket.write_all(&inner.frame).await.context("send")?;
        Ok(())
    }
}

/// Writes a masked client frame (FIN set) into `out`.
pub fn encode(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: [u8; 4]) {
    out.clear();
    out.push(0x80 | opcode);
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= u16::MAX as usize {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
}

/// One complete frame found at the start of a buffer.
#[derive(Debug, PartialEq)]
pub struct Frame {
    pub fin: bool,
    pub opcode: u8,
    /// Payload range within the buffer.
    pub start: usize,
    pub end: usize,
}

/// Parses the frame at the start of `buf`; `None` until it is complete.
/// Server frames are unmasked, but a masked one is tolerated (caller unmasks).
pub fn parse(buf: &[u8]) -> Option<(Frame, Option<[u8; 4]>)> {
    if buf.len() < 2 {
        return None;
    }
    let fin = buf[0] & 0x80 != 0;
    let opcode = buf[0] & 0x0F;
    let masked = buf[1] & 0x80 != 0;
    let (len, mut at) = match buf[1] & 0x7F {
        126 => (
            u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?) as usize,
            4,
        ),
        127 => (
            u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?) as usize,
            10,
        ),
        n => (n as usize, 2),
    };
    let mask = if masked {
        let m: [u8; 4] = buf.get(at..at + 4)?.try_into().ok()?;
        at += 4;
        Some(m)
    } else {
        None
    };
    let end = at.checked_add(len)?;
    if buf.len() < end {
        return None;
    }
    Some((
        Frame {
            fin,
            opcode,
            start: at,
            end,
        },
        mask,
    ))
}

impl Receiver {
    /// Calls `on_text` with every text message until the connection ends.
    pub async fn each_text(mut self, mut on_text: impl FnMut(&[u8])) {
        loop {
            match self.next().await {
                Ok(Incoming::Text(t)) => on_text(t),
                Ok(Incoming::Closed) | Err(_) => return,
            }
        }
    }

    /// The next text message (pings answered, pongs ignored on the way).
    pub async fn next(&mut self) -> Result<Incoming<'_>> {
        if self.partial_done {
            self.partial.clear();
            self.partial_done = false;
        }
        loop {
            while let Some((frame, mask)) = parse(&self.buf[self.pos..]) {
                let (s, e) = (self.pos + frame.start, self.pos + frame.end);
                self.pos = e;
                if let Some(m) = mask {
                    for (i, b) in self.buf[s..e].iter_mut().enumerate() {
                        *b ^= m[i % 4];
                    }
                }
                match frame.opcode {
                    0x1 | 0x2 if frame.fin && self.partial.is_empty() => {
                        return Ok(Incoming::Text(&self.buf[s..e]));
                    }
                    0x0..=0x2 => {
                        self.partial.extend_from_slice(&self.buf[s..e]);
                        if frame.fin {
                            self.partial_done = true;
                            return Ok(Incoming::Text(&self.partial));
                        }
                    }
                    0x8 => return Ok(Incoming::Closed),
                    0x9 => {
                        let payload = self.buf[s..e].to_vec();
                        self.sender.frame(0xA, &payload).await?;
                    }
                    _ => {}
                }
            }
            // Keep the unparsed tail at the front, then read more.
            if self.pos > 0 {
                self.buf.drain(..self.pos);
                self.pos = 0;
            }
            if self.buf.capacity() - self.buf.len() < READ_CHUNK / 2 {
                self.buf.reserve(READ_CHUNK);
            }
            if self.socket.read_buf(&mut self.buf).await? == 0 {
                return Ok(Incoming::Closed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_masked_frame_parses_back_to_its_payload() {
        let mut out = Vec::new();
        let payload = br#"{"action":"echo","data":{"t":1}}"#;
        encode(&mut out, 0x1, payload, [1, 2, 3, 4]);
        let (frame, mask) = parse(&out).expect("complete");
        assert!(frame.fin);
        assert_eq!(frame.opcode, 0x1);
        let m = mask.expect("client frames are masked");
        let back: Vec<u8> = out[frame.start..frame.end]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ m[i % 4])
            .collect();
        assert_eq!(back, payload);
    }

    #[test]
    fn lengths_use_the_short_16_and_64_bit_forms() {
        let mut out = Vec::new();
        for (len, header) in [(125, 2 + 4), (126, 4 + 4), (70_000, 10 + 4)] {
            encode(&mut out, 0x1, &vec![b'x'; len], [0; 4]);
            let (frame, _) = parse(&out).expect("complete");
            assert_eq!((frame.start, frame.end - frame.start), (header, len));
        }
    }

    #[test]
    fn an_incomplete_frame_waits_for_more_bytes() {
        let unmasked = [0x81, 5, b'h', b'e', b'l', b'l', b'o'];
        assert!(parse(&unmasked[..1]).is_none());
        assert!(parse(&unmasked[..6]).is_none());
        let (frame, mask) = parse(&unmasked).expect("complete");
        assert_eq!((frame.start, frame.end, mask), (2, 7, None));
        assert!(parse(&[0x81, 126, 0]).is_none());
    }
}
