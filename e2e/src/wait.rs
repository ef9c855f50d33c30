//! Waiting for the page to catch up. The app is asynchronous twice over
//! (socket and render), so every check polls until it holds or a deadline
//! passes, and a timeout reports what was last seen instead of a bare
//! "false".

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};

/// Long enough for a loaded CI machine, short enough to fail a broken test quickly.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(100);

/// Poll `probe` until it returns `Ok`; its last error says why it did not.
pub async fn eventually<T, F, Fut>(what: &str, probe: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    eventually_within(DEFAULT_TIMEOUT, what, probe).await
}

/// [`eventually`] with its own deadline.
pub async fn eventually_within<T, F, Fut>(timeout: Duration, what: &str, mut probe: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match probe().await {
            Ok(value) => return Ok(value),
            Err(last) if Instant::now() >= deadline => {
                return Err(anyhow!(
                    "timed out after {timeout:?} waiting until {what}; last seen: {last:#}"
                ));
            }
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}
