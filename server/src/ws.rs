//! The server's side of WebSocket (RFC 6455), sized for many idle sockets.
//!
//! A general-purpose library keeps a read buffer and a write buffer per
//! socket for its whole life (tungstenite: a zeroed read buffer and a write
//! buffer that never shrinks, several KB per idle connection). Here a
//! socket owns no buffer between messages: reads land in one scratch
//! buffer per thread and only bytes of an unfinished frame are kept; a
//! batch of outgoing frames goes out with one call, its headers and shared
//! payloads gathered by `writev` ([`Sender::try_send_texts`]), nothing
//! copied.
//!
//! What it speaks: no extensions, no subprotocol; client frames must be
//! masked; control frames at most 125 bytes and never fragmented; text must
//! be UTF-8 (checked as each fragment arrives); messages over the size cap
//! are refused as soon as their header says so. A violation is an [`Error`]
//! that names the close code to send.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use sha1::{Digest, Sha1};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use crate::deadline::WriteDeadline;

/// Close codes this module and its users send.
pub mod close_code {
    pub const NORMAL: u16 = 1000;
    pub const AWAY: u16 = 1001;
    pub const PROTOCOL: u16 = 1002;
    pub const INVALID_DATA: u16 = 1007;
    pub const POLICY: u16 = 1008;
    pub const SIZE: u16 = 1009;
    pub use protocol::close_code::{REPLACED, RESUMING};
}

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// Frames gathered into one `writev` (two slices each; Linux takes 1,024).
pub const MAX_FRAMES_PER_WRITE: usize = 512;

/// Bytes read per call. One buffer per thread, shared by every socket.
const SCRATCH_BYTES: usize = 16 * 1024;

thread_local! {
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; SCRATCH_BYTES].into_boxed_slice());
}

/// UTF-8 text in shared bytes, as queued for sending: a clone is a
/// reference count, not a copy, so one encoded frame serves every member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Text(Bytes);

impl Text {
    pub const fn from_static(text: &'static str) -> Text {
        Text(Bytes::from_static(text.as_bytes()))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl From<&'static str> for Text {
    fn from(text: &'static str) -> Text {
        Text::from_static(text)
    }
}

impl From<String> for Text {
    fn from(text: String) -> Text {
        Text(Bytes::from(text))
    }
}

impl std::fmt::Display for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Only ever built from `str`s, so this never replaces anything.
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}

// ---------------------------------------------------------------------------
// The handshake.

/// An HTTP request asking to become a WebSocket (an axum extractor).
pub struct Upgrade {
    key: HeaderValue,
    on_upgrade: OnUpgrade,
}

/// Why a request is not a WebSocket upgrade.
#[derive(Debug)]
pub struct NotUpgrade(&'static str);

impl IntoResponse for NotUpgrade {
    fn into_response(self) -> Response {
        let mut response = (StatusCode::BAD_REQUEST, self.0).into_response();
        if self.0.contains("version") {
            *response.status_mut() = StatusCode::UPGRADE_REQUIRED;
            response.headers_mut().insert(
                header::SEC_WEBSOCKET_VERSION,
                HeaderValue::from_static("13"),
            );
        }
        response
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Upgrade {
    type Rejection = NotUpgrade;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, NotUpgrade> {
        if parts.method != Method::GET {
            return Err(NotUpgrade("a WebSocket upgrade must be a GET"));
        }
        let headers = &parts.headers;
        if !has_token(headers, header::CONNECTION, "upgrade") {
            return Err(NotUpgrade("missing `Connection: upgrade`"));
        }
        if !has_token(headers, header::UPGRADE, "websocket") {
            return Err(NotUpgrade("missing `Upgrade: websocket`"));
        }
        if !has_token(headers, header::SEC_WEBSOCKET_VERSION, "13") {
            return Err(NotUpgrade("unsupported WebSocket version; use 13"));
        }
        let key = headers
            .get(header::SEC_WEBSOCKET_KEY)
            .cloned()
            .ok_or(NotUpgrade("missing Sec-WebSocket-Key"))?;
        let on_upgrade = parts
            .extensions
            .remove::<OnUpgrade>()
            .ok_or(NotUpgrade("this connection cannot be upgraded"))?;
        Ok(Upgrade { key, on_upgrade })
    }
}

/// Whether a comma-separated header has `token` (ASCII case-insensitive).
fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` (RFC 6455 §4.2.2).
fn accept_key(key: &[u8]) -> String {
    let mut sha1 = Sha1::new();
    sha1.update(key);
    sha1.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(sha1.finalize())
}

impl Upgrade {
    /// Answers `101 Switching Protocols` and runs `serve` on the socket
    /// once hyper hands the connection over. Messages over `max_message`
    /// bytes are refused with close code 1009.
    pub fn on_upgrade<F, Fut>(self, max_message: usize, serve: F) -> Response
    where
        F: FnOnce(Socket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let accept = accept_key(self.key.as_bytes());
        let on_upgrade = self.on_upgrade;
        tokio::spawn(async move {
            let upgraded = match on_upgrade.await {
                Ok(upgraded) => upgraded,
                Err(e) => return tracing::debug!("upgrade failed: {e}"),
            };
            // `http::serve` gives hyper the `TcpStream` in a `WriteDeadline`
            // only, so it can be taken back whole: no wrapper between the
            // socket and us.
            let socket = match upgraded.downcast::<TokioIo<WriteDeadline>>() {
                Ok(parts) => {
                    let tcp = parts.io.into_inner().into_inner();
                    let mut socket = Socket::new(tcp, max_message);
                    // What the client sent after its request, read by hyper.
                    socket.reader.received(&parts.read_buf);
                    socket
                }
                Err(_) => {
                    return tracing::error!("upgraded connection is not a TcpStream: dropped")
                }
            };
            // Nothing of hyper's is kept past here: `read_buf` shares its
            // whole read buffer, and held for the connection's life it cost
            // 4.4 KB per connection.
            serve(socket).await
        });
        Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(header::CONNECTION, "upgrade")
            .header(header::UPGRADE, "websocket")
            .header(header::SEC_WEBSOCKET_ACCEPT, accept)
            .body(Body::empty())
            .expect("static headers are valid")
    }
}

// ---------------------------------------------------------------------------
// The socket.

/// A message from the client.
#[derive(Debug, PartialEq, Eq)]
pub enum Message {
    Text(String),
    /// A binary message (not part of our protocol): only its length.
    Binary(usize),
    /// Answer with [`Socket::pong`] and the same payload.
    Ping(Vec<u8>),
    Pong,
    /// The client closes, with its code if it gave one. Answer with
    /// [`Socket::close`].
    Close(Option<u16>),
}

/// Why the socket cannot go on.
#[derive(Debug)]
pub enum Error {
    Io(io::Error),
    /// The client broke the protocol (close code 1002).
    Protocol(&'static str),
    /// A message over the size cap (close code 1009).
    TooBig {
        size: usize,
        max: usize,
    },
    /// Text that is not UTF-8 (close code 1007).
    NotUtf8,
}

impl Error {
    /// The close code to send the client, if the connection can still
    /// carry one.
    pub fn close_code(&self) -> Option<u16> {
        match self {
            Error::Io(_) => None,
            Error::Protocol(_) => Some(close_code::PROTOCOL),
            Error::TooBig { .. } => Some(close_code::SIZE),
            Error::NotUtf8 => Some(close_code::INVALID_DATA),
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Io(e) => write!(f, "{e}"),
            Error::Protocol(what) => write!(f, "protocol error: {what}"),
            Error::TooBig { size, max } => {
                write!(f, "message too big: {size} bytes, the cap is {max}")
            }
            Error::NotUtf8 => f.write_str("text message is not UTF-8"),
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

/// One WebSocket connection, server side.
pub struct Socket {
    read: OwnedReadHalf,
    write: Sender,
    reader: Reader,
    /// The rest of a control frame whose write was cut short (its future
    /// dropped): it goes out before anything else. Empty, with no
    /// allocation, otherwise.
    control_rest: Vec<u8>,
}

/// The socket's writing end, shared: a room writes a frame straight to a
/// member's socket when nobody else is writing to it (see `outbox`).
#[derive(Clone)]
pub struct Sender(Arc<OwnedWriteHalf>);

impl Socket {
    fn new(io: TcpStream, max_message: usize) -> Socket {
        let (read, write) = io.into_split();
        Socket {
            read,
            write: Sender(Arc::new(write)),
            reader: Reader::new(max_message),
            control_rest: Vec::new(),
        }
    }

    /// The writing end, for a room to write to directly.
    pub fn sender(&self) -> Sender {
        self.write.clone()
    }

    /// The next message. Cancel-safe: whatever was read stays in the socket.
    pub async fn recv(&mut self) -> Result<Message, Error> {
        loop {
            if let Some(message) = self.reader.next_message()? {
                return Ok(message);
            }
            self.fill().await?;
        }
    }

    /// Whether the client sent bytes that wait unread in the kernel. Asks
    /// the socket itself (a non-blocking peek), not the runtime's record of
    /// readiness: after the process was stopped, timers may fire before the
    /// runtime has heard of what arrived meanwhile.
    pub fn has_unread(&self) -> bool {
        let mut byte = [std::mem::MaybeUninit::uninit()];
        let io: &TcpStream = self.read.as_ref();
        matches!(socket2::SockRef::from(io).peek(&mut byte), Ok(n) if n > 0)
    }

    /// Reads once into the thread's scratch buffer and keeps what arrived.
    async fn fill(&mut self) -> Result<(), Error> {
        let Socket {
            read: io, reader, ..
        } = self;
        poll_fn(|cx| {
            SCRATCH.with_borrow_mut(|scratch| {
                let mut read = ReadBuf::new(scratch);
                ready!(Pin::new(&mut *io).poll_read(cx, &mut read))?;
                if read.filled().is_empty() {
                    return Poll::Ready(Err(Error::Io(io::ErrorKind::UnexpectedEof.into())));
                }
                reader.received(read.filled());
                Poll::Ready(Ok(()))
            })
        })
        .await
    }

    /// Writes `texts` as text frames with one call.
    #[cfg(test)]
    pub async fn send_texts(&mut self, texts: &[Text]) -> io::Result<()> {
        self.send_rest(&mut texts.iter().cloned().collect(), &mut 0)
            .await
    }

    /// Writes `texts` as text frames, less the first `written` bytes: the
    /// part of the first frame already on the wire. Cancel-safe: frames
    /// that went out whole are taken off `texts` and `written` counts the
    /// bytes of the next, so a write cut short can be finished later.
    pub async fn send_rest(
        &mut self,
        texts: &mut VecDeque<Text>,
        written: &mut usize,
    ) -> io::Result<()> {
        self.finish_control().await?;
        let Socket { write, .. } = self;
        let io = write.stream();
        while !texts.is_empty() {
            // Headers and shared payloads, gathered by the kernel: nothing
            // is copied (the same call a room makes, see `outbox`). What
            // went out is counted before the future can be dropped again.
            poll_fn(|cx| loop {
                ready!(io.poll_write_ready(cx))?;
                match write.try_send_texts(texts.make_contiguous(), *written) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Poll::Ready(Err(e)),
                    Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Ok(n) => {
                        let (whole, rest) = advance(texts.iter(), *written + n);
                        texts.drain(..whole);
                        *written = rest;
                        return Poll::Ready(Ok(()));
                    }
                }
            })
            .await?;
        }
        Ok(())
    }

    pub async fn ping(&mut self) -> io::Result<()> {
        self.control(OP_PING, &[]).await
    }

    pub async fn pong(&mut self, payload: &[u8]) -> io::Result<()> {
        self.control(OP_PONG, payload).await
    }

    /// Sends a close frame and ends our side of the connection.
    pub async fn close(&mut self, code: u16, reason: &str) -> io::Result<()> {
        let mut payload = code.to_be_bytes().to_vec();
        // A control payload is at most 125 bytes; cut on a char boundary.
        let mut cut = reason.len().min(123);
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        payload.extend_from_slice(&reason.as_bytes()[..cut]);
        self.control(OP_CLOSE, &payload).await?;
        socket2::SockRef::from(self.write.stream()).shutdown(std::net::Shutdown::Write)
    }

    /// After our close frame: reads and drops whatever the client still
    /// sends, until it ends its side. A socket closed with bytes unread
    /// answers with a reset, and a client whose write fails that way
    /// reports a broken connection (1006), not the close frame it was sent.
    /// Never ends for a client that keeps the connection open: the caller
    /// bounds it.
    pub async fn drain(&mut self) -> io::Result<()> {
        self.reader = Reader::new(0);
        let io = &mut self.read;
        loop {
            let n = poll_fn(|cx| {
                SCRATCH.with_borrow_mut(|scratch| {
                    let mut read = ReadBuf::new(scratch);
                    ready!(Pin::new(&mut *io).poll_read(cx, &mut read))?;
                    Poll::Ready(io::Result::Ok(read.filled().len()))
                })
            })
            .await?;
            if n == 0 {
                return Ok(());
            }
        }
    }

    /// Ends the connection with a reset rather than a close: the kernel
    /// drops at once what it still holds for a peer that does not read
    /// (megabytes of buffer, which a plain close keeps while it retries).
    pub fn reset(self) {
        let _ = socket2::SockRef::from(self.write.stream()).set_linger(Some(Duration::ZERO));
    }

    async fn control(&mut self, opcode: u8, payload: &[u8]) -> io::Result<()> {
        self.finish_control().await?;
        put_frame(&mut self.control_rest, opcode, payload);
        self.finish_control().await
    }

    /// Writes the rest of a control frame. Cancel-safe: what went out is
    /// taken off `control_rest` before the future can be dropped again.
    async fn finish_control(&mut self) -> io::Result<()> {
        let Socket {
            write,
            control_rest,
            ..
        } = self;
        let io = write.stream();
        while !control_rest.is_empty() {
            poll_fn(|cx| loop {
                ready!(io.poll_write_ready(cx))?;
                match io.try_write(control_rest) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Poll::Ready(Err(e)),
                    Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Ok(n) => {
                        control_rest.drain(..n);
                        return Poll::Ready(Ok(()));
                    }
                }
            })
            .await?;
        }
        *control_rest = Vec::new();
        Ok(())
    }
}

impl Sender {
    fn stream(&self) -> &TcpStream {
        (*self.0).as_ref()
    }

    /// Writes what the socket takes of `texts` as text frames, less the
    /// first `written` bytes, without waiting: how many bytes went out (at
    /// most [`MAX_FRAMES_PER_WRITE`] frames' worth). A full socket buffer is
    /// `WouldBlock`.
    pub fn try_send_texts(&self, texts: &[Text], written: usize) -> io::Result<usize> {
        if let [text] = texts {
            // The usual case, with nothing to allocate.
            let (header, len) = frame_header(OP_TEXT, text.as_bytes().len());
            let mut parts = [IoSlice::new(&header[..len]), IoSlice::new(text.as_bytes())];
            let mut parts = &mut parts[..];
            IoSlice::advance_slices(&mut parts, written);
            return self.0.try_write_vectored(parts);
        }
        let texts = &texts[..texts.len().min(MAX_FRAMES_PER_WRITE)];
        let headers: Vec<_> = texts
            .iter()
            .map(|t| frame_header(OP_TEXT, t.as_bytes().len()))
            .collect();
        let mut parts: Vec<_> = texts
            .iter()
            .zip(&headers)
            .flat_map(|(text, (header, len))| {
                [IoSlice::new(&header[..*len]), IoSlice::new(text.as_bytes())]
            })
            .collect();
        let mut parts = &mut parts[..];
        IoSlice::advance_slices(&mut parts, written);
        self.0.try_write_vectored(parts)
    }
}

/// How many bytes `text` takes on the wire as one text frame.
pub fn frame_len(text: &Text) -> usize {
    let n = text.as_bytes().len();
    frame_header(OP_TEXT, n).1 + n
}

/// After `bytes` went out of `texts` framed: how many frames went whole,
/// and how many bytes of the next one are on the wire.
pub fn advance<'a>(texts: impl Iterator<Item = &'a Text>, mut bytes: usize) -> (usize, usize) {
    let mut whole = 0;
    for text in texts {
        let len = frame_len(text);
        if bytes < len {
            break;
        }
        bytes -= len;
        whole += 1;
    }
    (whole, bytes)
}

/// Received bytes on their way to becoming messages.
struct Reader {
    /// Received bytes not yet taken as whole frames, from `start` on.
    /// Empty, with no allocation, whenever everything received was taken.
    buf: Vec<u8>,
    start: usize,
    /// A fragmented message so far.
    fragments: Option<Fragments>,
    max_message: usize,
}

/// The fragments of a message received so far.
struct Fragments {
    text: bool,
    payload: Vec<u8>,
    /// For text, how much of `payload` is checked UTF-8: invalid text is
    /// refused as its fragment arrives (RFC 6455 §8.1 asks to fail fast),
    /// not once the message ends. After this comes at most the start of a
    /// code point that the next fragment completes.
    checked: usize,
}

impl Fragments {
    /// Adds a fragment's payload and checks its text as far as it goes.
    fn push(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.payload.extend_from_slice(bytes);
        if !self.text {
            return Ok(());
        }
        match std::str::from_utf8(&self.payload[self.checked..]) {
            Ok(_) => self.checked = self.payload.len(),
            // Only a code point cut short by the end has no `error_len`.
            Err(e) if e.error_len().is_none() => self.checked += e.valid_up_to(),
            Err(_) => return Err(Error::NotUtf8),
        }
        Ok(())
    }
}

impl Reader {
    fn new(max_message: usize) -> Reader {
        Reader {
            buf: Vec::new(),
            start: 0,
            fragments: None,
            max_message,
        }
    }

    /// Keeps newly read bytes, dropping those already taken first (a
    /// client that always has a frame in flight never empties the buffer).
    fn received(&mut self, bytes: &[u8]) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Takes whole frames off the buffer until one completes a message.
    fn next_message(&mut self) -> Result<Option<Message>, Error> {
        loop {
            let Some(frame) = parse_frame(&mut self.buf[self.start..], self.max_message)? else {
                return Ok(None);
            };
            let payload = self.start + frame.payload_at..self.start + frame.end;
            let message = self.assemble(&frame, payload)?;
            self.start += frame.end;
            if self.start == self.buf.len() {
                // Everything taken: give the memory back.
                self.buf = Vec::new();
                self.start = 0;
            }
            if message.is_some() {
                return Ok(message);
            }
        }
    }

    /// Turns one frame into a message, or into part of one.
    fn assemble(
        &mut self,
        frame: &FrameHead,
        payload: std::ops::Range<usize>,
    ) -> Result<Option<Message>, Error> {
        let bytes = &self.buf[payload];
        match frame.opcode {
            OP_PING => Ok(Some(Message::Ping(bytes.to_vec()))),
            OP_PONG => Ok(Some(Message::Pong)),
            OP_CLOSE => close_payload(bytes).map(|code| Some(Message::Close(code))),
            OP_TEXT | OP_BINARY => {
                if self.fragments.is_some() {
                    return Err(Error::Protocol("a new message began before the last ended"));
                }
                let text = frame.opcode == OP_TEXT;
                if frame.fin && !text {
                    return Ok(Some(Message::Binary(bytes.len())));
                }
                if frame.fin {
                    return whole(text, bytes.to_vec()).map(Some);
                }
                let mut first = Fragments {
                    text,
                    payload: Vec::new(),
                    checked: 0,
                };
                first.push(bytes)?;
                self.fragments = Some(first);
                Ok(None)
            }
            OP_CONTINUATION => {
                let Some(so_far) = &mut self.fragments else {
                    return Err(Error::Protocol("a continuation frame with no message"));
                };
                let size = so_far.payload.len() + bytes.len();
                if size > self.max_message {
                    return Err(Error::TooBig {
                        size,
                        max: self.max_message,
                    });
                }
                so_far.push(bytes)?;
                if !frame.fin {
                    return Ok(None);
                }
                let Fragments { text, payload, .. } = self.fragments.take().expect("checked above");
                // The whole message once more: its last code point must end.
                whole(text, payload).map(Some)
            }
            _ => unreachable!("parse_frame refuses other opcodes"),
        }
    }
}

/// A frame's header, once the whole frame is in the buffer.
#[derive(Debug)]
struct FrameHead {
    fin: bool,
    opcode: u8,
    /// Where the (unmasked) payload starts and the frame ends.
    payload_at: usize,
    end: usize,
}

/// Parses and unmasks one frame at the start of `buf`; `None` until all of
/// it has arrived. A header that breaks the rules, or announces a payload
/// over `max`, is an error at once.
fn parse_frame(buf: &mut [u8], max: usize) -> Result<Option<FrameHead>, Error> {
    let [b0, b1, ..] = *buf else { return Ok(None) };
    let fin = b0 & 0x80 != 0;
    if b0 & 0x70 != 0 {
        return Err(Error::Protocol(
            "reserved bits set; no extension was agreed",
        ));
    }
    let opcode = b0 & 0x0F;
    let control = opcode & 0x08 != 0;
    if !matches!(
        opcode,
        OP_CONTINUATION | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG
    ) {
        return Err(Error::Protocol("unknown opcode"));
    }
    if b1 & 0x80 == 0 {
        return Err(Error::Protocol("client frames must be masked"));
    }
    let (len, mut at) = match b1 & 0x7F {
        126 => {
            let Some(b) = buf.get(2..4) else {
                return Ok(None);
            };
            (u16::from_be_bytes([b[0], b[1]]) as u64, 4)
        }
        127 => {
            let Some(b) = buf.get(2..10) else {
                return Ok(None);
            };
            let len = u64::from_be_bytes(b.try_into().expect("8 bytes"));
            if len >> 63 != 0 {
                return Err(Error::Protocol("payload length has its top bit set"));
            }
            (len, 10)
        }
        n => (n as u64, 2),
    };
    if control && (!fin || len > 125) {
        return Err(Error::Protocol(
            "control frames are never fragmented and carry at most 125 bytes",
        ));
    }
    if len > max as u64 {
        return Err(Error::TooBig {
            size: usize::try_from(len).unwrap_or(usize::MAX),
            max,
        });
    }
    let len = len as usize;
    let Some(mask) = buf.get(at..at + 4) else {
        return Ok(None);
    };
    let mask: [u8; 4] = mask.try_into().expect("4 bytes");
    at += 4;
    let end = at + len;
    let Some(payload) = buf.get_mut(at..end) else {
        return Ok(None);
    };
    for (i, byte) in payload.iter_mut().enumerate() {
        *byte ^= mask[i & 3];
    }
    Ok(Some(FrameHead {
        fin,
        opcode,
        payload_at: at,
        end,
    }))
}

fn whole(text: bool, payload: Vec<u8>) -> Result<Message, Error> {
    if !text {
        return Ok(Message::Binary(payload.len()));
    }
    String::from_utf8(payload)
        .map(Message::Text)
        .map_err(|_| Error::NotUtf8)
}

/// The code of a close frame (none if empty), checked as RFC 6455 §7.4 asks.
fn close_payload(payload: &[u8]) -> Result<Option<u16>, Error> {
    match payload {
        [] => Ok(None),
        [_] => Err(Error::Protocol("a close frame with a one-byte payload")),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            let allowed = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
            if !allowed {
                return Err(Error::Protocol("a close code no endpoint may send"));
            }
            std::str::from_utf8(reason).map_err(|_| Error::NotUtf8)?;
            Ok(Some(code))
        }
    }
}

/// Appends one unmasked, final frame (servers never mask).
fn put_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    let (header, len) = frame_header(opcode, payload.len());
    out.extend_from_slice(&header[..len]);
    out.extend_from_slice(payload);
}

/// A server frame's header (final, unmasked) for a payload of `n` bytes,
/// and how many of the 10 bytes it takes.
fn frame_header(opcode: u8, n: usize) -> ([u8; 10], usize) {
    let mut header = [0; 10];
    header[0] = 0x80 | opcode;
    let len = match n {
        n if n < 126 => {
            header[1] = n as u8;
            2
        }
        n if n <= u16::MAX as usize => {
            header[1] = 126;
            header[2..4].copy_from_slice(&(n as u16).to_be_bytes());
            4
        }
        n => {
            header[1] = 127;
            header[2..10].copy_from_slice(&(n as u64).to_be_bytes());
            10
        }
    };
    (header, len)
}

/// A loopback TCP pair: our socket on one end, a plain stream on the other.
#[cfg(test)]
pub(crate) async fn tcp_pair() -> (Socket, TcpStream) {
    tcp_pair_with(None).await
}

/// The same, with our send buffer and the other end's receive buffer cut to
/// about `bytes`: a frame larger than that goes out in parts.
#[cfg(test)]
pub(crate) async fn narrow_tcp_pair(bytes: u32) -> (Socket, TcpStream) {
    tcp_pair_with(Some(bytes)).await
}

#[cfg(test)]
async fn tcp_pair_with(buffer: Option<u32>) -> (Socket, TcpStream) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = tokio::net::TcpSocket::new_v4().unwrap();
    if let Some(bytes) = buffer {
        // Before connecting, so the window it advertises is small too.
        client.set_recv_buffer_size(bytes).unwrap();
    }
    let client = client.connect(listener.local_addr().unwrap());
    let (client, accepted) = tokio::join!(client, listener.accept());
    let server = accepted.unwrap().0;
    if let Some(bytes) = buffer {
        socket2::SockRef::from(&server)
            .set_send_buffer_size(bytes as usize)
            .unwrap();
    }
    (Socket::new(server, 1 << 20), client.unwrap())
}

/// `text` framed as this module frames it.
#[cfg(test)]
pub(crate) fn framed(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    put_frame(&mut out, OP_TEXT, text.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client frame: masked with a fixed key.
    fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut out = vec![first];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= u16::MAX as usize => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    /// Feeds `bytes` to a reader as one read, and takes every message.
    fn feed(reader: &mut Reader, bytes: &[u8]) -> Result<Vec<Message>, Error> {
        reader.received(bytes);
        let mut out = Vec::new();
        while let Some(message) = reader.next_message()? {
            out.push(message);
        }
        Ok(out)
    }

    fn read_all(max: usize, bytes: &[u8]) -> Result<Vec<Message>, Error> {
        feed(&mut Reader::new(max), bytes)
    }

    #[test]
    fn the_accept_key_matches_the_rfc_example() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn a_masked_text_frame_is_read_even_one_byte_at_a_time() {
        let frame = client_frame(0x81, "héllo".as_bytes());
        let mut reader = Reader::new(1024);
        let mut got = Vec::new();
        for b in &frame {
            got.extend(feed(&mut reader, &[*b]).unwrap());
        }
        assert_eq!(got, [Message::Text("héllo".into())]);
        // Everything taken: the reader holds no memory.
        assert_eq!(reader.buf.capacity(), 0);
    }

    #[test]
    fn several_frames_in_one_read_all_come_out_in_order() {
        let mut bytes = client_frame(0x81, b"one");
        bytes.extend(client_frame(0x89, b"hi"));
        bytes.extend(client_frame(0x81, &[b'x'; 300]));
        bytes.extend(client_frame(0x8A, b""));
        let got = read_all(1024, &bytes).unwrap();
        assert_eq!(
            got,
            [
                Message::Text("one".into()),
                Message::Ping(b"hi".to_vec()),
                Message::Text("x".repeat(300)),
                Message::Pong,
            ]
        );
    }

    #[test]
    fn fragments_join_with_a_ping_between_them() {
        let mut bytes = client_frame(0x01, b"hel");
        bytes.extend(client_frame(0x89, b""));
        bytes.extend(client_frame(0x00, b"lo "));
        bytes.extend(client_frame(0x80, "wörld".as_bytes()));
        let got = read_all(1024, &bytes).unwrap();
        assert_eq!(
            got,
            [Message::Ping(vec![]), Message::Text("hello wörld".into())]
        );
    }

    #[test]
    fn a_client_always_mid_frame_does_not_grow_the_buffer() {
        let frame = client_frame(0x81, &[b'a'; 100]);
        let mut reader = Reader::new(1024);
        let mut got = 0;
        // Each read ends half-way into the next frame.
        feed(&mut reader, &frame[..50]).unwrap();
        for _ in 0..1000 {
            let mut read = frame[50..].to_vec();
            read.extend_from_slice(&frame[..50]);
            got += feed(&mut reader, &read).unwrap().len();
            assert!(reader.buf.len() - reader.start <= 50);
            assert!(reader.buf.len() <= frame.len() + 50);
        }
        assert_eq!(got, 1000);
    }

    #[test]
    fn a_64_bit_length_is_read() {
        let payload = vec![b'a'; 70_000];
        let got = read_all(100_000, &client_frame(0x81, &payload)).unwrap();
        assert_eq!(got, [Message::Text("a".repeat(70_000))]);
    }

    #[test]
    fn an_oversized_message_is_refused_from_its_header() {
        let frame = client_frame(0x81, &[b'a'; 2000]);
        let err = read_all(1000, &frame[..8]).unwrap_err();
        assert!(matches!(
            err,
            Error::TooBig {
                size: 2000,
                max: 1000
            }
        ));
        assert_eq!(err.close_code(), Some(close_code::SIZE));
    }

    #[test]
    fn protocol_violations_are_errors_with_close_code_1002() {
        let unmasked = vec![0x81, 0x02, b'h', b'i'];
        let reserved = client_frame(0xC1, b"hi");
        let unknown_opcode = client_frame(0x83, b"");
        let fragmented_ping = client_frame(0x09, b"");
        let long_ping = client_frame(0x89, &[0; 126]);
        let orphan_continuation = client_frame(0x80, b"x");
        let mut interleaved = client_frame(0x01, b"a");
        interleaved.extend(client_frame(0x81, b"b"));
        let one_byte_close = client_frame(0x88, &[3]);
        let reserved_close_code = client_frame(0x88, &1005u16.to_be_bytes());
        for bytes in [
            unmasked,
            reserved,
            unknown_opcode,
            fragmented_ping,
            long_ping,
            orphan_continuation,
            interleaved,
            one_byte_close,
            reserved_close_code,
        ] {
            let err = read_all(1024, &bytes).unwrap_err();
            assert_eq!(
                err.close_code(),
                Some(close_code::PROTOCOL),
                "{bytes:x?}: {err}"
            );
        }
    }

    #[test]
    fn invalid_utf8_is_close_code_1007_even_split_across_fragments() {
        let whole_frame = client_frame(0x81, &[0xff, 0xfe]);
        let err = read_all(64, &whole_frame).unwrap_err();
        assert_eq!(err.close_code(), Some(close_code::INVALID_DATA));

        // "é" is 0xC3 0xA9: split across two fragments it is still valid.
        let mut split = client_frame(0x01, &[0xC3]);
        split.extend(client_frame(0x80, &[0xA9]));
        assert_eq!(read_all(64, &split).unwrap(), [Message::Text("é".into())]);
    }

    #[test]
    fn invalid_utf8_in_a_fragment_is_refused_when_that_fragment_arrives() {
        // Valid text, then a fragment with a byte that starts no code point:
        // refused at once, without waiting for the final fragment.
        let mut reader = Reader::new(1024);
        assert!(feed(&mut reader, &client_frame(0x01, b"hello"))
            .unwrap()
            .is_empty());
        let err = feed(&mut reader, &client_frame(0x00, &[b' ', 0xff])).unwrap_err();
        assert_eq!(err.close_code(), Some(close_code::INVALID_DATA));

        // The first fragment alone can be invalid too.
        let err = read_all(64, &client_frame(0x01, &[0xC0, 0x80])).unwrap_err();
        assert_eq!(err.close_code(), Some(close_code::INVALID_DATA));

        // A code point whose start is valid but whose next byte cannot
        // follow it (0xF4 0x90 would be above U+10FFFF) is refused in the
        // fragment that holds the bad byte.
        let mut reader = Reader::new(1024);
        assert!(feed(&mut reader, &client_frame(0x01, &[0xF4]))
            .unwrap()
            .is_empty());
        let err = feed(&mut reader, &client_frame(0x00, &[0x90])).unwrap_err();
        assert_eq!(err.close_code(), Some(close_code::INVALID_DATA));

        // "𝄞" (F0 9D 84 9E) cut after each byte still comes out whole.
        let mut reader = Reader::new(1024);
        let mut got = feed(&mut reader, &client_frame(0x01, &[0xF0])).unwrap();
        got.extend(feed(&mut reader, &client_frame(0x00, &[0x9D])).unwrap());
        got.extend(feed(&mut reader, &client_frame(0x00, &[0x84])).unwrap());
        got.extend(feed(&mut reader, &client_frame(0x80, &[0x9E])).unwrap());
        assert_eq!(got, [Message::Text("𝄞".into())]);

        // A message whose last code point never ends is refused at its end.
        let mut cut = client_frame(0x01, b"ok");
        cut.extend(client_frame(0x80, &[0xE2, 0x82]));
        let err = read_all(64, &cut).unwrap_err();
        assert_eq!(err.close_code(), Some(close_code::INVALID_DATA));
    }

    #[test]
    fn close_frames_carry_their_code() {
        let mut payload = 1000u16.to_be_bytes().to_vec();
        payload.extend_from_slice(b"bye");
        assert_eq!(
            read_all(64, &client_frame(0x88, &payload)).unwrap(),
            [Message::Close(Some(1000))]
        );
        assert_eq!(
            read_all(64, &client_frame(0x88, b"")).unwrap(),
            [Message::Close(None)]
        );
    }

    #[test]
    fn server_frames_use_the_shortest_length_encoding() {
        let mut out = Vec::new();
        put_frame(&mut out, OP_TEXT, b"hi");
        assert_eq!(out, [0x81, 2, b'h', b'i']);
        out.clear();
        put_frame(&mut out, OP_TEXT, &[0; 300]);
        assert_eq!(out[..4], [0x81, 126, 0x01, 0x2C]);
        out.clear();
        put_frame(&mut out, OP_BINARY, &vec![0; 70_000]);
        assert_eq!(out[..10], [0x82, 127, 0, 0, 0, 0, 0, 0x01, 0x11, 0x70]);
    }

    #[test]
    fn advance_counts_whole_frames_and_the_part_of_the_next() {
        // Frames of 2 + 1, 2 + 3 and 4 + 300 bytes on the wire.
        let texts = [
            Text::from("a"),
            Text::from("bcd"),
            Text::from("x".repeat(300)),
        ];
        assert_eq!(advance(texts.iter(), 0), (0, 0));
        assert_eq!(advance(texts.iter(), 2), (0, 2));
        assert_eq!(advance(texts.iter(), 3), (1, 0));
        assert_eq!(advance(texts.iter(), 7), (1, 4));
        assert_eq!(advance(texts.iter(), 8), (2, 0));
        assert_eq!(advance(texts.iter(), 8 + 303), (2, 303));
        assert_eq!(advance(texts.iter(), 8 + 304), (3, 0));
    }

    #[tokio::test]
    async fn a_frame_bigger_than_the_socket_buffer_arrives_whole_after_partial_writes() {
        use tokio::io::AsyncReadExt;
        let (mut socket, mut client) = tcp_pair().await;
        // Several MiB: far more than one write takes, so the header and
        // payload go out in pieces.
        let payload: String = (0..400_000)
            .map(|i| format!("{:x}", i % 16))
            .collect::<String>()
            .repeat(10);
        let text = Text::from(payload.clone());
        let reading = tokio::spawn(async move {
            let mut all = Vec::new();
            client.read_to_end(&mut all).await.unwrap();
            all
        });
        socket.send_texts(&[text]).await.unwrap();
        socket
            .send_texts(&[Text::from("after"), Text::from("both")])
            .await
            .unwrap();
        drop(socket);
        let all = reading.await.unwrap();
        let mut want = Vec::new();
        put_frame(&mut want, OP_TEXT, payload.as_bytes());
        put_frame(&mut want, OP_TEXT, b"after");
        put_frame(&mut want, OP_TEXT, b"both");
        assert_eq!(all.len(), want.len());
        assert!(all == want, "the frames arrived out of shape");
        assert_eq!(&all[..2], &[0x81, 127]);
    }

    #[tokio::test]
    async fn a_text_write_cut_short_goes_on_from_where_it_stopped() {
        use tokio::io::AsyncReadExt;
        let (mut socket, mut client) = narrow_tcp_pair(4096).await;
        let big = "b".repeat(1 << 20);
        let mut texts = VecDeque::from([Text::from(big.clone()), Text::from("next")]);
        let mut written = 0;
        // Nobody reads: the big frame goes out in part, and the write is
        // given up.
        let cut = tokio::time::timeout(
            Duration::from_millis(100),
            socket.send_rest(&mut texts, &mut written),
        );
        assert!(cut.await.is_err());
        assert_eq!(texts.len(), 2);
        assert!(written > 0);
        let reading = tokio::spawn(async move {
            let mut all = Vec::new();
            client.read_to_end(&mut all).await.unwrap();
            all
        });
        socket.send_rest(&mut texts, &mut written).await.unwrap();
        socket.close(close_code::NORMAL, "").await.unwrap();
        drop(socket);
        let mut want = framed(&big);
        want.extend(framed("next"));
        put_frame(&mut want, OP_CLOSE, &close_code::NORMAL.to_be_bytes());
        assert!(reading.await.unwrap() == want, "the stream is out of shape");
    }

    #[tokio::test]
    async fn a_control_frame_cut_short_is_finished_before_the_close_frame() {
        use tokio::io::AsyncReadExt;
        let (mut socket, mut client) = narrow_tcp_pair(4096).await;
        // Nobody reads: pings fill the socket until one cannot go out (in
        // part or at all) and is given up.
        let mut pings = 0;
        loop {
            pings += 1;
            let ping = tokio::time::timeout(Duration::from_millis(100), socket.ping());
            if ping.await.is_err() {
                break;
            }
        }
        let reading = tokio::spawn(async move {
            let mut all = Vec::new();
            client.read_to_end(&mut all).await.unwrap();
            all
        });
        socket.close(close_code::AWAY, "").await.unwrap();
        drop(socket);
        let mut want = [OP_PING | 0x80, 0].repeat(pings);
        put_frame(&mut want, OP_CLOSE, &close_code::AWAY.to_be_bytes());
        let all = reading.await.unwrap();
        assert_eq!(all.len(), want.len(), "{pings} pings and the close frame");
        assert!(all == want, "the stream is out of shape");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Text messages, each split into fragments at the given points.
        fn messages() -> impl Strategy<Value = Vec<(String, Vec<usize>)>> {
            prop::collection::vec(
                (".{0,300}", prop::collection::vec(0usize..400, 0..4)),
                1..12,
            )
        }

        proptest! {
            #[test]
            fn any_bytes_in_any_reads_never_panic(
                reads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..16)
            ) {
                let mut reader = Reader::new(256);
                for read in &reads {
                    if feed(&mut reader, read).is_err() {
                        break;
                    }
                }
            }

            #[test]
            fn fragmented_messages_split_across_reads_come_out_whole(
                messages in messages(),
                cuts in prop::collection::vec(1usize..50, 1..40),
            ) {
                let mut wire = Vec::new();
                for (text, splits) in &messages {
                    let bytes = text.as_bytes();
                    let mut at: Vec<usize> = splits.iter().map(|s| s % (bytes.len() + 1)).collect();
                    at.sort();
                    at.dedup();
                    let mut pieces = Vec::new();
                    let mut from = 0;
                    for cut in at.into_iter().chain([bytes.len()]) {
                        pieces.push(&bytes[from..cut]);
                        from = cut;
                    }
                    for (i, piece) in pieces.iter().enumerate() {
                        let opcode = if i == 0 { OP_TEXT } else { OP_CONTINUATION };
                        let fin = if i + 1 == pieces.len() { 0x80 } else { 0 };
                        wire.extend(client_frame(fin | opcode, piece));
                    }
                }
                let mut reader = Reader::new(4096);
                let mut got = Vec::new();
                let mut rest = &wire[..];
                for cut in cuts.iter().cycle() {
                    if rest.is_empty() {
                        break;
                    }
                    let (read, more) = rest.split_at((*cut).min(rest.len()));
                    got.extend(feed(&mut reader, read).unwrap());
                    rest = more;
                }
                let want: Vec<Message> =
                    messages.into_iter().map(|(t, _)| Message::Text(t)).collect();
                prop_assert_eq!(got, want);
                prop_assert_eq!(reader.buf.capacity(), 0);
            }
        }
    }
}
