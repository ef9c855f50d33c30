//! Whether this node can serve a join now (`/healthz`), judged from its
//! progress, not from its process being alive: its lease renewals go
//! through (Redis answers), its subscription is up (it hears the rooms it
//! hosts), and its rooms apply their own appends within a bound (their
//! logs move). A load balancer takes a node that fails one out of its
//! rotation until it passes again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

/// A node whose last lease renewal that went through is older than this
/// cannot reach Redis (renewals are tried every second, each for at most
/// two: `connection::RESPONSE_TIMEOUT`).
const REDIS_SILENT: Duration = Duration::from_secs(4);
/// A room that has not applied one of this node's appends for this long
/// after Redis took it is stalled (the histogram of `/metrics` shows the
/// usual lag: milliseconds).
pub const APPLY_BOUND: Duration = Duration::from_secs(10);

/// How one room's appends and applies go, shared by its appender (which
/// records what Redis took) and the room (which applies it).
#[derive(Default)]
pub struct Progress {
    /// The last `seq` Redis gave one of this node's appends.
    appended: AtomicU64,
    /// When (ms since the node's start), `u64::MAX` while none.
    appended_at_ms: AtomicU64,
    /// The last `seq` of the log the room applied.
    pub applied: AtomicU64,
}

/// The node's readiness and its parts.
pub struct Health {
    started: Instant,
    /// When (ms since `started`) a lease renewal last went through.
    renewed_ms: AtomicU64,
    /// Whether the pub/sub connection is up (on one Redis; a Redis
    /// Cluster connection subscribes again by itself and is not watched).
    subscribed: AtomicBool,
    /// Every hosted room's progress.
    rooms: Mutex<HashMap<String, Arc<Progress>>>,
}

/// What `/healthz` answers in cluster mode.
#[derive(Debug, Serialize)]
pub struct Readiness {
    pub ready: bool,
    /// Why not, one sentence per failing check; empty when ready.
    pub reasons: Vec<String>,
}

impl Health {
    pub fn new() -> Health {
        Health {
            started: Instant::now(),
            renewed_ms: AtomicU64::new(0),
            subscribed: AtomicBool::new(true),
            rooms: Mutex::default(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A lease renewal went through.
    pub fn renewed(&self) {
        self.renewed_ms.store(self.now_ms(), Relaxed);
    }

    pub fn set_subscribed(&self, up: bool) {
        self.subscribed.store(up, Relaxed);
    }

    /// Starts watching a newly hosted room's progress.
    pub fn watch(&self, room: &str) -> Arc<Progress> {
        let progress = Arc::new(Progress {
            appended_at_ms: AtomicU64::new(u64::MAX),
            ..Progress::default()
        });
        self.rooms().insert(room.to_owned(), progress.clone());
        progress
    }

    /// Stops watching `room` (no longer hosted here).
    pub fn unwatch(&self, room: &str) {
        self.rooms().remove(room);
    }

    /// Redis took one of this node's appends to the room as `seq`; if the
    /// room applied it already (its channel was quicker than the reply),
    /// a lag of zero.
    pub fn appended(&self, progress: &Progress, seq: u64) -> Option<Duration> {
        progress.appended_at_ms.store(self.now_ms(), Relaxed);
        progress.appended.store(seq, Relaxed);
        (progress.applied.load(Relaxed) >= seq).then_some(Duration::ZERO)
    }

    /// The room applied `seq`: if it is this node's last append, how long
    /// after Redis took it.
    pub fn applied(&self, progress: &Progress, seq: u64) -> Option<Duration> {
        progress.applied.store(seq, Relaxed);
        if progress.appended.load(Relaxed) != seq {
            return None;
        }
        let at = progress.appended_at_ms.load(Relaxed);
        (at != u64::MAX).then(|| Duration::from_millis(self.now_ms().saturating_sub(at)))
    }

    /// Whether this node can serve a join now, and if not why.
    pub fn readiness(&self) -> Readiness {
        self.readiness_at(self.now_ms())
    }

    /// [`Health::readiness`] as of `now` (ms since the node's start).
    fn readiness_at(&self, now: u64) -> Readiness {
        let mut reasons = Vec::new();
        let silent = Duration::from_millis(now.saturating_sub(self.renewed_ms.load(Relaxed)));
        if silent > REDIS_SILENT {
            reasons.push(format!(
                "redis unreachable: no lease renewal went through for {} s",
                silent.as_secs()
            ));
        }
        if !self.subscribed.load(Relaxed) {
            reasons.push("subscription down: reopening the pub/sub connection".to_owned());
        }
        let bound = APPLY_BOUND.as_millis() as u64;
        let stalled = self
            .rooms()
            .values()
            .filter(|p| {
                let at = p.appended_at_ms.load(Relaxed);
                p.appended.load(Relaxed) > p.applied.load(Relaxed)
                    && at != u64::MAX
                    && now.saturating_sub(at) > bound
            })
            .count();
        if stalled > 0 {
            reasons.push(format!(
                "{stalled} rooms have not applied appends Redis took {} s ago",
                APPLY_BOUND.as_secs()
            ));
        }
        Readiness {
            ready: reasons.is_empty(),
            reasons,
        }
    }

    fn rooms(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Progress>>> {
        // Each use is one insert, remove or read: a poisoned map is whole.
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Default for Health {
    fn default() -> Health {
        Health::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_room_applying_its_appends_keeps_the_node_ready() {
        let health = Health::new();
        health.renewed();
        let progress = health.watch("r");
        health.appended(&progress, 3);
        assert!(health.applied(&progress, 2).is_none());
        assert!(health.applied(&progress, 3).is_some());
        assert!(health.readiness().ready);
    }

    #[test]
    fn a_room_that_has_not_applied_its_append_past_the_bound_makes_the_node_unready() {
        let health = Health::new();
        let progress = health.watch("stuck");
        health.appended(&progress, 5);
        let later = health.now_ms() + APPLY_BOUND.as_millis() as u64 + 1000;
        health.renewed_ms.store(later, Relaxed);
        let readiness = health.readiness_at(later);
        assert!(!readiness.ready);
        assert!(readiness.reasons[0].contains("1 rooms"), "{readiness:?}");
        // Applied at last: ready again; and a room no longer hosted is
        // not watched.
        health.applied(&progress, 5);
        assert!(health.readiness_at(later).ready);
        health.appended(&progress, 6);
        assert!(!health.readiness_at(later).ready);
        health.unwatch("stuck");
        assert!(health.readiness_at(later).ready);
    }

    #[test]
    fn a_subscription_down_makes_the_node_unready_with_the_reason() {
        let health = Health::new();
        health.renewed();
        health.set_subscribed(false);
        let readiness = health.readiness();
        assert!(!readiness.ready);
        assert!(
            readiness.reasons[0].contains("subscription"),
            "{readiness:?}"
        );
    }
}
