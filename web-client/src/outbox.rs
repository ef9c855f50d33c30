//! What the user did while the app was not in its room (socket down, or
//! not rejoined yet): kept in order and sent once the room is back, so
//! nothing is silently thrown away.

use std::collections::VecDeque;

use protocol::ClientMessage;

/// Messages waiting for the room, oldest first.
#[derive(Clone, Debug, Default)]
pub struct Outbox {
    queue: VecDeque<ClientMessage>,
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
