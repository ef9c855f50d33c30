//! A held seat's resume window runs from when its member dropped, whether
//! or not a node hosts the room meanwhile.

use std::time::Duration;

use crate::common::PresenceView;
use crate::harness::*;

#[tokio::test]
async fn seats_of_a_dead_nodes_members_end_with_their_window_while_nobody_hosts_the_room() {
    let (_redis, mut nodes) = cluster(&["--resume-window", "3s", "--max-room-size", "3"]);
    let old = [nodes[0].joined("G").await, nodes[0].joined("G").await];
    let old_ids: Vec<u64> = old.iter().map(|c| c.id()).collect();
    // Node 0 dies (kill -9) with both: nobody else hosts G. Their windows
    // end 3 s later, long before anyone comes.
    drop(nodes.remove(0));
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
