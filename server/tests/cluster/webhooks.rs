//! Webhooks in a cluster: every node applies every entry of a room's log,
//! but each event is sent once, by the node the entry came from.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::harness::*;

/// Every event posted, in the order taken.
#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Vec<Value>>>);

async fn take(State(r): State<Receiver>, body: Bytes) -> StatusCode {
    r.0.lock()
        .unwrap()
        .push(serde_json::from_slice(&body).unwrap());
    StatusCode::NO_CONTENT
}

impl Receiver {
    async fn start(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .route("/hooks", axum::routing::post(take))
            .with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/hooks")
    }

    async fn until(&self, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        for _ in 0..300 {
            let taken = self.0.lock().unwrap().clone();
            if done(&taken) {
                return taken;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("events so far: {:#?}", self.0.lock().unwrap());
    }
}

fn count(events: &[Value], kind: &str) -> usize {
    events.iter().filter(|e| e["type"] == kind).count()
}

#[tokio::test]
async fn each_event_is_sent_once_by_the_node_it_came_from() {
    let receiver = Receiver::default();
    let url = receiver.start().await;
    let (_redis, nodes) = cluster(&[
        "--webhook-url",
        &url,
        "--webhook-secret",
        "s",
        "--webhook-actions",
        "talkToRoom",
    ]);
    let mut clients = Vec::new();
    for node in &nodes {
        clients.push(node.joined("hooked").await);
    }
    for c in &mut clients {
        c.presence_until(|p| p.ids().len() == 3).await;
    }
    clients[1]
        .send(json!({"action":"talkToRoom","data":"once"}))
        .await;
    for c in clients.drain(..) {
        c.close().await;
    }
    receiver.until(|e| count(e, "room.vacated") >= 1).await;
    // Anything a second node would have sent has had time to arrive.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let events = receiver.until(|_| true).await;
    let mut by_id: BTreeMap<String, usize> = BTreeMap::new();
    for e in &events {
        *by_id.entry(e["id"].to_string()).or_default() += 1;
    }
    assert!(by_id.values().all(|n| *n == 1), "{by_id:#?}");
    assert_eq!(count(&events, "room.created"), 1, "{events:#?}");
    assert_eq!(count(&events, "member.joined"), 3, "{events:#?}");
    assert_eq!(count(&events, "message"), 1, "{events:#?}");
    assert_eq!(count(&events, "member.left"), 3, "{events:#?}");
    assert_eq!(count(&events, "room.vacated"), 1, "{events:#?}");
    // Each node sends its own in order; the first entry's node, first.
    assert_eq!(events[0]["type"], "room.created");
    let epochs: std::collections::BTreeSet<_> =
        events.iter().map(|e| e["epoch"].to_string()).collect();
    assert_eq!(epochs.len(), 1, "{events:#?}");
}

#[tokio::test]
async fn a_dead_nodes_events_are_sent_by_no_other_node_and_history_fills_the_gap() {
    let receiver = Receiver::default();
    let url = receiver.start().await;
    let (_redis, mut nodes) = cluster(&[
        "--webhook-url",
        &url,
        "--webhook-secret",
        "s",
        "--resume-window",
        "2s",
        "--api-key",
        "k",
    ]);
    let mut watchers = vec![
        nodes[1].joined("fragile").await,
        nodes[2].joined("fragile").await,
    ];
    let victim = nodes[0].joined("fragile").await;
    let id = victim.id();
    for w in &mut watchers {
        w.presence_until(|p| p.is_here(id)).await;
    }
    receiver.until(|e| count(e, "member.joined") == 3).await;
    drop(nodes.remove(0)); // kill -9
    drop(victim);
    // Away (its node's lease seen lapsed, ~7 s), then its seat ends with
    // the window.
    for w in &mut watchers {
        w.presence_until_within(Duration::from_secs(20), |p| !p.ids().contains(&id))
            .await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let events = receiver.until(|_| true).await;
    let mut by_id: BTreeMap<String, usize> = BTreeMap::new();
    for e in &events {
        *by_id.entry(e["id"].to_string()).or_default() += 1;
    }
    assert!(by_id.values().all(|n| *n == 1), "{by_id:#?}");
    // Its leave came from a node that is gone: nobody else tells it.
    let left: Vec<_> = events
        .iter()
        .filter(|e| e["type"] == "member.left" && e["data"]["id"] == json!(id))
        .collect();
    assert!(left.is_empty(), "{left:#?}");
    // The receiver catches up from the last seq it saw.
    let last = events
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .max()
        .unwrap();
    let (status, page) = crate::api::get_with_key(
        &nodes[0].addr,
        "k",
        &format!("/api/rooms/fragile/history?after={last}"),
    )
    .await;
    assert_eq!(status, 200, "{page}");
    let goodbye = page["frames"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["data"].as_str().is_some_and(|d| d.starts_with("Goodbye")));
    assert!(goodbye, "{page}");
}
