//! Resuming after a dropped connection: same identity, nothing missed,
//! nothing duplicated, and an honest `recovered:false` when it cannot be.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// A client that remembers where it stands in the room's numbering.
struct Tracked {
    c: Client,
    token: String,
    epoch: u64,
    last_seq: u64,
}

impl Tracked {
    async fn join(s: &Server, room: &str) -> Tracked {
        let mut c = s.client().await;
        let answer = c.join(room).await;
        Tracked {
            token: c.hello["data"]["resumeToken"].as_str().unwrap().to_owned(),
            epoch: answer["epoch"].as_u64().unwrap(),
            last_seq: answer["seq"].as_u64().unwrap(),
            c,
        }
    }

    /// Reads everything for a while, keeping the numbering up to date.
    async fn drain(&mut self) -> Vec<Value> {
        let mut got = Vec::new();
        while let Some(v) = self.c.next_within(Duration::from_millis(300)).await {
            if let Some(seq) = v["seq"].as_u64() {
                self.last_seq = self.last_seq.max(seq);
            }
            got.push(v);
        }
        got
    }

    /// Resumes on a fresh connection; returns the frames up to and
    /// including `resumed`, and the `resumed` frame.
    async fn resume(&mut self, s: &Server, room: &str) -> (Vec<Value>, Value) {
        let (_old, replayed, resumed) = self.take_over(s, room).await;
        (replayed, resumed)
    }

    /// Like [`Tracked::resume`], and hands back the old connection, still
    /// open and unread: a phone's socket on the network it left.
    async fn take_over(&mut self, s: &Server, room: &str) -> (Client, Vec<Value>, Value) {
        let mut c = s.client().await;
        c.send(json!({"action":"newClient","room":room,"resumeToken":self.token,"epoch":self.epoch,"lastSeq":self.last_seq}))
            .await;
        let mut replayed = Vec::new();
        loop {
            let v = c.next_within(WAIT).await.expect("resumed arrives");
            if v["action"] == "resumed" {
                self.token = v["data"]["resumeToken"].as_str().unwrap().to_owned();
                self.epoch = v["epoch"].as_u64().unwrap();
                self.last_seq = v["seq"].as_u64().unwrap();
                let old = std::mem::replace(&mut self.c, c);
                return (old, replayed, v);
            }
            replayed.push(v);
        }
    }
}

fn chat_lines(frames: &[Value]) -> Vec<Value> {
    frames
        .iter()
        .filter(|v| v["action"] == "talkToRoom" && v.get("from").is_some())
        .map(|v| v["data"].clone())
        .collect()
}

#[tokio::test]
async fn a_dropped_client_resumes_with_exactly_what_it_missed() {
    let s = Server::start(&[]);
    let mut other = s.client().await;
    other.join("r").await;
    other
        .send(json!({"action":"stateUpdate","data":board(2)}))
        .await;
    let mut t = Tracked::join(&s, "r").await;
    let me = t.c.hello["data"].clone();
    t.drain().await;
    // Drop without a close frame.
    let Tracked { c, .. } = &mut t;
    let dead = std::mem::replace(c, s.client().await);
    drop(dead);
    let my_id = me["id"].as_u64().unwrap();
    other.presence_until(|p| p.is_away(my_id)).await;
    for i in 0..5 {
        other.send(json!({"action":"talkToRoom","data":i})).await;
    }
    other
        .send(json!({"action":"moveEnd","elementID":"w0","finalX":77,"finalY":88}))
        .await;
    other.send(json!({"action":"echo","data":"sync"})).await;
    other.expect("echo").await;
    let (replayed, resumed) = t.resume(&s, "r").await;
    assert_eq!(resumed["data"]["recovered"], true);
    assert_eq!(resumed["data"]["id"], me["id"]);
    assert_eq!(resumed["data"]["name"], me["name"]);
    assert_eq!(
        chat_lines(&replayed),
        (0..5).map(|i| json!(i)).collect::<Vec<_>>()
    );
    assert!(replayed
        .iter()
        .any(|v| v["action"] == "moveEnd" && v["finalX"] == 77.0));
    let seqs: Vec<u64> = replayed.iter().filter_map(|v| v["seq"].as_u64()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "in order, no duplicates: {seqs:?}"
    );
    // The others see it back (and never saw a goodbye).
    while !other.presence.is_here(my_id) {
        let v = other.next_within(WAIT).await.expect("shown back");
        assert!(!v["data"].to_string().contains("Goodbye"), "{v}");
    }
    // And it works as before.
    t.c.send(json!({"action":"talkToRoom","data":"back"})).await;
    loop {
        let v = other.expect("talkToRoom").await;
        if v["data"] == "back" {
            assert_eq!(v["from"]["id"], me["id"]);
            break;
        }
    }
}

#[tokio::test]
async fn a_volatile_custom_action_is_relayed_unnumbered_and_never_replayed() {
    let s = Server::start(&[]);
    let mut other = s.client().await;
    other.join("r").await;
    let mut t = Tracked::join(&s, "r").await;
    t.drain().await;
    other
        .send(json!({"action":"typing","volatile":true,"data":"live"}))
        .await;
    let live = t.c.expect("typing").await;
    assert_eq!(live["data"], "live");
    assert_eq!(
        live.get("seq"),
        None,
        "volatile frames carry no seq: {live}"
    );
    // Dropped: a volatile action sent meanwhile is gone, a kept one is not.
    let Tracked { c, .. } = &mut t;
    let my_id = c.id();
    drop(std::mem::replace(c, s.client().await));
    other.presence_until(|p| p.is_away(my_id)).await;
    other
        .send(json!({"action":"typing","volatile":true,"data":"missed"}))
        .await;
    other.send(json!({"action":"typing","data":"kept"})).await;
    other.send(json!({"action":"echo","data":"sync"})).await;
    other.expect("echo").await;
    let (replayed, resumed) = t.resume(&s, "r").await;
    assert_eq!(resumed["data"]["recovered"], true);
    let typing: Vec<&Value> = replayed
        .iter()
        .filter(|v| v["action"] == "typing")
        .map(|v| &v["data"])
        .collect();
    assert_eq!(typing, vec![&json!("kept")]);
}

#[tokio::test]
async fn repeated_drops_and_resumes_of_one_session() {
    let s = Server::start(&[]);
    let mut other = s.joined("again").await;
    let mut t = Tracked::join(&s, "again").await;
    let id = t.c.id();
    for round in 0..4 {
        t.drain().await;
        let dead = std::mem::replace(&mut t.c, s.client().await);
        drop(dead);
        other
            .send(json!({"action":"talkToRoom","data":round}))
            .await;
        other.send(json!({"action":"echo","data":0})).await;
        other.expect("echo").await;
        let (replayed, resumed) = t.resume(&s, "again").await;
        assert_eq!(resumed["data"]["recovered"], true, "round {round}");
        assert_eq!(resumed["data"]["id"], id);
        assert_eq!(chat_lines(&replayed), vec![json!(round)]);
    }
}

#[tokio::test]
async fn a_graceful_restart_is_resumed_without_loss() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start_in(tmp.path(), &[], None);
    let port = s.port();
    let mut other = Tracked::join(&s, "deploy").await;
    other
        .c
        .send(json!({"action":"stateUpdate","data":board(2)}))
        .await;
    let mut t = Tracked::join(&s, "deploy").await;
    let id = t.c.id();
    other
        .c
        .send(json!({"action":"talkToRoom","data":"before"}))
        .await;
    t.drain().await;
    other.drain().await;
    let (status, _) = s.stop();
    assert!(status.success());
    let s = Server::start_in(tmp.path(), &[], Some(port));
    let (_, resumed) = other.resume(&s, "deploy").await;
    assert_eq!(resumed["data"]["recovered"], true);
    other
        .c
        .send(json!({"action":"talkToRoom","data":"after restart"}))
        .await;
    other.c.send(json!({"action":"echo","data":0})).await;
    other.c.expect("echo").await;
    let (replayed, resumed) = t.resume(&s, "deploy").await;
    assert_eq!(resumed["data"]["recovered"], true, "{resumed}");
    assert_eq!(resumed["data"]["id"], id);
    assert_eq!(chat_lines(&replayed), vec![json!("after restart")]);
}

#[tokio::test]
async fn after_kill_9_a_resume_is_never_passed_off_as_recovered() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start_in(tmp.path(), &["--save-interval", "50ms"], None);
    let port = s.port();
    let mut other = s.joined("crash").await;
    other
        .send(json!({"action":"stateUpdate","data":board(2)}))
        .await;
    let mut t = Tracked::join(&s, "crash").await;
    other
        .send(json!({"action":"talkToRoom","data":"lost?"}))
        .await;
    t.drain().await;
    drop(s.kill9());
    let s = Server::start_in(tmp.path(), &[], Some(port));
    let (_, resumed) = t.resume(&s, "crash").await;
    assert_eq!(resumed["data"]["recovered"], false);
    let h = t.c.expect("hydrate").await;
    assert_eq!(words(&h["data"]).len(), 2);
}

#[tokio::test]
async fn after_kill_9_a_resume_keeps_its_identity_once() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start_in(tmp.path(), &["--save-interval", "50ms"], None);
    let mut other = s.joined("k").await;
    other
        .send(json!({"action":"stateUpdate","data":board(2)}))
        .await;
    let mut t = Tracked::join(&s, "k").await;
    let me = t.c.hello["data"].clone();
    let crashed_token = t.token.clone();
    t.drain().await;
    // Let the board reach the disk (one save interval), then crash.
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(s.kill9());

    let s = Server::start_in(tmp.path(), &[], None);
    let (_, resumed) = t.resume(&s, "k").await;
    assert_eq!(resumed["data"]["recovered"], false, "the history is gone");
    for field in ["id", "name", "color"] {
        assert_eq!(resumed["data"][field], me[field], "{field}: {resumed}");
    }
    let h = t.c.expect("hydrate").await;
    assert_eq!(words(&h["data"]).len(), 2);

    // The others see it under its name.
    let mut witness = s.joined("k").await;
    t.c.send(json!({"action":"talkToRoom","data":"still me"}))
        .await;
    loop {
        let v = witness.expect("talkToRoom").await;
        if v["data"] == "still me" {
            assert_eq!(v["from"]["id"], me["id"]);
            assert_eq!(v["from"]["name"], me["name"]);
            break;
        }
    }
    // The crashed run's token is used up: ids stay unique.
    let mut copy = Tracked {
        token: crashed_token,
        ..Tracked::join(&s, "elsewhere").await
    };
    let (_, resumed) = copy.resume(&s, "k").await;
    assert_eq!(resumed["data"]["recovered"], false);
    assert_ne!(resumed["data"]["id"], me["id"]);
    // The token it got back resumes as usual in this run.
    t.drain().await;
    drop(std::mem::replace(&mut t.c, s.client().await));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, resumed) = t.resume(&s, "k").await;
    assert_eq!(resumed["data"]["recovered"], true, "{resumed}");
    assert_eq!(resumed["data"]["id"], me["id"]);
}

#[tokio::test]
async fn when_the_window_ends_the_room_says_goodbye_and_the_token_is_dead() {
    let s = Server::start(&["--resume-window", "300ms"]);
    let mut other = s.joined("gone").await;
    let mut t = Tracked::join(&s, "gone").await;
    let (id, name) = (t.c.id(), t.c.name());
    t.drain().await;
    let dead = std::mem::replace(&mut t.c, s.client().await);
    drop(dead);
    loop {
        let v = other.expect("talkToRoom").await;
        if v["data"] == format!("Goodbye, client {name}!") {
            break;
        }
    }
    let (_, resumed) = t.resume(&s, "gone").await;
    assert_eq!(resumed["data"]["recovered"], false);
    assert_ne!(resumed["data"]["id"], id, "a fresh identity");
}

#[tokio::test]
async fn forged_and_foreign_tokens_resume_nothing() {
    let s = Server::start(&[]);
    let _other = s.joined("home").await;
    let mut t = Tracked::join(&s, "home").await;
    let id = t.c.id();
    t.drain().await;
    let dead = std::mem::replace(&mut t.c, s.client().await);
    drop(dead);
    // Forged: the same bytes with one character changed.
    let real = t.token.clone();
    let mut forged = real.clone().into_bytes();
    forged[5] = if forged[5] == b'A' { b'B' } else { b'A' };
    t.token = String::from_utf8(forged).unwrap();
    let (_, resumed) = t.resume(&s, "home").await;
    assert_eq!(resumed["data"]["recovered"], false);
    assert_ne!(resumed["data"]["id"], id);
    // A real token for another room.
    let mut elsewhere = Tracked {
        token: real.clone(),
        ..Tracked::join(&s, "x").await
    };
    let (_, resumed) = elsewhere.resume(&s, "away-room").await;
    assert_eq!(resumed["data"]["recovered"], false);
    assert_ne!(resumed["data"]["id"], id);
    // The real token still works in its own room.
    t.token = real;
    let (_, resumed) = t.resume(&s, "home").await;
    assert_eq!(resumed["data"]["recovered"], true);
    assert_eq!(resumed["data"]["id"], id);
}

/// Everything `other` receives for a while.
async fn frames_for_a_while(other: &mut Client) -> Vec<Value> {
    let mut frames = Vec::new();
    while let Some(v) = other.next_within(Duration::from_millis(300)).await {
        frames.push(v);
    }
    frames
}

#[tokio::test]
async fn a_new_connection_with_the_token_takes_over_a_session_still_connected() {
    let s = Server::start(&[]);
    let mut other = s.joined("phone").await;
    other
        .send(json!({"action":"stateUpdate","data":board(2)}))
        .await;
    let mut t = Tracked::join(&s, "phone").await;
    let me = t.c.hello["data"].clone();
    t.c.send(json!({"action":"freeze","elementID":"w0"})).await;
    other.expect("freeze").await;
    t.drain().await;
    // The phone moves to another network; its old socket stays open.
    for i in 0..3 {
        other.send(json!({"action":"talkToRoom","data":i})).await;
    }
    other.send(json!({"action":"echo","data":"sync"})).await;
    other.expect("echo").await;

    let (mut old, replayed, resumed) = t.take_over(&s, "phone").await;
    assert_eq!(resumed["data"]["recovered"], true);
    assert_eq!(resumed["data"]["id"], me["id"]);
    assert_eq!(resumed["data"]["name"], me["name"]);
    assert_eq!(chat_lines(&replayed), [json!(0), json!(1), json!(2)]);
    assert_eq!(old.close_code().await, Some(4000), "closed as replaced");

    // One seat, one presence entry, never away, and no goodbye; the old
    // connection's lock ended with it.
    let seen = frames_for_a_while(&mut other).await;
    assert!(
        seen.iter()
            .any(|v| v["action"] == "unfreeze" && v["elementID"] == "w0"),
        "{seen:?}"
    );
    // `other`'s view of the members: its whole list plus every change.
    let presence = &other.presence.members;
    let me_id = me["id"].as_u64().unwrap();
    let mine: Vec<_> = presence.iter().filter(|(id, _)| *id == me_id).collect();
    assert_eq!(mine, [&(me_id, false)], "one entry, not away: {presence:?}");
    assert_eq!(presence.len(), 2, "{presence:?}");
    t.c.send(json!({"action":"talkToRoom","data":"from the new network"}))
        .await;
    assert!(!seen.iter().any(|v| v.to_string().contains("Goodbye")));
    loop {
        let v = other.expect("talkToRoom").await;
        if v["data"] == "from the new network" {
            assert_eq!(v["from"]["id"], me["id"]);
            break;
        }
    }
}

#[tokio::test]
async fn taking_over_a_session_in_a_full_room_is_never_room_full() {
    let s = Server::start(&["--max-room-size", "1"]);
    let mut t = Tracked::join(&s, "solo").await;
    let id = t.c.id();
    t.drain().await;
    let (mut old, _, resumed) = t.take_over(&s, "solo").await;
    assert_eq!(resumed["data"]["recovered"], true);
    assert_eq!(resumed["data"]["id"], id);
    assert_eq!(old.close_code().await, Some(4000));
    // Still one seat, and it is taken.
    let mut stranger = s.client().await;
    assert_eq!(stranger.join("solo").await["action"], "roomFull");
}

#[tokio::test]
async fn the_newest_connection_with_the_token_wins() {
    let s = Server::start(&[]);
    let mut other = s.joined("tabs").await;
    let mut t = Tracked::join(&s, "tabs").await;
    let id = t.c.id();
    t.drain().await;
    let token = t.token.clone();
    let (epoch, last_seq) = (t.epoch, t.last_seq);
    let (mut first, _, resumed) = t.take_over(&s, "tabs").await;
    assert_eq!(resumed["data"]["id"], id);
    assert_eq!(first.close_code().await, Some(4000));

    // The same token again, from yet another connection: it takes the
    // session from the one that just took it.
    other
        .send(json!({"action":"talkToRoom","data":"missed"}))
        .await;
    other.send(json!({"action":"echo","data":"sync"})).await;
    other.expect("echo").await;
    t.token = token;
    (t.epoch, t.last_seq) = (epoch, last_seq);
    let (mut second, replayed, resumed) = t.take_over(&s, "tabs").await;
    assert_eq!(resumed["data"]["recovered"], true);
    assert_eq!(resumed["data"]["id"], id);
    assert_eq!(chat_lines(&replayed), [json!("missed")]);
    assert_eq!(second.close_code().await, Some(4000));

    // Still one member of two, and the newest connection speaks for it.
    frames_for_a_while(&mut other).await;
    assert_eq!(other.presence.members.len(), 2, "{:?}", other.presence);
    assert!(
        other.presence.members.contains(&(id, false)),
        "{:?}",
        other.presence
    );
    t.c.send(json!({"action":"talkToRoom","data":"newest"}))
        .await;
    assert_eq!(other.expect("talkToRoom").await["data"], "newest");
}

#[tokio::test]
async fn a_forged_token_takes_no_live_session() {
    let s = Server::start(&[]);
    let mut t = Tracked::join(&s, "live").await;
    let id = t.c.id();
    t.drain().await;
    let mut forged = t.token.clone().into_bytes();
    forged[5] = if forged[5] == b'A' { b'B' } else { b'A' };
    let mut thief = Tracked {
        token: String::from_utf8(forged).unwrap(),
        epoch: t.epoch,
        last_seq: t.last_seq,
        c: s.client().await,
    };
    let (_, resumed) = thief.resume(&s, "live").await;
    assert_eq!(resumed["data"]["recovered"], false);
    assert_ne!(resumed["data"]["id"], id, "a fresh identity");
    // The owner was not disturbed.
    t.c.send(json!({"action":"echo","data":"mine"})).await;
    assert_eq!(t.c.expect("echo").await["data"], "mine");
}

#[tokio::test]
async fn a_close_saying_it_will_resume_keeps_the_seat_like_a_drop() {
    use tokio_tungstenite::tungstenite::protocol::{frame::coding::CloseCode, CloseFrame};
    let s = Server::start(&[]);
    let mut other = s.client().await;
    other.join("r").await;
    let mut t = Tracked::join(&s, "r").await;
    t.drain().await;
    let my_id = t.c.id();
    let reloading = std::mem::replace(&mut t.c, s.client().await);
    let mut ws = reloading.ws;
    let frame = CloseFrame {
        code: CloseCode::from(protocol::close_code::RESUMING),
        reason: "reload".into(),
    };
    ws.close(Some(frame)).await.unwrap();
    other.presence_until(|p| p.is_away(my_id)).await;
    other
        .send(json!({"action":"talkToRoom","data":"while reloading"}))
        .await;
    other.send(json!({"action":"echo","data":"sync"})).await;
    other.expect("echo").await;
    let (replayed, resumed) = t.resume(&s, "r").await;
    assert_eq!(resumed["data"]["recovered"], true);
    assert_eq!(resumed["data"]["id"], my_id);
    assert_eq!(chat_lines(&replayed), vec![json!("while reloading")]);
}

#[tokio::test]
async fn a_clean_close_is_a_leave() {
    let s = Server::start(&[]);
    let mut other = s.joined("polite").await;
    let t = Tracked::join(&s, "polite").await;
    let name = t.c.name();
    t.c.close().await;
    loop {
        let v = other.expect("talkToRoom").await;
        if v["data"] == format!("Goodbye, client {name}!") {
            break;
        }
    }
}

#[tokio::test]
async fn a_recovered_resume_is_told_which_words_are_held_now() {
    let s = Server::start(&[]);
    let mut holder = s.client().await;
    holder.join("r").await;
    holder
        .send(json!({"action":"stateUpdate","data":board(3)}))
        .await;
    let mut t = Tracked::join(&s, "r").await;
    t.drain().await;
    // Held before the drop (so before `lastSeq`) and after it.
    holder
        .send(json!({"action":"freeze","elementID":"w0"}))
        .await;
    t.drain().await;
    let Tracked { c, .. } = &mut t;
    drop(std::mem::replace(c, s.client().await));
    holder
        .send(json!({"action":"freeze","elementID":"w2"}))
        .await;
    holder.send(json!({"action":"echo","data":"sync"})).await;
    holder.expect("echo").await;

    let (_, resumed) = t.resume(&s, "r").await;
    assert_eq!(resumed["data"]["recovered"], true);
    let mut held = Vec::new();
    while let Some(v) = t.c.next_within(Duration::from_millis(300)).await {
        if v["action"] == "freeze" {
            assert_eq!(v["clientName"], holder.hello["data"]["name"]);
            held.push(v["elementID"].as_str().unwrap().to_owned());
        }
    }
    held.sort();
    assert_eq!(held, ["w0", "w2"], "every word held now, once each");
}

/// A chat line of 65,000 bytes (under the 64 KiB frame cap), marked `i`.
fn big_line(i: usize) -> String {
    let mark = format!("{i}:");
    mark.clone() + &"x".repeat(65_000 - mark.len())
}

/// Waits until `watcher` sees `id` shown as away.
async fn until_away(watcher: &mut Client, id: u64) {
    watcher.presence_until(|p| p.is_away(id)).await;
}

/// Returns once the room has handled everything `c` sent before: the
/// room itself answers a freeze of a word that is not there (an echo is
/// answered by the connection, maybe before the room caught up).
async fn room_caught_up(c: &mut Client) {
    c.send(json!({"action":"freeze","elementID":"no-such-word"}))
        .await;
    c.expect("error").await;
}

/// The `attractio_history_bytes` gauge.
async fn history_bytes(s: &Server) -> u64 {
    let page = s.get("/metrics").await;
    let line = page
        .lines()
        .find_map(|l| l.strip_prefix("attractio_history_bytes "))
        .expect("the gauge is exported");
    line.trim().parse().unwrap()
}

/// Big lines into a room of `--history-bytes 230000`: each frame is a
/// little over 65,000 bytes, so the newest three (and the small frames
/// after them) are kept, the fourth newest is not.
const ROOM_BYTES: &str = "230000";

/// `early` dropped before any line, `late` after line 7 of 10.
async fn ten_big_lines_with_two_dropped(s: &Server, room: &str) -> (Client, Tracked, Tracked) {
    let mut other = s.joined(room).await;
    other
        .send(json!({"action":"stateUpdate","data":board(2)}))
        .await;
    let mut early = Tracked::join(s, room).await;
    let mut late = Tracked::join(s, room).await;
    early.drain().await;
    late.drain().await;
    let id = early.c.id();
    drop(std::mem::replace(&mut early.c, s.client().await));
    until_away(&mut other, id).await;
    for i in 1..=7 {
        other
            .send(json!({"action":"talkToRoom","data":big_line(i)}))
            .await;
    }
    let seen = late.drain().await;
    assert_eq!(chat_lines(&seen).len(), 7);
    let id = late.c.id();
    drop(std::mem::replace(&mut late.c, s.client().await));
    until_away(&mut other, id).await;
    for i in 8..=10 {
        other
            .send(json!({"action":"talkToRoom","data":big_line(i)}))
            .await;
    }
    room_caught_up(&mut other).await;
    (other, early, late)
}

#[tokio::test]
async fn history_is_bounded_in_bytes_and_a_resume_past_it_is_not_recovered() {
    let s = Server::start(&["--history-bytes", ROOM_BYTES]);
    let (_other, mut early, mut late) = ten_big_lines_with_two_dropped(&s, "big").await;
    assert!(history_bytes(&s).await <= 230_000);

    let (replayed, resumed) = early.resume(&s, "big").await;
    assert_eq!(resumed["data"]["recovered"], false, "lines 1 to 7 are gone");
    assert!(chat_lines(&replayed).is_empty(), "no partial replay");
    let h = early.c.expect("hydrate").await;
    assert_eq!(words(&h["data"]).len(), 2, "a fresh board instead");

    let (replayed, resumed) = late.resume(&s, "big").await;
    assert_eq!(resumed["data"]["recovered"], true);
    assert_eq!(
        chat_lines(&replayed),
        (8..=10).map(|i| json!(big_line(i))).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn the_saved_history_is_bounded_by_the_same_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start_in(tmp.path(), &["--history-bytes", ROOM_BYTES], None);
    let port = s.port();
    let (_other, mut early, mut late) = ten_big_lines_with_two_dropped(&s, "kept").await;
    let (status, _) = s.stop();
    assert!(status.success());
    // A larger bound now: lines 1 to 7 would come back had they been saved.
    let s = Server::start_in(tmp.path(), &["--history-bytes", "100000000"], Some(port));
    let (replayed, resumed) = early.resume(&s, "kept").await;
    assert_eq!(resumed["data"]["recovered"], false, "{resumed}");
    assert!(chat_lines(&replayed).is_empty());
    let (replayed, resumed) = late.resume(&s, "kept").await;
    assert_eq!(resumed["data"]["recovered"], true, "{resumed}");
    assert_eq!(
        chat_lines(&replayed),
        (8..=10).map(|i| json!(big_line(i))).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_flood_of_big_lines_holds_at_most_the_default_bytes_per_room() {
    // The issue's flood: one client per room, 512 lines of 65,000 bytes
    // (the rate limit raised only to make the test quick).
    let s = Server::start(&["--rate-limit", "100000", "--rate-burst", "100000"]);
    let mut flooder = s.joined("flood").await;
    for i in 0..512 {
        flooder
            .send(json!({"action":"talkToRoom","data":big_line(i)}))
            .await;
    }
    room_caught_up(&mut flooder).await;
    let held = history_bytes(&s).await;
    assert!(held <= 1024 * 1024, "{held} bytes held");
    assert!(
        held >= 15 * 65_000,
        "the newest lines that fit are kept: {held}"
    );
}

#[tokio::test]
async fn all_rooms_together_stay_within_the_total_budget() {
    let s = Server::start(&[
        "--history-bytes",
        "1000000",
        "--history-total-bytes",
        "1500000",
    ]);
    for room in ["one", "two", "three"] {
        let mut flooder = s.joined(room).await;
        for i in 0..20 {
            flooder
                .send(json!({"action":"talkToRoom","data":big_line(i)}))
                .await;
        }
        room_caught_up(&mut flooder).await;
        let held = history_bytes(&s).await;
        assert!(held <= 1_500_000, "{held} bytes held after room {room}");
    }
}

/// Sends chat lines `ops` numbered with their own `opId`.
async fn numbered_lines(c: &mut Client, ops: std::ops::RangeInclusive<u64>) {
    for op in ops {
        c.send(json!({"action":"talkToRoom","data":format!("op-{op}"),"opId":op}))
            .await;
    }
}

async fn duplicates_dropped(s: &Server) -> u64 {
    let text = s.get("/metrics").await;
    text.lines()
        .find_map(|l| l.strip_prefix("attractio_duplicate_ops_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no duplicate_ops_total in {text}"))
}

#[tokio::test]
async fn operations_sent_again_after_a_resume_count_once() {
    let s = Server::start(&[]);
    let mut watcher = s.joined("retry").await;
    let mut me = Tracked::join(&s, "retry").await;
    numbered_lines(&mut me.c, 1..=5).await;
    me.drain().await;
    // The socket dies; the client cannot know which of its lines arrived.
    let (_, resumed) = me.resume(&s, "retry").await;
    assert_eq!(resumed["data"]["recovered"], true, "{resumed}");
    assert_eq!(resumed["data"]["lastOp"], 5, "{resumed}");
    // It sends again what it was unsure of, and goes on.
    numbered_lines(&mut me.c, 3..=7).await;
    // A retry within one session counts once too; unnumbered lines (the
    // original protocol's) always count.
    numbered_lines(&mut me.c, 6..=6).await;
    me.c.send(json!({"action":"talkToRoom","data":"plain"}))
        .await;
    me.c.send(json!({"action":"talkToRoom","data":"plain"}))
        .await;
    // The room answers in order: a freeze of no word marks the end.
    me.c.send(json!({"action":"freeze","elementID":"no-such-word"}))
        .await;
    // Each one sent again is answered: applied already, nothing done.
    let mut answers = Vec::new();
    loop {
        let v = me.c.next_within(WAIT).await.expect("the room answers");
        if v["data"]["code"] == "unknown_word" {
            break;
        }
        answers.push(v);
    }
    let dropped: Vec<&str> = answers
        .iter()
        .filter(|v| v["data"]["code"] == "duplicate_op")
        .map(|v| v["data"]["message"].as_str().unwrap())
        .collect();
    assert_eq!(dropped.len(), 4, "{answers:?}");
    for (message, op) in dropped.iter().zip([3, 4, 5, 6]) {
        assert!(message.starts_with(&format!("opId {op} ")), "{message}");
    }
    let lines = chat_lines(&watcher.drain(Duration::from_millis(500)).await);
    let expected: Vec<Value> = (1..=7)
        .map(|op| json!(format!("op-{op}")))
        .chain([json!("plain"), json!("plain")])
        .collect();
    assert_eq!(lines, expected);
    assert_eq!(duplicates_dropped(&s).await, 4);
}

#[tokio::test]
async fn the_last_op_is_kept_across_a_graceful_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Server::start_in(tmp.path(), &[], None);
    let port = s.port();
    let mut other = Tracked::join(&s, "ops").await;
    let mut me = Tracked::join(&s, "ops").await;
    numbered_lines(&mut me.c, 1..=3).await;
    me.drain().await;
    other.drain().await;
    let (status, _) = s.stop();
    assert!(status.success());
    let s = Server::start_in(tmp.path(), &[], Some(port));
    let (_, resumed) = other.resume(&s, "ops").await;
    assert_eq!(resumed["data"]["recovered"], true);
    let (_, resumed) = me.resume(&s, "ops").await;
    assert_eq!(resumed["data"]["lastOp"], 3, "{resumed}");
    numbered_lines(&mut me.c, 2..=4).await;
    let lines = chat_lines(&other.c.drain(Duration::from_millis(500)).await);
    assert_eq!(lines, vec![json!("op-4")]);
}
