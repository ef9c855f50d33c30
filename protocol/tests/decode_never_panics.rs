//! The decoder is total: any bytes give a frame or a typed error.

use proptest::prelude::*;
use protocol::ClientFrame;

proptest! {
    #[test]
    fn arbitrary_text_never_panics(s in ".{0,200}") {
        let _ = ClientFrame::decode(&s);
    }

    #[test]
    fn json_shaped_text_never_panics(
        action in prop::sample::select(vec!["newClient","echo","talkToRoom","stateUpdate","moving","moveEnd","freeze","modify","newWord","privateMessage","x"]),
        key in "[a-zA-Z]{1,10}",
        val in prop_oneof![Just("1".to_string()), Just("\"s\"".to_string()), Just("null".to_string()), Just("[{}]".to_string()), Just("{\"text\":1}".to_string()), Just("1e999".to_string())],
    ) {
        let text = format!(r#"{{"action":"{action}","{key}":{val},"room":"r"}}"#);
        let _ = ClientFrame::decode(&text);
    }
}
