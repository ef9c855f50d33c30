//! What the app's backend asks of a room through the server API
//! (`crate::api`): publish a message as the server, look at the room, read
//! its history, disconnect members, close it.
//!
//! Publishing, disconnecting and closing change the room, so in cluster
//! mode they are entries of its log (`Op::Api`), applied by every node
//! with this same code at the same point of the log: the published frame
//! gets the same `seq` everywhere, and each node closes the sockets it
//! holds. Looking and reading change nothing and are answered by the node
//! asked, from its replica.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use protocol::api::{HistoryGone, Published, RoomView, FROM_SERVER};
use protocol::{close_code, Board, ClientId, CustomMessage, ServerMessage};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::oneshot;

use super::{Room, Seat};
use crate::history::History;
use crate::outbox::LetGo;
use crate::webhooks::Reason;
use crate::ws::Text;

/// One request of the app's backend to a room.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "camelCase")]
pub enum Call {
    /// A message from the server, delivered and numbered like a member's
    /// custom action (checked by `crate::api`: not a reserved action).
    Publish {
        action: String,
        data: Value,
        /// The backend's `idempotencyKey`, with when the node that took
        /// the request took it: every node applies the same dedupe rule
        /// ([`PublishedKeys`]) to the same numbers.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        once: Option<Once>,
    },
    /// Gives up the seats of these members and closes their sockets
    /// ([`close_code::KICKED`]); their connections refuse their rejoin for
    /// `ban_seconds` (bounded by `crate::api`).
    Disconnect {
        target: Target,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ban_seconds: Option<u64>,
    },
    /// Lets every member go ([`close_code::ROOM_CLOSED`]) and forgets the
    /// room: its board, history and stored record.
    Close,
    View,
    History {
        after: u64,
        limit: usize,
    },
}

/// A publish's `idempotencyKey` and when it was asked for (ms since the
/// Unix epoch, by the clock of the node that took the request).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Once {
    pub key: String,
    pub at_ms: u64,
}

/// The room's recent publishes by `idempotencyKey`: a publish whose key is
/// here is not delivered again and is answered with the first one's
/// `{epoch, seq}`. A room rule, like `Seat::last_op`: every node applies it
/// at the same entry of the log with the same `at_ms`, so a retry sent to
/// any node delivers once; kept in the cluster snapshot. At most
/// `--api-idempotency-keys` of them (oldest forgotten first), each for
/// `--api-idempotency-window`.
#[derive(Debug, Default)]
pub(super) struct PublishedKeys {
    by_key: HashMap<String, Published>,
    /// In the order applied: `(key, at_ms)`.
    order: VecDeque<(String, u64)>,
}

/// One remembered publish, as the cluster snapshot keeps it (oldest first).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct KeptPublish {
    pub key: String,
    pub at_ms: u64,
    pub epoch: u64,
    pub seq: u64,
}

impl PublishedKeys {
    /// Forgets what is older than `window` before `now_ms`, and the oldest
    /// while more than `keep` are kept.
    fn forget_old(&mut self, now_ms: u64, window: Duration, keep: usize) {
        let window = window.as_millis() as u64;
        while let Some((key, at)) = self.order.front() {
            if self.order.len() <= keep && at.saturating_add(window) > now_ms {
                break;
            }
            self.by_key.remove(key);
            self.order.pop_front();
        }
    }

    pub(super) fn kept(&self) -> Vec<KeptPublish> {
        self.order
            .iter()
            .map(|(key, at_ms)| KeptPublish {
                key: key.clone(),
                at_ms: *at_ms,
                epoch: self.by_key[key].epoch,
                seq: self.by_key[key].seq,
            })
            .collect()
    }

    pub(super) fn restore(kept: Vec<KeptPublish>) -> PublishedKeys {
        let mut keys = PublishedKeys::default();
        for k in kept {
            let published = Published {
                epoch: k.epoch,
                seq: k.seq,
            };
            keys.by_key.insert(k.key.clone(), published);
            keys.order.push_back((k.key, k.at_ms));
        }
        keys
    }
}

/// Whom a disconnect is for.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Target {
    Member(ClientId),
    /// Every seat of the app's user (a user may hold several: two tabs).
    User(String),
}

/// The room's answer to a [`Call`].
#[derive(Debug)]
pub enum Answer {
    Published(Published),
    View(RoomView),
    History(Result<(u64, Vec<Text>), HistoryGone>),
    Disconnected(usize),
    /// `false`: the stored record could not be deleted.
    Closed(bool),
}

impl Call {
    /// Whether the call only reads the room: then a node answers it from
    /// its replica without the log.
    pub fn reads_only(&self) -> bool {
        matches!(self, Call::View | Call::History { .. })
    }
}

impl Room {
    pub(super) fn call(&mut self, call: Call, reply: oneshot::Sender<Answer>) {
        // In cluster mode only the node that took the request has someone
        // waiting: the one to tell webhooks of what the call did.
        let here = !reply.is_closed();
        let answer = match call {
            Call::Publish { action, data, once } => {
                Answer::Published(self.publish_once(action, data, once, here))
            }
            Call::View => Answer::View(self.view()),
            Call::History { after, limit } => {
                let epoch = self.epoch;
                let frames = self.history.public_after(after, self.seq, limit);
                Answer::History(
                    frames
                        .map(|f| (epoch, f))
                        .map_err(|oldest| HistoryGone { epoch, oldest }),
                )
            }
            Call::Disconnect {
                target,
                ban_seconds,
            } => Answer::Disconnected(self.disconnect(&target, ban_seconds)),
            Call::Close => return self.close(reply, here),
        };
        let _ = reply.send(answer);
    }

    /// Publishes, unless the publish of `once`'s key is still remembered:
    /// then only answers with its `{epoch, seq}`.
    fn publish_once(
        &mut self,
        action: String,
        data: Value,
        once: Option<Once>,
        here: bool,
    ) -> Published {
        let Some(Once { key, at_ms }) = once else {
            return self.publish(action, data, here);
        };
        let (window, most) = (
            self.ctx.api_idempotency_window,
            self.ctx.api_idempotency_keys,
        );
        let keys = &mut self.published_keys;
        keys.forget_old(at_ms, window, most);
        if let Some(published) = keys.by_key.get(&key) {
            return *published;
        }
        let published = self.publish(action, data, here);
        if most > 0 {
            let keys = &mut self.published_keys;
            keys.forget_old(at_ms, window, most - 1);
            keys.by_key.insert(key.clone(), published);
            keys.order.push_back((key, at_ms));
        }
        published
    }

    /// Broadcasts `action` with `data` and `from: "server"` to every present
    /// member, numbered and kept in history like any relayed action.
    fn publish(&mut self, action: String, data: Value, here: bool) -> Published {
        let new_room = self.seq == 0 && self.board.is_none() && self.seats.is_empty();
        let hooked = (here && self.wants_message(&action))
            .then(|| serde_json::json!({"action": action, "data": data}));
        let mut fields = serde_json::Map::new();
        fields.insert("data".into(), data);
        fields.insert("from".into(), Value::from(FROM_SERVER));
        self.broadcast(
            None,
            ServerMessage::Custom(CustomMessage { action, fields }),
        );
        // A room exists from its first frame (`?create=true`): it is then
        // stored with its history when it ends, like a room with a board.
        self.board.get_or_insert_with(Board::default);
        if here && new_room && self.wants_event() {
            self.event("room.created", 0, Value::Null);
        }
        if let Some(message) = hooked {
            self.message_event(Value::from(FROM_SERVER), message);
        }
        if here {
            self.ctx.metrics.api_published.fetch_add(1, Relaxed);
        }
        Published {
            epoch: self.epoch,
            seq: self.seq,
        }
    }

    fn view(&self) -> RoomView {
        RoomView {
            room: self.name.to_string(),
            epoch: self.epoch,
            seq: self.seq,
            members: self.seats.iter().map(Seat::presence_entry).collect(),
            words: self
                .board
                .as_ref()
                .map(|b| b.words().to_vec())
                .unwrap_or_default(),
        }
    }

    /// Closes the sockets of `target`'s seats with [`close_code::KICKED`]
    /// (the frames queued for them still go out first) and gives the seats
    /// up, as a leave: locks released, goodbye, presence. A held seat goes
    /// too, so no resume takes it back.
    fn disconnect(&mut self, target: &Target, ban_seconds: Option<u64>) -> usize {
        let why = LetGo {
            code: close_code::KICKED,
            reason: "disconnected by the app",
            ban: ban_seconds.map(Duration::from_secs),
        };
        let kicked: Vec<ClientId> = self
            .seats
            .iter()
            .filter(|s| match target {
                Target::Member(id) => s.member.id == *id,
                Target::User(user) => s.access.user.as_deref() == Some(user.as_str()),
            })
            .map(|s| s.member.id)
            .collect();
        for id in &kicked {
            if let Some(seat) = self.seats.iter_mut().find(|s| s.member.id == *id) {
                if let Some(outbox) = seat.outbox.take() {
                    outbox.close_with(why);
                }
            }
            self.leave_because(*id, Reason::Kicked);
        }
        kicked.len()
    }

    /// Lets every member go with [`close_code::ROOM_CLOSED`] and forgets
    /// the room: board, locks, history, seats. On one server its record is
    /// deleted too, after any write in flight (so none lands after it);
    /// the room answers once it is gone from the store, and ends as an
    /// empty room does.
    fn close(&mut self, reply: oneshot::Sender<Answer>, here: bool) {
        let had_seats = !self.seats.is_empty();
        for seat in std::mem::take(&mut self.seats) {
            if self.wants_event() && self.told_here(seat.conn) {
                self.member_left(&seat.member, &seat.access, Reason::RoomClosed);
            }
            if let Some(outbox) = seat.outbox {
                outbox.close_with(LetGo {
                    code: close_code::ROOM_CLOSED,
                    reason: "room closed by the app",
                    ban: None,
                });
            }
        }
        if had_seats && here && self.wants_event() {
            self.event("room.vacated", 0, Value::Null);
        }
        self.members.store(0, Relaxed);
        self.seats_taken.store(0, Relaxed);
        self.locks = crate::rules::Locks::new();
        self.state_request = None;
        self.presence_due = None;
        self.board = None;
        self.saved = None;
        self.dirty_since = None;
        self.next_save = None;
        self.history = History::new(&self.ctx.history, self.ctx.resume_window);
        // A closed room starts over: its keys are free again.
        self.published_keys = PublishedKeys::default();
        if let Some(cluster) = self.ctx.cluster.clone() {
            // cluster hook: the room's record is its log in Redis, deleted
            // by the node that took the request when it applied the close.
            // The other nodes got the entry from the room's channel when it
            // was appended; one that missed it finds the log gone at its
            // next check and lets its members go as on a lost log.
            if here {
                let name = self.name.clone();
                tokio::spawn(async move {
                    let forgotten = cluster.forget(name.as_str()).await;
                    if let Err(e) = &forgotten {
                        tracing::error!(room = %name, "closing a room: its log was not deleted: {e}");
                    }
                    let _ = reply.send(Answer::Closed(forgotten.is_ok()));
                });
            }
            return;
        }
        // A room started again from nothing numbers from a new epoch.
        self.epoch = super::new_epoch();
        self.seq = 0;
        self.saved_seq = 0;
        let in_flight = self.saving.take();
        let store = self.ctx.store.clone();
        let metrics = self.ctx.metrics.clone();
        let name = self.name.clone();
        // Held as the room's save: the room waits for it before it ends,
        // and starts no other write meanwhile.
        self.saving = Some(tokio::spawn(async move {
            if let Some(write) = in_flight {
                let _ = write.await;
            }
            let removed = tokio::task::spawn_blocking(move || store.remove(&name)).await;
            let removed = matches!(removed, Ok(Ok(())));
            if !removed {
                metrics.store_errors.fetch_add(1, Relaxed);
                tracing::error!("closing a room: its record was not deleted");
            }
            let _ = reply.send(Answer::Closed(removed));
            true
        }));
    }
}
