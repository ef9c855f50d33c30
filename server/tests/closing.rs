//! How the server ends a connection it refuses or lets go, specified through
//! real sockets against the real binary: the client is told why, with a
//! close frame it really receives, and the server does not hold on to it.

mod common;

use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// RFC 6455 §8.1: text that is not UTF-8 fails the connection as soon as
/// it is seen, not once the message ends (conformance suite, section 6.4).
#[tokio::test]
async fn invalid_utf8_in_a_first_fragment_is_refused_before_the_message_ends() {
    let s = Server::start(&[]);
    let mut tcp = raw_socket(&s).await;
    // A fragment that can never be the start of text; the final fragment
    // never comes.
    tcp.write_all(&masked(0x01, b"fine so far \xff"))
        .await
        .unwrap();
    let closed = tokio::time::timeout(WAIT, read_close(&mut tcp)).await;
    let (code, reason) = closed.expect("no close frame while the message was unfinished");
    assert_eq!(code, 1007, "{reason}");
}

/// A client that sends a message far over the cap still has most of it in
/// flight when the server refuses it from its header. A socket closed with
/// unread data answers with a reset: the client's write fails, and a client
/// library reports a broken connection (1006) instead of the close frame.
/// So the server reads the rest away after its close frame (conformance
/// suite, section 9).
#[tokio::test]
async fn every_client_writing_an_oversized_message_at_once_receives_close_1009() {
    let s = Server::start(&[]);
    let frame = masked(0x81, &vec![b'x'; 1 << 20]);
    let mut sockets = Vec::new();
    for _ in 0..100 {
        let tcp = raw_socket(&s).await;
        // Far less than the message, so most of it is still in flight when
        // the server refuses it, as on a real network.
        socket2::SockRef::from(&tcp)
            .set_send_buffer_size(16 * 1024)
            .unwrap();
        sockets.push(tcp);
    }
    let clients: Vec<_> = sockets
        .into_iter()
        .map(|mut tcp| {
            let frame = frame.clone();
            tokio::spawn(async move {
                // As a client library does: the whole message, then read.
                if let Err(e) = tcp.write_all(&frame).await {
                    return Err(format!("writing: {e}"));
                }
                match tokio::time::timeout(WAIT, try_read_close(&mut tcp)).await {
                    Ok(Ok((code, _))) => Ok(code),
                    Ok(Err(e)) => Err(format!("reading: {e}")),
                    Err(_) => Err("no close frame in time".to_owned()),
                }
            })
        })
        .collect();
    let mut missed = Vec::new();
    for client in clients {
        match client.await.unwrap() {
            Ok(1009) => {}
            other => missed.push(other),
        }
    }
    assert!(
        missed.is_empty(),
        "{} of 100 did not receive close 1009: {:?}",
        missed.len(),
        &missed[..missed.len().min(3)]
    );
}

/// A member that joined `room` on a raw socket whose receive buffer is
/// about `rcvbuf` bytes, and that reads nothing yet.
async fn narrow_member(s: &Server, room: &str, rcvbuf: u32) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    // Before connecting, so the window it advertises is small too.
    socket.set_recv_buffer_size(rcvbuf).unwrap();
    let mut tcp = socket
        .connect(format!("127.0.0.1:{}", s.port()).parse().unwrap())
        .await
        .unwrap();
    tcp.write_all(UPGRADE_REQUEST).await.unwrap();
    read_upgrade(&mut tcp).await;
    let join = serde_json::json!({"action": "newClient", "room": room}).to_string();
    tcp.write_all(&masked(0x81, join.as_bytes())).await.unwrap();
    tcp
}

/// A counter or gauge from `/metrics`, by its full name (with labels).
async fn metric(s: &Server, name: &str) -> u64 {
    let text = s.get("/metrics").await;
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or("0");
    line.trim().parse().unwrap()
}

/// A queue long enough that a member is only let go once its socket takes
/// nothing more (a room's turn can queue several lines at once), and no
/// rate limit on the sender; rooms listed, to see the member in.
const SLOW_CONSUMER_ARGS: &[&str] = &[
    "--list-rooms",
    "--outbound-queue",
    "64",
    "--rate-limit",
    "100000",
    "--rate-burst",
    "100000",
];

const LINES_OUT: &str = "attractio_messages_out_total{action=\"talkToRoom\"}";
const EVICTED: &str = "attractio_slow_consumer_disconnects_total";

/// Joins a sender to `room` beside a member that reads nothing, and sends
/// numbered 32 KB lines until the room lets that member go. Returns the
/// sender and how many lines the room queued for the member.
async fn flood_until_evicted(s: &Server, room: &str) -> (Client, u64) {
    let joined = format!(r#"{{"members":1,"room":"{room}"}}"#);
    while !s.get("/api/rooms").await.contains(&joined) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut sender = s.joined(room).await;
    let before = metric(s, LINES_OUT).await;
    let pad = "p".repeat(32 * 1024);
    for i in 0..1000 {
        let line = serde_json::json!({"action": "talkToRoom", "data": {"i": i, "pad": pad}});
        sender.send(line).await;
        if metric(s, EVICTED).await == 1 {
            // Only the member is sent the lines: the sender hears none.
            return (sender, metric(s, LINES_OUT).await - before);
        }
    }
    panic!("a member that reads nothing was never let go");
}

/// A member that stops reading is let go when its queue is full. It is
/// told why: the frame on the wire is finished, the frames still queued are
/// dropped (history has them for a resume), and close 1008 follows, so a
/// reader that was only stalled finds whole frames and then the close.
#[tokio::test]
async fn a_slow_consumer_that_reads_again_finds_close_1008_after_whole_frames() {
    let s = Server::start(SLOW_CONSUMER_ARGS);
    let mut slow = narrow_member(&s, "flood", 4096).await;
    let (_sender, queued) = flood_until_evicted(&s, "flood").await;

    let mut lines = Vec::new();
    let close = tokio::time::timeout(WAIT, async {
        loop {
            let (b0, payload) = try_read_frame(&mut slow).await?;
            if b0 == 0x88 {
                return std::io::Result::Ok(payload);
            }
            assert_eq!(b0, 0x81, "frame {}: not a whole text frame", lines.len());
            let v: serde_json::Value = serde_json::from_slice(&payload)
                .unwrap_or_else(|e| panic!("frame {} is cut short: {e}", lines.len()));
            if let Some(i) = v["data"]["i"].as_u64() {
                lines.push(i);
            }
        }
    });
    let payload = close
        .await
        .expect("no close frame in time")
        .expect("the connection broke before its close frame");
    let code = u16::from_be_bytes([payload[0], payload[1]]);
    assert_eq!(code, 1008, "{:?}", String::from_utf8_lossy(&payload[2..]));
    assert!(String::from_utf8_lossy(&payload[2..]).contains("slow consumer"));
    assert_eq!(
        lines,
        (0..lines.len() as u64).collect::<Vec<_>>(),
        "lines in order, none missing"
    );
    let last_queued = queued - 1;
    assert!(
        lines.last() < Some(&last_queued),
        "line {last_queued} was still queued when the member was let go, and came anyway"
    );
    // And then the server ends the connection.
    let mut rest = Vec::new();
    let eof = tokio::time::timeout(WAIT, slow.read_to_end(&mut rest)).await;
    assert!(matches!(eof, Ok(Ok(0))), "{eof:?}");
}

/// A member that never reads again cannot take even its close frame; its
/// socket (and the megabytes the kernel buffers for it) is let go within a
/// few seconds, not after the full write timeout.
#[tokio::test]
async fn a_slow_consumer_that_never_reads_again_is_let_go_within_seconds() {
    let s = Server::start(SLOW_CONSUMER_ARGS);
    let _slow = narrow_member(&s, "flood", 4096).await;
    let (_sender, _) = flood_until_evicted(&s, "flood").await;
    let let_go = async {
        while metric(&s, "attractio_connections").await != 1 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    // The write timeout is 10 s; letting go takes 2.
    tokio::time::timeout(Duration::from_secs(6), let_go)
        .await
        .expect("the evicted member's connection was still open after 6 s");
}
