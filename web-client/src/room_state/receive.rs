//! Applying what the server says to a [`RoomState`]: relays of what the
//! other members did, and the server's own news (who we are, who is here,
//! the board, refusals).

use protocol::board::BoardOp;
use protocol::{ErrorCode, Member, ServerFrame, ServerMessage};

use super::{chat_text, css_color, error_notice, safe_member, ChatLine, Holder, Me, RoomState};
use crate::route::suggested_href;

impl RoomState {
    pub(super) fn receive(&mut self, frame: ServerFrame) {
        if let (Some(epoch), Some(seq)) = (frame.epoch, frame.seq) {
            self.last_seen = Some((epoch, seq));
        }
        match frame.message {
            ServerMessage::Hello { data } => {
                // Every socket starts with a fresh identity. A page that
                // has a session keeps it: its `newClient` asks to resume,
                // and `resumed` says who it is. Taking the new identity here
                // would lose the session if this socket dropped before
                // `resumed`: the next attempt would offer the wrong token.
                if self.me.as_ref().is_some_and(|me| me.resume_token.is_some()) {
                    return;
                }
                self.me = Some(Me {
                    member: Member {
                        id: data.id,
                        name: data.name,
                        color: css_color(&data.color),
                    },
                    resume_token: data.resume_token,
                });
            }
            ServerMessage::Resumed { data } => {
                self.me = Some(Me {
                    member: Member {
                        id: data.id,
                        name: data.name,
                        color: css_color(&data.color),
                    },
                    resume_token: Some(data.resume_token),
                });
                self.room_full = None;
            }
            ServerMessage::Presence { data } => {
                self.presence = data
                    .into_iter()
                    .map(|mut p| {
                        p.member.color = css_color(&p.member.color);
                        p
                    })
                    .collect();
            }
            ServerMessage::PresenceDiff { mut data } => {
                let left: Vec<String> = data
                    .leaves
                    .iter()
                    .filter_map(|id| self.member_name(*id))
                    .collect();
                for join in &mut data.joins {
                    join.member.color = css_color(&join.member.color);
                }
                let joined: Vec<String> = data
                    .joins
                    .iter()
                    .filter(|j| !self.is_me(&j.member) && self.member_name(j.member.id).is_none())
                    .map(|j| j.member.name.clone())
                    .collect();
                data.apply(&mut self.presence);
                for name in joined {
                    self.announce(format!("{name} joined."));
                }
                for name in left {
                    self.announce(format!("{name} left."));
                }
            }
            ServerMessage::RoomFull { data } => {
                self.room_full = Some(data.iter().filter_map(|l| suggested_href(l)).collect());
            }
            ServerMessage::TalkToRoom { data, from } => self.chat_line(ChatLine {
                from: from.map(safe_member),
                text: chat_text(&data),
                mine: false,
                private: false,
            }),
            ServerMessage::PrivateMessage { data, from } => self.chat_line(ChatLine {
                from: Some(safe_member(from)),
                text: chat_text(&data),
                mine: false,
                private: true,
            }),
            ServerMessage::Echo { .. } | ServerMessage::RequestCurrentState => {}
            // What we sent again after a resume had arrived after all.
            ServerMessage::Error { data } if data.code == ErrorCode::DuplicateOp => {}
            ServerMessage::Error { data } => {
                if data.code == ErrorCode::WordLocked {
                    // Our `freeze` lost to a lock we did not know about
                    // (taken before we joined): let the word go.
                    if let Some(id) = self.my_hold.take() {
                        self.offsets.remove(&id);
                        self.holders.entry(id).or_insert_with(|| Holder {
                            name: "someone".into(),
                            color: css_color(""),
                        });
                    }
                }
                let notice = error_notice(data.code);
                self.announce(notice.clone());
                self.notice = Some(notice);
            }
            ServerMessage::Hydrate { data } => {
                self.replace_board(data);
                self.asking_for_words = false;
                self.room_full = None;
            }
            ServerMessage::Rehydrate { data, .. } => {
                self.replace_board(data);
                self.asking_for_words = false;
            }
            ServerMessage::NewRoom => {
                self.board_loaded = true;
                self.room_full = None;
                self.asking_for_words = self.board.is_empty();
            }
            ServerMessage::NewWord { data, from } => {
                let news = format!("{} added “{}”.", from.name, data.text);
                self.stored(BoardOp::Add(data));
                self.asking_for_words = false;
                self.announce(news);
            }
            ServerMessage::Moving {
                element_id,
                dx,
                dy,
                from,
            } => {
                if self.board.get(&element_id).is_some() && !self.is_me(&from) {
                    if self.my_hold.as_ref() == Some(&element_id) {
                        // They hold it after all: our drag is void.
                        self.my_hold = None;
                    }
                    // A `moving` without its `freeze` (e.g. dropped while we
                    // were away) still shows who is moving the word.
                    self.holders
                        .entry(element_id.clone())
                        .or_insert_with(|| Holder {
                            name: from.name.clone(),
                            color: css_color(&from.color),
                        });
                    self.offsets.insert(element_id, (dx, dy));
                }
            }
            ServerMessage::MoveEnd {
                element_id,
                final_x,
                final_y,
                from,
            } => {
                if !self.is_me(&from) && self.board.get(&element_id).is_some() {
                    let news = format!("{} moved {}.", from.name, self.word_text(&element_id));
                    self.announce(news);
                }
                self.offsets.remove(&element_id);
                self.stored(BoardOp::Move {
                    id: element_id,
                    x: final_x,
                    y: final_y,
                });
            }
            ServerMessage::Freeze {
                element_id,
                client_name,
                color,
                from,
            } => {
                if self.is_me(&from) {
                    return;
                }
                if self.my_hold.as_ref() == Some(&element_id) {
                    // They got the lock first: our drag is void.
                    self.my_hold = None;
                    self.offsets.remove(&element_id);
                }
                self.holders.insert(
                    element_id,
                    Holder {
                        name: client_name,
                        color: css_color(&color),
                    },
                );
            }
            ServerMessage::Unfreeze { element_id, .. } => {
                self.holders.remove(&element_id);
                if self.my_hold.as_ref() != Some(&element_id) {
                    self.offsets.remove(&element_id);
                }
            }
            ServerMessage::Delete { element_id, from } => {
                if self.board.get(&element_id).is_some() {
                    let news = format!("{} removed {}.", from.name, self.word_text(&element_id));
                    self.announce(news);
                }
                self.forget(&element_id);
                self.stored(BoardOp::Delete(element_id));
            }
            ServerMessage::Modify {
                element_id, update, ..
            } => self.stored(BoardOp::Modify {
                id: element_id,
                text: update.text,
            }),
            ServerMessage::Custom(_) => {}
        }
    }
}
