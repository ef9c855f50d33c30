//! The save policy of a room: never a duplicate, nudges may wait a few
//! intervals, everything else at most once per save interval; writes run on
//! the blocking pool.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use tokio::task::JoinHandle;

use super::{Room, NUDGE_PX, NUDGE_WAIT_INTERVALS};
use crate::store::Snapshot;

impl Room {
    pub(super) fn mark_dirty(&mut self) {
        if self.dirty_since.is_none() {
            self.dirty_since = Some(Instant::now());
        }
        self.schedule_save();
    }

    pub(super) fn schedule_save(&mut self) {
        if self.next_save.is_none() {
            let earliest = self
                .last_save
                .map(|t| t + self.ctx.save_interval)
                .unwrap_or_else(Instant::now);
            self.next_save = Some(earliest.max(Instant::now()));
        }
    }

    /// The save policy: never a duplicate, nudges may wait a few intervals,
    /// everything else at most once per save interval.
    pub(super) fn save_tick(&mut self) {
        self.next_save = None;
        let Some(board) = &self.board else { return };
        if self.saved.as_ref() == Some(board) {
            self.ctx
                .metrics
                .saves_skipped_duplicate
                .fetch_add(1, Relaxed);
            self.dirty_since = None;
            return;
        }
        let nudge = self
            .saved
            .as_ref()
            .and_then(|s| s.max_displacement(board))
            .is_some_and(|d| d <= NUDGE_PX);
        let waited = self.dirty_since.map(|t| t.elapsed()).unwrap_or_default();
        let patience = self.ctx.save_interval * NUDGE_WAIT_INTERVALS;
        if nudge && waited < patience {
            let since = self.dirty_since.unwrap_or_else(Instant::now);
            self.next_save = Some(since + patience);
            return;
        }
        self.saving = Some(self.start_save());
    }

    pub(super) fn snapshot(&self) -> Snapshot {
        Snapshot {
            board: self.board.clone().unwrap_or_default(),
            seq: self.seq,
            epoch: self.epoch,
            ..Snapshot::default()
        }
    }

    /// Writes the board on the blocking pool; resolves to whether it worked.
    pub(super) fn start_save(&mut self) -> JoinHandle<bool> {
        let snapshot = self.snapshot();
        self.saved = Some(snapshot.board.clone());
        self.dirty_since = None;
        self.last_save = Some(Instant::now());
        let store = self.ctx.store.clone();
        let metrics = self.ctx.metrics.clone();
        let name = self.name.clone();
        tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            match store.save(&name, &snapshot) {
                Ok(()) => {
                    metrics.saves_written.fetch_add(1, Relaxed);
                    metrics
                        .save_seconds_micros
                        .fetch_add(started.elapsed().as_micros() as u64, Relaxed);
                    true
                }
                Err(e) => {
                    metrics.store_errors.fetch_add(1, Relaxed);
                    tracing::error!(room = %name, "save failed: {e}");
                    false
                }
            }
        })
    }

    /// Writes whatever is not written yet, and waits for it.
    pub(super) async fn flush(&mut self) {
        if let Some(saving) = self.saving.take() {
            if !matches!(saving.await, Ok(true)) {
                self.saved = None;
            }
        }
        self.next_save = None;
        if self.board.is_some() && self.saved != self.board {
            let _ = self.start_save().await;
        }
    }
}
