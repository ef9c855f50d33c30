//! What one member can cost a room, and what a room can cost the server:
//! the board, locks and turns are bounded, a joiner or resumer always gets
//! in, a resume replays nothing from before its join, quiet rooms do not
//! hold history, and rooms nobody can come back to store none.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// A board of `n` words with 64-byte ids (the largest a word id may be).
fn wide_board(n: usize) -> Value {
    Value::Array(
        (0..n)
            .map(|i| json!({"id": wide_id(i), "text": format!("w{i}"), "x": i % 900, "y": i / 900}))
            .collect(),
    )
}

fn wide_id(i: usize) -> String {
    format!("{i:0>64}")
}

/// Sends `v` and returns the `error` frame's code it gets back.
async fn refused(c: &mut Client, v: Value) -> String {
    c.send(v).await;
    c.expect("error").await["data"]["code"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Whether `c` is still in: an echo comes back (everything before it read).
async fn still_connected(c: &mut Client) -> bool {
    c.send(json!({"action":"echo","data":7})).await;
    loop {
        match c.next_within(WAIT * 2).await {
            Some(v) if v["action"] == "echo" => return true,
            Some(_) => continue,
            None => return false,
        }
    }
}

/// The flood, scaled to what the limits allow: eight members, a
/// board at its limit of words with the longest ids, every member holding
/// as many words as it may, and three of them dropping their words as
/// fast as the rate limit lets them. Everyone reads promptly; nobody is
/// let go as a slow consumer.
#[tokio::test]
async fn prompt_readers_stay_connected_while_three_members_drop_words_fast() {
    let s = Server::start(&["--max-message-bytes", "1048576"]);
    let room = "flood";
    let mut first = s.joined(room).await;
    first
        .send(json!({"action":"stateUpdate","room":room,"data":wide_board(2000)}))
        .await;
    let mut members = vec![first];
    for _ in 1..8 {
        members.push(s.joined(room).await);
    }
    // Every member freezes its four words (the default bound).
    for (k, m) in members.iter_mut().enumerate() {
        for j in 0..4 {
            let id = wide_id(k * 4 + j);
            m.send(json!({"action":"freeze","room":room,"elementID":id}))
                .await;
        }
    }
    for m in &mut members {
        m.drain(Duration::from_millis(500)).await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    let mut senders = Vec::new();
    for (k, mut m) in members.into_iter().enumerate() {
        let stop = stop.clone();
        if k < 3 {
            // 55 drops a second, within the default rate limit of 60.
            senders.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(18));
                let mut n = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    let id = wide_id(k * 4 + n % 4);
                    let v = json!({"action":"moveEnd","room":room,"elementID":id,"finalX":n % 800,"finalY":k});
                    m.send(v).await;
                    n += 1;
                    // Read what came meanwhile, promptly.
                    while let Some(v) = m.next_within(Duration::from_millis(1)).await {
                        if v["action"] == "error" {
                            panic!("a drop was refused: {v}");
                        }
                    }
                }
                m
            }));
        } else {
            readers.push(tokio::spawn(async move {
                let mut moves = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    if let Some(v) = m.next_within(Duration::from_millis(200)).await {
                        moves += usize::from(v["action"] == "moveEnd");
                    }
                }
                (m, moves)
            }));
        }
    }
    tokio::time::sleep(Duration::from_secs(6)).await;
    stop.store(true, Ordering::Relaxed);
    for sender in senders {
        let mut m = sender.await.unwrap();
        assert!(still_connected(&mut m).await, "a sender was let go");
    }
    for reader in readers {
        let (mut m, moves) = reader.await.unwrap();
        assert!(moves > 100, "only {moves} drops arrived");
        assert!(
            still_connected(&mut m).await,
            "a prompt reader was let go ({:?})",
            m.close_code().await
        );
    }
}

#[tokio::test]
async fn a_member_holds_at_most_max_locks_per_member_words() {
    let s = Server::start(&["--max-locks-per-member", "2"]);
    let room = "locks";
    let mut a = s.joined(room).await;
    let mut b = s.joined(room).await;
    a.send(json!({"action":"stateUpdate","room":room,"data":board(4)}))
        .await;
    b.expect("rehydrate").await;
    for w in ["w0", "w1"] {
        a.send(json!({"action":"freeze","room":room,"elementID":w}))
            .await;
        b.expect("freeze").await;
    }
    // Again a word it holds: no new lock, no error.
    a.send(json!({"action":"freeze","room":room,"elementID":"w1"}))
        .await;
    b.expect("freeze").await;
    assert_eq!(
        refused(
            &mut a,
            json!({"action":"freeze","room":room,"elementID":"w2"})
        )
        .await,
        "too_many_locks"
    );
    // The word stayed free: another member takes it.
    b.send(json!({"action":"freeze","room":room,"elementID":"w2"}))
        .await;
    assert_eq!(a.expect("freeze").await["elementID"], "w2");
    // One let go, one more may be taken.
    a.send(json!({"action":"unfreeze","room":room,"elementID":"w0"}))
        .await;
    a.send(json!({"action":"freeze","room":room,"elementID":"w3"}))
        .await;
    let seen = b.expect("freeze").await;
    assert_eq!(seen["elementID"], "w3");
}

#[tokio::test]
async fn a_board_past_its_words_text_or_bytes_is_refused_and_stays_as_it_was() {
    let s = Server::start(&[
        "--max-board-words",
        "3",
        "--max-word-text",
        "5",
        "--max-board-bytes",
        "40",
    ]);
    let room = "bounded";
    let mut a = s.joined(room).await;
    // 3 words of 2-byte ids and 5-byte texts: 21 bytes.
    a.send(json!({"action":"stateUpdate","room":room,"data":board(3)}))
        .await;
    let too_many =
        json!({"action":"newWord","room":room,"data":{"id":"w9","text":"x","x":0,"y":0}});
    assert_eq!(refused(&mut a, too_many).await, "board_too_large");
    let too_long =
        json!({"action":"modify","room":room,"elementID":"w0","update":{"text":"sixsix"}});
    assert_eq!(refused(&mut a, too_long).await, "board_too_large");
    let wide: Vec<Value> = (0..3)
        .map(|i| json!({"id": format!("{i:0>12}"), "text": "abcde", "x": 0, "y": 0}))
        .collect();
    let too_big = json!({"action":"stateUpdate","room":room,"data":wide});
    assert_eq!(refused(&mut a, too_big).await, "board_too_large");
    let mut joiner = s.client().await;
    let board = joiner.join(room).await;
    assert_eq!(words(&board["data"]).len(), 3);
    assert_eq!(board["data"][0]["text"], "word0");
}

/// Every lock a room may hold, and a board at its limit: a joiner and a
/// resumer with a queue of four frames still get in and stay.
#[tokio::test]
async fn a_joiner_and_a_resumer_get_in_whatever_the_board_and_locks_with_a_small_queue() {
    let s = Server::start(&[
        "--max-message-bytes",
        "1048576",
        "--outbound-queue",
        "4",
        "--max-room-size",
        "8",
        "--max-locks-per-member",
        "16",
    ]);
    let room = "crowded";
    let mut first = s.joined(room).await;
    first
        .send(json!({"action":"stateUpdate","room":room,"data":wide_board(2000)}))
        .await;
    let mut holders = vec![first];
    for _ in 1..6 {
        holders.push(s.joined(room).await);
    }
    // Six members with sixteen locks each: 96 `freeze` frames for a
    // joiner, twenty-four times its queue. Sent slowly enough that the
    // holders, reading, are not slow consumers themselves.
    for k in 0..6 {
        for j in 0..16 {
            let id = wide_id(k * 16 + j);
            holders[k]
                .send(json!({"action":"freeze","room":room,"elementID":id}))
                .await;
            for h in holders.iter_mut() {
                h.drain(Duration::from_millis(5)).await;
            }
        }
    }
    for h in holders.iter_mut() {
        h.drain(Duration::from_millis(300)).await;
    }
    let mut joiner = s.client().await;
    let token = joiner.hello["data"]["resumeToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let hydrate = joiner.join(room).await;
    assert_eq!(hydrate["action"], "hydrate");
    let epoch = hydrate["epoch"].as_u64().unwrap();
    let seq = hydrate["seq"].as_u64().unwrap();
    let mut freezes = 0;
    while let Some(v) = joiner.next_within(Duration::from_millis(500)).await {
        freezes += usize::from(v["action"] == "freeze");
    }
    assert_eq!(freezes, 96, "every lock was told");
    assert!(still_connected(&mut joiner).await, "the joiner was let go");

    // Twenty chat lines it then misses, and a resume on a second socket.
    for i in 0..20 {
        holders[0]
            .send(json!({"action":"talkToRoom","room":room,"data":format!("line {i}")}))
            .await;
    }
    for h in holders.iter_mut() {
        h.drain(Duration::from_millis(300)).await;
    }
    let mut back = s.client().await;
    back.send(
        json!({"action":"newClient","room":room,"resumeToken":token,"epoch":epoch,"lastSeq":seq}),
    )
    .await;
    let mut got = Vec::new();
    while let Some(v) = back.next_within(Duration::from_millis(800)).await {
        got.push(v);
    }
    let resumed = got
        .iter()
        .find(|v| v["action"] == "resumed")
        .expect("resumed");
    assert_eq!(resumed["data"]["recovered"], true);
    let lines = got
        .iter()
        .filter(|v| v["action"] == "talkToRoom" && v.get("from").is_some())
        .count();
    assert_eq!(lines, 20, "the replay is whole");
    let locks = got.iter().filter(|v| v["action"] == "freeze").count();
    assert_eq!(locks, 96, "and the locks of now");
    assert!(still_connected(&mut back).await, "the resumer was let go");
}

#[tokio::test]
async fn a_resume_never_replays_what_was_said_before_the_seat_joined() {
    let s = Server::start(&[]);
    let room = "late";
    let mut a = s.joined(room).await;
    for i in 0..3 {
        a.send(json!({"action":"talkToRoom","room":room,"data":format!("before you came {i}")}))
            .await;
    }
    a.drain(Duration::from_millis(200)).await;
    let mut newcomer = s.client().await;
    let token = newcomer.hello["data"]["resumeToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let answer = newcomer.join(room).await;
    let epoch = answer["epoch"].as_u64().unwrap();
    a.send(json!({"action":"talkToRoom","room":room,"data":"after you came"}))
        .await;
    newcomer.expect("talkToRoom").await;
    // A second socket resumes the fresh seat as if it had seen nothing.
    let mut second = s.client().await;
    second
        .send(
            json!({"action":"newClient","room":room,"resumeToken":token,"epoch":epoch,"lastSeq":0}),
        )
        .await;
    let mut replayed = Vec::new();
    loop {
        let v = second.next_within(WAIT).await.expect("resumed arrives");
        if v["action"] == "resumed" {
            break;
        }
        replayed.push(v);
    }
    let said: Vec<&str> = replayed
        .iter()
        .filter(|v| v["action"] == "talkToRoom")
        .filter_map(|v| v["data"].as_str())
        .collect();
    assert!(
        !said.iter().any(|l| l.starts_with("before you came")),
        "replayed from before the join: {said:?}"
    );
    assert!(said.contains(&"after you came"), "{said:?}");
}

/// A quiet room's frames expire by age even though it sends nothing
/// more, so a room started later has the shared budget for its own.
#[tokio::test]
async fn a_quiet_rooms_history_expires_so_a_later_room_keeps_its_own() {
    let s = Server::start(&["--history-total-bytes", "20000", "--resume-window", "4s"]);
    let mut quiet = s.joined("quiet").await;
    let line = "q".repeat(3000);
    for _ in 0..10 {
        quiet
            .send(json!({"action":"talkToRoom","room":"quiet","data":line}))
            .await;
    }
    // Stays in the room, and says nothing more.
    quiet.drain(Duration::from_millis(300)).await;
    // Twice the window: every frame is older than it, swept or not.
    tokio::time::sleep(Duration::from_secs(8)).await;

    let mut talker = s.joined("later").await;
    let mut listener = s.client().await;
    let token = listener.hello["data"]["resumeToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let answer = listener.join("later").await;
    let (epoch, seq) = (
        answer["epoch"].as_u64().unwrap(),
        answer["seq"].as_u64().unwrap(),
    );
    // Together more than the quiet room left of the budget, had it kept
    // its frames.
    for i in 0..3 {
        let line = format!("kept {i} {}", "k".repeat(3000));
        talker
            .send(json!({"action":"talkToRoom","room":"later","data":line}))
            .await;
    }
    for _ in 0..3 {
        listener.expect("talkToRoom").await;
    }
    let mut back = s.client().await;
    back.send(json!({"action":"newClient","room":"later","resumeToken":token,"epoch":epoch,"lastSeq":seq}))
        .await;
    let mut lines = Vec::new();
    let resumed = loop {
        let v = back.next_within(WAIT).await.expect("resumed arrives");
        if v["action"] == "resumed" {
            break v;
        }
        if v["action"] == "talkToRoom" {
            lines.push(v["data"].as_str().unwrap()[..6].to_owned());
        }
    };
    assert_eq!(resumed["data"]["recovered"], true, "{resumed}");
    assert_eq!(lines, ["kept 0", "kept 1", "kept 2"]);
    assert!(still_connected(&mut quiet).await);
}

/// The size of everything under `dir`, in bytes.
fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                dir_bytes(&e.path())
            } else {
                meta.len()
            }
        })
        .sum()
}

/// The input: rooms of one word and eighteen chat lines of 32,000
/// `"` (escaping doubles them), then everyone leaves. Nobody can resume
/// into them, so their history is not stored.
#[tokio::test]
async fn rooms_everyone_left_store_no_history() {
    let s = Server::start(&[]);
    let line = "\"".repeat(32_000);
    for r in 0..10 {
        let room = format!("big-{r}");
        let mut m = s.joined(&room).await;
        m.send(json!({"action":"newWord","room":room,"data":{"id":"w","text":"one","x":1,"y":1}}))
            .await;
        for _ in 0..18 {
            m.send(json!({"action":"talkToRoom","room":room,"data":line}))
                .await;
        }
        assert!(still_connected(&mut m).await);
        m.close().await;
    }
    // The rooms are written as they end; a graceful stop flushes the rest.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let dir = s.data_dir.clone();
    let (status, tmp) = s.stop();
    assert!(status.success());
    let bytes = dir_bytes(&dir);
    assert!(
        bytes < 8 << 20,
        "{bytes} bytes stored for ten rooms nobody can come back to"
    );
    drop(tmp);
}

/// A room whose seats are held at a graceful stop keeps its history for
/// them, but no more of it than `--max-room-stored-bytes` allows.
#[tokio::test]
async fn a_room_stores_at_most_max_room_stored_bytes_of_history() {
    let s = Server::start(&["--max-room-stored-bytes", "300000"]);
    let line = "\"".repeat(32_000);
    let room = "held";
    let mut m = s.joined(room).await;
    for _ in 0..18 {
        m.send(json!({"action":"talkToRoom","room":room,"data":line}))
            .await;
    }
    assert!(still_connected(&mut m).await);
    // Stopped with the member in: its seat is held, history stored.
    let dir = s.data_dir.clone();
    let (status, tmp) = s.stop();
    assert!(status.success());
    let bytes = dir_bytes(&dir);
    assert!(
        bytes < 1 << 20,
        "{bytes} bytes stored for a room of at most 300,000"
    );
    drop(tmp);
}

/// Members flooding a room make its turns take many commands: a turn
/// still ends before it has queued more than half of a member's queue,
/// so a member reading promptly, with a queue of sixteen frames, keeps
/// up and is never let go for the others' flood.
#[tokio::test]
async fn a_turn_never_queues_more_than_a_prompt_reader_can_hold() {
    let s = Server::start(&[
        "--outbound-queue",
        "16",
        "--rate-limit",
        "100000",
        "--rate-burst",
        "100000",
    ]);
    let room = "turns";
    let mut reader = s.joined(room).await;
    reader
        .send(json!({"action":"stateUpdate","room":room,"data":board(1)}))
        .await;
    let mut floods = Vec::new();
    for k in 0..4 {
        let mut m = s.joined(room).await;
        floods.push(tokio::spawn(async move {
            for i in 0..300 {
                m.send(json!({"action":"talkToRoom","room":room,"data":format!("{k}:{i}")}))
                    .await;
            }
            m
        }));
    }
    let reading = tokio::spawn(async move {
        let mut lines = 0;
        while let Some(v) = reader.next_within(Duration::from_secs(2)).await {
            lines += usize::from(v["action"] == "talkToRoom" && v.get("from").is_some());
        }
        (reader, lines)
    });
    for f in floods {
        f.await.unwrap();
    }
    let (mut reader, lines) = reading.await.unwrap();
    assert!(
        still_connected(&mut reader).await,
        "the prompt reader was let go after {lines} lines"
    );
    // The flooders, reading nothing, are let go themselves at some point.
    assert!(lines >= 300, "only {lines} lines arrived");
}

#[tokio::test]
async fn a_room_works_with_the_smallest_turn() {
    // One byte: every frame queued ends the turn.
    let s = Server::start(&["--max-turn-bytes", "1"]);
    let room = "tiny-turns";
    let mut reader = s.joined(room).await;
    reader
        .send(json!({"action":"stateUpdate","room":room,"data":board(2)}))
        .await;
    // The board reached the room before the talker joins it.
    reader.send(json!({"action":"echo","data":1})).await;
    reader.expect("echo").await;
    let mut talker = s.client().await;
    let hydrate = talker.join(room).await;
    assert_eq!(words(&hydrate["data"]).len(), 2, "{hydrate}");
    for i in 0..50 {
        talker
            .send(json!({"action":"talkToRoom","room":room,"data":format!("line {i}")}))
            .await;
    }
    for i in 0..50 {
        // The server's own lines (the welcome) have no sender.
        let line = loop {
            let line = reader.expect("talkToRoom").await;
            if line.get("from").is_some() {
                break line;
            }
        };
        assert_eq!(line["data"], format!("line {i}"));
    }
    assert!(still_connected(&mut reader).await);
    assert!(still_connected(&mut talker).await);
}
