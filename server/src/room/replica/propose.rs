//! The way into a room's log: a connection's command, or what a timer or a
//! slow consumer decides here, becomes an operation appended in order by
//! the room's appender task; applying it waits for the log.

use std::sync::Arc;
use std::time::{Duration, Instant};

use protocol::{ClientId, RoomName};
use tokio::sync::mpsc;

use super::super::{Command, Room};
use super::{Failure, PROPOSE_AGAIN};
use crate::cluster::log::{global_conn, Claim, Op, ResumeClaim};
use crate::cluster::Cluster;

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
                conn,
                outbox,
                resume,
                reply,
            } => {
                let conn = global_conn(node, conn);
                replica.pending.insert(conn, (outbox, reply));
                Op::Join {
                    member,
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
            },
            Command::Message { id, conn, message } => Op::Message {
                id,
                conn: global_conn(node, conn),
                message,
            },
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
                Op::Message { id, .. } => self.tell_unavailable(id),
                _ => {}
            }
        }
    }

    /// Tells a member here that its message may not have reached the room
    /// (Redis did not take it, or did not say so in time).
    pub(in crate::room) fn tell_unavailable(&mut self, id: ClientId) {
        let data = protocol::ErrorBody::new(
            protocol::ErrorCode::Unavailable,
            "the room's log did not take this message; it may not have been applied",
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
    (room, epoch): (RoomName, u64),
    mut queue: mpsc::Receiver<Op>,
    failed: mpsc::Sender<Failure>,
) {
    while let Some(op) = queue.recv().await {
        let Err(e) = cluster.append(room.as_str(), epoch, &op).await else {
            continue;
        };
        // An unknown outcome (it may have been applied): not retried
        // without operation ids to dedupe by.
        tracing::error!(room = %room, "appending {op:?}: {e}");
        let failure = match op {
            _ if e.code() == Some("EPOCH") => Failure::LogLost,
            Op::Join { conn, .. } => Failure::Join(conn),
            Op::Message { id, .. } => Failure::Message(id),
            _ => Failure::Other,
        };
        let _ = failed.send(failure).await;
    }
}
