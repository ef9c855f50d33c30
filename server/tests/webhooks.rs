//! Webhooks, against the real binary and a real HTTP receiver on a free
//! loopback port: every event type, signed and checked here with the
//! `hmac` crate, in room order; retries after 500s; the bounded queue.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use common::*;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

const SECRET: &str = "whsec-for-the-tests";
const KEY: &str = "backend-key";

/// A receiver that checks each event's signature, answers 500 while
/// `failures` lasts, and keeps the events it took.
#[derive(Clone, Default)]
struct Receiver {
    taken: Arc<Mutex<Vec<Value>>>,
    posts: Arc<AtomicUsize>,
    failures: Arc<AtomicUsize>,
    bad_signatures: Arc<AtomicUsize>,
}

/// Whether `header` (`t=…,v1=…`) signs `body` with [`SECRET`].
fn verified(header: &str, body: &[u8]) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", x)) => t = Some(x),
            Some(("v1", x)) => v1 = Some(x),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    let expected: Option<Vec<u8>> = (0..v1.len())
        .step_by(2)
        .map(|i| {
            v1.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect();
    let Some(expected) = expected else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

async fn take(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    r.posts.fetch_add(1, SeqCst);
    let failing = r
        .failures
        .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if failing {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    let header = headers
        .get("attractio-signature")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if !verified(header, &body) {
        r.bad_signatures.fetch_add(1, SeqCst);
        return StatusCode::BAD_REQUEST;
    }
    r.taken
        .lock()
        .unwrap()
        .push(serde_json::from_slice(&body).unwrap());
    StatusCode::NO_CONTENT
}

impl Receiver {
    /// Listens on a free loopback port; returns its URL.
    async fn start(&self) -> String {
        self.start_on(0).await
    }

    /// Listens on `port` (0: a free one); returns its URL.
    async fn start_on(&self, port: u16) -> String {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .route("/hooks", axum::routing::post(take))
            .with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/hooks")
    }

    fn taken(&self) -> Vec<Value> {
        self.taken.lock().unwrap().clone()
    }

    /// Waits until `done` holds for the events taken so far.
    async fn until(&self, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        for _ in 0..300 {
            let taken = self.taken();
            if done(&taken) {
                return taken;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("events so far: {:#?}", self.taken());
    }
}

fn of_type<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == kind).collect()
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name}"))
        .trim()
        .parse()
        .unwrap()
}

async fn http(s: &Server, method: &str, path: &str, body: Value) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let mut tcp = tokio::net::TcpStream::connect(&s.addr).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
         Authorization: Bearer {KEY}\r\nContent-Length: {}\r\n\r\n{body}",
        s.addr,
        body.len()
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    tcp.read_to_string(&mut out).await.unwrap();
    out[9..12].parse().unwrap()
}

fn server(url: &str, extra: &[&str]) -> Server {
    let mut args = vec![
        "--webhook-url",
        url,
        "--webhook-secret",
        SECRET,
        "--api-key",
        KEY,
    ];
    args.extend_from_slice(extra);
    Server::start(&args)
}

#[tokio::test]
async fn every_event_arrives_signed_with_its_room_position_in_room_order() {
    let receiver = Receiver::default();
    let url = receiver.start().await;
    let s = server(
        &url,
        &[
            "--webhook-actions",
            "talkToRoom,announce",
            "--resume-window",
            "1s",
        ],
    );
    let mut a = s.joined("hooks").await;
    let mut b = s.joined("hooks").await;
    a.presence_until(|p| p.ids().len() == 2).await;
    b.send(json!({"action":"talkToRoom","data":"hi"})).await;
    receiver.until(|e| !of_type(e, "message").is_empty()).await;
    assert_eq!(
        http(
            &s,
            "POST",
            "/api/rooms/hooks/publish",
            json!({"action":"announce","data":1})
        )
        .await,
        200
    );
    receiver.until(|e| of_type(e, "message").len() == 2).await;
    let b_id = b.id();
    b.close().await;
    receiver
        .until(|e| !of_type(e, "member.left").is_empty())
        .await;
    // A socket that drops: its seat ends with the resume window.
    let c = s.joined("hooks").await;
    let c_id = c.id();
    drop(c);
    receiver
        .until(|e| of_type(e, "member.left").len() == 2)
        .await;
    assert_eq!(
        http(
            &s,
            "POST",
            "/api/rooms/hooks/disconnect",
            json!({"id": a.id()})
        )
        .await,
        200
    );
    let events = receiver
        .until(|e| !of_type(e, "room.vacated").is_empty())
        .await;

    let seen: Vec<(String, Value, Value)> = events
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_owned(),
                e["data"]["id"].clone(),
                e["data"]["reason"].clone(),
            )
        })
        .collect();
    let expected = vec![
        ("room.created".to_owned(), Value::Null, Value::Null),
        ("member.joined".into(), json!(a.id()), Value::Null),
        ("member.joined".into(), json!(b_id), Value::Null),
        ("message".into(), Value::Null, Value::Null),
        ("message".into(), Value::Null, Value::Null),
        ("member.left".into(), json!(b_id), json!("left")),
        ("member.joined".into(), json!(c_id), Value::Null),
        ("member.left".into(), json!(c_id), json!("window ended")),
        ("member.left".into(), json!(a.id()), json!("kicked")),
        ("room.vacated".into(), Value::Null, Value::Null),
    ];
    assert_eq!(seen, expected, "{events:#?}");
    let messages = of_type(&events, "message");
    assert_eq!(messages[0]["data"]["from"]["id"], json!(b_id));
    assert_eq!(messages[0]["data"]["message"]["data"], "hi");
    assert_eq!(messages[1]["data"]["from"], "server");
    // The room's position, never going back; one epoch; unique ids.
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] <= w[1]), "{seqs:?}");
    assert!(events
        .iter()
        .all(|e| e["epoch"] == events[0]["epoch"] && e["room"] == "hooks"));
    assert!(events.iter().all(|e| e["at"].is_u64()));
    let ids: std::collections::HashSet<_> = events.iter().map(|e| e["id"].to_string()).collect();
    assert_eq!(ids.len(), events.len());
    assert_eq!(receiver.bad_signatures.load(SeqCst), 0);
    let metrics = s.get("/metrics").await;
    assert_eq!(
        metric(&metrics, "attractio_webhooks_sent_total"),
        events.len() as u64
    );
    assert_eq!(
        metric(&metrics, "attractio_webhook_delivery_seconds_count"),
        events.len() as u64
    );
}

#[tokio::test]
async fn a_closed_room_tells_each_member_left_as_room_closed_then_vacated() {
    let receiver = Receiver::default();
    let url = receiver.start().await;
    let s = server(&url, &[]);
    let mut a = s.joined("doomed").await;
    let b = s.joined("doomed").await;
    a.presence_until(|p| p.ids().len() == 2).await;
    assert_eq!(
        http(&s, "DELETE", "/api/rooms/doomed", Value::Null).await,
        204
    );
    let events = receiver
        .until(|e| !of_type(e, "room.vacated").is_empty())
        .await;
    let left: Vec<_> = of_type(&events, "member.left")
        .iter()
        .map(|e| {
            (
                e["data"]["id"].as_u64().unwrap(),
                e["data"]["reason"].clone(),
            )
        })
        .collect();
    assert_eq!(left.len(), 2, "{events:#?}");
    for id in [a.id(), b.id()] {
        assert!(left.contains(&(id, json!("room closed"))), "{left:?}");
    }
    assert_eq!(events.last().unwrap()["type"], "room.vacated");
}

#[tokio::test]
async fn events_refused_with_500_are_sent_again_and_stay_in_order() {
    let receiver = Receiver::default();
    receiver.failures.store(3, SeqCst);
    let url = receiver.start().await;
    let s = server(&url, &[]);
    let a = s.joined("retry").await;
    let b = s.joined("retry").await;
    let events = receiver
        .until(|e| of_type(e, "member.joined").len() == 2)
        .await;
    let kinds: Vec<_> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["room.created", "member.joined", "member.joined"]);
    assert_eq!(events[1]["data"]["id"], json!(a.id()));
    assert_eq!(events[2]["data"]["id"], json!(b.id()));
    assert!(receiver.posts.load(SeqCst) >= 6);
    let metrics = s.get("/metrics").await;
    assert_eq!(metric(&metrics, "attractio_webhooks_retried_total"), 3);
    assert_eq!(metric(&metrics, "attractio_webhooks_sent_total"), 3);
}

#[tokio::test]
async fn with_the_queue_full_new_events_are_dropped_and_counted_and_rooms_go_on() {
    let receiver = Receiver::default();
    // The receiver fails for long: the first event is retried meanwhile.
    receiver.failures.store(usize::MAX, SeqCst);
    let url = receiver.start().await;
    let s = server(
        &url,
        &[
            "--webhook-queue",
            "2",
            "--webhook-retry-for",
            "1h",
            "--state-timeout",
            "100ms",
        ],
    );
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(s.joined("busy").await);
    }
    // The room is not slowed: chat still flows.
    clients[0]
        .send(json!({"action":"talkToRoom","data":"still here"}))
        .await;
    loop {
        let got = clients[1].expect("talkToRoom").await;
        if got["data"] == "still here" {
            break;
        }
    }
    let mut dropped = 0;
    for _ in 0..100 {
        dropped = metric(&s.get("/metrics").await, "attractio_webhooks_dropped_total");
        if dropped > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // 5 events (created, 4 joins): one being retried, two queued, the
    // rest dropped (more if the sender had not taken the first yet).
    assert!((2..=3).contains(&dropped), "{dropped}");
    assert!(receiver.taken().is_empty());
}

#[tokio::test]
async fn events_wait_for_a_receiver_that_is_down_for_a_while() {
    // A free port with nobody on it yet: every post is refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/hooks");
    let s = server(&url, &[]);
    let a = s.joined("patient").await;
    let mut retried = 0;
    for _ in 0..100 {
        retried = metric(&s.get("/metrics").await, "attractio_webhooks_retried_total");
        if retried >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(retried >= 2, "{retried}");
    let receiver = Receiver::default();
    receiver.start_on(port).await;
    let events = receiver
        .until(|e| !of_type(e, "member.joined").is_empty())
        .await;
    let kinds: Vec<_> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["room.created", "member.joined"]);
    assert_eq!(events[1]["data"]["id"], json!(a.id()));
}

#[tokio::test]
async fn an_event_still_failing_after_the_retry_time_is_given_up_and_the_next_goes() {
    let receiver = Receiver::default();
    receiver.failures.store(usize::MAX, SeqCst);
    let url = receiver.start().await;
    let s = server(&url, &["--webhook-retry-for", "300ms"]);
    let _a = s.joined("brief").await;
    let mut failed = 0;
    for _ in 0..100 {
        failed = metric(&s.get("/metrics").await, "attractio_webhooks_failed_total");
        if failed >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // room.created and the first member.joined were given up.
    assert_eq!(failed, 2);
    receiver.failures.store(0, SeqCst);
    let b = s.joined("brief").await;
    let events = receiver
        .until(|e| !of_type(e, "member.joined").is_empty())
        .await;
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["data"]["id"], json!(b.id()));
}

#[test]
fn a_webhook_url_without_a_secret_refuses_to_start() {
    let data = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_attractio"))
        .args([
            "--addr",
            "127.0.0.1:0",
            "--webhook-url",
            "http://127.0.0.1:9/hooks",
        ])
        .arg("--data-dir")
        .arg(data.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--webhook-secret"), "{stderr}");
}
