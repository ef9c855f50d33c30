//! One WebSocket connection as one task. It selects over the socket, the
//! frames its room could not write itself, the heartbeat and shutdown; it
//! only moves bytes and turns frames into protocol messages. Rooms decide
//! everything.

use std::future::Future;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use protocol::{
    ClientFrame, ClientId, ClientMessage, ErrorBody, ErrorCode, Hello, Member, RoomName,
    ServerFrame, ServerMessage,
};

use crate::admission::Admitted;
use crate::auth::{Access, Pass};
use crate::hub::Joined;
use crate::outbox::{self, Batch, Inbox};
use crate::room::{Command, Resume, RoomHandle};
use crate::ws::{self, close_code, Message, Socket, Text};
use crate::AppState;

/// A peer that does not take our bytes for this long is gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a client we let go (its queue full) or refuse (it broke the
/// protocol) gets to take the rest of the frame on the wire and our close
/// frame, and to end its side; then the socket is reset. Short, because a
/// reader that stopped holds megabytes of kernel buffer until then; long
/// enough for one briefly stalled to learn why it was cut (1008, not 1006).
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// The room this connection is in, and the queue the room fills for it.
struct Membership {
    room: RoomName,
    handle: RoomHandle,
    inbox: Inbox,
    /// Who the member is to the app and its role here (a viewer's writes
    /// are refused before they reach the room).
    access: Access,
    /// The token it joined with, if any: when it expires.
    expiry: Option<Expiry>,
}

/// The end of a membership's token. At `at` the client is told
/// (`token_expired`) and given `--auth-grace` to send `refreshToken`; at
/// the end of that it is closed (close code 4001).
struct Expiry {
    at: Instant,
    told: bool,
}

impl Expiry {
    /// When a token expiring at `exp` (seconds since the epoch) is due,
    /// with the clock-skew leeway its check allowed.
    fn new(exp: u64, leeway: Duration) -> Expiry {
        let end = UNIX_EPOCH + Duration::from_secs(exp) + leeway;
        let left = end
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        Expiry {
            at: Instant::now() + left,
            told: false,
        }
    }
}

/// Token bucket: `rate` messages per second, bursts of `burst`.
struct RateLimit {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
    /// Whether the client was told it is limited since its last accepted
    /// message (tell once per episode, not once per dropped frame).
    told: bool,
}

impl RateLimit {
    fn allow(&mut self) -> bool {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.at).as_secs_f64() * self.rate).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.told = false;
            true
        } else {
            false
        }
    }
}

/// Liveness (`--ping-interval`): a ping every period, and a client that
/// sends nothing at all (a pong or any other frame) within a period of a
/// ping going out is gone. The period runs from when the ping was written,
/// and the check runs on a deadline rather than on ticks, so a server that
/// was stalled (stopped, throttled, starved) never counts its own missed
/// ticks as missed pongs.
struct Heartbeat {
    period: Duration,
    /// When the last ping was written to the socket; `None` before the first.
    ping_sent: Option<Instant>,
    /// When the last whole frame of any kind came from the client.
    last_heard: Instant,
}

impl Heartbeat {
    fn new(period: Duration) -> Heartbeat {
        Heartbeat {
            period,
            ping_sent: None,
            last_heard: Instant::now(),
        }
    }

    /// Whether the client has said nothing since the last ping. Asked when
    /// that ping's period is over.
    fn silent(&self) -> bool {
        self.ping_sent.is_some_and(|sent| self.last_heard < sent)
    }
}

#[derive(Debug)]
enum Exit {
    /// The client sent a close frame: a leave (but a close with
    /// `RESUMING` is a drop: the client means to come back).
    Closed,
    /// The client broke the WebSocket protocol and was sent a close frame
    /// saying so: a leave.
    Refused,
    /// The connection broke or timed out.
    Dropped,
    /// The room let go of this client (slow consumer), with the rest of a
    /// frame it left half on the wire.
    Evicted(Option<Batch>),
    /// A newer connection took this one's session over with its token.
    Replaced,
    /// The app's backend removed the member (kicked, room closed): the
    /// close code and reason.
    LetGo(u16, &'static str),
    /// The token it joined with expired and no refresh came in the grace.
    TokenExpired,
    Shutdown,
}

/// Serves one WebSocket until it ends; `admitted` (its counts in
/// `admission.rs`) is given back when this returns.
pub async fn serve(mut socket: Socket, state: Arc<AppState>, admitted: Admitted) {
    state.metrics.connections_opened.fetch_add(1, Relaxed);
    let (mut conn_state, hello) = Connection::new(state, admitted);
    let exit = match conn_state.send(&mut socket, hello).await {
        Ok(()) => conn_state.run(&mut socket).await,
        Err(exit) => exit,
    };
    match exit {
        // Whatever the room left half-written stays so: the socket is done.
        Exit::Closed => drop(Box::pin(conn_state.leave(true)).await),
        Exit::Dropped => drop(Box::pin(conn_state.leave(false)).await),
        Exit::Refused => {
            drop(Box::pin(conn_state.leave(true)).await);
            let_go(socket, None, None).await;
        }
        // The room already let go.
        Exit::Evicted(rest) => {
            let reason = "slow consumer: outbound queue full";
            let_go(socket, rest, Some((close_code::POLICY, reason))).await;
        }
        // Rooms keep seats to resume. What the client still sends is read
        // away after the close frame (see `let_go`), or a member sending
        // fast would get a reset instead of 1001.
        Exit::Shutdown => {
            let reason = "server shutting down";
            let rest = conn_state.take_pen();
            let_go(socket, Some(rest), Some((close_code::AWAY, reason))).await;
        }
        // The seat is held (a resume with a new token takes it back).
        Exit::TokenExpired => {
            let rest = Box::pin(conn_state.leave(false)).await;
            let reason = "token expired";
            let_go(
                socket,
                rest,
                Some((protocol::close_code::TOKEN_EXPIRED, reason)),
            )
            .await;
        }
        // The seat is the newer connection's; told why, within CLOSE_GRACE.
        Exit::Replaced => {
            let reason = "session taken over by a newer connection";
            let_go(socket, None, Some((close_code::REPLACED, reason))).await;
        }
        // The seat is gone already (`room/api.rs`).
        Exit::LetGo(code, reason) => let_go(socket, None, Some((code, reason))).await,
    }
    conn_state
        .state
        .metrics
        .connections_closed
        .fetch_add(1, Relaxed);
}

/// Why a join may not create its room (`too_many_rooms`).
enum NotCreated {
    /// `--new-rooms-per-minute`: how long until the next.
    TooFast(Duration),
    /// `--max-stored-rooms-per-ip`: the address counts this many.
    TooManyStored(usize),
}

struct Connection {
    state: Arc<AppState>,
    /// Its place in the connection limits, and the client's address for
    /// the room-creation limit (`admission.rs`).
    admitted: Admitted,
    member: Member,
    conn: u64,
    membership: Option<Membership>,
    limit: RateLimit,
}

fn frame(message: ServerMessage) -> Text {
    Text::from(ServerFrame::from(message).encode())
}

/// A write the peer does not take within [`WRITE_TIMEOUT`] failed: the peer
/// is as good as gone.
async fn in_time(write: impl Future<Output = std::io::Result<()>>) -> Result<(), ()> {
    match tokio::time::timeout(WRITE_TIMEOUT, write).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

impl Connection {
    /// A new client: a fresh id and name, and the `hello` that tells it so.
    fn new(state: Arc<AppState>, admitted: Admitted) -> (Connection, Text) {
        let conn = state.next_conn.fetch_add(1, Relaxed);
        let id = ClientId(state.boot << 32 | conn);
        let member = crate::identity::new_member(id);
        let token = state.tokens.sign(&member, 0);
        let hello = ServerMessage::Hello {
            data: Hello {
                id,
                name: member.name.clone(),
                color: member.color.clone(),
                resume_token: Some(token),
            },
        };
        let limit = RateLimit {
            rate: state.config.rate_limit,
            burst: state.config.rate_burst,
            tokens: state.config.rate_burst,
            at: Instant::now(),
            told: false,
        };
        let connection = Connection {
            state,
            admitted,
            member,
            conn,
            membership: None,
            limit,
        };
        (connection, frame(hello))
    }

    /// Takes the pen from the room before the connection writes anything of
    /// its own: what the room had queued, to be written first (see
    /// `outbox`).
    fn take_pen(&self) -> Batch {
        match &self.membership {
            Some(m) => m.inbox.claim(),
            None => Batch::default(),
        }
    }

    /// Writes `batch` within [`WRITE_TIMEOUT`]. If the room evicts this
    /// member meanwhile, stops at the end of the frame on the wire and
    /// returns its rest with [`Exit::Evicted`]: a reader that stopped
    /// cannot hold the connection here for the whole timeout.
    async fn write(&self, socket: &mut Socket, mut batch: Batch) -> Result<(), Exit> {
        tokio::select! {
            written = in_time(socket.send_rest(&mut batch.frames, &mut batch.written)) => {
                written.map_err(|()| Exit::Dropped)
            }
            () = evicted(&self.membership) => Err(Exit::Evicted(batch.rest_on_the_wire())),
        }
    }

    /// Writes a frame of the connection's own, after what the room queued.
    async fn send(&self, socket: &mut Socket, text: Text) -> Result<(), Exit> {
        let mut batch = self.take_pen();
        batch.frames.push_back(text);
        self.write(socket, batch).await
    }

    /// Answers a ping, or sends ours: like [`Connection::write`], but a
    /// control frame cut short by an eviction is finished by the socket
    /// before the close frame.
    async fn control(&self, socket: &mut Socket, pong: Option<&[u8]>) -> Result<(), Exit> {
        self.write(socket, self.take_pen()).await?;
        let sent = async {
            match pong {
                Some(payload) => in_time(socket.pong(payload)).await,
                None => in_time(socket.ping()).await,
            }
        };
        tokio::select! {
            sent = sent => sent.map_err(|()| Exit::Dropped),
            () = evicted(&self.membership) => Err(Exit::Evicted(None)),
        }
    }

    async fn close(&self, socket: &mut Socket, code: u16, reason: &str) {
        if self.write(socket, self.take_pen()).await.is_ok() {
            let _ = in_time(socket.close(code, reason)).await;
        }
    }

    async fn run(&mut self, socket: &mut Socket) -> Exit {
        let mut heartbeat = Heartbeat::new(self.state.config.ping_interval);
        let next_ping = tokio::time::sleep(heartbeat.period);
        tokio::pin!(next_ping);
        let shutdown = self.state.shutdown.clone();
        // Made once: a `cancelled()` made per turn of the loop would join
        // and leave the token's waiter list on every frame.
        let cancelled = shutdown.cancelled();
        tokio::pin!(cancelled);
        // One timer for the token's expiry, moved only when it changes.
        let token_timer = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(token_timer);
        let mut token_armed: Option<Instant> = None;
        loop {
            let due = self
                .membership
                .as_ref()
                .and_then(|m| m.expiry.as_ref())
                .map(|e| e.at);
            if due != token_armed {
                if let Some(at) = due {
                    token_timer.as_mut().reset(at.into());
                }
                token_armed = due;
            }
            // A member hears of the shutdown from its room, which lets go
            // of every outbox; only a socket in no room watches the token
            // (polling it takes a lock, on every turn of this loop).
            let in_room = self.membership.is_some();
            tokio::select! {
                incoming = socket.recv() => match incoming.inspect(|_| heartbeat.last_heard = Instant::now()) {
                    Ok(Message::Text(text)) => {
                        // Boxed: joining is a deep future, and every idle
                        // connection would otherwise carry room for it.
                        match Box::pin(self.incoming(socket, &text)).await {
                            Ok(None) => {}
                            Ok(Some(reply)) => {
                                if let Err(exit) = self.send(socket, reply).await {
                                    return exit;
                                }
                            }
                            Err(()) => return Exit::Dropped,
                        }
                    }
                    // Binary frames and pings cost a reply each: they count
                    // against the rate limit like text.
                    Ok(Message::Binary(_)) => {
                        let reply = match self.rate_limited() {
                            Ok(()) => Some(self.error(ErrorCode::BinaryFrame, "binary frames are not part of the protocol; send JSON text")),
                            Err(told) => told,
                        };
                        if let Some(reply) = reply {
                            if let Err(exit) = self.send(socket, reply).await {
                                return exit;
                            }
                        }
                    }
                    Ok(Message::Pong) => {}
                    Ok(Message::Ping(payload)) => {
                        let answered = match self.rate_limited() {
                            Ok(()) => self.control(socket, Some(&payload)).await,
                            Err(Some(told)) => self.send(socket, told).await,
                            Err(None) => Ok(()),
                        };
                        if let Err(exit) = answered {
                            return exit;
                        }
                    }
                    Ok(Message::Close(code)) => {
                        self.close(socket, code.unwrap_or(close_code::NORMAL), "").await;
                        if code == Some(close_code::RESUMING) {
                            return Exit::Dropped;
                        }
                        return Exit::Closed;
                    }
                    Err(e) => return self.refuse(socket, e).await,
                },
                queued = recv(&mut self.membership) => match queued {
                    Some(batch) => {
                        if let Err(exit) = self.write(socket, batch).await {
                            return exit;
                        }
                    }
                    // Rooms also let go when the server stops.
                    None if self.state.shutdown.is_cancelled() => return Exit::Shutdown,
                    None if self.membership.as_ref().is_some_and(|m| m.inbox.replaced()) => return Exit::Replaced,
                    None => match &self.membership {
                        Some(m) => match m.inbox.let_go() {
                            Some(why) => {
                                // Kept here: only this connection knows its address.
                                self.state.api.ban(&m.room, &m.access, self.admitted.address(), why.ban);
                                return Exit::LetGo(why.code, why.reason);
                            }
                            None => return Exit::Evicted(None),
                        },
                        None => return Exit::Evicted(None),
                    },
                },
                () = &mut next_ping => {
                    // An answer may wait unread in the kernel: after a stall
                    // this timer can fire before the read that would see it.
                    if heartbeat.silent() && !socket.has_unread() {
                        self.state.metrics.heartbeat_timeouts.fetch_add(1, Relaxed);
                        tracing::debug!(client = %self.member.id, "nothing heard since the last ping: cut");
                        return Exit::Dropped;
                    }
                    if let Err(exit) = self.control(socket, None).await {
                        return exit;
                    }
                    let sent = Instant::now();
                    heartbeat.ping_sent = Some(sent);
                    next_ping.as_mut().reset((sent + heartbeat.period).into());
                }
                () = &mut token_timer, if token_armed.is_some() => {
                    token_armed = None;
                    match self.token_ran_out() {
                        Ok(Some(reply)) => {
                            if let Err(exit) = self.send(socket, reply).await {
                                return exit;
                            }
                        }
                        Ok(None) => {}
                        Err(exit) => return exit,
                    }
                }
                _ = &mut cancelled, if !in_room => return Exit::Shutdown,
            }
        }
    }

    /// The membership's token reached its expiry: the first time, the
    /// client is told and given the grace (the `error` to send); at the
    /// end of the grace the connection closes.
    fn token_ran_out(&mut self) -> Result<Option<Text>, Exit> {
        let grace = self.state.config.auth_grace;
        let Some(expiry) = self.membership.as_mut().and_then(|m| m.expiry.as_mut()) else {
            return Ok(None);
        };
        if expiry.told {
            return Err(Exit::TokenExpired);
        }
        expiry.told = true;
        expiry.at = Instant::now() + grace;
        Ok(Some(self.error(
            ErrorCode::TokenExpired,
            format!(
                "your token expired: send refreshToken within {} s or the connection closes",
                grace.as_secs()
            ),
        )))
    }

    /// A `refreshToken`: the membership's expiry moves to the new
    /// token's, if it is valid for the same user, room and role.
    fn refresh(&mut self, token: &str) -> Option<Text> {
        let auth = self.state.auth.clone();
        if !auth.enabled() {
            return None;
        }
        let Some(membership) = &mut self.membership else {
            return Some(self.error(ErrorCode::NotJoined, "send newClient with a room first"));
        };
        match auth.refresh(token, &membership.room, &membership.access) {
            Ok(exp) => {
                membership.expiry = Some(Expiry::new(exp, self.state.config.auth_leeway));
                None
            }
            Err(refusal) => {
                let message = format!("{refusal}; the token you joined with still counts");
                Some(self.error(refusal.code(), message))
            }
        }
    }

    /// The client broke the WebSocket protocol (or sent too much): say why
    /// with the close code, and treat it as a leave. A broken connection is
    /// just dropped.
    async fn refuse(&self, socket: &mut Socket, e: ws::Error) -> Exit {
        let Some(code) = e.close_code() else {
            tracing::debug!(client = %self.member.id, "socket error: {e}");
            return Exit::Dropped;
        };
        tracing::info!(client = %self.member.id, "closing with {code}: {e}");
        self.close(socket, code, &e.to_string()).await;
        Exit::Refused
    }

    fn error(&self, code: ErrorCode, message: impl Into<String>) -> Text {
        self.state.metrics.error(code);
        self.state.metrics.messages_out("error", 1);
        frame(ServerMessage::Error {
            data: ErrorBody::new(code, message),
        })
    }

    /// Counts one frame from the client against `--rate-limit`. `Err`: it
    /// is over the limit and dropped, with the error that tells the client
    /// so the first time in a row.
    fn rate_limited(&mut self) -> Result<(), Option<Text>> {
        if self.limit.allow() {
            return Ok(());
        }
        if std::mem::replace(&mut self.limit.told, true) {
            return Err(None);
        }
        tracing::info!(client = %self.member.id, "rate limited");
        Err(Some(self.error(
            ErrorCode::RateLimited,
            "too many messages; this one was dropped",
        )))
    }

    /// Handles one text frame; returns a reply for this client only, or
    /// `Err` if the socket failed (switching rooms may write).
    async fn incoming(&mut self, socket: &mut Socket, text: &str) -> Result<Option<Text>, ()> {
        if let Err(told) = self.rate_limited() {
            return Ok(told);
        }
        let frame = match ClientFrame::decode(text) {
            Ok(frame) => frame,
            Err(e) => {
                tracing::debug!(client = %self.member.id, "bad frame: {e}");
                return Ok(Some(self.error(e.code, e.message)));
            }
        };
        self.state.metrics.message_in(frame.message.action());
        if let Some(room) = frame.join_target() {
            // The grant first: a refused join changes nothing, and takes
            // nothing from the address's room creations.
            let pass = match self.state.auth.admit(&room, frame.join_token()) {
                Ok(pass) => pass,
                Err(refusal) => {
                    tracing::debug!(client = %self.member.id, room = %room, "join refused: {refusal}");
                    return Ok(Some(self.error(refusal.code(), refusal.to_string())));
                }
            };
            let resume = frame.resume_request().map(|r| Resume {
                claim: self.state.tokens.verify(&r.token),
                epoch: r.epoch,
                last_seq: r.last_seq,
            });
            return self.join(socket, room, pass, resume).await;
        }
        if let ClientMessage::RefreshToken { token } = &frame.message {
            return Ok(self.refresh(token));
        }
        if let ClientMessage::Echo { data } = frame.message {
            self.state.metrics.messages_out("echo", 1);
            return Ok(Some(self::frame(ServerMessage::Echo { data })));
        }
        let Some(membership) = &self.membership else {
            return Ok(Some(
                self.error(ErrorCode::NotJoined, "send newClient with a room first"),
            ));
        };
        if let Some(named) = &frame.room {
            if RoomName::new(named).ok().as_ref() != Some(&membership.room) {
                return Ok(Some(self.error(
                    ErrorCode::WrongRoom,
                    format!(
                        "you are in room {}, not {named:?}; nothing was delivered",
                        membership.room
                    ),
                )));
            }
        }
        if !membership.access.role.is_member() && frame.message.writes() {
            return Ok(Some(self.error(
                ErrorCode::Forbidden,
                format!(
                    "a viewer may not send {}; nothing was delivered",
                    frame.message.action()
                ),
            )));
        }
        let command = Command::Message {
            id: self.member.id,
            conn: self.conn,
            message: frame.message,
            op_id: frame.op_id,
        };
        if membership.handle.tx.send(command).await.is_err() {
            return Ok(Some(
                self.error(ErrorCode::Unavailable, "the room is closing; join again"),
            ));
        }
        Ok(None)
    }

    async fn join(
        &mut self,
        socket: &mut Socket,
        room: RoomName,
        pass: Pass,
        resume: Option<Resume>,
    ) -> Result<Option<Text>, ()> {
        if let Some(left) = self
            .state
            .api
            .banned(&room, &pass.access, self.admitted.address())
        {
            return Ok(Some(self.error(
                ErrorCode::Forbidden,
                format!(
                    "the app removed you from {room}; you may join again in {} s (you are still where you were)",
                    left.as_secs() + 1
                ),
            )));
        }
        if let Err(refusal) = self.may_create(&room).await {
            self.state
                .metrics
                .limits
                .rooms_refused
                .fetch_add(1, Relaxed);
            let why = match refusal {
                NotCreated::TooFast(wait) => format!(
                    "your address created too many new rooms; {room} can be created in {} s",
                    wait.as_secs() + 1
                ),
                NotCreated::TooManyStored(max) => format!(
                    "your address has created {max} rooms that are still stored; {room} can be created once some expire"
                ),
            };
            return Ok(Some(self.error(
                ErrorCode::TooManyRooms,
                format!("{why} (you are still where you were)"),
            )));
        }
        // The rest of a frame the old room left half-written goes out before
        // the new room may write.
        if let Some(rest) = self.leave(true).await {
            write_batch(socket, rest).await?;
        }
        let (outbox, inbox) =
            outbox::channel(self.state.config.outbound_queue.max(2), socket.sender());
        // The token's name and colour, if it gives them (else the
        // connection's own, random).
        let member = Member {
            id: self.member.id,
            name: pass.name.unwrap_or_else(|| self.member.name.clone()),
            color: pass.color.unwrap_or_else(|| self.member.color.clone()),
        };
        let access = pass.access;
        match self
            .state
            .hub
            .join(&room, (member, access.clone()), self.conn, outbox, resume)
            .await
        {
            Some(Joined::Yes(handle, member)) => {
                self.member = member;
                let leeway = self.state.config.auth_leeway;
                self.membership = Some(Membership {
                    room,
                    handle,
                    inbox,
                    access,
                    expiry: pass.expires.map(|exp| Expiry::new(exp, leeway)),
                });
                Ok(None)
            }
            Some(Joined::Full(suggestions)) => {
                self.state.metrics.messages_out("roomFull", 1);
                Ok(Some(frame(ServerMessage::RoomFull { data: suggestions })))
            }
            None => Ok(Some(
                self.error(ErrorCode::Unavailable, "could not join; try again"),
            )),
        }
    }

    /// Whether joining `room` is allowed: free when the room exists (open
    /// here, stored, or in cluster mode open or kept anywhere in the
    /// cluster; a join and a resume alike, only creating a room is
    /// counted), else it takes one creation from this address's bucket
    /// (`--new-rooms-per-minute`, in cluster mode counted for the whole
    /// cluster) and counts against the rooms this address may have stored
    /// (`--max-stored-rooms-per-ip`: on one server in the store, in cluster
    /// mode in Redis, for the whole cluster). The store is asked on the
    /// blocking pool.
    async fn may_create(&self, room: &RoomName) -> Result<(), NotCreated> {
        if self.state.hub.is_open(room) {
            return Ok(());
        }
        // cluster hook: the room may exist on another node or in Redis, and
        // the count of creations is the cluster's
        if let Some(cluster) = self.state.hub.cluster() {
            let address = self.admitted.address();
            let per_minute = self.state.config.new_rooms_per_minute;
            let counted = match cluster.room_exists(room.as_str()).await {
                Ok(true) => return Ok(()),
                Ok(false) => cluster.create_room(address, per_minute).await,
                Err(e) => Err(e),
            };
            counted
                .unwrap_or_else(|e| {
                    // Redis could not say: this node's own count decides.
                    tracing::warn!(room = %room, "counting a room creation in the cluster: {e}");
                    self.state.admission.create_room(address)
                })
                .map_err(NotCreated::TooFast)?;
            let max = self.state.config.max_stored_rooms_per_ip;
            return match cluster.keep_room(address, room.as_str(), max).await {
                Ok(true) => Ok(()),
                Ok(false) => Err(NotCreated::TooManyStored(max)),
                // Not counted, and not refused for Redis's fault.
                Err(e) => {
                    tracing::warn!(room = %room, "counting a kept room in the cluster: {e}");
                    Ok(())
                }
            };
        }
        let (store, key) = (self.state.store.clone(), room.clone());
        let (admission, metrics) = (self.state.admission.clone(), self.state.metrics.clone());
        let address = self.admitted.address();
        let max_stored = (self.state.config.redis_url.is_none())
            .then_some(self.state.config.max_stored_rooms_per_ip);
        let decided = tokio::task::spawn_blocking(move || {
            let failed = |e: crate::store::StoreError| {
                metrics.store_errors.fetch_add(1, Relaxed);
                tracing::error!("deciding whether {key} may be created: {e}");
            };
            match store.contains(&key) {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                // The store could not say: count it as new.
                Err(e) => failed(e),
            }
            admission
                .create_room(address)
                .map_err(NotCreated::TooFast)?;
            match max_stored.map(|max| (max, store.claim(&key, address, max))) {
                Some((max, Ok(false))) => Err(NotCreated::TooManyStored(max)),
                // Not counted, and not refused for the store's fault.
                Some((_, Err(e))) => {
                    failed(e);
                    Ok(())
                }
                _ => Ok(()),
            }
        })
        .await;
        decided.unwrap_or_else(|_| {
            self.state
                .admission
                .create_room(address)
                .map_err(NotCreated::TooFast)
        })
    }

    /// Leaves the room, if in one. Returns the rest of a frame the room
    /// left half-written: nothing else may be written before it.
    async fn leave(&mut self, clean: bool) -> Option<Batch> {
        let m = self.membership.take()?;
        let rest = m.inbox.close();
        let _ = m
            .handle
            .tx
            .send(Command::Leave {
                id: self.member.id,
                conn: self.conn,
                clean,
            })
            .await;
        rest
    }
}

/// Writes what the room handed over: everything queued, in one write.
async fn write_batch(socket: &mut Socket, mut batch: Batch) -> Result<(), ()> {
    in_time(socket.send_rest(&mut batch.frames, &mut batch.written)).await
}

/// Ends a connection the server lets go of, within [`CLOSE_GRACE`]: the
/// rest of the frame on the wire and a close frame (unless one went out
/// already), then whatever the client still sends is read away until it
/// ends its side, so the close frame is not lost to a reset. A client that
/// does not take them in time is reset.
async fn let_go(mut socket: Socket, rest: Option<Batch>, close: Option<(u16, &str)>) {
    let said = tokio::time::timeout(CLOSE_GRACE, async {
        if let Some(mut rest) = rest {
            socket
                .send_rest(&mut rest.frames, &mut rest.written)
                .await?;
        }
        if let Some((code, reason)) = close {
            socket.close(code, reason).await?;
        }
        socket.drain().await
    });
    if !matches!(said.await, Ok(Ok(()))) {
        socket.reset();
    }
}

/// Resolves once the room evicted this member; never outside a room.
async fn evicted(membership: &Option<Membership>) {
    match membership {
        Some(m) => m.inbox.evicted().await,
        None => std::future::pending().await,
    }
}

async fn recv(membership: &mut Option<Membership>) -> Option<Batch> {
    match membership {
        Some(m) => m.inbox.recv_all().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use serde_json::{json, Value};
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpStream;

    /// Reads server frames strictly until an `echo` arrives: a frame cut
    /// short shows as a payload that is not JSON, or one that never ends.
    async fn frames_until_echo(mut tcp: TcpStream) -> Vec<Value> {
        let mut frames = Vec::new();
        loop {
            let read = async {
                let b0 = tcp.read_u8().await?;
                let len = match tcp.read_u8().await? {
                    126 => tcp.read_u16().await? as usize,
                    127 => tcp.read_u64().await? as usize,
                    n => n as usize,
                };
                assert_eq!(b0, 0x81, "frame {}: not a whole text frame", frames.len());
                assert!(len < 1 << 20, "frame {}: length {len}", frames.len());
                let mut payload = vec![0; len];
                tcp.read_exact(&mut payload).await?;
                std::io::Result::Ok(payload)
            };
            let payload = tokio::time::timeout(Duration::from_secs(5), read)
                .await
                .expect("a frame never ended")
                .unwrap();
            let frame: Value = serde_json::from_slice(&payload)
                .unwrap_or_else(|e| panic!("frame {} is not JSON: {e}", frames.len()));
            let done = frame["action"] == "echo";
            frames.push(frame);
            if done {
                return frames;
            }
        }
    }

    #[tokio::test]
    async fn an_answer_left_unread_by_a_stall_counts_as_heard() {
        use tokio::io::AsyncWriteExt;
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().to_str().unwrap();
        let args = [
            "attractio",
            "--data-dir",
            data_dir,
            "--ping-interval",
            "100ms",
        ];
        let state = crate::AppState::open(crate::config::Config::parse_from(args)).unwrap();
        let (mut socket, mut client) = ws::tcp_pair().await;
        let (mut connection, _) = Connection::new(state.clone(), Admitted::for_tests().await);
        tokio::spawn(async move { connection.run(&mut socket).await });

        // Each round the client answers a ping at once, and the server (this
        // test shares its only thread) stalls past the ping's deadline
        // before it could read the pong. After the stall, the deadline and
        // the pong are due together: whichever the connection looks at
        // first, the client must not be cut.
        for round in 0..8 {
            let mut ping = [0; 2];
            tokio::time::timeout(Duration::from_secs(5), client.read_exact(&mut ping))
                .await
                .expect("a ping in time")
                .unwrap_or_else(|e| panic!("round {round}: cut ({e})"));
            assert_eq!(ping, [0x89, 0x00], "round {round}: a ping");
            // A masked, empty pong.
            client.write_all(&[0x8A, 0x80, 1, 2, 3, 4]).await.unwrap();
            std::thread::sleep(Duration::from_millis(250));
        }
        assert_eq!(state.metrics.heartbeat_timeouts.load(Relaxed), 0);
    }

    #[tokio::test]
    async fn a_frame_the_old_room_left_half_written_is_finished_before_the_new_room_writes() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().to_str().unwrap();
        let config = crate::config::Config::parse_from(["attractio", "--data-dir", data_dir]);
        let state = crate::AppState::open(config).unwrap();
        let room = |name| RoomName::new(name).unwrap();

        let (mut socket, client) = ws::narrow_tcp_pair(4096).await;
        let (mut reader, _) = Connection::new(state.clone(), Admitted::for_tests().await);
        assert_eq!(
            reader
                .join(&mut socket, room("a"), Pass::default(), None)
                .await,
            Ok(None)
        );
        let (mut other_socket, _other_client) = ws::narrow_tcp_pair(4096).await;
        let (mut talker, _) = Connection::new(state.clone(), Admitted::for_tests().await);
        assert_eq!(
            talker
                .join(&mut other_socket, room("a"), Pass::default(), None)
                .await,
            Ok(None)
        );

        // A line far bigger than the reader's socket takes: the room writes
        // what fits and leaves the rest queued (nobody reads yet).
        let line = "x".repeat(40 * 1024);
        let talk = json!({"action": "talkToRoom", "data": line}).to_string();
        assert_eq!(talker.incoming(&mut other_socket, &talk).await, Ok(None));
        let inbox = &reader.membership.as_ref().unwrap().inbox;
        tokio::time::timeout(Duration::from_secs(5), async {
            while !inbox.half_written() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the room wrote part of the line");

        // Switching rooms mid-frame: the rest of the line must go out
        // before anything of room b, or the stream is garbage from there.
        let frames = tokio::spawn(frames_until_echo(client));
        assert_eq!(
            reader
                .join(&mut socket, room("b"), Pass::default(), None)
                .await,
            Ok(None)
        );
        let echo = json!({"action": "echo", "data": "after the switch"}).to_string();
        let reply = reader.incoming(&mut socket, &echo).await.unwrap().unwrap();
        reader.send(&mut socket, reply).await.unwrap();

        let frames = frames.await.unwrap();
        let at_line: Vec<_> = (0..frames.len())
            .filter(|&i| frames[i]["data"] == line.as_str())
            .collect();
        let joins: Vec<_> = (0..frames.len())
            .filter(|&i| frames[i]["action"] == "newRoom")
            .collect();
        assert_eq!(at_line.len(), 1, "the line arrived once, whole");
        assert_eq!(joins.len(), 2, "rooms a and b both welcomed the reader");
        assert!(
            at_line[0] < joins[1],
            "the line came before room b's frames"
        );
        assert_eq!(frames.last().unwrap()["data"], "after the switch");
    }
}
