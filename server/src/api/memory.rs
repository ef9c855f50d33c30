//! What the server API remembers between requests, bounded: the publishes
//! of the idempotency window, and the rejoin bans of disconnects.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use protocol::api::Published;
use protocol::RoomName;
use tokio::sync::OnceCell;

use crate::admission::AddressKey;

/// The publishes of the last `window`, by room and `idempotencyKey`, at
/// most `max` of them (the oldest forgotten first).
pub(super) struct Idempotency {
    pub(super) window: Duration,
    pub(super) max: usize,
    pub(super) remembered: Mutex<Remembered>,
}

pub(super) type Publish = Arc<OnceCell<Published>>;

#[derive(Default)]
pub(super) struct Remembered {
    by_key: HashMap<(RoomName, String), (Instant, Publish)>,
    /// Oldest first; an entry whose key was remembered again since (after
    /// a room was closed) is skipped by its time.
    order: VecDeque<(Instant, (RoomName, String))>,
}

impl Idempotency {
    /// The publish of `key` in `room`: the one of the window, or a new one.
    pub(super) fn remember(&self, room: &RoomName, key: String) -> Publish {
        let now = Instant::now();
        let mut r = self.remembered.lock().unwrap_or_else(|p| p.into_inner());
        while let Some((at, _)) = r.order.front() {
            if now.duration_since(*at) < self.window && r.order.len() < self.max {
                break;
            }
            let (at, k) = r.order.pop_front().expect("looked");
            if r.by_key.get(&k).is_some_and(|(t, _)| *t == at) {
                r.by_key.remove(&k);
            }
        }
        let k = (room.clone(), key);
        if let Some((_, publish)) = r.by_key.get(&k) {
            return publish.clone();
        }
        let publish = Publish::default();
        r.by_key.insert(k.clone(), (now, publish.clone()));
        r.order.push_back((now, k));
        publish
    }

    /// A closed room starts over: its keys are free again.
    pub(super) fn forget_room(&self, room: &RoomName) {
        let mut r = self.remembered.lock().unwrap_or_else(|p| p.into_inner());
        r.by_key.retain(|(name, _), _| name != room);
    }
}

/// Who a ban is for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum Banned {
    User(String),
    Address(AddressKey),
}

/// Bans by room and user or address, each until a moment, at most `max`
/// of them (over it, the ones that end first are let go early).
pub(super) struct Bans {
    pub(super) longest: Duration,
    pub(super) max: usize,
    pub(super) until: Mutex<HashMap<(RoomName, Banned), Instant>>,
}

impl Bans {
    pub(super) fn add(&self, who: (RoomName, Banned), ban: Duration) {
        let now = Instant::now();
        let mut until = self.until.lock().unwrap_or_else(|p| p.into_inner());
        until.retain(|_, end| *end > now);
        if until.len() >= self.max {
            if let Some(first) = until
                .iter()
                .min_by_key(|(_, end)| **end)
                .map(|(k, _)| k.clone())
            {
                until.remove(&first);
            }
        }
        let end = now + ban.min(self.longest);
        let slot = until.entry(who).or_insert(end);
        *slot = (*slot).max(end);
    }

    pub(super) fn left(&self, who: &(RoomName, Banned)) -> Option<Duration> {
        let until = self.until.lock().unwrap_or_else(|p| p.into_inner());
        let left = until.get(who)?.saturating_duration_since(Instant::now());
        (!left.is_zero()).then_some(left)
    }
}
