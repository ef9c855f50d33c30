//! The reducer, driven by frames as they come off the wire.

use super::*;
use serde_json::json;

fn room() -> RoomName {
    RoomName::new("fridge").unwrap()
}

fn id(s: &str) -> WordId {
    WordId::new(s).unwrap()
}

/// Applies server frames given as JSON.
fn receive(state: &mut RoomState, frames: &[Value]) {
    for f in frames {
        let frame = ServerFrame::decode(&f.to_string()).expect("valid server frame");
        state.apply(Action::Received(frame));
    }
}

fn joined() -> RoomState {
    let mut s = RoomState::new(room());
    s.apply(Action::Opened);
    receive(
        &mut s,
        &[
            json!({"action":"hello","data":{"id":1,"name":"brave-otter","color":"#e6194b","resumeToken":"tok"}}),
            json!({"action":"presence","data":[{"id":1,"name":"brave-otter","color":"#e6194b"},{"id":2,"name":"calm-owl","color":"#3cb44b"}]}),
            json!({"action":"hydrate","seq":4,"epoch":9,"data":[
                {"id":"w1","text":"moon","x":10,"y":20,"z":1},
                {"id":"w2","text":"sings","x":100,"y":20,"z":2}
            ]}),
        ],
    );
    s
}

const OWL: &str = r##"{"id":2,"name":"calm-owl","color":"#3cb44b"}"##;

fn from_owl(mut v: Value) -> Value {
    v["from"] = serde_json::from_str(OWL).unwrap();
    v
}

#[test]
fn joining_takes_identity_presence_and_board() {
    let s = joined();
    assert_eq!(s.connection, Connection::Open);
    let me = s.me.as_ref().unwrap();
    assert_eq!(me.member.name, "brave-otter");
    assert_eq!(me.resume_token.as_deref(), Some("tok"));
    assert_eq!(s.presence.len(), 2);
    assert!(s.is_me(&s.presence[0].member));
    assert_eq!(s.board.words().len(), 2);
    assert!(s.board_loaded);
    assert_eq!(s.last_seen, Some((9, 4)));
}

#[test]
fn a_new_room_asks_for_words_and_our_board_closes_the_dialog() {
    let mut s = RoomState::new(room());
    receive(&mut s, &[json!({"action":"newRoom"})]);
    assert!(s.asking_for_words);
    let board = Board::new(vec![protocol::Word {
        id: id("a"),
        text: "hi".into(),
        x: 1.0,
        y: 2.0,
        z: 1,
    }])
    .unwrap();
    s.apply(Action::Sent(ClientMessage::StateUpdate { data: board }));
    assert!(!s.asking_for_words);
    assert_eq!(s.board.words()[0].text, "hi");
}

#[test]
fn others_drag_glides_then_lands_in_front() {
    let mut s = joined();
    receive(
        &mut s,
        &[
            from_owl(
                json!({"action":"freeze","elementID":"w1","clientName":"calm-owl","color":"#3cb44b"}),
            ),
            from_owl(json!({"action":"moving","elementID":"w1","dx":5,"dy":-3})),
        ],
    );
    let holder = s.holders.get(&id("w1")).unwrap();
    assert_eq!(holder.name, "calm-owl");
    assert_eq!(holder.color, "#3cb44b");
    assert!(!s.can_grab(&id("w1")));
    assert_eq!(s.drawn_position(&id("w1")), Some((15.0, 17.0)));
    receive(
        &mut s,
        &[
            from_owl(json!({"action":"moveEnd","elementID":"w1","finalX":300,"finalY":200})),
            from_owl(json!({"action":"unfreeze","elementID":"w1"})),
        ],
    );
    let w1 = s.board.get(&id("w1")).unwrap();
    assert_eq!((w1.x, w1.y), (300.0, 200.0));
    assert!(w1.z > s.board.get(&id("w2")).unwrap().z);
    assert!(s.can_grab(&id("w1")));
    assert_eq!(s.drawn_position(&id("w1")), Some((300.0, 200.0)));
}

#[test]
fn our_own_drag_moves_the_word_and_the_drop_is_stored() {
    let mut s = joined();
    s.apply(Action::Sent(ClientMessage::Freeze {
        element_id: id("w2"),
    }));
    s.apply(Action::Dragged {
        id: id("w2"),
        dx: 40.0,
        dy: 10.0,
    });
    assert_eq!(s.drawn_position(&id("w2")), Some((140.0, 30.0)));
    s.apply(Action::Sent(ClientMessage::MoveEnd {
        element_id: id("w2"),
        final_x: 140.0,
        final_y: 30.0,
    }));
    s.apply(Action::Sent(ClientMessage::Unfreeze {
        element_id: id("w2"),
    }));
    assert_eq!(s.my_hold, None);
    assert_eq!(s.drawn_position(&id("w2")), Some((140.0, 30.0)));
}

#[test]
fn losing_the_race_for_a_word_cancels_our_drag() {
    let mut s = joined();
    s.apply(Action::Sent(ClientMessage::Freeze {
        element_id: id("w1"),
    }));
    s.apply(Action::Dragged {
        id: id("w1"),
        dx: 40.0,
        dy: 0.0,
    });
    receive(
        &mut s,
        &[from_owl(
            json!({"action":"freeze","elementID":"w1","clientName":"calm-owl","color":"#3cb44b"}),
        )],
    );
    assert_eq!(s.my_hold, None);
    assert_eq!(s.drawn_position(&id("w1")), Some((10.0, 20.0)));
}

#[test]
fn words_are_added_edited_and_deleted_by_anyone() {
    let mut s = joined();
    receive(
        &mut s,
        &[
            from_owl(
                json!({"action":"newWord","data":{"id":"w3","text":"<img src=x onerror=alert(1)>","x":5,"y":5}}),
            ),
            from_owl(json!({"action":"modify","elementID":"w2","update":{"text":"hums"}})),
            from_owl(json!({"action":"delete","elementID":"w1"})),
        ],
    );
    let texts: Vec<_> = s.board.words().iter().map(|w| w.text.as_str()).collect();
    assert_eq!(texts, ["hums", "<img src=x onerror=alert(1)>"]);
    s.apply(Action::Sent(ClientMessage::Delete {
        element_id: id("w3"),
    }));
    assert_eq!(s.board.words().len(), 1);
}

#[test]
fn atoms_for_unknown_words_change_nothing() {
    let mut s = joined();
    let before = s.board.clone();
    receive(
        &mut s,
        &[
            from_owl(json!({"action":"moveEnd","elementID":"nope","finalX":1,"finalY":1})),
            from_owl(json!({"action":"moving","elementID":"nope","dx":1,"dy":1})),
            from_owl(json!({"action":"modify","elementID":"nope","update":{"text":"x"}})),
        ],
    );
    assert_eq!(s.board, before);
    assert!(s.offsets.is_empty());
}

#[test]
fn rehydrate_replaces_the_board_and_forgets_vanished_locks() {
    let mut s = joined();
    receive(
        &mut s,
        &[
            from_owl(
                json!({"action":"freeze","elementID":"w1","clientName":"calm-owl","color":"#3cb44b"}),
            ),
            from_owl(
                json!({"action":"rehydrate","data":[{"id":"w9","text":"new","x":0,"y":0,"z":1}]}),
            ),
        ],
    );
    assert_eq!(s.board.words().len(), 1);
    assert!(s.holders.is_empty());
}

#[test]
fn chat_keeps_server_lines_others_lines_and_ours() {
    let mut s = joined();
    receive(
        &mut s,
        &[
            json!({"action":"talkToRoom","data":"Welcome, client calm-owl!"}),
            from_owl(json!({"action":"talkToRoom","data":"hello"})),
        ],
    );
    s.apply(Action::Sent(ClientMessage::TalkToRoom {
        data: json!("hi owl"),
    }));
    assert_eq!(s.chat.len(), 3);
    assert!(s.chat[0].from.is_none());
    assert_eq!(s.chat[1].from.as_ref().unwrap().name, "calm-owl");
    assert!(s.chat[2].mine);
    assert_eq!(s.chat[2].text, "hi owl");
}

#[test]
fn chat_history_is_bounded() {
    let mut s = joined();
    for i in 0..CHAT_HISTORY + 5 {
        s.apply(Action::Sent(ClientMessage::TalkToRoom {
            data: json!(i.to_string()),
        }));
    }
    assert_eq!(s.chat.len(), CHAT_HISTORY);
    assert_eq!(s.chat[0].text, "5");
}

#[test]
fn a_full_room_offers_only_safe_links() {
    let mut s = RoomState::new(room());
    receive(
        &mut s,
        &[json!({"action":"roomFull","data":["/room-a","javascript:alert(1)","/room-c"]})],
    );
    assert_eq!(
        s.room_full,
        Some(vec!["/room-a".to_string(), "/room-c".to_string()])
    );
}

/// `(id, away)` of every listed member, in order.
fn listed(s: &RoomState) -> Vec<(u64, bool)> {
    s.presence.iter().map(|p| (p.member.id.0, p.away)).collect()
}

#[test]
fn presence_changes_apply_to_the_list_in_order() {
    let mut s = joined();
    receive(
        &mut s,
        &[
            json!({"action":"presenceDiff","data":{"joins":[{"id":3,"name":"bold-lynx","color":"#4363d8"}]}}),
            json!({"action":"presenceDiff","data":{"away":[2]}}),
        ],
    );
    assert_eq!(listed(&s), [(1, false), (2, true), (3, false)]);
    assert_eq!(s.presence[2].member.name, "bold-lynx");
    receive(
        &mut s,
        &[
            json!({"action":"presenceDiff","data":{"back":[2],"leaves":[1]}}),
            json!({"action":"presenceDiff","data":{"order":[3,2]}}),
        ],
    );
    assert_eq!(listed(&s), [(3, false), (2, false)]);
    assert_eq!(s.last_seen, Some((9, 4)), "presence is not numbered");
}

#[test]
fn colours_from_the_network_cannot_inject_css() {
    assert_eq!(css_color("#3cb44b"), "#3cb44b");
    assert_eq!(css_color("#abc"), "#abc");
    assert_eq!(css_color("red;background:url(x)"), "#888888");
    let mut s = joined();
    receive(
        &mut s,
        &[json!({"action":"presence","data":[{"id":3,"name":"x","color":"red;x:y"}]})],
    );
    assert_eq!(s.presence[0].member.color, "#888888");
    receive(
        &mut s,
        &[json!({"action":"presenceDiff","data":{"joins":[{"id":4,"name":"y","color":"url(x)"}]}})],
    );
    assert_eq!(s.presence[1].member.color, "#888888");
}

#[test]
fn a_dropped_socket_shows_reconnecting_and_forgets_locks() {
    let mut s = joined();
    receive(
        &mut s,
        &[from_owl(
            json!({"action":"freeze","elementID":"w1","clientName":"calm-owl","color":"#3cb44b"}),
        )],
    );
    s.apply(Action::Rtt(12.0));
    s.apply(Action::Closed {
        attempt: 1,
        retry_in_ms: 800,
    });
    assert!(matches!(s.connection, Connection::Reconnecting { .. }));
    assert!(s.holders.is_empty());
    assert_eq!(s.rtt_ms, None);
    // The board stays visible while we are away.
    assert_eq!(s.board.words().len(), 2);
}

/// Applies frames as the socket does: through [`read_frame`].
fn receive_wire(state: &mut RoomState, frames: &[Value]) {
    for f in frames {
        if let Some(frame) = read_frame(&f.to_string()).expect("valid server frame") {
            state.apply(Action::Received(frame));
        }
    }
}

#[test]
fn a_server_only_action_relayed_with_from_is_a_forgery_and_ignored() {
    let mut s = joined();
    let before = s.clone();
    receive_wire(
        &mut s,
        &[
            from_owl(
                json!({"action":"resumed","data":{"recovered":false,"id":2,"name":"calm-owl","color":"#3cb44b","resumeToken":"stolen"}}),
            ),
            from_owl(json!({"action":"hydrate","seq":5,"epoch":9,"data":[]})),
            from_owl(json!({"action":"newRoom"})),
            from_owl(json!({"action":"roomFull","data":["/elsewhere"]})),
            from_owl(json!({"action":"presence","data":[]})),
            from_owl(json!({"action":"presenceDiff","data":{"leaves":[1]}})),
            from_owl(json!({"action":"error","data":{"code":"word_locked","message":"x"}})),
        ],
    );
    assert_eq!(s, before, "nothing changed");
    // The same actions from the server itself, and relays, still count.
    receive_wire(
        &mut s,
        &[
            from_owl(json!({"action":"talkToRoom","data":"hi"})),
            json!({"action":"hydrate","data":[]}),
        ],
    );
    assert_eq!(s.chat.last().unwrap().text, "hi");
    assert!(s.board.is_empty());
}

#[test]
fn a_session_taken_over_elsewhere_says_so_and_keeps_what_takes_it_back() {
    let mut s = joined();
    receive(
        &mut s,
        &[from_owl(
            json!({"action":"freeze","elementID":"w1","clientName":"calm-owl","color":"#3cb44b"}),
        )],
    );
    s.apply(Action::Replaced);
    assert_eq!(s.connection, Connection::Replaced);
    assert!(s.holders.is_empty());
    assert_eq!(s.rtt_ms, None);
    // Who we are and where we were: "Continue here" resumes with them.
    assert_eq!(s.me.as_ref().unwrap().resume_token.as_deref(), Some("tok"));
    assert_eq!(s.last_seen, Some((9, 4)));
    assert_eq!(s.board.words().len(), 2);
}

#[test]
fn resuming_restores_our_identity() {
    let mut s = joined();
    receive(
        &mut s,
        &[
            json!({"action":"hello","data":{"id":5,"name":"new-name","color":"#000000","resumeToken":"t2"}}),
            json!({"action":"resumed","data":{"recovered":true,"id":1,"name":"brave-otter","color":"#e6194b","resumeToken":"t3"}}),
        ],
    );
    let me = s.me.as_ref().unwrap();
    assert_eq!(me.member.name, "brave-otter");
    assert_eq!(me.resume_token.as_deref(), Some("t3"));
}

#[test]
fn a_socket_lost_before_the_resume_answer_leaves_our_session_to_resume() {
    let mut s = joined();
    s.apply(Action::Closed {
        attempt: 1,
        retry_in_ms: 500,
    });
    s.apply(Action::Opened);
    // The new socket's own identity; then it drops before `resumed`.
    receive(
        &mut s,
        &[
            json!({"action":"hello","data":{"id":5,"name":"new-name","color":"#000000","resumeToken":"t2"}}),
        ],
    );
    assert!(s.is_me(&s.presence[0].member), "still us in the list");
    s.apply(Action::Closed {
        attempt: 1,
        retry_in_ms: 500,
    });
    let me = s.me.as_ref().unwrap();
    assert_eq!(me.member.name, "brave-otter");
    assert_eq!(
        me.resume_token.as_deref(),
        Some("tok"),
        "the token to resume with"
    );
    assert_eq!(s.last_seen, Some((9, 4)));
    // A resume that fails names the identity we carry on as.
    receive(
        &mut s,
        &[
            json!({"action":"resumed","data":{"recovered":false,"id":6,"name":"late-lark","color":"#123456","resumeToken":"t6"}}),
        ],
    );
    assert_eq!(s.me.as_ref().unwrap().member.name, "late-lark");
}

#[test]
fn replayed_frames_apply_in_order_and_move_the_resume_point() {
    let mut s = joined();
    s.apply(Action::Closed {
        attempt: 1,
        retry_in_ms: 500,
    });
    // Our own change while away: applied at once, sent after the resume.
    s.apply(Action::Sent(ClientMessage::TalkToRoom {
        data: json!("while away"),
    }));
    s.apply(Action::Opened);
    receive(
        &mut s,
        &[
            json!({"action":"hello","data":{"id":5,"name":"new-name","color":"#000000","resumeToken":"t2"}}),
            from_owl(
                json!({"action":"moveEnd","seq":5,"epoch":9,"elementID":"w1","finalX":70,"finalY":80}),
            ),
            from_owl(json!({"action":"talkToRoom","seq":6,"epoch":9,"data":"one"})),
            from_owl(json!({"action":"delete","seq":7,"epoch":9,"elementID":"w2"})),
            from_owl(json!({"action":"talkToRoom","seq":8,"epoch":9,"data":"two"})),
            json!({"action":"resumed","seq":8,"epoch":9,"data":{"recovered":true,"id":1,"name":"brave-otter","color":"#e6194b","resumeToken":"t3"}}),
        ],
    );
    let texts: Vec<&str> = s.chat.iter().map(|l| l.text.as_str()).collect();
    assert_eq!(texts, ["while away", "one", "two"]);
    assert_eq!(s.drawn_position(&id("w1")), Some((70.0, 80.0)));
    assert!(s.board.get(&id("w2")).is_none());
    assert_eq!(s.last_seen, Some((9, 8)));
    let me = s.me.as_ref().unwrap();
    assert_eq!(
        (me.member.id.0, me.resume_token.as_deref()),
        (1, Some("t3"))
    );
}

#[test]
fn errors_become_a_notice() {
    let mut s = joined();
    receive(
        &mut s,
        &[json!({"action":"error","data":{"code":"word_locked","message":"held"}})],
    );
    assert!(s.notice.as_deref().unwrap().contains("holding"));
    s.apply(Action::DismissNotice);
    assert_eq!(s.notice, None);
}

#[test]
fn a_resent_message_the_room_had_applied_is_no_notice() {
    let mut s = joined();
    receive(
        &mut s,
        &[
            json!({"action":"error","data":{"code":"duplicate_op","message":"opId 3 was applied already"}}),
        ],
    );
    assert_eq!(s.notice, None);
}

#[test]
fn a_lock_we_did_not_know_about_ends_our_drag() {
    let mut s = joined();
    s.apply(Action::Sent(ClientMessage::Freeze {
        element_id: id("w1"),
    }));
    s.apply(Action::Dragged {
        id: id("w1"),
        dx: 40.0,
        dy: 0.0,
    });
    receive(
        &mut s,
        &[json!({"action":"error","data":{"code":"word_locked","message":"held"}})],
    );
    assert_eq!(s.my_hold, None);
    assert!(!s.can_grab(&id("w1")));
    assert_eq!(s.drawn_position(&id("w1")), Some((10.0, 20.0)));
    // The real holder's drop and release put things right.
    receive(
        &mut s,
        &[
            from_owl(json!({"action":"moveEnd","elementID":"w1","finalX":70,"finalY":80})),
            from_owl(json!({"action":"unfreeze","elementID":"w1"})),
        ],
    );
    assert!(s.can_grab(&id("w1")));
    assert_eq!(s.drawn_position(&id("w1")), Some((70.0, 80.0)));
}

fn news(s: &RoomState) -> Vec<&str> {
    s.news.iter().map(|(_, text)| text.as_str()).collect()
}

#[test]
fn others_moves_new_words_removals_and_comings_and_goings_are_news() {
    let mut s = joined();
    receive(
        &mut s,
        &[
            json!({"action":"presenceDiff","data":{"joins":[{"id":3,"name":"bold-lynx","color":"#4363d8"}]}}),
            from_owl(json!({"action":"moveEnd","elementID":"w1","finalX":300,"finalY":200})),
            from_owl(
                json!({"action":"newWord","data":{"id":"w3","text":"softly","x":5,"y":5,"z":3}}),
            ),
            from_owl(json!({"action":"delete","elementID":"w2"})),
            json!({"action":"presenceDiff","data":{"leaves":[2]}}),
        ],
    );
    assert_eq!(
        news(&s),
        [
            "bold-lynx joined.",
            "calm-owl moved “moon”.",
            "calm-owl added “softly”.",
            "calm-owl removed “sings”.",
            "calm-owl left.",
        ]
    );
    let numbers: Vec<u64> = s.news.iter().map(|(n, _)| *n).collect();
    assert_eq!(numbers, [1, 2, 3, 4, 5]);
}

#[test]
fn our_own_changes_are_not_news_from_the_server_and_news_is_bounded() {
    let mut s = joined();
    let me = r##"{"id":1,"name":"brave-otter","color":"#e6194b"}"##;
    let mut end = json!({"action":"moveEnd","elementID":"w1","finalX":3,"finalY":4});
    end["from"] = serde_json::from_str(me).unwrap();
    receive(&mut s, &[end]);
    assert!(s.news.is_empty(), "{:?}", s.news);
    for i in 0..NEWS_KEPT + 5 {
        s.apply(Action::Announce(format!("item {i}")));
    }
    assert_eq!(s.news.len(), NEWS_KEPT);
    assert_eq!(s.news.last().unwrap().0, (NEWS_KEPT + 5) as u64);
}

#[test]
fn a_join_refused_as_private_or_for_a_bad_token_or_an_expired_one_is_for_good() {
    assert_eq!(
        Refusal::of_join_error(ErrorCode::Forbidden),
        Some(Refusal::Private)
    );
    assert_eq!(
        Refusal::of_join_error(ErrorCode::Unauthorized),
        Some(Refusal::InvalidToken)
    );
    assert_eq!(
        Refusal::of_close(protocol::close_code::TOKEN_EXPIRED),
        Some(Refusal::TokenExpired)
    );
    // Worth a retry: a busy server, a drop, a session taken elsewhere
    // (which has its own state), the server going away.
    assert_eq!(Refusal::of_join_error(ErrorCode::Unavailable), None);
    assert_eq!(Refusal::of_join_error(ErrorCode::RateLimited), None);
    assert_eq!(Refusal::of_close(protocol::close_code::REPLACED), None);
    assert_eq!(Refusal::of_close(1001), None);
    assert_eq!(Refusal::of_close(1006), None);
}

#[test]
fn a_private_room_without_a_token_says_so_on_the_page_and_to_the_screen_reader() {
    let mut s = RoomState::new(room());
    s.apply(Action::Opened);
    s.apply(Action::Refused(Refusal::Private));
    assert_eq!(s.connection, Connection::Refused(Refusal::Private));
    let notice = s.notice.clone().expect("a notice");
    assert!(notice.contains("private"), "{notice}");
    assert_eq!(news(&s).last(), Some(&notice.as_str()));
    assert!(!s.board_loaded);
}

#[test]
fn a_token_not_valid_or_expired_says_so_and_forgets_locks() {
    let mut s = RoomState::new(room());
    s.apply(Action::Refused(Refusal::InvalidToken));
    let notice = s.notice.clone().unwrap();
    assert!(notice.contains("not valid or has expired"), "{notice}");
    assert_eq!(s.connection, Connection::Refused(Refusal::InvalidToken));

    let mut s = joined();
    receive(
        &mut s,
        &[from_owl(
            json!({"action":"freeze","elementID":"w1","clientName":"calm-owl","color":"#3cb44b"}),
        )],
    );
    s.apply(Action::Rtt(12.0));
    s.apply(Action::Refused(Refusal::TokenExpired));
    assert_eq!(s.connection, Connection::Refused(Refusal::TokenExpired));
    let notice = s.notice.clone().unwrap();
    assert!(notice.contains("expired"), "{notice}");
    assert_eq!(news(&s).last(), Some(&notice.as_str()));
    assert!(s.holders.is_empty());
    assert_eq!(s.rtt_ms, None);
}

#[test]
fn a_token_about_to_expire_is_told_in_words() {
    let mut s = joined();
    receive(
        &mut s,
        &[json!({"action":"error","data":{"code":"token_expired","message":"refresh within 10s"}})],
    );
    let notice = s.notice.clone().unwrap();
    assert!(notice.contains("access token is expiring"), "{notice}");
    assert_eq!(news(&s).last(), Some(&notice.as_str()));
}
