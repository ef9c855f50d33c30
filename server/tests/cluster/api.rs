//! The server API in a cluster: a call that changes a room is an entry of
//! its log, so a message published through any node reaches members on
//! every node with one `seq`, and a kick through one node closes a socket
//! held by another.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::WAIT;
use crate::harness::*;

const KEY: &str = "the-backend-key";

/// A `GET` of the API with `key` (for the other modules' tests).
pub async fn get_with_key(addr: &str, key: &str, path: &str) -> (u16, Value) {
    request(addr, key, "GET", path, Value::Null).await
}

/// One API request to the node at `addr`: the status and the JSON body.
async fn api(addr: &str, method: &str, path: &str, body: Value) -> (u16, Value) {
    request(addr, KEY, method, path, body).await
}

async fn request(addr: &str, key: &str, method: &str, path: &str, body: Value) -> (u16, Value) {
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Authorization: Bearer {key}\r\nContent-Length: {}\r\n\r\n{body}",
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

#[tokio::test]
async fn a_message_published_through_one_node_reaches_every_node_with_one_seq() {
    let (_redis, nodes) = cluster(&["--api-key", KEY]);
    let mut clients = Vec::new();
    for node in &nodes {
        clients.push(node.joined("hall").await);
    }
    for c in &mut clients {
        c.presence_until(|p| p.ids().len() == 3).await;
    }
    let (status, published) = api(
        &nodes[1].addr,
        "POST",
        "/api/rooms/hall/publish",
        json!({"action":"announce","data":"doors open"}),
    )
    .await;
    assert_eq!(status, 200, "{published}");
    for c in &mut clients {
        let got = c.expect("announce").await;
        assert_eq!(got["from"], "server");
        assert_eq!(got["seq"], published["seq"], "{got}");
        assert_eq!(got["epoch"], published["epoch"], "{got}");
    }
    // Every node's copy of the room has it, at that place.
    for node in &nodes {
        let mut page = Value::Null;
        for _ in 0..50 {
            let after = published["seq"].as_u64().unwrap() - 1;
            let (status, p) = api(
                &node.addr,
                "GET",
                &format!("/api/rooms/hall/history?after={after}"),
                Value::Null,
            )
            .await;
            assert_eq!(status, 200, "{p}");
            page = p;
            if !page["frames"].as_array().unwrap().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(page["frames"][0]["data"], "doors open", "{page}");
        assert_eq!(page["epoch"], published["epoch"]);
    }
}

#[tokio::test]
async fn a_kick_through_one_node_closes_the_socket_another_node_holds() {
    let (_redis, nodes) = cluster(&["--api-key", KEY]);
    let mut here = nodes[0].joined("ring").await;
    let mut there = nodes[2].joined("ring").await;
    here.presence_until(|p| p.ids().len() == 2).await;
    let (status, answer) = api(
        &nodes[0].addr,
        "POST",
        "/api/rooms/ring/disconnect",
        json!({"id": there.id()}),
    )
    .await;
    assert_eq!((status, answer), (200, json!({"disconnected":1})));
    assert_eq!(there.close_code().await, Some(protocol::close_code::KICKED));
    let gone = there.id();
    here.presence_until(|p| !p.ids().contains(&gone)).await;
}

#[tokio::test]
async fn a_room_closed_through_one_node_lets_every_node_members_go_and_its_log_is_gone() {
    let (redis, nodes) = cluster(&["--api-key", KEY]);
    let mut a = nodes[0].joined("doomed").await;
    a.send(json!({"action":"stateUpdate","data":crate::common::board(2)}))
        .await;
    let mut b = nodes[2].joined("doomed").await;
    a.presence_until(|p| p.ids().len() == 2).await;
    let (status, _) = api(&nodes[1].addr, "DELETE", "/api/rooms/doomed", Value::Null).await;
    assert_eq!(status, 204);
    for c in [&mut a, &mut b] {
        assert_eq!(
            c.close_code().await,
            Some(protocol::close_code::ROOM_CLOSED)
        );
    }
    let epoch: Option<String> = redis.command(&["GET", "attractio:{doomed}:epoch"]);
    assert_eq!(epoch, None);
    let (status, _) = api(&nodes[2].addr, "GET", "/api/rooms/doomed", Value::Null).await;
    assert_eq!(status, 404);
    let mut again = nodes[0].client().await;
    assert_eq!(again.join("doomed").await["action"], "newRoom");
}

#[tokio::test]
async fn a_retry_through_another_node_or_a_new_host_gets_the_same_seq_and_delivers_once() {
    let (redis, nodes) = cluster(&["--api-key", KEY, "--cluster-snapshot-every", "2"]);
    let mut a = nodes[0].joined("orders").await;
    let mut b = nodes[1].joined("orders").await;
    for c in [&mut a, &mut b] {
        c.presence_until(|p| p.ids().len() == 2).await;
    }
    let publish = "/api/rooms/orders/publish";
    let body = json!({"action":"orderShipped","data":{"order":7},"idempotencyKey":"ship-7"});
    let (status, first) = api(&nodes[0].addr, "POST", publish, body.clone()).await;
    assert_eq!(status, 200, "{first}");
    // A load balancer sends the retry to another node.
    let (status, again) = api(&nodes[1].addr, "POST", publish, body.clone()).await;
    assert_eq!((status, &again), (200, &first));

    // More entries, so the room's snapshot is past the publish's entry ...
    for n in 0..6 {
        let (status, _) = api(
            &nodes[0].addr,
            "POST",
            publish,
            json!({"action":"tick","data":n}),
        )
        .await;
        assert_eq!(status, 200);
    }
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let total: u64 = redis
            .cli(&["GET", "attractio:{orders}:seq"])
            .parse()
            .unwrap();
        let stored: u64 = redis
            .cli(&["HGET", "attractio:{orders}:snapshot", "seq"])
            .parse()
            .unwrap_or(0);
        if total - stored < 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "snapshot at {stored} of {total}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // ... and a node that starts hosting the room from it knows the key.
    let (status, third) = api(&nodes[2].addr, "POST", publish, body).await;
    assert_eq!((status, &third), (200, &first));

    for c in [&mut a, &mut b] {
        let got = c.expect("orderShipped").await;
        assert_eq!(got["seq"], first["seq"], "{got}");
        c.expect_none("orderShipped", Duration::from_millis(1000))
            .await;
    }
}
