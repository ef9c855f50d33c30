//! A held seat's resume window runs from when its member dropped, whether
//! or not a node hosts the room meanwhile.

use std::time::Duration;

use crate::common::PresenceView;
use crate::harness::*;

/// Two members of G on node 0 drop by `end` (a kill or a stop) and nobody
/// comes for longer than their window (3 s): two joiners on another node
/// neither meet them nor find G full.
async fn joiners_after_the_window_find_nobody_of_a_node_that(end: impl FnOnce(Node)) {
    let (_redis, mut nodes) = cluster(&["--resume-window", "3s", "--max-room-size", "3"]);
    let old = [nodes[0].joined("G").await, nodes[0].joined("G").await];
    let old_ids: Vec<u64> = old.iter().map(|c| c.id()).collect();
    end(nodes.remove(0));
    drop(old);
    tokio::time::sleep(Duration::from_secs(9)).await;
    let mut joiners = Vec::new();
    for _ in 0..2 {
        let mut c = nodes[0].client().await;
        let answer = c.join("G").await;
        assert_ne!(answer["action"], "roomFull", "{answer}");
        joiners.push(c);
    }
    for c in &mut joiners {
        let mut seen: PresenceView = c.presence.clone();
        assert!(
            old_ids.iter().all(|id| !seen.ids().contains(id)),
            "{seen:?}"
        );
        for v in frames_for(c, Duration::from_secs(3)).await {
            seen.see(&v);
            assert!(
                old_ids.iter().all(|id| !seen.ids().contains(id)),
                "an old member is still in G: {seen:?} ({v})"
            );
        }
        assert!(old_ids.iter().all(|id| !c.presence.ids().contains(id)));
    }
}

#[tokio::test]
async fn seats_of_a_killed_nodes_members_end_with_their_window_while_nobody_hosts_the_room() {
    // kill -9: nobody says the members dropped; the window runs from when
    // the node last said it was alive.
    joiners_after_the_window_find_nobody_of_a_node_that(drop).await;
}

#[tokio::test]
async fn seats_of_a_stopped_nodes_members_end_with_their_window_while_nobody_hosts_the_room() {
    // SIGTERM: the node says its members dropped, and when.
    joiners_after_the_window_find_nobody_of_a_node_that(|node| {
        unsafe { libc::kill(node.child.id() as i32, libc::SIGTERM) };
        let mut node = node;
        let _ = node.child.wait();
    })
    .await;
}
