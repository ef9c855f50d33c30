//! Rooms shared across servers through Redis (`--redis-url`): a real
//! `redis-server` on a free loopback port and three nodes of the real
//! binary on 127.0.0.2, 127.0.0.3 and 127.0.0.4, members of one room spread
//! over them. Without `redis-server` these tests fail: they are not
//! skipped (`cargo xtask test` installs it).

mod api;
mod auth;
mod behind_nginx;
#[path = "../common/mod.rs"]
mod common;
mod creation;
mod faults;
mod harness;
mod held_seats;
mod on_redis_cluster;
mod redis_bytes;
mod room_list;
mod snapshots;
mod webhooks;

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
            // A custom action of an app, relayed as sent.
            c.send(json!({"action":"spin","data":{"by":k,"turn":i}}))
                .await;
        }
    }
    let expected = LINES * (clients.len() - 1);
    let spins = |got: &[Value]| got.iter().filter(|v| v["action"] == "spin").count();
    let streams = join_all(clients.iter_mut().map(|c| {
        read_until(c, move |got| {
            chats_from_others(got) >= expected && spins(got) >= expected
        })
    }))
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
            let turns: Vec<u64> = frames
                .iter()
                .filter(|v| v["action"] == "spin" && v["data"]["by"] == other)
                .map(|v| v["data"]["turn"].as_u64().unwrap())
                .collect();
            assert_eq!(turns, (0..LINES as u64).collect::<Vec<_>>(), "client {k}");
        }
        // Welcomes: one for each member that joined after this one.
        let welcomes = frames
            .iter()
            .filter(|v| {
                v.get("from").is_none()
                    && v["data"].as_str().is_some_and(|t| t.starts_with("Welcome"))
            })
            .count();
        assert_eq!(welcomes, clients.len() - 1 - k, "client {k}: {frames:?}");
    }
    let ids: Vec<u64> = clients.iter().map(Client::id).collect();
    let (lo, hi) = assert_one_order(&streams, &ids);
    // Everyone read most of the chat inside the window (a client stops
    // reading after the last line of the others, which may precede its own).
    assert!(
        hi - lo + 1 >= 2 * (expected - LINES) as u64,
        "window {lo}..={hi}"
    );
    // One leaves: a goodbye, once, at every other member, on every node.
    let leaving = clients.pop().unwrap();
    let goodbye = format!("Goodbye, client {}!", leaving.name());
    leaving.close().await;
    for (k, c) in clients.iter_mut().enumerate() {
        let mut frames =
            read_until(c, |got| got.iter().any(|v| v["data"] == goodbye.as_str())).await;
        frames.extend(c.drain(Duration::from_millis(300)).await);
        let goodbyes = frames
            .iter()
            .filter(|v| v["data"] == goodbye.as_str())
            .count();
        assert_eq!(goodbyes, 1, "client {k}: {frames:?}");
    }
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
    let (_redis, nodes) = cluster(EIGHT_LOCKS);
    freezes_of_one_word_on_two_nodes_give_one_holder(&nodes, "fridge").await;
}

/// Lets a member hold the eight words of
/// [`freezes_of_one_word_on_two_nodes_give_one_holder`] (4 by default).
pub const EIGHT_LOCKS: &[&str] = &["--max-locks-per-member", "8"];

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
    // A holder that leaves lets go of its words, on every node.
    let (a_id, b_id) = (a.id(), b.id());
    a.close().await;
    let released = |got: &[Value]| {
        got.iter()
            .filter(|v| v["action"] == "unfreeze" && v["from"]["id"] == a_id)
            .count()
    };
    let seen = read_until(&mut c, |got| {
        got.iter()
            .any(|v| v["data"].as_str().is_some_and(|t| t.starts_with("Goodbye")))
    })
    .await;
    let at_b = caught_up(&mut b).await;
    assert_eq!(released(&seen), released(&at_b), "{seen:?} {at_b:?}");
    assert!(released(&seen) > 0, "a held none of the 8 words: {seen:?}");
    // Every word is free again for b, except those b holds itself.
    for i in 0..8 {
        b.send(json!({"action":"freeze","elementID":format!("w{i}")}))
            .await;
    }
    let answers = caught_up(&mut b).await;
    assert!(
        !answers.iter().any(|v| v["data"]["code"] == "word_locked"),
        "{b_id}: {answers:?}"
    );
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
    let (_redis, nodes) = cluster(&["--list-rooms"]);
    let _a = nodes[0].joined("kitchen").await;
    let _b = nodes[1].joined("kitchen").await;
    let c = nodes[1].joined("porch").await;
    let wanted = BTreeMap::from([("kitchen".to_owned(), 2), ("porch".to_owned(), 1)]);
    // Node 3 hosts neither room; counts are recorded as the logs apply.
    for node in &nodes {
        until_listed(node, &wanted).await;
    }
    // The last member leaves: the room is no longer listed anywhere.
    c.close().await;
    let wanted = BTreeMap::from([("kitchen".to_owned(), 2)]);
    for node in &nodes {
        until_listed(node, &wanted).await;
    }
}

#[tokio::test]
async fn a_room_whose_every_node_died_leaves_the_list() {
    let (_redis, mut nodes) = cluster(&["--list-rooms"]);
    let _orphan = nodes[0].joined("orphan").await;
    let _kept = nodes[1].joined("kept").await;
    let both = BTreeMap::from([("orphan".to_owned(), 1), ("kept".to_owned(), 1)]);
    until_listed(&nodes[2], &both).await;
    // The only node hosting `orphan` dies: nobody is left to record that
    // its member is gone, and no live node vouches for it any more.
    drop(nodes.remove(0));
    let kept = BTreeMap::from([("kept".to_owned(), 1)]);
    until_listed(&nodes[1], &kept).await;
}

#[tokio::test]
async fn suggestions_skip_a_room_whose_only_seat_is_held_on_another_node() {
    let (_redis, nodes) = cluster(&["--max-room-size", "1"]);
    // `snug-2`'s member dropped: its seat is held for a resume.
    let held = nodes[1].joined("snug-2").await;
    let id = held.id();
    drop(held);
    let _present = nodes[0].joined("snug").await;
    let _present_too = nodes[1].joined("snug-3").await;
    let mut probe = nodes[2].client().await;
    let answer = probe.join("snug-2").await;
    assert_eq!(
        answer["action"], "roomFull",
        "the held seat counts: {answer}"
    );
    let mut joiner = nodes[2].client().await;
    let answer = joiner.join("snug").await;
    assert_eq!(answer["action"], "roomFull", "{answer}");
    let suggested = answer["data"].as_array().unwrap();
    for taken in ["/snug-2", "/snug-3"] {
        assert!(
            !suggested.contains(&json!(taken)),
            "{taken} suggested: {answer} ({id})"
        );
    }
    assert!(!suggested.is_empty());
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
    // Moves sent just before the node dies: some arrive, some do not.
    const MOVES: u64 = 30;
    let move_to = |op: u64| json!({"action":"moveEnd","elementID":"w1","finalX":op*10,"finalY":op*10,"opId":op});
    for op in 1..=MOVES {
        victim.send(move_to(op)).await;
    }
    // kill -9: nothing is said; the node's lease lapses.
    let dead = nodes.remove(0);
    drop(dead);
    let died = std::time::Instant::now();
    let (mut unfrozen, mut away) = (false, false);
    let mut watched = Vec::new();
    while !(unfrozen && away) {
        let v = watcher
            .next_within(Duration::from_secs(20))
            .await
            .expect("the dead node's member is let go");
        unfrozen |= v["action"] == "unfreeze" && v["elementID"] == "w0";
        away |= watcher.presence.members.contains(&(id, true));
        watched.push(v);
    }
    // The lease (3 s) plus a room's check (every 2 s), with room to spare.
    assert!(
        died.elapsed() < Duration::from_secs(12),
        "{:?}",
        died.elapsed()
    );
    // The client comes back through another node, nothing missed.
    drop(victim);
    let (mut back, replayed) = resume_on(&nodes[1], "crash", &token, epoch, last_seq).await;
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
    // It sends again what came after its `lastOp`: each move applied once.
    let last_op = resumed["data"]["lastOp"].as_u64().unwrap_or(0);
    for op in last_op + 1..=MOVES {
        back.send(move_to(op)).await;
    }
    caught_up(&mut back).await;
    watched.extend(
        read_until(&mut watcher, |got| {
            got.iter()
                .any(|v| v["action"] == "moveEnd" && v["finalX"] == (MOVES * 10) as f64)
        })
        .await,
    );
    watched.extend(caught_up(&mut watcher).await);
    let moves: Vec<f64> = watched
        .iter()
        .filter(|v| v["action"] == "moveEnd" && v["elementID"] == "w1")
        .map(|v| v["finalX"].as_f64().unwrap())
        .collect();
    let expected: Vec<f64> = (1..=MOVES).map(|op| (op * 10) as f64).collect();
    assert_eq!(moves, expected, "lastOp {last_op}");
    let seqs: Vec<u64> = numbered(&watched).into_keys().collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    // One board on both nodes left.
    let boards = join_all(nodes.iter().map(|n| board_seen_by_a_joiner(n, "crash"))).await;
    assert_eq!(boards[0], boards[1]);
    assert!(words(&boards[0]).contains(&(
        "w1".to_owned(),
        (MOVES * 10) as f64,
        (MOVES * 10) as f64
    )));
}

#[tokio::test]
async fn a_dead_nodes_member_that_does_not_come_back_leaves_once_when_its_window_ends() {
    let (_redis, mut nodes) = cluster(&["--resume-window", "8s"]);
    let mut watchers = vec![nodes[1].joined("gone").await, nodes[2].joined("gone").await];
    let victim = nodes[0].joined("gone").await;
    let (id, name) = (victim.id(), victim.name());
    for w in &mut watchers {
        w.presence_until(|p| p.is_here(id)).await;
    }
    drop(nodes.remove(0)); // kill -9
    drop(victim);
    // Away first (the lease lapsed, then seen missing for 2 s: nothing
    // arrives meanwhile), then, once the window ends, one goodbye at each
    // member, whichever node noticed first.
    let goodbye = format!("Goodbye, client {name}!");
    for w in &mut watchers {
        while !w.presence.is_away(id) {
            w.next_within(Duration::from_secs(20))
                .await
                .expect("the dead node's member is away");
        }
    }
    let heard = join_all(
        watchers
            .iter_mut()
            .map(|w| frames_for(w, Duration::from_secs(12))),
    )
    .await;
    for (w, mut frames) in watchers.iter().zip(heard) {
        frames.retain(|v| v["data"] == goodbye.as_str());
        assert_eq!(frames.len(), 1, "{frames:?}");
        assert!(!w.presence.ids().contains(&id), "{:?}", w.presence);
    }
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
    let mut streams = join_all(sends).await;
    // Everyone has sent everything: each reads what came after its own end.
    for (stream, c) in streams.iter_mut().zip(clients.iter_mut()) {
        stream.extend(caught_up(c).await);
    }
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
    // And it is the board the clients end with: the one they started
    // from, with the board changes they saw numbered (their own at the
    // numbers they did not get) applied in `seq` order.
    let mut in_order = BTreeMap::new();
    for frames in &streams {
        in_order.extend(numbered(frames));
    }
    let mut board: protocol::Board = serde_json::from_value(board(6)).unwrap();
    for frame in in_order.values() {
        let Ok(message) = serde_json::from_value::<protocol::ClientMessage>(frame.clone()) else {
            continue;
        };
        if let Some(op) = message.board_op() {
            board.apply(op).unwrap_or_else(|e| panic!("{frame}: {e}"));
        }
    }
    assert_eq!(serde_json::to_value(&board).unwrap(), boards[0]);
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
    // A snapshot every 4 entries: the one taken before the loss is what a
    // node hosting the room afterwards starts from.
    let (redis, nodes) = cluster(&["--cluster-snapshot-every", "4"]);
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
    let deadline = std::time::Instant::now() + WAIT;
    while redis.command::<Option<u64>>(&["HGET", "attractio:{tail}:snapshot", "seq"]) != Some(4) {
        assert!(
            std::time::Instant::now() < deadline,
            "no snapshot of the first 4 entries"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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

#[tokio::test]
async fn a_node_started_after_redis_lost_everything_signs_with_the_clusters_key() {
    let (mut redis, mut nodes) = cluster(&[]);
    drop(nodes.pop());
    redis.restart_empty();
    // The running nodes put their token key back at their next renewal.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let late = Node::start("127.0.0.4", &redis, &[]);
    let mut c = late.client().await;
    let answer = c.join("keys").await;
    let (id, token) = (
        c.id(),
        c.hello["data"]["resumeToken"].as_str().unwrap().to_owned(),
    );
    let (epoch, seq) = (
        answer["epoch"].as_u64().unwrap(),
        answer["seq"].as_u64().unwrap(),
    );
    drop(c);
    // Its client resumes on a node started before the loss.
    let (_back, replayed) = resume_on(&nodes[0], "keys", &token, epoch, seq).await;
    let resumed = replayed.last().unwrap();
    assert_eq!(resumed["data"]["recovered"], true, "{replayed:?}");
    assert_eq!(resumed["data"]["id"], id);
}

#[tokio::test]
async fn a_join_during_a_redis_pause_takes_one_seat_once_redis_is_back() {
    let (redis, nodes) = cluster(&[]);
    let mut watcher = nodes[1].joined("paused").await;
    watcher
        .send(json!({"action":"stateUpdate","data":board(1)}))
        .await;
    caught_up(&mut watcher).await;
    // Node 1 hosts the room already: the join goes straight to the log.
    let _neighbour = nodes[0].joined("paused").await;
    caught_up(&mut watcher).await;
    // Redis pauses longer than a command's timeout while a joiner waits:
    // its append fails (an unknown outcome) and is tried again.
    redis.signal(libc::SIGSTOP);
    let mut joiner = nodes[0].client().await;
    joiner
        .send(json!({"action":"newClient","room":"paused"}))
        .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    redis.signal(libc::SIGCONT);
    let answer = joiner.expect_any(&["hydrate", "newRoom"]).await;
    assert_eq!(answer["action"], "hydrate", "{answer}");
    let id = joiner.id();
    // In once: one welcome, no goodbye, one presence entry, and it speaks.
    joiner
        .send(json!({"action":"talkToRoom","data":"made it"}))
        .await;
    let mut frames = read_until(&mut watcher, |got| {
        got.iter().any(|v| v["data"] == "made it")
    })
    .await;
    frames.extend(watcher.drain(Duration::from_secs(3)).await);
    let name = joiner.name();
    let said = |text: String| frames.iter().filter(|v| v["data"] == text.as_str()).count();
    assert_eq!(said(format!("Welcome, client {name}!")), 1, "{frames:?}");
    assert_eq!(said(format!("Goodbye, client {name}!")), 0, "{frames:?}");
    let listed = watcher.presence.ids().iter().filter(|m| **m == id).count();
    assert_eq!(listed, 1, "{:?}", watcher.presence);
    assert!(watcher.presence.is_here(id), "{:?}", watcher.presence);
    joiner
        .send(json!({"action":"talkToRoom","data":"still here"}))
        .await;
    read_until(&mut watcher, |got| {
        got.iter().any(|v| v["data"] == "still here")
    })
    .await;
}

#[tokio::test]
async fn a_join_appended_twice_seats_once() {
    let (redis, nodes) = cluster(&[]);
    let mut watcher = nodes[1].joined("twice").await;
    let joiner = nodes[0].joined("twice").await;
    let (id, name) = (joiner.id(), joiner.name());
    watcher.presence_until(|p| p.is_here(id)).await;
    // What a node's retry after an unknown outcome can leave in the log:
    // the same join entry again, as the append script writes it.
    let log: redis::streams::StreamRangeReply =
        redis.command(&["XRANGE", "attractio:{twice}:log", "-", "+"]);
    let join = log
        .ids
        .iter()
        .filter_map(|e| e.get::<String>("op"))
        .find(|op| op.contains("\"op\":\"join\"") && op.contains(&format!("\"id\":{id}")))
        .expect("the joiner's entry");
    let again = "local seq = redis.call('INCR', KEYS[1]) \
        redis.call('XADD', KEYS[2], seq .. '-0', 'op', ARGV[1]) \
        redis.call('PUBLISH', ARGV[2], seq .. ' ' .. ARGV[1]) return seq";
    let _: u64 = redis.command(&[
        "EVAL",
        again,
        "2",
        "attractio:{twice}:seq",
        "attractio:{twice}:log",
        &join,
        "attractio:{twice}:live",
    ]);
    // Every node skips it: no second welcome, one seat, and the member is
    // not let go.
    let mut frames = caught_up(&mut watcher).await;
    frames.extend(watcher.drain(Duration::from_secs(2)).await);
    let said = |text: String| frames.iter().filter(|v| v["data"] == text.as_str()).count();
    assert_eq!(said(format!("Welcome, client {name}!")), 0, "{frames:?}");
    assert_eq!(said(format!("Goodbye, client {name}!")), 0, "{frames:?}");
    assert_eq!(
        watcher.presence.ids().iter().filter(|m| **m == id).count(),
        1,
        "{:?}",
        watcher.presence
    );
    let mut late = nodes[2].client().await;
    late.join("twice").await;
    let listed = late.presence.ids().iter().filter(|m| **m == id).count();
    assert_eq!(
        listed, 1,
        "a node hosting the room afresh: {:?}",
        late.presence
    );
}

#[tokio::test]
async fn a_redis_pause_longer_than_a_lease_lets_no_member_go() {
    let (redis, nodes) = cluster(&[]);
    let mut members = Vec::new();
    for node in &nodes {
        members.push(node.joined("steady").await);
    }
    let ids: Vec<u64> = members.iter().map(Client::id).collect();
    for m in &mut members {
        m.presence_until(|p| ids.iter().all(|id| p.is_here(*id)))
            .await;
    }
    // Every lease lapses while Redis is stopped: that is Redis pausing,
    // not every node dying, and no node declares the others gone.
    redis.signal(libc::SIGSTOP);
    tokio::time::sleep(Duration::from_secs(5)).await;
    redis.signal(libc::SIGCONT);
    let heard = join_all(
        members
            .iter_mut()
            .map(|m| frames_for(m, Duration::from_secs(6))),
    )
    .await;
    for (m, frames) in members.iter().zip(&heard) {
        assert!(
            ids.iter().all(|id| m.presence.is_here(*id)),
            "{:?} after {frames:?}",
            m.presence
        );
        assert!(
            !frames.iter().any(|v| v["data"]["away"].is_array()),
            "{frames:?}"
        );
    }
    for (k, m) in members.iter_mut().enumerate() {
        m.send(json!({"action":"talkToRoom","data":format!("after {k}")}))
            .await;
    }
    for m in &mut members {
        read_until(m, |got| chats_from_others(got) == 2).await;
    }
}

#[tokio::test]
async fn a_room_that_holds_few_entries_early_loses_none() {
    // One published entry queued per room, four held while one is missing:
    // most entries are dropped on the way and read from the stream.
    let (_redis, nodes) = cluster(&[
        "--cluster-live-queue",
        "1",
        "--cluster-early-entries",
        "4",
        "--rate-limit",
        "100000",
        "--rate-burst",
        "100000",
    ]);
    let mut clients = Vec::new();
    for node in &nodes {
        clients.push(node.joined("narrow").await);
    }
    chat_in_turns(&mut clients, 40).await;
}
