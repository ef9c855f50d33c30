//! What one room may keep in Redis is bounded in bytes, not only in log
//! entries: a room of large messages is snapshotted by the bytes its log
//! holds (`--cluster-snapshot-bytes`).

use serde_json::json;

use crate::harness::*;

/// Bytes Redis uses for `room`'s keys (`MEMORY USAGE` of each, exact).
fn bytes_of_room(redis: &Redis, room: &str) -> u64 {
    let keys: Vec<String> = redis.command(&["KEYS", &format!("attractio:{{{room}}}:*")]);
    assert!(!keys.is_empty(), "the room has keys in Redis");
    keys.iter()
        .map(|k| redis.command::<Option<u64>>(&["MEMORY", "USAGE", k, "SAMPLES", "0"]))
        .map(Option::unwrap_or_default)
        .sum()
}

#[tokio::test]
async fn a_room_of_large_chat_lines_keeps_a_few_megabytes_in_redis() {
    let (redis, nodes) = cluster(&[]);
    let mut first = nodes[0].joined("den").await;
    first
        .send(json!({"action":"stateUpdate","data":crate::common::board(1)}))
        .await;
    caught_up(&mut first).await;
    let mut members = vec![first];
    for i in 1..8 {
        members.push(nodes[i % nodes.len()].joined("den").await);
    }
    // 248 chat lines of 65,000 bytes (16 MB), in 31 turns of one line each.
    let line = "x".repeat(65_000);
    for turn in 0..31 {
        for m in &mut members {
            m.send(json!({"action":"talkToRoom","data":format!("{turn}{line}")}))
                .await;
        }
        for m in &mut members {
            read_until(m, |got| chats_from_others(got) >= 7).await;
        }
    }
    for m in &mut members {
        caught_up(m).await;
    }
    // The last snapshot may still be on its way: wait until it is in.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    let used = loop {
        let used = bytes_of_room(&redis, "den");
        if used <= 6_000_000 || tokio::time::Instant::now() > deadline {
            break used;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert!(
        used <= 6_000_000,
        "the room keeps {used} bytes in Redis (16 MB were said)"
    );
}
