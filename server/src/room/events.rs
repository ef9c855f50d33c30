//! What a room tells the app's backend through webhooks (`webhooks.rs`):
//! created, vacated, a member joined or left (and why), a message of an
//! action the operator asked for. Each event carries the room's `epoch`
//! and the `seq` of its latest frame when the entry that caused it was
//! applied. In cluster mode only the node the entry came from sends it.

use protocol::Member;
use serde_json::{json, Value};

use super::Room;
use crate::auth::Access;
use crate::history::now_ms;
use crate::webhooks::{Event, Reason};

impl Room {
    /// Whether an entry that came from connection (or API ticket) `origin`
    /// is this node's to tell: always on one server; in cluster mode when
    /// the connection is on this node.
    pub(super) fn told_here(&self, origin: u64) -> bool {
        match &self.replica {
            Some(_) => self.on_this_node(origin),
            None => true,
        }
    }

    pub(super) fn wants_event(&self) -> bool {
        self.ctx.webhooks.is_some()
    }

    /// Whether messages with `action` are told as `message` events.
    pub(super) fn wants_message(&self, action: &str) -> bool {
        self.ctx.webhooks.as_ref().is_some_and(|w| w.wants(action))
    }

    /// Queues an event about `subject` (a member id, or 0 for the room).
    pub(super) fn event(&self, kind: &'static str, subject: u64, data: Value) {
        let Some(webhooks) = &self.ctx.webhooks else {
            return;
        };
        webhooks.send(Event {
            id: format!("{}.{}.{}.{kind}.{subject}", self.name, self.epoch, self.seq),
            kind: kind.to_owned(),
            room: self.name.to_string(),
            epoch: self.epoch,
            seq: self.seq,
            at: now_ms(),
            data,
        });
    }

    pub(super) fn member_joined(&self, member: &Member, access: &Access) {
        self.event("member.joined", member.id.0, member_data(member, access));
    }

    pub(super) fn member_left(&self, member: &Member, access: &Access, reason: Reason) {
        let mut data = member_data(member, access);
        data["reason"] = reason.as_str().into();
        self.event("member.left", member.id.0, data);
    }

    /// `from`: the member, or `"server"` for a published message.
    pub(super) fn message_event(&self, from: Value, message: Value) {
        self.event("message", 0, json!({"from": from, "message": message}));
    }
}

fn member_data(member: &Member, access: &Access) -> Value {
    let mut data = json!({"id": member.id, "name": member.name, "color": member.color});
    if let Some(user) = &access.user {
        data["user"] = user.clone().into();
    }
    if !access.role.is_member() {
        data["role"] = serde_json::to_value(access.role).unwrap_or(Value::Null);
    }
    data
}
