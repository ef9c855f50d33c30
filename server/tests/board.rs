//! Room state that survives: the authoritative board, late joiners, the
//! freeze lock, the state-request path and sled persistence.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const SHORT: Duration = Duration::from_millis(300);

fn saves(metrics: &str) -> u64 {
    metric(metrics, "attractio_store_saves_total")
}

fn metric(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("{name} not in metrics"))
}

async fn with_board(s: &Server, room: &str, n: usize) -> Client {
    let mut a = s.client().await;
    assert_eq!(a.join(room).await["action"], "newRoom");
    a.send(json!({"action":"stateUpdate","room":room,"data":board(n)}))
        .await;
    a
}

#[tokio::test]
async fn a_joiner_is_hydrated_from_memory() {
    let s = Server::start(&[]);
    let _a = with_board(&s, "mem", 3).await;
    let mut b = s.client().await;
    let h = b.join("mem").await;
    assert_eq!(h["action"], "hydrate");
    assert_eq!(words(&h["data"]).len(), 3);
    assert!(h["seq"].is_u64() && h["epoch"].is_u64());
}

#[tokio::test]
async fn late_joiner_sees_the_latest_move() {
    let s = Server::start(&[]);
    let _a = with_board(&s, "late", 2).await;
    let mut b = s.joined("late").await;
    b.send(json!({"action":"moveEnd","room":"late","elementID":"w1","finalX":333,"finalY":444}))
        .await;
    // The echo comes back once b's connection has handed the drop to the
    // room, so c's join is queued behind it.
    b.send(json!({"action":"echo","data":"sent"})).await;
    b.expect("echo").await;
    let mut c = s.client().await;
    let h = c.join("late").await;
    let w1 = words(&h["data"]).into_iter().find(|w| w.0 == "w1").unwrap();
    assert_eq!((w1.1, w1.2), (333.0, 444.0));
}

#[tokio::test]
async fn every_atom_is_applied_and_relayed() {
    let s = Server::start(&[]);
    let mut a = with_board(&s, "atoms", 2).await;
    let mut b = s.joined("atoms").await;
    a.send(json!({"action":"newWord","room":"atoms","data":{"id":"n1","text":"new","x":1,"y":2}}))
        .await;
    assert_eq!(b.expect("newWord").await["data"]["id"], "n1");
    a.send(json!({"action":"modify","room":"atoms","elementID":"w0","update":{"text":"sun"}}))
        .await;
    assert_eq!(b.expect("modify").await["update"]["text"], "sun");
    a.send(json!({"action":"delete","room":"atoms","elementID":"w1"}))
        .await;
    assert_eq!(b.expect("delete").await["elementID"], "w1");
    a.send(json!({"action":"moving","room":"atoms","elementID":"n1","dx":3,"dy":4}))
        .await;
    let moving = b.expect("moving").await;
    assert_eq!(moving["from"]["id"], a.id());
    assert!(moving.get("seq").is_none(), "moving is volatile");
    a.send(json!({"action":"moveEnd","room":"atoms","elementID":"n1","finalX":50,"finalY":60}))
        .await;
    let end = b.expect("moveEnd").await;
    assert_eq!(end["finalX"], 50.0);
    let mut c = s.client().await;
    let h = c.join("atoms").await;
    let data = h["data"].as_array().unwrap();
    assert_eq!(
        words(&h["data"]),
        vec![("n1".into(), 50.0, 60.0), ("w0".into(), 0.0, 20.0)]
    );
    let sun = data.iter().find(|w| w["id"] == "w0").unwrap();
    assert_eq!(sun["text"], "sun");
    let n1 = data.iter().find(|w| w["id"] == "n1").unwrap();
    assert!(
        n1["z"].as_u64() > sun["z"].as_u64(),
        "a dropped word comes to the front"
    );
    // stateUpdate replaces, and others get rehydrate.
    a.send(json!({"action":"stateUpdate","room":"atoms","data":board(1)}))
        .await;
    assert_eq!(words(&b.expect("rehydrate").await["data"]).len(), 1);
}

#[tokio::test]
async fn atoms_on_missing_words_get_errors() {
    let s = Server::start(&[]);
    let mut a = with_board(&s, "missing", 1).await;
    for m in [
        json!({"action":"moveEnd","elementID":"nope","finalX":1,"finalY":1}),
        json!({"action":"delete","elementID":"nope"}),
        json!({"action":"modify","elementID":"nope","update":{"text":"x"}}),
        json!({"action":"freeze","elementID":"nope"}),
    ] {
        a.send(m).await;
        assert_eq!(a.expect("error").await["data"]["code"], "unknown_word");
    }
    a.send(json!({"action":"newWord","data":{"id":"w0","text":"dup","x":0,"y":0}}))
        .await;
    assert_eq!(a.expect("error").await["data"]["code"], "duplicate_word");
}

#[tokio::test]
async fn a_frozen_word_refuses_others_until_released() {
    let s = Server::start(&[]);
    let mut a = with_board(&s, "lock", 2).await;
    let mut b = s.joined("lock").await;
    a.send(json!({"action":"freeze","room":"lock","elementID":"w0"}))
        .await;
    let f = b.expect("freeze").await;
    assert_eq!(f["clientName"], a.name());
    assert_eq!(f["color"], a.hello["data"]["color"]);
    for m in [
        json!({"action":"moveEnd","elementID":"w0","finalX":9,"finalY":9}),
        json!({"action":"moving","elementID":"w0","dx":1,"dy":1}),
        json!({"action":"delete","elementID":"w0"}),
        json!({"action":"modify","elementID":"w0","update":{"text":"x"}}),
        json!({"action":"freeze","elementID":"w0"}),
    ] {
        b.send(m.clone()).await;
        assert_eq!(
            b.expect("error").await["data"]["code"],
            "word_locked",
            "{m}"
        );
    }
    a.expect_none("moveEnd", SHORT).await;
    // A late joiner is told the word is held.
    let mut late = s.client().await;
    late.send(json!({"action":"newClient","room":"lock"})).await;
    late.expect("hydrate").await;
    let held = late.expect("freeze").await;
    assert_eq!(
        (held["elementID"].as_str(), held["from"]["id"].as_u64()),
        (Some("w0"), Some(a.id()))
    );
    a.send(json!({"action":"unfreeze","room":"lock","elementID":"w0"}))
        .await;
    b.expect("unfreeze").await;
    b.send(json!({"action":"moveEnd","elementID":"w0","finalX":9,"finalY":9}))
        .await;
    assert_eq!(a.expect("moveEnd").await["finalX"], 9.0);
}

#[tokio::test]
async fn a_holders_words_are_released_when_it_leaves() {
    let s = Server::start(&[]);
    let mut a = with_board(&s, "release", 2).await;
    let mut b = s.joined("release").await;
    a.send(json!({"action":"freeze","elementID":"w0"})).await;
    a.send(json!({"action":"freeze","elementID":"w1"})).await;
    b.expect("freeze").await;
    b.expect("freeze").await;
    drop(a);
    let mut released = vec![
        b.expect("unfreeze").await["elementID"]
            .as_str()
            .unwrap()
            .to_owned(),
        b.expect("unfreeze").await["elementID"]
            .as_str()
            .unwrap()
            .to_owned(),
    ];
    released.sort();
    assert_eq!(released, ["w0", "w1"]);
    b.send(json!({"action":"delete","elementID":"w0"})).await;
    b.expect_none("error", SHORT).await;
}

#[tokio::test]
async fn locks_are_released_on_heartbeat_timeout() {
    let s = Server::start(&["--ping-interval", "200ms"]);
    let mut a = with_board(&s, "hbl", 1).await;
    let mut b = s.joined("hbl").await;
    a.send(json!({"action":"freeze","elementID":"w0"})).await;
    b.expect("freeze").await;
    // a stops reading: it never answers a ping again.
    let _frozen_socket = a;
    assert_eq!(b.expect("unfreeze").await["elementID"], "w0");
}

#[tokio::test]
async fn the_server_asks_the_most_recent_member_when_it_has_no_board() {
    let s = Server::start(&[]);
    let mut a = s.client().await;
    assert_eq!(a.join("ask").await["action"], "newRoom");
    let mut b = s.client().await;
    b.send(json!({"action":"newClient","room":"ask"})).await;
    a.expect("requestCurrentState").await;
    a.send(json!({"action":"stateUpdate","room":"ask","data":board(2)}))
        .await;
    let h = b.expect("hydrate").await;
    assert_eq!(words(&h["data"]).len(), 2);
}

#[tokio::test]
async fn a_member_that_never_answers_is_skipped_after_a_timeout() {
    let s = Server::start(&["--state-timeout", "300ms"]);
    let mut a = s.client().await;
    a.join("mute").await;
    let mut c = s.client().await;
    c.send(json!({"action":"newClient","room":"mute"})).await;
    a.expect("requestCurrentState").await;
    a.send(json!({"action":"emptyRoom"})).await;
    assert_eq!(
        c.expect_any(&["newRoom", "hydrate"]).await["action"],
        "newRoom"
    );
    // Now b joins: a (front) is asked and stays silent; then c is asked.
    let mut b = s.client().await;
    b.send(json!({"action":"newClient","room":"mute"})).await;
    a.expect("requestCurrentState").await;
    c.expect("requestCurrentState").await;
    c.send(json!({"action":"stateUpdate","data":board(4)}))
        .await;
    assert_eq!(words(&b.expect("hydrate").await["data"]).len(), 4);
}

#[tokio::test]
async fn new_room_when_nobody_has_a_board() {
    let s = Server::start(&[]);
    let mut a = s.client().await;
    a.join("blank").await;
    let mut b = s.client().await;
    b.send(json!({"action":"newClient","room":"blank"})).await;
    a.expect("requestCurrentState").await;
    a.send(json!({"action":"emptyRoom"})).await;
    let n = b.expect_any(&["newRoom", "hydrate"]).await;
    assert_eq!(n["action"], "newRoom");
    assert!(n["seq"].is_u64());
}

#[tokio::test]
async fn the_board_survives_a_graceful_restart() {
    let s = Server::start(&["--save-interval", "1h"]);
    let a = with_board(&s, "keep", 5).await;
    // Make sure the server has applied it.
    let mut probe = s.client().await;
    assert_eq!(probe.join("keep").await["action"], "hydrate");
    let port = s.port();
    let (status, dir) = s.stop();
    assert!(status.success());
    drop(a);
    let dir = dir.unwrap();
    let s = Server::start_in(dir.path(), &[], Some(port));
    let mut c = s.client().await;
    let h = c.join("keep").await;
    assert_eq!(h["action"], "hydrate");
    assert_eq!(words(&h["data"]).len(), 5);
    let rooms = s.get("/api/rooms").await;
    assert!(rooms.contains(r#""stored":1"#), "{rooms}");
}

#[tokio::test]
async fn the_board_is_flushed_when_the_last_member_leaves() {
    let s = Server::start(&["--save-interval", "1h"]);
    let mut a = with_board(&s, "flush", 3).await;
    // The first change is written at once; the next would wait an hour.
    let deadline = std::time::Instant::now() + WAIT;
    while saves(&s.get("/metrics").await) == 0 {
        assert!(std::time::Instant::now() < deadline, "first save");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.send(json!({"action":"moveEnd","elementID":"w1","finalX":640,"finalY":480}))
        .await;
    a.send(json!({"action":"echo","data":1})).await;
    a.expect("echo").await;
    assert_eq!(saves(&s.get("/metrics").await), 1);
    a.close().await;
    while saves(&s.get("/metrics").await) < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "no flush on last leave"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Die without any chance to save: the flushed board is there.
    let dir = s.kill9().unwrap();
    let s = Server::start_in(dir.path(), &[], None);
    let mut c = s.client().await;
    let h = c.join("flush").await;
    assert!(
        words(&h["data"]).contains(&("w1".into(), 640.0, 480.0)),
        "{h}"
    );
}

#[tokio::test]
async fn after_kill_9_changes_older_than_one_save_interval_are_kept() {
    let s = Server::start(&["--save-interval", "200ms"]);
    let mut a = with_board(&s, "crash", 3).await;
    a.send(json!({"action":"moveEnd","elementID":"w2","finalX":700,"finalY":500}))
        .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let dir = s.kill9().unwrap();
    drop(a);
    let s = Server::start_in(dir.path(), &[], None);
    let mut c = s.client().await;
    let h = c.join("crash").await;
    assert!(
        words(&h["data"]).contains(&("w2".into(), 700.0, 500.0)),
        "{h}"
    );
}

#[tokio::test]
async fn many_moves_make_few_writes_and_identical_boards_none() {
    let s = Server::start(&["--save-interval", "300ms"]);
    let mut a = with_board(&s, "writes", 3).await;
    let _b = s.joined("writes").await; // keeps the room alive
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = saves(&s.get("/metrics").await);
    for i in 0..100 {
        a.send(json!({"action":"moveEnd","elementID":"w0","finalX":100 + i * 20,"finalY":100}))
            .await;
        tokio::time::sleep(Duration::from_millis(6)).await;
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let after_moves = saves(&s.get("/metrics").await);
    let writes = after_moves - before;
    assert!(
        (1..=5).contains(&writes),
        "100 moves over ~0.6 s made {writes} writes"
    );
    // The same board again: nothing new to write.
    let h = s.joined("writes").await;
    drop(h);
    let metrics = s.get("/metrics").await;
    let skipped_before = metric(&metrics, "attractio_store_saves_skipped_total");
    let mut c = s.client().await;
    let current = c.join("writes").await["data"].clone();
    a.send(json!({"action":"stateUpdate","data":current})).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let metrics = s.get("/metrics").await;
    assert_eq!(
        saves(&metrics),
        after_moves,
        "identical board written again"
    );
    assert_eq!(
        metric(&metrics, "attractio_store_saves_skipped_total"),
        skipped_before + 1
    );
}

#[tokio::test]
async fn a_nudge_waits_but_is_never_dropped() {
    let s = Server::start(&["--save-interval", "100ms"]);
    let mut a = with_board(&s, "nudge", 2).await;
    let _b = s.joined("nudge").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = saves(&s.get("/metrics").await);
    a.send(json!({"action":"moveEnd","elementID":"w0","finalX":2,"finalY":21}))
        .await;
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(
        saves(&s.get("/metrics").await),
        before,
        "a 2 px nudge waits"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        saves(&s.get("/metrics").await),
        before + 1,
        "but is written in the end"
    );
}

#[tokio::test]
async fn a_corrupt_record_does_not_stop_the_server() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let db = sled::open(tmp.path()).unwrap();
        db.open_tree("rooms")
            .unwrap()
            .insert("broken", &b"\x00garbage"[..])
            .unwrap();
        db.flush().unwrap();
    }
    let s = Server::start_in(tmp.path(), &[], None);
    let mut a = s.client().await;
    assert_eq!(a.join("broken").await["action"], "newRoom");
    a.send(json!({"action":"stateUpdate","data":board(1)}))
        .await;
    let mut b = s.client().await;
    assert_eq!(b.join("broken").await["action"], "hydrate");
    assert_eq!(
        metric(&s.get("/metrics").await, "attractio_store_errors_total"),
        1
    );
}

/// Several clients doing random atoms at once; afterwards every client's
/// board, the server's board and the stored board are equal.
#[tokio::test]
async fn concurrent_random_atoms_leave_everyone_agreeing() {
    use protocol::{board::BoardOp, Board, ServerFrame, ServerMessage, WordId};
    use rand::Rng;
    const N: usize = 4;
    let s = Server::start(&[
        "--save-interval",
        "50ms",
        "--rate-limit",
        "10000",
        "--rate-burst",
        "10000",
    ]);
    let initial: Value = (0..N)
        .flat_map(|c| (0..3).map(move |w| json!({"id":format!("c{c}-{w}"),"text":"t","x":0,"y":0})))
        .collect();
    let mut a = s.client().await;
    a.join("stress").await;
    a.send(json!({"action":"stateUpdate","data":initial})).await;
    let mut clients = vec![a];
    for _ in 1..N {
        clients.push(s.joined("stress").await);
    }
    // Each client only changes its own words, so the final state of every
    // word does not depend on how the server interleaved the clients.
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            tokio::spawn(async move {
                let mut own = Vec::new();
                for n in 0..60 {
                    let (w, kind, x, y, t) = {
                        let mut rng = rand::rng();
                        (rng.random_range(0..3), rng.random_range(0..4), rng.random_range(0..900), rng.random_range(0..600), rng.random_range(0..99))
                    };
                    let id = format!("c{i}-{w}");
                    let wid = WordId::new(&id).unwrap();
                    let (m, op) = match kind {
                        0 => (
                            json!({"action":"moveEnd","elementID":id,"finalX":x,"finalY":y}),
                            Some(BoardOp::Move { id: wid, x: x as f64, y: y as f64 }),
                        ),
                        1 => (
                            json!({"action":"modify","elementID":id,"update":{"text":format!("t{t}")}}),
                            Some(BoardOp::Modify { id: wid, text: format!("t{t}") }),
                        ),
                        2 => (json!({"action":"moving","elementID":id,"dx":1,"dy":1}), None),
                        _ => {
                            let word = json!({"id":format!("c{i}-n{n}"),"text":"n","x":5,"y":5});
                            let op = BoardOp::Add(serde_json::from_value(word.clone()).unwrap());
                            (json!({"action":"newWord","data":word}), Some(op))
                        }
                    };
                    c.send(m).await;
                    own.extend(op);
                }
                (c, own)
            })
        })
        .collect();
    let mut finished = Vec::new();
    for t in tasks {
        finished.push(t.await.unwrap());
    }
    let key = |b: &Board| {
        let mut v: Vec<_> = b
            .words()
            .iter()
            .map(|w| (w.id.to_string(), w.text.clone(), w.x, w.y))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    let initial_board: Board = serde_json::from_value(initial).unwrap();
    let mut views = Vec::new();
    for (mut c, own) in finished {
        let mut board = initial_board.clone();
        while let Some(v) = c.next_within(Duration::from_millis(500)).await {
            let frame = ServerFrame::decode(&v.to_string()).unwrap();
            let op = match frame.message {
                ServerMessage::Hydrate { data } | ServerMessage::Rehydrate { data, .. } => {
                    BoardOp::Replace(data)
                }
                ServerMessage::NewWord { data, .. } => BoardOp::Add(data),
                ServerMessage::MoveEnd {
                    element_id,
                    final_x,
                    final_y,
                    ..
                } => BoardOp::Move {
                    id: element_id,
                    x: final_x,
                    y: final_y,
                },
                ServerMessage::Modify {
                    element_id, update, ..
                } => BoardOp::Modify {
                    id: element_id,
                    text: update.text,
                },
                ServerMessage::Delete { element_id, .. } => BoardOp::Delete(element_id),
                ServerMessage::Error { data } => panic!("unexpected error {data:?}"),
                _ => continue,
            };
            board.apply(op).unwrap();
        }
        for op in own {
            board.apply(op).unwrap();
        }
        views.push(key(&board));
    }
    let mut probe = s.client().await;
    let server: Board = serde_json::from_value(probe.join("stress").await["data"].clone()).unwrap();
    assert!(server.len() > N * 3, "new words were added");
    for view in &views {
        assert_eq!(view, &key(&server));
    }
    let (status, dir) = s.stop();
    assert!(status.success());
    let dir = dir.unwrap();
    let s = Server::start_in(dir.path(), &[], None);
    let mut c = s.client().await;
    let stored: Board = serde_json::from_value(c.join("stress").await["data"].clone()).unwrap();
    assert_eq!(key(&stored), key(&server));
}
