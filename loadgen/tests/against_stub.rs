//! The scenarios run end to end against an in-test stub room server that
//! speaks the baseline protocol (`newClient`, relay to the rest of the room,
//! `echo`), over real loopback sockets.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use loadgen::scenario::{broadcast, ceiling, drag, echo, idle, smoke, Common};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

type Rooms = Arc<Mutex<HashMap<String, Vec<(u64, mpsc::UnboundedSender<Message>)>>>>;

/// Starts the stub on port 0; with `drop_every` = n > 0 it loses every n-th
/// relayed frame, like an overloaded server would.
async fn stub(drop_every: u64) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("ws://{}/", listener.local_addr().expect("addr"));
    let rooms: Rooms = Arc::default();
    let relayed = Arc::new(AtomicU64::new(0));
    tokio::spawn(async move {
        let mut next_id = 0;
        while let Ok((tcp, _)) = listener.accept().await {
            next_id += 1;
            tokio::spawn(serve(
                tcp,
                next_id,
                rooms.clone(),
                relayed.clone(),
                drop_every,
            ));
        }
    });
    url
}

async fn serve(
    tcp: tokio::net::TcpStream,
    id: u64,
    rooms: Rooms,
    relayed: Arc<AtomicU64>,
    drop_every: u64,
) {
    let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
        return;
    };
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if sink.send(m).await.is_err() {
                break;
            }
        }
    });
    let mut my_room = None;
    while let Some(Ok(msg)) = stream.next().await {
        let Message::Text(text) = msg else { continue };
        let Ok(v) = serde_json::from_str::<Value>(text.as_str()) else {
            continue;
        };
        let room = v["room"].as_str().unwrap_or_default().to_string();
        match v["action"].as_str() {
            Some("newClient") => {
                rooms
                    .lock()
                    .unwrap()
                    .entry(room.clone())
                    .or_default()
                    .push((id, tx.clone()));
                my_room = Some(room);
            }
            Some("echo") => {
                let _ = tx.send(Message::text(text.as_str()));
            }
            Some(_) => {
                let members = rooms
                    .lock()
                    .unwrap()
                    .get(&room)
                    .cloned()
                    .unwrap_or_default();
                for (_, to) in members.iter().filter(|(other, _)| *other != id) {
                    let n = relayed.fetch_add(1, Ordering::Relaxed) + 1;
                    if drop_every > 0 && n.is_multiple_of(drop_every) {
                        continue;
                    }
                    let _ = to.send(Message::text(text.as_str()));
                }
            }
            None => {}
        }
    }
    if let Some(room) = my_room {
        if let Some(members) = rooms.lock().unwrap().get_mut(&room) {
            members.retain(|(other, _)| *other != id);
        }
    }
}

fn common(url: &str, duration_ms: u64) -> Common {
    let mut c = Common::for_url(url);
    c.duration = Duration::from_millis(duration_ms);
    c
}

#[tokio::test]
async fn smoke_passes_against_a_server_that_relays_everything() {
    let url = stub(0).await;
    let (reports, verdict) = smoke::run(&common(&url, 500)).await.expect("smoke runs");
    assert_eq!(verdict, Ok(()));
    let chat = &reports[0];
    assert!(chat.sent.unwrap() > 0);
    assert_eq!(
        chat.expected,
        chat.sent.map(|s| s * 2),
        "3 per room: two recipients each"
    );
    assert_eq!(chat.delivered, chat.expected);
    assert!(chat.latency.is_some());
    assert!(reports[1].round_trips.unwrap() > 0);
}

#[tokio::test]
async fn smoke_fails_when_the_server_loses_broadcasts() {
    let url = stub(7).await;
    let (reports, verdict) = smoke::run(&common(&url, 500)).await.expect("smoke runs");
    assert!(
        verdict.is_err(),
        "lost frames must fail the smoke: {reports:?}"
    );
    assert!(reports[0].delivery_ratio.unwrap() < 1.0);
}

#[tokio::test]
async fn broadcast_reports_server_cost_when_given_its_pid() {
    let url = stub(0).await;
    let mut c = common(&url, 500);
    c.server_pid = Some(std::process::id());
    let mut args = broadcast::Args::new(c, 3, 4, 20.0);
    args.drain = Duration::from_millis(500);
    let r = broadcast::run(&args).await.expect("runs");
    assert_eq!(r.delivery_ratio, Some(1.0));
    let server = r.server.expect("the stub is this process");
    assert!(server.rss_kb > 0 && server.peak_rss_kb >= server.rss_kb);
    assert!(r.deliveries_per_server_cpu_s.is_some());
}

#[tokio::test]
async fn ceiling_steps_up_the_rate_until_the_step_limit() {
    let url = stub(0).await;
    let args = ceiling::Args {
        common: common(&url, 300),
        clients: 8,
        start_rate: 5.0,
        factor: 2.0,
        max_steps: 3,
        min_ratio: 0.999,
        max_p99: Duration::from_secs(1),
        retries: 0,
        drain: Duration::from_millis(300),
    };
    let r = ceiling::run(&args).await.expect("runs");
    assert_eq!(r.steps.len(), 3, "{:?}", r.stop_reason);
    assert!(r.steps.iter().all(|s| s.sustained));
    assert_eq!(r.steps[2].rate_per_client, 20.0);
    assert!(r.max_sustained_deliveries_per_s.unwrap() > 0.0);
}

#[tokio::test]
async fn ceiling_stops_at_the_first_step_that_loses_frames() {
    let url = stub(5).await;
    let args = ceiling::Args {
        common: common(&url, 300),
        clients: 6,
        start_rate: 5.0,
        factor: 2.0,
        max_steps: 4,
        min_ratio: 0.999,
        max_p99: Duration::from_secs(1),
        retries: 0,
        drain: Duration::from_millis(300),
    };
    let r = ceiling::run(&args).await.expect("runs");
    assert_eq!(r.steps.len(), 1);
    assert!(!r.steps[0].sustained);
    assert_eq!(r.max_sustained_deliveries_per_s, None);
}

#[tokio::test]
async fn drag_counts_relayed_moves_and_move_ends() {
    let url = stub(0).await;
    let args = drag::Args {
        common: common(&url, 1000),
        rooms: 2,
        clients: 3,
        hz: 30.0,
        moves_per_end: 30,
        drain: Duration::from_millis(500),
    };
    let r = drag::run(&args).await.expect("runs");
    // 6 clients × 30 moving + 6 moveEnd, each to two others.
    assert_eq!(r.sent, Some(6 * 31));
    assert_eq!(r.delivered, r.expected);
}

#[tokio::test]
async fn echo_counts_closed_loop_round_trips() {
    let url = stub(0).await;
    let r = echo::run(&echo::Args {
        common: common(&url, 300),
        clients: 4,
        per_room: 2,
        rate: 0.0,
    })
    .await
    .expect("runs");
    assert!(r.round_trips.unwrap() > 10);
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    assert!(r.latency.unwrap().p50_us > 0);
}

#[tokio::test]
async fn idle_holds_joined_connections_and_measures_memory() {
    let url = stub(0).await;
    let r = idle::run(&idle::Args {
        common: {
            let mut c = common(&url, 200);
            c.server_pid = Some(std::process::id());
            c
        },
        connections: 60,
        per_room: 10,
        concurrency: 16,
        per_source: 25,
        confirm: true,
        settle: Duration::from_millis(100),
        connect_timeout: Duration::from_secs(20),
    })
    .await
    .expect("runs");
    let idle = r.idle.expect("idle stats");
    assert_eq!(idle.connected, 60, "{:?}", r.warnings);
    assert_eq!(idle.still_open, 60);
    assert_eq!(idle.source_addresses, 3, "127.0.0.1, .2 and .3");
    assert!(idle.server_rss_per_connection_bytes.is_some());
    assert!(idle.connect_join_per_s > 0.0);
}

#[tokio::test]
async fn the_raw_client_answers_pings_and_reads_fragmented_messages() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("ws://{}/", listener.local_addr().expect("addr"));
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        let mut ws = tokio_tungstenite::accept_async(tcp).await.expect("upgrade");
        ws.send(Message::Ping(b"hb".to_vec().into()))
            .await
            .expect("ping");
        let pong = loop {
            match ws.next().await.expect("open").expect("frame") {
                Message::Pong(p) => break p,
                _ => continue,
            }
        };
        // A message in two fragments, then a plain one.
        use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
        use tokio_tungstenite::tungstenite::protocol::frame::Frame;
        let first = Frame::message(b"hel".to_vec(), OpCode::Data(Data::Text), false);
        ws.send(Message::Frame(first)).await.expect("fragment");
        let rest = Frame::message(b"lo".to_vec(), OpCode::Data(Data::Continue), true);
        ws.send(Message::Frame(rest)).await.expect("fragment");
        ws.send(Message::text("world")).await.expect("text");
        pong
    });
    let target = loadgen::client::Target::resolve(&url)
        .await
        .expect("loopback");
    let (_tx, mut rx) = loadgen::raw::connect(&target).await.expect("connects");
    let mut texts = Vec::new();
    while texts.len() < 2 {
        match rx.next().await.expect("reads") {
            loadgen::raw::Incoming::Text(t) => texts.push(String::from_utf8_lossy(t).into_owned()),
            loadgen::raw::Incoming::Closed => break,
        }
    }
    assert_eq!(texts, ["hello", "world"]);
    assert_eq!(&server.await.expect("server")[..], b"hb");
}

#[tokio::test]
async fn a_missed_ceiling_step_is_retried_once_before_it_counts() {
    let url = stub(5).await;
    let args = ceiling::Args {
        common: common(&url, 300),
        clients: 6,
        start_rate: 5.0,
        factor: 2.0,
        max_steps: 4,
        min_ratio: 0.999,
        max_p99: Duration::from_secs(1),
        retries: 1,
        drain: Duration::from_millis(300),
    };
    let r = ceiling::run(&args).await.expect("runs");
    assert_eq!(r.steps.len(), 2, "the first rate, twice");
    assert_eq!(r.steps[0].rate_per_client, r.steps[1].rate_per_client);
    assert!(r.steps.iter().all(|s| !s.sustained));
}
