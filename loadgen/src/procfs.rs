//! What the kernel says about a process: CPU seconds (utime+stime from
//! `/proc/PID/stat`), resident memory (`VmRSS`, peak `VmHWM` from
//! `/proc/PID/status`), bytes written (`wchar` from `/proc/PID/io`: every
//! `write`/`send` to sockets included), the generator's own CPU via `getrusage`, and raising
//! the open-file limit so one process can hold 100k sockets.

use std::fs;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// CPU seconds (user + system) used so far by process `pid`.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    let ticks = parse_stat_ticks(&stat).context("unexpected /proc/PID/stat format")?;
    Ok(ticks as f64 / clock_ticks_per_second())
}

/// Bytes process `pid` has passed to write-like system calls so far
/// (`wchar` of `/proc/PID/io`): socket sends included, so it is what a
/// server put on the wire plus its logs.
pub fn written_bytes(pid: u32) -> Result<u64> {
    let io = fs::read_to_string(format!("/proc/{pid}/io"))
        .with_context(|| format!("reading /proc/{pid}/io"))?;
    parse_wchar(&io).context("no wchar in /proc/PID/io")
}

/// The `wchar:` line of `/proc/PID/io`.
pub fn parse_wchar(io: &str) -> Option<u64> {
    io.lines()
        .find_map(|l| l.strip_prefix("wchar:"))
        .and_then(|v| v.trim().parse().ok())
}

/// utime + stime in clock ticks. Fields are counted after the `)` that ends
/// the command name, which may itself contain spaces.
pub fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After ")": state is field 3 of stat(5), so utime (14) and stime (15)
    // are at indexes 11 and 12 here.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// Resident memory of a process, in KiB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    /// Current resident set (`VmRSS`).
    pub rss_kb: u64,
    /// Peak resident set (`VmHWM`).
    pub peak_rss_kb: u64,
}

/// Memory of process `pid` (use "self" for this process).
pub fn memory(pid: &str) -> Result<Memory> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    Ok(parse_status(&status))
}

/// `VmRSS` and `VmHWM` out of a `/proc/PID/status` text.
pub fn parse_status(status: &str) -> Memory {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Memory {
        rss_kb: field("VmRSS:"),
        peak_rss_kb: field("VmHWM:"),
    }
}

/// CPU seconds this process has used so far.
pub fn own_cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// Raises the soft open-file limit to the hard one (and, when allowed, the
/// hard one to `want`). Returns the soft limit now in force.
pub fn raise_nofile(want: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_max < want {
            let raised = libc::rlimit {
                rlim_cur: want,
                rlim_max: want,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return want;
            }
        }
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
    }
    lim.rlim_cur
}

/// CPU and memory of a watched server over one measured interval.
pub struct ServerWatch {
    pid: u32,
    cpu_at_start: f64,
}

/// What the server used during the interval.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServerUsage {
    pub pid: u32,
    /// CPU seconds (user + system) spent during the interval.
    pub cpu_s: f64,
    pub rss_kb: u64,
    pub peak_rss_kb: u64,
}

impl ServerWatch {
    /// Starts watching `pid`, if given and readable.
    pub fn start(pid: Option<u32>) -> Option<Self> {
        let pid = pid?;
        match cpu_seconds(pid) {
            Ok(cpu) => Some(Self {
                pid,
                cpu_at_start: cpu,
            }),
            Err(e) => {
                eprintln!("warning: cannot watch server pid {pid}: {e:#}");
                None
            }
        }
    }

    /// CPU used since `start`, and memory now.
    pub fn finish(&self) -> Option<ServerUsage> {
        let cpu = cpu_seconds(self.pid).ok()?;
        let mem = memory(&self.pid.to_string()).ok()?;
        Some(ServerUsage {
            pid: self.pid,
            cpu_s: cpu - self.cpu_at_start,
            rss_kb: mem.rss_kb,
            peak_rss_kb: mem.peak_rss_kb,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_ticks_survive_a_command_name_with_spaces() {
        let stat = "4242 (node server) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 11 0";
        assert_eq!(parse_stat_ticks(stat), Some(300));
    }

    #[test]
    fn status_memory_fields_are_read_in_kib() {
        let status = "Name:\tattractio\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(
            parse_status(status),
            Memory {
                rss_kb: 10240,
                peak_rss_kb: 20480
            }
        );
    }

    #[test]
    fn written_bytes_are_the_wchar_line() {
        let io = "rchar: 10\nwchar: 6800000000\nsyscr: 3\n";
        assert_eq!(parse_wchar(io), Some(6_800_000_000));
        assert_eq!(parse_wchar("rchar: 1\n"), None);
        assert!(written_bytes(std::process::id()).is_ok());
    }

    #[test]
    fn this_process_is_measurable() {
        let pid = std::process::id();
        assert!(cpu_seconds(pid).is_ok());
        assert!(memory("self").map(|m| m.rss_kb > 0).unwrap_or(false));
        assert!(own_cpu_seconds() >= 0.0);
        assert!(raise_nofile(0) > 0);
    }
}
