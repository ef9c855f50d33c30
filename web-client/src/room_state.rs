//! The state of one room's page and the reducer that changes it.
//!
//! Actions mirror the protocol: [`Action::Received`] is a frame from the
//! server, [`Action::Sent`] is a message this client sent (or queued). The
//! server relays a member's changes only to the *others*, so the sender
//! applies its own through `Sent`. Stored board changes go through the
//! protocol crate's [`Board::apply`], the same rules the server runs, so the
//! copies agree. The rest are local facts: the socket opened or closed, a
//! round trip was measured, the pointer moved a word.

use std::borrow::Cow;
use std::collections::BTreeMap;

use protocol::board::BoardOp;
use protocol::{
    Board, ClientMessage, ErrorCode, Member, PresenceEntry, RoomName, ServerFrame, ServerMessage,
    WordId,
};
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::Value;

/// Chat lines kept on the page; older ones scroll away.
pub const CHAT_HISTORY: usize = 200;
/// News kept for the screen reader's live region; it reads only the
/// latest few anyway.
pub const NEWS_KEPT: usize = 16;

/// The socket's state, as the status line shows it.
#[derive(Clone, Debug, PartialEq)]
pub enum Connection {
    /// First connect of this page, not open yet.
    Connecting,
    Open,
    /// The socket dropped; attempt `attempt` is due in `retry_in_ms`.
    Reconnecting {
        attempt: u32,
        retry_in_ms: u32,
    },
    /// Another tab or device took this session over with its resume token
    /// (close code `protocol::close_code::REPLACED`). The page waits for
    /// the user: reconnecting by itself would take the session back, and
    /// two tabs would take it from each other in turn.
    Replaced,
    /// The room will not have us ([`Refusal`]): the page stops trying.
    Refused(Refusal),
}

/// Who this client is in the room (from `hello` or `resumed`).
#[derive(Clone, Debug, PartialEq)]
pub struct Me {
    pub member: Member,
    pub resume_token: Option<String>,
}

/// Someone else holding a word (their `freeze`).
#[derive(Clone, Debug, PartialEq)]
pub struct Holder {
    pub name: String,
    /// Already checked by [`css_color`].
    pub color: String,
}

/// One line in the chat log.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatLine {
    /// `None` for the server's own lines (welcome, goodbye).
    pub from: Option<Member>,
    pub text: String,
    pub mine: bool,
    pub private: bool,
}

/// What the page shows about its room.
#[derive(Clone, Debug, PartialEq)]
pub struct RoomState {
    pub room: RoomName,
    pub connection: Connection,
    pub me: Option<Me>,
    pub board: Board,
    /// `hydrate`, `newRoom` or a board of our own has arrived: until then
    /// the fridge says it is loading.
    pub board_loaded: bool,
    /// Words other members hold, with who holds them.
    pub holders: BTreeMap<WordId, Holder>,
    /// Words being dragged right now (by anyone) and how far they are from
    /// their stored position: `moving` deltas are relative to the position
    /// where the drag started, which is the stored one.
    pub offsets: BTreeMap<WordId, (f64, f64)>,
    /// The word this client holds (dragging or editing it).
    pub my_hold: Option<WordId>,
    /// Most recently active first, as the server orders it.
    pub presence: Vec<PresenceEntry>,
    pub chat: Vec<ChatLine>,
    /// `roomFull`'s suggestions, already turned into safe paths.
    pub room_full: Option<Vec<String>>,
    /// The room has no board: the words dialog is open.
    pub asking_for_words: bool,
    pub rtt_ms: Option<f64>,
    /// `(epoch, seq)` of the last room frame seen, for resuming.
    pub last_seen: Option<(u64, u64)>,
    /// Messages waiting for the room to come back.
    pub queued: usize,
    /// The last problem worth telling the user about.
    pub notice: Option<String>,
    /// What changed that a person who cannot see the board should hear
    /// (someone moved, added or removed a word, joined or left), newest
    /// last, each with a number that only grows: the announcer reads the
    /// ones it has not read yet.
    pub news: Vec<(u64, String)>,
}

/// Everything that changes a [`RoomState`].
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    Opened,
    Closed {
        attempt: u32,
        retry_in_ms: u32,
    },
    /// The server closed the socket because a newer connection took the
    /// session over.
    Replaced,
    /// The room will not have us; the socket stopped trying.
    Refused(Refusal),
    Received(ServerFrame),
    Sent(ClientMessage),
    /// This client's pointer dragged its held word `(dx, dy)` from where
    /// the drag started (shown at once; `moving` goes out throttled).
    Dragged {
        id: WordId,
        dx: f64,
        dy: f64,
    },
    /// This client gave up a drag it never announced (nothing to send).
    DragCancelled(WordId),
    Rtt(f64),
    Queued(usize),
    OpenWordsDialog,
    CloseWordsDialog,
    DismissNotice,
    /// Something this page did that its screen reader should say.
    Announce(String),
}

impl RoomState {
    pub fn new(room: RoomName) -> RoomState {
        RoomState {
            room,
            connection: Connection::Connecting,
            me: None,
            board: Board::default(),
            board_loaded: false,
            holders: BTreeMap::new(),
            offsets: BTreeMap::new(),
            my_hold: None,
            presence: Vec::new(),
            chat: Vec::new(),
            room_full: None,
            asking_for_words: false,
            rtt_ms: None,
            last_seen: None,
            queued: 0,
            notice: None,
            news: Vec::new(),
        }
    }

    /// Whether this member can pick up `id` (nobody else holds it).
    pub fn can_grab(&self, id: &WordId) -> bool {
        self.board.get(id).is_some() && !self.holders.contains_key(id)
    }

    /// Where a word is drawn: stored position plus any drag in progress.
    pub fn drawn_position(&self, id: &WordId) -> Option<(f64, f64)> {
        let w = self.board.get(id)?;
        let (dx, dy) = self.offsets.get(id).copied().unwrap_or((0.0, 0.0));
        Some((w.x + dx, w.y + dy))
    }

    pub fn is_me(&self, member: &Member) -> bool {
        self.me.as_ref().is_some_and(|me| me.member.id == member.id)
    }

    pub fn apply(&mut self, action: Action) {
        match action {
            Action::Opened => {
                if matches!(self.connection, Connection::Reconnecting { .. }) {
                    self.announce("Connected again.".into());
                }
                self.connection = Connection::Open;
            }
            Action::Closed {
                attempt,
                retry_in_ms,
            } => {
                if self.connection == Connection::Open {
                    self.announce("Connection lost; reconnecting.".into());
                }
                self.connection = Connection::Reconnecting {
                    attempt,
                    retry_in_ms,
                };
                self.offline();
            }
            Action::Replaced => {
                self.announce("This room continued in another tab or window.".into());
                self.connection = Connection::Replaced;
                self.offline();
            }
            Action::Refused(why) => {
                self.announce(why.message().to_owned());
                self.notice = Some(why.message().to_owned());
                self.connection = Connection::Refused(why);
                self.offline();
            }
            Action::Received(frame) => self.receive(frame),
            Action::Sent(msg) => self.sent(msg),
            Action::Dragged { id, dx, dy } => {
                if self.my_hold.as_ref() == Some(&id) {
                    self.offsets.insert(id, (dx, dy));
                }
            }
            Action::DragCancelled(id) => {
                self.offsets.remove(&id);
            }
            Action::Rtt(ms) => self.rtt_ms = Some(ms),
            Action::Queued(n) => self.queued = n,
            Action::OpenWordsDialog => self.asking_for_words = true,
            Action::CloseWordsDialog => self.asking_for_words = false,
            Action::DismissNotice => self.notice = None,
            Action::Announce(text) => self.announce(text),
        }
    }

    /// The socket is gone. Locks die with the connection; the fresh board
    /// says who holds what once we are back.
    fn offline(&mut self) {
        self.rtt_ms = None;
        self.holders.clear();
        self.offsets
            .retain(|id, _| self.my_hold.as_ref() == Some(id));
    }

    fn sent(&mut self, msg: ClientMessage) {
        match msg {
            ClientMessage::TalkToRoom { data } => {
                let from = self.me.as_ref().map(|m| m.member.clone());
                self.chat_line(ChatLine {
                    from,
                    text: chat_text(&data),
                    mine: true,
                    private: false,
                });
            }
            ClientMessage::StateUpdate { data } => {
                self.replace_board(data);
                self.asking_for_words = false;
            }
            ClientMessage::Freeze { element_id } => self.my_hold = Some(element_id),
            ClientMessage::Unfreeze { element_id } => {
                if self.my_hold.as_ref() == Some(&element_id) {
                    self.my_hold = None;
                }
                self.offsets.remove(&element_id);
            }
            ClientMessage::Moving { element_id, dx, dy } => {
                self.apply(Action::Dragged {
                    id: element_id,
                    dx,
                    dy,
                });
            }
            ClientMessage::Delete { ref element_id } => {
                let id = element_id.clone();
                self.forget(&id);
                if self.my_hold.as_ref() == Some(&id) {
                    self.my_hold = None;
                }
                if let Some(op) = msg.board_op() {
                    self.stored(op);
                }
            }
            other => {
                if let ClientMessage::MoveEnd { element_id, .. } = &other {
                    self.offsets.remove(element_id);
                }
                if let Some(op) = other.board_op() {
                    self.stored(op);
                }
            }
        }
    }

    /// Applies a stored change with the protocol's rules. A change the
    /// rules refuse changes nothing, exactly as on the server.
    pub(super) fn stored(&mut self, op: BoardOp) {
        let _ = self.board.apply(op);
        self.board_loaded = true;
    }

    pub(super) fn replace_board(&mut self, board: Board) {
        self.board = board;
        self.board_loaded = true;
        let board = &self.board;
        self.holders.retain(|id, _| board.get(id).is_some());
        self.offsets.retain(|id, _| board.get(id).is_some());
        if self
            .my_hold
            .as_ref()
            .is_some_and(|id| board.get(id).is_none())
        {
            self.my_hold = None;
        }
    }

    pub(super) fn forget(&mut self, id: &WordId) {
        self.holders.remove(id);
        self.offsets.remove(id);
    }

    /// Adds one piece of news for the live region.
    pub(super) fn announce(&mut self, text: String) {
        let next = self.news.last().map_or(1, |(n, _)| n + 1);
        self.news.push((next, text));
        if self.news.len() > NEWS_KEPT {
            self.news.remove(0);
        }
    }

    /// The text of word `id`, for news about it.
    pub(super) fn word_text(&self, id: &WordId) -> String {
        self.board
            .get(id)
            .map_or_else(|| "a word".to_owned(), |w| format!("“{}”", w.text))
    }

    /// A member's name as the presence list knows it.
    pub(super) fn member_name(&self, id: protocol::ClientId) -> Option<String> {
        self.presence
            .iter()
            .find(|p| p.member.id == id)
            .map(|p| p.member.name.clone())
    }

    pub(super) fn chat_line(&mut self, line: ChatLine) {
        self.chat.push(line);
        if self.chat.len() > CHAT_HISTORY {
            let extra = self.chat.len() - CHAT_HISTORY;
            self.chat.drain(..extra);
        }
    }
}

/// Reads a frame off the wire: `Ok(None)` for one to ignore, an action
/// only the server sends ([`ServerMessage::SERVER_ONLY`]) that carries
/// `from`. Only relays of what a member sent carry `from`, so such a frame
/// is a member's forgery (a `resumed` taking over our identity, a `hydrate`
/// wiping the board) relayed by a server that let it through; attractio
/// itself refuses them (`reserved_action`).
pub fn read_frame(text: &str) -> Result<Option<ServerFrame>, serde_json::Error> {
    #[derive(Deserialize)]
    struct Head<'a> {
        #[serde(borrow)]
        action: Cow<'a, str>,
        #[serde(default)]
        from: Option<IgnoredAny>,
    }
    let frame = ServerFrame::decode(text)?;
    let head: Head = serde_json::from_str(text)?;
    if head.from.is_some() && ServerMessage::is_server_only(&head.action) {
        return Ok(None);
    }
    Ok(Some(frame))
}

/// A chat `data` as text: strings as they are, anything else as JSON.
pub(super) fn chat_text(data: &Value) -> String {
    match data {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A colour from the network, safe to put in a `style` attribute: `#rgb`
/// or `#rrggbb`, otherwise a neutral grey.
pub fn css_color(color: &str) -> String {
    let hex = color.strip_prefix('#').unwrap_or("");
    if matches!(hex.len(), 3 | 6) && hex.chars().all(|c| c.is_ascii_hexdigit()) {
        color.to_owned()
    } else {
        "#888888".to_owned()
    }
}

pub(super) fn safe_member(mut m: Member) -> Member {
    m.color = css_color(&m.color);
    m
}

/// What to tell the user when the server refuses something.
pub(super) fn error_notice(code: ErrorCode) -> String {
    match code {
        ErrorCode::WordLocked => "Someone else is holding that word.".into(),
        ErrorCode::RateLimited => "Slow down a little — some changes were dropped.".into(),
        ErrorCode::BoardTooLarge => "That is more than a fridge can hold.".into(),
        ErrorCode::UnknownWord => "That word is no longer on the fridge.".into(),
        ErrorCode::DuplicateWord => "That word is already on the fridge.".into(),
        ErrorCode::Unavailable => "The server is busy; trying again shortly.".into(),
        // This page cannot refresh its token: the room lets go of it soon.
        ErrorCode::TokenExpired => "This link's access token is expiring.".into(),
        other => format!("The server refused a message ({}).", other.as_str()),
    }
}

mod receive;
mod refusal;
pub use refusal::Refusal;
#[cfg(test)]
mod tests;
