//! What bounds a room's keys in Redis: a snapshot of the room's state
//! (`attractio:{room}:snapshot`, a hash of `seq` and `state`) stored every
//! `--cluster-snapshot-every` log entries, the log trimmed behind it, and a
//! time to live of `--room-retention` on every key of the room, renewed by
//! each append and snapshot, and at least every third of it while a node
//! hosts the room with a seat taken (present or held): an open room is
//! never forgotten, however quiet.
//!
//! Redis only stores the snapshot's bytes; what is in it, and applying the
//! log after it, is the room's (`room/replica/snapshot.rs`).

use std::time::Duration;

use redis::AsyncCommands;

use super::log::Entry;
use super::{key, Cluster};

/// How much of a room Redis keeps.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// A hosted room stores a snapshot once the entries it applied cross a
    /// multiple of this many (`--cluster-snapshot-every`); as many entries
    /// are kept behind the newest snapshot, for nodes a little behind. So
    /// a room's log holds at most twice this many entries, plus those
    /// appended while a snapshot is on its way.
    pub snapshot_every: u64,
    /// A hosted room also stores a snapshot once the entries it applied
    /// since its last one hold this many bytes (`--cluster-snapshot-bytes`),
    /// and then keeps only the entries after the snapshot it replaces: what a
    /// room keeps in Redis is bounded in bytes too, about twice this plus
    /// one snapshot (whose history `--history-bytes` bounds).
    pub snapshot_bytes: u64,
    /// How long the keys of a room that nobody appends to stay
    /// (`--room-retention`).
    pub keys_for: Duration,
}

impl Retention {
    /// The first entry kept once a snapshot as of `seq` is stored.
    fn first_kept(&self, seq: u64) -> u64 {
        seq.saturating_sub(self.snapshot_every) + 1
    }

    pub(super) fn keys_for_ms(&self) -> u64 {
        self.keys_for.as_millis().min(u128::from(u64::MAX)) as u64
    }

    /// How often a hosted room with a seat taken renews its keys' time to
    /// live ([`Cluster::keep`]): a third of it, so two renewals may fail
    /// before a key expires.
    pub fn renew_every(&self) -> Duration {
        self.keys_for / 3
    }
}

/// Stores a snapshot of a room as of log entry `seq` (ARGV[2]) unless the
/// stored one is as new (several nodes store the same one; any order of
/// arrival leaves the newest), then trims the log to start at ARGV[4] or,
/// for a snapshot due by bytes (ARGV[6] = 1), after the snapshot it
/// replaces if that is later (`XTRIM MINID`, exact), and renews the time
/// to live of the room's keys. Refused for another epoch (0): the log the
/// state was built from is gone.
pub(super) const STORE_SNAPSHOT: &str = r"
if redis.call('GET', KEYS[3]) ~= ARGV[1] then return 0 end
local stored = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
if tonumber(ARGV[2]) <= stored then return 0 end
redis.call('HSET', KEYS[1], 'seq', ARGV[2], 'state', ARGV[3])
local first = tonumber(ARGV[4])
if ARGV[6] == '1' then first = math.max(first, stored + 1) end
redis.call('XTRIM', KEYS[2], 'MINID', first .. '-0')
for _, k in ipairs(KEYS) do redis.call('PEXPIRE', k, ARGV[5]) end
return 1
";

/// A room's stored snapshot: the state after applying log entry `seq`.
pub struct StoredSnapshot {
    pub seq: u64,
    pub state: Vec<u8>,
}

/// How often [`Cluster::snapshot_and_after`] reads again when a newer
/// snapshot trimmed the log between its two reads.
const READS: usize = 3;

impl Cluster {
    /// Stores `state`, `room`'s state after log entry `seq` of `epoch`, and
    /// trims the log behind it (`by_bytes`: due by its bytes, so only the
    /// entries after the snapshot before are kept); whether it was stored
    /// (not if a snapshot as new is there, or the epoch is not Redis's).
    pub async fn store_snapshot(
        &self,
        room: &str,
        (epoch, seq): (u64, u64),
        state: Vec<u8>,
        by_bytes: bool,
    ) -> redis::RedisResult<bool> {
        let mut commands = self.commands.clone();
        let stored: u64 = self
            .store_snapshot
            .key(key(room, "snapshot"))
            .key(key(room, "log"))
            .key(key(room, "epoch"))
            .key(key(room, "seq"))
            .arg(epoch)
            .arg(seq)
            .arg(state)
            .arg(self.retention.first_kept(seq))
            .arg(self.retention.keys_for_ms())
            .arg(u8::from(by_bytes))
            .invoke_async(&mut commands)
            .await?;
        Ok(stored == 1)
    }

    /// Renews the time to live of `room`'s keys (the room is in use): with
    /// `PEXPIRE`, which leaves a key that is gone gone (a lost log is found
    /// lost, never half brought back).
    pub async fn keep(&self, room: &str) -> redis::RedisResult<()> {
        let mut commands = self.commands.clone();
        let ms = self.retention.keys_for_ms();
        let mut pipe = redis::pipe();
        // One hash tag: one slot, so one pipeline under a Redis Cluster.
        for what in ["seq", "log", "epoch", "snapshot", "appenders"] {
            pipe.pexpire(key(room, what), ms as i64).ignore();
        }
        pipe.query_async::<()>(&mut commands).await
    }

    /// The log entry `room`'s stored snapshot is as of (0: none).
    pub async fn snapshot_seq(&self, room: &str) -> redis::RedisResult<u64> {
        let mut commands = self.commands.clone();
        let seq: Option<u64> = commands.hget(key(room, "snapshot"), "seq").await?;
        Ok(seq.unwrap_or(0))
    }

    /// `room`'s snapshot, if one is stored, and every entry of the log after
    /// it. Read again if a newer snapshot trimmed the entries after the one
    /// read meanwhile, so what is returned has no hole.
    pub async fn snapshot_and_after(
        &self,
        room: &str,
    ) -> anyhow::Result<(Option<StoredSnapshot>, Vec<Entry>)> {
        for _ in 0..READS {
            let mut commands = self.commands.clone();
            let (seq, state): (Option<u64>, Option<Vec<u8>>) = commands
                .hmget(key(room, "snapshot"), &["seq", "state"])
                .await?;
            let snapshot = seq
                .zip(state)
                .map(|(seq, state)| StoredSnapshot { seq, state });
            let from = snapshot.as_ref().map_or(1, |s| s.seq + 1);
            let after = self.range(room, from, None).await?;
            if after.first().is_none_or(|e| e.seq == from) {
                return Ok((snapshot, after));
            }
        }
        anyhow::bail!("the log of {room} starts past its snapshot ({READS} reads)")
    }
}
