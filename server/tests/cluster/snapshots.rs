//! A room's log in Redis stays bounded: snapshots every
//! `--cluster-snapshot-every` entries, the log trimmed behind them, and a
//! node that starts hosting the room starts from the snapshot.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{board, Client, WAIT};
use crate::harness::*;

/// `n` board changes, drags and chat lines from client `k`, mostly
/// numbered frames, every one a log entry.
async fn busy(c: &mut Client, k: u64, n: u64) -> Vec<Value> {
    let mut dice = Dice(0x2545_f491_4f6c_dd1d ^ (k + 1));
    for i in 0..n {
        let word = format!("w{}", dice.roll(6));
        let op = match dice.roll(7) {
            0 => json!({"action":"freeze","elementID":word}),
            1 => json!({"action":"unfreeze","elementID":word}),
            2 => json!({"action":"moving","elementID":word,"dx":1,"dy":-1}),
            3 => json!({"action":"modify","elementID":word,"update":{"text":format!("t{k}-{i}")}}),
            4 => json!({"action":"talkToRoom","data":format!("{k}:{i}")}),
            5 => {
                json!({"action":"newWord","data":{"id":format!("c{k}-{i}"),"text":"new","x":dice.roll(500),"y":dice.roll(500)}})
            }
            _ => {
                json!({"action":"moveEnd","elementID":word,"finalX":dice.roll(500),"finalY":dice.roll(500)})
            }
        };
        c.send(op).await;
    }
    caught_up(c).await
}

/// Every numbered frame the clients got, by `seq` (each client gets all
/// but its own, so together they got all).
fn all_numbered(streams: &[&Vec<Value>]) -> BTreeMap<u64, Value> {
    streams.iter().flat_map(|s| numbered(s)).collect()
}

#[tokio::test]
async fn a_busy_rooms_log_stays_bounded_and_a_new_host_starts_from_its_snapshot() {
    const EVERY: u64 = 50;
    let every = EVERY.to_string();
    let (redis, nodes) = cluster(&[
        "--cluster-snapshot-every",
        &every,
        "--room-retention",
        "1h",
        "--rate-limit",
        "100000",
        "--rate-burst",
        "100000",
    ]);
    let mut a = nodes[0].joined("long").await;
    a.send(json!({"action":"stateUpdate","data":board(6)}))
        .await;
    let mut a_frames = caught_up(&mut a).await;
    let mut b = nodes[1].joined("long").await;
    let mut b_frames = Vec::new();
    // A member on the first node who drops halfway and resumes on the third.
    let mut me = nodes[0].client().await;
    let answer = me.join("long").await;
    let token = me.hello["data"]["resumeToken"].as_str().unwrap().to_owned();
    let epoch = answer["epoch"].as_u64().unwrap();

    // About 600 entries from two nodes: 400 while it is there ...
    let (fa, fb) = tokio::join!(busy(&mut a, 0, 200), busy(&mut b, 1, 200));
    a_frames.extend(fa);
    b_frames.extend(fb);
    let mut last_seq = answer["seq"].as_u64().unwrap();
    for v in me.drain(Duration::from_millis(500)).await {
        last_seq = last_seq.max(v["seq"].as_u64().unwrap_or(0));
    }
    let id = me.id();
    drop(me); // no close frame: a drop, its seat held
    while !a.presence.is_away(id) {
        a_frames.push(
            a.next_within(WAIT)
                .await
                .expect("the dropped member is away"),
        );
    }
    // ... and 200 after it dropped.
    let (fa, fb) = tokio::join!(busy(&mut a, 2, 100), busy(&mut b, 3, 100));
    a_frames.extend(fa);
    b_frames.extend(fb);

    // Redis holds the snapshot and at most two snapshots' worth of log.
    let log = "attractio:{long}:log";
    let snapshot = "attractio:{long}:snapshot";
    let total: u64 = redis.cli(&["GET", "attractio:{long}:seq"]).parse().unwrap();
    assert!(total >= 600, "{total} entries");
    let deadline = std::time::Instant::now() + WAIT;
    let (kept, stored) = loop {
        let kept: u64 = redis.cli(&["XLEN", log]).parse().unwrap();
        let stored: u64 = redis.cli(&["HGET", snapshot, "seq"]).parse().unwrap_or(0);
        if kept <= 2 * EVERY || std::time::Instant::now() > deadline {
            break (kept, stored);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(kept <= 2 * EVERY, "{kept} of {total} entries kept");
    assert!(total - stored < EVERY, "snapshot at {stored} of {total}");
    let first = redis.cli(&["XRANGE", log, "-", "+", "COUNT", "1"]);
    assert!(
        first.starts_with(&format!("{}-0", stored - EVERY + 1)),
        "{first}"
    );
    // The room's keys go when nobody uses it for --room-retention.
    for key in [
        log,
        snapshot,
        "attractio:{long}:seq",
        "attractio:{long}:epoch",
    ] {
        let ttl: i64 = redis.cli(&["PTTL", key]).parse().unwrap();
        assert!(ttl > 0 && ttl <= 3_600_000, "{key}: {ttl}");
    }

    // One order everywhere, no hole, the same board on every node: the
    // third node starts hosting the room from the snapshot and the log
    // after it, the first one has applied the whole log.
    let on_3 = board_seen_by_a_joiner(&nodes[2], "long").await;
    let on_1 = board_seen_by_a_joiner(&nodes[0], "long").await;
    assert!(on_3.as_array().unwrap().len() >= 6, "{on_3}");
    assert_eq!(on_3, on_1);
    a_frames.extend(caught_up(&mut a).await);
    b_frames.extend(caught_up(&mut b).await);
    assert_one_order(&[a_frames.clone(), b_frames.clone()], &[a.id(), b.id()]);

    // The member who dropped resumes on the third node with exactly what
    // it missed, from the history in the snapshot and the log after it.
    let (_back, replayed) = resume_on(&nodes[2], "long", &token, epoch, last_seq).await;
    let resumed = replayed.last().unwrap();
    assert_eq!(resumed["data"]["recovered"], true, "{resumed}");
    let missed: BTreeMap<u64, Value> =
        all_numbered(&[&a_frames, &b_frames]).split_off(&(last_seq + 1));
    let got = numbered(&replayed);
    assert!(missed.len() > 100, "{} frames missed", missed.len());
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        missed.keys().collect::<Vec<_>>()
    );
    assert_eq!(got, missed);
}

#[tokio::test]
async fn a_node_that_fell_behind_the_trimmed_log_lets_its_members_resume_from_the_snapshot() {
    const EVERY: u64 = 50;
    let every = EVERY.to_string();
    let (redis, nodes) = cluster(&[
        "--cluster-snapshot-every",
        &every,
        "--rate-limit",
        "100000",
        "--rate-burst",
        "100000",
    ]);
    let mut a = nodes[0].joined("lag").await;
    a.send(json!({"action":"stateUpdate","data":board(6)}))
        .await;
    caught_up(&mut a).await;
    // The first node is the only other one hosting the room: it trims the
    // log only behind what it applied itself.
    let mut watcher = nodes[0].joined("lag").await;
    let mut me = nodes[1].client().await;
    let answer = me.join("lag").await;
    let token = me.hello["data"]["resumeToken"].as_str().unwrap().to_owned();
    let epoch = answer["epoch"].as_u64().unwrap();
    let mut last_seq = answer["seq"].as_u64().unwrap();
    for v in me.drain(Duration::from_millis(300)).await {
        last_seq = last_seq.max(v["seq"].as_u64().unwrap_or(0));
    }
    let applied: u64 = redis.cli(&["GET", "attractio:{lag}:seq"]).parse().unwrap();

    // The second node stops (for less than its lease) and loses what was
    // published meanwhile, while the log moves on and is trimmed past it.
    let stopped = nodes[1].child.id() as i32;
    unsafe { libc::kill(stopped, libc::SIGSTOP) };
    redis.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    busy(&mut a, 0, 150).await;
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let first = redis.cli(&["XRANGE", "attractio:{lag}:log", "-", "+", "COUNT", "1"]);
        let first: u64 = first.split('-').next().unwrap().parse().unwrap_or(0);
        if first > applied + 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not trimmed: {first}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    unsafe { libc::kill(stopped, libc::SIGCONT) };

    // Never applied across the hole: the member's socket closes ...
    until_closed(&mut me).await;
    let seen = caught_up(&mut watcher).await;
    // ... and it resumes on that node, which hosts the room again from the
    // snapshot, with exactly what it missed.
    let (_back, replayed) = resume_on(&nodes[1], "lag", &token, epoch, last_seq).await;
    let resumed = replayed.last().unwrap();
    assert_eq!(resumed["data"]["recovered"], true, "{resumed}");
    let missed = numbered(&seen).split_off(&(last_seq + 1));
    assert!(missed.len() > 50, "{} frames missed", missed.len());
    assert_eq!(numbered(&replayed), missed);
}
