//! smoke: a tiny broadcast (2 rooms × 3 clients for a second) and a tiny
//! echo run, failing unless every broadcast was delivered and echoes came
//! back. CI runs it against the real server to prove generator and server
//! still speak the same protocol.

use std::time::Duration;

use anyhow::Result;

use super::{broadcast, echo, Common};
use crate::report::Report;

/// Runs both and says whether they passed, with the reason when not.
pub async fn run(common: &Common) -> Result<(Vec<Report>, Result<(), String>)> {
    let mut c = common.clone();
    c.duration = c.duration.min(Duration::from_secs(1));
    let mut b = broadcast::Args::new(c.clone(), 2, 3, 5.0);
    b.drain = Duration::from_secs(1);
    let chat = broadcast::run(&b).await?;
    let e = echo::run(&echo::Args {
        common: c,
        clients: 3,
        per_room: 3,
        // Under attractio's default per-client rate limit (60/s).
        rate: 20.0,
    })
    .await?;
    let verdict = verdict(&chat, &e);
    Ok((vec![chat, e], verdict))
}

/// Passes when something was sent, all of it was delivered, and echoes came back.
pub fn verdict(chat: &Report, echo: &Report) -> Result<(), String> {
    let sent = chat.sent.unwrap_or(0);
    let ratio = chat.delivery_ratio.unwrap_or(0.0);
    if sent == 0 {
        return Err("broadcast sent nothing".into());
    }
    if chat.delivered.unwrap_or(0) == 0 {
        return Err("no broadcast came back".into());
    }
    if ratio < 1.0 {
        return Err(format!("broadcast delivery ratio {ratio:.5} < 1"));
    }
    if echo.round_trips.unwrap_or(0) == 0 {
        return Err("no echo came back".into());
    }
    if let Some(w) = echo.warnings.first() {
        return Err(format!("echo: {w}"));
    }
    Ok(())
}
