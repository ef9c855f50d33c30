//! The room socket, in one custom hook: [`use_room`] opens the socket on
//! the page's origin, joins the room, feeds every server frame to the
//! room's reducer, answers `requestCurrentState`, measures the round trip
//! with `echo`, and reconnects with backoff when the socket drops, except
//! when another tab or device took the session over: then only when the
//! user asks ([`RoomSocket::take_back`]); and never when the room refused
//! us for good (a private room, a link's token not valid or expired:
//! [`Refusal`]), which trying again would not change.
//!
//! Sending goes through [`RoomSocket::send`]: the message is applied to our
//! own state at once (the server relays it only to the others) and either
//! sent or, while the room is not joined, queued in the [`Outbox`] and sent
//! after the rejoin, on top of the fresh board.

use std::cell::RefCell;
use std::rc::Rc;

use gloo_timers::callback::{Interval, Timeout};
use protocol::{close_code, ClientFrame, ClientMessage, RoomName, ServerFrame, ServerMessage};
use serde_json::Value;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{CloseEvent, Event, MessageEvent, WebSocket};
use yew::prelude::*;

use crate::backoff::reconnect_delay_ms;
use crate::outbox::Outbox;
use crate::room_state::{read_frame, Action, Refusal, RoomState};
use crate::web;

/// How often `echo` measures the round trip.
const ECHO_EVERY_MS: u32 = 3_000;
/// An `echo` unanswered this long is forgotten.
const ECHO_GIVE_UP_MS: f64 = 10_000.0;

impl Reducible for RoomState {
    type Action = Action;

    fn reduce(self: Rc<Self>, action: Action) -> Rc<Self> {
        let mut next = Rc::unwrap_or_clone(self);
        next.apply(action);
        Rc::new(next)
    }
}

/// What a room page gets from [`use_room`].
#[derive(Clone, PartialEq)]
pub struct RoomSocket {
    pub state: UseReducerHandle<RoomState>,
    /// Apply to our state and send (or queue) a message.
    pub send: Callback<ClientMessage>,
    /// Apply a local-only action (e.g. a drag's position).
    pub dispatch: Callback<Action>,
    /// Reconnect after another tab or device took the session over, taking
    /// it back (the resume token still holds it).
    pub take_back: Callback<()>,
}

/// The socket's event handlers, kept alive as long as their socket.
struct Handlers {
    _open: Closure<dyn FnMut(Event)>,
    _message: Closure<dyn FnMut(MessageEvent)>,
    _close: Closure<dyn FnMut(CloseEvent)>,
}

/// The connection behind the hook. Never borrowed across a dispatch: a
/// dispatch may render at once, and rendering may send.
struct Link {
    room: RoomName,
    ws: Option<WebSocket>,
    handlers: Option<Handlers>,
    /// The room answered our `newClient` (board or resume): messages may
    /// go out directly.
    joined: bool,
    /// Reconnect attempts since the room last answered.
    attempt: u32,
    outbox: Outbox,
    /// Sent before the socket dropped, not applied by the room as of our
    /// `resumed`: to send again with their `opId`s once the room answered.
    resend: Vec<(u64, ClientMessage)>,
    retry: Option<Timeout>,
    echo: Option<Interval>,
    /// When the `echo` now in flight left (one at a time; replies come
    /// back in order on one socket).
    echo_sent_at: Option<f64>,
    /// The page left the room, or the room refused us: do not reconnect.
    done: bool,
}

type Shared = Rc<RefCell<Link>>;

impl Link {
    fn open_socket(&self) -> Option<&WebSocket> {
        self.ws
            .as_ref()
            .filter(|ws| ws.ready_state() == WebSocket::OPEN)
    }

    /// Writes one frame, numbered if it is worth sending again after a
    /// resume; false if there is no open socket.
    fn write(&mut self, msg: ClientMessage) -> bool {
        let op_id = self.outbox.op_id_for(&msg);
        if !self.write_numbered(msg.clone(), op_id) {
            return false;
        }
        if let Some(op_id) = op_id {
            self.outbox.sent(op_id, msg);
        }
        true
    }

    fn write_numbered(&self, msg: ClientMessage, op_id: Option<u64>) -> bool {
        let Some(ws) = self.open_socket() else {
            return false;
        };
        // `echo` is not about the room (and works before we are in one).
        let room = (!matches!(msg, ClientMessage::Echo { .. })).then_some(&self.room);
        let mut frame = ClientFrame::new(room, msg);
        if let Some(op_id) = op_id {
            frame = frame.with_op_id(op_id);
        }
        ws.send_with_str(&frame.encode()).is_ok()
    }
}

/// Joins `room` for as long as the calling component is mounted.
#[hook]
pub fn use_room(room: RoomName) -> RoomSocket {
    let state = {
        let room = room.clone();
        use_reducer(move || RoomState::new(room))
    };
    let link: Shared = use_mut_ref({
        let room = room.clone();
        move || Link {
            room,
            ws: None,
            handlers: None,
            joined: false,
            attempt: 0,
            outbox: Outbox::default(),
            resend: Vec::new(),
            retry: None,
            echo: None,
            echo_sent_at: None,
            done: false,
        }
    });

    {
        let state = state.clone();
        let link = link.clone();
        use_effect_with(room, move |_| {
            connect(&link, &state);
            let echo = {
                let link = link.clone();
                Interval::new(ECHO_EVERY_MS, move || send_echo(&link))
            };
            link.borrow_mut().echo = Some(echo);
            move || leave(&link)
        });
    }

    let send = {
        let state = state.clone();
        let link = link.clone();
        use_callback((), move |msg: ClientMessage, _| send(&link, &state, msg))
    };
    let dispatch = {
        let state = state.clone();
        use_callback((), move |action: Action, _| state.dispatch(action))
    };
    let take_back = {
        let state = state.clone();
        let link = link.clone();
        use_callback((), move |(), _| {
            let waiting = {
                let l = link.borrow();
                !l.done && l.ws.is_none()
            };
            if waiting {
                link.borrow_mut().attempt = 0;
                connect(&link, &state);
            }
        })
    };
    RoomSocket {
        state,
        send,
        dispatch,
        take_back,
    }
}

fn connect(link: &Shared, state: &UseReducerHandle<RoomState>) {
    let ws = match WebSocket::new(&web::socket_url()) {
        Ok(ws) => ws,
        Err(_) => return schedule_retry(link, state),
    };
    let on_open = {
        let (link, state) = (link.clone(), state.clone());
        Closure::<dyn FnMut(Event)>::new(move |_| on_open(&link, &state))
    };
    let on_message = {
        let (link, state) = (link.clone(), state.clone());
        Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
            if let Some(text) = e.data().as_string() {
                match read_frame(&text) {
                    Ok(Some(frame)) => on_frame(&link, &state, frame),
                    Ok(None) => web_sys::console::warn_1(
                        &format!("attractio: ignored a forged server frame: {text}").into(),
                    ),
                    Err(err) => web_sys::console::warn_1(
                        &format!("attractio: unreadable frame ({err}): {text}").into(),
                    ),
                }
            }
        })
    };
    let on_close = {
        let (link, state) = (link.clone(), state.clone());
        Closure::<dyn FnMut(CloseEvent)>::new(move |e: CloseEvent| {
            let done = {
                let mut l = link.borrow_mut();
                l.ws = None;
                l.joined = false;
                l.echo_sent_at = None;
                l.done
            };
            if done {
                return;
            }
            if let Some(why) = Refusal::of_close(e.code()) {
                return refuse(&link, &state, why);
            }
            // Reconnecting would take the session back from the tab that
            // just took it, and that tab would take it again.
            if e.code() == close_code::REPLACED {
                state.dispatch(Action::Replaced);
            } else {
                schedule_retry(&link, &state);
            }
        })
    };
    ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
    let mut l = link.borrow_mut();
    if let Some(old) = l.ws.take() {
        forget_socket(&old);
    }
    l.ws = Some(ws);
    l.handlers = Some(Handlers {
        _open: on_open,
        _message: on_message,
        _close: on_close,
    });
}

fn forget_socket(ws: &WebSocket) {
    ws.set_onopen(None);
    ws.set_onmessage(None);
    ws.set_onclose(None);
    let _ = ws.close();
}

fn schedule_retry(link: &Shared, state: &UseReducerHandle<RoomState>) {
    let (attempt, delay) = {
        let mut l = link.borrow_mut();
        l.attempt += 1;
        let delay = reconnect_delay_ms(l.attempt - 1, web::random());
        (l.attempt, delay)
    };
    let timeout = {
        let (link, state) = (link.clone(), state.clone());
        Timeout::new(delay, move || connect(&link, &state))
    };
    link.borrow_mut().retry = Some(timeout);
    state.dispatch(Action::Closed {
        attempt,
        retry_in_ms: delay,
    });
}

/// The socket is open: join (resuming the old session if we had one).
fn on_open(link: &Shared, state: &UseReducerHandle<RoomState>) {
    let join = ClientMessage::NewClient {
        token: crate::web::token(),
        resume_token: state.me.as_ref().and_then(|m| m.resume_token.clone()),
        epoch: state.last_seen.map(|(epoch, _)| epoch),
        last_seq: state.last_seen.map(|(_, seq)| seq),
    };
    link.borrow_mut().write(join);
    state.dispatch(Action::Opened);
    send_echo(link);
}

/// How the outbox goes out once the room answers our `newClient`.
enum Rejoin {
    /// A fresh board replaced ours: re-apply the queued changes on top of
    /// it, then send them.
    Replay,
    /// The server replayed what we missed and our state is intact: send.
    SendOnly,
    /// The server has no board but we do (it lost it): send our board,
    /// which already holds the queued changes.
    RestoreBoard,
}

fn on_frame(link: &Shared, state: &UseReducerHandle<RoomState>, frame: ServerFrame) {
    let rejoin = match &frame.message {
        ServerMessage::Echo { .. } => {
            let sent = link.borrow_mut().echo_sent_at.take();
            if let Some(sent) = sent {
                state.dispatch(Action::Rtt((web::now_ms() - sent).max(0.0)));
            }
            return;
        }
        ServerMessage::RequestCurrentState => {
            let reply = if state.board.is_empty() {
                ClientMessage::EmptyRoom
            } else {
                ClientMessage::StateUpdate {
                    data: state.board.clone(),
                }
            };
            link.borrow_mut().write(reply);
            None
        }
        ServerMessage::Hydrate { .. } => Some(Rejoin::Replay),
        ServerMessage::NewRoom if !state.board.is_empty() => Some(Rejoin::RestoreBoard),
        ServerMessage::NewRoom => Some(Rejoin::Replay),
        ServerMessage::Resumed { data } => {
            let mut l = link.borrow_mut();
            l.resend = l.outbox.resumed(data.recovered, data.last_op);
            data.recovered.then_some(Rejoin::SendOnly)
        }
        ServerMessage::RoomFull { .. } => {
            link.borrow_mut().attempt = 0;
            None
        }
        // Before the room answered, an `error` is about our `newClient`.
        ServerMessage::Error { data } if !link.borrow().joined => {
            if let Some(why) = Refusal::of_join_error(data.code) {
                return refuse(link, state, why);
            }
            None
        }
        _ => None,
    };
    state.dispatch(Action::Received(frame));
    let Some(rejoin) = rejoin else { return };

    let (resend, queued) = {
        let mut l = link.borrow_mut();
        if l.joined && !matches!(rejoin, Rejoin::RestoreBoard) {
            // A later hydrate in the same session: nothing is queued.
            return;
        }
        l.joined = true;
        // Only a socket that got as far as the room counts as a success: a
        // server that accepts and drops at once still meets the backoff.
        l.attempt = 0;
        let mut resend = std::mem::take(&mut l.resend);
        if matches!(rejoin, Rejoin::RestoreBoard) {
            l.outbox.drop_board_changes();
            resend.retain(|(_, m)| matches!(m, ClientMessage::TalkToRoom { .. }));
            l.write(ClientMessage::StateUpdate {
                data: state.board.clone(),
            });
        }
        (resend, l.outbox.drain())
    };
    // What may have been lost with the old socket goes first, numbered as
    // before: the room drops what it had applied after all.
    for (op_id, msg) in resend {
        if matches!(rejoin, Rejoin::Replay) && changes_board(&msg) {
            state.dispatch(Action::Sent(msg.clone()));
        }
        if !link.borrow().write_numbered(msg.clone(), Some(op_id)) {
            // The socket went again: the next resume sends it.
            break;
        }
    }
    for msg in queued {
        if matches!(rejoin, Rejoin::Replay) && changes_board(&msg) {
            state.dispatch(Action::Sent(msg.clone()));
        }
        let sent = link.borrow_mut().write(msg.clone());
        if !sent {
            link.borrow_mut().outbox.push(msg);
        }
    }
    let left = link.borrow().outbox.len();
    state.dispatch(Action::Queued(left));
}

/// Board changes go again onto a fresh board; chat lines are already in
/// our log.
fn changes_board(msg: &ClientMessage) -> bool {
    msg.board_op().is_some()
        || matches!(
            msg,
            ClientMessage::Freeze { .. } | ClientMessage::Unfreeze { .. }
        )
}

fn send(link: &Shared, state: &UseReducerHandle<RoomState>, msg: ClientMessage) {
    state.dispatch(Action::Sent(msg.clone()));
    let queued = {
        let mut l = link.borrow_mut();
        if l.joined && l.write(msg.clone()) {
            return;
        }
        l.outbox.push(msg);
        l.outbox.len()
    };
    state.dispatch(Action::Queued(queued));
}

/// The room will not have us: stop for good (no retry, no take back) and
/// say why. The socket's handlers stay alive with the link: this may run
/// inside one of them.
fn refuse(link: &Shared, state: &UseReducerHandle<RoomState>, why: Refusal) {
    {
        let mut l = link.borrow_mut();
        l.done = true;
        l.retry = None;
        if let Some(ws) = l.ws.take() {
            forget_socket(&ws);
        }
    }
    state.dispatch(Action::Refused(why));
}

/// Sends an `echo` to time the round trip. Its `data` is empty on purpose:
/// an `echo` carrying data counts as activity (`ClientMessage::promotes`)
/// and would reorder the presence list every few seconds. The send time is
/// kept here instead.
fn send_echo(link: &Shared) {
    let now = web::now_ms();
    let mut l = link.borrow_mut();
    // One in flight; a reply lost with its socket does not block forever.
    if l.echo_sent_at.is_some_and(|t| now - t < ECHO_GIVE_UP_MS) {
        return;
    }
    let sent = l.write(ClientMessage::Echo { data: Value::Null });
    l.echo_sent_at = sent.then_some(now);
}

/// The page leaves the room: close the socket for good.
fn leave(link: &Shared) {
    let mut l = link.borrow_mut();
    l.done = true;
    l.retry = None;
    l.echo = None;
    if let Some(ws) = l.ws.take() {
        forget_socket(&ws);
    }
    l.handlers = None;
}
