//! Rooms shared across servers through Redis (`--redis-url`): a real
//! `redis-server` on a free loopback port and three nodes of the real
//! binary on 127.0.0.2, 127.0.0.3 and 127.0.0.4, members of one room spread
//! over them. Without `redis-server` these tests fail: they are not
//! skipped (`cargo xtask test` installs it).

#[path = "../common/mod.rs"]
mod common;
mod harness;
mod on_redis_cluster;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{board, words, Client, WAIT};
use futures_util::future::join_all;
use harness::*;
use serde_json::{json, Value};

#[tokio::test]
async fn chat_reaches_members_on_every_node_once_in_one_order() {
    let (_redis, nodes) = cluster(&[]);
    let mut clients = vec![nodes[0].joined("lounge").await];
    clients[0]
        .send(json!({"action":"stateUpdate","data":board(2)}))
        .await;
    caught_up(&mut clients[0]).await;
    for node in [&nodes[0], &nodes[1], &nodes[1], &nodes[2], &nodes[2]] {
        clients.push(node.joined("lounge").await);
    }
    const LINES: usize = 10;
    for i in 0..LINES {
        for (k, c) in clients.iter_mut().enumerate() {
            c.send(json!({"action":"talkToRoom","data":format!("{k}:{i}")}))
                .await;
        }
    }
    let expected = LINES * (clients.len() - 1);
    let streams = join_all(
        clients
            .iter_mut()
            .map(|c| read_until(c, |got| chats_from_others(got) >= expected)),
    )
    .await;
    // Exactly once: each other member's lines, each once, in its order.
    for (k, frames) in streams.iter().enumerate() {
        let lines: Vec<String> = frames
            .iter()
            .filter(|v| v["action"] == "talkToRoom" && v.get("from").is_some())
            .map(|v| v["data"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(lines.len(), expected, "client {k}: {lines:?}");
        assert!(!lines.iter().any(|l| l.starts_with(&format!("{k}:"))));
        for other in (0..clients.len()).filter(|o| *o != k) {
            let theirs: Vec<&String> = lines
                .iter()
                .filter(|l| l.starts_with(&format!("{other}:")))
                .collect();
            let sent: Vec<String> = (0..LINES).map(|i| format!("{other}:{i}")).collect();
            assert_eq!(theirs, sent.iter().collect::<Vec<_>>());
        }
    }
    let ids: Vec<u64> = clients.iter().map(Client::id).collect();
    let (lo, hi) = assert_one_order(&streams, &ids);
    // Everyone read most of the chat inside the window (a client stops
    // reading after the last line of the others, which may precede its own).
    assert!(
        hi - lo + 1 >= (expected - LINES) as u64,
        "window {lo}..={hi}"
    );
}

#[tokio::test]
async fn a_private_message_crosses_nodes_and_an_echo_stays_local() {
    let (_redis, nodes) = cluster(&[]);
    let mut a = nodes[0].joined("whispers").await;
    let mut b = nodes[1].joined("whispers").await;
    let mut c = nodes[2].joined("whispers").await;
    a.send(json!({"action":"privateMessage","to":b.id(),"data":"psst"}))
        .await;
    let got = b.expect("privateMessage").await;
    assert_eq!(got["data"], "psst");
    assert_eq!(got["from"]["id"], a.id());
    a.send(json!({"action":"echo","data":"mine"})).await;
    assert_eq!(a.expect("echo").await["data"], "mine");
    // The bystander on the third node gets neither.
    c.send(json!({"action":"talkToRoom","data":"marker"})).await;
    let frames = read_until(&mut b, |got| got.iter().any(|v| v["data"] == "marker")).await;
    assert!(frames.iter().all(|v| v["action"] != "echo"));
    let frames = read_until(&mut a, |got| got.iter().any(|v| v["data"] == "marker")).await;
    assert!(frames.iter().all(|v| v["action"] != "privateMessage"));
    c.expect_none("privateMessage", Duration::from_millis(300))
        .await;
}

#[tokio::test]
async fn the_cap_is_cluster_wide() {
    let (_redis, nodes) = cluster(&["--max-room-size", "10"]);
    // The first room a full `tiny` would suggest is taken on another node.
    let _elsewhere = nodes[2].joined("tiny-2").await;
    let mut host = nodes[0].joined("tiny").await;
    host.send(json!({"action":"stateUpdate","data":board(1)}))
        .await;
    caught_up(&mut host).await;
    let mut racers = Vec::new();
    for i in 0..49 {
        racers.push(nodes[i % 3].client().await);
    }
    // 50 joiners on three nodes for a room of 10: the host, then 49
    // racing for the 9 seats left.
    let answers = join_all(racers.iter_mut().map(|c| c.join("tiny"))).await;
    let full = answers.iter().filter(|a| a["action"] == "roomFull");
    assert_eq!(full.clone().count(), 40, "{answers:?}");
    for answer in full.clone() {
        let suggested = answer["data"].as_array().unwrap();
        assert!(!suggested.is_empty());
        assert!(!suggested.contains(&json!("/tiny-2")), "{answer}");
    }
    // The ten in are one presence on every node: each speaks, and the
    // room tells the new order to everyone.
    let mut ten: Vec<&mut Client> = racers
        .iter_mut()
        .zip(&answers)
        .filter(|(_, a)| a["action"] == "hydrate")
        .map(|(c, _)| c)
        .collect();
    ten.push(&mut host);
    assert_eq!(ten.len(), 10);
    for (k, c) in ten.iter_mut().enumerate() {
        c.send(json!({"action":"talkToRoom","data":k})).await;
    }
    for c in ten.iter_mut() {
        read_until(c, |got| chats_from_others(got) == 9).await;
    }
    // The order the chat made reaches every view (presence tells activity
    // order at most once a second): then every view is the same.
    let mut lists = BTreeSet::new();
    for c in ten.iter_mut() {
        c.drain(Duration::from_millis(1500)).await;
        assert_eq!(c.presence.members.len(), 10, "{:?}", c.presence);
        lists.insert(format!("{:?}", c.presence.members));
    }
    assert_eq!(lists.len(), 1, "{lists:?}");
}

#[tokio::test]
async fn two_nodes_freezing_one_word_give_one_holder() {
    let (_redis, nodes) = cluster(&[]);
    freezes_of_one_word_on_two_nodes_give_one_holder(&nodes, "fridge").await;
}

/// Members on the first two nodes freeze each of eight words at once: one
/// holds it, the other is refused, the member on the third node sees one
/// freeze.
pub async fn freezes_of_one_word_on_two_nodes_give_one_holder(nodes: &[Node], room: &str) {
    let mut a = nodes[0].joined(room).await;
    a.send(json!({"action":"stateUpdate","data":board(8)}))
        .await;
    let mut b = nodes[1].joined(room).await;
    let mut c = nodes[2].joined(room).await;
    for i in 0..8 {
        let word = format!("w{i}");
        let freeze = json!({"action":"freeze","elementID":word});
        tokio::join!(a.send(freeze.clone()), b.send(freeze.clone()));
        let (fa, fb) = tokio::join!(caught_up(&mut a), caught_up(&mut b));
        let refused = |f: &[Value]| f.iter().any(|v| v["data"]["code"] == "word_locked");
        let heard = |f: &[Value]| f.iter().any(|v| v["action"] == "freeze");
        // The loser heard the holder's freeze, then was refused; the
        // holder heard neither.
        assert_eq!(refused(&fa), heard(&fa), "{fa:?}");
        assert_eq!(refused(&fb), heard(&fb), "{fb:?}");
        assert!(
            refused(&fa) != refused(&fb),
            "one holder of {word}: {fa:?} {fb:?}"
        );
        let holder = if refused(&fa) { b.id() } else { a.id() };
        // The bystander on the third node sees one freeze, by the holder.
        let seen = caught_up(&mut c).await;
        let freezes: Vec<&Value> = seen.iter().filter(|v| v["action"] == "freeze").collect();
        assert_eq!(freezes.len(), 1, "{seen:?}");
        assert_eq!(freezes[0]["from"]["id"], holder);
        assert_eq!(freezes[0]["elementID"], word.as_str());
    }
}

#[tokio::test]
async fn a_late_joiner_on_another_node_sees_the_board() {
    let (_redis, nodes) = cluster(&[]);
    let mut a = nodes[0].joined("gallery").await;
    a.send(json!({"action":"stateUpdate","data":board(3)}))
        .await;
    a.send(json!({"action":"newWord","data":{"id":"n1","text":"new","x":5,"y":6}}))
        .await;
    a.send(json!({"action":"moveEnd","elementID":"w0","finalX":77,"finalY":88}))
        .await;
    a.send(json!({"action":"delete","elementID":"w2"})).await;
    a.send(json!({"action":"freeze","elementID":"no-such-word"}))
        .await;
    a.expect("error").await;
    let expected = vec![
        ("n1".to_owned(), 5.0, 6.0),
        ("w0".to_owned(), 77.0, 88.0),
        ("w1".to_owned(), 10.0, 20.0),
    ];
    // Node 2 hosts the room already (through a member); node 3 starts
    // hosting it for the joiner and reads the board from the log.
    let _b = nodes[1].joined("gallery").await;
    let on_2 = board_seen_by_a_joiner(&nodes[1], "gallery").await;
    let on_3 = board_seen_by_a_joiner(&nodes[2], "gallery").await;
    assert_eq!(words(&on_2), expected);
    assert_eq!(on_2, on_3);
}

#[tokio::test]
async fn a_client_resumes_on_another_node_with_exactly_what_it_missed() {
    let (_redis, nodes) = cluster(&[]);
    let mut other = nodes[1].joined("relay").await;
    other
        .send(json!({"action":"stateUpdate","data":board(2)}))
        .await;
    let mut me = nodes[0].client().await;
    let answer = me.join("relay").await;
    let token = me.hello["data"]["resumeToken"].as_str().unwrap().to_owned();
    let epoch = answer["epoch"].as_u64().unwrap();
    let mut last_seq = answer["seq"].as_u64().unwrap();
    let id = me.id();
    while let Some(v) = me.next_within(Duration::from_millis(300)).await {
        last_seq = last_seq.max(v["seq"].as_u64().unwrap_or(0));
    }
    drop(me); // no close frame: a drop
    other
        .presence_until(|p| p.members.contains(&(id, true)))
        .await;
    for i in 0..5 {
        other.send(json!({"action":"talkToRoom","data":i})).await;
    }
    other
        .send(json!({"action":"moveEnd","elementID":"w0","finalX":7,"finalY":8}))
        .await;
    other
        .send(json!({"action":"freeze","elementID":"no-such-word"}))
        .await;
    other.expect("error").await;
    // Back on the third node, which never hosted the room.
    let (mut back, replayed) = resume_on(&nodes[2], "relay", &token, epoch, last_seq).await;
    let resumed = replayed.last().unwrap();
    assert_eq!(resumed["data"]["recovered"], true, "{replayed:?}");
    assert_eq!(resumed["data"]["id"], id);
    let lines: Vec<&Value> = replayed
        .iter()
        .filter(|v| v["action"] == "talkToRoom" && v.get("from").is_some())
        .map(|v| &v["data"])
        .collect();
    assert_eq!(
        lines,
        (0..5)
            .map(|i| json!(i))
            .collect::<Vec<_>>()
            .iter()
            .collect::<Vec<_>>()
    );
    assert!(replayed
        .iter()
        .any(|v| v["action"] == "moveEnd" && v["finalX"] == 7.0));
    let seqs: Vec<u64> = numbered(&replayed).into_keys().collect();
    assert_eq!(seqs.first(), Some(&(last_seq + 1)), "{replayed:?}");
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "contiguous: {seqs:?}"
    );
    // The room sees it back, and it speaks as itself.
    back.send(json!({"action":"talkToRoom","data":"back"}))
        .await;
    loop {
        let v = other.expect("talkToRoom").await;
        if v["data"] == "back" {
            assert_eq!(v["from"]["id"], id);
            break;
        }
    }
}

#[tokio::test]
async fn every_node_lists_the_rooms_of_the_cluster() {
    let (_redis, nodes) = cluster(&[]);
    let _a = nodes[0].joined("kitchen").await;
    let _b = nodes[1].joined("kitchen").await;
    let c = nodes[1].joined("porch").await;
    let wanted = BTreeMap::from([("kitchen".to_owned(), 2), ("porch".to_owned(), 1)]);
    // Node 3 hosts neither room; counts are recorded as the logs apply.
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
    // The last member leaves: the room is no longer listed anywhere.
    c.close().await;
    let wanted = BTreeMap::from([("kitchen".to_owned(), 2)]);
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
async fn one_presence_on_every_node_most_recently_active_first() {
    let (_redis, nodes) = cluster(&[]);
    let mut members = Vec::new();
    for node in &nodes {
        members.push(node.joined("porch").await);
    }
    members[0]
        .send(json!({"action":"stateUpdate","data":board(1)}))
        .await;
    // The member on the middle node speaks last: it leads the list.
    members[2]
        .send(json!({"action":"talkToRoom","data":"first"}))
        .await;
    // Only what a member has seen is before what it sends, in the log too.
    read_until(&mut members[1], |got| {
        got.iter().any(|v| v["data"] == "first")
    })
    .await;
    members[1]
        .send(json!({"action":"talkToRoom","data":"last"}))
        .await;
    let speaker = members[1].id();
    let mut lists = BTreeSet::new();
    for m in &mut members {
        m.presence_until(|p| p.members.first().is_some_and(|(id, _)| *id == speaker))
            .await;
        assert_eq!(m.presence.members.len(), 3, "{:?}", m.presence);
        lists.insert(format!("{:?}", m.presence.members));
    }
    assert_eq!(lists.len(), 1, "the same presence on every node: {lists:?}");
}

#[tokio::test]
async fn a_held_seat_ends_once_for_the_cluster() {
    let (_redis, nodes) = cluster(&["--resume-window", "1s"]);
    let mut watcher = nodes[1].joined("hold").await;
    let _bystander = nodes[2].joined("hold").await;
    let gone = nodes[0].joined("hold").await;
    let (id, name) = (gone.id(), gone.name());
    drop(gone); // no close frame: its seat is held for the window
                // Every node sees the window end; the room says goodbye once.
    let frames = frames_for(&mut watcher, Duration::from_secs(4)).await;
    let goodbyes = frames
        .iter()
        .filter(|v| v["data"] == format!("Goodbye, client {name}!"))
        .count();
    assert_eq!(goodbyes, 1, "{frames:?}");
    assert!(
        watcher.presence.members.iter().all(|(m, _)| *m != id),
        "{:?}",
        watcher.presence
    );
}

#[tokio::test]
async fn a_node_stopping_gracefully_leaves_its_members_away_for_a_resume() {
    let (_redis, mut nodes) = cluster(&[]);
    let mut watcher = nodes[1].joined("deploy").await;
    watcher
        .send(json!({"action":"stateUpdate","data":board(1)}))
        .await;
    caught_up(&mut watcher).await;
    let leaving = nodes[0].joined("deploy").await;
    let id = leaving.id();
    let node = nodes.remove(0);
    unsafe { libc::kill(node.child.id() as i32, libc::SIGTERM) };
    watcher
        .presence_until(|p| p.members.contains(&(id, true)))
        .await;
    drop(leaving);
}

#[tokio::test]
async fn a_dead_nodes_members_are_away_and_their_locks_released_within_seconds() {
    let (_redis, mut nodes) = cluster(&[]);
    let mut watcher = nodes[1].joined("crash").await;
    watcher
        .send(json!({"action":"stateUpdate","data":board(2)}))
        .await;
    caught_up(&mut watcher).await;
    let mut victim = nodes[0].client().await;
    let answer = victim.join("crash").await;
    let (id, token, epoch) = (
        victim.id(),
        victim.hello["data"]["resumeToken"]
            .as_str()
            .unwrap()
            .to_owned(),
        answer["epoch"].as_u64().unwrap(),
    );
    victim
        .send(json!({"action":"freeze","elementID":"w0"}))
        .await;
    let frames = caught_up(&mut victim).await;
    let last_seq = numbered(&frames)
        .keys()
        .last()
        .copied()
        .unwrap_or(answer["seq"].as_u64().unwrap());
    assert_eq!(watcher.expect("freeze").await["from"]["id"], id);
    // kill -9: nothing is said; the node's lease lapses.
    let dead = nodes.remove(0);
    drop(dead);
    let died = std::time::Instant::now();
    let (mut unfrozen, mut away) = (false, false);
    while !(unfrozen && away) {
        let v = watcher
            .next_within(Duration::from_secs(20))
            .await
            .expect("the dead node's member is let go");
        unfrozen |= v["action"] == "unfreeze" && v["elementID"] == "w0";
        away |= watcher.presence.members.contains(&(id, true));
    }
    // The lease (3 s) plus a room's check (every 2 s), with room to spare.
    assert!(
        died.elapsed() < Duration::from_secs(12),
        "{:?}",
        died.elapsed()
    );
    // The client comes back through another node, nothing missed.
    drop(victim);
    let (_back, replayed) = resume_on(&nodes[1], "crash", &token, epoch, last_seq).await;
    let resumed = replayed.last().unwrap();
    assert_eq!(resumed["data"]["recovered"], true, "{replayed:?}");
    assert!(replayed
        .iter()
        .any(|v| v["action"] == "unfreeze" && v["elementID"] == "w0"));
    // After what it had read (its own freeze was never sent to it), in
    // order, no hole.
    let seqs: Vec<u64> = numbered(&replayed).into_keys().collect();
    assert!(seqs.first().is_some_and(|s| *s > last_seq), "{replayed:?}");
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
}

#[tokio::test]
async fn a_redis_restarted_empty_is_never_passed_off_as_recovered() {
    let (mut redis, nodes) = cluster(&[]);
    let mut a = nodes[0].joined("fragile").await;
    a.send(json!({"action":"stateUpdate","data":board(2)}))
        .await;
    caught_up(&mut a).await;
    let mut b = nodes[1].client().await;
    let answer = b.join("fragile").await;
    assert_eq!(answer["action"], "hydrate");
    let (token, epoch, seq) = (
        b.hello["data"]["resumeToken"].clone(),
        answer["epoch"].clone(),
        answer["seq"].clone(),
    );
    redis.restart_empty();
    // The room's log is gone: its members are let go, not left hanging.
    until_closed(&mut b).await;
    until_closed(&mut a).await;
    // Resuming anywhere says what was lost: not recovered, no board.
    let mut back = nodes[2].client().await;
    back.send(json!({"action":"newClient","room":"fragile","resumeToken":token,"epoch":epoch,"lastSeq":seq}))
        .await;
    let frames = read_until(&mut back, |got| {
        got.iter().any(|v| v["action"] == "resumed") && got.iter().any(|v| v["action"] == "newRoom")
    })
    .await;
    let resumed = frames.iter().find(|v| v["action"] == "resumed").unwrap();
    assert_eq!(resumed["data"]["recovered"], false, "{frames:?}");
    assert_ne!(resumed["epoch"], epoch);
    // And the cluster works again: a member on another node hears it.
    let mut a = nodes[0].joined("fragile").await;
    back.send(json!({"action":"talkToRoom","data":"still here"}))
        .await;
    read_until(&mut a, |got| got.iter().any(|v| v["data"] == "still here")).await;
}

#[tokio::test]
async fn concurrent_board_changes_on_three_nodes_end_in_one_board() {
    let (_redis, nodes) = cluster(&[]);
    let mut first = nodes[0].joined("stress").await;
    first
        .send(json!({"action":"stateUpdate","data":board(6)}))
        .await;
    caught_up(&mut first).await;
    let mut clients = vec![first];
    for i in [0, 1, 1, 2, 2] {
        clients.push(nodes[i].joined("stress").await);
    }
    const OPS: u64 = 40;
    let sends = clients.iter_mut().enumerate().map(|(k, c)| async move {
        let mut dice = Dice(0x9e37_79b9_7f4a_7c15 ^ (k as u64 + 1));
        for i in 0..OPS {
            let word = format!("w{}", dice.roll(6));
            let op = match dice.roll(6) {
                0 => json!({"action":"newWord","data":{"id":format!("c{k}-{i}"),"text":"new","x":dice.roll(500),"y":dice.roll(500)}}),
                1 => json!({"action":"delete","elementID":word}),
                2 => json!({"action":"modify","elementID":word,"update":{"text":format!("t{k}-{i}")}}),
                3 => json!({"action":"freeze","elementID":word}),
                4 => json!({"action":"unfreeze","elementID":word}),
                _ => json!({"action":"moveEnd","elementID":word,"finalX":dice.roll(500),"finalY":dice.roll(500)}),
            };
            c.send(op).await;
        }
        caught_up(c).await
    });
    let streams = join_all(sends).await;
    let ids: Vec<u64> = clients.iter().map(Client::id).collect();
    assert_one_order(&streams, &ids);
    // Every node holds the same board: a joiner on each gets it.
    let boards = join_all(
        nodes
            .iter()
            .map(|node| board_seen_by_a_joiner(node, "stress")),
    )
    .await;
    assert_eq!(boards[0], boards[1]);
    assert_eq!(boards[1], boards[2]);
}

#[tokio::test]
async fn a_slow_consumer_on_one_node_is_away_on_every_node() {
    let (_redis, nodes) = cluster(&[
        "--outbound-queue",
        "16",
        "--rate-limit",
        "100000",
        "--rate-burst",
        "100000",
    ]);
    let slow = nodes[0].joined("slow").await; // never reads again
    let slow_id = slow.id();
    let mut sender = nodes[1].joined("slow").await;
    let mut watcher = nodes[2].joined("slow").await;
    // Only the slow member gets the flood (the others keep up easily).
    let big = "y".repeat(32 * 1024);
    for i in 0..400 {
        sender
            .send(json!({"action":"privateMessage","to":slow_id,"data":{"i":i,"pad":big}}))
            .await;
    }
    loop {
        watcher
            .next_within(Duration::from_secs(20))
            .await
            .expect("the slow member shows as away");
        if watcher.presence.members.contains(&(slow_id, true)) {
            break;
        }
    }
    drop(slow);
}

#[tokio::test]
async fn a_message_redis_did_not_take_is_told_to_its_sender() {
    let (mut redis, nodes) = cluster(&[]);
    let mut a = nodes[0].joined("outage").await;
    redis.stop();
    a.send(json!({"action":"talkToRoom","data":"into the void"}))
        .await;
    let frames = read_until(&mut a, |got| got.iter().any(|v| v["action"] == "error")).await;
    let error = frames.last().unwrap();
    assert_eq!(error["data"]["code"], "unavailable", "{error}");
}

/// Operation `i` of the in-flight test: a chat line, and every third one
/// a new word instead.
fn numbered_op(i: u64) -> Value {
    if i.is_multiple_of(3) {
        json!({"action":"newWord","opId":i,"data":{"id":format!("n{i}"),"text":"new","x":i,"y":i}})
    } else {
        json!({"action":"talkToRoom","opId":i,"data":format!("op-{i}")})
    }
}

#[tokio::test]
async fn operations_in_flight_when_a_node_dies_are_applied_once_after_the_resume() {
    let (_redis, nodes) = cluster(&["--rate-limit", "100000", "--rate-burst", "100000"]);
    operations_in_flight_are_applied_once_after_their_node_dies(nodes, "inflight").await;
}

/// 300 operations sent at once to the first node, killed (`kill -9`) once
/// a third reached a watcher on the third node; the sender resumes on the
/// second and sends again from a little before its `lastOp`: each applied
/// once, in order, contiguous `seq`, one board on the nodes left. The
/// nodes must allow the burst (`--rate-limit`).
pub async fn operations_in_flight_are_applied_once_after_their_node_dies(
    mut nodes: Vec<Node>,
    room: &str,
) {
    const OPS: u64 = 300;
    let mut watcher = nodes[2].joined(room).await;
    watcher
        .send(json!({"action":"stateUpdate","data":board(2)}))
        .await;
    let mut watched = caught_up(&mut watcher).await;
    let mut sender = nodes[0].client().await;
    let answer = sender.join(room).await;
    let (token, epoch) = (
        sender.hello["data"]["resumeToken"]
            .as_str()
            .unwrap()
            .to_owned(),
        answer["epoch"].as_u64().unwrap(),
    );
    let last_seq = numbered(&caught_up(&mut sender).await)
        .keys()
        .last()
        .copied()
        .unwrap_or(answer["seq"].as_u64().unwrap());
    // Everything is sent at once, and the node is killed once a third of
    // it reached the watcher: the rest is in the node's socket, its room,
    // its appender, or in Redis.
    for i in 1..=OPS {
        sender.send(numbered_op(i)).await;
    }
    watched.extend(
        read_until(&mut watcher, |got| {
            got.iter().any(|v| v["data"] == "op-100")
        })
        .await,
    );
    drop(nodes.remove(0));
    drop(sender);
    // The client resumes on another node and sends again what it cannot
    // know arrived (here from a little before `lastOp`, to show those are
    // dropped as well).
    let (mut back, replayed) = resume_on(&nodes[0], room, &token, epoch, last_seq).await;
    let resumed = replayed.last().unwrap();
    assert_eq!(resumed["data"]["recovered"], true, "{replayed:?}");
    let last_op = resumed["data"]["lastOp"].as_u64().unwrap_or(0);
    for i in last_op.saturating_sub(10).max(1)..=OPS {
        back.send(numbered_op(i)).await;
    }
    caught_up(&mut back).await;
    watched.extend(
        read_until(&mut watcher, |got| {
            got.iter().any(|v| v["data"] == format!("op-{}", OPS - 1))
        })
        .await,
    );
    watched.extend(caught_up(&mut watcher).await);
    // Each operation once, in the order sent, with no hole in `seq`.
    let lines: Vec<String> = watched
        .iter()
        .filter(|v| v["action"] == "talkToRoom" && v.get("from").is_some())
        .map(|v| v["data"].as_str().unwrap().to_owned())
        .collect();
    let words: Vec<String> = watched
        .iter()
        .filter(|v| v["action"] == "newWord")
        .map(|v| v["data"]["id"].as_str().unwrap().to_owned())
        .collect();
    let expected_lines: Vec<String> = (1..=OPS)
        .filter(|i| !i.is_multiple_of(3))
        .map(|i| format!("op-{i}"))
        .collect();
    let expected_words: Vec<String> = (1..=OPS)
        .filter(|i| i.is_multiple_of(3))
        .map(|i| format!("n{i}"))
        .collect();
    assert_eq!(lines, expected_lines, "lastOp was {last_op}");
    assert_eq!(words, expected_words, "lastOp was {last_op}");
    let seqs: Vec<u64> = numbered(&watched).into_keys().collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    // One board on every node that is left, with each word once.
    let boards = join_all(nodes.iter().map(|node| board_seen_by_a_joiner(node, room))).await;
    assert_eq!(boards[0], boards[1]);
    let ids: Vec<&str> = boards[0]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w["id"].as_str())
        .filter(|id| id.starts_with('n'))
        .collect();
    assert_eq!(ids.len(), expected_words.len(), "{ids:?}");
}

#[tokio::test]
async fn a_log_that_lost_its_tail_starts_a_new_epoch_from_what_is_left() {
    let (redis, nodes) = cluster(&[]);
    let mut a = nodes[0].joined("tail").await;
    a.send(json!({"action":"stateUpdate","data":board(2)}))
        .await;
    caught_up(&mut a).await;
    let mut b = nodes[1].client().await;
    let answer = b.join("tail").await;
    assert_eq!(answer["action"], "hydrate");
    let (token, epoch) = (
        b.hello["data"]["resumeToken"].as_str().unwrap().to_owned(),
        answer["epoch"].as_u64().unwrap(),
    );
    for i in 0..3 {
        a.send(json!({"action":"talkToRoom","data":format!("lost-{i}")}))
            .await;
    }
    let seen = read_until(&mut b, |got| got.iter().any(|v| v["data"] == "lost-2")).await;
    let last_seq = seen.iter().filter_map(|v| v["seq"].as_u64()).max().unwrap();
    // Redis comes back without the last three entries (a failover to a
    // replica that lagged, or a restart that kept only what was synced).
    let end: u64 = redis.command(&["GET", "attractio:{tail}:seq"]);
    redis.command::<()>(&["SET", "attractio:{tail}:seq", &(end - 3).to_string()]);
    let lost: Vec<String> = (end - 2..=end).map(|s| format!("{s}-0")).collect();
    let mut xdel = vec!["XDEL", "attractio:{tail}:log"];
    xdel.extend(lost.iter().map(String::as_str));
    assert_eq!(redis.command::<u64>(&xdel), 3);
    // (A stream remembers its last id: the replica's never got that far.)
    let top = format!("{}-0", end - 3);
    redis.command::<()>(&["XSETID", "attractio:{tail}:log", &top]);
    // The nodes do not number new entries over the ones they applied:
    // they start the room over, and its members are let go to resume.
    a.send(json!({"action":"talkToRoom","data":"after the loss"}))
        .await;
    until_closed(&mut a).await;
    until_closed(&mut b).await;
    // A resume is told it did not recover, under a new epoch, with the
    // board the log still has.
    let mut back = nodes[2].client().await;
    back.send(json!({"action":"newClient","room":"tail","resumeToken":token,"epoch":epoch,"lastSeq":last_seq}))
        .await;
    let frames = read_until(&mut back, |got| {
        got.iter().any(|v| v["action"] == "resumed") && got.iter().any(|v| v["action"] == "hydrate")
    })
    .await;
    let resumed = frames.iter().find(|v| v["action"] == "resumed").unwrap();
    assert_eq!(resumed["data"]["recovered"], false, "{frames:?}");
    assert_ne!(resumed["epoch"], epoch, "{frames:?}");
    let hydrate = frames.iter().find(|v| v["action"] == "hydrate").unwrap();
    assert_eq!(words(&hydrate["data"]), words(&board(2)));
    // And the room works again across nodes.
    let mut a = nodes[0].joined("tail").await;
    back.send(json!({"action":"talkToRoom","data":"still here"}))
        .await;
    read_until(&mut a, |got| got.iter().any(|v| v["data"] == "still here")).await;
}
