//! The cluster's list of rooms, for `/api/rooms` and `roomFull`'s
//! suggestions. Every node hosting a room records its live members and its
//! seats taken (present or held for a resume) as of the room's log `seq`,
//! and every few seconds says which rooms it still hosts. A room that no
//! live node hosts any more (every node hosting it died) drops out of the
//! list by itself, instead of being listed forever with the members it had
//! (the stale listings Colyseus has after unclean exits; SCALE-OUT.md).
//!
//! Keys, all with the hash tag `{rooms}` (one slot under Redis Cluster):
//! `attractio:{rooms}:members` and `…:seats` (room → count), `…:seq`
//! (room → the log `seq` the counts are as of), `…:alive` (a sorted set:
//! room → until when, in ms since the Unix epoch, a node vouched for it).

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::Script;

use super::Cluster;

/// How often a node says which rooms it hosts, and how long that holds:
/// a room whose every node died leaves the list within `ALIVE_FOR`.
pub const ALIVE_EVERY: Duration = Duration::from_secs(2);
const ALIVE_FOR: Duration = Duration::from_secs(6);

const MEMBERS: &str = "attractio:{rooms}:members";
const SEATS: &str = "attractio:{rooms}:seats";
const SEQ: &str = "attractio:{rooms}:seq";
const ALIVE: &str = "attractio:{rooms}:alive";

static RECORD_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(RECORD));
static VOUCH_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(VOUCH));
static LIST_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(LIST));

/// Records room ARGV[1]'s counts as of its log's `seq` ARGV[2]: ARGV[3]
/// live members, ARGV[4] seats, vouched for until ARGV[5] ms. An older
/// record than the one there is ignored (every hosting node tells it; any
/// order of arrival leaves the newest). No seat left: the room leaves the
/// list.
const RECORD: &str = r"
local last = tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0')
if tonumber(ARGV[2]) < last then return 0 end
if ARGV[4] == '0' then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('HDEL', KEYS[3], ARGV[1])
  redis.call('ZREM', KEYS[4], ARGV[1])
  return 1
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[4])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[4], 'GT', ARGV[5], ARGV[1])
return 1
";

/// Rooms ARGV[2..] are hosted by a live node until ARGV[1] ms; only rooms
/// still listed (`XX`: one whose last seat went is not brought back).
const VOUCH: &str = r"
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], 'XX', 'GT', ARGV[1], ARGV[i])
end
return 0
";

/// Drops the rooms no live node vouched for since ARGV[1] ms, then
/// returns the rest: `[room, members, seats, room, members, seats, …]`.
const LIST: &str = r"
local gone = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', '(' .. ARGV[1])
for _, room in ipairs(gone) do
  redis.call('HDEL', KEYS[1], room)
  redis.call('HDEL', KEYS[2], room)
  redis.call('HDEL', KEYS[3], room)
  redis.call('ZREM', KEYS[4], room)
end
local out = {}
for _, room in ipairs(redis.call('ZRANGE', KEYS[4], 0, -1)) do
  out[#out + 1] = room
  out[#out + 1] = redis.call('HGET', KEYS[1], room) or '0'
  out[#out + 1] = redis.call('HGET', KEYS[2], room) or '0'
end
return out
";

/// A room of the cluster's list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub room: String,
    /// Members present (their socket on some node).
    pub members: usize,
    /// Seats taken, present or held for a resume.
    pub seats: usize,
}

fn now_ms() -> u64 {
    crate::history::now_ms()
}

impl Cluster {
    /// Records that `room` has `members` live members and `seats` seats
    /// taken as of its log's `seq` (logged, not returned, on an error: the
    /// next change or the next node records it again).
    pub async fn count_members(&self, room: &str, seq: u64, members: usize, seats: usize) {
        let mut commands = self.commands.clone();
        let until = now_ms() + ALIVE_FOR.as_millis() as u64;
        let told: redis::RedisResult<u64> = RECORD_SCRIPT
            .key(MEMBERS)
            .key(SEATS)
            .key(SEQ)
            .key(ALIVE)
            .arg(room)
            .arg(seq)
            .arg(members)
            .arg(seats)
            .arg(until)
            .invoke_async(&mut commands)
            .await;
        if let Err(e) = told {
            tracing::warn!(room, "recording the member count: {e}");
        }
    }

    /// Says every [`ALIVE_EVERY`], for as long as the process lives, which
    /// rooms this node hosts.
    pub fn vouch_for_hosted_rooms(self: &Arc<Self>) {
        let cluster = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(ALIVE_EVERY);
            loop {
                ticks.tick().await;
                let hosted: Vec<String> = cluster
                    .routes()
                    .keys()
                    .filter_map(|channel| super::room_of(channel).map(str::to_owned))
                    .collect();
                if let Err(e) = cluster.vouch(&hosted).await {
                    tracing::warn!("saying which rooms this node hosts: {e}");
                }
            }
        });
    }

    /// Says that this node still hosts `rooms`.
    async fn vouch(&self, rooms: &[String]) -> redis::RedisResult<()> {
        let until = now_ms() + ALIVE_FOR.as_millis() as u64;
        // Bounded calls: a script's arguments are held in memory at once.
        for chunk in rooms.chunks(1000) {
            let mut commands = self.commands.clone();
            let mut vouch = VOUCH_SCRIPT.key(ALIVE);
            vouch.arg(until);
            for room in chunk {
                vouch.arg(room);
            }
            vouch.invoke_async::<()>(&mut commands).await?;
        }
        Ok(())
    }

    /// Every room of the cluster that a live node hosts, with its counts,
    /// busiest first.
    pub async fn rooms(&self) -> redis::RedisResult<Vec<Listed>> {
        let mut commands = self.commands.clone();
        let flat: Vec<(String, usize, usize)> = LIST_SCRIPT
            .key(MEMBERS)
            .key(SEATS)
            .key(SEQ)
            .key(ALIVE)
            .arg(now_ms())
            .invoke_async(&mut commands)
            .await?;
        let mut list: Vec<Listed> = flat
            .into_iter()
            .map(|(room, members, seats)| Listed {
                room,
                members,
                seats,
            })
            .collect();
        list.sort_by(|a, b| b.members.cmp(&a.members).then(a.room.cmp(&b.room)));
        Ok(list)
    }
}
