//! How a room's frames reach its members: serialised once, the same bytes
//! queued for every recipient, reliable frames numbered and kept in
//! history, volatile ones droppable.

use std::sync::atomic::Ordering::Relaxed;

use axum::extract::ws::Utf8Bytes;
use protocol::{ClientId, PresenceEntry, ServerFrame, ServerMessage};
use tokio::sync::mpsc;

use super::Room;

impl Room {
    pub(super) fn presence(&mut self) {
        let data = self
            .seats
            .iter()
            .map(|s| PresenceEntry {
                member: s.member.clone(),
                away: false,
            })
            .collect();
        self.broadcast(None, ServerMessage::Presence { data });
    }

    /// Serialises `message` once, stamped with the next sequence number, and
    /// queues the same bytes for every member but `except`.
    pub(super) fn broadcast(&mut self, except: Option<ClientId>, message: ServerMessage) {
        self.seq += 1;
        let action = action_name(&message);
        let text = self.encode(message, true);
        let mut slow = Vec::new();
        let mut sent = 0;
        for seat in self.seats.iter().filter(|s| Some(s.member.id) != except) {
            match seat.outbox.try_send(text.clone()) {
                Ok(()) => sent += 1,
                Err(mpsc::error::TrySendError::Full(_)) => slow.push(seat.member.id),
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
        self.count_out(action, sent);
        for id in slow {
            self.evict(id);
        }
    }

    /// Like [`Room::broadcast`] for transient frames: no sequence number,
    /// and a lagging member misses it instead of being closed.
    pub(super) fn broadcast_volatile(&mut self, except: ClientId, message: ServerMessage) {
        let action = action_name(&message);
        let text = self.encode(message, false);
        let mut sent = 0;
        let half = self.ctx.outbound_queue / 2;
        for seat in self.seats.iter().filter(|s| s.member.id != except) {
            if seat.outbox.capacity() > half && seat.outbox.try_send(text.clone()).is_ok() {
                sent += 1;
            } else {
                self.ctx.metrics.volatile_dropped.fetch_add(1, Relaxed);
            }
        }
        self.count_out(action, sent);
    }

    pub(super) fn count_out(&self, action: &str, sent: u64) {
        self.ctx.metrics.messages_out(action, sent);
        self.ctx.metrics.broadcasts.fetch_add(1, Relaxed);
        self.ctx
            .metrics
            .broadcast_recipients
            .fetch_add(sent, Relaxed);
    }

    /// One member only. `stamped` messages carry the current seq and epoch
    /// (the joiner's starting point) without taking a new number.
    pub(super) fn send_to(&mut self, id: ClientId, message: ServerMessage, stamped: bool) {
        let Some(seat) = self.seat(id) else { return };
        let action = action_name(&message);
        let text = self.encode(message, stamped);
        match seat.outbox.try_send(text) {
            Ok(()) => self.ctx.metrics.messages_out(action, 1),
            Err(mpsc::error::TrySendError::Full(_)) => self.evict(id),
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    pub(super) fn encode(&self, message: ServerMessage, stamped: bool) -> Utf8Bytes {
        let frame = ServerFrame {
            message,
            seq: stamped.then_some(self.seq),
            epoch: stamped.then_some(self.epoch),
        };
        Utf8Bytes::from(frame.encode())
    }

    /// A member whose queue is full is let go: dropping its outbox closes
    /// its connection ("slow consumer"); the room says goodbye.
    pub(super) fn evict(&mut self, id: ClientId) {
        if self.seat(id).is_none() {
            return;
        }
        self.ctx
            .metrics
            .slow_consumer_disconnects
            .fetch_add(1, Relaxed);
        tracing::warn!(room = %self.name, client = %id, "slow consumer: outbound queue full");
        self.leave(id);
    }
}

fn action_name(message: &ServerMessage) -> &'static str {
    match message {
        ServerMessage::Hello { .. } => "hello",
        ServerMessage::TalkToRoom { .. } => "talkToRoom",
        ServerMessage::Echo { .. } => "echo",
        ServerMessage::PrivateMessage { .. } => "privateMessage",
        ServerMessage::Presence { .. } => "presence",
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
