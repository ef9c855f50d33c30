//! Which joins create a room, for `--new-rooms-per-minute` in cluster
//! mode: a room exists if any node hosts it or did within
//! `--room-retention` (its keys are in Redis), and the rooms an address
//! creates are counted for the whole cluster, not per node (the count of
//! one server is `admission.rs`'s).
//!
//! Keys: `attractio:created:<address>` (a counter, one minute from the
//! address's first creation), the address spelled as its bytes in hex.

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
}
