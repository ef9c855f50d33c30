//! Tokens in a cluster: every node verifies them with the same keys, and
//! a member's user and role travel with its join to every node, and in the
//! room's snapshot to a node that starts hosting the room later.

use std::time::Duration;

use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};

use crate::harness::*;

const SECRET: &str = "every-node-of-the-cluster-shares-this-secret";

fn token(sub: &str, rooms: Value) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let claims = json!({"sub": sub, "exp": exp, "rooms": rooms});
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// The `(user, role)` of each member in a `presence` list.
fn users(list: &Value) -> Vec<(Value, Value)> {
    let mut users: Vec<(Value, Value)> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["user"].clone(), m["role"].clone()))
        .collect();
    users.sort_by_key(|u| u.0.to_string());
    users
}

#[tokio::test]
async fn user_and_role_cross_nodes_and_survive_the_rooms_snapshot() {
    let (redis, nodes) = cluster(&["--auth-secret", SECRET, "--cluster-snapshot-every", "2"]);
    let mut maker = nodes[0].client().await;
    maker
        .send(
            json!({"action":"newClient","room":"studio","token":token("maker", json!(["studio"]))}),
        )
        .await;
    maker.expect_any(&["newRoom", "hydrate"]).await;
    let mut watcher = nodes[1].client().await;
    let viewer_grant = json!([{"room": "studio", "role": "viewer"}]);
    watcher
        .send(json!({"action":"newClient","room":"studio","token":token("watcher", viewer_grant)}))
        .await;
    watcher.expect_any(&["newRoom", "hydrate"]).await;

    // The join crossed nodes with its user and role.
    read_until(&mut maker, |got| {
        got.iter().any(|v| {
            v["action"] == "presenceDiff"
                && v["data"]["joins"].as_array().is_some_and(|j| {
                    j.iter()
                        .any(|m| m["user"] == "watcher" && m["role"] == "viewer")
                })
        })
    })
    .await;
    // The viewer is refused on its node; nothing reaches the maker's.
    watcher
        .send(json!({"action":"talkToRoom","data":"let me in"}))
        .await;
    let refused = watcher.expect("error").await;
    assert_eq!(refused["data"]["code"], "forbidden", "{refused}");
    // Enough entries for snapshots, then a node new to the room.
    for i in 0..6 {
        maker.send(json!({"action":"talkToRoom","data":i})).await;
    }
    caught_up(&mut maker).await;
    let got = maker.drain(Duration::from_millis(300)).await;
    assert!(
        !got.iter().any(|v| v["data"] == "let me in"),
        "a viewer's chat was delivered"
    );

    // Every node verifies with the same keys: no token, no room.
    let mut stranger = nodes[2].client().await;
    stranger
        .send(json!({"action":"newClient","room":"studio"}))
        .await;
    let answer = stranger.expect_any(&["error", "newRoom", "hydrate"]).await;
    assert_eq!(answer["data"]["code"], "forbidden", "{answer}");

    // The two joins are in a snapshot now, no longer in the log: the
    // node new to the room learns its members from the snapshot.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let first = redis.cli(&["XRANGE", "attractio:{studio}:log", "-", "+", "COUNT", "1"]);
        let first: u64 = first.split('-').next().unwrap().parse().unwrap_or(0);
        if first > 2 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not trimmed: {first}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut late = nodes[2].client().await;
    late.send(json!({"action":"newClient","room":"studio","token":token("late", json!(["stu*"]))}))
        .await;
    let list = late.expect("presence").await;
    assert_eq!(
        users(&list),
        [
            (json!("late"), Value::Null),
            (json!("maker"), Value::Null),
            (json!("watcher"), json!("viewer")),
        ],
        "{list}"
    );
}
