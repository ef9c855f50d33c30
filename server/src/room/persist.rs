//! The save policy of a room: never a duplicate, nudges may wait a few
//! intervals, everything else at most once per save interval; writes run on
//! the blocking pool.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use tokio::task::JoinHandle;

use super::{Room, NUDGE_PX, NUDGE_WAIT_INTERVALS};
use crate::history::now_ms;
use crate::store::{Snapshot, StoredFrame, StoredSession};

/// Bytes of `value` as JSON, counted without keeping them.
fn json_len(value: &impl serde::Serialize) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing to a counter cannot fail, and these types always serialise.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

impl Room {
    pub(super) fn mark_dirty(&mut self) {
        if self.ctx.cluster.is_some() {
            return; // cluster hook: the room's log in Redis is its record
        }
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
        self.saving = Some(self.start_save(false));
    }

    /// The room as stored. `clean` marks a final write: seq, history and
    /// seats are complete.
    fn snapshot(&self, clean: bool) -> Snapshot {
        let now = Instant::now();
        let now_ms = now_ms();
        Snapshot {
            board: self.board.clone().unwrap_or_default(),
            seq: self.seq,
            epoch: self.epoch,
            clean,
            // History is for resuming into a held seat: with none held,
            // nobody can ever use it, so it is not stored.
            history: if clean && self.seats.iter().any(|s| s.away_until.is_some()) {
                self.stored_history()
            } else {
                Vec::new()
            },
            sessions: self
                .seats
                .iter()
                .filter_map(|s| {
                    let left = s.away_until?.saturating_duration_since(now);
                    Some(StoredSession {
                        id: s.member.id.0,
                        name: s.member.name.clone(),
                        color: s.member.color.clone(),
                        access: s.access.clone(),
                        generation: s.generation,
                        hold_until_ms: now_ms + left.as_millis() as u64,
                        last_op: s.last_op,
                        joined_seq: s.joined,
                    })
                })
                .collect(),
        }
    }

    /// The newest frames of history that fit in what the room may store
    /// (`--max-room-stored-bytes`) beside its board, as stored (JSON, so
    /// escaping counts): an unbroken run up to the newest, so a resume
    /// after a restart is recovered or honestly not. Only a final write
    /// keeps history, so this runs once per room's end.
    fn stored_history(&self) -> Vec<StoredFrame> {
        let board = self.board.as_ref().map_or(0, json_len);
        let mut room = self.ctx.max_room_stored_bytes.saturating_sub(board);
        let mut frames = self.history.to_stored();
        let mut first = frames.len();
        for (i, frame) in frames.iter().enumerate().rev() {
            let len = json_len(frame);
            if len > room {
                break;
            }
            room -= len;
            first = i;
        }
        frames.drain(..first);
        frames
    }

    /// Writes the room on the blocking pool; resolves to whether it worked.
    pub(super) fn start_save(&mut self, clean: bool) -> JoinHandle<bool> {
        let snapshot = self.snapshot(clean);
        self.saved = Some(snapshot.board.clone());
        self.saved_seq = self.seq;
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

    /// The final write when the room ends (last leave or shutdown): waits
    /// for a save in flight, then writes whatever is not stored yet.
    pub(super) async fn flush(&mut self) {
        if self.ctx.cluster.is_some() {
            return; // cluster hook: the room's log in Redis is its record
        }
        if let Some(saving) = self.saving.take() {
            if !matches!(saving.await, Ok(true)) {
                self.saved = None;
            }
        }
        self.next_save = None;
        let board_changed = self.board.is_some() && self.saved != self.board;
        let history_changed = self.seq != self.saved_seq && self.board.is_some();
        if board_changed || history_changed || !self.seats.is_empty() {
            let _ = self.start_save(true).await;
        }
    }
}
