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
