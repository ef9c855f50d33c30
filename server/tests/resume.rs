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
                self.c = c;
                return (replayed, v);
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
    loop {
        let p = other.expect("presence").await;
        if p["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == me["id"] && m["away"] == true)
        {
            break;
        }
    }
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
    loop {
        let v = other.expect_any(&["presence", "talkToRoom"]).await;
        assert!(!v["data"].to_string().contains("Goodbye"), "{v}");
        let back = v["data"].as_array().is_some_and(|members| {
            members
                .iter()
                .any(|m| m["id"] == me["id"] && m.get("away").is_none())
        });
        if v["action"] == "presence" && back {
            break;
        }
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

#[tokio::test]
async fn a_token_cannot_take_a_live_session_or_be_used_twice() {
    let s = Server::start(&[]);
    let _other = s.joined("live").await;
    let mut t = Tracked::join(&s, "live").await;
    let id = t.c.id();
    // While the original is connected, its token takes nothing.
    let mut thief = Tracked {
        token: t.token.clone(),
        ..Tracked::join(&s, "elsewhere").await
    };
    thief.epoch = t.epoch;
    let (_, resumed) = thief.resume(&s, "live").await;
    assert_eq!(resumed["data"]["recovered"], false);
    assert_ne!(resumed["data"]["id"], id);
    // After a drop, one resume takes it; the same token again takes nothing.
    let used = t.token.clone();
    let dead = std::mem::replace(&mut t.c, s.client().await);
    drop(dead);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, resumed) = t.resume(&s, "live").await;
    assert_eq!(resumed["data"]["id"], id);
    let mut replay = Tracked {
        token: used,
        ..Tracked::join(&s, "third").await
    };
    let (_, resumed) = replay.resume(&s, "live").await;
    assert_ne!(resumed["data"]["id"], id);
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
