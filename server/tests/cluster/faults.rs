//! Faults of Redis and of nodes that must cost a user no more than the
//! fault itself: a room never stays unreachable after Redis is back, an
//! open room is never forgotten, identities survive an empty Redis, and
//! `/healthz` says whether a node can serve a join.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::board;
use crate::harness::*;

/// Joins `room` on `node` with fresh clients until one gets the board
/// (`hydrate`), for up to 30 s; returns that client and its answer.
async fn join_once_it_works(node: &Node, room: &str) -> (crate::common::Client, Value) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut c = node.client().await;
        c.send(json!({"action":"newClient","room":room})).await;
        let answer = c.expect_any(&["hydrate", "newRoom", "error"]).await;
        if answer["action"] == "hydrate" {
            return (c, answer);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{room} on {} still answers {answer}",
            node.addr
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn a_room_that_could_not_start_while_redis_was_away_starts_on_a_later_join() {
    let mut redis = Redis::start_persistent();
    let nodes = three_nodes(&redis, &[]);
    let mut member = nodes[0].joined("zombie").await;
    member
        .send(json!({"action":"stateUpdate","data":board(2)}))
        .await;
    caught_up(&mut member).await;
    // Node 1 hosts another room; the first join of "zombie" there comes
    // while Redis is away, and cannot be served.
    let _elsewhere = nodes[1].joined("elsewhere").await;
    redis.stop();
    let mut early = nodes[1].client().await;
    early
        .send(json!({"action":"newClient","room":"zombie"}))
        .await;
    let answer = early.expect_any(&["hydrate", "newRoom", "error"]).await;
    assert_eq!(answer["data"]["code"], "unavailable", "{answer}");
    // The room that did not start is not kept: node 1 counts one room.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while metric(&nodes[1], "attractio_rooms").await != 1.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the failed room is still counted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Redis is back with everything it had. The nodes subscribe again to
    // the rooms they host, and only to those: node 0 alone hears the room.
    redis.restart();
    for node in &nodes {
        until_health(node, 200).await;
    }
    let channel = "attractio:{zombie}:live";
    let (_, subscribed): (String, u64) = redis.command(&["PUBSUB", "NUMSUB", channel]);
    assert_eq!(subscribed, 1);
    // A later join on node 1 gets the room, its board and its member, and
    // is heard on node 0.
    let (mut late, answer) = join_once_it_works(&nodes[1], "zombie").await;
    assert_eq!(answer["data"].as_array().map(Vec::len), Some(2), "{answer}");
    late.send(json!({"action":"talkToRoom","data":"in at last"}))
        .await;
    read_until(&mut member, |got| {
        got.iter().any(|v| v["data"] == "in at last")
    })
    .await;
}

#[tokio::test]
async fn a_join_right_after_the_subscription_broke_does_not_refuse_the_room_for_good() {
    let (redis, nodes) = cluster(&[]);
    let mut member = nodes[0].joined("cut").await;
    member
        .send(json!({"action":"stateUpdate","data":board(1)}))
        .await;
    caught_up(&mut member).await;
    let _elsewhere = nodes[1].joined("elsewhere").await;
    // Every pub/sub connection is cut; node 1 is asked for the room while
    // its subscription is being opened again.
    let _: u64 = redis.command(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    let mut early = nodes[1].client().await;
    early.send(json!({"action":"newClient","room":"cut"})).await;
    let _ = early.expect_any(&["hydrate", "newRoom", "error"]).await;
    // Whatever that one got, joins of the room on node 1 work again.
    let (mut late, _) = join_once_it_works(&nodes[1], "cut").await;
    late.send(json!({"action":"talkToRoom","data":"through"}))
        .await;
    read_until(&mut member, |got| {
        got.iter().any(|v| v["data"] == "through")
    })
    .await;
}

#[tokio::test]
async fn an_open_room_outlives_its_retention_however_quiet() {
    let (_redis, nodes) = cluster(&["--room-retention", "6s"]);
    let mut a = nodes[0].joined("quiet").await;
    a.send(json!({"action":"stateUpdate","data":board(3)}))
        .await;
    caught_up(&mut a).await;
    let mut b = nodes[1].client().await;
    assert_eq!(b.join("quiet").await["action"], "hydrate");
    // Nobody sends anything for twice the retention (both keep reading,
    // so their sockets answer pings).
    let (quiet_a, quiet_b) = tokio::join!(
        frames_for(&mut a, Duration::from_secs(12)),
        frames_for(&mut b, Duration::from_secs(12))
    );
    for frames in [&quiet_a, &quiet_b] {
        assert!(!frames.iter().any(|v| v["action"] == "error"), "{frames:?}");
    }
    // Both are still in, and the board is still there for a newcomer.
    a.send(json!({"action":"talkToRoom","data":"still open"}))
        .await;
    read_until(&mut b, |got| got.iter().any(|v| v["data"] == "still open")).await;
    let mut late = nodes[2].client().await;
    let answer = late.join("quiet").await;
    assert_eq!(answer["action"], "hydrate", "{answer}");
    assert_eq!(answer["data"].as_array().map(Vec::len), Some(3));
}

#[tokio::test]
async fn health_says_a_node_cannot_serve_while_redis_is_away_and_can_once_it_is_back() {
    let (mut redis, nodes) = cluster(&[]);
    let mut member = nodes[0].joined("healthy").await;
    caught_up(&mut member).await;
    let ok = until_health(&nodes[0], 200).await;
    assert_eq!(ok["status"], "ok", "{ok}");
    // Its own appends were applied here, and timed.
    assert!(metric(&nodes[0], "attractio_append_to_apply_seconds_count").await >= 1.0);
    redis.stop();
    // Out of rotation, saying why (its subscription is down at once, its
    // lease renewals fail within seconds); alive all the same.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let down = until_health(&nodes[0], 503).await;
        assert_eq!(down["status"], "unavailable", "{down}");
        let reasons = down["reasons"].to_string();
        if reasons.contains("redis unreachable") && reasons.contains("subscription down") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{down}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(http_get(&nodes[0], "/livez").await.0, 200);
    redis.restart_empty();
    let back = until_health(&nodes[0], 200).await;
    assert_eq!(back["reasons"], json!([]), "{back}");
    // What it met is counted.
    assert!(metric(&nodes[0], "attractio_redis_errors_total").await >= 1.0);
    assert!(metric(&nodes[0], "attractio_redis_resubscriptions_total").await >= 1.0);
}

#[tokio::test]
async fn members_keep_their_identity_when_redis_restarts_empty() {
    let (mut redis, nodes) = cluster(&[]);
    let mut a = nodes[0].joined("kept").await;
    a.send(json!({"action":"stateUpdate","data":board(2)}))
        .await;
    caught_up(&mut a).await;
    let mut b = nodes[1].client().await;
    let answer = b.join("kept").await;
    assert_eq!(answer["action"], "hydrate");
    let who = b.hello["data"].clone();
    let (token, epoch, seq) = (
        who["resumeToken"].as_str().unwrap().to_owned(),
        answer["epoch"].as_u64().unwrap(),
        answer["seq"].as_u64().unwrap(),
    );
    redis.restart_empty();
    until_closed(&mut b).await;
    until_closed(&mut a).await;
    // Its token still says who it is: the same member comes back, told
    // it did not recover, on a room started anew.
    let (mut back, frames) = resume_on(&nodes[2], "kept", &token, epoch, seq).await;
    let resumed = frames.iter().find(|v| v["action"] == "resumed").unwrap();
    assert_eq!(resumed["data"]["recovered"], false, "{frames:?}");
    assert_ne!(resumed["epoch"], json!(epoch), "{frames:?}");
    for field in ["id", "name", "color"] {
        assert_eq!(resumed["data"][field], who[field], "{field}: {frames:?}");
    }
    back.expect_any(&["hydrate", "newRoom"]).await;
    // Others see it under that identity.
    let mut watcher = nodes[0].joined("kept").await;
    let id = who["id"].as_u64().unwrap();
    watcher.presence_until(|p| p.is_here(id)).await;
}

#[tokio::test]
async fn a_redis_cluster_master_restarted_empty_with_leases_on_it_lets_no_live_node_go() {
    let (mut redis, nodes) = cluster_on_redis_cluster(&[]);
    // The master holding the most of the nodes' leases.
    let leases = |m: &Redis| {
        m.command::<Vec<String>>(&["KEYS", "attractio:node:*"])
            .len()
    };
    let victim = (0..redis.masters.len())
        .max_by_key(|i| leases(&redis.masters[*i]))
        .unwrap();
    assert!(leases(&redis.masters[victim]) > 0);
    let victim_port = redis.masters[victim].port();
    // A room whose keys live on another master, a member on every node.
    let room = (0..)
        .map(|i| format!("steady-{i}"))
        .find(|r| redis.master_of(r) != victim_port)
        .unwrap();
    let mut members = Vec::new();
    for node in &nodes {
        members.push(node.joined(&room).await);
    }
    for c in &mut members {
        c.presence_until(|p| p.members.len() == 3).await;
    }
    for round in 0..3 {
        redis.masters[victim].restart();
        // Longer than a lease, its lapse and a room's check together.
        let quiet = futures_util::future::join_all(
            members
                .iter_mut()
                .map(|c| frames_for(c, Duration::from_secs(8))),
        )
        .await;
        for (c, frames) in members.iter().zip(&quiet) {
            assert!(
                c.presence.members.iter().all(|(_, away)| !away) && c.presence.members.len() == 3,
                "round {round}: {:?} after {frames:?}",
                c.presence
            );
        }
        // Every member is still connected and heard by the others.
        let streams = chat_in_turns(&mut members, 1).await;
        assert_eq!(streams.len(), 3);
    }
}
