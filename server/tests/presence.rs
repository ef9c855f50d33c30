//! Presence as changes: a member gets the room's whole list once (on join
//! or resume) and then only what changed, a resumer is never replayed
//! lists it missed, and every member's view stays exactly the room's.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// Long enough for a room's turn to have been written out.
const QUIET: Duration = Duration::from_millis(300);

/// A member that remembers what it needs to resume.
struct Session {
    c: Client,
    /// The member's id (`c` may be a newer connection with another one).
    id: u64,
    token: String,
    epoch: u64,
    last_seq: u64,
}

impl Session {
    async fn join(s: &Server, room: &str) -> Session {
        let mut c = s.client().await;
        let answer = c.join(room).await;
        Session {
            id: c.id(),
            token: c.hello["data"]["resumeToken"].as_str().unwrap().to_owned(),
            epoch: answer["epoch"].as_u64().unwrap(),
            last_seq: answer["seq"].as_u64().unwrap(),
            c,
        }
    }

    fn id(&self) -> u64 {
        self.id
    }

    /// Reads until quiet, keeping the numbering up to date.
    async fn drain(&mut self) -> Vec<Value> {
        let got = self.c.drain(QUIET).await;
        self.note(&got);
        got
    }

    fn note(&mut self, frames: &[Value]) {
        for v in frames {
            if let Some(seq) = v["seq"].as_u64() {
                self.last_seq = self.last_seq.max(seq);
            }
            if v["action"] == "resumed" {
                self.token = v["data"]["resumeToken"].as_str().unwrap().to_owned();
            }
        }
    }

    /// The socket drops without a close frame: the member is away.
    fn drop_connection(&mut self, s: &Server) -> impl std::future::Future<Output = ()> + '_ {
        let url = s.url("/ws");
        async move {
            let dead = std::mem::replace(&mut self.c, Client::connect(&url).await);
            drop(dead);
        }
    }

    /// Resumes on the current (fresh) connection; returns every frame read
    /// until the room is quiet.
    async fn resume(&mut self, room: &str) -> Vec<Value> {
        self.c
            .send(
                json!({"action":"newClient","room":room,"resumeToken":self.token,
                "epoch":self.epoch,"lastSeq":self.last_seq}),
            )
            .await;
        let got = self.c.drain(QUIET).await;
        self.note(&got);
        got
    }
}

/// The first member of `room`, which gives it a board (so that joiners are
/// sent it, not asked around for one).
async fn first_of(s: &Server, room: &str) -> Session {
    let mut first = Session::join(s, room).await;
    first
        .c
        .send(json!({"action":"stateUpdate","data":board(2)}))
        .await;
    first.drain().await;
    first
}

fn actions(frames: &[Value]) -> Vec<&str> {
    frames
        .iter()
        .map(|v| v["action"].as_str().unwrap_or(""))
        .collect()
}

fn count(frames: &[Value], action: &str) -> usize {
    frames.iter().filter(|v| v["action"] == action).count()
}

#[tokio::test]
async fn a_joiner_gets_the_whole_list_once_and_the_others_only_the_join() {
    let s = Server::start(&[]);
    let mut a = first_of(&s, "p").await.c;
    let mut b = s.joined("p").await;
    b.drain(QUIET).await;
    assert_eq!(b.presence.lists, 1);
    assert_eq!(b.presence.ids(), [a.id(), b.id()]);

    let to_a = a.drain(QUIET).await;
    assert_eq!(count(&to_a, "presence"), 0, "no whole list to a: {to_a:?}");
    let diff = to_a.iter().find(|v| v["action"] == "presenceDiff").unwrap();
    assert_eq!(diff["data"]["joins"][0]["id"], b.id());
    assert_eq!(diff["data"]["joins"][0]["name"], b.name());
    assert!(
        diff.get("seq").is_none(),
        "presence is not numbered: {diff}"
    );
    assert_eq!(a.presence.ids(), [a.id(), b.id()]);

    let c = s.joined("p").await;
    let all = [a.id(), b.id(), c.id()];
    for m in [&mut a, &mut b] {
        let got = m.drain(QUIET).await;
        assert_eq!(actions(&got), ["talkToRoom", "presenceDiff"], "{got:?}");
        assert_eq!(m.presence.ids(), all);
    }
}

#[tokio::test]
async fn an_away_and_a_return_reach_the_others_as_one_small_diff_each() {
    let s = Server::start(&[]);
    let mut watcher = first_of(&s, "big").await.c;
    let mut others = Vec::new();
    for _ in 0..20 {
        others.push(Session::join(&s, "big").await);
    }
    watcher.drain(QUIET).await;
    let mut gone = others.pop().unwrap();
    gone.drain().await;
    let id = gone.id();

    gone.drop_connection(&s).await;
    let got = watcher.drain(QUIET).await;
    assert_eq!(actions(&got), ["presenceDiff"], "{got:?}");
    let away = got[0].to_string();
    assert!(away.len() < 80, "{} bytes: {away}", away.len());
    assert_eq!(got[0]["data"], json!({"away": [id]}));
    assert!(watcher.presence.is_away(id));

    gone.resume("big").await;
    assert_eq!(gone.c.presence.lists, 1);
    let got = watcher.drain(QUIET).await;
    assert_eq!(actions(&got), ["presenceDiff"], "{got:?}");
    assert_eq!(got[0]["data"], json!({"back": [id]}));
    assert!(watcher.presence.is_here(id));
    assert_eq!(watcher.presence.members, gone.c.presence.members);
}

#[tokio::test]
async fn a_resumer_gets_the_current_list_once_and_no_stale_presence() {
    let s = Server::start(&[]);
    let mut a = first_of(&s, "r").await;
    let mut b = s.joined("r").await;
    let mut x = Session::join(&s, "r").await;
    x.drain().await;
    x.drop_connection(&s).await;

    // While x is away the list changes five times, and a chats.
    let mut c = Session::join(&s, "r").await;
    b.drain(QUIET).await;
    b.close().await;
    let d = s.joined("r").await;
    c.drain().await;
    c.drop_connection(&s).await;
    a.c.send(json!({"action":"talkToRoom","data":"while you were away"}))
        .await;
    a.drain().await;

    let got = x.resume("r").await;
    let resumed = got.iter().find(|v| v["action"] == "resumed").unwrap();
    assert_eq!(resumed["data"]["recovered"], true);
    assert!(got
        .iter()
        .any(|v| v["data"] == "while you were away" && v["seq"].is_u64()));
    assert_eq!(count(&got, "presenceDiff"), 0, "{:?}", actions(&got));
    assert_eq!(count(&got, "presence"), 1, "{:?}", actions(&got));
    let list = got.iter().position(|v| v["action"] == "presence").unwrap();
    assert!(
        got[list..]
            .iter()
            .all(|v| v.get("seq").is_none() || v["action"] == "resumed" || v["action"] == "freeze"),
        "the list comes after the replay: {:?}",
        actions(&got)
    );
    assert_eq!(
        x.c.presence.members,
        [
            (a.id(), false),
            (x.id(), false),
            (c.id(), true),
            (d.id(), false)
        ]
    );
    a.drain().await;
    assert_eq!(
        a.c.presence.members, x.c.presence.members,
        "as if it had been there"
    );
}

/// Members of `room` present right now, as `/api/rooms` counts them.
async fn present(s: &Server, room: &str) -> u64 {
    let answer = s.get("/api/rooms").await;
    let body = answer.split("\r\n\r\n").nth(1).unwrap();
    let rooms: Value = serde_json::from_str(body).unwrap();
    rooms["active"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["room"] == room)
        .map_or(0, |r| r["members"].as_u64().unwrap())
}

#[tokio::test]
async fn after_a_churn_every_member_holds_exactly_the_rooms_list() {
    let s = Server::start(&["--list-rooms"]);
    let mut members = vec![first_of(&s, "churn").await];
    for _ in 1..10 {
        members.push(Session::join(&s, "churn").await);
    }
    for m in &mut members {
        m.drain().await;
    }
    // Leaves, drops, resumes, joins and chat, without waiting in between:
    // the room batches them into turns as it pleases.
    let mut away = Vec::new();
    for round in 0..3 {
        let leaving = members.remove(round);
        leaving.c.close().await;
        let mut dropped = members.remove(round + 1);
        dropped.drop_connection(&s).await;
        away.push(dropped);
        members.push(Session::join(&s, "churn").await);
        let last = members.len() - 1;
        members[last]
            .c
            .send(json!({"action":"talkToRoom","data":round}))
            .await;
        if round > 0 {
            let mut back = away.remove(0);
            back.c
                .send(
                    json!({"action":"newClient","room":"churn","resumeToken":back.token,
                    "epoch":back.epoch,"lastSeq":back.last_seq}),
                )
                .await;
            members.push(back);
        }
    }
    // The reorder after the chat is told within a second.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for m in &mut members {
        m.drain().await;
        assert_eq!(m.c.presence.lists, 1, "one list per connection");
    }
    let mut fresh = Session::join(&s, "churn").await;
    fresh.drain().await;
    let truth = fresh.c.presence.clone();
    assert_eq!(truth.members.len(), 10 + 3 - 3 + 1, "{truth:?}");
    assert_eq!(truth.members.iter().filter(|(_, away)| !away).count(), 10);
    assert_eq!(present(&s, "churn").await, 10);
    for m in &mut members {
        m.drain().await;
        assert_eq!(m.c.presence.lists, 1, "one list per connection");
        assert_eq!(m.c.presence.members, truth.members, "member {}", m.id());
    }
}
