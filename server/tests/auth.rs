//! Tokens from the app's backend: who may join which room, as what, and
//! for how long. Tokens are minted here with the `jsonwebtoken` crate, and
//! the PEM keys made here with `openssl`: nothing is signed by hand.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::{Client, Server};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

const SECRET: &str = "a-secret-the-app-backend-shares-with-us";

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Claims for `sub` granting `rooms`, valid for an hour.
fn claims(sub: &str, rooms: Value) -> Value {
    json!({"sub": sub, "exp": now() + 3600, "rooms": rooms})
}

fn hs256(claims: &Value) -> String {
    sign(
        claims,
        Header::new(Algorithm::HS256),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
}

fn sign(claims: &Value, header: Header, key: &EncodingKey) -> String {
    encode(&header, claims, key).unwrap()
}

fn with_secret(extra: &[&str]) -> Server {
    let mut args = vec!["--auth-secret", SECRET, "--auth-leeway", "0s"];
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// Sends `newClient` for `room` with `token` and returns the answer: the
/// joiner's board answer, or an error.
async fn join_with(c: &mut Client, room: &str, token: Option<&str>) -> Value {
    let mut frame = json!({"action": "newClient", "room": room});
    if let Some(token) = token {
        frame["token"] = token.into();
    }
    c.send(frame).await;
    c.expect_any(&["hydrate", "newRoom", "roomFull", "error"])
        .await
}

/// Joins and returns the answer, failing with the server's reason if the
/// join was refused.
async fn joined(c: &mut Client, room: &str, token: Option<&str>) -> Value {
    let answer = join_with(c, room, token).await;
    assert_ne!(answer["action"], "error", "joining {room}: {answer}");
    answer
}

/// Joins with `token` and returns the room's `presence` list the joiner
/// is sent (before or after its board answer).
async fn join_for_presence(c: &mut Client, room: &str, token: &str) -> Value {
    c.send(json!({"action": "newClient", "room": room, "token": token}))
        .await;
    let (mut answered, mut list) = (false, None);
    while !answered || list.is_none() {
        let v = c
            .next_within(common::WAIT)
            .await
            .expect("the join's answer and presence");
        match v["action"].as_str() {
            Some("presence") => list = Some(v),
            Some("hydrate" | "newRoom") => answered = true,
            Some("error" | "roomFull") => panic!("joining {room}: {v}"),
            _ => {}
        }
    }
    list.unwrap()
}

fn code(v: &Value) -> &str {
    assert_eq!(v["action"], "error", "{v}");
    v["data"]["code"].as_str().unwrap()
}

/// Generates a key pair with `openssl genpkey` into `dir`: the private key
/// (PKCS#8 PEM) and the public key (PEM), and the public key in DER.
fn openssl_keys(dir: &Path, name: &str, genpkey: &[&str]) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let private = dir.join(format!("{name}.pem"));
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let mut args = vec!["genpkey"];
    args.extend_from_slice(genpkey);
    args.extend_from_slice(&["-out", private.to_str().unwrap()]);
    run(&args);
    let public = run(&["pkey", "-in", private.to_str().unwrap(), "-pubout"]);
    let der = run(&[
        "pkey",
        "-in",
        private.to_str().unwrap(),
        "-pubout",
        "-outform",
        "DER",
    ]);
    (std::fs::read(&private).unwrap(), public, der)
}

fn p256(dir: &Path, name: &str) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    openssl_keys(
        dir,
        name,
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    )
}

/// A P-256 public key as a JWK: the DER ends with the point, 0x04 ‖ x ‖ y.
fn p256_jwk(kid: &str, der: &[u8]) -> Value {
    let point = &der[der.len() - 65..];
    assert_eq!(point[0], 4, "an uncompressed point");
    json!({
        "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig",
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
        "y": URL_SAFE_NO_PAD.encode(&point[33..]),
    })
}

fn es256(claims: &Value, kid: Option<&str>, private: &[u8]) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = kid.map(str::to_owned);
    sign(claims, header, &EncodingKey::from_ec_pem(private).unwrap())
}

#[tokio::test]
async fn without_a_key_every_room_is_public_and_a_token_is_ignored() {
    let s = Server::start(&[]);
    let mut c = s.client().await;
    joined(&mut c, "anything", Some("not.a.token")).await;
    let mut d = s.client().await;
    joined(&mut d, "other", None).await;
}

#[tokio::test]
async fn an_hs256_token_joins_its_room_as_its_user_and_presence_shows_the_user() {
    let s = with_secret(&[]);
    let mut c = s.client().await;
    let mut grant = claims("alice", json!(["board"]));
    grant["name"] = "Alice".into();
    grant["color"] = "#112233".into();
    let presence = join_for_presence(&mut c, "board", &hs256(&grant)).await;
    let me = &presence["data"][0];
    assert_eq!(me["user"], "alice");
    assert_eq!(me["name"], "Alice");
    assert_eq!(me["color"], "#112233");
    assert_eq!(me.get("role"), None, "a full member shows no role");

    // Two tabs of one user: one user, two seats.
    let mut tab = s.client().await;
    let token = hs256(&claims("alice", json!(["board"])));
    let list = join_for_presence(&mut tab, "board", &token).await;
    let users: Vec<&Value> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["user"])
        .collect();
    assert_eq!(users, [&json!("alice"), &json!("alice")]);
    assert_ne!(list["data"][0]["id"], list["data"][1]["id"]);
}

#[tokio::test]
async fn a_private_room_refuses_a_join_without_a_grant_and_the_client_stays_where_it_was() {
    let s = with_secret(&["--public-rooms", "lobby"]);
    let mut a = s.client().await;
    joined(&mut a, "lobby", None).await;
    let mut b = s.client().await;
    join_with(&mut b, "lobby", None).await;

    // No token: forbidden. A token of another room: forbidden.
    assert_eq!(code(&join_with(&mut a, "secret", None).await), "forbidden");
    let elsewhere = hs256(&claims("alice", json!(["other"])));
    assert_eq!(
        code(&join_with(&mut a, "secret", Some(&elsewhere)).await),
        "forbidden"
    );

    // Still in the lobby: its chat reaches b.
    a.send(json!({"action": "talkToRoom", "data": "still here", "room": "lobby"}))
        .await;
    loop {
        let v = b.expect("talkToRoom").await;
        if v["data"] == "still here" {
            assert_eq!(v["from"]["id"], a.id());
            break;
        }
    }
    // A public room also takes a token: the user shows.
    let mut c = s.client().await;
    let token = hs256(&claims("carol", json!([])));
    let list = join_for_presence(&mut c, "lobby", &token).await;
    assert!(
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["user"] == "carol"),
        "{list}"
    );
}

#[tokio::test]
async fn a_prefix_grant_admits_the_rooms_it_names_and_no_other() {
    let s = with_secret(&[]);
    let token = hs256(&claims("bob", json!(["team-42-*"])));
    let mut c = s.client().await;
    joined(&mut c, "team-42-board", Some(&token)).await;
    joined(&mut c, "team-42-notes", Some(&token)).await;
    assert_eq!(
        code(&join_with(&mut c, "team-43-board", Some(&token)).await),
        "forbidden"
    );
    assert_eq!(
        code(&join_with(&mut c, "team-42", Some(&token)).await),
        "forbidden"
    );
}

#[tokio::test]
async fn tokens_that_do_not_verify_are_unauthorized() {
    let s = with_secret(&[
        "--auth-issuer",
        "https://app.example",
        "--auth-audience",
        "attractio",
    ]);
    let good = |extra: Value| {
        let mut c = claims("dave", json!(["r"]));
        c["iss"] = "https://app.example".into();
        c["aud"] = "attractio".into();
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    };
    let mut c = s.client().await;
    // The good one joins; each below differs from it in one thing.
    joined(&mut c, "r", Some(&hs256(&good(json!({}))))).await;

    let wrong_secret = sign(
        &good(json!({})),
        Header::new(Algorithm::HS256),
        &EncodingKey::from_secret(b"another secret"),
    );
    // alg none: an unsigned token (header and claims, empty signature).
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(good(json!({})).to_string())
    );
    let cases = [
        ("a wrong secret", wrong_secret),
        ("alg none", none),
        ("expired", hs256(&good(json!({"exp": now() - 60})))),
        ("not yet valid", hs256(&good(json!({"nbf": now() + 600})))),
        (
            "issued in the future",
            hs256(&good(json!({"iat": now() + 600}))),
        ),
        (
            "a wrong issuer",
            hs256(&good(json!({"iss": "https://evil.example"}))),
        ),
        ("no issuer", hs256(&good(json!({"iss": null})))),
        (
            "a wrong audience",
            hs256(&good(json!({"aud": "someone-else"}))),
        ),
        ("no exp", hs256(&good(json!({"exp": null})))),
        ("no sub", hs256(&good(json!({"sub": null})))),
        (
            "a sub too long",
            hs256(&good(json!({"sub": "x".repeat(65)}))),
        ),
        (
            "a color that is not #rrggbb",
            hs256(&good(json!({"color": "red; x"}))),
        ),
        ("garbage", "not-a-token".to_owned()),
    ];
    for (what, token) in cases {
        let answer = join_with(&mut c, "r", Some(&token)).await;
        assert_eq!(code(&answer), "unauthorized", "{what}: {answer}");
    }
}

#[tokio::test]
async fn rs256_es256_and_eddsa_tokens_verify_with_a_pem_public_key_of_their_family() {
    let dir = tempfile::tempdir().unwrap();
    let (rsa_private, rsa_public, _) = openssl_keys(
        dir.path(),
        "rsa",
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    );
    let (ec_private, ec_public, _) = p256(dir.path(), "ec");
    let rsa_pub = dir.path().join("rsa.pub.pem");
    let ec_pub = dir.path().join("ec.pub.pem");
    std::fs::write(&rsa_pub, &rsa_public).unwrap();
    std::fs::write(&ec_pub, &ec_public).unwrap();
    let grant = claims("erin", json!(["r"]));

    let rsa = Server::start(&["--auth-public-key", rsa_pub.to_str().unwrap()]);
    let rs256 = sign(
        &grant,
        Header::new(Algorithm::RS256),
        &EncodingKey::from_rsa_pem(&rsa_private).unwrap(),
    );
    let mut c = rsa.client().await;
    joined(&mut c, "r", Some(&rs256)).await;
    // Algorithm confusion: HS256 with the public key as the secret.
    let confused = sign(
        &grant,
        Header::new(Algorithm::HS256),
        &EncodingKey::from_secret(&rsa_public),
    );
    assert_eq!(
        code(&join_with(&mut c, "r", Some(&confused)).await),
        "unauthorized"
    );
    // A key of another family is not this server's.
    assert_eq!(
        code(&join_with(&mut c, "r", Some(&es256(&grant, None, &ec_private))).await),
        "unauthorized"
    );

    let ec = Server::start(&["--auth-public-key", ec_pub.to_str().unwrap()]);
    let mut d = ec.client().await;
    joined(&mut d, "r", Some(&es256(&grant, None, &ec_private))).await;
    let confused = sign(
        &grant,
        Header::new(Algorithm::HS256),
        &EncodingKey::from_secret(&ec_public),
    );
    assert_eq!(
        code(&join_with(&mut d, "r", Some(&confused)).await),
        "unauthorized"
    );

    // An Ed25519 key verifies EdDSA tokens.
    let (ed_private, ed_public, _) = openssl_keys(dir.path(), "ed", &["-algorithm", "ed25519"]);
    let ed_pub = dir.path().join("ed.pub.pem");
    std::fs::write(&ed_pub, &ed_public).unwrap();
    let ed = Server::start(&["--auth-public-key", ed_pub.to_str().unwrap()]);
    let mut e = ed.client().await;
    let eddsa = sign(
        &grant,
        Header::new(Algorithm::EdDSA),
        &EncodingKey::from_ed_pem(&ed_private).unwrap(),
    );
    joined(&mut e, "r", Some(&eddsa)).await;
    assert_eq!(
        code(&join_with(&mut e, "r", Some(&es256(&grant, None, &ec_private))).await),
        "unauthorized"
    );
}

#[tokio::test]
async fn a_jwks_rotation_accepts_the_new_kid_and_refuses_the_removed_one() {
    let dir = tempfile::tempdir().unwrap();
    let keys: Vec<_> = ["k1", "k2", "k3"]
        .iter()
        .map(|k| p256(dir.path(), k))
        .collect();
    let jwks = dir.path().join("jwks.json");
    let write = |kids: &[usize]| {
        let set: Vec<Value> = kids
            .iter()
            .map(|&i| p256_jwk(&format!("k{}", i + 1), &keys[i].2))
            .collect();
        // Written whole, then renamed: the server never reads half a file.
        let tmp = dir.path().join("jwks.tmp");
        std::fs::write(&tmp, json!({"keys": set}).to_string()).unwrap();
        std::fs::rename(&tmp, &jwks).unwrap();
    };
    write(&[0, 1]);
    let s = Server::start(&["--auth-jwks", jwks.to_str().unwrap()]);
    let token = |i: usize| {
        es256(
            &claims("fay", json!(["*"])),
            Some(&format!("k{}", i + 1)),
            &keys[i].0,
        )
    };
    let mut c = s.client().await;
    joined(&mut c, "r", Some(&token(0))).await;
    joined(&mut c, "s", Some(&token(1))).await;
    assert_eq!(
        code(&join_with(&mut c, "r", Some(&token(2))).await),
        "unauthorized",
        "k3 is not known yet"
    );
    // A token naming k2 but signed with k1's key does not verify.
    let forged = es256(&claims("fay", json!(["r"])), Some("k2"), &keys[0].0);
    assert_eq!(
        code(&join_with(&mut c, "r", Some(&forged)).await),
        "unauthorized"
    );

    write(&[1, 2]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let answer = join_with(&mut c, "r", Some(&token(2))).await;
        if answer["action"] != "error" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "k3 never accepted: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        code(&join_with(&mut c, "t", Some(&token(0))).await),
        "unauthorized",
        "k1 was removed"
    );
    assert_ne!(
        join_with(&mut c, "t", Some(&token(1))).await["action"],
        "error",
        "k2 stays"
    );

    // SIGHUP reads it at once too (and does not stop the server).
    write(&[0]);
    s.signal(libc::SIGHUP);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let answer = join_with(&mut c, "u", Some(&token(0))).await;
        if answer["action"] != "error" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "k1 never accepted again: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_viewer_receives_everything_and_every_write_is_forbidden() {
    let s = with_secret(&[]);
    let mut member = s.client().await;
    let mut viewer = s.client().await;
    let grant = |sub| {
        hs256(&claims(
            sub,
            json!([{"room": "gallery", "role": "viewer"}, "own-*"]),
        ))
    };
    let full = hs256(&claims("maker", json!(["gallery"])));
    join_with(&mut member, "gallery", Some(&full)).await;
    // The room asks the member (never a viewer) for the board; the viewer
    // gets it, and is shown as a viewer.
    let frame = json!({"action": "newClient", "room": "gallery", "token": grant("watcher")});
    viewer.send(frame).await;
    member.expect("requestCurrentState").await;
    member
        .send(json!({"action": "stateUpdate", "data": [{"id": "w1", "text": "moon", "x": 1, "y": 2}]}))
        .await;
    let (mut hydrate, mut list) = (None, None);
    while hydrate.is_none() || list.is_none() {
        let v = viewer
            .next_within(common::WAIT)
            .await
            .expect("board and presence");
        match v["action"].as_str() {
            Some("presence") => list = Some(v),
            Some("hydrate" | "newRoom" | "error") => hydrate = Some(v),
            _ => {}
        }
    }
    let (hydrate, list) = (hydrate.unwrap(), list.unwrap());
    assert_eq!(hydrate["action"], "hydrate", "{hydrate}");
    let me = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == viewer.id())
        .unwrap()
        .clone();
    assert_eq!(
        (me["user"].as_str(), me["role"].as_str()),
        (Some("watcher"), Some("viewer"))
    );

    let writes = [
        json!({"action": "talkToRoom", "data": "hi"}),
        json!({"action": "privateMessage", "to": member.id(), "data": "psst"}),
        json!({"action": "stateUpdate", "data": []}),
        json!({"action": "newWord", "data": {"id": "w2", "text": "sun", "x": 5, "y": 5}}),
        json!({"action": "moving", "elementID": "w1", "dx": 1, "dy": 1}),
        json!({"action": "moveEnd", "elementID": "w1", "finalX": 9, "finalY": 9}),
        json!({"action": "freeze", "elementID": "w1"}),
        json!({"action": "unfreeze", "elementID": "w1"}),
        json!({"action": "delete", "elementID": "w1"}),
        json!({"action": "modify", "elementID": "w1", "update": {"text": "x"}}),
        json!({"action": "confetti", "data": 1}),
    ];
    for w in &writes {
        viewer.send(w.clone()).await;
        let answer = viewer.expect("error").await;
        assert_eq!(code(&answer), "forbidden", "{w}: {answer}");
    }
    // Echo is the viewer's own.
    viewer.send(json!({"action": "echo", "data": 7})).await;
    assert_eq!(viewer.expect("echo").await["data"], 7);

    // Nothing of it reached the member; what the member does reaches the viewer.
    member
        .send(json!({"action": "talkToRoom", "data": "from the maker"}))
        .await;
    let got = member.drain(Duration::from_millis(500)).await;
    let from_viewer: Vec<&Value> = got
        .iter()
        .filter(|v| v["from"]["id"] == viewer.id())
        .collect();
    assert!(
        from_viewer.is_empty(),
        "delivered from a viewer: {from_viewer:?}"
    );
    loop {
        let v = viewer.expect("talkToRoom").await;
        if v["data"] == "from the maker" {
            break;
        }
    }
    // The board is as the member left it.
    let mut late = s.client().await;
    let board = join_with(&mut late, "gallery", Some(&full)).await;
    assert_eq!(common::words(&board["data"]), [("w1".to_owned(), 1.0, 2.0)]);
}

#[tokio::test]
async fn an_expired_token_is_told_then_closed_with_4001_unless_refreshed() {
    let s = with_secret(&["--auth-grace", "2s"]);
    // Each in a room of its own: a joiner's answer does not wait for
    // another member.
    let short = |sub: &str| {
        let mut c = claims(sub, json!(["r-*"]));
        c["exp"] = (now() + 3).into();
        hs256(&c)
    };
    let mut lapsing = s.client().await;
    let mut refreshing = s.client().await;
    joined(&mut lapsing, "r-1", Some(&short("gil"))).await;
    joined(&mut refreshing, "r-2", Some(&short("hal"))).await;

    // Told, and refreshed within the grace: by the same user only.
    assert_eq!(code(&refreshing.expect("error").await), "token_expired");
    let other = hs256(&claims("gil", json!(["r-*"])));
    refreshing
        .send(json!({"action": "refreshToken", "token": other}))
        .await;
    assert_eq!(code(&refreshing.expect("error").await), "forbidden");
    let fresh = hs256(&claims("hal", json!(["r-2"])));
    refreshing
        .send(json!({"action": "refreshToken", "token": fresh}))
        .await;

    // Told, not refreshed: closed with 4001.
    assert_eq!(code(&lapsing.expect("error").await), "token_expired");
    assert_eq!(
        lapsing.close_code().await,
        Some(protocol::close_code::TOKEN_EXPIRED)
    );

    // Well past the grace: still connected, still in the room.
    tokio::time::sleep(Duration::from_secs(4)).await;
    refreshing
        .send(json!({"action": "echo", "data": "alive"}))
        .await;
    let echo = refreshing.expect("echo").await;
    assert_eq!(echo["data"], "alive");
}

#[tokio::test]
async fn a_resume_checks_the_token_again() {
    let s = with_secret(&[]);
    let mut c = s.client().await;
    let token = hs256(&claims("ivy", json!(["r"])));
    join_with(&mut c, "r", Some(&token)).await;
    let (id, resume) = (
        c.id(),
        c.hello["data"]["resumeToken"].as_str().unwrap().to_owned(),
    );
    drop(c); // a drop, not a goodbye: the seat is held

    let mut back = s.client().await;
    let resume_with = |token: Option<String>| {
        let mut f = json!({"action": "newClient", "room": "r", "resumeToken": resume});
        if let Some(t) = token {
            f["token"] = t.into();
        }
        f
    };
    let mut expired = claims("ivy", json!(["r"]));
    expired["exp"] = (now() - 10).into();
    back.send(resume_with(Some(hs256(&expired)))).await;
    assert_eq!(
        code(&back.expect_any(&["resumed", "error"]).await),
        "unauthorized"
    );
    back.send(resume_with(None)).await;
    assert_eq!(
        code(&back.expect_any(&["resumed", "error"]).await),
        "forbidden"
    );
    let lost_the_room = hs256(&claims("ivy", json!(["elsewhere"])));
    back.send(resume_with(Some(lost_the_room))).await;
    assert_eq!(
        code(&back.expect_any(&["resumed", "error"]).await),
        "forbidden"
    );
    // Another user's token does not take ivy's seat.
    let mut other = s.client().await;
    other
        .send(resume_with(Some(hs256(&claims("mallory", json!(["r"]))))))
        .await;
    let answer = other.expect_any(&["resumed", "error"]).await;
    assert_ne!(answer["data"]["id"], id, "{answer}");

    back.send(resume_with(Some(token))).await;
    let resumed = back.expect_any(&["resumed", "error"]).await;
    assert_eq!(resumed["action"], "resumed", "{resumed}");
    assert_eq!(resumed["data"]["id"], id);
}

#[tokio::test]
async fn a_held_seat_keeps_its_user_and_role_across_a_graceful_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let args = ["--auth-secret", SECRET];
    let s = Server::start_in(tmp.path(), &args, None);
    let port = s.port();
    let token = hs256(&claims("judy", json!([{"room": "r", "role": "viewer"}])));
    let mut c = s.client().await;
    joined(&mut c, "r", Some(&token)).await;
    let (id, resume) = (
        c.id(),
        c.hello["data"]["resumeToken"].as_str().unwrap().to_owned(),
    );
    let (status, _) = s.stop();
    assert!(status.success());
    drop(c);

    // The seat was stored with its user: judy's token takes it back, as
    // a viewer still.
    let s = Server::start_in(tmp.path(), &args, Some(port));
    let mut back = s.client().await;
    back.send(json!({"action": "newClient", "room": "r", "resumeToken": resume, "token": token}))
        .await;
    let (mut resumed, mut list) = (None, None);
    while resumed.is_none() || list.is_none() {
        let v = back
            .next_within(common::WAIT)
            .await
            .expect("resumed and presence");
        match v["action"].as_str() {
            Some("resumed" | "error") => resumed = Some(v),
            Some("presence") => list = Some(v),
            _ => {}
        }
    }
    let (resumed, list) = (resumed.unwrap(), list.unwrap());
    assert_eq!(resumed["data"]["id"], id, "{resumed}");
    assert_eq!(list["data"][0]["user"], "judy", "{list}");
    assert_eq!(list["data"][0]["role"], "viewer", "{list}");
    back.send(json!({"action": "talkToRoom", "data": "hi"}))
        .await;
    assert_eq!(code(&back.expect("error").await), "forbidden");
}
