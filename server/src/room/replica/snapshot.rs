//! A hosted room's snapshot: its whole replicated state as of one entry of
//! its log, stored in Redis every `--cluster-snapshot-every` entries (the
//! log is trimmed behind it, `cluster/snapshot.rs`). A node that starts
//! hosting the room starts from it and applies only the entries after it,
//! and from then on makes the same frames with the same `seq` as a node
//! that applied the whole log.
//!
//! What is in it, field by field of `Room` (a field added there must be
//! added here, or said here why not):
//! - in: `board`, `locks`, `seats` (in activity order), `seq`, `epoch`,
//!   `history`, `state_request` and `presence_due` (local deadlines, kept
//!   as wall-clock ms), `published_keys` (the dedupe of `idempotencyKey`s,
//!   a room rule), and the replica's `applied` (`log_seq`): what
//!   applying the log built up and what decides later frames.
//! - out: `name`, `ctx`, `hub` (the node's own); `members` and
//!   `seats_taken` (counted from the seats); `saved`, `saved_seq`,
//!   `dirty_since`, `next_save`, `last_save`, `saving` (the local store's,
//!   unused in cluster mode); `unflushed` (one turn's); `presence_told`
//!   (what this node's sockets were told: a node that starts hosting has
//!   none, and each member joining it gets the whole list before any
//!   diff); the rest of `replica` (this node's sockets, joins and queues).

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use protocol::{Board, ClientId, Member, WordId};
use serde::{Deserialize, Serialize};

use super::super::{Outbox, Room, Seat, StateRequest};
use crate::cluster::log::{Entry, Op};
use crate::cluster::snapshot::StoredSnapshot;
use crate::history::now_ms;
use crate::store::StoredFrame;

/// A room's replicated state after applying its log up to `log_seq`, as
/// stored in Redis (JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(in crate::room) struct Snapshot {
    /// The last log entry applied.
    pub log_seq: u64,
    /// The epoch of the log (`attractio:{room}:epoch`) it was built from.
    pub epoch: u64,
    /// The last frame `seq` given.
    pub seq: u64,
    pub board: Option<Board>,
    /// Held words and their holders, sorted by word (one state, one text).
    pub locks: Vec<(WordId, ClientId)>,
    /// Most recently active first.
    pub seats: Vec<SeatRecord>,
    /// The numbered frames kept for resume, oldest first.
    pub history: Vec<StoredFrame>,
    /// A `requestCurrentState` going on (a room with no board yet).
    #[serde(default)]
    pub state_request: Option<StateRequestRecord>,
    /// When the batched reorder is due (ms since the Unix epoch).
    #[serde(default)]
    pub presence_due_ms: Option<u64>,
    /// The recent publishes by `idempotencyKey`, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub published_keys: Vec<super::super::api::KeptPublish>,
}

/// One seat. Every field but `member` has a default, so a snapshot stored
/// before a field was added still reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(in crate::room) struct SeatRecord {
    pub member: Member,
    /// The app's user and the seat's role (`auth::Access`).
    #[serde(default)]
    pub access: crate::auth::Access,
    /// The cluster-wide number of the connection holding it.
    #[serde(default)]
    pub conn: u64,
    /// Present (its socket on some node), or away (seat held for resume).
    #[serde(default)]
    pub live: bool,
    #[serde(default)]
    pub generation: u64,
    /// When an away seat's window ends (ms since the Unix epoch).
    #[serde(default)]
    pub away_until_ms: Option<u64>,
    /// The last `opId` applied from the member (`Seat::last_op`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_op: Option<u64>,
    /// The room's `seq` when the member joined (`Seat::joined`).
    #[serde(default)]
    pub joined: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(in crate::room) struct StateRequestRecord {
    pub asked: ClientId,
    /// ms since the Unix epoch.
    pub deadline_ms: u64,
    pub remaining: Vec<ClientId>,
    pub waiting: Vec<ClientId>,
}

impl Snapshot {
    /// Reads a stored snapshot; an error if it is not one (written by an
    /// incompatible version) or says another entry than Redis does.
    pub fn read(stored: &StoredSnapshot) -> Result<Snapshot, String> {
        let snapshot: Snapshot =
            serde_json::from_slice(&stored.state).map_err(|e| e.to_string())?;
        if snapshot.log_seq != stored.seq {
            return Err(format!(
                "stored as of entry {} but says {}",
                stored.seq, snapshot.log_seq
            ));
        }
        Ok(snapshot)
    }
}

/// The snapshots a hosting node made of a room.
#[derive(Default)]
pub(super) struct Snapshots {
    /// The entry the last one (made or started from) was as of.
    last: u64,
    /// Bytes of the log entries applied since (as Redis holds them).
    pub(super) bytes_since: u64,
    /// The one being encoded or stored.
    storing: Option<tokio::task::JoinHandle<()>>,
}

/// A local deadline as wall-clock ms (what another node's clock can read).
pub(super) fn wall_ms(at: Instant) -> u64 {
    now_ms() + at.saturating_duration_since(Instant::now()).as_millis() as u64
}

/// Wall-clock ms as a local deadline (now, if it passed).
pub(super) fn local_instant(ms: u64) -> Instant {
    Instant::now() + Duration::from_millis(ms.saturating_sub(now_ms()))
}

impl Room {
    /// The room's replicated state now, after log entry `log_seq`, but for
    /// its history, returned as shared frames (copied into the snapshot off
    /// the room's task: it may be a MiB).
    pub(in crate::room) fn capture(&self, log_seq: u64) -> (Snapshot, crate::history::Kept) {
        let mut locks: Vec<(WordId, ClientId)> =
            self.locks.iter().map(|(w, h)| (w.clone(), *h)).collect();
        locks.sort();
        let snapshot = Snapshot {
            log_seq,
            epoch: self.epoch,
            seq: self.seq,
            board: self.board.clone(),
            locks,
            seats: self
                .seats
                .iter()
                .map(|s| SeatRecord {
                    member: s.member.clone(),
                    access: s.access.clone(),
                    conn: s.conn,
                    live: s.outbox.is_some(),
                    generation: s.generation,
                    away_until_ms: s.away_until.map(wall_ms),
                    last_op: s.last_op,
                    joined: s.joined,
                })
                .collect(),
            history: Vec::new(),
            state_request: self.state_request.as_ref().map(|r| StateRequestRecord {
                asked: r.asked,
                deadline_ms: wall_ms(r.deadline),
                remaining: r.remaining.clone(),
                waiting: r.waiting.clone(),
            }),
            presence_due_ms: self.presence_due.map(wall_ms),
            published_keys: self.published_keys.kept(),
        };
        (snapshot, self.history.kept())
    }

    /// Becomes the room `snapshot` describes, whatever it held before.
    /// Present members are on other nodes: none of their sockets is here.
    pub(in crate::room) fn restore(&mut self, snapshot: Snapshot) {
        self.seq = snapshot.seq;
        self.epoch = snapshot.epoch;
        self.board = snapshot.board;
        self.locks = snapshot.locks.into_iter().collect();
        self.seats = snapshot
            .seats
            .into_iter()
            .map(|s| Seat {
                member: s.member,
                access: s.access,
                conn: s.conn,
                outbox: s.live.then(Outbox::elsewhere),
                generation: s.generation,
                away_until: s.away_until_ms.map(local_instant),
                last_op: s.last_op,
                joined: s.joined,
            })
            .collect();
        self.members.store(self.live_members(), Relaxed);
        self.seats_taken.store(self.seats.len(), Relaxed);
        self.history.restore(snapshot.history);
        self.history_due = self.history.expires_at();
        self.state_request = snapshot.state_request.map(|r| StateRequest {
            asked: r.asked,
            deadline: local_instant(r.deadline_ms),
            remaining: r.remaining,
            waiting: r.waiting,
        });
        self.presence_due = snapshot.presence_due_ms.map(local_instant);
        self.published_keys = super::super::api::PublishedKeys::restore(snapshot.published_keys);
        if let Some(replica) = &mut self.replica {
            replica.applied = snapshot.log_seq;
            replica.snapshots.last = snapshot.log_seq;
            replica.snapshots.bytes_since = 0;
        }
    }

    /// Stores the room as it is now if the entries applied since this
    /// node's last snapshot crossed a multiple of `--cluster-snapshot-every`,
    /// or hold more than `--cluster-snapshot-bytes` (a room of large
    /// messages keeps few entries in Redis, not as many).
    /// Every hosting node captures it, at about the same entry; the first
    /// to find no snapshot that new in Redis encodes and stores it (two at
    /// once both do; Redis keeps the newest). Encoding and storing run on
    /// other tasks, one at a time per room: one due while another is on its
    /// way is stored after the next entries or the next check.
    pub(super) fn snapshot_if_due(&mut self) {
        let Some(replica) = &self.replica else { return };
        let retention = &replica.cluster.retention;
        let (every, applied) = (retention.snapshot_every, replica.applied);
        let snapshots = &replica.snapshots;
        let by_bytes = snapshots.bytes_since >= retention.snapshot_bytes;
        if (applied / every <= snapshots.last / every && !by_bytes)
            || applied <= snapshots.last
            || snapshots.storing.as_ref().is_some_and(|s| !s.is_finished())
        {
            return;
        }
        let (mut snapshot, history) = self.capture(applied);
        let (cluster, room, epoch) = (replica.cluster.clone(), self.name.clone(), self.epoch);
        let due_at = if by_bytes {
            applied
        } else {
            applied / every * every
        };
        let storing = tokio::spawn(async move {
            if let Ok(stored) = cluster.snapshot_seq(room.as_str()).await {
                if stored >= due_at {
                    return; // another node's
                }
            }
            let encoded = tokio::task::spawn_blocking(move || {
                snapshot.history = history.to_stored();
                serde_json::to_vec(&snapshot).expect("a snapshot always encodes")
            })
            .await;
            let Ok(state) = encoded else { return };
            match cluster
                .store_snapshot(room.as_str(), (epoch, applied), state, by_bytes)
                .await
            {
                Ok(stored) => tracing::debug!(room = %room, applied, stored, "snapshot"),
                Err(e) => tracing::warn!(room = %room, applied, "storing a snapshot: {e}"),
            }
        });
        if let Some(replica) = &mut self.replica {
            replica.snapshots = Snapshots {
                last: applied,
                bytes_since: 0,
                storing: Some(storing),
            };
        }
    }

    /// Takes entries read from the log from `from` on (`needed`: the log
    /// has them, they come before an entry already heard). If the log no
    /// longer starts there, it was trimmed behind a snapshot past what this
    /// node applied: rather than apply across the hole, the room starts
    /// over from the snapshot ([`Room::start_over`]).
    pub(super) async fn take_read(&mut self, from: u64, needed: bool, entries: Vec<Entry>) {
        let trimmed = match entries.first() {
            Some(first) => first.seq > from,
            None => needed,
        };
        if trimmed {
            return self.start_over().await;
        }
        for entry in entries {
            self.take_entry(entry);
        }
    }

    /// This node fell behind the trimmed log. Its members here drop
    /// through the log (seats held, as on a dropped socket) and their
    /// sockets close; joins waiting here are told to try again (and given
    /// up if the log has them). Then the room is what the snapshot and the
    /// log after it say, like a node that starts hosting it, and the
    /// clients resume on it or any node; the epoch stays, so what they
    /// missed is replayed (`recovered:true`). Without a snapshot to start
    /// from (it cannot be read), the room ends here instead.
    async fn start_over(&mut self) {
        let Some(replica) = &mut self.replica else {
            return;
        };
        tracing::warn!(room = %self.name, applied = replica.applied,
            "the log was trimmed past what this node applied: starting over from the snapshot");
        let given_up: Vec<u64> = replica.pending.drain().map(|(conn, _)| conn).collect();
        replica.given_up.extend(given_up);
        replica.early.clear();
        let cluster = replica.cluster.clone();
        let here: Vec<Op> = self
            .seats
            .iter()
            .filter(|s| s.outbox.is_some() && replica.local.contains(&s.conn))
            .map(|s| Op::Leave {
                id: s.member.id,
                conn: s.conn,
                clean: false,
                at_ms: Some(now_ms()),
            })
            .collect();
        replica.local.clear();
        for op in here {
            self.propose(op);
        }
        for seat in &self.seats {
            if let Some(outbox) = &seat.outbox {
                outbox.evict();
            }
        }
        self.presence_told = Default::default();
        let read = cluster.snapshot_and_after(self.name.as_str()).await;
        let snapshot = match &read {
            Ok((Some(stored), _)) => Snapshot::read(stored),
            Ok((None, _)) => Err("none stored".into()),
            Err(e) => Err(format!("{e:#}")),
        };
        match (snapshot, read) {
            (Ok(snapshot), Ok((_, after))) if snapshot.epoch == self.epoch => {
                self.restore(snapshot);
                // Joins given up that the snapshot holds: their seats go.
                let ghosts: Vec<Op> = match &mut self.replica {
                    Some(replica) => self
                        .seats
                        .iter()
                        .filter(|s| replica.given_up.remove(&s.conn))
                        .map(|s| Op::Leave {
                            id: s.member.id,
                            conn: s.conn,
                            clean: true,
                            at_ms: None,
                        })
                        .collect(),
                    None => Vec::new(),
                };
                for op in ghosts {
                    self.propose(op);
                }
                for entry in after {
                    self.take_entry(entry);
                }
            }
            (snapshot, _) => {
                let e = snapshot.err().unwrap_or_else(|| "of another epoch".into());
                tracing::error!(room = %self.name, "cannot start over from the snapshot ({e}): the room ends here");
                self.end_here();
            }
        }
    }

    /// Lets go of every seat here (their sockets were closed): the room
    /// ends on this node, as if empty, and is hosted afresh by the next
    /// joiner.
    fn end_here(&mut self) {
        self.seats.clear();
        self.state_request = None;
        self.presence_due = None;
        self.members.store(0, Relaxed);
        self.seats_taken.store(0, Relaxed);
        if let Some(replica) = &mut self.replica {
            // The room is not empty, only gone from here: not recorded as 0.
            replica.counted = (0, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    use protocol::{ClientMessage, RoomName};
    use serde_json::json;
    use tokio::sync::oneshot;

    use super::*;
    use crate::history::{HistoryBudget, HistoryLimits};
    use crate::room::{Command, RoomContext};

    fn context(dir: &std::path::Path) -> Arc<RoomContext> {
        Arc::new(RoomContext {
            max_room_size: 8,
            limits: Default::default(),
            max_room_stored_bytes: 2 << 20,
            max_turn_bytes: 1 << 20,
            save_interval: Duration::from_secs(1),
            state_timeout: Duration::from_secs(2),
            history: HistoryLimits {
                frames: 64,
                bytes: 1 << 20,
                budget: Arc::new(HistoryBudget::new(1 << 24)),
            },
            resume_window: Duration::from_secs(120),
            api_idempotency_keys: 16,
            api_idempotency_window: Duration::from_secs(600),
            previous_run_clean: true,
            crashed_run: None,
            tokens: Arc::new(crate::identity::TokenKey::new([7; 32], 0)),
            store: Arc::new(crate::store::SledStore::open(dir).unwrap()),
            cluster: None,
            webhooks: None,
            metrics: Arc::default(),
            shutdown: Default::default(),
        })
    }

    /// A room that has applied nothing, its members all on other nodes.
    fn empty_room(ctx: &Arc<RoomContext>) -> Room {
        let counts = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let hub = crate::hub::Hub::new(ctx.clone());
        Room::empty(RoomName::new("snap").unwrap(), ctx.clone(), hub, counts, 41)
    }

    fn member(id: u64) -> Member {
        Member {
            id: ClientId(id),
            name: format!("m{id}"),
            color: "#123456".into(),
        }
    }

    /// One log entry's command: `(member, message)`, a join (`None`) or a
    /// drop (`"drop"`).
    fn apply(room: &mut Room, id: u64, what: serde_json::Value) {
        let command = match what["action"].as_str() {
            Some("join") => Command::Join {
                member: member(id),
                access: Default::default(),
                conn: id * 10,
                outbox: Outbox::elsewhere(),
                resume: None,
                reply: oneshot::channel().0,
            },
            Some("drop") => Command::Leave {
                id: ClientId(id),
                conn: id * 10,
                clean: false,
            },
            _ => Command::Message {
                id: ClientId(id),
                conn: id * 10,
                op_id: what["opId"].as_u64(),
                message: serde_json::from_value::<ClientMessage>(what).unwrap(),
            },
        };
        room.apply(command);
    }

    /// What a room is, without the local clock's readings.
    fn state(room: &Room) -> Snapshot {
        let (mut s, history) = room.capture(0);
        s.history = history.to_stored();
        s.history.iter_mut().for_each(|f| f.at_ms = 0);
        s.seats
            .iter_mut()
            .for_each(|seat| seat.away_until_ms = None);
        s.presence_due_ms = s.presence_due_ms.map(|_| 0);
        s
    }

    #[test]
    fn a_room_started_from_its_snapshot_goes_on_exactly_like_the_room() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = context(dir.path());
        let mut whole = empty_room(&ctx);
        // Positions no decimal text of few digits holds exactly.
        let before = [
            (1, json!({"action":"join"})),
            (2, json!({"action":"join"})),
            (3, json!({"action":"join"})),
            (
                1,
                json!({"action":"stateUpdate","data":[
                {"id":"w0","text":"zero","x":0.1 + 0.2,"y":1.0 / 3.0},
                {"id":"w1","text":"one","x":123_456.789_012_345_67,"y":-2.5e-7},
                {"id":"w2","text":"two","x":5,"y":6}]}),
            ),
            (2, json!({"action":"freeze","elementID":"w0"})),
            (3, json!({"action":"talkToRoom","data":"hello"})),
            (1, json!({"action":"talkToRoom","data":"numbered","opId":7})),
            (1, json!({"action":"privateMessage","to":2,"data":"psst"})),
            (3, json!({"action":"drop"})),
            (
                2,
                json!({"action":"moving","elementID":"w0","dx":0.7,"dy":0.1}),
            ),
        ];
        for (id, what) in before {
            apply(&mut whole, id, what);
        }
        let (mut snapshot, history) = whole.capture(9);
        snapshot.history = history.to_stored();
        let text = serde_json::to_vec(&snapshot).unwrap();
        let stored = StoredSnapshot {
            seq: 9,
            state: text,
        };
        let mut started = empty_room(&ctx);
        started.restore(Snapshot::read(&stored).unwrap());
        assert_eq!(state(&started), state(&whole));
        assert_eq!(started.seats_taken.load(Relaxed), 3);
        assert_eq!(started.members.load(Relaxed), 2);

        let after = [
            (
                2,
                json!({"action":"moveEnd","elementID":"w0","finalX":7.25,"finalY":0.1}),
            ),
            (1, json!({"action":"freeze","elementID":"w0"})), // refused: 2 holds it
            (2, json!({"action":"unfreeze","elementID":"w0"})),
            (4, json!({"action":"join"})),
            (1, json!({"action":"talkToRoom","data":"again"})),
            // Sent again after an unknown outcome: applied once, here too.
            (1, json!({"action":"talkToRoom","data":"numbered","opId":7})),
            (4, json!({"action":"privateMessage","to":1,"data":"hi"})),
            (1, json!({"action":"delete","elementID":"w2"})),
            (2, json!({"action":"drop"})),
        ];
        for (id, what) in after {
            apply(&mut whole, id, what.clone());
            apply(&mut started, id, what);
        }
        let (a, b) = (state(&whole), state(&started));
        assert_eq!(b, a);
        assert!(a.seq > snapshot.seq + 4, "the frames after are numbered on");
        assert!(a.locks.is_empty());
        // The same frames, with the same seq, in the same order.
        let texts = |s: &Snapshot| {
            s.history
                .iter()
                .map(|f| (f.seq, f.text.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(texts(&b), texts(&a));
        assert!(texts(&a).iter().any(|(_, t)| t.contains("7.25")));
    }

    #[test]
    fn a_snapshot_of_another_entry_than_stored_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let room = empty_room(&context(dir.path()));
        let (snapshot, _) = room.capture(1000);
        let stored = StoredSnapshot {
            seq: 2000,
            state: serde_json::to_vec(&snapshot).unwrap(),
        };
        assert!(Snapshot::read(&stored).is_err());
        let garbage = StoredSnapshot {
            seq: 1000,
            state: b"{nonsense".to_vec(),
        };
        assert!(Snapshot::read(&garbage).is_err());
    }

    #[test]
    fn a_seat_record_of_an_older_version_reads_with_defaults() {
        let seat: SeatRecord = serde_json::from_value(
            json!({"member":{"id":5,"name":"five","color":"#000000"},"conn":7}),
        )
        .unwrap();
        assert_eq!(seat.member.id, ClientId(5));
        assert!(!seat.live);
        assert_eq!(seat.generation, 0);
    }

    proptest::proptest! {
        /// Two nodes hold the same board only if every position survives
        /// the snapshot's text to the last bit (serde_json's
        /// `float_roundtrip`: without it, some numbers read back one bit off).
        #[test]
        fn positions_survive_a_snapshot_to_the_last_bit(
            x in -protocol::limits::MAX_COORDINATE..protocol::limits::MAX_COORDINATE,
            y in -1.0f64..1.0,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let mut room = empty_room(&context(dir.path()));
            apply(&mut room, 1, json!({"action":"join"}));
            apply(&mut room, 1, json!({"action":"stateUpdate","data":[{"id":"w","text":"w","x":x,"y":y}]}));
            let (snapshot, _) = room.capture(2);
            let stored = StoredSnapshot { seq: 2, state: serde_json::to_vec(&snapshot).unwrap() };
            let read = Snapshot::read(&stored).unwrap();
            let word = read.board.as_ref().unwrap().get(&WordId::new("w").unwrap()).unwrap().clone();
            proptest::prop_assert_eq!((word.x.to_bits(), word.y.to_bits()), (x.to_bits(), y.to_bits()));
        }
    }
}
