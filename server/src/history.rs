//! A room's recent frames, numbered, so a client that dropped can be sent
//! exactly what it missed. Bounded by count, by age, by bytes per room and
//! by bytes across the server ([`HistoryBudget`]); the oldest frames go
//! first, so what is kept is always an unbroken run up to the newest.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::ws::Text;
use protocol::ClientId;

use crate::store::StoredFrame;

#[derive(Clone)]
struct Entry {
    seq: u64,
    /// Who caused it: they did not receive it live, so it is not replayed
    /// to them. `None` for the server's own frames.
    sender: Option<ClientId>,
    /// A private message: only its recipient gets it.
    to: Option<ClientId>,
    at_ms: u64,
    /// `at_ms` on this process's clock, for the room's expiry timer.
    at: Instant,
    text: Text,
}

/// How much history a room may keep (`--history`, `--history-bytes`) and
/// the budget every room's history shares (`--history-total-bytes`).
pub struct HistoryLimits {
    /// Frames per room.
    pub frames: usize,
    /// Bytes of frame text (the JSON as sent) per room.
    pub bytes: usize,
    /// Shared by every room's history.
    pub budget: Arc<HistoryBudget>,
}

/// The bytes of history held by all rooms together, against one limit.
///
/// A room that appends while the total is over the limit drops its *own*
/// oldest frames until the total fits (or it has none left, the new frame
/// included). It never touches another room's history: that belongs to
/// another actor, and reaching into it would need a lock that every append
/// of every room would contend on. This is fair enough: the room that
/// pushes the total up is the one that pays, a quiet room keeps what it
/// has only for the resume window (at most `--history-bytes`; the room's
/// timer expires its frames by age even when it sends nothing, see
/// [`History::expires_at`], and all of it is freed when the room ends),
/// and a room that finds no budget left answers a resume with an honest
/// `recovered:false`. It is bounded: an append that does not fit leaves
/// the total where it was, so the total exceeds the limit only between one
/// room's append and its own trimming, by at most one frame per room
/// appending at that instant.
#[derive(Debug)]
pub struct HistoryBudget {
    limit: usize,
    held: AtomicUsize,
}

impl HistoryBudget {
    /// A budget of `limit` bytes of frame text across all rooms.
    pub fn new(limit: usize) -> HistoryBudget {
        HistoryBudget {
            limit,
            held: AtomicUsize::new(0),
        }
    }

    /// Bytes of frame text held by every room's history right now.
    pub fn held(&self) -> usize {
        self.held.load(Relaxed)
    }

    fn over(&self) -> bool {
        self.held() > self.limit
    }
}

/// One room's numbered frames, oldest first, within its [`HistoryLimits`].
pub struct History {
    entries: VecDeque<Entry>,
    max_len: usize,
    max_bytes: usize,
    max_age: Duration,
    /// Bytes of the entries' texts, counted in `budget` too.
    bytes: usize,
    budget: Arc<HistoryBudget>,
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl History {
    /// An empty history within `limits`; frames older than `max_age` (the
    /// resume window) are of no use to anyone and are dropped too.
    pub fn new(limits: &HistoryLimits, max_age: Duration) -> History {
        History {
            entries: VecDeque::new(),
            max_len: limits.frames,
            max_bytes: limits.bytes,
            max_age,
            bytes: 0,
            budget: limits.budget.clone(),
        }
    }

    /// Keeps frame `seq` (sent by `sender`, for `to` only if private), then
    /// drops the oldest frames until every bound holds again.
    pub fn push(&mut self, seq: u64, sender: Option<ClientId>, to: Option<ClientId>, text: Text) {
        let at_ms = now_ms();
        self.keep(Entry {
            seq,
            sender,
            to,
            at_ms,
            at: Instant::now(),
            text,
        });
        self.trim(at_ms);
    }

    /// When the oldest frame kept is older than the resume window, so no
    /// use to anyone: the room's timer calls [`History::expire`] then,
    /// whether or not the room says anything more, so a room that went
    /// quiet does not hold the shared budget.
    pub fn expires_at(&self) -> Option<Instant> {
        self.entries.front().map(|e| e.at + self.max_age)
    }

    /// Drops the frames older than the resume window.
    pub fn expire(&mut self) {
        self.trim(now_ms());
    }

    fn keep(&mut self, entry: Entry) {
        let len = entry.text.as_bytes().len();
        self.bytes += len;
        self.budget.held.fetch_add(len, Relaxed);
        self.entries.push_back(entry);
    }

    /// Drops the oldest frames until every bound holds again. A frame too
    /// big for the bounds goes too, so no hole is ever left behind a kept
    /// frame: [`History::after`] can then tell from the first kept `seq`
    /// alone whether it reaches back far enough.
    fn trim(&mut self, now_ms: u64) {
        let oldest = now_ms.saturating_sub(self.max_age.as_millis() as u64);
        while let Some(first) = self.entries.front() {
            let over = self.entries.len() > self.max_len
                || self.bytes > self.max_bytes
                || first.at_ms < oldest
                || self.budget.over();
            if !over {
                break;
            }
            let len = first.text.as_bytes().len();
            self.entries.pop_front();
            self.bytes -= len;
            self.budget.held.fetch_sub(len, Relaxed);
        }
    }

    /// Bytes of frame text this room keeps.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Every frame after `last_seq` meant for `id`, in order, if history
    /// still reaches back that far (`current` is the room's latest seq).
    pub fn after(&self, last_seq: u64, current: u64, id: ClientId) -> Option<Vec<Text>> {
        if last_seq > current {
            return None;
        }
        if last_seq < current {
            let first = self.entries.front()?.seq;
            if first > last_seq + 1 {
                return None;
            }
        }
        Some(
            self.entries
                .iter()
                .filter(|e| e.seq > last_seq)
                .filter(|e| match e.to {
                    Some(to) => to == id,
                    None => e.sender != Some(id),
                })
                .map(|e| e.text.clone())
                .collect(),
        )
    }

    /// At most `limit` frames after `after` that every member was sent
    /// (not private ones), oldest first, for the server API; or, if the
    /// frames right after `after` are no longer kept (or `after` is past
    /// `current`), the first `seq` that is (`current + 1` when none is).
    pub fn public_after(&self, after: u64, current: u64, limit: usize) -> Result<Vec<Text>, u64> {
        let oldest = self.entries.front().map_or(current + 1, |e| e.seq);
        // Past the room's latest frame: numbers of another epoch.
        if after > current || (after < current && oldest > after + 1) {
            return Err(oldest);
        }
        Ok(self
            .entries
            .iter()
            .filter(|e| e.seq > after && e.to.is_none())
            .take(limit)
            .map(|e| e.text.clone())
            .collect())
    }

    /// The kept frames as stored: the same frames, so a saved record's
    /// history is bounded by the same limits (its text, escaped as a JSON
    /// string, takes at most twice `--history-bytes`).
    pub fn to_stored(&self) -> Vec<StoredFrame> {
        self.kept().to_stored()
    }

    /// The kept frames as they are now, sharing their text (a reference
    /// count each, not a copy): a room hands this to another task, which
    /// makes the [`StoredFrame`]s off the room's turn.
    pub fn kept(&self) -> Kept {
        Kept(self.entries.iter().cloned().collect())
    }

    /// Takes the stored frames back, within today's limits: a record written
    /// with larger ones (or before there were byte limits) keeps only its
    /// newest frames that fit.
    pub fn restore(&mut self, frames: Vec<StoredFrame>) {
        self.clear();
        let (now_ms, now) = (now_ms(), Instant::now());
        for f in frames {
            let age = Duration::from_millis(now_ms.saturating_sub(f.at_ms));
            self.keep(Entry {
                seq: f.seq,
                sender: (f.sender != 0).then_some(ClientId(f.sender)),
                to: f.to.map(ClientId),
                at_ms: f.at_ms,
                at: now.checked_sub(age).unwrap_or(now),
                text: Text::from(f.text),
            });
        }
        self.trim(now_ms);
    }

    fn clear(&mut self) {
        self.budget.held.fetch_sub(self.bytes, Relaxed);
        self.bytes = 0;
        self.entries.clear();
    }
}

/// A room's history as it was at one moment (see [`History::kept`]).
pub struct Kept(Vec<Entry>);

impl Kept {
    /// The frames as stored, copying their text.
    pub fn to_stored(&self) -> Vec<StoredFrame> {
        self.0
            .iter()
            .map(|e| StoredFrame {
                seq: e.seq,
                sender: e.sender.map_or(0, |c| c.0),
                to: e.to.map(|c| c.0),
                at_ms: e.at_ms,
                text: e.text.to_string(),
            })
            .collect()
    }
}

impl Drop for History {
    /// A room that ends gives its bytes back to the budget.
    fn drop(&mut self) {
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(frames: usize, bytes: usize, total: usize) -> HistoryLimits {
        HistoryLimits {
            frames,
            bytes,
            budget: Arc::new(HistoryBudget::new(total)),
        }
    }

    fn filled() -> History {
        let mut h = History::new(&limits(3, 1 << 20, 1 << 20), Duration::from_secs(60));
        for seq in 1..=5 {
            let sender = if seq == 4 { Some(ClientId(9)) } else { None };
            h.push(seq, sender, None, Text::from(format!("f{seq}")));
        }
        h
    }

    /// A frame of exactly `len` bytes.
    fn frame(seq: u64, len: usize) -> Text {
        let mut text = format!("{seq}:");
        text.push_str(&"x".repeat(len - text.len()));
        Text::from(text)
    }

    fn pushed(h: &mut History, seqs: std::ops::RangeInclusive<u64>, len: usize) {
        for seq in seqs {
            h.push(seq, None, None, frame(seq, len));
        }
    }

    #[test]
    fn replays_what_a_client_missed_but_not_its_own_frames() {
        let h = filled();
        let got = h.after(2, 5, ClientId(9)).unwrap();
        assert_eq!(got, vec![Text::from("f3"), Text::from("f5")]);
        assert_eq!(h.after(5, 5, ClientId(9)).unwrap(), Vec::<Text>::new());
    }

    #[test]
    fn says_so_when_history_no_longer_reaches_back() {
        let h = filled();
        assert!(h.after(1, 5, ClientId(1)).is_none(), "frame 2 is gone");
        assert!(
            h.after(6, 5, ClientId(1)).is_none(),
            "a future seq is another epoch"
        );
    }

    #[test]
    fn private_frames_go_only_to_their_recipient() {
        let mut h = History::new(&limits(10, 1 << 20, 1 << 20), Duration::from_secs(60));
        h.push(1, Some(ClientId(1)), Some(ClientId(2)), Text::from("pm"));
        assert_eq!(h.after(0, 1, ClientId(2)).unwrap().len(), 1);
        assert_eq!(h.after(0, 1, ClientId(3)).unwrap().len(), 0);
    }

    #[test]
    fn a_room_keeps_its_newest_frames_within_its_bytes() {
        // 512 chat lines of 65,000 bytes (the flood) into 1 MiB.
        let mut h = History::new(&limits(512, 1 << 20, 256 << 20), Duration::from_secs(60));
        pushed(&mut h, 1..=512, 65_000);
        assert_eq!(h.bytes(), 16 * 65_000, "16 frames fit in 1 MiB");
        assert!(
            h.after(495, 512, ClientId(1)).is_none(),
            "frame 496 is gone"
        );
        let got = h.after(496, 512, ClientId(1)).unwrap();
        assert_eq!(
            got,
            (497..=512).map(|s| frame(s, 65_000)).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_frame_bigger_than_the_bound_is_not_kept_and_leaves_no_hole() {
        let mut h = History::new(&limits(10, 100, 1 << 20), Duration::from_secs(60));
        pushed(&mut h, 1..=2, 40);
        h.push(3, None, None, frame(3, 101));
        assert_eq!(h.bytes(), 0, "the older frames go first, then the big one");
        assert!(h.after(2, 3, ClientId(1)).is_none(), "frame 3 was not kept");
        assert_eq!(h.after(3, 3, ClientId(1)), Some(vec![]));
        pushed(&mut h, 4..=4, 40);
        assert!(h.after(2, 4, ClientId(1)).is_none());
        assert_eq!(h.after(3, 4, ClientId(1)), Some(vec![frame(4, 40)]));
    }

    #[test]
    fn over_the_total_budget_the_appending_room_drops_its_own_oldest() {
        let budget = limits(100, 1000, 1000);
        let (mut quiet, mut busy) = (
            History::new(&budget, Duration::from_secs(60)),
            History::new(&budget, Duration::from_secs(60)),
        );
        pushed(&mut quiet, 1..=6, 100);
        pushed(&mut busy, 1..=10, 100);
        assert_eq!(quiet.bytes(), 600, "the quiet room keeps all it had");
        assert_eq!(busy.bytes(), 400, "the busy room keeps what is left");
        assert_eq!(budget.budget.held(), 1000);
        assert_eq!(busy.after(6, 10, ClientId(1)).unwrap().len(), 4);
        assert!(busy.after(5, 10, ClientId(1)).is_none());
        drop(quiet);
        assert_eq!(
            budget.budget.held(),
            400,
            "an ended room gives its bytes back"
        );
        pushed(&mut busy, 11..=16, 100);
        assert_eq!(busy.bytes(), 1000);
    }

    #[test]
    fn restored_frames_obey_todays_limits() {
        let mut big = History::new(&limits(512, 1 << 20, 1 << 20), Duration::from_secs(60));
        pushed(&mut big, 1..=10, 100);
        let small = limits(512, 450, 1 << 20);
        let mut h = History::new(&small, Duration::from_secs(60));
        h.restore(big.to_stored());
        assert_eq!(h.bytes(), 400);
        assert_eq!(small.budget.held(), 400);
        assert_eq!(h.after(6, 10, ClientId(1)).unwrap().len(), 4);
        assert!(h.after(5, 10, ClientId(1)).is_none());
    }
}
