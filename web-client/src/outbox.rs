//! What the user did while the app was not in its room (socket down, or
//! not rejoined yet): kept in order and sent once the room is back, so
//! nothing is silently thrown away. And what was sent but may not have
//! arrived: each kept message goes out numbered (`opId`), and after a
//! resume the ones past the room's `lastOp` go again with the same numbers,
//! so the room applies each once (`protocol::ClientFrame::op_id`).

use std::collections::VecDeque;

use protocol::ClientMessage;

/// How many sent messages are remembered for a resend. Older ones had
/// all the time a round trip takes to arrive; a resume that finds one of
/// them missing (a `lastOp` below them) cannot send it again.
pub const UNCONFIRMED: usize = 256;

/// Messages waiting for the room, oldest first, and the last ones sent.
#[derive(Clone, Debug, Default)]
pub struct Outbox {
    queue: VecDeque<ClientMessage>,
    /// The last `opId` given.
    last_op: u64,
    /// Sent and not known to be applied, oldest first, with their `opId`.
    unconfirmed: VecDeque<(u64, ClientMessage)>,
}

impl Outbox {
    /// Whether a message is worth keeping for later. `moving` is a transient
    /// glide (the `moveEnd` that follows carries where the word landed),
    /// `echo` measures a connection that is gone, and `newClient` is sent
    /// afresh on every connect.
    pub fn keeps(msg: &ClientMessage) -> bool {
        !matches!(
            msg,
            ClientMessage::Moving { .. }
                | ClientMessage::Echo { .. }
                | ClientMessage::NewClient { .. }
                | ClientMessage::EmptyRoom
        )
    }

    /// Queues `msg` if it is worth keeping; says whether it was.
    pub fn push(&mut self, msg: ClientMessage) -> bool {
        if !Outbox::keeps(&msg) {
            return false;
        }
        // A newer board replaces everything queued before it.
        if matches!(msg, ClientMessage::StateUpdate { .. }) {
            self.queue
                .retain(|m| matches!(m, ClientMessage::TalkToRoom { .. }));
        }
        self.queue.push_back(msg);
        true
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Everything queued, oldest first, leaving the outbox empty.
    pub fn drain(&mut self) -> Vec<ClientMessage> {
        self.queue.drain(..).collect()
    }

    /// Drops queued board changes (kept: chat lines); used when the whole
    /// board is being sent instead.
    pub fn drop_board_changes(&mut self) {
        self.queue
            .retain(|m| matches!(m, ClientMessage::TalkToRoom { .. }));
    }

    /// The `opId` `msg` goes out with, if it is worth sending again after
    /// a resume ([`Outbox::keeps`]); record it with [`Outbox::sent`] once
    /// written.
    pub fn op_id_for(&self, msg: &ClientMessage) -> Option<u64> {
        Outbox::keeps(msg).then_some(self.last_op + 1)
    }

    /// `msg` went out as `op_id`: remembered until a resume says whether
    /// it arrived (at most [`UNCONFIRMED`], the oldest forgotten first).
    pub fn sent(&mut self, op_id: u64, msg: ClientMessage) {
        self.last_op = self.last_op.max(op_id);
        if self.unconfirmed.len() == UNCONFIRMED {
            self.unconfirmed.pop_front();
        }
        self.unconfirmed.push_back((op_id, msg));
    }

    /// The room resumed our session (`resumed`), having applied our
    /// operations up to `last_op`: what was sent after it, oldest first, to
    /// send again with the same `opId`. A `recovered` resume kept our seat,
    /// so no `last_op` there means none of ours was applied: all go again.
    /// Not recovered and no `last_op`, the seat may not be ours from
    /// before (a fresh one, a crashed run's identity taken back) and the
    /// room cannot say what it applied: nothing goes again, rather than
    /// something applied twice.
    pub fn resumed(&mut self, recovered: bool, last_op: Option<u64>) -> Vec<(u64, ClientMessage)> {
        let Some(applied) = last_op.or(recovered.then_some(0)) else {
            self.unconfirmed.clear();
            return Vec::new();
        };
        // A page that reloaded numbers on from the room's count.
        self.last_op = self.last_op.max(applied);
        self.unconfirmed.retain(|(op, _)| *op > applied);
        self.unconfirmed.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::WordId;
    use serde_json::json;

    fn id() -> WordId {
        WordId::new("w1").unwrap()
    }

    #[test]
    fn board_changes_and_chat_wait_in_order_but_glides_do_not() {
        let mut out = Outbox::default();
        assert!(out.push(ClientMessage::Freeze { element_id: id() }));
        assert!(!out.push(ClientMessage::Moving {
            element_id: id(),
            dx: 1.0,
            dy: 1.0
        }));
        assert!(out.push(ClientMessage::MoveEnd {
            element_id: id(),
            final_x: 5.0,
            final_y: 6.0
        }));
        assert!(out.push(ClientMessage::TalkToRoom { data: json!("hi") }));
        assert!(!out.push(ClientMessage::Echo { data: json!(1) }));
        let actions: Vec<_> = out.drain().iter().map(|m| m.action().to_owned()).collect();
        assert_eq!(actions, ["freeze", "moveEnd", "talkToRoom"]);
        assert!(out.is_empty());
    }

    #[test]
    fn after_a_resume_what_the_room_did_not_apply_goes_again_with_its_number() {
        let mut out = Outbox::default();
        let glide = ClientMessage::Moving {
            element_id: id(),
            dx: 1.0,
            dy: 1.0,
        };
        assert_eq!(out.op_id_for(&glide), None);
        for i in 1..=4 {
            let line = ClientMessage::TalkToRoom { data: json!(i) };
            let op = out.op_id_for(&line).unwrap();
            assert_eq!(op, i);
            out.sent(op, line);
        }
        let again = out.resumed(true, Some(2));
        let ops: Vec<u64> = again.iter().map(|(op, _)| *op).collect();
        assert_eq!(ops, [3, 4]);
        assert_eq!(again[0].1, ClientMessage::TalkToRoom { data: json!(3) });
        // Still unconfirmed until a resume says so.
        assert_eq!(out.resumed(true, Some(3)).len(), 1);
        // Numbering goes on past the room's count (a reloaded page starts
        // from nothing and learns it from `lastOp`).
        let mut reloaded = Outbox::default();
        assert!(reloaded.resumed(true, Some(40)).is_empty());
        assert_eq!(reloaded.op_id_for(&ClientMessage::EmptyRoom), None);
        let line = ClientMessage::TalkToRoom { data: json!("x") };
        assert_eq!(reloaded.op_id_for(&line), Some(41));
        // A seat not kept: nothing goes again.
        assert!(out.resumed(false, None).is_empty());
        assert!(out.resumed(true, Some(0)).is_empty());
    }

    /// The server's `lastOp` is the seat's last applied `opId`, absent
    /// until one is applied (`Seat::last_op`): a seat kept with none of
    /// ours applied still resumes, and what we sent must go again.
    #[test]
    fn a_recovered_resume_without_a_last_op_sends_everything_again_with_its_number() {
        let mut out = Outbox::default();
        for i in 1..=3 {
            let line = ClientMessage::TalkToRoom { data: json!(i) };
            let op = out.op_id_for(&line).unwrap();
            out.sent(op, line);
        }
        let again = out.resumed(true, None);
        let ops: Vec<u64> = again.iter().map(|(op, _)| *op).collect();
        assert_eq!(ops, [1, 2, 3]);
        assert_eq!(again[2].1, ClientMessage::TalkToRoom { data: json!(3) });
        // Still unconfirmed: a second drop before the room answers them
        // sends them once more.
        assert_eq!(out.resumed(true, None).len(), 3);
        // New messages number on after them, not over them.
        let line = ClientMessage::TalkToRoom { data: json!("x") };
        assert_eq!(out.op_id_for(&line), Some(4));
        // Once the room says it applied them, they are done.
        assert!(out.resumed(true, Some(3)).is_empty());
    }

    #[test]
    fn a_resume_that_did_not_keep_the_seat_sends_nothing_again() {
        let mut out = Outbox::default();
        out.sent(1, ClientMessage::TalkToRoom { data: json!(1) });
        assert!(out.resumed(false, None).is_empty());
        // Forgotten, not kept for a later resume either.
        assert!(out.resumed(true, None).is_empty());
    }

    #[test]
    fn only_the_last_sent_are_remembered() {
        let mut out = Outbox::default();
        for i in 1..=(UNCONFIRMED as u64 + 10) {
            out.sent(i, ClientMessage::TalkToRoom { data: json!(i) });
        }
        let again = out.resumed(true, Some(0));
        assert_eq!(again.len(), UNCONFIRMED);
        assert_eq!(again[0].0, 11);
    }

    #[test]
    fn a_new_board_supersedes_earlier_board_changes() {
        let mut out = Outbox::default();
        out.push(ClientMessage::Delete { element_id: id() });
        out.push(ClientMessage::TalkToRoom { data: json!("hi") });
        out.push(ClientMessage::StateUpdate {
            data: Default::default(),
        });
        let actions: Vec<_> = out.drain().iter().map(|m| m.action().to_owned()).collect();
        assert_eq!(actions, ["talkToRoom", "stateUpdate"]);
    }
}
