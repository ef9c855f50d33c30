//! A server under test as a child process: started, found ready by the
//! line it prints on stdout, and stopped with SIGTERM (then SIGKILL if it
//! hangs). Used for the load smoke and the bench, for our server and for
//! the seed-node baseline alike.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::shell::display;

/// How long a server may take to print its ready line.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a graceful stop may take before the process is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// A running server; killed on drop if not stopped.
pub struct Server {
    child: Child,
    /// The port it listens on, from its ready line.
    pub port: u16,
    name: &'static str,
}

/// The port in attractio's ready line: `attractio listening on http://127.0.0.1:PORT`.
pub fn attractio_ready(line: &str) -> Option<u16> {
    let rest = line.trim().strip_prefix("attractio listening on http://")?;
    rest.rsplit(':').next()?.trim_end_matches('/').parse().ok()
}

/// A port that was free a moment ago, for servers that cannot report their own.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot bind a local port")?;
    Ok(listener.local_addr()?.port())
}

impl Server {
    /// Start `cmd` and wait until `ready` finds the port in one of its stdout lines.
    /// Its later stdout is forwarded, prefixed with `name`; stderr goes to ours.
    pub fn start(
        name: &'static str,
        mut cmd: Command,
        ready: impl Fn(&str) -> Option<u16> + Send + 'static,
    ) -> Result<Server> {
        let shown = display(&cmd);
        println!("$ {shown} &");
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start `{shown}`"))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let (port_tx, port_rx) = mpsc::channel();
        thread::spawn(move || {
            let mut port_tx = Some(port_tx);
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                println!("[{name}] {line}");
                if let Some(port) = ready(&line) {
                    if let Some(tx) = port_tx.take() {
                        let _ = tx.send(port);
                    }
                }
            }
        });
        let mut server = Server {
            child,
            port: 0,
            name,
        };
        match port_rx.recv_timeout(START_TIMEOUT) {
            Ok(port) => {
                server.port = port;
                Ok(server)
            }
            Err(_) => {
                let status = server.child.try_wait().ok().flatten();
                match status {
                    Some(status) => bail!("{name} exited before it was ready ({status})"),
                    None => bail!("{name} printed no ready line within {START_TIMEOUT:?}"),
                }
            }
        }
    }

    /// The process id (of the server itself: `taskset` execs it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Wait for it to exit by itself (e.g. on Ctrl-C, which reaches it too).
    pub fn wait(mut self) -> Result<ExitStatus> {
        Ok(self.child.wait()?)
    }

    /// SIGTERM, wait for a graceful exit, and return its status.
    pub fn stop(mut self) -> Result<ExitStatus> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        bail!(
            "{} did not stop within {STOP_TIMEOUT:?} of SIGTERM; killed it",
            self.name
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_line_gives_the_port() {
        assert_eq!(
            attractio_ready("attractio listening on http://127.0.0.1:41234"),
            Some(41234)
        );
        assert_eq!(
            attractio_ready("attractio listening on http://127.0.0.1:8080/\n"),
            Some(8080)
        );
        assert_eq!(attractio_ready("something else :3000"), None);
    }
}
