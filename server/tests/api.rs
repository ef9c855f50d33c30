//! The server API for the app's backend (`/api/rooms/…`), against the real
//! binary: keys, publishing as the server, the room view, history, kicks
//! and closing a room.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const KEY: &str = "backend-key-1";

/// One HTTP/1.1 request on its own connection; the status and the JSON
/// body (`Null` when there is none).
async fn http(s: &Server, method: &str, path: &str, key: Option<&str>, body: &str) -> (u16, Value) {
    let mut tcp = TcpStream::connect(&s.addr).await.unwrap();
    let auth = key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n{auth}\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        s.addr,
        body.len()
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(WAIT * 3, tcp.read_to_end(&mut out))
        .await
        .expect("an answer")
        .unwrap();
    let out = String::from_utf8(out).unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

async fn api(s: &Server, method: &str, path: &str, body: Value) -> (u16, Value) {
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    http(s, method, path, Some(KEY), &body).await
}

fn start() -> Server {
    Server::start(&["--api-key", KEY, "--api-key", "backend-key-2"])
}

/// Waits for a frame with `action`, skipping others.
async fn frame(c: &mut Client, action: &str) -> Value {
    c.expect(action).await
}

#[tokio::test]
async fn without_an_api_key_configured_every_api_path_is_404() {
    let s = Server::start(&[]);
    let _c = s.joined("lobby").await;
    for (method, path) in [
        ("GET", "/api/rooms/lobby"),
        ("POST", "/api/rooms/lobby/publish"),
        ("GET", "/api/rooms/lobby/history"),
        ("POST", "/api/rooms/lobby/disconnect"),
        ("DELETE", "/api/rooms/lobby"),
        ("PUT", "/api/rooms/lobby"),
    ] {
        let (status, body) = http(&s, method, path, Some(KEY), "{}").await;
        assert_eq!(status, 404, "{method} {path}");
        assert_eq!(body["error"]["code"], "not_found", "{body}");
    }
}

#[tokio::test]
async fn a_missing_or_wrong_key_is_refused_and_every_configured_key_works() {
    let s = start();
    let _c = s.joined("lobby").await;
    let (status, body) = http(&s, "GET", "/api/rooms/lobby", None, "").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let (status, _) = http(&s, "GET", "/api/rooms/lobby", Some("backend-key-3"), "").await;
    assert_eq!(status, 401);
    let (status, _) = http(&s, "GET", "/api/rooms/lobby", Some(&KEY[..5]), "").await;
    assert_eq!(status, 401);
    for key in [KEY, "backend-key-2"] {
        let (status, body) = http(&s, "GET", "/api/rooms/lobby", Some(key), "").await;
        assert_eq!(status, 200, "{key}: {body}");
    }
}

#[tokio::test]
async fn a_published_message_reaches_every_member_with_one_seq_from_the_server() {
    let s = start();
    let mut a = s.joined("news").await;
    let mut b = s.joined("news").await;
    a.presence_until(|p| p.ids().len() == 2).await;
    let (status, published) = api(
        &s,
        "POST",
        "/api/rooms/news/publish",
        json!({"action":"announce","data":{"text":"deploy at noon"}}),
    )
    .await;
    assert_eq!(status, 200, "{published}");
    let seq = published["seq"].as_u64().unwrap();
    for c in [&mut a, &mut b] {
        let got = frame(c, "announce").await;
        assert_eq!(got["data"], json!({"text":"deploy at noon"}));
        assert_eq!(got["from"], "server");
        assert_eq!(got["seq"].as_u64(), Some(seq));
        assert_eq!(got["epoch"], published["epoch"]);
    }
    // Chat from the backend is the server's own line (no member's `from`).
    let (status, chat) = api(
        &s,
        "POST",
        "/api/rooms/news/publish",
        json!({"action":"talkToRoom","data":"hello from the app"}),
    )
    .await;
    assert_eq!(status, 200);
    let got = frame(&mut b, "talkToRoom").await;
    assert_eq!(got["from"], "server");
    assert_eq!(got["seq"].as_u64(), Some(seq + 1));
    assert_eq!(chat["seq"].as_u64(), Some(seq + 1));
}

#[tokio::test]
async fn a_member_cannot_pass_for_the_server() {
    let s = start();
    let mut a = s.joined("news").await;
    let mut b = s.joined("news").await;
    a.presence_until(|p| p.ids().len() == 2).await;
    b.send(json!({"action":"announce","data":"fake","from":"server"}))
        .await;
    let got = frame(&mut a, "announce").await;
    assert_eq!(got["from"]["id"].as_u64(), Some(b.id()), "{got}");
}

#[tokio::test]
async fn a_retry_with_the_same_idempotency_key_gets_the_same_seq_and_delivers_once() {
    let s = start();
    let mut a = s.joined("orders").await;
    let body = json!({"action":"orderShipped","data":{"order":7},"idempotencyKey":"ship-7"});
    let (_, first) = api(&s, "POST", "/api/rooms/orders/publish", body.clone()).await;
    let (status, again) = api(&s, "POST", "/api/rooms/orders/publish", body).await;
    assert_eq!(status, 200);
    assert_eq!(first, again);
    let got = frame(&mut a, "orderShipped").await;
    assert_eq!(got["seq"], first["seq"]);
    a.expect_none("orderShipped", Duration::from_millis(500))
        .await;
    // Another key is another message.
    let (_, other) = api(
        &s,
        "POST",
        "/api/rooms/orders/publish",
        json!({"action":"orderShipped","data":{"order":8},"idempotencyKey":"ship-8"}),
    )
    .await;
    assert_eq!(
        other["seq"].as_u64(),
        Some(first["seq"].as_u64().unwrap() + 1)
    );
    assert_eq!(frame(&mut a, "orderShipped").await["data"]["order"], 8);
    // The metric counts what was delivered: the retry is not.
    let metrics = s.get("/metrics").await;
    let published = metrics
        .lines()
        .find_map(|l| l.strip_prefix("attractio_api_published_total "))
        .unwrap_or_else(|| panic!("no api_published_total in {metrics}"));
    assert_eq!(published.trim(), "2");
}

#[tokio::test]
async fn every_refused_publish_says_why_with_its_status_and_delivers_nothing() {
    let s = Server::start(&["--api-key", KEY, "--max-message-bytes", "1024"]);
    let mut a = s.joined("room").await;
    let publish = "/api/rooms/room/publish";
    let cases = [
        (
            publish,
            json!({"action":"hydrate","data":{"words":[]}}).to_string(),
            400,
            "reserved_action",
        ),
        (
            publish,
            json!({"action":"resumed","data":{}}).to_string(),
            400,
            "reserved_action",
        ),
        (
            publish,
            json!({"action":"freeze","elementID":"w"}).to_string(),
            400,
            "invalid_message",
        ),
        (
            publish,
            json!({"data":1}).to_string(),
            400,
            "invalid_message",
        ),
        (publish, "{not json".to_owned(), 400, "malformed_json"),
        (
            publish,
            json!({"action":"big","data":"x".repeat(2000)}).to_string(),
            413,
            "too_large",
        ),
        (
            "/api/rooms/nowhere/publish",
            json!({"action":"a"}).to_string(),
            404,
            "not_found",
        ),
        (
            "/api/rooms/Bad%20Name/publish",
            json!({"action":"a"}).to_string(),
            400,
            "invalid_room_name",
        ),
        (
            "/api/rooms/%FF/publish",
            json!({"action":"a"}).to_string(),
            400,
            "invalid_room_name",
        ),
        (
            "/api/rooms/room/history",
            String::new(),
            405,
            "method_not_allowed",
        ),
    ];
    for (path, body, status, code) in cases {
        let (got, answer) = http(&s, "POST", path, Some(KEY), &body).await;
        assert_eq!(
            (got, answer["error"]["code"].as_str()),
            (status, Some(code)),
            "{path} {body}: {answer}"
        );
    }
    a.expect_none("big", Duration::from_millis(300)).await;
    // `?create=true` opens a room that did not exist, and it then exists.
    let (status, _) = api(
        &s,
        "POST",
        "/api/rooms/nowhere/publish?create=true",
        json!({"action":"a"}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, view) = api(&s, "GET", "/api/rooms/nowhere", Value::Null).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["seq"], 1);
}

#[tokio::test]
async fn the_room_view_shows_members_words_and_position_and_404_for_no_room() {
    let s = start();
    let mut a = s.joined("fridge").await;
    let b = s.joined("fridge").await;
    a.presence_until(|p| p.ids().len() == 2).await;
    a.send(json!({"action":"stateUpdate","data":board(3)}))
        .await;
    let mut view = Value::Null;
    for _ in 0..50 {
        let (status, v) = api(&s, "GET", "/api/rooms/fridge", Value::Null).await;
        assert_eq!(status, 200);
        view = v;
        if view["words"].as_array().is_some_and(|w| w.len() == 3) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(view["room"], "fridge");
    assert_eq!(view["words"].as_array().unwrap().len(), 3, "{view}");
    let ids: Vec<u64> = view["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&a.id()) && ids.contains(&b.id()), "{view}");
    let member = &view["members"][0];
    assert!(
        member["name"].is_string() && member["color"].is_string(),
        "{member}"
    );
    assert!(view["seq"].as_u64().unwrap() >= 2 && view["epoch"].is_u64());
    let (status, body) = api(&s, "GET", "/api/rooms/no-such-room", Value::Null).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
}

#[tokio::test]
async fn history_gives_the_frames_after_a_seq_and_410_once_they_are_gone() {
    let s = Server::start(&["--api-key", KEY, "--history", "4"]);
    let _a = s.joined("log").await;
    let mut seqs = Vec::new();
    for n in 0..6 {
        let (_, p) = api(
            &s,
            "POST",
            "/api/rooms/log/publish",
            json!({"action":"tick","data":n}),
        )
        .await;
        seqs.push(p["seq"].as_u64().unwrap());
    }
    let last = *seqs.last().unwrap();
    let (status, page) = api(
        &s,
        "GET",
        &format!("/api/rooms/log/history?after={}", last - 2),
        Value::Null,
    )
    .await;
    assert_eq!(status, 200, "{page}");
    let frames = page["frames"].as_array().unwrap();
    let got: Vec<_> = frames
        .iter()
        .map(|f| (f["data"].as_u64(), f["seq"].as_u64()))
        .collect();
    assert_eq!(got, vec![(Some(4), Some(last - 1)), (Some(5), Some(last))]);
    assert_eq!(frames[0]["from"], "server");
    let (_, one) = api(
        &s,
        "GET",
        &format!("/api/rooms/log/history?after={}&limit=1", last - 2),
        Value::Null,
    )
    .await;
    assert_eq!(one["frames"].as_array().unwrap().len(), 1);
    let (_, none) = api(
        &s,
        "GET",
        &format!("/api/rooms/log/history?after={last}"),
        Value::Null,
    )
    .await;
    assert_eq!(none["frames"], json!([]));
    // Four frames kept: the ones right after seq 0 are gone.
    let (status, gone) = api(&s, "GET", "/api/rooms/log/history?after=0", Value::Null).await;
    assert_eq!(status, 410, "{gone}");
    assert_eq!(gone["epoch"], page["epoch"]);
    assert_eq!(gone["oldest"].as_u64(), Some(last - 3));
}

#[tokio::test]
async fn a_kicked_member_is_closed_with_4002_loses_its_seat_and_the_room_is_told() {
    let s = start();
    let mut a = s.joined("ring").await;
    let mut b = s.joined("ring").await;
    a.presence_until(|p| p.ids().len() == 2).await;
    let token = b.hello["data"]["resumeToken"].as_str().unwrap().to_owned();
    let (status, answer) = api(
        &s,
        "POST",
        "/api/rooms/ring/disconnect",
        json!({"id": b.id()}),
    )
    .await;
    assert_eq!((status, answer), (200, json!({"disconnected":1})));
    assert_eq!(b.close_code().await, Some(protocol::close_code::KICKED));
    let b_id = b.id();
    a.presence_until(|p| !p.ids().contains(&b_id)).await;
    let (_, view) = api(&s, "GET", "/api/rooms/ring", Value::Null).await;
    assert_eq!(view["members"].as_array().unwrap().len(), 1, "{view}");
    // Its resume token takes nothing back: the seat is gone.
    let mut again = s.client().await;
    again
        .send(json!({"action":"newClient","room":"ring","resumeToken":token}))
        .await;
    let resumed = again.expect("resumed").await;
    assert_eq!(resumed["data"]["recovered"], false);
    assert_ne!(resumed["data"]["id"].as_u64(), Some(b_id));
    // Nobody to disconnect: nothing done; neither id nor user: refused.
    let (_, none) = api(
        &s,
        "POST",
        "/api/rooms/ring/disconnect",
        json!({"id": b_id}),
    )
    .await;
    assert_eq!(none, json!({"disconnected":0}));
    let (status, _) = api(&s, "POST", "/api/rooms/ring/disconnect", json!({})).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn a_closed_room_lets_everyone_go_with_4003_and_stays_gone_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--api-key", KEY];
    let s = Server::start_in(dir.path(), &args, None);
    let mut a = s.joined("doomed").await;
    a.send(json!({"action":"stateUpdate","data":board(2)}))
        .await;
    // Another room, stored too, is left alone.
    let mut keep = s.joined("kept").await;
    keep.send(json!({"action":"stateUpdate","data":board(2)}))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, _) = api(&s, "DELETE", "/api/rooms/doomed", Value::Null).await;
    assert_eq!(status, 204);
    assert_eq!(
        a.close_code().await,
        Some(protocol::close_code::ROOM_CLOSED)
    );
    // The room ends right after it answered.
    let mut status = 0;
    for _ in 0..50 {
        status = api(&s, "GET", "/api/rooms/doomed", Value::Null).await.0;
        if status == 404 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 404);
    keep.close().await;
    let port = s.port();
    let (exit, _) = s.stop();
    assert!(exit.success());
    let s = Server::start_in(dir.path(), &args, Some(port));
    let (status, _) = api(&s, "GET", "/api/rooms/doomed", Value::Null).await;
    assert_eq!(status, 404, "the closed room came back after a restart");
    let (status, kept) = api(&s, "GET", "/api/rooms/kept", Value::Null).await;
    assert_eq!(status, 200);
    assert_eq!(kept["words"].as_array().unwrap().len(), 2);
    let mut c = s.client().await;
    assert_eq!(c.join("doomed").await["action"], "newRoom");
}

#[tokio::test]
async fn a_ban_refuses_the_kicked_address_rejoin_of_that_room_only() {
    let s = start();
    let mut a = s.joined("club").await;
    let b = s.joined("club").await;
    a.presence_until(|p| p.ids().len() == 2).await;
    let (status, _) = api(
        &s,
        "POST",
        "/api/rooms/club/disconnect",
        json!({"id": b.id(), "banSeconds": 600}),
    )
    .await;
    assert_eq!(status, 200);
    let mut b = b;
    assert_eq!(b.close_code().await, Some(protocol::close_code::KICKED));
    // An anonymous member is banned by its address: every loopback client.
    let mut again = s.client().await;
    again
        .send(json!({"action":"newClient","room":"club"}))
        .await;
    let answer = again.expect_any(&["hydrate", "newRoom", "error"]).await;
    assert_eq!(answer["data"]["code"], "forbidden", "{answer}");
    let mut elsewhere = s.client().await;
    assert_eq!(elsewhere.join("another-club").await["action"], "newRoom");
}

#[tokio::test]
async fn disconnecting_a_user_closes_each_of_its_seats_and_bans_that_user_only() {
    use jsonwebtoken::{encode, EncodingKey, Header};
    let secret = "a-secret-the-app-backend-shares";
    let s = Server::start(&["--api-key", KEY, "--auth-secret", secret]);
    let token = |sub: &str| {
        let exp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 3600;
        let claims = json!({"sub": sub, "exp": exp, "rooms": ["stage"]});
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    };
    let (mut tab1, _) = join_as(&s, token("mallory")).await;
    let (mut tab2, _) = join_as(&s, token("mallory")).await;
    let (mut alice, _) = join_as(&s, token("alice")).await;
    alice.presence_until(|p| p.ids().len() == 3).await;
    let (status, answer) = api(
        &s,
        "POST",
        "/api/rooms/stage/disconnect",
        json!({"user": "mallory", "banSeconds": 600}),
    )
    .await;
    assert_eq!((status, answer), (200, json!({"disconnected":2})));
    for tab in [&mut tab1, &mut tab2] {
        assert_eq!(tab.close_code().await, Some(protocol::close_code::KICKED));
    }
    alice.presence_until(|p| p.ids().len() == 1).await;
    let (_, refused) = join_as(&s, token("mallory")).await;
    assert_eq!(refused["data"]["code"], "forbidden", "{refused}");
    let (_, let_in) = join_as(&s, token("bob")).await;
    assert_ne!(let_in["action"], "error", "{let_in}");
}

/// Joins `stage` with `token`; the client and its board answer or error.
async fn join_as(s: &Server, token: String) -> (Client, Value) {
    let mut c = s.client().await;
    c.send(json!({"action":"newClient","room":"stage","token":token}))
        .await;
    let answer = c.expect_any(&["hydrate", "newRoom", "error"]).await;
    (c, answer)
}

#[tokio::test]
async fn the_room_list_names_rooms_only_to_the_api_key() {
    let s = start();
    let _c = s.joined("private-7f3a9c2e1b").await;
    // Without the key: totals only (once the join is counted).
    let mut totals = Value::Null;
    for _ in 0..50 {
        let (status, body) = http(&s, "GET", "/api/rooms", None, "").await;
        assert_eq!(status, 200, "{body}");
        if body["members"] == 1 {
            totals = body;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(totals["rooms"], 1, "{totals}");
    assert!(totals.get("active").is_none(), "{totals}");
    // A wrong key is no key.
    let (_, body) = http(&s, "GET", "/api/rooms", Some("backend-key-3"), "").await;
    assert!(body.get("active").is_none(), "{body}");
    let (status, body) = http(&s, "GET", "/api/rooms", Some(KEY), "").await;
    assert_eq!(status, 200);
    assert_eq!(
        body["active"],
        json!([{"room": "private-7f3a9c2e1b", "members": 1}]),
        "{body}"
    );
}
