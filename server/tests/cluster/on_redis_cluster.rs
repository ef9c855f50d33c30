//! The cluster on a Redis Cluster (`--redis-cluster`): three masters
//! sharing the slots (`RedisCluster`), three nodes given all of them as
//! seeds. The rooms are picked so that their keys live on different
//! masters: a room is whole on one shard, the cluster spans them.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::future::join_all;
use serde_json::json;

use super::{
    freezes_of_one_word_on_two_nodes_give_one_holder,
    operations_in_flight_are_applied_once_after_their_node_dies, EIGHT_LOCKS,
};
use crate::common::{board, WAIT};
use crate::harness::*;

/// Two rooms named `<prefix>-<n>` whose keys two different masters hold.
fn rooms_on_two_masters(redis: &RedisCluster, prefix: &str) -> [String; 2] {
    let first = format!("{prefix}-0");
    let other = (1..100)
        .map(|i| format!("{prefix}-{i}"))
        .find(|room| redis.master_of(room) != redis.master_of(&first))
        .expect("a room on another master");
    assert_ne!(redis.master_of(&first), redis.master_of(&other));
    [first, other]
}

#[tokio::test]
async fn chat_reaches_members_on_every_node_in_one_order_in_rooms_on_two_masters() {
    let (redis, nodes) = cluster_on_redis_cluster(&[]);
    for room in rooms_on_two_masters(&redis, "lounge") {
        let mut clients = Vec::new();
        for node in &nodes {
            clients.push(node.joined(&room).await);
        }
        chat_in_turns(&mut clients, 10).await;
    }
}

#[tokio::test]
async fn the_cap_holds_across_nodes_on_a_redis_cluster() {
    let (_redis, nodes) = cluster_on_redis_cluster(&["--max-room-size", "5"]);
    let mut host = nodes[0].joined("small").await;
    host.send(json!({"action":"stateUpdate","data":board(1)}))
        .await;
    caught_up(&mut host).await;
    let mut racers = Vec::new();
    for i in 0..19 {
        racers.push(nodes[i % 3].client().await);
    }
    // 20 joiners on three nodes for a room of 5: the host, then 19 racing
    // for the 4 seats left.
    let answers = join_all(racers.iter_mut().map(|c| c.join("small"))).await;
    let count = |action: &str| answers.iter().filter(|a| a["action"] == action).count();
    assert_eq!(count("hydrate"), 4, "{answers:?}");
    assert_eq!(count("roomFull"), 15, "{answers:?}");
}

#[tokio::test]
async fn two_nodes_freezing_one_word_give_one_holder_on_each_master() {
    let (redis, nodes) = cluster_on_redis_cluster(EIGHT_LOCKS);
    for room in rooms_on_two_masters(&redis, "fridge") {
        freezes_of_one_word_on_two_nodes_give_one_holder(&nodes, &room).await;
    }
}

#[tokio::test]
async fn operations_in_flight_when_a_node_dies_are_applied_once_on_a_redis_cluster() {
    let (_redis, nodes) =
        cluster_on_redis_cluster(&["--rate-limit", "100000", "--rate-burst", "100000"]);
    operations_in_flight_are_applied_once_after_their_node_dies(nodes, "inflight").await;
}

#[tokio::test]
async fn every_node_lists_the_rooms_of_every_master() {
    let (redis, nodes) = cluster_on_redis_cluster(&["--list-rooms"]);
    let [one, other] = rooms_on_two_masters(&redis, "hall");
    let _a = nodes[0].joined(&one).await;
    let _b = nodes[1].joined(&other).await;
    let _c = nodes[2].joined(&other).await;
    let wanted = BTreeMap::from([(one, 1), (other, 2)]);
    let deadline = tokio::time::Instant::now() + WAIT;
    for node in &nodes {
        while rooms_seen_by(node).await != wanted {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{:?}",
                rooms_seen_by(node).await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test]
async fn a_node_hears_its_rooms_on_whichever_master_holds_them() {
    let (redis, nodes) = cluster_on_redis_cluster(&[]);
    let [one, other] = rooms_on_two_masters(&redis, "ear");
    let mut a = nodes[0].joined(&one).await;
    let mut b = nodes[1].joined(&one).await;
    let _c = nodes[2].joined(&other).await;
    // Each hosting node subscribed once; the node hosting neither is not.
    assert_eq!(redis.subscribers(&one), 2);
    assert_eq!(redis.subscribers(&other), 1);
    a.send(json!({"action":"talkToRoom","data":"across"})).await;
    read_until(&mut b, |got| got.iter().any(|v| v["data"] == "across")).await;
    // Once the room has no seats left, its nodes stop listening.
    a.close().await;
    b.close().await;
    until(|| redis.subscribers(&one) == 0).await;
    assert_eq!(redis.subscribers(&other), 1);
}

#[tokio::test]
async fn a_node_subscribes_again_after_its_connection_to_a_shard_is_cut() {
    let (mut redis, nodes) = cluster_on_redis_cluster(&[]);
    let mut a = nodes[0].joined("wire").await;
    let mut b = nodes[1].joined("wire").await;
    assert_eq!(redis.subscribers("wire"), 2);
    // Every subscribed connection of the room's master is cut: both nodes
    // reconnect and subscribe again by themselves.
    let cut: u64 = redis
        .master_holding("wire")
        .command(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    assert!(cut >= 2, "{cut}");
    until(|| redis.subscribers("wire") == 2).await;
    // And the room goes on across the nodes, in both directions.
    a.send(json!({"action":"talkToRoom","data":"after the cut"}))
        .await;
    read_until(&mut b, |got| {
        got.iter().any(|v| v["data"] == "after the cut")
    })
    .await;
    b.send(json!({"action":"talkToRoom","data":"heard"})).await;
    read_until(&mut a, |got| got.iter().any(|v| v["data"] == "heard")).await;
}

#[tokio::test]
async fn a_message_the_rooms_master_did_not_take_is_told_to_its_sender() {
    let (mut redis, nodes) = cluster_on_redis_cluster(&[]);
    let mut a = nodes[0].joined("outage").await;
    redis.master_holding("outage").stop();
    a.send(json!({"action":"talkToRoom","data":"into the void"}))
        .await;
    let frames = read_until(&mut a, |got| got.iter().any(|v| v["action"] == "error")).await;
    let error = frames.last().unwrap();
    assert_eq!(error["data"]["code"], "unavailable", "{error}");
}

/// Returns once `done` holds; panics if it does not within `WAIT`.
async fn until(done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
