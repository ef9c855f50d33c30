//! The connection line: connected / reconnecting / taken over elsewhere /
//! refused (a private room, a link not valid),
//! round-trip time, and how many changes wait for the room to come back.

use yew::prelude::*;

use crate::room_state::Connection;

#[derive(Properties, PartialEq)]
pub struct ConnectionStatusProps {
    pub connection: Connection,
    pub rtt_ms: Option<f64>,
    pub queued: usize,
    /// Reconnect here after another tab or device took the session over.
    pub take_back: Callback<()>,
}

#[component]
pub fn ConnectionStatus(props: &ConnectionStatusProps) -> Html {
    let (class, text) = match &props.connection {
        Connection::Connecting => ("connecting", "connecting…".to_owned()),
        Connection::Open => ("connected", "connected".to_owned()),
        Connection::Reconnecting {
            attempt,
            retry_in_ms,
        } => (
            "reconnecting",
            format!(
                "reconnecting… (attempt {attempt}, retry in {:.1} s)",
                *retry_in_ms as f64 / 1000.0
            ),
        ),
        Connection::Replaced => ("replaced", "continued in another tab or window".to_owned()),
        Connection::Refused(why) => ("refused", format!("not joined: {}", why.short())),
    };
    let take_back = props.take_back.reform(|_: MouseEvent| ());
    let rtt = match props.rtt_ms {
        Some(ms) => format!("{ms:.0} ms"),
        None => "– ms".to_owned(),
    };
    html! {
        <div class="status-line">
            <span id="connection-status" class={classes!("status", class)}>
                <span class="status-dot"></span>{ text }
            </span>
            if props.connection == Connection::Replaced {
                <button id="take-back" class="button small" onclick={take_back}>
                    { "Continue here" }
                </button>
            }
            <span class="rtt-wrap" title="Round-trip time to the server">
                { "RTT " }<span id="rtt">{ rtt }</span>
            </span>
            if props.queued > 0 {
                <span id="queued" class="queued">
                    { format!("{} change{} waiting to be sent", props.queued,
                        if props.queued == 1 { "" } else { "s" }) }
                </span>
            }
        </div>
    }
}
