//! How a room's frames reach its members: serialised once, the same bytes
//! queued for every recipient and written by the room when its turn ends,
//! reliable frames numbered and kept in history, volatile ones droppable.

use std::sync::atomic::Ordering::Relaxed;

use crate::ws::Text;
use protocol::{ClientId, ServerFrame, ServerMessage};

use super::Room;
use crate::outbox::{Outbox, Queued, SendError};

impl Room {
    /// Serialises `message` once, stamped with the next sequence number and
    /// kept in history, and queues the same bytes for every present member
    /// but `except`.
    pub(super) fn broadcast(&mut self, except: Option<ClientId>, message: ServerMessage) {
        self.seq += 1;
        let action = action_name(&message);
        let text = self.encode(message, true);
        self.history.push(self.seq, except, None, text.clone());
        self.history_due = self.history_due.or_else(|| self.history.expires_at());
        self.deliver(action, &text, |id| Some(id) == except);
    }

    /// Like [`Room::broadcast`] for frames that matter only while connected
    /// (presence): no sequence number, not kept, so never replayed, but
    /// reliable (a full queue evicts), for every present member not in `skip`.
    pub(super) fn broadcast_unnumbered(&mut self, skip: &[ClientId], message: ServerMessage) {
        let action = action_name(&message);
        let text = self.encode(message, false);
        self.deliver(action, &text, |id| skip.contains(&id));
    }

    /// Queues `text` for every present member but those `skip` names, and
    /// evicts each whose queue is full (every caller's frames are reliable).
    fn deliver(&mut self, action: &'static str, text: &Text, skip: impl Fn(ClientId) -> bool) {
        let mut slow = Vec::new();
        let mut sent = 0;
        for seat in self.seats.iter().filter(|s| !skip(s.member.id)) {
            let Some(outbox) = &seat.outbox else { continue };
            match outbox.try_send(text.clone()) {
                Ok(queued) => {
                    sent += 1;
                    self.turn.queued(queued);
                    owed(&mut self.unflushed, queued, outbox);
                }
                Err(SendError::Full) => slow.push(seat.member.id),
                Err(SendError::Closed) => {}
            }
        }
        self.count_out(action, sent);
        self.turn.frame(text, sent);
        for id in slow {
            self.evict(id);
        }
    }

    /// Like [`Room::broadcast`] for transient frames: no sequence number,
    /// not kept, and a lagging member misses it instead of being closed.
    pub(super) fn broadcast_volatile(&mut self, except: ClientId, message: ServerMessage) {
        let action = action_name(&message);
        let text = self.encode(message, false);
        let mut sent = 0;
        for seat in self.seats.iter().filter(|s| s.member.id != except) {
            let Some(outbox) = &seat.outbox else { continue };
            if let Ok(queued) = outbox.try_send_volatile(text.clone()) {
                sent += 1;
                self.turn.queued(queued);
                owed(&mut self.unflushed, queued, outbox);
            } else {
                self.ctx.metrics.volatile_dropped.fetch_add(1, Relaxed);
            }
        }
        self.count_out(action, sent);
        self.turn.frame(&text, sent);
    }

    /// Ends a turn: the turn's presence changes are told, then each
    /// member's frames of the turn go out together, written by the room
    /// itself (see `outbox`).
    pub(super) fn write_out(&mut self) {
        self.tell_presence();
        for outbox in self.unflushed.drain(..) {
            outbox.flush();
        }
        self.turn = Turn::default();
    }

    fn count_out(&self, action: &str, sent: u64) {
        let metrics = &self.ctx.metrics;
        metrics.messages_out(action, sent);
        metrics.broadcasts.fetch_add(1, Relaxed);
        metrics.broadcast_recipients.fetch_add(sent, Relaxed);
    }

    /// A private message: numbered and kept like a broadcast (so it is
    /// replayed on resume) but for one member.
    pub(super) fn private(&mut self, from: ClientId, to: ClientId, message: ServerMessage) {
        self.seq += 1;
        let action = action_name(&message);
        let text = self.encode(message, true);
        self.history
            .push(self.seq, Some(from), Some(to), text.clone());
        self.history_due = self.history_due.or_else(|| self.history.expires_at());
        if self.send_text(to, text) {
            self.ctx.metrics.messages_out(action, 1);
        }
    }

    /// One member only. `stamped` messages carry the current seq and epoch
    /// (the joiner's starting point) without taking a new number.
    pub(super) fn send_to(&mut self, id: ClientId, message: ServerMessage, stamped: bool) {
        let action = action_name(&message);
        let text = self.encode(message, stamped);
        if self.send_text(id, text) {
            self.ctx.metrics.messages_out(action, 1);
        }
    }

    /// Like [`Room::send_to`] for what a joiner or resumer is sent to get
    /// in (board, locks, replay, its `resumed`): not counted against its
    /// queue ([`Outbox::try_send_entry`]), bounded in bytes by the board's,
    /// the locks' and the history's own bounds.
    pub(super) fn send_entry(&mut self, id: ClientId, message: ServerMessage, stamped: bool) {
        let action = action_name(&message);
        let text = self.encode(message, stamped);
        if self.queue_for(id, text, true) {
            self.ctx.metrics.messages_out(action, 1);
        }
    }

    /// Queues ready bytes for one present member; a full queue evicts it.
    pub(super) fn send_text(&mut self, id: ClientId, text: Text) -> bool {
        self.queue_for(id, text, false)
    }

    /// Queues `text` for `id`, as part of its way in (`entry`) or not.
    pub(super) fn queue_for(&mut self, id: ClientId, text: Text, entry: bool) -> bool {
        // The seats field, not `self.seat`: `owed` borrows `unflushed` beside it.
        let seat = self.seats.iter().find(|s| s.member.id == id);
        let Some(outbox) = seat.and_then(|s| s.outbox.as_ref()) else {
            return false;
        };
        let queued = if entry {
            outbox.try_send_entry(text.clone())
        } else {
            outbox.try_send(text.clone())
        };
        match queued {
            Ok(queued) => {
                self.turn.queued(queued);
                self.turn.frame(&text, 1);
                owed(&mut self.unflushed, queued, outbox);
                true
            }
            Err(SendError::Full) => {
                self.evict(id);
                false
            }
            Err(SendError::Closed) => false,
        }
    }

    pub(super) fn encode(&self, message: ServerMessage, stamped: bool) -> Text {
        let frame = ServerFrame {
            message,
            seq: stamped.then_some(self.seq),
            epoch: stamped.then_some(self.epoch),
        };
        Text::from(frame.encode())
    }

    /// A member whose queue is full is let go ("slow consumer"): nothing
    /// more is queued for it, and its connection finishes the frame on the
    /// wire and closes with 1008 (see `Outbox::evict`). Like any drop, its
    /// seat is held for the resume window.
    fn evict(&mut self, id: ClientId) {
        let Some(outbox) = self.seat(id).and_then(|s| s.outbox.as_ref()) else {
            return;
        };
        outbox.evict();
        let metrics = &self.ctx.metrics;
        metrics.slow_consumer_disconnects.fetch_add(1, Relaxed);
        tracing::warn!(room = %self.name, client = %id, "slow consumer: outbound queue full");
        // cluster hook: every node holds the seat at the same point of the log
        match self.replica {
            Some(_) => self.propose_drop(id),
            None => self.away(id),
        }
    }
}

fn action_name(message: &ServerMessage) -> &'static str {
    match message {
        ServerMessage::Hello { .. } => "hello",
        ServerMessage::TalkToRoom { .. } => "talkToRoom",
        ServerMessage::Echo { .. } => "echo",
        ServerMessage::PrivateMessage { .. } => "privateMessage",
        ServerMessage::Presence { .. } => "presence",
        ServerMessage::PresenceDiff { .. } => "presenceDiff",
        ServerMessage::RoomFull { .. } => "roomFull",
        ServerMessage::Error { .. } => "error",
        ServerMessage::Hydrate { .. } => "hydrate",
        ServerMessage::Rehydrate { .. } => "rehydrate",
        ServerMessage::NewRoom => "newRoom",
        ServerMessage::RequestCurrentState => "requestCurrentState",
        ServerMessage::NewWord { .. } => "newWord",
        ServerMessage::Moving { .. } => "moving",
        ServerMessage::MoveEnd { .. } => "moveEnd",
        ServerMessage::Freeze { .. } => "freeze",
        ServerMessage::Unfreeze { .. } => "unfreeze",
        ServerMessage::Delete { .. } => "delete",
        ServerMessage::Modify { .. } => "modify",
        ServerMessage::Resumed { .. } => "resumed",
        ServerMessage::Custom(_) => "custom",
    }
}

/// Remembers an outbox that got the first frame of the turn, to flush when
/// the turn ends.
fn owed(unflushed: &mut Vec<Outbox>, queued: Queued, outbox: &Outbox) {
    if queued.first {
        unflushed.push(outbox.clone());
    }
}

/// What the room's current turn has queued so far.
#[derive(Default)]
pub(super) struct Turn {
    /// Bytes of the frames queued for anyone.
    bytes: usize,
    /// Some member's queue is half full.
    half_full: bool,
}

impl Turn {
    fn queued(&mut self, queued: Queued) {
        self.half_full |= queued.half_full;
    }

    /// `text` was queued for `members` members.
    fn frame(&mut self, text: &Text, members: u64) {
        if members > 0 {
            self.bytes += text.as_bytes().len();
        }
    }

    /// Whether the turn should take no more commands: some member's queue
    /// is half full, or the turn queued `max_bytes` (`--max-turn-bytes`,
    /// each frame counted once, however many members it went to: what one
    /// member may have been given). Bounding a turn by what it queued
    /// rather than by how many commands it took means one expensive member
    /// cannot make a turn that overflows a prompt reader.
    pub(super) fn is_full(&self, max_bytes: usize) -> bool {
        self.half_full || self.bytes >= max_bytes
    }
}
