//! `--new-rooms-per-minute` in a cluster: only a room that exists nowhere
//! is created, and the count of an address's creations is the cluster's;
//! `--max-stored-rooms-per-ip` in a cluster: the rooms an address created
//! within the retention are bounded for the whole cluster.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{cluster, Node, Redis};

/// Joins `room` as a fresh client of `node`; the client and its answer
/// (a board, `roomFull`, or an error such as `too_many_rooms`).
async fn try_join(node: &Node, room: &str) -> (crate::common::Client, Value) {
    let mut c = node.client().await;
    c.send(json!({"action":"newClient","room":room})).await;
    let answer = c
        .expect_any(&["hydrate", "newRoom", "roomFull", "error"])
        .await;
    (c, answer)
}

#[tokio::test]
async fn joining_or_resuming_rooms_that_exist_on_other_nodes_creates_none() {
    let redis = Redis::start();
    // Node 0 lets this address make 31 rooms; the others allow 30 a minute,
    // for the cluster. (A joiner of a room without a board waits for its
    // members' answer for `--state-timeout`: kept short.)
    let quick = ["--state-timeout", "100ms", "--new-rooms-per-minute"];
    let maker = Node::start("127.0.0.2", &redis, &[&quick[..], &["100"]].concat());
    let limited = ["127.0.0.3", "127.0.0.4"]
        .map(|ip| Node::start(ip, &redis, &[&quick[..], &["30"]].concat()));
    let rooms: Vec<String> = (0..31).map(|i| format!("made-{i}")).collect();
    let mut makers = Vec::new();
    for room in &rooms {
        let (c, answer) = try_join(&maker, room).await;
        assert_eq!(answer["action"], "newRoom", "{room}: {answer}");
        makers.push(c);
    }
    // Clicking through 31 rooms that exist (open on node 0) from the same
    // address, on node 1: nothing is created, nothing refused.
    let mut visitors = Vec::new();
    for room in &rooms {
        let (c, answer) = try_join(&limited[0], room).await;
        assert_ne!(answer["action"], "error", "{room}: {answer}");
        visitors.push(c);
    }
    // The 31 creations on node 0 count on node 1 too: a new room is one
    // too many for this minute, on any node.
    let (_c, answer) = try_join(&limited[0], "made-32").await;
    assert_eq!(answer["data"]["code"], "too_many_rooms", "{answer}");
    drop(visitors);
    // Node 0 dies; its 31 members resume on node 2, which hosts none of
    // the rooms: they exist (in Redis), so none is refused.
    let sessions: Vec<(String, u64)> = makers
        .iter()
        .map(|c| {
            let token = c.hello["data"]["resumeToken"].as_str().unwrap();
            (token.to_owned(), c.id())
        })
        .collect();
    drop(maker);
    drop(makers);
    for (room, (token, id)) in rooms.iter().zip(&sessions) {
        let mut back = limited[1].client().await;
        back.send(json!({"action":"newClient","room":room,"resumeToken":token}))
            .await;
        let answer = back.expect_any(&["resumed", "error", "roomFull"]).await;
        assert_eq!(answer["action"], "resumed", "{room}: {answer}");
        assert_eq!(answer["data"]["id"], *id, "{room}: {answer}");
    }
}

#[tokio::test]
async fn an_address_keeps_at_most_max_stored_rooms_per_ip_in_the_whole_cluster() {
    let (_redis, nodes) = cluster(&[
        "--max-stored-rooms-per-ip",
        "3",
        "--new-rooms-per-minute",
        "1000",
        "--state-timeout",
        "100ms",
    ]);
    // Three rooms from one address, made on two nodes.
    let mut makers = Vec::new();
    for (node, room) in [(0, "kept-1"), (1, "kept-2"), (0, "kept-3")] {
        let (c, answer) = try_join(&nodes[node], room).await;
        assert_eq!(answer["action"], "newRoom", "{room}: {answer}");
        makers.push(c);
    }
    // A fourth, on the third node: the cluster keeps three for this
    // address already.
    let (_c, answer) = try_join(&nodes[2], "kept-4").await;
    assert_eq!(answer["action"], "error", "{answer}");
    assert_eq!(answer["data"]["code"], "too_many_rooms", "{answer}");
    let message = answer["data"]["message"].as_str().unwrap();
    assert!(message.contains("still stored"), "{answer}");
    // Joining one that exists creates nothing: still allowed.
    let (_c, answer) = try_join(&nodes[2], "kept-2").await;
    assert_ne!(answer["action"], "error", "{answer}");
}

#[tokio::test]
async fn an_address_may_create_again_once_its_rooms_are_older_than_the_retention() {
    let (_redis, nodes) = cluster(&[
        "--max-stored-rooms-per-ip",
        "2",
        "--new-rooms-per-minute",
        "1000",
        "--room-retention",
        "3s",
    ]);
    for room in ["aged-1", "aged-2"] {
        let (_c, answer) = try_join(&nodes[0], room).await;
        assert_eq!(answer["action"], "newRoom", "{room}: {answer}");
    }
    let (_c, answer) = try_join(&nodes[1], "aged-3").await;
    assert_eq!(answer["data"]["code"], "too_many_rooms", "{answer}");
    // Once the two were made longer than the retention ago, they no longer
    // count (their keys are gone from Redis by then unless used).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (_c, answer) = try_join(&nodes[1], "aged-3").await;
        if answer["action"] == "newRoom" {
            break;
        }
        assert_eq!(answer["data"]["code"], "too_many_rooms", "{answer}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "still refused after 60 s: {answer}"
        );
    }
}
