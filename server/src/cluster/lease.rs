//! When another node is gone: its lease (`attractio:node:<n>`, renewed
//! every `LEASE_RENEWAL`, lasting `LEASE`) is missing, and has stayed
//! missing while this node could reach the Redis shard holding it.
//!
//! A missing lease alone proves nothing on a Redis Cluster: the master
//! holding it may have restarted empty (or failed over to a replica that
//! lagged) a moment ago, and the live node renews it within a renewal
//! period. So a lease is judged lapsed only when every look at it for
//! `LAPSED_FOR` found it missing, each an answer from its shard; a look
//! that found it, or that could not reach the shard, starts the count
//! again. This node's own renewals say nothing about another shard: only
//! answers from the lease's own shard count.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a lease must be seen missing, without a look that found it or
/// failed, before its node is gone: longer than a renewal period plus a
/// command's timeout, so a live node renews in between.
pub const LAPSED_FOR: Duration = Duration::from_secs(2);

/// What one look at a node's lease found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Look {
    Held,
    Missing,
    /// The shard holding it did not answer.
    Unreachable,
}

/// Since when each node's lease has been seen missing without a break:
/// shared by the node's rooms, so every room judges a node alike. A dead
/// node's entry stays (one small entry per node seen dead).
#[derive(Default)]
pub struct Lapses {
    missing_since: Mutex<HashMap<u64, Instant>>,
}

impl Lapses {
    /// Takes one look at `node`'s lease (at `now`), from any room of this
    /// node; whether the node is gone.
    pub fn judge(&self, node: u64, look: Look, now: Instant) -> bool {
        // Each use is one insert, remove or read: a poisoned map is whole.
        let mut missing = self.missing_since.lock().unwrap_or_else(|p| p.into_inner());
        match look {
            Look::Held | Look::Unreachable => {
                missing.remove(&node);
                false
            }
            Look::Missing => {
                let since = *missing.entry(node).or_insert(now);
                now.duration_since(since) >= LAPSED_FOR
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn a_lease_lost_with_a_restarted_shard_and_renewed_within_a_period_is_no_death() {
        let lapses = Lapses::default();
        let t = Instant::now();
        // The shard came back empty: the lease is missing...
        assert!(!lapses.judge(7, Look::Missing, t));
        // ...until the live node's next renewal puts it back.
        assert!(!lapses.judge(7, Look::Held, t + SECOND));
        // Missing again later starts the count anew.
        assert!(!lapses.judge(7, Look::Missing, t + 3 * SECOND));
        assert!(!lapses.judge(7, Look::Missing, t + 4 * SECOND));
    }

    #[test]
    fn a_lease_missing_in_every_answer_of_its_shard_for_long_enough_is_a_death() {
        let lapses = Lapses::default();
        let t = Instant::now();
        assert!(!lapses.judge(7, Look::Missing, t));
        assert!(!lapses.judge(7, Look::Missing, t + SECOND));
        assert!(lapses.judge(7, Look::Missing, t + LAPSED_FOR));
        // Another node's lease is judged on its own.
        assert!(!lapses.judge(8, Look::Missing, t + LAPSED_FOR));
    }

    #[test]
    fn a_look_that_could_not_reach_the_shard_breaks_the_count() {
        let lapses = Lapses::default();
        let t = Instant::now();
        assert!(!lapses.judge(7, Look::Missing, t));
        assert!(!lapses.judge(7, Look::Unreachable, t + SECOND));
        assert!(!lapses.judge(7, Look::Missing, t + LAPSED_FOR));
        assert!(lapses.judge(7, Look::Missing, t + 2 * LAPSED_FOR));
    }
}
