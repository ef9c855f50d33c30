//! What a hosted room checks every `CHECK_EVERY`: the log it was built
//! from still exists in Redis, nothing the channel lost is left unapplied,
//! the nodes its members are on still hold their leases; and, while a seat
//! is taken, that Redis keeps the room (its keys' time to live renewed).

use std::sync::atomic::Ordering::Relaxed;

use super::super::Room;
use crate::cluster::log::{node_of, Op};
use crate::cluster::STEADY_BEFORE_DECLARING;

impl Room {
    /// Redis lost the room's log (restarted empty, failed over with loss):
    /// the room ends here, its members' sockets closed so that they resume
    /// on a room started over with a new epoch (`recovered:false`, a fresh
    /// board), never across a hole. Every hosting node finds out alike.
    pub(in crate::room) fn log_lost(&mut self) {
        tracing::error!(room = %self.name, "the room's log in Redis was lost: starting over");
        if let Some(replica) = &self.replica {
            let started_over = &replica.cluster.metrics.rooms_started_over;
            started_over.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        for seat in self.seats.drain(..) {
            if let Some(outbox) = &seat.outbox {
                outbox.evict();
            }
        }
        self.state_request = None;
        self.presence_due = None;
        self.members.store(0, std::sync::atomic::Ordering::Relaxed);
        self.seats_taken
            .store(0, std::sync::atomic::Ordering::Relaxed);
        if let Some(replica) = &mut self.replica {
            replica.pending.clear();
            replica.early.clear();
        }
    }

    /// The room's log in Redis ends before what this node applied: Redis
    /// lost its tail (a restart that kept only what was synced, a failover
    /// to a replica that lagged), and its next `seq`s would name entries
    /// the nodes applied already, with other contents. A new epoch makes
    /// every node start the room over from the log that is left, and tells
    /// resuming clients they did not recover (they get the board anew and
    /// send again what came after their `lastOp`).
    pub(in crate::room) async fn start_epoch_over(&mut self) {
        let Some(replica) = &self.replica else { return };
        tracing::error!(
            room = %self.name,
            applied = replica.applied,
            "the room's log in Redis lost its tail: starting a new epoch"
        );
        if let Err(e) = replica
            .cluster
            .new_epoch(self.name.as_str(), self.epoch)
            .await
        {
            tracing::warn!(room = %self.name, "starting a new epoch: {e}");
        }
    }

    /// Reads what the log has past the last entry applied (what the
    /// channel lost), and proposes as gone every node hosting members here
    /// whose lease lapsed.
    pub(in crate::room) async fn check(&mut self) {
        let Some(replica) = &self.replica else { return };
        let (cluster, mut from) = (replica.cluster.clone(), replica.applied + 1);
        match cluster.epoch(self.name.as_str()).await {
            Ok((epoch, _)) if epoch != Some(self.epoch) => return self.log_lost(),
            Ok((_, last)) if last < from - 1 => {
                self.start_epoch_over().await;
                return self.log_lost();
            }
            Ok(_) => {}
            Err(e) => {
                cluster.metrics.redis_errors.fetch_add(1, Relaxed);
                tracing::warn!(room = %self.name, "reading the epoch: {e}");
            }
        }
        // Everything past what was applied; again while a read brought
        // more than the room holds early (the rest was let go).
        loop {
            let read = match cluster.range(self.name.as_str(), from, None).await {
                Ok(entries) => {
                    let read = entries.len() as u64;
                    if read > 0 {
                        cluster.metrics.holes_read.fetch_add(1, Relaxed);
                    }
                    self.take_read(from, false, entries).await;
                    read
                }
                Err(e) => {
                    cluster.metrics.redis_errors.fetch_add(1, Relaxed);
                    tracing::warn!(room = %self.name, "reading the log: {e}");
                    break;
                }
            };
            self.apply_ready();
            match &self.replica {
                Some(r) if r.applied >= from && r.applied + 1 - from < read => from = r.applied + 1,
                _ => break,
            }
        }
        self.count_members();
        self.keep_while_used().await;
        self.declare_gone_nodes().await;
    }

    /// Proposes as gone every node hosting members here whose lease
    /// lapsed, with when its members dropped (when it last said it was
    /// alive, `cluster/rooms.rs`).
    pub(in crate::room) async fn declare_gone_nodes(&mut self) {
        let Some(replica) = &self.replica else { return };
        let cluster = replica.cluster.clone();
        let mut nodes: Vec<u64> = self
            .seats
            .iter()
            .filter(|s| s.outbox.is_some())
            .map(|s| node_of(s.conn))
            .filter(|n| *n != cluster.node)
            .collect();
        nodes.sort_unstable();
        nodes.dedup();
        // Right after Redis (or this node) stood still, every lease may
        // have lapsed with no node dead: the others are given time to
        // renew theirs before a lapse counts.
        if !nodes.is_empty() && cluster.steady_for() < STEADY_BEFORE_DECLARING {
            tracing::warn!(room = %self.name, "Redis was unreachable or slow just now: no node declared gone yet");
            return;
        }
        for node in nodes {
            if cluster.gone(node).await {
                tracing::warn!(room = %self.name, node, "node's lease lapsed: its members drop");
                cluster.metrics.nodes_declared_gone.fetch_add(1, Relaxed);
                let dropped_ms = cluster.dropped_at(node).await;
                self.propose(Op::NodeGone {
                    node,
                    dropped_ms,
                    at_ms: Some(crate::history::now_ms()),
                });
            }
        }
    }

    /// A room with a seat taken, present or held, is in use however quiet
    /// it is: its keys' time to live is renewed every third of
    /// `--room-retention`, so only a room nobody is in is forgotten.
    async fn keep_while_used(&mut self) {
        let Some(replica) = &mut self.replica else {
            return;
        };
        let every = replica.cluster.retention.renew_every();
        if self.seats.is_empty() || replica.kept.elapsed() < every {
            return;
        }
        match replica.cluster.keep(self.name.as_str()).await {
            Ok(()) => replica.kept = std::time::Instant::now(),
            Err(e) => {
                replica.cluster.metrics.redis_errors.fetch_add(1, Relaxed);
                tracing::warn!(room = %self.name, "renewing the room's keys: {e}");
            }
        }
    }
}
