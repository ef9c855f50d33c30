//! A `redis-server` of the test's own, for cluster tests: on a free
//! loopback port, without persistence, killed by its PID when dropped. A
//! missing `redis-server` is a failure, like a missing browser.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::paths::ScratchDir;

const START_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Redis {
    child: Child,
    /// The port it listens on, on 127.0.0.1.
    pub port: u16,
    _dir: ScratchDir,
}

impl Redis {
    /// Start one and wait until it accepts connections. `name` labels its
    /// scratch directory.
    pub async fn start(name: &str) -> Result<Redis> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let dir = ScratchDir::new(&format!("{name}-redis"))?;
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .context(
                "cannot start redis-server (cargo xtask test installs it; apt-get install \
                 redis-server)",
            )?;
        let mut redis = Redis {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if let Some(status) = redis.child.try_wait()? {
                bail!("redis-server exited with {status} before listening on {port}");
            }
            if Instant::now() > deadline {
                bail!("redis-server did not listen on {port} within {START_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(redis)
    }

    /// `redis://127.0.0.1:PORT`, for `--redis-url`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
