//! The exact JSON of every message, in both directions, including frames
//! written the way the original tutorial's client writes them.

use protocol::{
    Board, ClientFrame, ClientId, ClientMessage, ErrorBody, ErrorCode, Hello, Member, PresenceDiff,
    PresenceEntry, Role, RoomName, ServerFrame, ServerMessage, Word, WordId,
};
use serde_json::{json, Value};

fn decode(v: Value) -> ClientFrame {
    ClientFrame::decode(&v.to_string()).unwrap_or_else(|e| panic!("{v}: {e}"))
}

fn decode_err(text: &str) -> ErrorCode {
    match ClientFrame::decode(text) {
        Ok(f) => panic!("{text} decoded as {f:?}"),
        Err(e) => e.code,
    }
}

fn member() -> Member {
    Member {
        id: ClientId(7),
        name: "brave-otter".into(),
        color: "#e6194b".into(),
    }
}

fn word(id: &str, x: f64, y: f64) -> Word {
    Word {
        id: WordId::new(id).unwrap(),
        text: "moon".into(),
        x,
        y,
        z: 0,
    }
}

fn wid(s: &str) -> WordId {
    WordId::new(s).unwrap()
}

/// Encodes `m` and checks it against `expected`, and that it decodes back.
fn server_golden(frame: ServerFrame, expected: Value) {
    let text = frame.encode();
    let actual: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(actual, expected);
    assert_eq!(
        ServerFrame::decode(&text).unwrap(),
        frame,
        "round trip of {text}"
    );
}

#[test]
fn seed_client_frames_decode_with_their_extra_fields() {
    let f = decode(json!({"action":"newClient","room":"fridge","pieceB":"x"}));
    assert_eq!(f.join_target(), Some(RoomName::new("fridge").unwrap()));
    let f = decode(json!({"action":"echo","data":1732560000000u64,"room":"fridge","pieceB":{}}));
    assert_eq!(
        f.message,
        ClientMessage::Echo {
            data: json!(1732560000000u64)
        }
    );
    assert_eq!(f.room.as_deref(), Some("fridge"));
    let f = decode(json!({"action":"talkToRoom","data":"hi","room":"fridge","pieceB":1}));
    assert_eq!(f.message, ClientMessage::TalkToRoom { data: json!("hi") });
}

#[test]
fn board_atoms_decode_with_the_seed_field_names() {
    let cases = [
        (
            json!({"action":"stateUpdate","room":"r","data":[{"id":"w1","text":"moon","x":120,"y":80}]}),
            ClientMessage::StateUpdate {
                data: Board::new(vec![word("w1", 120.0, 80.0)]).unwrap(),
            },
        ),
        (
            json!({"action":"emptyRoom","room":"r"}),
            ClientMessage::EmptyRoom,
        ),
        (
            json!({"action":"newWord","room":"r","data":{"id":"w1","text":"moon","x":120,"y":80}}),
            ClientMessage::NewWord {
                data: word("w1", 120.0, 80.0),
            },
        ),
        (
            json!({"action":"moving","room":"r","elementID":"w1","dx":3,"dy":-2}),
            ClientMessage::Moving {
                element_id: wid("w1"),
                dx: 3.0,
                dy: -2.0,
            },
        ),
        (
            json!({"action":"moveEnd","room":"r","elementID":"w1","finalX":120,"finalY":80}),
            ClientMessage::MoveEnd {
                element_id: wid("w1"),
                final_x: 120.0,
                final_y: 80.0,
            },
        ),
        (
            json!({"action":"freeze","room":"r","elementID":"w1"}),
            ClientMessage::Freeze {
                element_id: wid("w1"),
            },
        ),
        (
            json!({"action":"unfreeze","room":"r","elementID":"w1"}),
            ClientMessage::Unfreeze {
                element_id: wid("w1"),
            },
        ),
        (
            json!({"action":"delete","room":"r","elementID":"w1"}),
            ClientMessage::Delete {
                element_id: wid("w1"),
            },
        ),
        (
            json!({"action":"modify","room":"r","elementID":"w1","update":{"text":"sun"}}),
            ClientMessage::Modify {
                element_id: wid("w1"),
                update: protocol::WordUpdate { text: "sun".into() },
            },
        ),
        (
            json!({"action":"privateMessage","room":"r","to":3,"data":"psst"}),
            ClientMessage::PrivateMessage {
                to: ClientId(3),
                data: json!("psst"),
            },
        ),
    ];
    for (frame, expected) in cases {
        let decoded = decode(frame.clone());
        assert_eq!(decoded.message, expected, "{frame}");
        // And what the browser encodes decodes back to the same frame.
        assert_eq!(ClientFrame::decode(&decoded.encode()).unwrap(), decoded);
    }
}

#[test]
fn unknown_actions_are_custom_and_keep_every_field() {
    let f = decode(json!({"action":"spin","room":"r","data":{"deg":90},"pieceB":true}));
    match f.message {
        ClientMessage::Custom(c) => {
            assert_eq!(c.action, "spin");
            assert_eq!(c.fields.get("data"), Some(&json!({"deg":90})));
            assert_eq!(c.fields.get("pieceB"), Some(&json!(true)));
            // The room is the frame's: relayed once, not twice.
            assert_eq!(c.fields.get("room"), None);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(f.room.as_deref(), Some("r"));
}

#[test]
fn actions_only_the_server_sends_are_refused_from_a_client() {
    for action in ServerMessage::SERVER_ONLY {
        // With the fields the server would send, and bare.
        for frame in [
            json!({"action": action, "room": "r", "data": []}),
            json!({"action": action}),
        ] {
            assert_eq!(
                decode_err(&frame.to_string()),
                ErrorCode::ReservedAction,
                "{frame}"
            );
        }
    }
    // The tag is exact, as the clients read it: another spelling is custom.
    let f = decode(json!({"action":"Hydrate","data":[]}));
    assert!(matches!(f.message, ClientMessage::Custom(c) if c.action == "Hydrate"));
}

#[test]
fn a_frame_decodes_the_same_whatever_order_its_keys_come_in() {
    let orders = [
        r#"{"action":"moveEnd","room":"r","elementID":"w1","finalX":1,"finalY":2.5}"#,
        r#"{"finalY":2.5,"elementID":"w1","room":"r","finalX":1,"action":"moveEnd"}"#,
        r#"{"room":"r","finalX":1,"action":"moveEnd","finalY":2.5,"elementID":"w1"}"#,
    ];
    for text in orders {
        let f = ClientFrame::decode(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(f.room.as_deref(), Some("r"), "{text}");
        assert_eq!(
            f.message,
            ClientMessage::MoveEnd {
                element_id: WordId::new("w1").unwrap(),
                final_x: 1.0,
                final_y: 2.5
            },
            "{text}"
        );
    }
    // A room that is not a string is refused wherever it is.
    assert_eq!(
        decode_err(r#"{"room":7,"action":"echo","data":1}"#),
        ErrorCode::InvalidMessage
    );
}

#[test]
fn bad_frames_get_typed_errors() {
    assert_eq!(decode_err("{not json"), ErrorCode::MalformedJson);
    assert_eq!(decode_err(""), ErrorCode::MalformedJson);
    assert_eq!(decode_err("[1,2]"), ErrorCode::InvalidMessage);
    assert_eq!(decode_err(r#"{"data":1}"#), ErrorCode::InvalidMessage);
    assert_eq!(decode_err(r#"{"action":5}"#), ErrorCode::InvalidMessage);
    assert_eq!(
        decode_err(r#"{"action":"moveEnd","elementID":"w1","finalX":"far"}"#),
        ErrorCode::InvalidMessage
    );
    assert_eq!(
        decode_err(r#"{"action":"moving","elementID":""}"#),
        ErrorCode::InvalidMessage
    );
    assert_eq!(
        decode_err(r#"{"action":"newClient","room":"a b"}"#),
        ErrorCode::InvalidRoomName
    );
    assert_eq!(
        decode_err(r#"{"action":"newClient"}"#),
        ErrorCode::InvalidRoomName
    );
    assert_eq!(
        decode_err(&format!(
            r#"{{"action":"newClient","room":"{}"}}"#,
            "a".repeat(65)
        )),
        ErrorCode::InvalidRoomName
    );
}

#[test]
fn room_names_fold_upper_case() {
    assert_eq!(RoomName::new("Fridge-1").unwrap().as_str(), "fridge-1");
    assert!(RoomName::new("été").is_err());
    assert!(RoomName::new("a/b").is_err());
}

#[test]
fn server_frames_have_exact_json() {
    let m = member();
    let from = json!({"id":7,"name":"brave-otter","color":"#e6194b"});
    server_golden(
        ServerMessage::Hello {
            data: Hello {
                id: ClientId(7),
                name: "brave-otter".into(),
                color: "#e6194b".into(),
                resume_token: Some("tok".into()),
            },
        }
        .into(),
        json!({"action":"hello","data":{"id":7,"name":"brave-otter","color":"#e6194b","resumeToken":"tok"}}),
    );
    server_golden(
        ServerMessage::TalkToRoom {
            data: json!("Welcome, client brave-otter!"),
            from: None,
        }
        .into(),
        json!({"action":"talkToRoom","data":"Welcome, client brave-otter!"}),
    );
    server_golden(
        ServerFrame {
            message: ServerMessage::TalkToRoom {
                data: json!("hi"),
                from: Some(m.clone()),
            },
            seq: Some(4),
            epoch: Some(9),
        },
        json!({"action":"talkToRoom","data":"hi","from":from,"seq":4,"epoch":9}),
    );
    server_golden(
        ServerMessage::Presence {
            data: vec![
                PresenceEntry {
                    member: m.clone(),
                    away: false,
                    user: None,
                    role: Role::Member,
                },
                PresenceEntry {
                    member: Member {
                        id: ClientId(8),
                        name: "calm-heron".into(),
                        color: "#3cb44b".into(),
                    },
                    away: true,
                    user: Some("user-42".into()),
                    role: Role::Viewer,
                },
            ],
        }
        .into(),
        json!({"action":"presence","data":[
            {"id":7,"name":"brave-otter","color":"#e6194b"},
            {"id":8,"name":"calm-heron","color":"#3cb44b","away":true,"user":"user-42","role":"viewer"}]}),
    );
    server_golden(
        ServerMessage::PresenceDiff {
            data: PresenceDiff {
                leaves: vec![ClientId(3)],
                joins: vec![PresenceEntry {
                    member: m.clone(),
                    away: false,
                    user: Some("user-7".into()),
                    role: Role::Member,
                }],
                away: vec![ClientId(8)],
                back: vec![ClientId(9)],
                order: Some(vec![ClientId(9), ClientId(8), ClientId(7)]),
            },
        }
        .into(),
        json!({"action":"presenceDiff","data":{
            "leaves":[3],
            "joins":[{"id":7,"name":"brave-otter","color":"#e6194b","user":"user-7"}],
            "away":[8],"back":[9],"order":[9,8,7]}}),
    );
    server_golden(
        ServerMessage::PresenceDiff {
            data: PresenceDiff {
                away: vec![ClientId(8)],
                ..PresenceDiff::default()
            },
        }
        .into(),
        json!({"action":"presenceDiff","data":{"away":[8]}}),
    );
    server_golden(
        ServerMessage::RoomFull {
            data: vec!["/a".into(), "/b".into(), "/c".into()],
        }
        .into(),
        json!({"action":"roomFull","data":["/a","/b","/c"]}),
    );
    server_golden(
        ServerMessage::Error {
            data: ErrorBody::new(ErrorCode::WrongRoom, "you are in fridge"),
        }
        .into(),
        json!({"action":"error","data":{"code":"wrong_room","message":"you are in fridge"}}),
    );
    server_golden(
        ServerMessage::Error {
            data: ErrorBody::new(
                ErrorCode::ReservedAction,
                "`hydrate` is sent by the server only",
            ),
        }
        .into(),
        json!({"action":"error","data":{"code":"reserved_action","message":"`hydrate` is sent by the server only"}}),
    );
    server_golden(
        ServerMessage::Error {
            data: ErrorBody::new(ErrorCode::TooManyLocks, "you hold 4 words already"),
        }
        .into(),
        json!({"action":"error","data":{"code":"too_many_locks","message":"you hold 4 words already"}}),
    );
    let board = Board::new(vec![word("w1", 120.0, 80.0)]).unwrap();
    server_golden(
        ServerMessage::Hydrate {
            data: board.clone(),
        }
        .into(),
        json!({"action":"hydrate","data":[{"id":"w1","text":"moon","x":120.0,"y":80.0,"z":0}]}),
    );
    server_golden(
        ServerMessage::Rehydrate {
            data: board,
            from: Some(m.clone()),
        }
        .into(),
        json!({"action":"rehydrate","data":[{"id":"w1","text":"moon","x":120.0,"y":80.0,"z":0}],"from":from}),
    );
    server_golden(ServerMessage::NewRoom.into(), json!({"action":"newRoom"}));
    server_golden(
        ServerMessage::RequestCurrentState.into(),
        json!({"action":"requestCurrentState"}),
    );
    server_golden(
        ServerMessage::Freeze {
            element_id: wid("w1"),
            client_name: "brave-otter".into(),
            color: "#e6194b".into(),
            from: m.clone(),
        }
        .into(),
        json!({"action":"freeze","elementID":"w1","clientName":"brave-otter","color":"#e6194b","from":from}),
    );
    server_golden(
        ServerMessage::Moving {
            element_id: wid("w1"),
            dx: 3.0,
            dy: -2.0,
            from: m.clone(),
        }
        .into(),
        json!({"action":"moving","elementID":"w1","dx":3.0,"dy":-2.0,"from":from}),
    );
    server_golden(
        ServerMessage::MoveEnd {
            element_id: wid("w1"),
            final_x: 1.5,
            final_y: 2.0,
            from: m.clone(),
        }
        .into(),
        json!({"action":"moveEnd","elementID":"w1","finalX":1.5,"finalY":2.0,"from":from}),
    );
    let custom = decode(json!({"action":"spin","data":{"deg":90},"from":"fake"}));
    let ClientMessage::Custom(mut c) = custom.message else {
        panic!()
    };
    c.fields
        .insert("from".into(), serde_json::to_value(&m).unwrap());
    server_golden(
        ServerMessage::Custom(c).into(),
        json!({"action":"spin","data":{"deg":90},"from":from}),
    );
}

#[test]
fn checked_in_schemas_are_current() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/schema");
    for (file, text) in [
        ("client.schema.json", protocol::schema::client_schema()),
        ("server.schema.json", protocol::schema::server_schema()),
        ("api.schema.json", protocol::schema::api_schema()),
    ] {
        let path = format!("{dir}/{file}");
        if std::env::var_os("UPDATE_SCHEMA").is_some() {
            std::fs::write(&path, &text).unwrap();
        }
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == text,
            "{path} is stale: run `UPDATE_SCHEMA=1 cargo test -p protocol`"
        );
    }
}

#[test]
fn an_op_id_numbers_any_frame_and_is_not_relayed() {
    let f = decode(json!({"action":"talkToRoom","data":"hi","room":"fridge","opId":12}));
    assert_eq!(f.op_id, Some(12));
    assert_eq!(f.message, ClientMessage::TalkToRoom { data: json!("hi") });
    let f = decode(json!({"action":"moveEnd","elementID":"w1","finalX":1,"finalY":2,"opId":0}));
    assert_eq!(f.op_id, Some(0));
    // A custom action relays its own fields, not the frame's number.
    let f = decode(json!({"action":"spin","deg":90,"opId":3}));
    assert_eq!(f.op_id, Some(3));
    let ClientMessage::Custom(c) = &f.message else {
        panic!("{f:?}")
    };
    assert_eq!(c.fields.get("opId"), None);
    assert_eq!(c.fields.get("deg"), Some(&json!(90)));
    // Frames without one (the original client's) have none.
    assert_eq!(decode(json!({"action":"talkToRoom","data":1})).op_id, None);
    // Encoded back as sent.
    let framed = ClientFrame::new(None, ClientMessage::EmptyRoom).with_op_id(4);
    assert_eq!(
        serde_json::from_str::<Value>(&framed.encode()).unwrap(),
        json!({"action":"emptyRoom","opId":4})
    );
}

#[test]
fn an_op_id_that_is_not_a_whole_number_is_refused() {
    for bad in [r#""7""#, "-1", "1.5", "18446744073709551616", "null"] {
        let text = format!(r#"{{"action":"talkToRoom","data":1,"opId":{bad}}}"#);
        // `null` is the same as no number at all.
        if bad == "null" {
            assert_eq!(ClientFrame::decode(&text).unwrap().op_id, None);
            continue;
        }
        assert_eq!(decode_err(&text), ErrorCode::InvalidMessage, "{text}");
    }
}

#[test]
fn resumed_says_the_last_op_applied() {
    let data = protocol::Resumed {
        recovered: true,
        id: ClientId(7),
        name: "brave-otter".into(),
        color: "#e6194b".into(),
        resume_token: "t".into(),
        last_op: Some(41),
    };
    server_golden(
        ServerMessage::Resumed { data }.into(),
        json!({"action":"resumed","data":{"recovered":true,"id":7,"name":"brave-otter",
            "color":"#e6194b","resumeToken":"t","lastOp":41}}),
    );
}

#[test]
fn a_join_carries_the_apps_token_and_a_refresh_replaces_it() {
    let f = decode(json!({"action":"newClient","room":"team-42-board","token":"a.b.c"}));
    assert_eq!(f.join_token(), Some("a.b.c"));
    assert_eq!(
        f.join_target(),
        Some(RoomName::new("team-42-board").unwrap())
    );
    // With a resume token too: a resume checks the grant again.
    let f = decode(json!({"action":"newClient","room":"r","token":"a.b.c","resumeToken":"t"}));
    assert_eq!(f.join_token(), Some("a.b.c"));
    assert_eq!(f.resume_request().unwrap().token, "t");
    // The seed's join has none.
    assert_eq!(
        decode(json!({"action":"newClient","room":"r"})).join_token(),
        None
    );
    let f = decode(json!({"action":"refreshToken","token":"d.e.f","room":"r"}));
    assert_eq!(
        f.message,
        ClientMessage::RefreshToken {
            token: "d.e.f".into()
        }
    );
    assert!(!f.message.writes(), "a viewer may refresh its token");
    assert_eq!(
        decode_err(r#"{"action":"refreshToken"}"#),
        ErrorCode::InvalidMessage
    );
    assert_eq!(
        decode_err(r#"{"action":"refreshToken","token":5}"#),
        ErrorCode::InvalidMessage
    );
}

#[test]
fn a_viewer_may_only_join_refresh_and_echo() {
    let reads = [
        json!({"action":"newClient","room":"r"}),
        json!({"action":"echo","data":1}),
        json!({"action":"emptyRoom"}),
    ];
    for v in reads {
        assert!(!decode(v.clone()).message.writes(), "{v}");
    }
    let writes = [
        json!({"action":"talkToRoom","data":"hi"}),
        json!({"action":"privateMessage","to":3,"data":"hi"}),
        json!({"action":"stateUpdate","data":[]}),
        json!({"action":"newWord","data":{"id":"w","text":"t","x":1,"y":2}}),
        json!({"action":"moving","elementID":"w","dx":1,"dy":1}),
        json!({"action":"moveEnd","elementID":"w","finalX":1,"finalY":1}),
        json!({"action":"freeze","elementID":"w"}),
        json!({"action":"unfreeze","elementID":"w"}),
        json!({"action":"delete","elementID":"w"}),
        json!({"action":"modify","elementID":"w","update":{"text":"x"}}),
        json!({"action":"spin","deg":90}),
    ];
    for v in writes {
        assert!(decode(v.clone()).message.writes(), "{v}");
    }
}

#[test]
fn the_auth_errors_have_stable_codes() {
    for (code, text) in [
        (ErrorCode::Forbidden, "forbidden"),
        (ErrorCode::Unauthorized, "unauthorized"),
        (ErrorCode::TokenExpired, "token_expired"),
    ] {
        assert_eq!(code.as_str(), text);
        server_golden(
            ServerMessage::Error {
                data: ErrorBody::new(code, "m"),
            }
            .into(),
            json!({"action":"error","data":{"code":text,"message":"m"}}),
        );
    }
    assert_eq!(protocol::close_code::TOKEN_EXPIRED, 4001);
    assert_eq!(protocol::close_code::RESUMING, 4010);
}

#[test]
fn the_backend_close_codes_are_stable() {
    assert_eq!(protocol::close_code::KICKED, 4002);
    assert_eq!(protocol::close_code::ROOM_CLOSED, 4003);
}

#[test]
fn a_published_message_is_from_the_server_as_a_string_no_member_can_send() {
    let mut fields = serde_json::Map::new();
    fields.insert("data".into(), json!({"text":"hi"}));
    fields.insert("from".into(), json!(protocol::api::FROM_SERVER));
    let message = ServerMessage::Custom(protocol::CustomMessage {
        action: "announce".into(),
        fields,
    });
    server_golden(
        ServerFrame {
            message,
            seq: Some(7),
            epoch: Some(3),
        },
        json!({"action":"announce","data":{"text":"hi"},"from":"server","seq":7,"epoch":3}),
    );
}

#[test]
fn the_api_bodies_read_as_documented() {
    use protocol::api::{DisconnectRequest, PublishRequest};
    let publish: PublishRequest =
        serde_json::from_value(json!({"action":"talkToRoom","data":"hello","idempotencyKey":"k1"}))
            .unwrap();
    assert_eq!(publish.idempotency_key.as_deref(), Some("k1"));
    assert_eq!(publish.data, json!("hello"));
    assert!(serde_json::from_value::<PublishRequest>(json!({"data":1})).is_err());
    assert!(serde_json::from_value::<PublishRequest>(json!({"action":"a","x":1})).is_err());
    let kick: DisconnectRequest =
        serde_json::from_value(json!({"user":"u-1","banSeconds":60})).unwrap();
    assert_eq!(
        (kick.user.as_deref(), kick.ban_seconds),
        (Some("u-1"), Some(60))
    );
}

#[test]
fn a_published_chat_line_decodes_as_a_custom_message_from_the_server() {
    let text = r#"{"action":"talkToRoom","data":"hi","from":"server","seq":3,"epoch":1}"#;
    let frame = ServerFrame::decode(text).unwrap();
    let ServerMessage::Custom(c) = frame.message else {
        panic!("{text} decoded as {:?}", frame.message);
    };
    assert_eq!(c.fields["from"], protocol::api::FROM_SERVER);
}

#[test]
fn a_webhook_event_reads_and_writes_its_type_as_documented() {
    let text = json!({"id":"r.1.2.member.left.7","type":"member.left","room":"r","epoch":1,"seq":2,
        "at":1765140000000u64,"data":{"id":7,"name":"n","color":"#000","reason":"kicked"}});
    let event: protocol::api::WebhookEvent = serde_json::from_value(text.clone()).unwrap();
    assert_eq!((event.kind.as_str(), event.seq), ("member.left", 2));
    assert_eq!(serde_json::to_value(&event).unwrap(), text);
}
