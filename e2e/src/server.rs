//! The server under test: the real `attractio` binary serving the real
//! built app, on a port of its own choosing and with a data directory of
//! its own. It can be stopped gracefully (SIGTERM, as an operator would)
//! and started again on the same port with the same data, which is how
//! the reconnect test takes the server away from the pages.

use std::fs::OpenOptions;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

use crate::paths::{self, ScratchDir};

const START_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

pub struct TestServer {
    child: Option<Child>,
    /// The loopback address it listens on (127.0.0.1 unless started as a
    /// cluster node on an address of its own).
    pub ip: IpAddr,
    /// The bound port, read from the server's ready line; kept across restarts.
    pub port: u16,
    /// Flags beyond address, static and data dir (e.g. `--max-room-size 1`).
    extra: Vec<String>,
    /// Boards persist here across a restart; removed when the test ends.
    data: ScratchDir,
    /// The server's stderr (its logs), appended across restarts.
    log: PathBuf,
}

impl TestServer {
    /// Start a fresh server on a free port. `name` labels its log in artifacts/.
    pub async fn start(name: &str, extra: &[&str]) -> Result<TestServer> {
        TestServer::start_at(name, "127.0.0.1", extra).await
    }

    /// Like [`TestServer::start`], listening on `ip` (e.g. `127.0.0.2`, so
    /// that two nodes of a cluster each have an address of their own).
    pub async fn start_at(name: &str, ip: &str, extra: &[&str]) -> Result<TestServer> {
        let mut server = TestServer {
            child: None,
            ip: ip
                .parse()
                .with_context(|| format!("{ip:?} is not an IP address"))?,
            port: 0,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            data: ScratchDir::new(name)?,
            log: paths::artifacts()?.join(format!("{name}-server.log")),
        };
        let _ = std::fs::remove_file(&server.log);
        server.spawn().await?;
        Ok(server)
    }

    /// `http://IP:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr())
    }

    /// `IP:PORT`, where it listens.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.port)
    }

    async fn spawn(&mut self) -> Result<()> {
        let bin = paths::server_binary()?;
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("cannot open {}", self.log.display()))?;
        let mut cmd = Command::new(&bin);
        cmd.arg("--addr")
            .arg(format!("{}:{}", self.ip, self.port))
            .arg("--static-dir")
            .arg(paths::static_dir()?)
            .arg("--data-dir")
            .arg(self.data.path())
            .args(&self.extra)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(START_TIMEOUT, async {
            while let Some(line) = lines.next_line().await? {
                if let Some(port) = ready_port(&line) {
                    return Ok(port);
                }
            }
            bail!("the server closed stdout without printing its ready line")
        })
        .await;
        let port = match ready {
            Ok(Ok(port)) => port,
            Ok(Err(e)) => {
                let status = child.wait().await?;
                bail!("{e}; it exited with {status}.{}", self.log_tail())
            }
            Err(_) => bail!(
                "the server printed no `attractio listening on` line within {START_TIMEOUT:?}.{}",
                self.log_tail()
            ),
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        if self.port != 0 && port != self.port {
            bail!("restarted on port {port}, expected {}", self.port);
        }
        self.port = port;
        self.child = Some(child);
        Ok(())
    }

    /// SIGTERM and wait for a clean exit (status 0), as the contract promises.
    pub async fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = child.id().context("the server already exited")?;
        let sent = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await?;
        if !sent.success() {
            bail!("could not send SIGTERM to the server (pid {pid})");
        }
        let status = tokio::time::timeout(STOP_TIMEOUT, child.wait())
            .await
            .with_context(|| {
                format!("the server did not exit within {STOP_TIMEOUT:?} of SIGTERM")
            })??;
        if !status.success() {
            bail!(
                "the server exited with {status} after SIGTERM (log: {})",
                self.log.display()
            );
        }
        Ok(())
    }

    /// `kill -9`: no flush, no clean-stop record, as a crash would leave it.
    pub async fn kill(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        child.kill().await.context("cannot SIGKILL the server")?;
        Ok(())
    }

    /// A counter from `/metrics` whose name ends with `name` (e.g.
    /// `store_saves_total`).
    pub async fn metric(&self, name: &str) -> Result<u64> {
        let mut stream = tokio::net::TcpStream::connect(self.addr()).await?;
        let request = format!("GET /metrics HTTP/1.0\r\nHost: {}\r\n\r\n", self.addr());
        stream.write_all(request.as_bytes()).await?;
        let mut body = String::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut body))
            .await
            .context("/metrics did not answer within 5s")??;
        body.lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| {
                let (key, value) = l.split_once(' ')?;
                key.ends_with(name).then(|| value.trim().parse().ok())?
            })
            .with_context(|| format!("no {name} in /metrics"))
    }

    /// Start again after [`TestServer::stop`] or [`TestServer::kill`]: same port, same data directory.
    pub async fn start_again(&mut self) -> Result<()> {
        self.spawn().await
    }

    /// The last lines of the server's log, for a failure message.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(15)..].join("\n");
        format!("\nlast lines of {}:\n{tail}", self.log.display())
    }
}

/// The port in `attractio listening on http://127.0.0.1:PORT`.
fn ready_port(line: &str) -> Option<u16> {
    let rest = line.trim().strip_prefix("attractio listening on http://")?;
    rest.rsplit(':').next()?.trim_end_matches('/').parse().ok()
}
