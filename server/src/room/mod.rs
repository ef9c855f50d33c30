//! One room as an actor: a tokio task owns its members (most recently
//! active first), its board and locks, its sequence numbers and its save
//! timer. Connections send it [`Command`]s; it decides with [`crate::rules`]
//! and fans out. The task ends when the last member has left and the board
//! is flushed.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use protocol::board::BoardOp;
use protocol::{Board, ClientId, ClientMessage, Member, RoomName, ServerMessage};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

mod api;
mod events;
mod fanout;
mod persist;
// cluster mode (`--redis-url`): the room as a replica of its Redis log
mod presence;
mod replica;

pub use self::api::{Answer, Call, Once, Target};
use crate::auth::Access;
use crate::history::{now_ms, History, HistoryLimits};
use crate::hub::Hub;
use crate::identity::{CrashedRun, TokenClaim, TokenKey};
use crate::rules::{self, Delivery, LockChange, Locks};
use crate::webhooks::Reason;

/// A move smaller than this (in px, per axis) is a nudge: its save may wait.
const NUDGE_PX: f64 = 8.0;
/// How many save intervals a nudge may wait before it is written anyway.
const NUDGE_WAIT_INTERVALS: u32 = 5;
/// Reorders by activity are told at most this often (joins and leaves at
/// once), so a lively chat does not double its traffic with presence.
const PRESENCE_REORDER_DELAY: Duration = Duration::from_secs(1);

/// Frames on their way to one connection. The room holds the only sender:
/// dropping it tells the connection it was let go (slow consumer).
pub use crate::outbox::Outbox;

pub enum Command {
    Join {
        member: Member,
        /// Who the member is to the app and its role here, as the
        /// connection's token granted (`auth.rs`).
        access: Access,
        /// Distinguishes this connection from an older one of the same id.
        conn: u64,
        outbox: Outbox,
        resume: Option<Resume>,
        reply: oneshot::Sender<JoinReply>,
    },
    /// `clean`: the client said goodbye (close frame or room switch). A
    /// connection that just dropped keeps its seat for the resume window.
    Leave {
        id: ClientId,
        conn: u64,
        clean: bool,
    },
    /// From connection `conn`: one that a newer connection replaced (took
    /// its session over) speaks for nobody.
    Message {
        id: ClientId,
        conn: u64,
        message: ClientMessage,
        /// The frame's `opId`: applied once per member (see [`Seat::last_op`]).
        op_id: Option<u64>,
    },
    /// From the app's backend, through the server API (`room/api.rs`).
    Api {
        call: Call,
        reply: oneshot::Sender<Answer>,
    },
}

/// A `newClient` with a resume token. `claim` is `None` when the token did
/// not verify (forged or from another server).
#[derive(Debug, Clone)]
pub struct Resume {
    pub claim: Option<TokenClaim>,
    pub epoch: Option<u64>,
    pub last_seq: Option<u64>,
}

#[derive(Debug)]
pub enum JoinReply {
    /// In, as this identity (a resumed session's, or the connection's own).
    Joined(Member),
    Full,
}

/// How connections and the hub reach a room.
#[derive(Clone)]
pub struct RoomHandle {
    pub tx: mpsc::Sender<Command>,
    /// Live member count, for `/api/rooms` without asking the actor.
    pub members: Arc<AtomicUsize>,
    /// Seats taken, present or held for a resume: what `roomFull`
    /// suggestions go by (a held seat is not free).
    pub seats_taken: Arc<AtomicUsize>,
}

/// Settings and services every room shares.
pub struct RoomContext {
    pub max_room_size: usize,
    /// The board's bounds and the locks a member may hold.
    pub limits: rules::RoomLimits,
    /// Bytes one room's record may take in the store: history beyond it
    /// (held seats only) is not stored (`--max-room-stored-bytes`).
    pub max_room_stored_bytes: usize,
    /// Bytes of frames one turn may queue before it writes them out
    /// (`--max-turn-bytes`, `fanout::Turn`).
    pub max_turn_bytes: usize,
    pub save_interval: Duration,
    pub state_timeout: Duration,
    pub history: HistoryLimits,
    pub resume_window: Duration,
    /// A room's publishes remembered by `idempotencyKey`, and for how long
    /// (`--api-idempotency-keys`, `--api-idempotency-window`).
    pub api_idempotency_keys: usize,
    pub api_idempotency_window: Duration,
    /// Whether the previous server run stopped gracefully (so every room
    /// it had in memory was written completely).
    pub previous_run_clean: bool,
    /// The previous run, if it did not stop cleanly: its sessions lost
    /// their seats but may take their identities back.
    pub crashed_run: Option<CrashedRun>,
    pub tokens: Arc<TokenKey>,
    pub store: Arc<dyn crate::store::RoomStore>,
    /// Cluster mode: rooms are replicas of their log in Redis
    /// (`room/replica/`), not loaded from or saved to `store`.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// Where events go, with `--webhook-url` (`room/events.rs`).
    pub webhooks: Option<Arc<crate::webhooks::Webhooks>>,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub shutdown: tokio_util::sync::CancellationToken,
}

struct Seat {
    member: Member,
    /// The app's user (the token's `sub`) and the member's role: shown in
    /// presence; a viewer is never asked for the board. A resume takes
    /// the seat only for the same user.
    access: Access,
    conn: u64,
    /// `None` while the member is away (dropped, seat held for resume).
    outbox: Option<Outbox>,
    /// Counts the session's resumes, and is signed into each token handed
    /// out. Any token of the session takes the seat (the newest connection
    /// wins), so a client whose `resumed` was lost with its socket can
    /// still come back with the token before.
    generation: u64,
    /// When an away member's seat is given up.
    away_until: Option<Instant>,
    /// The highest `opId` applied from this member: a message numbered at
    /// or below it is a duplicate (a retry of an operation whose outcome
    /// its sender could not know) and is dropped. Kept with the seat across
    /// resumes, and told in `resumed` (`lastOp`).
    last_op: Option<u64>,
    /// The room's `seq` when the member joined: what it was sent on
    /// arrival (the board, stamped with this `seq`) stands for everything
    /// before, so a resume never replays frames from before its join.
    joined: u64,
}

impl Seat {
    /// How this seat appears in presence (the whole list, diffs, the
    /// server API's room view).
    fn presence_entry(&self) -> protocol::PresenceEntry {
        protocol::PresenceEntry {
            member: self.member.clone(),
            away: self.outbox.is_none(),
            user: self.access.user.clone(),
            role: self.access.role,
        }
    }
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
    seats_taken: Arc<AtomicUsize>,
    /// `None` until a board exists (loaded, or sent by a member).
    board: Option<Board>,
    locks: Locks,
    seq: u64,
    /// Changes whenever the history behind `seq` is lost (a crash).
    epoch: u64,
    history: History,
    /// When the room's timer next expires history by age (see
    /// `History::expires_at`); moved at most once a second, so a busy
    /// room does not move its timer on every frame.
    history_due: Option<Instant>,
    /// `seq` as last written, to know whether a final write is owed.
    saved_seq: u64,
    state_request: Option<StateRequest>,
    /// When to tell the room about activity-order changes (batched).
    presence_due: Option<Instant>,
    /// What the members were told of the member list (`room/presence.rs`).
    presence_told: presence::Told,
    /// The board as last written, to skip duplicate writes and spot nudges.
    saved: Option<Board>,
    /// When the board first changed since the last write.
    dirty_since: Option<Instant>,
    next_save: Option<Instant>,
    last_save: Option<Instant>,
    saving: Option<JoinHandle<bool>>,
    /// Outboxes given frames this turn, to write out when it ends.
    unflushed: Vec<Outbox>,
    /// What this turn queued: it ends when that is enough.
    turn: fanout::Turn,
    /// The backend's recent publishes by `idempotencyKey` (`room/api.rs`).
    published_keys: api::PublishedKeys,
    /// Cluster mode: the room's log (`room/replica/`).
    replica: Option<replica::Replica>,
}

/// The least time between two expiries of a room's history by age.
const HISTORY_SWEEP_GAP: Duration = Duration::from_secs(1);

/// How many times a room's turn yields to let more commands in before it
/// writes its frames out: bounds the wait a loaded room adds to a frame.
const TURN_YIELDS: usize = 8;

/// Starts a room's task; it loads the room's snapshot before handling any
/// command, so the first joiner already sees the stored board.
pub fn spawn(name: RoomName, ctx: Arc<RoomContext>, hub: Arc<Hub>) -> RoomHandle {
    let (tx, rx) = mpsc::channel(256);
    let members = Arc::new(AtomicUsize::new(0));
    let seats_taken = Arc::new(AtomicUsize::new(0));
    let handle = RoomHandle {
        tx,
        members: members.clone(),
        seats_taken: seats_taken.clone(),
    };
    let tracker = hub.tracker.clone();
    tracker.spawn(async move {
        let (key, home) = (name.clone(), hub.clone());
        let room = match ctx.cluster.clone() {
            // cluster hook: the room is the cluster's, read from its log
            Some(cluster) => Room::host(name, ctx, hub, members, seats_taken, cluster).await,
            None => Some(Room::load(name, ctx, hub, members, seats_taken).await),
        };
        match room {
            Some(room) => room.run(rx).await,
            // Not hosted (Redis unreachable): the joiner's command is
            // dropped (it is told `unavailable`), and the room leaves the
            // hub, so the next join starts it again.
            None => {
                drop(rx);
                home.forget_closed(&key);
            }
        }
    });
    handle
}

impl Room {
    async fn load(
        name: RoomName,
        ctx: Arc<RoomContext>,
        hub: Arc<Hub>,
        members: Arc<AtomicUsize>,
        seats_taken: Arc<AtomicUsize>,
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
        let mut history = History::new(&ctx.history, ctx.resume_window);
        let mut seats = Vec::new();
        let (board, seq, epoch) = match snapshot {
            // A final write of a server that stopped cleanly is complete:
            // history and seats carry on.
            Some(s) if s.clean && ctx.previous_run_clean => {
                history.restore(s.history);
                let now = now_ms();
                for session in s.sessions.into_iter().filter(|x| x.hold_until_ms > now) {
                    seats.push(Seat {
                        member: Member {
                            id: ClientId(session.id),
                            name: session.name,
                            color: session.color,
                        },
                        access: session.access,
                        conn: 0,
                        outbox: None,
                        generation: session.generation,
                        last_op: session.last_op,
                        joined: session.joined_seq,
                        away_until: Some(
                            Instant::now() + Duration::from_millis(session.hold_until_ms - now),
                        ),
                    });
                }
                (Some(s.board), s.seq, s.epoch)
            }
            // Otherwise what came after the write may be lost (a crash), so
            // numbering starts a new epoch.
            Some(s) => (Some(s.board), s.seq, new_epoch()),
            None => (None, 0, new_epoch()),
        };
        seats_taken.store(seats.len(), Relaxed);
        let mut room = Room::empty(name, ctx, hub, (members, seats_taken), epoch);
        room.history = history;
        room.history_due = room.history.expires_at();
        room.seats = seats;
        room.saved = board.clone();
        room.board = board;
        room.seq = seq;
        room.saved_seq = seq;
        room
    }

    /// A room holding nothing yet: no seat, no board, `seq` 0 of `epoch`,
    /// no history, nothing due. Loading (`Room::load`) and hosting
    /// (`room/replica/`) fill in what they start from.
    fn empty(
        name: RoomName,
        ctx: Arc<RoomContext>,
        hub: Arc<Hub>,
        (members, seats_taken): (Arc<AtomicUsize>, Arc<AtomicUsize>),
        epoch: u64,
    ) -> Room {
        let history = History::new(&ctx.history, ctx.resume_window);
        Room {
            name,
            ctx,
            hub,
            seats: Vec::new(),
            members,
            seats_taken,
            saved: None,
            board: None,
            locks: Locks::new(),
            seq: 0,
            epoch,
            history,
            history_due: None,
            saved_seq: 0,
            state_request: None,
            presence_due: None,
            presence_told: presence::Told::default(),
            dirty_since: None,
            next_save: None,
            last_save: None,
            saving: None,
            unflushed: Vec::new(),
            turn: fanout::Turn::default(),
            published_keys: api::PublishedKeys::default(),
            replica: None,
        }
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        // Made once, not per command: a fresh `cancelled()` joins and
        // leaves the token's waiter list, and a fresh sleep registers with
        // the timer wheel, on every turn. One timer stands for all of the
        // room's deadlines and is moved only when the earliest one changes.
        let shutdown = self.ctx.shutdown.clone();
        let cancelled = shutdown.cancelled();
        tokio::pin!(cancelled);
        let timer = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(timer);
        let mut armed: Option<Instant> = None;
        loop {
            self.turn = fanout::Turn::default();
            let next = self.next_deadline();
            if next != armed {
                if let Some(at) = next {
                    timer.as_mut().reset(tokio::time::Instant::from_std(at));
                }
                armed = next;
            }
            tokio::select! {
                command = rx.recv() => match command {
                    Some(command) => self.handle(command),
                    None => break,
                },
                done = async { self.saving.as_mut().expect("guarded").await }, if self.saving.is_some() => {
                    self.saving = None;
                    if !matches!(done, Ok(true)) {
                        // Keep the board dirty and try again next interval.
                        self.saved = None;
                        self.schedule_save();
                    }
                }
                _ = &mut timer, if armed.is_some() => {
                    armed = None;
                    self.on_timers();
                }
                // cluster hook: the log's entries, in order
                Some(heard) = replica::next_heard(&mut self.replica), if self.replica.is_some() => {
                    self.on_heard(heard).await;
                }
                _ = &mut cancelled => break,
            }
            if !self.unflushed.is_empty() || self.presence_told.pending() {
                // Before writing, let the tasks that are ready run: under
                // load, readers forward more commands meanwhile, they join
                // this turn, and the frames of all of them go out in one
                // write per member. The turn goes on while yielding brings
                // more (at most TURN_YIELDS times), until what it queued is
                // enough (`fanout::Turn`): a turn is bounded by the frames
                // and bytes it queued, never by how many commands it took.
                // Idle, this costs one look at the sockets (`epoll_wait`).
                for _ in 0..TURN_YIELDS {
                    if self.turn.is_full(self.ctx.max_turn_bytes) {
                        break;
                    }
                    tokio::task::yield_now().await;
                    let mut more = false;
                    // Bounded: senders on other threads could go on forever.
                    for _ in 0..rx.max_capacity() {
                        if self.turn.is_full(self.ctx.max_turn_bytes) {
                            break;
                        }
                        let Ok(command) = rx.try_recv() else { break };
                        self.handle(command);
                        more = true;
                    }
                    if !more {
                        break;
                    }
                }
                self.write_out();
            }
            if self.seats.is_empty() && self.state_request.is_none() && self.nothing_pending() {
                self.flush().await;
                // Leave the hub only if nobody queued a command meanwhile;
                // a joiner whose command we drop here retries on a new room.
                if self.hub.dispose_if_idle(&self.name, &rx) {
                    rx.close();
                    self.ctx.metrics.rooms_disposed.fetch_add(1, Relaxed);
                    self.unhost(false).await; // cluster hook
                    return;
                }
            }
        }
        // Shutdown: what this turn queued goes out, then everyone is away,
        // to resume on the next start.
        self.write_out();
        self.unhost(true).await; // cluster hook: this node's members drop
        let hold = Instant::now() + self.ctx.resume_window;
        for seat in &mut self.seats {
            if seat.outbox.take().is_some() {
                seat.away_until = Some(hold);
            }
        }
        self.flush().await;
    }

    fn handle(&mut self, command: Command) {
        // cluster hook: ordered by the log first, applied from it (what
        // only reads the room is answered from this node's replica)
        let reads = matches!(&command, Command::Api { call, .. } if call.reads_only());
        if self.replica.is_some() && !reads {
            return self.submit(command);
        }
        self.apply(command);
    }

    /// Acts on a command: on one server as it comes, in cluster mode as
    /// the room's log orders it (`room/replica/`).
    fn apply(&mut self, command: Command) {
        match command {
            Command::Join {
                member,
                access,
                conn,
                outbox,
                resume,
                reply,
            } => self.join(member, access, conn, outbox, resume, reply),
            Command::Leave { id, conn, clean } => {
                // A leave from an older connection of a resumed seat is stale.
                if self
                    .seat(id)
                    .is_some_and(|s| s.conn == conn && s.outbox.is_some())
                {
                    if clean {
                        self.leave(id);
                    } else {
                        self.away(id);
                    }
                }
            }
            Command::Message {
                id,
                conn,
                message,
                op_id,
            } => self.message(id, conn, message, op_id),
            Command::Api { call, reply } => self.call(call, reply),
        }
    }

    fn seat(&self, id: ClientId) -> Option<&Seat> {
        self.seats.iter().find(|s| s.member.id == id)
    }

    fn live_members(&self) -> usize {
        self.seats.iter().filter(|s| s.outbox.is_some()).count()
    }

    fn join(
        &mut self,
        member: Member,
        access: Access,
        conn: u64,
        outbox: Outbox,
        resume: Option<Resume>,
        reply: oneshot::Sender<JoinReply>,
    ) {
        let reply = match &resume {
            Some(resume) => match self.resume(conn, &outbox, &access, resume, reply) {
                Some(reply) => reply,
                None => return,
            },
            None => reply,
        };
        // Away members keep their seats: a full room is full.
        if self.seats.len() >= self.ctx.max_room_size {
            let _ = reply.send(JoinReply::Full);
            return;
        }
        // Nothing in it yet: this join creates it (a webhook's `room.created`).
        let new_room = self.seq == 0 && self.board.is_none() && self.seats.is_empty();
        // A session of a run that crashed takes its identity back; its seat
        // and history went with that run, so it is not `recovered`.
        let member = resume
            .as_ref()
            .and_then(|r| r.claim.as_ref())
            .and_then(|claim| self.ctx.crashed_run.as_ref()?.take_back(claim))
            // cluster hook: the same after Redis lost the room's log
            .or_else(|| self.identity_after_lost_log(resume.as_ref()?))
            .unwrap_or(member);
        let id = member.id;
        let name = member.name.clone();
        self.seats.push(Seat {
            member: member.clone(),
            access,
            conn,
            outbox: Some(outbox),
            generation: 0,
            away_until: None,
            last_op: None,
            joined: self.seq,
        });
        self.members.store(self.live_members(), Relaxed);
        self.seats_taken.store(self.seats.len(), Relaxed);
        let _ = reply.send(JoinReply::Joined(member.clone()));
        if resume.is_some() {
            // Unknown, forged or expired token, or one of another room:
            // carry on as the new connection's identity (or the crashed
            // run's one taken back), and say so.
            self.resumed(&member, 0, false, None);
        }
        self.broadcast(
            Some(id),
            ServerMessage::TalkToRoom {
                data: format!("Welcome, client {name}!").into(),
                from: None,
            },
        );
        if self.wants_event() && self.told_here(conn) {
            if new_room {
                self.event("room.created", 0, serde_json::Value::Null);
            }
            if let Some(seat) = self.seat(id) {
                self.member_joined(&seat.member, &seat.access);
            }
        }
        self.presence_for(id);
        self.hydrate(id);
    }

    /// Takes the session of a valid token: its held seat, or the seat it
    /// still occupies from another connection, which is then closed as
    /// replaced (a phone on a new network whose old socket lingers; the
    /// newest connection with the token wins). Hands `reply` back if the
    /// token names no seat of this room, or a seat of another user (the
    /// app's token decides who is who): then it is an ordinary join.
    fn resume(
        &mut self,
        conn: u64,
        outbox: &Outbox,
        access: &Access,
        resume: &Resume,
        reply: oneshot::Sender<JoinReply>,
    ) -> Option<oneshot::Sender<JoinReply>> {
        let Some(claim) = &resume.claim else {
            return Some(reply);
        };
        let Some(seat) = self.seat(claim.member.id) else {
            return Some(reply);
        };
        if seat.access.user != access.user {
            return Some(reply);
        }
        // A previous run's token takes a held seat back (a deploy, a
        // crash's identity), but only this run's tokens are current enough
        // to take a seat over from a live connection.
        if seat.outbox.is_some() && claim.boot != self.ctx.tokens.boot() {
            return Some(reply);
        }
        if seat.outbox.is_some() {
            // The old connection's locks end with it, as on a drop; the new
            // one hears of it in the replay (or sees the locks of now).
            let member = seat.member.clone();
            self.let_go(&member);
            self.ctx.metrics.sessions_taken_over.fetch_add(1, Relaxed);
        }
        // `let_go` may evict a slow member: look the seat up again.
        let Some(seat) = self
            .seats
            .iter_mut()
            .find(|s| s.member.id == claim.member.id)
        else {
            return Some(reply);
        };
        if let Some(old) = seat.outbox.replace(outbox.clone()) {
            old.close_replaced();
        }
        seat.conn = conn;
        // The grant was checked again for this resume: its role now.
        seat.access.role = access.role;
        seat.generation += 1;
        seat.away_until = None;
        let (member, generation, last_op) = (seat.member.clone(), seat.generation, seat.last_op);
        let joined = seat.joined;
        self.members.store(self.live_members(), Relaxed);
        let _ = reply.send(JoinReply::Joined(member.clone()));
        let missed = match (resume.epoch, resume.last_seq) {
            (Some(epoch), Some(last)) if epoch == self.epoch => {
                // Nothing from before the seat's own join, whatever
                // `lastSeq` says (a newcomer resuming its fresh seat with 0).
                self.history.after(last.max(joined), self.seq, member.id)
            }
            _ => None,
        };
        let recovered = missed.is_some();
        for text in missed.unwrap_or_default() {
            self.queue_for(member.id, text, true);
        }
        self.resumed(&member, generation, recovered, last_op);
        if recovered {
            // The replay only has locks taken since `lastSeq`; a client
            // forgets who holds what when its socket drops.
            self.show_locks(member.id);
        } else {
            self.hydrate(member.id);
        }
        self.presence_for(member.id);
        None
    }

    fn resumed(&mut self, member: &Member, generation: u64, recovered: bool, last_op: Option<u64>) {
        let token = self.ctx.tokens.sign(member, generation);
        let data = protocol::Resumed {
            recovered,
            id: member.id,
            name: member.name.clone(),
            color: member.color.clone(),
            resume_token: token,
            last_op,
        };
        self.send_entry(member.id, ServerMessage::Resumed { data }, true);
    }

    /// Sends the joiner the board, or finds one, or says there is none.
    fn hydrate(&mut self, id: ClientId) {
        if let Some(board) = self.board.as_ref().filter(|b| !b.is_empty()) {
            let message = ServerMessage::Hydrate {
                data: board.clone(),
            };
            self.send_entry(id, message, true);
            self.show_locks(id);
            return;
        }
        if let Some(request) = &mut self.state_request {
            request.waiting.push(id);
            return;
        }
        // A viewer may not send a board, so it is not asked for one.
        let others: Vec<ClientId> = self
            .seats
            .iter()
            .filter(|s| s.outbox.is_some() && s.access.role.is_member())
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

    /// Tells a joiner (or a resumer) which words are held right now, as the
    /// `freeze` frames it would have seen had it been there.
    fn show_locks(&mut self, id: ClientId) {
        let mut held: Vec<_> = self.locks.iter().map(|(w, h)| (w.clone(), *h)).collect();
        held.sort();
        for (word, holder) in held {
            let Some(from) = self.seat(holder).map(|s| s.member.clone()) else {
                continue;
            };
            let message = ServerMessage::Freeze {
                element_id: word,
                client_name: from.name.clone(),
                color: from.color.clone(),
                from,
            };
            self.send_entry(id, message, true);
        }
    }

    /// The earliest moment one of the room's timers is due: the next save
    /// (unless one is running), the state request's deadline, the end of a
    /// held seat, the coalesced reorder, presence changes waiting for their
    /// tick.
    fn next_deadline(&self) -> Option<Instant> {
        [
            self.next_save.filter(|_| self.saving.is_none()),
            self.state_request.as_ref().map(|r| r.deadline),
            self.seats.iter().filter_map(|s| s.away_until).min(),
            self.presence_due,
            self.presence_told.due(),
            self.history_due,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Does whatever is due now.
    fn on_timers(&mut self) {
        let now = Instant::now();
        let due = |at: Option<Instant>| at.is_some_and(|t| t <= now);
        if self.saving.is_none() && due(self.next_save) {
            self.save_tick();
        }
        if due(self.state_request.as_ref().map(|r| r.deadline)) {
            self.ask_next();
        }
        // cluster hooks: what a clock decides goes through the log
        if self.seats.iter().any(|s| due(s.away_until)) {
            match self.replica {
                Some(_) => self.propose_expiry(now),
                None => self.expire(),
            }
        }
        if due(self.history_due) {
            self.history.expire();
            self.history_due = self
                .history
                .expires_at()
                .map(|at| at.max(now + HISTORY_SWEEP_GAP));
        }
        if due(self.presence_due) {
            match self.replica {
                Some(_) => self.propose_presence(),
                None => self.presence(),
            }
        }
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

    /// Gives the seat up: locks released, goodbye, presence.
    fn leave(&mut self, id: ClientId) {
        self.leave_because(id, Reason::Left);
    }

    /// [`Room::leave`], for `reason` (told in a webhook's `member.left`).
    fn leave_because(&mut self, id: ClientId, reason: Reason) {
        let Some(i) = self.seats.iter().position(|s| s.member.id == id) else {
            return;
        };
        let seat = self.seats.remove(i);
        self.members.store(self.live_members(), Relaxed);
        self.seats_taken.store(self.seats.len(), Relaxed);
        self.let_go(&seat.member);
        self.broadcast(
            None,
            ServerMessage::TalkToRoom {
                data: format!("Goodbye, client {}!", seat.member.name).into(),
                from: None,
            },
        );
        if self.wants_event() && self.told_here(seat.conn) {
            self.member_left(&seat.member, &seat.access, reason);
            if self.seats.is_empty() {
                self.event("room.vacated", 0, serde_json::Value::Null);
            }
        }
        self.presence();
    }

    /// The connection dropped: the seat is held for the resume window and
    /// the room sees the member as away. Locks are released at once.
    fn away(&mut self, id: ClientId) {
        if self.ctx.resume_window.is_zero() {
            return self.leave(id);
        }
        let hold = Instant::now() + self.ctx.resume_window;
        let Some(seat) = self.seats.iter_mut().find(|s| s.member.id == id) else {
            return;
        };
        seat.outbox = None;
        seat.away_until = Some(hold);
        let member = seat.member.clone();
        self.members.store(self.live_members(), Relaxed);
        self.let_go(&member);
        self.presence();
    }

    /// Seats whose resume window ended without a resume are given up.
    fn expire(&mut self) {
        let now = Instant::now();
        let expired: Vec<ClientId> = self
            .seats
            .iter()
            .filter(|s| s.away_until.is_some_and(|t| t <= now))
            .map(|s| s.member.id)
            .collect();
        for id in expired {
            self.leave_because(id, Reason::WindowEnded);
        }
    }

    /// Releases what a member held: its locks, and a pending state request.
    fn let_go(&mut self, member: &Member) {
        for word in self.locks.release_all(member.id) {
            self.broadcast(
                None,
                ServerMessage::Unfreeze {
                    element_id: word,
                    from: member.clone(),
                },
            );
        }
        if let Some(request) = &mut self.state_request {
            request.waiting.retain(|w| *w != member.id);
            if request.asked == member.id {
                self.ask_next();
            }
        }
    }

    fn message(&mut self, id: ClientId, conn: u64, message: ClientMessage, op_id: Option<u64>) {
        let Some(index) = self
            .seats
            .iter()
            .position(|s| s.member.id == id && s.conn == conn)
        else {
            return;
        };
        if let Some(op) = op_id {
            let seat = &mut self.seats[index];
            if let Some(last) = seat.last_op.filter(|last| op <= *last) {
                self.ctx.metrics.duplicate_ops.fetch_add(1, Relaxed);
                let data = protocol::ErrorBody::new(
                    protocol::ErrorCode::DuplicateOp,
                    format!("opId {op} was applied already (the last applied is {last}); nothing was done again"),
                );
                self.ctx.metrics.error(data.code);
                self.send_to(id, ServerMessage::Error { data }, false);
                return;
            }
            seat.last_op = Some(op);
        }
        if message.promotes() && index != 0 {
            let seat = self.seats.remove(index);
            self.seats.insert(0, seat);
            // A new order is worth telling, but not once per chat line.
            self.presence_due
                .get_or_insert_with(|| Instant::now() + PRESENCE_REORDER_DELAY);
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
        // A webhook's `message`, if the operator asked for this action
        // (serialised only then).
        let hooked = (self.wants_message(message.action()) && self.told_here(conn))
            .then(|| serde_json::to_value(&message).ok())
            .flatten();
        let empty = Board::default();
        let board = self.board.as_ref().unwrap_or(&empty);
        let seats = &self.seats;
        let limits = &self.ctx.limits;
        let outcome = rules::decide(limits, board, &self.locks, &sender, message, |m| {
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
            // Only a deleted word, or a whole new board, can end a lock.
            let gone = match &op {
                BoardOp::Delete(word) => Some(word.clone()),
                _ => None,
            };
            let replaced = matches!(op, BoardOp::Replace(_));
            if let Err(e) = board.apply_checked(op) {
                // `decide` checked it; this would be a bug, not bad input.
                tracing::error!(room = %self.name, "checked op failed: {e}");
                return;
            }
            if let Some(word) = gone {
                self.locks.release(&word);
            }
            if replaced {
                self.locks.retain(|w| board.get(w).is_some());
            }
            self.mark_dirty();
            if let Some(request) = self.state_request.take() {
                for waiting in request.waiting {
                    self.hydrate(waiting);
                }
            }
        }
        match outcome.lock {
            Some(LockChange::Take(word)) => {
                self.locks.take(word, id);
            }
            Some(LockChange::Release(word)) => {
                self.locks.release(&word);
            }
            None => {}
        }
        match outcome.delivery {
            Delivery::Room(message) => self.broadcast(Some(id), message),
            Delivery::Volatile(message) => self.broadcast_volatile(id, message),
            Delivery::To(to, message) => self.private(id, to, message),
        }
        if let Some(message) = hooked {
            let from = serde_json::to_value(&sender).unwrap_or_default();
            self.message_event(from, message);
        }
    }
}

fn new_epoch() -> u64 {
    u64::from(rand::random::<u32>())
}
