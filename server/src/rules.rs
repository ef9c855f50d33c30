//! The room's rules as pure functions: given the board, the locks and who
//! is asking, decide what a message does. No I/O, no channels; the room
//! actor applies the outcome. Unit-tested on their own.

use std::collections::HashMap;

use protocol::board::BoardOp;
use protocol::limits::BoardLimits;
use protocol::{
    Board, BoardError, ClientId, ClientMessage, ErrorBody, ErrorCode, Member, RoomName,
    ServerMessage, WordId,
};
use serde_json::Value;

/// What one room allows, so that what an operation costs does not grow
/// with what its members put there (`--max-board-words`,
/// `--max-word-text`, `--max-board-bytes`, `--max-locks-per-member`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoomLimits {
    pub board: BoardLimits,
    /// Words one member may hold frozen at once.
    pub locks_per_member: usize,
}

impl Default for RoomLimits {
    fn default() -> RoomLimits {
        RoomLimits {
            board: BoardLimits::default(),
            locks_per_member: 4,
        }
    }
}

/// Who holds which word (`freeze`), looked up by word and by holder: a
/// lock is found, taken or released without a look at anyone else's.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Locks {
    holders: HashMap<WordId, ClientId>,
    /// The words each member holds (a few: `RoomLimits::locks_per_member`).
    held: HashMap<ClientId, Vec<WordId>>,
}

impl Locks {
    pub fn new() -> Locks {
        Locks::default()
    }

    pub fn holder(&self, word: &WordId) -> Option<ClientId> {
        self.holders.get(word).copied()
    }

    /// How many words `member` holds.
    pub fn count(&self, member: ClientId) -> usize {
        self.held.get(&member).map_or(0, Vec::len)
    }

    /// `member` holds `word` (taken from whoever held it).
    pub fn take(&mut self, word: WordId, member: ClientId) {
        if let Some(old) = self.holders.insert(word.clone(), member) {
            self.forget(old, &word);
        }
        self.held.entry(member).or_default().push(word);
    }

    /// Frees `word`, saying who held it.
    pub fn release(&mut self, word: &WordId) -> Option<ClientId> {
        let holder = self.holders.remove(word)?;
        self.forget(holder, word);
        Some(holder)
    }

    /// Frees everything `member` holds; returns the words, sorted.
    pub fn release_all(&mut self, member: ClientId) -> Vec<WordId> {
        let mut words = self.held.remove(&member).unwrap_or_default();
        for word in &words {
            self.holders.remove(word);
        }
        words.sort();
        words
    }

    /// Keeps only the locks on words `keep` accepts.
    pub fn retain(&mut self, keep: impl Fn(&WordId) -> bool) {
        let gone: Vec<WordId> = self.holders.keys().filter(|w| !keep(w)).cloned().collect();
        for word in gone {
            self.release(&word);
        }
    }

    /// Every lock, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&WordId, &ClientId)> {
        self.holders.iter()
    }

    fn forget(&mut self, holder: ClientId, word: &WordId) {
        if let Some(words) = self.held.get_mut(&holder) {
            words.retain(|w| w != word);
            if words.is_empty() {
                self.held.remove(&holder);
            }
        }
    }
}

impl FromIterator<(WordId, ClientId)> for Locks {
    fn from_iter<I: IntoIterator<Item = (WordId, ClientId)>>(iter: I) -> Locks {
        let mut locks = Locks::new();
        for (word, holder) in iter {
            locks.take(word, holder);
        }
        locks
    }
}

/// What a message does to the room.
#[derive(Debug, PartialEq)]
pub struct Outcome {
    /// A checked change to apply to the board (makes the room dirty).
    pub op: Option<BoardOp>,
    pub lock: Option<LockChange>,
    pub delivery: Delivery,
}

#[derive(Debug, PartialEq)]
pub enum LockChange {
    Take(WordId),
    Release(WordId),
}

#[derive(Debug, PartialEq)]
pub enum Delivery {
    /// To every other member, stamped with a sequence number.
    Room(ServerMessage),
    /// To every other member, but droppable for a lagging client and never
    /// kept in history (`moving`).
    Volatile(ServerMessage),
    /// To one member only.
    To(ClientId, ServerMessage),
}

fn error(code: ErrorCode, message: impl Into<String>) -> ErrorBody {
    ErrorBody::new(code, message)
}

fn board_error(e: BoardError) -> ErrorBody {
    let code = match e {
        BoardError::UnknownWord(_) => ErrorCode::UnknownWord,
        BoardError::DuplicateWord(_) => ErrorCode::DuplicateWord,
        BoardError::TooManyWords(_) | BoardError::TooManyBytes(_) | BoardError::TextTooLong(_) => {
            ErrorCode::BoardTooLarge
        }
        BoardError::EmptyText | BoardError::BadCoordinate => ErrorCode::InvalidMessage,
    };
    error(code, e.to_string())
}

/// The word must be on the board and not held by someone else.
fn check_word(
    board: &Board,
    locks: &Locks,
    sender: ClientId,
    id: &WordId,
) -> Result<(), ErrorBody> {
    if board.get(id).is_none() {
        return Err(board_error(BoardError::UnknownWord(id.clone())));
    }
    match locks.holder(id) {
        Some(holder) if holder != sender => Err(error(
            ErrorCode::WordLocked,
            format!("word {id} is held by client {holder}"),
        )),
        _ => Ok(()),
    }
}

/// Decides a room message. `is_member` tells whether a client id is in the
/// room (for private messages). Join, echo and the state-request answers
/// are not decided here: the connection and the room handle those.
pub fn decide(
    limits: &RoomLimits,
    board: &Board,
    locks: &Locks,
    sender: &Member,
    message: ClientMessage,
    is_member: impl Fn(ClientId) -> bool,
) -> Result<Outcome, ErrorBody> {
    let from = sender.clone();
    let me = sender.id;
    let plain = |delivery| Outcome {
        op: None,
        lock: None,
        delivery,
    };
    let stored = |op: BoardOp, message| -> Result<Outcome, ErrorBody> {
        board
            .check_within(&op, &limits.board)
            .map_err(board_error)?;
        Ok(Outcome {
            op: Some(op),
            lock: None,
            delivery: Delivery::Room(message),
        })
    };
    match message {
        ClientMessage::TalkToRoom { data } => {
            Ok(plain(Delivery::Room(ServerMessage::TalkToRoom {
                data,
                from: Some(from),
            })))
        }
        ClientMessage::PrivateMessage { to, data } => {
            if !is_member(to) || to == me {
                return Err(error(
                    ErrorCode::UnknownClient,
                    format!("client {to} is not another member of this room"),
                ));
            }
            Ok(plain(Delivery::To(
                to,
                ServerMessage::PrivateMessage { data, from },
            )))
        }
        ClientMessage::Custom(mut custom) => {
            // The server's fields win over anything the client wrote.
            for key in ["from", "seq", "epoch", "room"] {
                custom.fields.remove(key);
            }
            let from = serde_json::to_value(&from).unwrap_or(Value::Null);
            custom.fields.insert("from".into(), from);
            if custom.is_volatile() {
                return Ok(plain(Delivery::Volatile(ServerMessage::Custom(custom))));
            }
            Ok(plain(Delivery::Room(ServerMessage::Custom(custom))))
        }
        ClientMessage::StateUpdate { data } => stored(
            BoardOp::Replace(data.clone()),
            ServerMessage::Rehydrate {
                data,
                from: Some(from),
            },
        ),
        ClientMessage::NewWord { data } => stored(
            BoardOp::Add(data.clone()),
            ServerMessage::NewWord { data, from },
        ),
        ClientMessage::MoveEnd {
            element_id,
            final_x,
            final_y,
        } => {
            check_word(board, locks, me, &element_id)?;
            stored(
                BoardOp::Move {
                    id: element_id.clone(),
                    x: final_x,
                    y: final_y,
                },
                ServerMessage::MoveEnd {
                    element_id,
                    final_x,
                    final_y,
                    from,
                },
            )
        }
        ClientMessage::Delete { element_id } => {
            check_word(board, locks, me, &element_id)?;
            stored(
                BoardOp::Delete(element_id.clone()),
                ServerMessage::Delete { element_id, from },
            )
        }
        ClientMessage::Modify { element_id, update } => {
            check_word(board, locks, me, &element_id)?;
            stored(
                BoardOp::Modify {
                    id: element_id.clone(),
                    text: update.text.clone(),
                },
                ServerMessage::Modify {
                    element_id,
                    update,
                    from,
                },
            )
        }
        ClientMessage::Moving { element_id, dx, dy } => {
            check_word(board, locks, me, &element_id)?;
            if !(dx.is_finite() && dy.is_finite()) {
                return Err(board_error(BoardError::BadCoordinate));
            }
            Ok(plain(Delivery::Volatile(ServerMessage::Moving {
                element_id,
                dx,
                dy,
                from,
            })))
        }
        ClientMessage::Freeze { element_id } => {
            check_word(board, locks, me, &element_id)?;
            let held = locks.count(me);
            if locks.holder(&element_id) != Some(me) && held >= limits.locks_per_member {
                return Err(error(
                    ErrorCode::TooManyLocks,
                    format!(
                        "you hold {held} words (at most {}): unfreeze one first",
                        limits.locks_per_member
                    ),
                ));
            }
            Ok(Outcome {
                op: None,
                lock: Some(LockChange::Take(element_id.clone())),
                delivery: Delivery::Room(ServerMessage::Freeze {
                    element_id,
                    client_name: from.name.clone(),
                    color: from.color.clone(),
                    from,
                }),
            })
        }
        ClientMessage::Unfreeze { element_id } => {
            if let Some(holder) = locks.holder(&element_id).filter(|h| *h != me) {
                return Err(error(
                    ErrorCode::WordLocked,
                    format!("word {element_id} is held by client {holder}"),
                ));
            }
            Ok(Outcome {
                op: None,
                lock: Some(LockChange::Release(element_id.clone())),
                delivery: Delivery::Room(ServerMessage::Unfreeze { element_id, from }),
            })
        }
        ClientMessage::NewClient { .. }
        | ClientMessage::RefreshToken { .. }
        | ClientMessage::Echo { .. }
        | ClientMessage::EmptyRoom => Err(error(
            ErrorCode::InvalidMessage,
            "not a room message (handled elsewhere)",
        )),
    }
}

/// Room paths to suggest when `room` is full: `/room-2`, `/room-3`, … the
/// first three that `is_taken` says have no seat taken (present or held for
/// a resume), so a joiner can enter them. `room` is cut short where needed
/// so every suggestion is a valid room name itself (at most
/// [`protocol::limits::MAX_ROOM_NAME`] characters). Ends: only finitely
/// many rooms are taken.
pub fn suggestions(room: &RoomName, is_taken: impl Fn(&RoomName) -> bool) -> Vec<String> {
    let room = room.as_str();
    (2u64..)
        .filter_map(|n| {
            let suffix = format!("-{n}");
            // Room names are ASCII, so any byte index is a char boundary.
            let base = &room[..room
                .len()
                .min(protocol::limits::MAX_ROOM_NAME - suffix.len())];
            RoomName::new(&format!("{base}{suffix}")).ok()
        })
        .filter(|name| !is_taken(name))
        .take(3)
        .map(|name| format!("/{name}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::Word;

    fn member(id: u64) -> Member {
        Member {
            id: ClientId(id),
            name: format!("m{id}"),
            color: "#000000".into(),
        }
    }

    fn wid(s: &str) -> WordId {
        WordId::new(s).unwrap()
    }

    fn board() -> Board {
        Board::new(vec![Word {
            id: wid("w1"),
            text: "moon".into(),
            x: 0.0,
            y: 0.0,
            z: 0,
        }])
        .unwrap()
    }

    fn run(locks: &Locks, who: u64, m: ClientMessage) -> Result<Outcome, ErrorBody> {
        decide(
            &RoomLimits::default(),
            &board(),
            locks,
            &member(who),
            m,
            |id| id.0 < 10,
        )
    }

    #[test]
    fn a_held_word_refuses_everyone_else() {
        let mut locks = Locks::new();
        locks.take(wid("w1"), ClientId(1));
        for m in [
            ClientMessage::MoveEnd {
                element_id: wid("w1"),
                final_x: 1.0,
                final_y: 1.0,
            },
            ClientMessage::Delete {
                element_id: wid("w1"),
            },
            ClientMessage::Freeze {
                element_id: wid("w1"),
            },
            ClientMessage::Unfreeze {
                element_id: wid("w1"),
            },
            ClientMessage::Moving {
                element_id: wid("w1"),
                dx: 1.0,
                dy: 1.0,
            },
        ] {
            assert_eq!(
                run(&locks, 2, m.clone()).unwrap_err().code,
                ErrorCode::WordLocked,
                "{m:?}"
            );
            assert!(run(&locks, 1, m).is_ok());
        }
    }

    #[test]
    fn a_member_holds_at_most_its_bound_of_words() {
        let limits = RoomLimits {
            locks_per_member: 1,
            ..RoomLimits::default()
        };
        let two = Board::new(vec![
            Word {
                id: wid("w1"),
                text: "moon".into(),
                x: 0.0,
                y: 0.0,
                z: 0,
            },
            Word {
                id: wid("w2"),
                text: "sun".into(),
                x: 0.0,
                y: 0.0,
                z: 0,
            },
        ])
        .unwrap();
        let mut locks = Locks::new();
        locks.take(wid("w1"), ClientId(1));
        let freeze = |w: &str| ClientMessage::Freeze { element_id: wid(w) };
        let decide =
            |locks: &Locks, who, m| decide(&limits, &two, locks, &member(who), m, |_| true);
        assert_eq!(
            decide(&locks, 1, freeze("w2")).unwrap_err().code,
            ErrorCode::TooManyLocks
        );
        assert!(
            decide(&locks, 1, freeze("w1")).is_ok(),
            "its own word again"
        );
        assert!(
            decide(&locks, 2, freeze("w2")).is_ok(),
            "others hold their own"
        );
    }

    #[test]
    fn locks_are_found_by_word_and_by_holder() {
        let mut locks = Locks::new();
        locks.take(wid("b"), ClientId(1));
        locks.take(wid("a"), ClientId(1));
        locks.take(wid("c"), ClientId(2));
        assert_eq!(locks.count(ClientId(1)), 2);
        // Taken over: counted for the new holder only.
        locks.take(wid("c"), ClientId(1));
        assert_eq!((locks.count(ClientId(1)), locks.count(ClientId(2))), (3, 0));
        assert_eq!(locks.release(&wid("b")), Some(ClientId(1)));
        assert_eq!(locks.release_all(ClientId(1)), vec![wid("a"), wid("c")]);
        assert_eq!(locks.holder(&wid("a")), None);
        assert_eq!(locks.iter().count(), 0);
    }

    #[test]
    fn atoms_on_unknown_words_are_refused() {
        let err = run(
            &Locks::new(),
            1,
            ClientMessage::Modify {
                element_id: wid("nope"),
                update: protocol::WordUpdate { text: "x".into() },
            },
        )
        .unwrap_err();
        assert_eq!(err.code, ErrorCode::UnknownWord);
    }

    #[test]
    fn freeze_is_stamped_with_the_holder() {
        let out = run(
            &Locks::new(),
            3,
            ClientMessage::Freeze {
                element_id: wid("w1"),
            },
        )
        .unwrap();
        assert_eq!(out.lock, Some(LockChange::Take(wid("w1"))));
        match out.delivery {
            Delivery::Room(ServerMessage::Freeze { client_name, .. }) => {
                assert_eq!(client_name, "m3")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn moving_is_volatile_and_changes_nothing_stored() {
        let out = run(
            &Locks::new(),
            1,
            ClientMessage::Moving {
                element_id: wid("w1"),
                dx: 1.0,
                dy: 2.0,
            },
        )
        .unwrap();
        assert!(out.op.is_none());
        assert!(matches!(out.delivery, Delivery::Volatile(_)));
    }

    #[test]
    fn a_custom_action_marked_volatile_is_relayed_like_moving() {
        let decide_custom = |text| {
            let frame = protocol::ClientFrame::decode(text).unwrap();
            run(&Locks::new(), 1, frame.message).unwrap()
        };
        let typing = decide_custom(r#"{"action":"typing","volatile":true,"data":1}"#);
        assert!(typing.op.is_none());
        assert!(matches!(
            typing.delivery,
            Delivery::Volatile(ServerMessage::Custom(_))
        ));
        for kept in [
            r#"{"action":"typing","data":1}"#,
            r#"{"action":"typing","volatile":"yes","data":1}"#,
        ] {
            assert!(matches!(decide_custom(kept).delivery, Delivery::Room(_)));
        }
    }

    #[test]
    fn custom_messages_cannot_fake_from() {
        let frame =
            protocol::ClientFrame::decode(r#"{"action":"spin","from":{"id":99},"seq":5,"data":1}"#)
                .unwrap();
        let out = run(&Locks::new(), 1, frame.message).unwrap();
        let Delivery::Room(ServerMessage::Custom(c)) = out.delivery else {
            panic!()
        };
        assert_eq!(c.fields["from"]["id"], 1);
        assert!(!c.fields.contains_key("seq"));
    }

    #[test]
    fn private_messages_need_another_member() {
        let pm = |to| ClientMessage::PrivateMessage {
            to: ClientId(to),
            data: Value::Null,
        };
        assert_eq!(
            run(&Locks::new(), 1, pm(50)).unwrap_err().code,
            ErrorCode::UnknownClient
        );
        assert_eq!(
            run(&Locks::new(), 1, pm(1)).unwrap_err().code,
            ErrorCode::UnknownClient
        );
        assert!(matches!(
            run(&Locks::new(), 1, pm(2)).unwrap().delivery,
            Delivery::To(ClientId(2), _)
        ));
    }

    fn room(name: &str) -> RoomName {
        RoomName::new(name).unwrap()
    }

    #[test]
    fn suggestions_skip_rooms_with_a_seat_taken() {
        let s = suggestions(&room("fridge"), |r| r.as_str() == "fridge-2");
        assert_eq!(s, vec!["/fridge-3", "/fridge-4", "/fridge-5"]);
    }

    #[test]
    fn suggestions_for_the_longest_name_are_valid_names() {
        let long = "a".repeat(protocol::limits::MAX_ROOM_NAME);
        // Taken up to -12, so two-digit suffixes are needed too.
        let s = suggestions(&room(&long), |r| {
            r.as_str()
                .rsplit('-')
                .next()
                .and_then(|n| n.parse::<u32>().ok())
                .is_some_and(|n| n <= 12)
        });
        assert_eq!(s.len(), 3);
        for path in &s {
            let name = path.strip_prefix('/').unwrap();
            assert_eq!(name.len(), protocol::limits::MAX_ROOM_NAME, "{path}");
            assert_eq!(RoomName::new(name).unwrap().as_str(), name);
        }
        assert!(s[0].ends_with("a-13"), "{s:?}");
    }
}
