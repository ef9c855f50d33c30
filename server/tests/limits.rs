//! Limits that keep one client or one address from exhausting the server
//! or growing its store: connections in all and per address, new rooms
//! per address, stored-room retention, and a bounded graceful stop.

mod common;

use std::time::{Duration, Instant};

use common::{board, Client, PresenceView, Server, WAIT};
use serde_json::{json, Value};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Error as WsError;

/// Opens a WebSocket from `source` (any 127.0.0.0/8 address) and returns
/// the joined client, or the HTTP status and `Retry-After` it was refused with.
async fn connect_from(server: &Server, source: &str) -> Result<Client, (u16, Option<String>)> {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    let tcp: TcpStream = socket.connect(server.addr.parse().unwrap()).await.unwrap();
    let stream = tokio_tungstenite::MaybeTlsStream::Plain(tcp);
    match tokio_tungstenite::client_async(server.url("/ws"), stream).await {
        Ok((ws, _)) => {
            let mut client = Client {
                ws,
                hello: Value::Null,
                presence: PresenceView::default(),
            };
            client.hello = client.expect("hello").await;
            Ok(client)
        }
        Err(WsError::Http(response)) => Err((
            response.status().as_u16(),
            response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        )),
        Err(e) => panic!("neither a socket nor an HTTP refusal: {e}"),
    }
}

async fn admitted(server: &Server, source: &str) -> Client {
    match connect_from(server, source).await {
        Ok(client) => client,
        Err(refused) => panic!("refused from {source}: {refused:?}"),
    }
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("attractio_{name} ")))
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn past_max_connections_an_upgrade_gets_503_with_retry_after() {
    let server = Server::start(&["--max-connections", "3", "--max-connections-per-ip", "10"]);
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(admitted(&server, "127.0.0.1").await);
    }
    let (status, retry) = connect_from(&server, "127.0.0.2")
        .await
        .err()
        .expect("refused");
    assert_eq!(status, 503);
    assert!(retry.is_some_and(|r| r.parse::<u64>().unwrap() > 0));
    // A closed connection frees its place.
    open.pop().unwrap().close().await;
    let mut again = None;
    for _ in 0..50 {
        if let Ok(c) = connect_from(&server, "127.0.0.2").await {
            again = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(again.is_some(), "the freed place was never given back");
    let text = server.get("/metrics").await;
    assert!(metric(&text, "upgrades_refused_server_full_total") >= 1);
    // Plain HTTP still answers at the limit.
    assert!(server.get("/healthz").await.contains(r#""status":"ok""#));
}

#[tokio::test]
async fn past_max_connections_per_ip_an_upgrade_gets_429_and_other_addresses_still_connect() {
    let server = Server::start(&["--max-connections-per-ip", "2"]);
    let _a = admitted(&server, "127.0.0.1").await;
    let _b = admitted(&server, "127.0.0.1").await;
    let (status, retry) = connect_from(&server, "127.0.0.1")
        .await
        .err()
        .expect("refused");
    assert_eq!(status, 429);
    assert!(retry.is_some());
    assert!(connect_from(&server, "127.0.0.3").await.is_ok());
    let text = server.get("/metrics").await;
    assert_eq!(metric(&text, "upgrades_refused_address_full_total"), 1);
}

#[tokio::test]
async fn an_address_creating_rooms_too_fast_is_refused_with_a_typed_error_and_stays_where_it_was() {
    let server = Server::start(&["--new-rooms-per-minute", "3", "--save-interval", "50ms"]);
    let mut spammer = admitted(&server, "127.0.0.1").await;
    for n in 1..=3 {
        assert_eq!(
            spammer.join(&format!("spam-{n}")).await["action"],
            "newRoom"
        );
        spammer
            .send(json!({"action":"stateUpdate","data": board(1)}))
            .await;
    }
    spammer
        .send(json!({"action":"newClient","room":"spam-4"}))
        .await;
    let refused = spammer.expect("error").await;
    assert_eq!(refused["data"]["code"], "too_many_rooms", "{refused}");
    // Still in spam-3: its chat reaches a member there.
    let mut friend = admitted(&server, "127.0.0.2").await;
    assert_eq!(friend.join("spam-3").await["action"], "hydrate");
    spammer
        .send(json!({"action":"talkToRoom","data":"still here"}))
        .await;
    let line = friend.expect("talkToRoom").await;
    assert_eq!(line["data"], "still here");
    // Rooms that exist are not new: open ones and stored ones.
    assert_eq!(spammer.join("spam-3").await["action"], "hydrate");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(spammer.join("spam-1").await["action"], "hydrate");
    // Another address has its own allowance.
    assert_eq!(friend.join("spam-5").await["action"], "newRoom");
    let text = server.get("/metrics").await;
    assert_eq!(metric(&text, "rooms_refused_total"), 1);
}

#[tokio::test]
async fn stored_rooms_untouched_for_the_retention_are_swept_and_open_ones_kept() {
    let server = Server::start(&["--room-retention", "1s", "--save-interval", "50ms"]);
    let mut a = server.joined("left").await;
    a.send(json!({"action":"stateUpdate","data": board(3)}))
        .await;
    a.close().await;
    let mut b = server.joined("staying").await;
    b.send(json!({"action":"stateUpdate","data": board(2)}))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(metric(&server.get("/metrics").await, "stored_rooms"), 2);
    // Well past the retention and a few sweeps (every 250 ms here).
    let deadline = Instant::now() + WAIT;
    loop {
        let text = server.get("/metrics").await;
        if metric(&text, "rooms_expired_total") >= 1 {
            assert_eq!(metric(&text, "stored_rooms"), 1);
            assert!(metric(&text, "store_bytes") > 0);
            break;
        }
        assert!(Instant::now() < deadline, "nothing swept: {text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // The swept room starts afresh; the open one kept its board.
    let mut c = server.client().await;
    assert_eq!(c.join("left").await["action"], "newRoom");
    let mut d = server.client().await;
    let staying = d.join("staying").await;
    assert_eq!(staying["action"], "hydrate");
    assert_eq!(staying["data"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn a_graceful_stop_ends_within_the_shutdown_timeout_while_a_member_has_stopped_reading() {
    let server = Server::start(&[
        "--shutdown-timeout",
        "1s",
        "--rate-limit",
        "1000",
        "--rate-burst",
        "1000",
    ]);
    // A member whose socket takes nothing more: the kernel's buffers fill,
    // the rest of the room's lines wait in its queue.
    let stalled = server.joined("stall").await;
    let mut talker = server.joined("stall").await;
    let line = "x".repeat(60_000);
    for _ in 0..300 {
        talker
            .send(json!({"action":"talkToRoom","data": line}))
            .await;
    }
    // The talker's own lines are not echoed: an echo round trip says the
    // room has taken them all.
    talker.send(json!({"action":"echo","data":"done"})).await;
    talker.expect("echo").await;
    let started = Instant::now();
    server.signal(libc::SIGTERM);
    let mut child = server;
    let status = tokio::task::spawn_blocking(move || {
        let status = child.child.wait().unwrap();
        (status, child)
    });
    let (status, _server) = tokio::time::timeout(Duration::from_secs(8), status)
        .await
        .expect("the stop is not held by the stalled reader")
        .unwrap();
    assert!(status.success(), "{status:?}");
    // The write timeout a stalled reader used to hold the stop for is 10 s.
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    drop((stalled, talker));
}

#[tokio::test]
async fn a_server_whose_logs_nobody_reads_any_more_still_works_and_stops() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    // Stdout and stderr go to pipes that are then closed, as when the
    // reader of `attractio 2>&1 | head` goes away: every write fails.
    let mut child = Command::new(env!("CARGO_BIN_EXE_attractio"))
        .args(["--addr", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--static-dir")
        .arg(dir.path().join("app"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    drop(child.stderr.take());
    let addr = line
        .trim()
        .strip_prefix("attractio listening on http://")
        .unwrap()
        .to_owned();
    // Logging (a join, a refused frame) does not take the server down.
    let mut c = Client::connect(&format!("ws://{addr}/ws")).await;
    c.join("unread").await;
    c.send(json!({"action":"freeze","elementID":"nothing"}))
        .await;
    assert_eq!(c.expect("error").await["data"]["code"], "unknown_word");
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap());
    let status = tokio::time::timeout(Duration::from_secs(10), status)
        .await
        .expect("SIGTERM stops a server whose logs go nowhere")
        .unwrap();
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn an_address_keeps_at_most_max_stored_rooms_per_ip_until_the_sweep_deletes_them() {
    let limits = [
        "--max-stored-rooms-per-ip",
        "3",
        "--new-rooms-per-minute",
        "1000",
        "--save-interval",
        "50ms",
    ];
    let server = Server::start(&limits);
    // Three rooms made and left: each is stored, and each still counts.
    for n in 1..=3 {
        let mut maker = admitted(&server, "127.0.0.1").await;
        assert_eq!(maker.join(&format!("hoard-{n}")).await["action"], "newRoom");
        maker
            .send(json!({"action":"stateUpdate","data": board(1)}))
            .await;
        maker.close().await;
    }
    let deadline = Instant::now() + WAIT;
    while metric(&server.get("/metrics").await, "stored_rooms") < 3 {
        assert!(Instant::now() < deadline, "the rooms were not stored");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut maker = admitted(&server, "127.0.0.1").await;
    maker
        .send(json!({"action":"newClient","room":"hoard-4"}))
        .await;
    let refused = maker.expect("error").await;
    assert_eq!(refused["data"]["code"], "too_many_rooms", "{refused}");
    // Stored rooms are not new, and another address has its own bound.
    assert_eq!(maker.join("hoard-1").await["action"], "hydrate");
    let mut other = admitted(&server, "127.0.0.2").await;
    assert_eq!(other.join("elsewhere").await["action"], "newRoom");
    maker.close().await;
    other.close().await;
    // The count is kept in the store: a restart with a short retention
    // sweeps the rooms away, and with them what they counted.
    let (_, tmp) = server.stop();
    let swept = [&limits[..], &["--room-retention", "1s"]].concat();
    let server = Server::start_in(tmp.as_ref().unwrap().path(), &swept, None);
    let deadline = Instant::now() + WAIT;
    loop {
        // Counted once the sweep is done, its creations released too.
        let text = server.get("/metrics").await;
        if metric(&text, "rooms_expired_total") >= 3 {
            assert_eq!(metric(&text, "stored_rooms"), 0, "{text}");
            break;
        }
        assert!(Instant::now() < deadline, "nothing swept: {text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut maker = admitted(&server, "127.0.0.1").await;
    let created = maker.join("hoard-4").await;
    assert_eq!(created["action"], "newRoom", "{created}");
}
