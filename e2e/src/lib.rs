//! The harness for attractio's browser tests: each test starts the real
//! server (the binary named by `ATTRACTIO_BIN`, serving the built app in
//! `ATTRACTIO_STATIC`) on its own port with its own data directory, and
//! drives headless Chromium windows through chromedriver. `cargo xtask test`
//! builds both and sets the variables; run alone, the harness looks in the
//! places xtask builds to and says how to build what is missing. Nothing
//! here skips: a missing browser, driver, binary or app is a failure.

mod browser;
mod paths;
mod peer;
mod proxy;
mod redis;
mod server;
mod wait;

pub use browser::{Browser, Device, Window, WordView};
pub use peer::Peer;
pub use proxy::{CutProxy, WsCapture};
pub use redis::Redis;
pub use server::TestServer;
pub use wait::{eventually, eventually_within};

/// Browser tests run one at a time: two Chromium windows and a server each
/// already keep both cores of a small machine busy.
pub async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::OnceLock<tokio::sync::Mutex<()>> = std::sync::OnceLock::new();
    SERIAL
        .get_or_init(|| tokio::sync::Mutex::new(()))
        .lock()
        .await
}
