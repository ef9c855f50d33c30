//! The way into a room's log: a connection's command, or what a timer or a
//! slow consumer decides here, becomes an operation appended in order by
//! the room's appender task; applying it waits for the log.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use protocol::{ClientId, RoomName};
use tokio::sync::mpsc;

use super::super::{Command, Room};
use super::{Failure, PROPOSE_AGAIN};
use crate::cluster::health::Progress;
use crate::cluster::log::{global_conn, Claim, Op, ResumeClaim};
use crate::cluster::Cluster;
use crate::history::now_ms;

impl Room {
    pub(in crate::room) fn seat_of(&self, conn: u64) -> Option<ClientId> {
        self.seats
            .iter()
            .find(|s| s.conn == conn)
            .map(|s| s.member.id)
    }

    /// Appends a connection's command to the log instead of acting on it;
    /// a join waits here for its entry to come back.
    pub(in crate::room) fn submit(&mut self, command: Command) {
        let Some(replica) = &mut self.replica else {
            return;
        };
        let node = replica.cluster.node;
        let op = match command {
            Command::Join {
                member,
                access,
                conn,
                outbox,
                resume,
                reply,
            } => {
                let conn = global_conn(node, conn);
                replica.pending.insert(conn, (outbox, reply));
                Op::Join {
                    member,
                    access,
                    conn,
                    resume: resume.map(|r| ResumeClaim {
                        claim: r.claim.map(|c| Claim {
                            member: c.member,
                            generation: c.generation,
                            boot: c.boot,
                        }),
                        epoch: r.epoch,
                        last_seq: r.last_seq,
                    }),
                }
            }
            Command::Leave { id, conn, clean } => Op::Leave {
                id,
                conn: global_conn(node, conn),
                clean,
                at_ms: (!clean).then(now_ms),
            },
            Command::Message {
                id,
                conn,
                message,
                op_id,
            } => Op::Message {
                id,
                conn: global_conn(node, conn),
                message,
                op_id,
            },
            Command::Api { call, reply } => {
                let ticket = global_conn(node, replica.cluster.next_append_id());
                replica.api_pending.insert(ticket, reply);
                Op::Api { call, ticket }
            }
        };
        self.propose(op);
    }

    /// Queues `op` for the log. A join whose entry cannot be queued is
    /// answered by dropping its reply (the joiner retries).
    pub(in crate::room) fn propose(&mut self, op: Op) {
        let Some(replica) = &mut self.replica else {
            return;
        };
        let Some(appender) = &replica.appender else {
            return;
        };
        if let Err(e) = appender.try_send(op) {
            let op = e.into_inner();
            tracing::warn!(room = %self.name, "append queue full: dropped {op:?}");
            match op {
                Op::Join { conn, .. } => {
                    replica.pending.remove(&conn);
                }
                Op::Message { id, op_id, .. } => self.tell_unavailable(id, op_id),
                // Its caller is answered by dropping the reply (a 503).
                Op::Api { ticket, .. } => {
                    replica.api_pending.remove(&ticket);
                }
                _ => {}
            }
        }
    }

    /// Tells a member here that its message may not have reached the room
    /// (Redis did not take it, or did not say so in time).
    pub(in crate::room) fn tell_unavailable(&mut self, id: ClientId, op_id: Option<u64>) {
        let which = op_id.map_or_else(String::new, |op| format!(" (opId {op})"));
        let data = protocol::ErrorBody::new(
            protocol::ErrorCode::Unavailable,
            format!(
                "the room's log did not take this message{which}; it may not have been applied"
            ),
        );
        self.ctx.metrics.error(data.code);
        self.send_to(id, protocol::ServerMessage::Error { data }, false);
    }

    /// A slow consumer here drops like a socket would: through the log, so
    /// every node holds its seat at the same point.
    pub(in crate::room) fn propose_drop(&mut self, id: ClientId) {
        if let Some(seat) = self.seat(id) {
            let conn = seat.conn;
            self.propose(Op::Leave {
                id,
                conn,
                clean: false,
                at_ms: Some(now_ms()),
            });
        }
    }

    /// Held seats whose window ended here: proposed as ended (every node
    /// may; the first entry applied gives the seat up, the rest find it
    /// gone). Asked again after a while if no entry came.
    pub(in crate::room) fn propose_expiry(&mut self, now: Instant) {
        let mut ended = Vec::new();
        for seat in &mut self.seats {
            if seat.away_until.is_some_and(|t| t <= now) {
                seat.away_until = Some(now + PROPOSE_AGAIN);
                ended.push(Op::Expire {
                    id: seat.member.id,
                    conn: seat.conn,
                });
            }
        }
        for op in ended {
            self.propose(op);
        }
    }

    /// The batched presence is due: the node of the most recently active
    /// member proposes it (one entry, not one per node).
    pub(in crate::room) fn propose_presence(&mut self) {
        self.presence_due = None;
        let Some(replica) = &self.replica else { return };
        if self
            .seats
            .first()
            .is_some_and(|s| replica.local.contains(&s.conn))
        {
            self.propose(Op::Presence);
        }
    }

    /// Stops hosting: on shutdown the members whose sockets are here drop
    /// (their seats held, as on one server), then what is queued is
    /// appended (for at most a few seconds) and the room's channel let go.
    pub(in crate::room) async fn unhost(&mut self, shutdown: bool) {
        if shutdown {
            let here: Vec<Op> = match &self.replica {
                Some(replica) => self
                    .seats
                    .iter()
                    .filter(|s| replica.local.contains(&s.conn))
                    .map(|s| Op::Leave {
                        id: s.member.id,
                        conn: s.conn,
                        clean: false,
                        at_ms: Some(now_ms()),
                    })
                    .collect(),
                None => return,
            };
            for op in here {
                self.propose(op);
            }
        }
        let Some(mut replica) = self.replica.take() else {
            return;
        };
        replica.appender = None;
        let _ = tokio::time::timeout(Duration::from_secs(3), &mut replica.appending).await;
        replica
            .cluster
            .unhost(self.name.as_str(), &replica.route)
            .await;
    }
}

/// Appends a room's operations one at a time, so they enter the log in the
/// order the room made them (a member's freeze before its move). Failures
/// are told to the room.
pub(super) async fn append_in_order(
    cluster: Arc<Cluster>,
    (room, epoch, applied): (RoomName, u64, Arc<AtomicU64>),
    progress: Arc<Progress>,
    mut queue: mpsc::Receiver<Op>,
    failed: mpsc::Sender<Failure>,
) {
    while let Some(op) = queue.recv().await {
        // A failed append is an unknown outcome (Redis may have taken it,
        // or may still): it is tried again with the same append id, which
        // Redis appends once.
        let append_id = cluster.next_append_id();
        let mut tries = 0;
        let e = loop {
            let at = (epoch, applied.load(Relaxed));
            let e = match cluster.append(room.as_str(), at, &op, append_id).await {
                Ok(seq) => {
                    let lag = seq.and_then(|seq| cluster.health.appended(&progress, seq));
                    if let Some(lag) = lag {
                        cluster.metrics.append_to_apply.observe(lag);
                    }
                    break None;
                }
                Err(e) => e,
            };
            cluster.metrics.redis_errors.fetch_add(1, Relaxed);
            tries += 1;
            if lost(&e).is_some() || tries >= APPEND_TRIES {
                break Some(e);
            }
            cluster.metrics.retries.fetch_add(1, Relaxed);
            tracing::warn!(room = %room, "appending {op:?} (try {tries}): {e}");
            tokio::time::sleep(RETRY_AFTER * tries).await;
        };
        let Some(e) = e else { continue };
        tracing::error!(room = %room, "appending {op:?}: {e}");
        let failure = match op {
            _ if lost(&e).is_some() => Failure::LogLost {
                tail: lost(&e) == Some(Lost::Tail),
            },
            Op::Join { conn, .. } => Failure::Join(conn),
            Op::Message { id, op_id, .. } => Failure::Message(id, op_id),
            _ => Failure::Other,
        };
        let _ = failed.send(failure).await;
    }
}

#[derive(PartialEq)]
enum Lost {
    /// The room's epoch in Redis is not this room's: the log is gone, or
    /// another node started the room over.
    Epoch,
    /// The log ends before what this node applied.
    Tail,
}

fn lost(e: &redis::RedisError) -> Option<Lost> {
    match e.code() {
        Some("EPOCH") => Some(Lost::Epoch),
        Some("TAIL") => Some(Lost::Tail),
        _ => None,
    }
}

/// How many times an operation is tried before its sender is told, and
/// the pause before each retry (times the tries so far).
const APPEND_TRIES: u32 = 3;
const RETRY_AFTER: Duration = Duration::from_millis(250);
