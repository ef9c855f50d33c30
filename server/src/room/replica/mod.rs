//! A room in cluster mode (`--redis-url`): a replica of the room's log.
//!
//! The actor does not act on its commands at once: it appends each to the
//! room's log in Redis (`cluster::Cluster::append`), and applies the
//! entries of the log, its own and other nodes', strictly in the log's
//! `seq` order, through the same [`Room::apply`] a single server uses.
//! Every node hosting the room thus makes the same decisions (the cap,
//! locks, the board) and numbers the same frames with the same `seq`; each
//! delivers to the members whose sockets it holds. A member on another
//! node has a seat here with an outbox that goes nowhere
//! ([`Outbox::elsewhere`]).
//!
//! Nothing here reads a local clock to change the room: what timers decide
//! on one server (a held seat's end, a batched presence) is proposed as a
//! log entry, and applied when the log says.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use protocol::{ClientId, RoomName};
use tokio::sync::{mpsc, oneshot};

use super::{Command, JoinReply, Outbox, Resume, Room, RoomContext};
use crate::cluster::log::{node_of, Entry, Op};
use crate::cluster::rooms::Counts;
use crate::cluster::Cluster;
use crate::hub::Hub;
use crate::identity::TokenClaim;
use propose::append_in_order;

mod check;
mod propose;
mod snapshot;

/// How long after proposing that a held seat ended a node proposes it
/// again, should the entry have been lost.
const PROPOSE_AGAIN: Duration = Duration::from_secs(1);
/// How often a hosted room reads the log for entries its channel did not
/// bring (a dropped message, a lost pub/sub connection) and checks the
/// leases of the nodes its members are on. A dead node's members are away
/// within `cluster::LEASE` + `cluster::lease::LAPSED_FOR` + this.
const CHECK_EVERY: Duration = Duration::from_secs(2);

/// What a hosted room hears besides its commands.
pub(super) enum Heard {
    Entry(Entry),
    /// Time to check for missed entries and gone nodes.
    Check,
    Failed(Failure),
}

/// An operation the appender could not append.
pub(super) enum Failure {
    /// Not appended (or an unknown outcome): a join's connection.
    Join(u64),
    /// Redis no longer has the log this room was built from: all of it,
    /// or (`tail`) its last entries.
    LogLost {
        tail: bool,
    },
    /// A member's message (an unknown outcome, after retries): the member
    /// is told, with the message's `opId`.
    Message(protocol::ClientId, Option<u64>),
    Other,
}

/// The cluster side of a hosted room.
pub(super) struct Replica {
    cluster: Arc<Cluster>,
    /// Live entries from the room's channel.
    live: mpsc::Receiver<Entry>,
    /// The sending end of `live`, to stop hosting only if it is still ours.
    route: mpsc::Sender<Entry>,
    /// The last `seq` of the log applied.
    applied: u64,
    /// The same, for the appender: Redis refuses an append to a log that
    /// ends before it (the log lost its tail).
    applied_shared: Arc<AtomicU64>,
    /// Entries that arrived before an earlier one, with their sizes.
    early: BTreeMap<u64, (Option<Op>, usize)>,
    /// Joins of this node's connections, appended and not applied yet:
    /// their socket and the joiner waiting for the answer.
    pending: HashMap<u64, (Outbox, oneshot::Sender<JoinReply>)>,
    /// Calls of the app's backend taken on this node, appended and not
    /// applied yet: the request waiting for the answer, by ticket.
    api_pending: HashMap<u64, oneshot::Sender<super::Answer>>,
    /// Connections (cluster-wide numbers) whose sockets are on this node.
    local: HashSet<u64>,
    /// Joins whose append failed (the joiner's join is tried again, or it
    /// was told to retry) but which Redis may have applied after all: if
    /// one shows up in the log with no try of it waiting here, its seat,
    /// held by no socket, is given up at once. Grows by one connection per
    /// join given up while Redis was away; gone with the room.
    given_up: HashSet<u64>,
    /// The live member count last recorded for `/api/rooms`.
    counted: (usize, usize),
    /// To the task appending this room's operations, one at a time, in the
    /// order the room made them.
    appender: Option<mpsc::Sender<Op>>,
    appending: tokio::task::JoinHandle<()>,
    failures: mpsc::Receiver<Failure>,
    checks: tokio::time::Interval,
    /// The room's appends and applies, as `/healthz` watches them.
    progress: Arc<crate::cluster::health::Progress>,
    /// When this node last renewed the time to live of the room's keys
    /// for its seats (`cluster::Cluster::keep`).
    kept: std::time::Instant,
    /// This node's snapshots of the room (`snapshot.rs`).
    snapshots: snapshot::Snapshots,
}

impl Room {
    /// Starts hosting `name` on this node: subscribes to its log, starts
    /// from its snapshot if one is stored, reads the log after it and
    /// applies it (no socket here yet, so nothing is sent, but the board,
    /// seats, locks, `seq` and history are the cluster's).
    pub(super) async fn host(
        name: RoomName,
        ctx: Arc<RoomContext>,
        hub: Arc<Hub>,
        members: Arc<AtomicUsize>,
        seats_taken: Arc<AtomicUsize>,
        cluster: Arc<Cluster>,
    ) -> Option<Room> {
        let hosting = match cluster.host(name.as_str()).await {
            Ok(hosting) => hosting,
            Err(e) => {
                tracing::error!(room = %name, "cannot host the room: {e:#}");
                return None;
            }
        };
        let snapshot = hosting
            .snapshot
            .as_ref()
            .map(snapshot::Snapshot::read)
            .transpose();
        let snapshot = match snapshot {
            Ok(snapshot) => snapshot,
            Err(e) => {
                // Never applied across what it stands for: not hosted.
                tracing::error!(room = %name, "cannot host the room: its snapshot: {e}");
                cluster.unhost(name.as_str(), &hosting.route).await;
                return None;
            }
        };
        // Often enough to renew the keys every third of their time to
        // live, however short `--room-retention` is.
        let check_every = CHECK_EVERY
            .min(cluster.retention.renew_every())
            .max(Duration::from_millis(100));
        let (appender, queue) = mpsc::channel(cluster.queues.append);
        let (failed, failures) = mpsc::channel(cluster.queues.append);
        let applied_shared = Arc::new(AtomicU64::new(0));
        let appending = tokio::spawn(append_in_order(
            cluster.clone(),
            (name.clone(), hosting.epoch, applied_shared.clone()),
            hosting.progress.clone(),
            queue,
            failed,
        ));
        ctx.metrics
            .rooms_created
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut room = Room::empty(name, ctx, hub, (members, seats_taken), hosting.epoch);
        room.replica = Some(Replica {
            cluster,
            live: hosting.live,
            route: hosting.route,
            applied: 0,
            applied_shared,
            early: BTreeMap::new(),
            pending: HashMap::new(),
            api_pending: HashMap::new(),
            local: HashSet::new(),
            given_up: HashSet::new(),
            counted: (0, 0),
            appender: Some(appender),
            appending,
            failures,
            checks: {
                let start = tokio::time::Instant::now() + check_every;
                let mut checks = tokio::time::interval_at(start, check_every);
                checks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                checks
            },
            progress: hosting.progress,
            kept: std::time::Instant::now(),
            snapshots: snapshot::Snapshots::default(),
        });
        if let Some(snapshot) = snapshot {
            room.restore(snapshot);
            // One stored before a new epoch (the log lost its tail, and the
            // room started over from what was left) holds the state that
            // epoch starts from: Redis keeps a prefix of what it was told.
            room.epoch = hosting.epoch;
        }
        for entry in hosting.backlog {
            room.take_entry(entry);
        }
        room.apply_ready();
        // Before any join here is appended: the seats of nodes that died
        // while nobody hosted the room drop (or end, their windows past),
        // and held seats whose windows ended are given up, so a joiner
        // neither meets them nor finds the room full because of them.
        room.declare_gone_nodes().await;
        room.propose_expiry(std::time::Instant::now());
        room.count_members();
        Some(room)
    }

    pub(super) async fn on_heard(&mut self, heard: Heard) {
        match heard {
            Heard::Entry(entry) => self.on_entry(entry).await,
            Heard::Check => self.check().await,
            Heard::Failed(Failure::Join(conn)) => {
                // The joiner is answered by dropping its reply: it retries.
                if let Some(replica) = &mut self.replica {
                    if replica.pending.remove(&conn).is_some() {
                        replica.given_up.insert(conn);
                    }
                }
            }
            Heard::Failed(Failure::LogLost { tail }) => {
                if tail {
                    self.start_epoch_over().await;
                }
                self.log_lost();
            }
            Heard::Failed(Failure::Message(id, op_id)) => self.tell_unavailable(id, op_id),
            Heard::Failed(Failure::Other) => {}
        }
    }

    /// Takes a live entry: applies it and whatever it makes ready, after
    /// reading any entries missing before it from the stream.
    pub(super) async fn on_entry(&mut self, entry: Entry) {
        let Some(replica) = &self.replica else { return };
        let (last, cluster) = (entry.seq, replica.cluster.clone());
        self.take_entry(entry);
        self.apply_ready();
        // Fill the hole before `last` from the stream; when more is missing
        // than the room holds early, a batch at a time.
        while let Some(next) = self.missing_before(last) {
            let applied = next - 1;
            cluster.metrics.holes_read.fetch_add(1, Relaxed);
            match cluster
                .range(self.name.as_str(), next, Some(last - 1))
                .await
            {
                Ok(entries) => self.take_read(next, true, entries).await,
                Err(e) => {
                    cluster.metrics.redis_errors.fetch_add(1, Relaxed);
                    tracing::warn!(room = %self.name, "reading missed entries: {e}");
                    break;
                }
            }
            self.apply_ready();
            if self.replica.as_ref().is_none_or(|r| r.applied == applied) {
                break; // no progress (started over, or nothing read)
            }
        }
        self.count_members();
    }

    /// The first entry before `last` this room has neither applied nor
    /// holds, if any.
    fn missing_before(&self, last: u64) -> Option<u64> {
        let replica = self.replica.as_ref()?;
        let next = replica.applied + 1;
        (next < last && !replica.early.contains_key(&next)).then_some(next)
    }

    /// Holds `entry` until the ones before it are applied. When the room
    /// holds as many as `--cluster-early-entries`, the newest is let go
    /// (read again from the stream later), so the next one needed always
    /// finds a place.
    fn take_entry(&mut self, entry: Entry) {
        let Some(replica) = &mut self.replica else {
            return;
        };
        if entry.seq <= replica.applied || replica.early.contains_key(&entry.seq) {
            return;
        }
        if replica.early.len() >= replica.cluster.queues.early {
            match replica.early.last_key_value() {
                Some((newest, _)) if *newest > entry.seq => {
                    let newest = *newest;
                    replica.early.remove(&newest);
                }
                _ => return,
            }
        }
        replica.early.insert(entry.seq, (entry.op, entry.bytes));
    }

    /// Applies the entries that follow the last applied one without a
    /// hole, then stores a snapshot if one is due.
    fn apply_ready(&mut self) {
        loop {
            let Some(replica) = &mut self.replica else {
                return;
            };
            let next = replica.applied + 1;
            let Some((op, bytes)) = replica.early.remove(&next) else {
                break;
            };
            replica.snapshots.bytes_since += bytes as u64;
            replica.applied = next;
            replica.applied_shared.store(next, Relaxed);
            let cluster = &replica.cluster;
            if let Some(lag) = cluster.health.applied(&replica.progress, next) {
                cluster.metrics.append_to_apply.observe(lag);
            }
            if let Some(op) = op {
                self.apply_op(op);
            }
        }
        self.snapshot_if_due();
    }

    /// Records the room's live members and seats taken in the cluster's
    /// list of rooms when they changed, as of the last entry applied (the
    /// newest record wins there; `cluster/rooms.rs`), with when its held
    /// seats' windows end.
    fn count_members(&mut self) {
        let counts = (self.live_members(), self.seats.len());
        let held_until_ms = self
            .seats
            .iter()
            .filter_map(|s| s.away_until)
            .max()
            .map_or(0, snapshot::wall_ms);
        let Some(replica) = &mut self.replica else {
            return;
        };
        if counts == replica.counted {
            return;
        }
        replica.counted = counts;
        let (cluster, room) = (replica.cluster.clone(), self.name.clone());
        let counts = Counts {
            epoch: self.epoch,
            seq: replica.applied,
            members: counts.0,
            seats: counts.1,
            held_until_ms,
            window_ms: self.ctx.resume_window.as_millis() as u64,
        };
        cluster.keep_counts(room.as_str(), counts);
        tokio::spawn(async move { cluster.count_members(room.as_str(), counts).await });
    }

    fn apply_op(&mut self, op: Op) {
        let Some(replica) = &mut self.replica else {
            return;
        };
        match op {
            Op::Join {
                member,
                access,
                conn,
                resume,
            } => {
                // A join appended twice (the hub tries a join again, with
                // the same connection, after an append's unknown outcome)
                // seats once: at its first entry, on every node alike.
                if self.seats.iter().any(|s| s.conn == conn) {
                    return;
                }
                let (outbox, reply, ghost) = match replica.pending.remove(&conn) {
                    Some((outbox, reply)) => {
                        replica.local.insert(conn);
                        (outbox, reply, None)
                    }
                    // Given up here and no try of it waiting: its socket
                    // was told to go; the seat it takes is let go at once.
                    None => (
                        Outbox::elsewhere(),
                        oneshot::channel().0,
                        replica
                            .given_up
                            .contains(&conn)
                            .then_some((member.id, conn)),
                    ),
                };
                let resume = resume.map(|r| Resume {
                    claim: r.claim.map(|c| TokenClaim {
                        member: c.member,
                        generation: c.generation,
                        boot: c.boot,
                    }),
                    epoch: r.epoch,
                    last_seq: r.last_seq,
                });
                self.apply(Command::Join {
                    member,
                    access,
                    conn,
                    outbox,
                    resume,
                    reply,
                });
                if let Some((id, conn)) = ghost {
                    // The seat may be a resumed one's: the member joined.
                    let id = self.seat_of(conn).unwrap_or(id);
                    self.propose(Op::Leave {
                        id,
                        conn,
                        clean: true,
                        at_ms: None,
                    });
                }
            }
            Op::Leave {
                id,
                conn,
                clean,
                at_ms,
            } => {
                if clean {
                    replica.local.remove(&conn);
                }
                self.apply(Command::Leave { id, conn, clean });
                if let (false, Some(dropped)) = (clean, at_ms) {
                    self.hold_from(id, conn, dropped);
                }
            }
            Op::Message {
                id,
                conn,
                message,
                op_id,
            } => self.apply(Command::Message {
                id,
                conn,
                message,
                op_id,
            }),
            Op::Expire { id, conn } => {
                if self
                    .seat(id)
                    .is_some_and(|s| s.conn == conn && s.outbox.is_none())
                {
                    self.leave_because(id, crate::webhooks::Reason::WindowEnded);
                }
            }
            Op::Presence => self.presence(),
            Op::Api { call, ticket } => {
                // Every node applies it; only the one that took the request
                // has someone to answer.
                let reply = replica
                    .api_pending
                    .remove(&ticket)
                    .unwrap_or_else(|| oneshot::channel().0);
                self.apply(Command::Api { call, reply });
            }
            Op::NodeGone {
                node,
                dropped_ms,
                at_ms,
            } => {
                let mine = node == replica.cluster.node;
                // Windows that ended before the entry was proposed (nobody
                // hosted the room meanwhile): those seats are given up.
                let window = self.ctx.resume_window.as_millis() as u64;
                let ended = match (dropped_ms, at_ms) {
                    (Some(dropped), Some(at)) => dropped.saturating_add(window) <= at,
                    _ => false,
                };
                let gone: Vec<_> = self
                    .seats
                    .iter()
                    .filter(|s| node_of(s.conn) == node && s.outbox.is_some())
                    .map(|s| s.member.id)
                    .collect();
                for id in gone {
                    if mine {
                        // Declared gone while alive (Redis lost us for a
                        // lease): the sockets close and their clients
                        // resume, on this node or another.
                        if let Some(outbox) = self.seat(id).and_then(|s| s.outbox.as_ref()) {
                            outbox.evict();
                        }
                    }
                    if ended {
                        self.leave(id);
                        continue;
                    }
                    let conn = self.seat(id).map_or(0, |s| s.conn);
                    self.away(id);
                    if let Some(dropped) = dropped_ms {
                        self.hold_from(id, conn, dropped);
                    }
                }
            }
        }
    }

    /// The identity a resuming member takes back when Redis lost the log
    /// its session was in (restarted empty: its token names an epoch that
    /// is not the room's, and no seat): the token still proves who its
    /// bearer was, so it comes back with the same id, name and colour, not
    /// recovered, as on one server after a crash (`identity::CrashedRun`).
    /// Decided from the log's entry alone, so every node decides alike;
    /// two resumes with one token meet at the seat (the newer takes it).
    pub(super) fn identity_after_lost_log(&self, resume: &Resume) -> Option<protocol::Member> {
        self.replica.as_ref()?;
        let claim = resume.claim.as_ref()?;
        let lost = resume.epoch.is_some_and(|epoch| epoch != self.epoch);
        (lost && self.seat(claim.member.id).is_none()).then(|| claim.member.clone())
    }

    /// Measures the window of `id`'s seat, away with `conn`, from when
    /// its member dropped (`dropped`, ms since the Unix epoch), not from
    /// when this node applied the drop: a room hosted again long after
    /// gives the seat up when its window really ends.
    fn hold_from(&mut self, id: ClientId, conn: u64, dropped: u64) {
        let window = self.ctx.resume_window;
        if let Some(seat) = self
            .seats
            .iter_mut()
            .find(|s| s.member.id == id && s.conn == conn && s.outbox.is_none())
        {
            let ends = dropped.saturating_add(window.as_millis() as u64);
            seat.away_until = Some(snapshot::local_instant(ends));
        }
    }

    /// Whether cluster-wide connection (or API ticket) `origin` is this
    /// node's.
    pub(super) fn on_this_node(&self, origin: u64) -> bool {
        self.replica
            .as_ref()
            .is_some_and(|r| node_of(origin) == r.cluster.node)
    }

    /// No join of this node is waiting for the log: the room may end here.
    pub(super) fn nothing_pending(&self) -> bool {
        self.replica
            .as_ref()
            .is_none_or(|replica| replica.pending.is_empty())
    }
}

/// The next live entry of a room's log, or the next check. Pending forever
/// when not in cluster mode. A function of the field, so the room's other
/// `select!` branches may borrow the rest.
pub(super) async fn next_heard(replica: &mut Option<Replica>) -> Option<Heard> {
    let Some(replica) = replica else {
        return std::future::pending().await;
    };
    tokio::select! {
        entry = replica.live.recv() => entry.map(Heard::Entry),
        failure = replica.failures.recv() => failure.map(Heard::Failed),
        _ = replica.checks.tick() => Some(Heard::Check),
    }
}
