//! The cluster's list of rooms (`/api/rooms`, `roomFull`'s suggestions)
//! tells each room's members and seats as the room itself counts them,
//! whatever happened to the node that recorded them.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::*;

/// The suggestions a fresh client of `node` gets for the full `room`.
async fn suggestions_for(node: &Node, room: &str) -> Vec<Value> {
    let mut joiner = node.client().await;
    let answer = joiner.join(room).await;
    assert_eq!(answer["action"], "roomFull", "{room} is full: {answer}");
    answer["data"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_room_on_a_node_that_stood_still_is_listed_again_with_its_members() {
    let (_redis, nodes) = cluster(&["--list-rooms", "--max-room-size", "2"]);
    let mut stalled = [nodes[0].joined("b-2").await, nodes[0].joined("b-2").await];
    let _full = [nodes[1].joined("b").await, nodes[1].joined("b").await];
    let both = BTreeMap::from([("b".to_owned(), 2), ("b-2".to_owned(), 2)]);
    until_listed(&nodes[2], &both).await;
    // Node 0 stands still for longer than a record holds its members
    // present: meanwhile they are not listed as present, but their seats
    // still fill the room.
    unsafe { libc::kill(nodes[0].child.id() as i32, libc::SIGSTOP) };
    let stood_still = tokio::time::Instant::now();
    let only_b = BTreeMap::from([("b".to_owned(), 2)]);
    until_listed(&nodes[1], &only_b).await;
    let suggested = suggestions_for(&nodes[2], "b").await;
    assert!(!suggested.contains(&json!("/b-2")), "{suggested:?}");
    tokio::time::sleep_until(stood_still + Duration::from_secs(9)).await;
    unsafe { libc::kill(nodes[0].child.id() as i32, libc::SIGCONT) };
    // Its room carries on, and is listed again on every node.
    stalled[0]
        .send(json!({"action":"talkToRoom","data":"still here"}))
        .await;
    read_until(&mut stalled[1], |got| {
        got.iter().any(|v| v["data"] == "still here")
    })
    .await;
    for node in &nodes {
        until_listed(node, &both).await;
    }
    // Full, so never suggested.
    let suggested = suggestions_for(&nodes[2], "b").await;
    assert!(!suggested.contains(&json!("/b-2")), "{suggested:?}");
    assert!(!suggested.is_empty());
}

#[tokio::test]
async fn a_seat_held_for_a_dead_nodes_member_keeps_its_room_out_of_the_suggestions() {
    let (_redis, mut nodes) = cluster(&["--list-rooms", "--max-room-size", "1"]);
    let mut g = nodes[0].client().await;
    let answer = g.join("s-2").await;
    let (token, epoch) = (
        g.hello["data"]["resumeToken"].as_str().unwrap().to_owned(),
        answer["epoch"].as_u64().unwrap(),
    );
    let last_seq = answer["seq"].as_u64().unwrap();
    let _s = nodes[1].joined("s").await;
    let both = BTreeMap::from([("s".to_owned(), 1), ("s-2".to_owned(), 1)]);
    until_listed(&nodes[2], &both).await;
    // The only node hosting `s-2` dies; G's seat is held for its window
    // (2 minutes), which outlasts the 6 s a record holds its members.
    drop(nodes.remove(0));
    drop(g);
    tokio::time::sleep(Duration::from_secs(8)).await;
    let suggested = suggestions_for(&nodes[1], "s").await;
    assert!(
        !suggested.contains(&json!("/s-2")),
        "G's held seat fills s-2: {suggested:?}"
    );
    assert!(!suggested.is_empty());
    // G comes back into its seat, with what it had.
    let (_back, replayed) = resume_on(&nodes[0], "s-2", &token, epoch, last_seq).await;
    let resumed = replayed.last().unwrap();
    assert_eq!(resumed["data"]["recovered"], true, "{replayed:?}");
}

#[tokio::test]
async fn a_room_whose_keys_redis_lost_is_listed_as_it_started_over() {
    let (redis, nodes) = cluster(&["--list-rooms"]);
    let mut first = nodes[0].joined("q").await;
    first
        .send(json!({"action":"stateUpdate","data":crate::common::board(1)}))
        .await;
    caught_up(&mut first).await;
    let mut members = vec![
        first,
        nodes[1].joined("q").await,
        nodes[2].joined("q").await,
    ];
    until_listed(&nodes[2], &BTreeMap::from([("q".to_owned(), 3)])).await;
    // The shard holding the room (not the list) restarts empty: the room's
    // keys are gone, the list's record of its old log stays.
    let keys: Vec<String> = redis.command(&["KEYS", "attractio:{q}:*"]);
    for key in &keys {
        let _: u64 = redis.command(&["DEL", key]);
    }
    for m in &mut members {
        until_closed(m).await;
    }
    // Two come back to the room started over: the list says two, then one.
    let back = [nodes[0].joined("q").await, nodes[1].joined("q").await];
    for node in &nodes {
        until_listed(node, &BTreeMap::from([("q".to_owned(), 2)])).await;
    }
    let [leaving, _staying] = back;
    leaving.close().await;
    for node in &nodes {
        until_listed(node, &BTreeMap::from([("q".to_owned(), 1)])).await;
    }
}
