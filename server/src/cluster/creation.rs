//! Which joins create a room, for `--new-rooms-per-minute` in cluster
//! mode: a room exists if any node hosts it or did within
//! `--room-retention` (its keys are in Redis), and the rooms an address
//! creates are counted for the whole cluster, not per node (the count of
//! one server is `admission.rs`'s).
//!
//! The rooms an address created within `--room-retention` are bounded
//! too (`--max-stored-rooms-per-ip`, for the whole cluster): the
//! per-minute count alone lets one address make Redis keep 30 rooms a
//! minute for the whole retention.
//!
//! Keys: `attractio:created:<address>` (a counter, one minute from the
//! address's first creation) and `attractio:kept:<address>` (a sorted set:
//! the rooms it created, scored by when, gone a retention after the
//! newest), the address spelled as its bytes in hex.

use std::sync::LazyLock;
use std::time::Duration;

use redis::Script;

use super::Cluster;

/// Counts a room creation of one address for the whole cluster: a counter
/// per address that lives one minute from its first creation (a fixed
/// window). ARGV[1]: how many the address may create in it, ARGV[2]: the
/// window in ms. Returns 0 if allowed, else the ms until the window ends.
const CREATE: &str = r"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if n <= tonumber(ARGV[1]) then return 0 end
redis.call('DECR', KEYS[1])
local left = redis.call('PTTL', KEYS[1])
if left == -1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return tonumber(ARGV[2])
end
if left < 1 then return 1 end
return left
";

static CREATE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(CREATE));

/// Counts a room among those one address created within the retention:
/// forgets the ones created longer ago (a room nobody used for the
/// retention is gone from Redis by then), refuses a new one past the
/// bound, else records it. One key (one slot on a Redis Cluster), one
/// script, so two nodes cannot both take the last place. ARGV[1]: now in
/// ms, ARGV[2]: the retention in ms, ARGV[3]: how many the address may
/// keep, ARGV[4]: the room. Returns 1 if kept, 0 if refused.
const KEEP: &str = r"
local now = tonumber(ARGV[1])
local retention = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - retention)
if not redis.call('ZSCORE', KEYS[1], ARGV[4])
   and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  return 0
end
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('PEXPIRE', KEYS[1], retention)
return 1
";

static KEEP_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(KEEP));

/// How long an address's count of created rooms lasts.
const CREATION_WINDOW: Duration = Duration::from_secs(60);

impl Cluster {
    /// Whether `room` exists anywhere in the cluster: some node hosts it or
    /// did within `--room-retention` (its epoch and log are in Redis).
    /// Joining or resuming it creates nothing.
    pub async fn room_exists(&self, room: &str) -> redis::RedisResult<bool> {
        let mut commands = self.commands.clone();
        // One slot (the room's hash tag): one command on a Redis Cluster.
        let n: u64 = redis::cmd("EXISTS")
            .arg(super::key(room, "epoch"))
            .arg(super::key(room, "seq"))
            .arg(super::key(room, "snapshot"))
            .query_async(&mut commands)
            .await?;
        Ok(n > 0)
    }

    /// Takes one room creation of `address` from the cluster's count of it
    /// (`per_minute` in a minute, every node together), or says how long
    /// until the next one is allowed. The key is made from the parsed
    /// address (its bytes in hex), never from anything a client sent.
    pub async fn create_room(
        &self,
        address: crate::admission::AddressKey,
        per_minute: u32,
    ) -> redis::RedisResult<Result<(), Duration>> {
        let mut commands = self.commands.clone();
        let wait_ms: u64 = CREATE_SCRIPT
            .key(format!("attractio:created:{}", address.hex()))
            .arg(per_minute)
            .arg(CREATION_WINDOW.as_millis() as u64)
            .invoke_async(&mut commands)
            .await?;
        Ok(match wait_ms {
            0 => Ok(()),
            ms => Err(Duration::from_millis(ms)),
        })
    }

    /// Counts `room` among the rooms `address` created within
    /// `--room-retention`, for the whole cluster: `false` (and not counted)
    /// if the address has `max` of them already (`--max-stored-rooms-per-ip`).
    /// The key is made from the parsed address, the room is only a member.
    pub async fn keep_room(
        &self,
        address: crate::admission::AddressKey,
        room: &str,
        max: usize,
    ) -> redis::RedisResult<bool> {
        let mut commands = self.commands.clone();
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        let kept: u8 = KEEP_SCRIPT
            .key(format!("attractio:kept:{}", address.hex()))
            .arg(now_ms)
            .arg(self.retention.keys_for_ms())
            .arg(max)
            .arg(room)
            .invoke_async(&mut commands)
            .await?;
        Ok(kept == 1)
    }
}
