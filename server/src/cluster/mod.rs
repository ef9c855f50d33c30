//! Cluster mode (`--redis-url`): several attractio nodes share one room
//! space through Redis, one server or a Redis Cluster (`--redis-cluster`;
//! the connections are in `connection.rs`). Redis only orders, stores and
//! fans out; every node hosting a room applies the room's log with the
//! same rules as a single server (see `room::replica` and SCALE-OUT.md,
//! "Redis orders, every node applies").
//!
//! Keys of a room share the hash tag `{room}` (one slot under Redis
//! Cluster): `attractio:{room}:seq` (the last `seq` given), `…:log` (the
//! stream of entries, id `<seq>-0`), `…:epoch`, `…:snapshot` (the room's
//! state as of an entry, the log trimmed behind it: `snapshot.rs`); the
//! room's entries are also published on the channel `attractio:{room}:live`.
//! Every script names all the keys it touches in KEYS, all of one room (or
//! all of `{rooms}`), so on a Redis Cluster each call runs whole on the
//! shard owning them.

pub mod connection;
pub mod creation;
pub mod health;
pub mod lease;
pub mod log;
pub mod rooms;
pub mod snapshot;

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use futures_util::StreamExt;
use redis::streams::StreamRangeReply;
use redis::AsyncCommands;
use tokio::sync::mpsc;

use self::connection::{Connection, Subscriber};
use self::health::{Health, Progress};
use self::log::{Entry, Op};
use self::snapshot::{Retention, StoredSnapshot};
use crate::metrics::ClusterMetrics;

/// How long a node's lease lasts unless renewed, and how often it is
/// renewed: a node that stops renewing is gone after at most `LEASE`.
pub const LEASE: Duration = Duration::from_secs(3);
const LEASE_RENEWAL: Duration = Duration::from_secs(1);
/// How long this node's renewals must have gone through, each within a
/// renewal period, before it declares another node gone for a lapsed
/// lease: after Redis stood still (a pause, a slow fork) every lease may
/// have lapsed, and the live nodes renew theirs within a period.
pub const STEADY_BEFORE_DECLARING: Duration = Duration::from_secs(2);

/// How many operations and entries a room holds on its way to and from
/// Redis (`--cluster-append-queue`, `--cluster-early-entries`,
/// `--cluster-live-queue`): past each, what comes is refused or read from
/// the stream again later.
#[derive(Debug, Clone, Copy)]
pub struct Queues {
    /// Operations waiting to be appended, per room.
    pub append: usize,
    /// Entries held while an earlier one is missing, per room.
    pub early: usize,
    /// Published entries waiting for the room's task; when full, live
    /// entries are dropped and the room fills the hole from the stream.
    pub live: usize,
}

/// Appends an entry: the next `seq` of the room, the entry into the room's
/// stream, the same to the room's channel; returns the `seq`. Refused
/// (`EPOCH`) if the room's epoch is not the appender's: Redis lost the log
/// the room was built from (a restart without persistence), or another
/// node found its tail lost; and refused (`TAIL`) if the log ends before
/// the `seq` the appender has applied (ARGV[4]): Redis lost the tail of
/// the log (an `appendfsync everysec` restart, a failover to a replica
/// that lagged). Either way the room must start over rather than number
/// new entries with `seq`s its nodes have applied already. Knows nothing
/// of boards, locks or seats (the rules stay in Rust, `rules.rs`).
/// Renews the time to live of the room's keys (ARGV[5] ms): a room nobody
/// uses is forgotten after `--room-retention`.
///
/// Appends each append id (ARGV[7], growing per node) of node ARGV[6] once,
/// and returns 0 for one already appended: a node tries an append again
/// after an unknown outcome (a timeout), and so may the client library on
/// its own (to follow a Redis Cluster failover); the first try may have
/// gone through, or may still. A node appends to a room one entry at a
/// time, so remembering its last id per room (`…:appenders`, node → id)
/// is enough.
///
/// The channel is an argument, not a key: a plain `PUBLISH`, which a Redis
/// Cluster forwards to every shard, so a node hears the room whichever
/// shard its subscription landed on. (`SPUBLISH` would keep the message on
/// the room's shard, but a script may only `SPUBLISH` to a channel it
/// declares in KEYS, and every node would need sharded subscriptions.)
const APPEND: &str = r"
if redis.call('GET', KEYS[3]) ~= ARGV[3] then
  return redis.error_reply('EPOCH the room log was lost')
end
if tonumber(ARGV[7]) <= tonumber(redis.call('HGET', KEYS[5], ARGV[6]) or '0') then
  return 0
end
if tonumber(redis.call('GET', KEYS[1]) or '0') < tonumber(ARGV[4]) then
  return redis.error_reply('TAIL the end of the room log was lost')
end
local seq = redis.call('INCR', KEYS[1])
redis.call('XADD', KEYS[2], seq .. '-0', 'op', ARGV[1])
redis.call('PUBLISH', ARGV[2], seq .. ' ' .. ARGV[1])
redis.call('HSET', KEYS[5], ARGV[6], ARGV[7])
for _, k in ipairs(KEYS) do redis.call('PEXPIRE', k, ARGV[5]) end
return seq
";

/// Replaces a room's epoch ARGV[1] with ARGV[2], unless it was replaced
/// already (by another node that found the same loss): the log's entries
/// stay (the board and seats as of its end), but every node starts the
/// room over from them, and clients resuming with the old epoch are told
/// they did not recover.
const NEW_EPOCH: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
  return 1
end
return 0
";

/// This node's link to the cluster: a multiplexed command connection that
/// reconnects by itself, and subscriptions for every room hosted (a pub/sub
/// connection of their own on one Redis, the same connections on a Redis
/// Cluster).
pub struct Cluster {
    /// This node's number, unique in the cluster (`INCR attractio:nodes`):
    /// the high bits of its client ids and connection numbers.
    pub node: u64,
    /// The key resume tokens are signed with, the same on every node (so a
    /// client resumes on any of them), created by the first node.
    pub token_secret: [u8; 32],
    /// How much of each room Redis keeps (snapshots, trimming, expiry).
    pub retention: Retention,
    /// How much a room holds on its way to and from Redis.
    pub queues: Queues,
    /// Whether this node can serve a join now (`/healthz`).
    pub health: Arc<Health>,
    /// The faults it met, for `/metrics`.
    pub metrics: Arc<ClusterMetrics>,
    commands: Connection,
    /// How this node's lease renewals went: see [`Cluster::steady_for`].
    renewals: Arc<Mutex<Renewals>>,
    /// Since when other nodes' leases have been seen missing.
    lapses: lease::Lapses,
    /// Subscribes and unsubscribes (one at a time, so a room's unhost and
    /// a new host of it keep their order); on one Redis, replaced when the
    /// pub/sub connection is.
    subscriptions: Arc<tokio::sync::Mutex<Subscriber>>,
    /// Channel → the hosting room's queue of live entries.
    live: Arc<Mutex<HashMap<String, mpsc::Sender<Entry>>>>,
    /// The counts of the rooms hosted here, for the cluster's list.
    hosted: rooms::Hosted,
    append: redis::Script,
    /// The last append id given (see [`APPEND`]).
    appends: std::sync::atomic::AtomicU64,
    new_epoch: redis::Script,
    store_snapshot: redis::Script,
}

/// How this node's lease renewals went.
struct Renewals {
    /// When one last failed or was slow (or the node started).
    unsteady_at: std::time::Instant,
    /// When the renewal under way, if any, began.
    renewing_since: Option<std::time::Instant>,
}

/// What a node needs to start hosting a room: its live entries (subscribed
/// before anything was read), its snapshot if one is stored, the entries
/// after it, and its epoch.
pub struct Hosting {
    pub live: mpsc::Receiver<Entry>,
    /// The sending end of `live`: what [`Cluster::unhost`] checks.
    pub route: mpsc::Sender<Entry>,
    pub snapshot: Option<StoredSnapshot>,
    /// The entries after the snapshot (from the first without one).
    pub backlog: Vec<Entry>,
    pub epoch: u64,
    /// The room's appends and applies, watched by `/healthz`.
    pub progress: Arc<Progress>,
}

impl Cluster {
    /// Connects to Redis at `url` (`redis://host:port/db`; with `sharded`,
    /// comma-separated seed nodes of a Redis Cluster), takes a node number
    /// and the shared token key, and starts routing published entries to
    /// the rooms this node hosts. Rooms are kept in Redis as `retention`
    /// says.
    pub async fn connect(
        url: &str,
        sharded: bool,
        (retention, queues): (Retention, Queues),
    ) -> anyhow::Result<Arc<Cluster>> {
        let live: Arc<Mutex<HashMap<String, mpsc::Sender<Entry>>>> = Arc::default();
        let health = Arc::new(Health::new());
        let metrics = Arc::new(ClusterMetrics::default());
        let (mut commands, subscriptions) = if sharded {
            let routes = live.clone();
            let (commands, subscriber) =
                Connection::cluster(url, move |message| route(&routes, &message))
                    .await
                    .with_context(|| format!("connecting to the Redis Cluster at {url}"))?;
            (commands, Arc::new(tokio::sync::Mutex::new(subscriber)))
        } else {
            let client = redis::Client::open(url).context("reading --redis-url")?;
            let commands = Connection::server(&client)
                .await
                .with_context(|| format!("connecting to Redis at {url}"))?;
            let (sink, stream) = client
                .get_async_pubsub()
                .await
                .context("opening the pub/sub connection")?
                .split();
            let subscriptions = Arc::new(tokio::sync::Mutex::new(Subscriber::Server(sink)));
            tokio::spawn(route_published(
                client,
                stream,
                (live.clone(), subscriptions.clone()),
                (health.clone(), metrics.clone()),
            ));
            (commands, subscriptions)
        };
        let node = claim_node_number(&mut commands).await?;
        let fresh: [u8; 32] = rand::random();
        let _: bool = commands.set_nx(TOKEN_SECRET, fresh.as_slice()).await?;
        let stored: Vec<u8> = commands.get(TOKEN_SECRET).await?;
        let token_secret = stored
            .try_into()
            .map_err(|_| anyhow::anyhow!("attractio:token-secret in Redis is not 32 bytes"))?;
        let mut renewing = commands.clone();
        let renewals = Arc::new(Mutex::new(Renewals {
            unsteady_at: std::time::Instant::now(),
            renewing_since: None,
        }));
        let told = renewals.clone();
        let (watch, count) = (health.clone(), metrics.clone());
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(LEASE_RENEWAL);
            loop {
                ticks.tick().await;
                let started = std::time::Instant::now();
                told.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .renewing_since = Some(started);
                let renewed = renew_lease(&mut renewing, node, &token_secret).await;
                match &renewed {
                    Ok(()) => watch.renewed(),
                    Err(e) => {
                        count.redis_errors.fetch_add(1, Relaxed);
                        tracing::warn!(node, "renewing the node's lease: {e}");
                    }
                }
                let mut told = told.lock().unwrap_or_else(|p| p.into_inner());
                told.renewing_since = None;
                if renewed.is_err() || started.elapsed() > LEASE_RENEWAL {
                    told.unsteady_at = std::time::Instant::now();
                }
            }
        });
        tracing::info!(node, "joined the cluster");
        Ok(Arc::new(Cluster {
            node,
            token_secret,
            retention,
            queues,
            health,
            metrics,
            commands,
            renewals,
            lapses: lease::Lapses::default(),
            subscriptions,
            live,
            hosted: rooms::Hosted::default(),
            append: redis::Script::new(APPEND),
            appends: std::sync::atomic::AtomicU64::new(0),
            new_epoch: redis::Script::new(NEW_EPOCH),
            store_snapshot: redis::Script::new(snapshot::STORE_SNAPSHOT),
        }))
    }

    /// Starts hosting `room`: subscribes first, then reads the epoch, the
    /// snapshot and the log after it, so no entry falls between the two
    /// (one published meanwhile is in both; the room skips what it has
    /// applied).
    pub async fn host(&self, room: &str) -> anyhow::Result<Hosting> {
        let (tx, rx) = mpsc::channel(self.queues.live);
        match self.read_hosting(room, &tx).await {
            Ok((snapshot, backlog, epoch)) => Ok(Hosting {
                live: rx,
                route: tx,
                snapshot,
                backlog,
                epoch,
                progress: self.health.watch(room),
            }),
            Err(e) => {
                self.metrics.redis_errors.fetch_add(1, Relaxed);
                // Not hosted: nothing routed to it, nor subscribed again
                // after a reconnect.
                self.unhost(room, &tx).await;
                Err(e)
            }
        }
    }

    /// [`Cluster::host`]'s reads, after routing `room`'s channel to `tx`.
    async fn read_hosting(
        &self,
        room: &str,
        tx: &mpsc::Sender<Entry>,
    ) -> anyhow::Result<(Option<StoredSnapshot>, Vec<Entry>, u64)> {
        {
            let mut subscriber = self.subscriptions.lock().await;
            self.routes().insert(channel(room), tx.clone());
            subscriber.subscribe(&channel(room)).await?;
        }
        let mut commands = self.commands.clone();
        let fresh = u64::from(rand::random::<u32>());
        // Expires like the room's other keys should no append follow.
        let _: Option<String> = redis::cmd("SET")
            .arg(key(room, "epoch"))
            .arg(fresh)
            .arg("NX")
            .arg("PX")
            .arg(self.retention.keys_for_ms())
            .query_async(&mut commands)
            .await?;
        let epoch: u64 = commands.get(key(room, "epoch")).await?;
        let (snapshot, backlog) = self.snapshot_and_after(room).await?;
        Ok((snapshot, backlog, epoch))
    }

    /// Stops hosting `room` (its last seat is gone here), unless a newer
    /// host of it on this node (`route` is not the current route) took over
    /// the subscription meanwhile.
    pub async fn unhost(&self, room: &str, route: &mpsc::Sender<Entry>) {
        let mut subscriber = self.subscriptions.lock().await;
        {
            let mut routes = self.routes();
            if !routes
                .get(&channel(room))
                .is_some_and(|r| r.same_channel(route))
            {
                return;
            }
            routes.remove(&channel(room));
            self.health.unwatch(room);
        }
        self.uncount(room);
        if let Err(e) = subscriber.unsubscribe(&channel(room)).await {
            tracing::warn!(room, "unsubscribing: {e}");
        }
    }

    /// Appends `op` to `room`'s log of `epoch`, whose entries up to
    /// `applied` the appending node has applied; returns its `seq`. Errors
    /// with code `EPOCH` or `TAIL` when the log was lost (see [`APPEND`]).
    ///
    /// `append_id` is [`Cluster::next_append_id`]'s, taken once per op and
    /// given again when the op is tried again: an op Redis appended
    /// already is not appended twice (`None`).
    pub async fn append(
        &self,
        room: &str,
        (epoch, applied): (u64, u64),
        op: &Op,
        append_id: u64,
    ) -> redis::RedisResult<Option<u64>> {
        let body = serde_json::to_string(op).expect("an op always encodes");
        let mut commands = self.commands.clone();
        let seq: u64 = self
            .append
            .key(key(room, "seq"))
            .key(key(room, "log"))
            .key(key(room, "epoch"))
            .key(key(room, "snapshot"))
            .key(key(room, "appenders"))
            .arg(body)
            .arg(channel(room))
            .arg(epoch)
            .arg(applied)
            .arg(self.retention.keys_for_ms())
            .arg(self.node)
            .arg(append_id)
            .invoke_async(&mut commands)
            .await?;
        Ok((seq > 0).then_some(seq))
    }

    /// A new append id of this node: growing, never given twice.
    pub fn next_append_id(&self) -> u64 {
        self.appends
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1
    }

    /// `room`'s epoch in Redis (`None`: its log is gone) and the last
    /// `seq` its log gave.
    pub async fn epoch(&self, room: &str) -> redis::RedisResult<(Option<u64>, u64)> {
        let mut commands = self.commands.clone();
        let (epoch, seq): (Option<u64>, Option<u64>) = redis::pipe()
            .get(key(room, "epoch"))
            .get(key(room, "seq"))
            .query_async(&mut commands)
            .await?;
        Ok((epoch, seq.unwrap_or(0)))
    }

    /// Deletes `room`'s log, snapshot and epoch (`DELETE
    /// /api/rooms/{room}`, after every member was let go through the log):
    /// the name then starts a new room. A node still hosting it finds its
    /// log gone at its next check and ends it.
    pub async fn forget(&self, room: &str) -> redis::RedisResult<()> {
        let mut commands = self.commands.clone();
        // One hash tag: one slot, one command, also on a Redis Cluster.
        let _: u64 = redis::cmd("DEL")
            .arg(key(room, "epoch"))
            .arg(key(room, "seq"))
            .arg(key(room, "log"))
            .arg(key(room, "snapshot"))
            .arg(key(room, "appenders"))
            .query_async(&mut commands)
            .await?;
        Ok(())
    }

    /// Starts a new epoch for `room` if it is still at `old` (see
    /// [`NEW_EPOCH`]): its log lost its tail.
    pub async fn new_epoch(&self, room: &str, old: u64) -> redis::RedisResult<()> {
        let mut commands = self.commands.clone();
        let fresh = u64::from(rand::random::<u32>()).max(1);
        let fresh = if fresh == old { fresh + 1 } else { fresh };
        let _: u64 = self
            .new_epoch
            .key(key(room, "epoch"))
            .arg(old)
            .arg(fresh)
            .invoke_async(&mut commands)
            .await?;
        Ok(())
    }

    /// The entries of `room` from `from` to `to` (inclusive; `None`: the
    /// newest), read from the stream.
    pub async fn range(
        &self,
        room: &str,
        from: u64,
        to: Option<u64>,
    ) -> redis::RedisResult<Vec<Entry>> {
        let mut commands = self.commands.clone();
        let end = to.map_or_else(|| "+".to_string(), |to| format!("{to}-0"));
        let reply: StreamRangeReply = commands
            .xrange(key(room, "log"), format!("{from}-0"), end)
            .await?;
        Ok(reply
            .ids
            .into_iter()
            .filter_map(|id| {
                let seq = id.id.split('-').next()?.parse().ok()?;
                let body: Vec<u8> = id.get("op")?;
                Some(Entry::read(seq, &body))
            })
            .collect())
    }

    /// For how long this node's lease renewals have gone through, each
    /// within a renewal period (since the last that failed or was slow).
    /// A renewal still waiting for longer than a period counts as slow.
    pub fn steady_for(&self) -> Duration {
        let renewals = self.renewals.lock().unwrap_or_else(|p| p.into_inner());
        match renewals.renewing_since {
            Some(started) if started.elapsed() > LEASE_RENEWAL => Duration::ZERO,
            _ => renewals.unsteady_at.elapsed(),
        }
    }

    /// Whether node `node` is gone: its lease has been missing in every
    /// answer of the shard holding it for `lease::LAPSED_FOR` (see
    /// `lease.rs`; an error is no answer, and the node is assumed alive),
    /// or it is missing and the node's last word in the room list
    /// (`dropped_at`, on the `{rooms}` shard) is older than a lease plus
    /// `LAPSED_FOR`: a node that starts hosting a room long after another
    /// died has no looks of its own yet, and need not wait to gather them.
    /// A live node whose lease's shard restarted empty still says it is
    /// alive there every `rooms::ALIVE_EVERY`, so it is not taken for dead.
    pub async fn gone(&self, node: u64) -> bool {
        let mut commands = self.commands.clone();
        let look = match commands.exists(format!("attractio:node:{node}")).await {
            Ok(true) => lease::Look::Held,
            Ok(false) => lease::Look::Missing,
            Err(e) => {
                self.metrics.redis_errors.fetch_add(1, Relaxed);
                tracing::warn!(node, "reading the node's lease: {e}");
                lease::Look::Unreachable
            }
        };
        if look == lease::Look::Missing {
            let long_ago = (LEASE + lease::LAPSED_FOR).as_millis() as u64;
            if let Some(seen) = self.dropped_at(node).await {
                if crate::history::now_ms().saturating_sub(seen) >= long_ago {
                    return true;
                }
            }
        }
        self.lapses.judge(node, look, std::time::Instant::now())
    }

    fn routes(&self) -> std::sync::MutexGuard<'_, HashMap<String, mpsc::Sender<Entry>>> {
        // Each use is one insert, get or remove: a poisoned map is whole.
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Channel → the hosting room's queue of live entries.
type Routes = Arc<Mutex<HashMap<String, mpsc::Sender<Entry>>>>;

/// Takes a node number no live node holds (a random one, claimed with its
/// lease), so it does not depend on a counter Redis may have lost.
async fn claim_node_number(commands: &mut Connection) -> anyhow::Result<u64> {
    for _ in 0..16 {
        // Client ids keep 21 bits for it (see `connection.rs`).
        let node = rand::random_range(1..=0x1f_ffffu64);
        let claimed: bool = redis::cmd("SET")
            .arg(format!("attractio:node:{node}"))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(LEASE.as_millis() as u64)
            .query_async::<Option<String>>(commands)
            .await?
            .is_some();
        if claimed {
            return Ok(node);
        }
    }
    anyhow::bail!("no free node number after 16 tries")
}

/// Hands a published entry to the room hosting its channel, if this node
/// hosts it. Never waits: a full queue drops the entry, and the room fills
/// the hole from the stream later.
fn route(routes: &Mutex<HashMap<String, mpsc::Sender<Entry>>>, message: &redis::Msg) {
    let Some(entry) = Entry::parse_published(message.get_payload_bytes()) else {
        return;
    };
    let room = routes
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(message.get_channel_name())
        .cloned();
    if let Some(room) = room {
        let _ = room.try_send(entry);
    }
}

/// On one Redis: routes each published entry to the room hosting its
/// channel; when the pub/sub connection is lost, opens another and
/// subscribes it to every hosted room again (what was published meanwhile,
/// the rooms read from their logs at their next check). (A Redis Cluster
/// connection resubscribes by itself.)
async fn route_published(
    client: redis::Client,
    mut stream: redis::aio::PubSubStream,
    (routes, subscriptions): (Routes, Arc<tokio::sync::Mutex<Subscriber>>),
    (health, metrics): (Arc<Health>, Arc<ClusterMetrics>),
) {
    loop {
        while let Some(message) = stream.next().await {
            route(&routes, &message);
        }
        health.set_subscribed(false);
        tracing::error!("the Redis pub/sub connection was lost: reconnecting");
        let mut delay = Duration::from_millis(250);
        stream = loop {
            // Backs off to one try every 4 s while Redis stays away.
            delay = (delay * 2).min(Duration::from_secs(4));
            tokio::time::sleep(delay).await;
            let (mut sink, stream) = match client.get_async_pubsub().await {
                Ok(pubsub) => pubsub.split(),
                Err(e) => {
                    metrics.redis_errors.fetch_add(1, Relaxed);
                    tracing::warn!("reopening the pub/sub connection: {e}");
                    continue;
                }
            };
            let mut current = subscriptions.lock().await;
            let channels: Vec<String> = routes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .keys()
                .cloned()
                .collect();
            if !channels.is_empty() {
                if let Err(e) = sink.subscribe(channels).await {
                    metrics.redis_errors.fetch_add(1, Relaxed);
                    tracing::warn!("subscribing again: {e}");
                    continue;
                }
            }
            *current = Subscriber::Server(sink);
            break stream;
        };
        metrics.resubscriptions.fetch_add(1, Relaxed);
        health.set_subscribed(true);
        tracing::info!("the Redis pub/sub connection is back");
    }
}

/// Renews the node's lease, and puts the cluster's token key back if
/// Redis lost it (restarted empty): a node started afterwards then signs
/// and checks tokens with the key the running nodes use, not a new one.
async fn renew_lease(
    commands: &mut Connection,
    node: u64,
    token_secret: &[u8; 32],
) -> redis::RedisResult<()> {
    let ms = LEASE.as_millis() as u64;
    // Two commands, not a pipeline: the keys are in two slots under a
    // Redis Cluster.
    let () = commands
        .pset_ex(format!("attractio:node:{node}"), 1, ms)
        .await?;
    let _: bool = commands
        .set_nx(TOKEN_SECRET, token_secret.as_slice())
        .await?;
    Ok(())
}

/// The key resume tokens are signed with, shared by every node.
const TOKEN_SECRET: &str = "attractio:token-secret";

fn key(room: &str, what: &str) -> String {
    format!("attractio:{{{room}}}:{what}")
}

fn channel(room: &str) -> String {
    key(room, "live")
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A `redis-server` of the test's own on a free port, killed on drop.
    pub(crate) struct Redis {
        child: std::process::Child,
        pub(crate) port: u16,
        _dir: tempfile::TempDir,
    }

    impl Redis {
        pub(crate) fn start() -> Redis {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let dir = tempfile::tempdir().unwrap();
            let child = std::process::Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(dir.path())
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("redis-server runs (cargo xtask test installs it)");
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "redis-server did not listen"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            Redis {
                child,
                port,
                _dir: dir,
            }
        }
    }

    impl Drop for Redis {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    #[tokio::test]
    async fn an_append_tried_again_is_in_the_log_once() {
        let redis = Redis::start();
        let retention = Retention {
            snapshot_every: 1000,
            snapshot_bytes: 1 << 20,
            keys_for: Duration::from_secs(60),
        };
        let url = format!("redis://127.0.0.1:{}", redis.port);
        let queues = Queues {
            append: 16,
            early: 16,
            live: 16,
        };
        let cluster = Cluster::connect(&url, false, (retention, queues))
            .await
            .unwrap();
        let hosting = cluster.host("again").await.unwrap();
        let at = (hosting.epoch, 0);
        let append = |id| cluster.append("again", at, &Op::Presence, id);
        let first = cluster.next_append_id();
        assert_eq!(append(first).await.unwrap(), Some(1));
        // The same append once more (the first try's answer was lost):
        // Redis has it, and says so.
        assert_eq!(append(first).await.unwrap(), None);
        let second = cluster.next_append_id();
        assert!(second > first);
        assert_eq!(append(second).await.unwrap(), Some(2));
        // A late copy of the first, after the second: still skipped.
        assert_eq!(append(first).await.unwrap(), None);
        let log = cluster.range("again", 1, None).await.unwrap();
        assert_eq!(log.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2]);
    }
}
