//! What the server API remembers between requests, bounded: the rejoin
//! bans of disconnects. (The publishes of the idempotency window are the
//! room's: `room/api.rs`.)

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use protocol::RoomName;

use crate::admission::AddressKey;

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
