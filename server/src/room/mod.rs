//! One room as an actor: a tokio task owns its members (most recently
//! active first), its board and locks, its sequence numbers and its save
//! timer. Connections send it [`Command`]s; it decides with [`crate::rules`]
//! and fans out. The task ends when the last member has left and the board
//! is flushed.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::Utf8Bytes;
use protocol::{Board, ClientId, ClientMessage, Member, RoomName, ServerMessage};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

mod fanout;
mod persist;

use crate::hub::Hub;
use crate::rules::{self, Delivery, LockChange, Locks};

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
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
