//! One room as an actor: a tokio task owns its members (most recently
//! active first), its board and locks, its sequence numbers and its save
//! timer. Connections send it [`Command`]s; it decides with [`crate::rules`]
//! and fans out. The task ends when the last member has left and the board
//! is flushed.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::Utf8Bytes;
use protocol::{
    Board, ClientId, ClientMessage, Member, PresenceEntry, RoomName, ServerFrame, ServerMessage,
};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::hub::Hub;
use crate::rules::{self, Delivery, LockChange, Locks};
use crate::store::Snapshot;

/// A move smaller than this (in px, per axis) is a nudge: its save may wait.
const NUDGE_PX: f64 = 8.0;
/// How many save intervals a nudge may wait before it is written anyway.
const NUDGE_WAIT_INTERVALS: u32 = 5;

/// Frames on their way to one connection. The room holds the only sender:
/// dropping it tells the connection it was let go (slow consumer).
pub type Outbox = mpsc::Sender<Utf8Bytes>;

pub enum Command {
    Join {
        member: Member,
        /// Distinguishes this connection from an older one of the same id.
        conn: u64,
        outbox: Outbox,
        reply: oneshot::Sender<JoinReply>,
    },
    Leave {
        id: ClientId,
        conn: u64,
    },
    Message {
        id: ClientId,
        message: ClientMessage,
    },
}

#[derive(Debug)]
pub enum JoinReply {
    Joined,
    Full,
}

/// How connections and the hub reach a room.
#[derive(Clone)]
pub struct RoomHandle {
    pub tx: mpsc::Sender<Command>,
    /// Live member count, for `/api/rooms` without asking the actor.
    pub members: Arc<AtomicUsize>,
}

/// Settings and services every room shares.
pub struct RoomContext {
    pub max_room_size: usize,
    pub save_interval: Duration,
    pub state_timeout: Duration,
    pub outbound_queue: usize,
    pub store: Arc<dyn crate::store::RoomStore>,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub shutdown: tokio_util::sync::CancellationToken,
}

struct Seat {
    member: Member,
    conn: u64,
    outbox: Outbox,
}

/// A pending `requestCurrentState`: whom we asked, who is left to ask, and
/// the joiners waiting for a board.
struct StateRequest {
    asked: ClientId,
    deadline: Instant,
    remaining: Vec<ClientId>,
    waiting: Vec<ClientId>,
}

struct Room {
    name: RoomName,
    ctx: Arc<RoomContext>,
    hub: Arc<Hub>,
    /// Most recently active first.
    seats: Vec<Seat>,
    members: Arc<AtomicUsize>,
    /// `None` until a board exists (loaded, or sent by a member).
    board: Option<Board>,
    locks: Locks,
    seq: u64,
    epoch: u64,
    state_request: Option<StateRequest>,
    /// The board as last written, to skip duplicate writes and spot nudges.
    saved: Option<Board>,
    /// When the board first changed since the last write.
    dirty_since: Option<Instant>,
    next_save: Option<Instant>,
    last_save: Option<Instant>,
    saving: Option<JoinHandle<bool>>,
}

/// Starts a room's task; it loads the room's snapshot before handling any
/// command, so the first joiner already sees the stored board.
pub fn spawn(name: RoomName, ctx: Arc<RoomContext>, hub: Arc<Hub>) -> RoomHandle {
    let (tx, rx) = mpsc::channel(256);
    let members = Arc::new(AtomicUsize::new(0));
    let handle = RoomHandle {
        tx,
        members: members.clone(),
    };
    let tracker = hub.tracker.clone();
    tracker.spawn(async move {
        let room = Room::load(name, ctx, hub, members).await;
        room.run(rx).await;
    });
    handle
}

impl Room {
    async fn load(
        name: RoomName,
        ctx: Arc<RoomContext>,
        hub: Arc<Hub>,
        members: Arc<AtomicUsize>,
    ) -> Room {
        ctx.metrics.rooms_created.fetch_add(1, Relaxed);
        let store = ctx.store.clone();
        let key = name.clone();
        let loaded = tokio::task::spawn_blocking(move || store.load(&key)).await;
        let snapshot = match loaded {
            Ok(Ok(snapshot)) => snapshot,
            Ok(Err(e)) => {
                ctx.metrics.store_errors.fetch_add(1, Relaxed);
                tracing::error!(room = %name, "starting empty: {e}");
                None
            }
            Err(e) => {
                tracing::error!(room = %name, "starting empty: load task failed: {e}");
                None
            }
        };
        let (board, seq, epoch) = match snapshot {
            Some(s) => (Some(s.board), s.seq, s.epoch),
            None => (None, 0, u64::from(rand::random::<u32>())),
        };
        Room {
            name,
            ctx,
            hub,
            seats: Vec::new(),
            members,
            saved: board.clone(),
            board,
            locks: Locks::new(),
            seq,
            epoch,
            state_request: None,
            dirty_since: None,
            next_save: None,
            last_save: None,
            saving: None,
        }
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        let shutdown = self.ctx.shutdown.clone();
        loop {
            let save_at = self.next_save.map(tokio::time::Instant::from_std);
            let ask_until = self
                .state_request
                .as_ref()
                .map(|r| tokio::time::Instant::from_std(r.deadline));
            tokio::select! {
                command = rx.recv() => match command {
                    Some(command) => self.handle(command),
                    None => break,
                },
                _ = sleep_until(save_at), if self.saving.is_none() => self.save_tick(),
                done = async { self.saving.as_mut().expect("guarded").await }, if self.saving.is_some() => {
                    self.saving = None;
                    if !matches!(done, Ok(true)) {
                        // Keep the board dirty and try again next interval.
                        self.saved = None;
                        self.schedule_save();
                    }
                }
                _ = sleep_until(ask_until) => self.ask_next(),
                _ = shutdown.cancelled() => break,
            }
            if self.seats.is_empty() && self.state_request.is_none() {
                self.flush().await;
                // Leave the hub only if nobody queued a command meanwhile;
                // a joiner whose command we drop here retries on a new room.
                if self.hub.dispose_if_idle(&self.name, &rx) {
                    rx.close();
                    self.ctx.metrics.rooms_disposed.fetch_add(1, Relaxed);
                    return;
                }
            }
        }
        self.flush().await;
    }

    fn handle(&mut self, command: Command) {
        match command {
            Command::Join {
                member,
                conn,
                outbox,
                reply,
            } => self.join(member, conn, outbox, reply),
            Command::Leave { id, conn } => {
                if self.seat(id).is_some_and(|s| s.conn == conn) {
                    self.leave(id);
                }
            }
            Command::Message { id, message } => self.message(id, message),
        }
    }

    fn seat(&self, id: ClientId) -> Option<&Seat> {
        self.seats.iter().find(|s| s.member.id == id)
    }

    fn join(
        &mut self,
        member: Member,
        conn: u64,
        outbox: Outbox,
        reply: oneshot::Sender<JoinReply>,
    ) {
        if self.seats.len() >= self.ctx.max_room_size {
            let _ = reply.send(JoinReply::Full);
            return;
        }
        let id = member.id;
        let name = member.name.clone();
        self.seats.push(Seat {
            member,
            conn,
            outbox,
        });
        self.members.store(self.seats.len(), Relaxed);
        let _ = reply.send(JoinReply::Joined);
        self.broadcast(
            Some(id),
            ServerMessage::TalkToRoom {
                data: format!("Welcome, client {name}!").into(),
                from: None,
            },
        );
        self.presence();
        self.hydrate(id);
    }

    /// Sends the joiner the board, or finds one, or says there is none.
    fn hydrate(&mut self, id: ClientId) {
        if let Some(board) = self.board.as_ref().filter(|b| !b.is_empty()) {
            let message = ServerMessage::Hydrate {
                data: board.clone(),
            };
            self.send_to(id, message, true);
            return;
        }
        if let Some(request) = &mut self.state_request {
            request.waiting.push(id);
            return;
        }
        let others: Vec<ClientId> = self
            .seats
            .iter()
            .map(|s| s.member.id)
            .filter(|m| *m != id)
            .collect();
        if others.is_empty() {
            self.send_to(id, ServerMessage::NewRoom, true);
            return;
        }
        self.state_request = Some(StateRequest {
            asked: ClientId(0),
            deadline: Instant::now(),
            remaining: others,
            waiting: vec![id],
        });
        self.ask_next();
    }

    /// Asks the next most recently active member for the board, or gives up
    /// and tells the waiting joiners the room is new.
    fn ask_next(&mut self) {
        let Some(request) = &mut self.state_request else {
            return;
        };
        let next = request
            .remaining
            .iter()
            .position(|m| self.seats.iter().any(|s| s.member.id == *m));
        match next {
            Some(i) => {
                let asked = request.remaining.remove(i);
                request.asked = asked;
                request.deadline = Instant::now() + self.ctx.state_timeout;
                self.send_to(asked, ServerMessage::RequestCurrentState, false);
            }
            None => {
                let waiting = std::mem::take(&mut request.waiting);
                self.state_request = None;
                for id in waiting {
                    self.send_to(id, ServerMessage::NewRoom, true);
                }
            }
        }
    }

    fn leave(&mut self, id: ClientId) {
        let Some(i) = self.seats.iter().position(|s| s.member.id == id) else {
            return;
        };
        let seat = self.seats.remove(i);
        self.members.store(self.seats.len(), Relaxed);
        for word in rules::held_by(&self.locks, id) {
            self.locks.remove(&word);
            self.broadcast(
                None,
                ServerMessage::Unfreeze {
                    element_id: word,
                    from: seat.member.clone(),
                },
            );
        }
        if let Some(request) = &mut self.state_request {
            request.waiting.retain(|w| *w != id);
            if request.asked == id {
                self.ask_next();
            }
        }
        self.broadcast(
            None,
            ServerMessage::TalkToRoom {
                data: format!("Goodbye, client {}!", seat.member.name).into(),
                from: None,
            },
        );
        self.presence();
    }

    fn message(&mut self, id: ClientId, message: ClientMessage) {
        let Some(index) = self.seats.iter().position(|s| s.member.id == id) else {
            return;
        };
        if message.promotes() && index != 0 {
            let seat = self.seats.remove(index);
            self.seats.insert(0, seat);
            self.presence();
        }
        let sender = self
            .seats
            .iter()
            .find(|s| s.member.id == id)
            .expect("present")
            .member
            .clone();
        match message {
            ClientMessage::EmptyRoom => {
                if self.state_request.as_ref().is_some_and(|r| r.asked == id) {
                    self.ask_next();
                }
                return;
            }
            ClientMessage::NewClient { .. } | ClientMessage::Echo { .. } => return,
            _ => {}
        }
        let empty = Board::default();
        let board = self.board.as_ref().unwrap_or(&empty);
        let seats = &self.seats;
        let outcome = rules::decide(board, &self.locks, &sender, message, |m| {
            seats.iter().any(|s| s.member.id == m)
        });
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(error) => {
                self.ctx.metrics.error(error.code);
                self.send_to(id, ServerMessage::Error { data: error }, false);
                return;
            }
        };
        if let Some(op) = outcome.op {
            let board = self.board.get_or_insert_with(Board::default);
            if let Err(e) = board.apply(op) {
                // `decide` checked it; this would be a bug, not bad input.
                tracing::error!(room = %self.name, "checked op failed: {e}");
                return;
            }
            self.locks.retain(|w, _| board.get(w).is_some());
            self.mark_dirty();
            if let Some(request) = self.state_request.take() {
                for waiting in request.waiting {
                    self.hydrate(waiting);
                }
            }
        }
        match outcome.lock {
            Some(LockChange::Take(word)) => {
                self.locks.insert(word, id);
            }
            Some(LockChange::Release(word)) => {
                self.locks.remove(&word);
            }
            None => {}
        }
        match outcome.delivery {
            Delivery::Room(message) => self.broadcast(Some(id), message),
            Delivery::Volatile(message) => self.broadcast_volatile(id, message),
            Delivery::To(to, message) => self.send_to(to, message, true),
        }
    }

    fn presence(&mut self) {
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
    fn broadcast(&mut self, except: Option<ClientId>, message: ServerMessage) {
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
    fn broadcast_volatile(&mut self, except: ClientId, message: ServerMessage) {
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

    fn count_out(&self, action: &str, sent: u64) {
        self.ctx.metrics.messages_out(action, sent);
        self.ctx.metrics.broadcasts.fetch_add(1, Relaxed);
        self.ctx
            .metrics
            .broadcast_recipients
            .fetch_add(sent, Relaxed);
    }

    /// One member only. `stamped` messages carry the current seq and epoch
    /// (the joiner's starting point) without taking a new number.
    fn send_to(&mut self, id: ClientId, message: ServerMessage, stamped: bool) {
        let Some(seat) = self.seat(id) else { return };
        let action = action_name(&message);
        let text = self.encode(message, stamped);
        match seat.outbox.try_send(text) {
            Ok(()) => self.ctx.metrics.messages_out(action, 1),
            Err(mpsc::error::TrySendError::Full(_)) => self.evict(id),
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    fn encode(&self, message: ServerMessage, stamped: bool) -> Utf8Bytes {
        let frame = ServerFrame {
            message,
            seq: stamped.then_some(self.seq),
            epoch: stamped.then_some(self.epoch),
        };
        Utf8Bytes::from(frame.encode())
    }

    /// A member whose queue is full is let go: dropping its outbox closes
    /// its connection ("slow consumer"); the room says goodbye.
    fn evict(&mut self, id: ClientId) {
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

    fn mark_dirty(&mut self) {
        if self.dirty_since.is_none() {
            self.dirty_since = Some(Instant::now());
        }
        self.schedule_save();
    }

    fn schedule_save(&mut self) {
        if self.next_save.is_none() {
            let earliest = self
                .last_save
                .map(|t| t + self.ctx.save_interval)
                .unwrap_or_else(Instant::now);
            self.next_save = Some(earliest.max(Instant::now()));
        }
    }

    /// The save policy: never a duplicate, nudges may wait a few intervals,
    /// everything else at most once per save interval.
    fn save_tick(&mut self) {
        self.next_save = None;
        let Some(board) = &self.board else { return };
        if self.saved.as_ref() == Some(board) {
            self.ctx
                .metrics
                .saves_skipped_duplicate
                .fetch_add(1, Relaxed);
            self.dirty_since = None;
            return;
        }
        let nudge = self
            .saved
            .as_ref()
            .and_then(|s| s.max_displacement(board))
            .is_some_and(|d| d <= NUDGE_PX);
        let waited = self.dirty_since.map(|t| t.elapsed()).unwrap_or_default();
        let patience = self.ctx.save_interval * NUDGE_WAIT_INTERVALS;
        if nudge && waited < patience {
            let since = self.dirty_since.unwrap_or_else(Instant::now);
            self.next_save = Some(since + patience);
            return;
        }
        self.saving = Some(self.start_save());
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            board: self.board.clone().unwrap_or_default(),
            seq: self.seq,
            epoch: self.epoch,
            ..Snapshot::default()
        }
    }

    /// Writes the board on the blocking pool; resolves to whether it worked.
    fn start_save(&mut self) -> JoinHandle<bool> {
        let snapshot = self.snapshot();
        self.saved = Some(snapshot.board.clone());
        self.dirty_since = None;
        self.last_save = Some(Instant::now());
        let store = self.ctx.store.clone();
        let metrics = self.ctx.metrics.clone();
        let name = self.name.clone();
        tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            match store.save(&name, &snapshot) {
                Ok(()) => {
                    metrics.saves_written.fetch_add(1, Relaxed);
                    metrics
                        .save_seconds_micros
                        .fetch_add(started.elapsed().as_micros() as u64, Relaxed);
                    true
                }
                Err(e) => {
                    metrics.store_errors.fetch_add(1, Relaxed);
                    tracing::error!(room = %name, "save failed: {e}");
                    false
                }
            }
        })
    }

    /// Writes whatever is not written yet, and waits for it.
    async fn flush(&mut self) {
        if let Some(saving) = self.saving.take() {
            if !matches!(saving.await, Ok(true)) {
                self.saved = None;
            }
        }
        self.next_save = None;
        if self.board.is_some() && self.saved != self.board {
            let _ = self.start_save().await;
        }
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
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
