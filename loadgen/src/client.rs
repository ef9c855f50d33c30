//! Connecting one simulated client: loopback-only target resolution, optional
//! binding to another 127.0.0.x source address (to get past the ephemeral port
//! range when holding many connections), small tungstenite buffers, the join
//! frame, and cheap scanning of received frames without a full JSON parse.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::OnceLock;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use futures_util::SinkExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// A client's socket.
pub type Ws = WebSocketStream<TcpStream>;

/// Where to connect: the URL (for the handshake) and its loopback address.
#[derive(Clone, Debug)]
pub struct Target {
    /// The `ws://` URL sent in the handshake request.
    pub url: String,
    /// The resolved address; always in 127.0.0.0/8 or ::1.
    pub addr: SocketAddr,
}

impl Target {
    /// Resolves `url` and refuses anything that is not a loopback address:
    /// load is only ever sent to this machine.
    pub async fn resolve(url: &str) -> Result<Self> {
        let rest = url
            .strip_prefix("ws://")
            .context("only ws:// URLs are supported")?;
        let authority = rest.split('/').next().unwrap_or_default();
        let with_port = if authority.contains(':') {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        let addr = tokio::net::lookup_host(&with_port)
            .await
            .with_context(|| format!("resolving {with_port}"))?
            .find(|a| a.ip().is_loopback())
            .with_context(|| format!("{url} does not resolve to a loopback address"))?;
        Ok(Self {
            url: url.to_string(),
            addr,
        })
    }
}

/// Tungstenite buffer sizes for one client. Small reads keep 100k idle
/// sockets affordable; busy receivers want a bigger read buffer.
pub fn ws_config(read_buffer: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(read_buffer)
        .write_buffer_size(0)
}

/// Opens a WebSocket to `target`, from `source` if given (any 127.0.0.x).
pub async fn connect(target: &Target, source: Option<Ipv4Addr>, read_buffer: usize) -> Result<Ws> {
    let socket = match target.addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if let Some(ip) = source {
        if !ip.is_loopback() {
            bail!("source address {ip} is not loopback");
        }
        bind_no_port(&socket);
        socket.bind(SocketAddr::new(IpAddr::V4(ip), 0))?;
    }
    let stream = socket.connect(target.addr).await?;
    stream.set_nodelay(true)?;
    let (ws, _) = tokio_tungstenite::client_async_with_config(
        target.url.as_str(),
        stream,
        Some(ws_config(read_buffer)),
    )
    .await?;
    Ok(ws)
}

/// Lets the kernel pick the source port at connect time (by 4-tuple) rather
/// than at bind time, so a bound source address is not limited to one
/// ephemeral port range for all destinations.
fn bind_no_port(socket: &TcpSocket) {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: a valid socket fd and a pointer to a live c_int of the given size.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// The source address for the `index`-th connection: 127.0.0.1 for the first
/// `per_source`, then 127.0.0.2, and so on.
pub fn source_for(index: usize, per_source: usize) -> Option<Ipv4Addr> {
    let block = index / per_source.max(1);
    if block == 0 {
        return None;
    }
    let n = (block as u32 + 1).min(0x00FF_FFFE);
    Some(Ipv4Addr::from(0x7F00_0000 | n))
}

/// Connects and sends `newClient`. No reply is awaited: seed-node sends none.
pub async fn join(
    target: &Target,
    room: &str,
    source: Option<Ipv4Addr>,
    read_buffer: usize,
) -> Result<Ws> {
    let mut ws = connect(target, source, read_buffer).await?;
    ws.send(Message::text(join_frame(room))).await?;
    Ok(ws)
}

/// `{"action":"newClient","room":R}`.
pub fn join_frame(room: &str) -> String {
    serde_json::json!({"action": "newClient", "room": room}).to_string()
}

/// Microseconds since the process-wide clock base; senders stamp frames with
/// it and receivers in the same process subtract.
pub fn now_us() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_micros() as u64
}

/// The unsigned integer that follows `key` (e.g. `"t":`) in `frame`, found
/// by scanning bytes: receivers see up to a million frames a second and do
/// not need a full parse to find their timestamp.
pub fn number_after(frame: &[u8], key: &[u8]) -> Option<u64> {
    let at = find(frame, key)? + key.len();
    let digits = frame[at..].iter().take_while(|b| b.is_ascii_digit());
    let mut value: u64 = 0;
    let mut any = false;
    for d in digits {
        value = value.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
        any = true;
    }
    any.then_some(value)
}

/// Whether `needle` occurs in `hay`.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    find(hay, needle).is_some()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay, needle)
}

/// The frame's `action` when it comes first (`{"action":"NAME"…`, as both
/// servers write it), without scanning the rest: presence lists of big rooms
/// run to kilobytes and must be skipped cheaply.
pub fn leading_action(frame: &[u8]) -> Option<&[u8]> {
    let rest = frame.strip_prefix(br#"{"action":""#)?;
    let end = rest.iter().take(64).position(|&b| b == b'"')?;
    Some(&rest[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_timestamp_in_a_relayed_chat_frame() {
        let ours = br##"{"action":"talkToRoom","data":{"t":123456,"s":7,"k":2},"from":{"id":3,"name":"brave-otter","color":"#aabbcc"},"seq":9,"epoch":1}"##;
        assert_eq!(number_after(ours, br#""t":"#), Some(123456));
        assert_eq!(number_after(ours, br#""k":"#), Some(2));
        let seed = br#"{"action":"talkToRoom","room":"r0","data":{"t":5,"s":1,"k":1}}"#;
        assert_eq!(number_after(seed, br#""t":"#), Some(5));
    }

    #[test]
    fn a_frame_without_the_key_has_no_number() {
        assert_eq!(
            number_after(
                br#"{"action":"talkToRoom","data":"Welcome, client 1!"}"#,
                br#""t":"#
            ),
            None
        );
        assert_eq!(number_after(br#"{"t":"x"}"#, br#""t":"#), None);
        assert!(!contains(b"ab", b"abc"));
        assert!(contains(br#"{"action":"moving"}"#, b"\"moving\""));
    }

    #[test]
    fn the_leading_action_is_read_without_scanning_the_frame() {
        assert_eq!(
            leading_action(br#"{"action":"presence","data":[]}"#),
            Some(&b"presence"[..])
        );
        assert_eq!(leading_action(br#"{"data":1,"action":"echo"}"#), None);
        assert_eq!(leading_action(br#"{"action":"unterminated"#), None);
    }

    #[test]
    fn connections_spread_over_source_addresses_in_blocks() {
        assert_eq!(source_for(0, 20_000), None);
        assert_eq!(source_for(19_999, 20_000), None);
        assert_eq!(
            source_for(20_000, 20_000),
            Some(Ipv4Addr::new(127, 0, 0, 2))
        );
        assert_eq!(
            source_for(45_000, 20_000),
            Some(Ipv4Addr::new(127, 0, 0, 3))
        );
    }

    #[tokio::test]
    async fn only_loopback_targets_are_accepted() {
        assert!(Target::resolve("ws://127.0.0.1:9/").await.is_ok());
        assert!(Target::resolve("ws://10.0.0.1:9/").await.is_err());
        assert!(Target::resolve("http://127.0.0.1:9/").await.is_err());
    }
}
