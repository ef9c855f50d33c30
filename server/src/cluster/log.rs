//! A room's log entry: one operation, as a node received it, before any
//! rule has looked at it. Every node hosting the room applies the entries
//! in the `seq` order Redis gave them, with the same code as one server
//! (`room::replica`), so every node reaches the same room state and numbers
//! the same frames with the same `seq`.

use protocol::{ClientId, ClientMessage, Member};
use serde::{Deserialize, Serialize};

use crate::auth::Access;

/// One operation on a room. `conn` is cluster-wide (see [`global_conn`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum Op {
    /// A `newClient` (with its resume token already verified by the node
    /// that received it).
    Join {
        member: Member,
        /// The member's user and role, as its token granted on the node
        /// that verified it (an entry without: an anonymous member).
        #[serde(default)]
        access: Access,
        conn: u64,
        resume: Option<ResumeClaim>,
    },
    /// A goodbye (`clean`) or a drop (seat held for the resume window).
    Leave {
        id: ClientId,
        conn: u64,
        clean: bool,
        /// When the member dropped (ms since the Unix epoch): its seat is
        /// held for the window from then, whenever a node applies this.
        #[serde(rename = "atMs", default, skip_serializing_if = "Option::is_none")]
        at_ms: Option<u64>,
    },
    Message {
        id: ClientId,
        conn: u64,
        message: ClientMessage,
        /// The frame's `opId`: the rules apply it once per member, so an
        /// operation appended twice (a retry after an unknown outcome, or a
        /// client resending after its node died) counts once.
        #[serde(rename = "opId", default, skip_serializing_if = "Option::is_none")]
        op_id: Option<u64>,
    },
    /// A node saw the resume window of `id`'s seat (taken by `conn`) end;
    /// applied only if that seat is still away with that connection, so
    /// several nodes saying it at once give up the seat once.
    Expire { id: ClientId, conn: u64 },
    /// Activity reordered the members: time to tell the room (batched like
    /// on one server, but decided by the log, not by each node's clock).
    Presence,
    /// A call of the app's backend that changes the room (publish,
    /// disconnect, close; `room/api.rs`). `ticket` is cluster-wide (made
    /// like [`global_conn`]): the node that took the request answers it
    /// when the entry is applied there.
    Api {
        call: crate::room::Call,
        ticket: u64,
    },
    /// Node `node`'s lease lapsed (it died or lost Redis): its members
    /// drop, as if each socket had (away, locks released, seat held).
    NodeGone {
        node: u64,
        /// When its members dropped, as near as the cluster knows (the
        /// node last said it was alive before then): their windows are
        /// measured from it, not from when a node noticed.
        #[serde(rename = "droppedMs", default, skip_serializing_if = "Option::is_none")]
        dropped_ms: Option<u64>,
        /// When the proposing node said so: a seat whose window ended by
        /// then is given up at once, on every node alike.
        #[serde(rename = "atMs", default, skip_serializing_if = "Option::is_none")]
        at_ms: Option<u64>,
    },
}

/// A `newClient`'s resume request. `claim` is what its token said, `None`
/// when it did not verify.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResumeClaim {
    pub claim: Option<Claim>,
    pub epoch: Option<u64>,
    pub last_seq: Option<u64>,
}

/// A verified token's content (`identity::TokenClaim`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claim {
    pub member: Member,
    pub generation: u64,
    pub boot: u64,
}

/// An entry of a room's log: its place in the room's order, and the
/// operation (`None` if it could not be read: it is then applied as
/// nothing, so the order still has no hole).
#[derive(Debug, Clone)]
pub struct Entry {
    pub seq: u64,
    pub op: Option<Op>,
    /// The size of its JSON, as the log holds it: what snapshots are
    /// bounded by (`--cluster-snapshot-bytes`).
    pub bytes: usize,
}

impl Entry {
    /// Reads `seq` and the JSON of an [`Op`].
    pub fn read(seq: u64, body: &[u8]) -> Entry {
        let op = match serde_json::from_slice(body) {
            Ok(op) => Some(op),
            Err(e) => {
                tracing::error!(seq, "unreadable log entry, applied as nothing: {e}");
                None
            }
        };
        Entry {
            seq,
            op,
            bytes: body.len(),
        }
    }

    /// Reads a published message: `"<seq> <op JSON>"`.
    pub fn parse_published(payload: &[u8]) -> Option<Entry> {
        let space = payload.iter().position(|b| *b == b' ')?;
        let seq = std::str::from_utf8(&payload[..space]).ok()?.parse().ok()?;
        Some(Entry::read(seq, &payload[space + 1..]))
    }
}

/// A connection number unique in the cluster: the node's number in the
/// high half, the node's own connection counter in the low half. Seats
/// compare connections, and two nodes count from 1 each.
pub fn global_conn(node: u64, conn: u64) -> u64 {
    (node << 32) | (conn & 0xffff_ffff)
}

/// The node a cluster-wide connection number belongs to.
pub fn node_of(conn: u64) -> u64 {
    conn >> 32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_published_entry_reads_back_as_appended() {
        let op = Op::Leave {
            id: ClientId(7),
            conn: global_conn(3, 9),
            clean: false,
            at_ms: Some(5),
        };
        let payload = format!("42 {}", serde_json::to_string(&op).unwrap());
        let entry = Entry::parse_published(payload.as_bytes()).unwrap();
        assert_eq!(entry.seq, 42);
        assert!(
            matches!(entry.op, Some(Op::Leave { id: ClientId(7), conn, clean: false, at_ms: Some(5) }) if conn == (3 << 32 | 9))
        );
    }

    #[test]
    fn an_unreadable_entry_keeps_its_place() {
        let entry = Entry::parse_published(b"5 {nonsense").unwrap();
        assert_eq!(entry.seq, 5);
        assert!(entry.op.is_none());
    }
}
