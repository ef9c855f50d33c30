//! The cluster's list of rooms, for `/api/rooms` and `roomFull`'s
//! suggestions, with each room's live members and seats taken (present or
//! held for a resume) as the room itself counts them.
//!
//! Every node hosting a room records its counts as of the room's log
//! (epoch and `seq`: an older record of the same log is ignored, one of a
//! new log, after Redis lost the old, wins) whenever they change, and
//! again every [`ALIVE_EVERY`] for every room it hosts. So the list heals
//! by itself: after a node stood still (its rooms went quiet in the list,
//! then it records them again), after the shard holding the list lost it,
//! after records arrived out of order. A record says until when it holds:
//! its members count as present while a live node vouches for the room
//! ([`ALIVE_FOR`]), and its seats stay listed, held, until the windows of
//! its members would end were every node hosting it dead. A room whose
//! every node died thus leaves the list when its last seat would have
//! ended (the stale listings Colyseus has after unclean exits;
//! SCALE-OUT.md), and not before: a joiner is never sent to a room whose
//! held seats fill it.
//!
//! Keys, all with the hash tag `{rooms}` (one slot under Redis Cluster):
//! `attractio:{rooms}:members`, `…:seats`, `…:seq`, `…:epoch` (room → the
//! record's counts and the log position they are as of), `…:alive` and
//! `…:held` (sorted sets: room → until when, in ms since the Unix epoch,
//! its members count as present and its seats as taken), `…:seen` (node
//! → when it last recorded its rooms: when a dead node's members dropped).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use redis::Script;

use super::Cluster;

/// How often a node records the rooms it hosts, and how long its members
/// count as present in the list without another record.
pub const ALIVE_EVERY: Duration = Duration::from_secs(2);
const ALIVE_FOR: Duration = Duration::from_secs(6);
/// How long a node's last record time is kept once it stops (its rooms'
/// held seats are long over by then).
const SEEN_FOR: Duration = Duration::from_secs(24 * 3600);
/// Rooms recorded in one script call (its arguments are held at once).
const RECORD_BATCH: usize = 200;

const MEMBERS: &str = "attractio:{rooms}:members";
const SEATS: &str = "attractio:{rooms}:seats";
const SEQ: &str = "attractio:{rooms}:seq";
const EPOCH: &str = "attractio:{rooms}:epoch";
const ALIVE: &str = "attractio:{rooms}:alive";
const HELD: &str = "attractio:{rooms}:held";
const SEEN: &str = "attractio:{rooms}:seen";

static RECORD_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(RECORD));
static LIST_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(LIST));

/// Records rooms, seven arguments each from ARGV[4] on: room, epoch, seq,
/// live members, seats, alive until (ms), held until (ms); and that node
/// ARGV[2] recorded at ARGV[1] ms (forgetting nodes silent for ARGV[3]
/// ms). A record older than the one there, of
/// the same log, is ignored (every hosting node records; any order of
/// arrival leaves the newest). A room with no seat stays as a record of
/// 0 seats, unlisted, until its `held` time: an older record arriving
/// late does not bring it back.
const RECORD: &str = r"
local now = tonumber(ARGV[1])
redis.call('ZADD', KEYS[7], now, ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', '(' .. (now - tonumber(ARGV[3])))
for i = 4, #ARGV, 7 do
  local room = ARGV[i]
  local last = redis.call('HGET', KEYS[3], room)
  local older = last and redis.call('HGET', KEYS[4], room) == ARGV[i + 1]
    and tonumber(ARGV[i + 2]) < tonumber(last)
  if not older then
    redis.call('HSET', KEYS[1], room, ARGV[i + 3])
    redis.call('HSET', KEYS[2], room, ARGV[i + 4])
    redis.call('HSET', KEYS[3], room, ARGV[i + 2])
    redis.call('HSET', KEYS[4], room, ARGV[i + 1])
    redis.call('ZADD', KEYS[5], ARGV[i + 5], room)
    redis.call('ZADD', KEYS[6], ARGV[i + 6], room)
  end
end
return 0
";

/// Drops the records whose seats would all have ended by ARGV[1] ms,
/// then returns the rooms with a seat taken: `[room, members, seats, …]`,
/// members 0 for a room no live node vouched for lately.
const LIST: &str = r"
local now = tonumber(ARGV[1])
for _, room in ipairs(redis.call('ZRANGEBYSCORE', KEYS[6], '-inf', '(' .. now)) do
  for k = 1, 4 do redis.call('HDEL', KEYS[k], room) end
  redis.call('ZREM', KEYS[5], room)
  redis.call('ZREM', KEYS[6], room)
end
local out = {}
for _, room in ipairs(redis.call('ZRANGE', KEYS[6], 0, -1)) do
  local seats = redis.call('HGET', KEYS[2], room) or '0'
  if seats ~= '0' then
    local members = redis.call('HGET', KEYS[1], room) or '0'
    if tonumber(redis.call('ZSCORE', KEYS[5], room) or '0') < now then members = '0' end
    out[#out + 1] = room
    out[#out + 1] = members
    out[#out + 1] = seats
  end
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

/// What a hosting node knows of a room's counts, to record in the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// The log they are as of: its epoch, and the last entry applied.
    pub epoch: u64,
    pub seq: u64,
    pub members: usize,
    pub seats: usize,
    /// When the last held seat's window ends (ms since the Unix epoch; 0
    /// with none held).
    pub held_until_ms: u64,
    /// The resume window: present members, should their nodes die, are
    /// held for it.
    pub window_ms: u64,
}

impl Counts {
    /// Until when the room's seats stay listed without a newer record:
    /// its held seats' windows, and its present members' windows were
    /// their nodes to die now.
    fn held_until(&self, now: u64) -> u64 {
        let alive = now + ALIVE_FOR.as_millis() as u64;
        let present = if self.members > 0 {
            alive + self.window_ms
        } else {
            alive
        };
        present.max(self.held_until_ms)
    }
}

/// The counts of the rooms this node hosts, recorded again every
/// [`ALIVE_EVERY`].
pub type Hosted = Arc<Mutex<HashMap<String, Counts>>>;

fn now_ms() -> u64 {
    crate::history::now_ms()
}

impl Cluster {
    fn hosted(&self) -> std::sync::MutexGuard<'_, HashMap<String, Counts>> {
        // Each use is one insert, remove or copy: a poisoned map is whole.
        self.hosted.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps `room`'s counts for the records every [`ALIVE_EVERY`]
    /// (called by the room, in the order it applies its log).
    pub fn keep_counts(&self, room: &str, counts: Counts) {
        self.hosted().insert(room.to_owned(), counts);
    }

    /// Records `room`'s counts in the list now (logged, not returned, on
    /// an error: the next change or [`ALIVE_EVERY`] records them again).
    pub async fn count_members(&self, room: &str, counts: Counts) {
        if let Err(e) = self.record(&[(room.to_owned(), counts)]).await {
            tracing::warn!(room, "recording the member count: {e}");
        }
    }

    /// Forgets `room`'s counts here: this node no longer hosts it.
    pub(super) fn uncount(&self, room: &str) {
        self.hosted().remove(room);
    }

    /// Records, every [`ALIVE_EVERY`] for as long as the process lives,
    /// the counts of every room this node hosts, and that it is alive.
    pub fn vouch_for_hosted_rooms(self: &Arc<Self>) {
        let cluster = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(ALIVE_EVERY);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let hosted: Vec<(String, Counts)> = cluster
                    .hosted()
                    .iter()
                    .map(|(room, counts)| (room.clone(), *counts))
                    .collect();
                if let Err(e) = cluster.record(&hosted).await {
                    tracing::warn!("recording the rooms this node hosts: {e}");
                }
            }
        });
    }

    /// Records `rooms` in the list, and that this node was alive now.
    async fn record(&self, rooms: &[(String, Counts)]) -> redis::RedisResult<()> {
        let now = now_ms();
        let alive = now + ALIVE_FOR.as_millis() as u64;
        // One call at least: it also says that this node is alive.
        let batches: Vec<&[(String, Counts)]> = if rooms.is_empty() {
            vec![&[]]
        } else {
            rooms.chunks(RECORD_BATCH).collect()
        };
        for batch in batches {
            let mut record = RECORD_SCRIPT.prepare_invoke();
            for key in [MEMBERS, SEATS, SEQ, EPOCH, ALIVE, HELD, SEEN] {
                record.key(key);
            }
            record
                .arg(now)
                .arg(self.node)
                .arg(SEEN_FOR.as_millis() as u64);
            for (room, c) in batch {
                record
                    .arg(room)
                    .arg(c.epoch)
                    .arg(c.seq)
                    .arg(c.members)
                    .arg(c.seats)
                    .arg(alive)
                    .arg(c.held_until(now));
            }
            let mut commands = self.commands.clone();
            record.invoke_async::<()>(&mut commands).await?;
        }
        Ok(())
    }

    /// When node `node`'s members dropped, if it is gone: the end of the
    /// period in which it last recorded its rooms (it was alive then).
    /// `None` if Redis does not know (then a window starts when the drop
    /// is applied).
    pub async fn dropped_at(&self, node: u64) -> Option<u64> {
        let mut commands = self.commands.clone();
        let seen: Option<u64> = redis::cmd("ZSCORE")
            .arg(SEEN)
            .arg(node)
            .query_async(&mut commands)
            .await
            .ok()
            .flatten();
        seen.map(|ms| (ms + ALIVE_EVERY.as_millis() as u64).min(now_ms()))
    }

    /// Every room of the cluster with a seat taken, with its counts,
    /// busiest first.
    pub async fn rooms(&self) -> redis::RedisResult<Vec<Listed>> {
        let mut commands = self.commands.clone();
        let mut list = LIST_SCRIPT.prepare_invoke();
        for key in [MEMBERS, SEATS, SEQ, EPOCH, ALIVE, HELD] {
            list.key(key);
        }
        let flat: Vec<(String, usize, usize)> =
            list.arg(now_ms()).invoke_async(&mut commands).await?;
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

#[cfg(test)]
mod tests {
    use super::super::tests::Redis;
    use super::super::{snapshot::Retention, Queues};
    use super::*;

    async fn node(redis: &Redis) -> Arc<Cluster> {
        let retention = Retention {
            snapshot_every: 1000,
            snapshot_bytes: 1 << 20,
            keys_for: Duration::from_secs(60),
        };
        let queues = Queues {
            append: 16,
            early: 16,
            live: 16,
        };
        let url = format!("redis://127.0.0.1:{}", redis.port);
        Cluster::connect(&url, false, (retention, queues))
            .await
            .unwrap()
    }

    fn counts(epoch: u64, seq: u64, members: usize) -> Counts {
        Counts {
            epoch,
            seq,
            members,
            seats: members,
            held_until_ms: 0,
            window_ms: 120_000,
        }
    }

    #[tokio::test]
    async fn a_late_record_of_an_older_state_does_not_list_a_room_again() {
        let redis = Redis::start();
        let (one, other) = (node(&redis).await, node(&redis).await);
        one.count_members("r", counts(7, 5, 0)).await; // the last seat went
        other.count_members("r", counts(7, 4, 1)).await; // late, of before
        assert_eq!(one.rooms().await.unwrap(), []);
    }

    #[tokio::test]
    async fn a_record_of_a_new_log_replaces_one_of_the_lost_log() {
        let redis = Redis::start();
        let cluster = node(&redis).await;
        cluster.count_members("q", counts(7, 46, 3)).await;
        // Redis lost the room's log: it started over, at seq 4 of epoch 8.
        cluster.count_members("q", counts(8, 4, 2)).await;
        let listed = Listed {
            room: "q".into(),
            members: 2,
            seats: 2,
        };
        assert_eq!(cluster.rooms().await.unwrap(), [listed]);
    }
}
