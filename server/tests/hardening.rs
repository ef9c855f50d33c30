//! What one address, one page or one member can make the server hold or
//! tell (issue 20): connections per address and their time, the request
//! head's size, the hosts served, what `/api/rooms` reveals, the rate
//! limit's reach, the close frame at a stop, the page without the app.
//! Real sockets against the real binary; clients bind 127.0.0.2 and
//! 127.0.0.3 to be two addresses.

mod common;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;

/// A TCP connection to the server on `port` from the loopback address
/// `source`.
async fn connect_from(port: u16, source: &str) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(format!("{source}:0").parse().unwrap())?;
    socket
        .connect(format!("127.0.0.1:{port}").parse().unwrap())
        .await
}

/// Sends `request` from `source` and reads the answer until the server
/// closes, for at most `within`; `None` if it did not answer in time.
async fn exchange(s: &Server, source: &str, request: &[u8], within: Duration) -> Option<String> {
    let exchange = async {
        let mut tcp = connect_from(s.port(), source).await.ok()?;
        tcp.write_all(request).await.ok()?;
        let mut answer = Vec::new();
        // A reset after the answer still leaves what was read.
        let _ = tcp.read_to_end(&mut answer).await;
        Some(String::from_utf8_lossy(&answer).into_owned())
    };
    tokio::time::timeout(within, exchange).await.ok().flatten()
}

fn get_request(path: &str, host: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").into_bytes()
}

fn status(answer: &str) -> u16 {
    answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"))
}

fn body(answer: &str) -> &str {
    answer.split_once("\r\n\r\n").map_or("", |(_, body)| body)
}

/// A connection from `source` that pipelines thousands of `GET /metrics`
/// in one write and never reads an answer. `None` if the write failed (the
/// server refused the connection).
async fn stuffed_from(port: u16, source: &'static str) -> Option<TcpStream> {
    let mut tcp = connect_from(port, source).await.ok()?;
    let burst = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".repeat(2000);
    match tokio::time::timeout(WAIT, tcp.write_all(burst.as_bytes())).await {
        Ok(Ok(())) => Some(tcp),
        _ => None,
    }
}

#[tokio::test]
async fn one_address_pipelining_unread_requests_cannot_keep_another_from_healthz() {
    let s = Server::start(&["--max-connections", "16"]);
    // More connections than the server has accept slots (16 + 256), each
    // stuffed with requests whose answers are never read.
    let stuffing: Vec<_> = (0..300)
        .map(|_| tokio::spawn(stuffed_from(s.port(), "127.0.0.2")))
        .collect();
    let mut held = Vec::new();
    for task in stuffing {
        held.push(task.await.unwrap());
    }
    let answer = exchange(
        &s,
        "127.0.0.3",
        &get_request("/healthz", "127.0.0.1"),
        Duration::from_secs(30),
    )
    .await
    .expect("another address gets an answer while 127.0.0.2 stuffs the server");
    assert_eq!(status(&answer), 200, "{answer}");
    assert!(body(&answer).contains(r#""status":"ok""#), "{answer}");
    let metrics = exchange(
        &s,
        "127.0.0.3",
        &get_request("/metrics", "127.0.0.1"),
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    let refused = metrics
        .lines()
        .find_map(|l| l.strip_prefix("attractio_connections_refused_address_full_total "))
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(refused > 0, "{metrics}");
    drop(held);
}

/// Whether a new connection from `source` is answered 200 (not 429).
async fn admitted_from(s: &Server, source: &str) -> bool {
    exchange(
        s,
        source,
        &get_request("/healthz", "127.0.0.1"),
        Duration::from_secs(30),
    )
    .await
    .unwrap_or_default()
    .starts_with("HTTP/1.1 200")
}

#[tokio::test]
async fn connections_that_never_read_or_stay_idle_end_after_the_http_timeout() {
    let s = Server::start(&["--http-timeout", "3s", "--max-http-connections-per-ip", "1"]);
    // Each from an address of its own: a connection of the round before
    // may be counted a moment after its client saw it end.
    for (kind, source) in [
        ("never reads its answers", "127.0.0.2"),
        ("sends nothing", "127.0.0.4"),
    ] {
        let held = match kind {
            "never reads its answers" => stuffed_from(s.port(), source).await,
            _ => connect_from(s.port(), source).await.ok(),
        };
        let held = held.expect("accepted");
        // It is held: another from the same address is over the cap, and
        // told so at once.
        let refused = exchange(
            &s,
            source,
            &get_request("/healthz", "127.0.0.1"),
            Duration::from_secs(30),
        )
        .await
        .expect("an answer");
        assert_eq!(status(&refused), 429, "{kind}: {refused}");
        // It does not hold its place for ever: the one that never reads
        // stalls the server's writes, the idle one sends no head.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while !admitted_from(&s, source).await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "a connection that {kind} still holds the address's place"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        drop(held);
    }
}

#[tokio::test]
async fn an_unfinished_request_head_past_8_kib_is_refused_with_431() {
    let s = Server::start(&[]);
    let mut head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: ".to_vec();
    head.extend(std::iter::repeat_n(b'a', 16 * 1024));
    let answer = exchange(&s, "127.0.0.2", &head, Duration::from_secs(60))
        .await
        .expect("an answer");
    assert_eq!(status(&answer), 431, "{answer}");
}

/// An upgrade request for `host`, from a page at `origin`.
fn upgrade_request(host: &str, origin: &str) -> Vec<u8> {
    format!(
        "GET /ws HTTP/1.1\r\nHost: {host}\r\nOrigin: {origin}\r\nConnection: Upgrade\r\n\
         Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    .into_bytes()
}

/// The status line of the answer to `request`, read up to its head's end.
async fn head_status(s: &Server, request: &[u8]) -> u16 {
    let mut tcp = tcp(s).await;
    tcp.write_all(request).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(tcp.read_u8().await.unwrap());
    }
    status(&String::from_utf8(head).unwrap())
}

#[tokio::test]
async fn a_page_on_a_rebinding_domain_can_neither_upgrade_nor_read_any_route() {
    let s = Server::start(&[]);
    let host = format!("evil.example:{}", s.port());
    let origin = format!("http://{host}");
    assert_eq!(head_status(&s, &upgrade_request(&host, &origin)).await, 421);
    assert_eq!(
        head_status(&s, &upgrade_request("evil.example", "http://evil.example")).await,
        421
    );
    for path in ["/", "/healthz", "/api/rooms", "/metrics", "/fridge"] {
        assert_eq!(
            head_status(&s, &get_request(path, &host)).await,
            421,
            "{path}"
        );
    }
    // The same requests by the server's own address are served.
    let own = format!("http://{}", s.addr);
    assert_eq!(head_status(&s, &upgrade_request(&s.addr, &own)).await, 101);
    assert_eq!(
        head_status(&s, &get_request("/healthz", &s.addr)).await,
        200
    );
}

#[tokio::test]
async fn loopback_names_addresses_trunks_proxy_and_allowed_hosts_are_served() {
    let s = Server::start(&["--allowed-host", "fridge.example,.poets.example"]);
    let port = s.port();
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        "LOCALHOST".to_owned(),
        format!("[::1]:{port}"),
        "fridge.example".to_owned(),
        "fridge.example:443".to_owned(),
        "poets.example".to_owned(),
        "kitchen.poets.example".to_owned(),
    ] {
        assert_eq!(
            head_status(&s, &get_request("/healthz", &host)).await,
            200,
            "{host}"
        );
    }
    // `trunk serve` proxies /ws with the backend's host, without its
    // port, and the page's origin on trunk's port.
    assert_eq!(
        head_status(&s, &upgrade_request("127.0.0.1", "http://127.0.0.1:8080")).await,
        101
    );
    assert_eq!(
        head_status(
            &s,
            &upgrade_request("fridge.example", "https://fridge.example")
        )
        .await,
        101
    );
    for host in ["evil.example", "fridge.example.evil", "notpoets.example"] {
        assert_eq!(
            head_status(&s, &get_request("/healthz", host)).await,
            421,
            "{host}"
        );
    }
}

/// `/api/rooms` once its totals count `members` members.
async fn rooms_once_counted(s: &Server, members: u64) -> (Value, String) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let answer = s.get("/api/rooms").await;
        let rooms: Value = serde_json::from_str(body(&answer)).unwrap();
        if rooms["members"] == members {
            return (rooms, answer);
        }
        assert!(tokio::time::Instant::now() < deadline, "{answer}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const PRIVATE_ROOM: &str = "private-7f3a9c2e1b";

#[tokio::test]
async fn without_list_rooms_no_endpoint_names_a_room_only_totals_are_given() {
    let s = Server::start(&[]);
    let _a = s.joined(PRIVATE_ROOM).await;
    let _b = s.joined(PRIVATE_ROOM).await;
    let _c = s.joined("another-room").await;
    let (rooms, answer) = rooms_once_counted(&s, 3).await;
    assert_eq!(rooms["rooms"], 2, "{answer}");
    assert!(rooms.get("active").is_none(), "{answer}");
    assert!(!answer.contains(PRIVATE_ROOM), "{answer}");
    let metrics = s.get("/metrics").await;
    assert!(!metrics.contains(PRIVATE_ROOM), "{metrics}");
    assert!(!metrics.contains("another-room"), "{metrics}");
}

#[tokio::test]
async fn with_list_rooms_the_api_lists_open_rooms_by_name_with_their_members() {
    let s = Server::start(&["--list-rooms"]);
    let _a = s.joined(PRIVATE_ROOM).await;
    let _b = s.joined(PRIVATE_ROOM).await;
    let (rooms, answer) = rooms_once_counted(&s, 2).await;
    assert_eq!(rooms["rooms"], 1, "{answer}");
    assert_eq!(
        rooms["active"],
        json!([{"room": PRIVATE_ROOM, "members": 2}]),
        "{answer}"
    );
}

/// Reads server frames until the close frame; returns the opcodes and
/// payloads before it.
async fn frames_until_close(tcp: &mut TcpStream) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    loop {
        let (b0, payload) = tokio::time::timeout(WAIT, read_frame(tcp))
            .await
            .expect("frames until the close");
        if b0 & 0x0f == 0x8 {
            return frames;
        }
        frames.push((b0 & 0x0f, payload));
    }
}

fn error_codes(frames: &[(u8, Vec<u8>)]) -> Vec<String> {
    frames
        .iter()
        .filter(|(op, _)| *op == 0x1)
        .filter_map(|(_, p)| serde_json::from_slice::<Value>(p).ok())
        .filter(|v| v["action"] == "error")
        .map(|v| v["data"]["code"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn pings_and_binary_frames_count_against_the_message_rate_limit() {
    // Five frames, then (practically) no more.
    let s = Server::start(&["--rate-limit", "0.01", "--rate-burst", "5"]);

    let mut pinger = raw_socket(&s).await;
    read_frame(&mut pinger).await; // hello
    let mut flood = Vec::new();
    for _ in 0..40 {
        flood.extend(masked(0x89, b"ping"));
    }
    flood.extend(masked(0x88, &1000u16.to_be_bytes()));
    pinger.write_all(&flood).await.unwrap();
    let frames = frames_until_close(&mut pinger).await;
    let pongs = frames.iter().filter(|(op, _)| *op == 0xA).count();
    assert!(pongs <= 5, "{pongs} pings answered past a burst of 5");
    assert_eq!(error_codes(&frames), ["rate_limited"]);

    let mut binary = raw_socket(&s).await;
    read_frame(&mut binary).await; // hello
    let mut flood = Vec::new();
    for _ in 0..40 {
        flood.extend(masked(0x82, b"\x00\x01"));
    }
    flood.extend(masked(0x88, &1000u16.to_be_bytes()));
    binary.write_all(&flood).await.unwrap();
    let codes = error_codes(&frames_until_close(&mut binary).await);
    let answered = codes.iter().filter(|c| *c == "binary_frame").count();
    assert!(
        answered <= 5,
        "{answered} binary frames answered: {codes:?}"
    );
    assert_eq!(codes.iter().filter(|c| *c == "rate_limited").count(), 1);
}

/// A member that sends chat lines as fast as its socket takes them,
/// reading between its writes as one task, the way a WebSocket
/// library's client does; returns the close code it read, or `None` if
/// the connection broke first (a reset: a write failed, or the read).
async fn flood_until_closed(member: Client, sent: Arc<AtomicU64>) -> Option<u16> {
    let line = Message::Text(
        json!({"action": "talkToRoom", "data": "x".repeat(1000)})
            .to_string()
            .into(),
    );
    let (mut tx, mut rx) = member.ws.split();
    let read_until_close = async {
        tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                tokio::select! {
                    received = rx.next() => match received {
                        Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                        Some(Ok(_)) => {}
                        _ => return None,
                    },
                    written = tx.send(line.clone()) => match written {
                        Ok(()) => { sent.fetch_add(1000, Relaxed); }
                        Err(_) => return None,
                    },
                }
            }
        })
        .await
        .ok()
        .flatten()
    };
    read_until_close.await
}

#[tokio::test]
async fn members_still_sending_fast_at_a_stop_get_close_1001_not_a_reset() {
    for round in 0..3 {
        let s = Server::start(&["--rate-limit", "1000000", "--rate-burst", "1000000"]);
        let sent = Arc::new(AtomicU64::new(0));
        let mut members = Vec::new();
        for i in 0..5 {
            let member = s.joined(&format!("stop-{round}-{i}")).await;
            members.push(flood_until_closed(member, sent.clone()));
        }
        let codes = futures_util::future::join_all(members);
        let stop = async {
            // Everyone is flooding: a few MB have gone out (or, on a very
            // slow machine, some time has passed).
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            while sent.load(Relaxed) < 4 << 20 && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            s.signal(libc::SIGTERM);
        };
        let (codes, ()) = tokio::join!(codes, stop);
        assert_eq!(codes, [Some(1001); 5], "round {round}");
    }
}

#[tokio::test]
async fn without_a_built_app_the_page_does_not_say_where_the_server_looked() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("operators-secret-folder");
    let s = Server::start_serving(&missing, &[]);
    for path in ["/", "/fridge"] {
        let answer = s.get(path).await;
        assert_eq!(status(&answer), 200, "{answer}");
        assert!(answer.contains("cargo xtask"), "{answer}");
        assert!(!answer.contains("operators-secret-folder"), "{answer}");
        assert!(!answer.contains(&*tmp.path().to_string_lossy()), "{answer}");
    }
}
