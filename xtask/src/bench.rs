//! `cargo xtask bench`: drive the load generator against a fresh attractio
//! and a fresh seed-node (the Node.js baseline) for each scenario, the
//! server pinned to CPU 0 and the generator to CPU 1 so they do not fight
//! for a core. It drives; loadgen measures, prints its tables, appends JSON
//! report lines to target/bench/reports.jsonl, sums them up side by side
//! and draws target/bench/bench.svg.
//! The scenario sizes match bench/run.sh, so the two give comparable numbers.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::server::{attractio_ready, free_port, Server};
use crate::shell::{self, run, step, which};
use crate::test::{absolute, scratch_dir, target_dir};

/// The seed-node baseline as shipped next to the repository.
const SEED_SOURCE: &str = "../shared/peers/seed-node";
/// Our working copy of it, where `npm ci` may write node_modules.
const SEED_COPY: &str = "target/seed-node";
/// Where the JSON report lines and the plot go.
const OUT: &str = "target/bench";

/// loadgen's scenarios (its subcommands) and their sizes.
const SCENARIOS: &[(&str, &[&str])] = &[
    (
        "broadcast",
        &[
            "--rooms",
            "50",
            "--clients",
            "10",
            "--rate",
            "10",
            "--duration",
            "10s",
        ],
    ),
    (
        "ceiling",
        &[
            "--clients",
            "200",
            "--start-rate",
            "1",
            "--factor",
            "1.25",
            "--duration",
            "3s",
            "--max-steps",
            "24",
        ],
    ),
    ("echo", &["--clients", "50", "--duration", "5s"]),
    (
        "drag",
        &["--rooms", "50", "--clients", "5", "--duration", "10s"],
    ),
    (
        "idle",
        &[
            // The sandbox caps open files at 20,000 per process.
            "--connections",
            "19000",
            "--per-room",
            "10",
            "--duration",
            "10s",
        ],
    ),
];

/// attractio's guards opened up so the generator measures the server, not its
/// limits (the ceiling scenario puts 200 clients in one room at rising rates).
const OPEN_LIMITS: &[&str] = &[
    "--max-room-size",
    "256",
    "--rate-limit",
    "1000000",
    "--rate-burst",
    "1000000",
    // Every generated client comes from 127.0.0.1: the per-address limits
    // would count them all as one user.
    "--max-connections-per-ip",
    "1000000",
    "--new-rooms-per-minute",
    "1000000",
    "--max-stored-rooms-per-ip",
    "1000000",
];

/// A server the generator can be pointed at.
#[derive(Clone, Copy)]
enum Target {
    Attractio,
    Seed,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Attractio => "attractio",
            Target::Seed => "seed-node",
        }
    }
}

/// Run `only` (or every scenario when empty), passing `extra` to each loadgen run.
pub fn all(only: &[String], extra: &[String]) -> Result<()> {
    for name in only {
        if !SCENARIOS.iter().any(|(s, _)| s == name) {
            let known: Vec<&str> = SCENARIOS.iter().map(|(s, _)| *s).collect();
            bail!("no scenario {name:?}; known: {}", known.join(", "));
        }
    }
    step("build the release server and load generator");
    run(shell::cargo().args(["build", "--release", "-p", "server", "-p", "loadgen"]))?;
    let release = target_dir().join("release");
    let server = absolute(&release.join("attractio"))?;
    let loadgen = absolute(&release.join("loadgen"))?;
    let seed = prepare_seed()?;
    let pin = which("taskset").is_some();
    if !pin {
        println!("taskset not found (util-linux): running unpinned");
    }

    std::fs::create_dir_all(OUT)?;
    let reports = absolute(&Path::new(OUT).join("reports.jsonl"))?;
    let _ = std::fs::remove_file(&reports);
    let mut failed = Vec::new();
    let chosen = SCENARIOS
        .iter()
        .filter(|(s, _)| only.is_empty() || only.iter().any(|o| o == s));
    for (scenario, sizes) in chosen {
        // Idle connections must survive a few heartbeats within the run.
        let ping_ms = if *scenario == "idle" { 5_000 } else { 30_000 };
        for target in [Target::Seed, Target::Attractio] {
            let name = target.name();
            let running = match target {
                Target::Attractio => start_attractio(&server, pin, ping_ms)?,
                Target::Seed => start_seed(&seed, pin, ping_ms)?,
            };
            step(&format!("{scenario} against {name}"));
            let mut cmd = pinned(pin, "1", &loadgen);
            cmd.arg(scenario)
                .args(["--url", &format!("ws://127.0.0.1:{}/", running.port)])
                .args(["--label", name])
                .args(["--server-pid", &running.pid().to_string()])
                .arg("--json")
                .arg(&reports)
                .args(*sizes);
            if let Target::Attractio = target {
                cmd.arg("--metrics-url")
                    .arg(format!("http://127.0.0.1:{}/metrics", running.port));
            }
            cmd.args(extra);
            if let Err(error) = run(&mut cmd) {
                println!("{error:#}");
                failed.push(format!("{scenario} against {name}"));
            }
            if let Err(error) = running.stop() {
                println!("{error:#}");
            }
        }
    }

    if reports.is_file() {
        step("summary");
        run(Command::new(&loadgen).arg("summary").arg(&reports))?;
        let plot = absolute(&Path::new(OUT).join("bench.svg"))?;
        run(Command::new(&loadgen)
            .arg("plot")
            .arg("--out")
            .arg(&plot)
            .arg(&reports))?;
        println!(
            "reports: {}\nplot:    {}",
            reports.display(),
            plot.display()
        );
    }
    if !failed.is_empty() {
        bail!("these runs failed: {}", failed.join(", "));
    }
    Ok(())
}

/// `program` under `taskset -c cpu` when pinning is possible.
fn pinned(pin: bool, cpu: &str, program: &Path) -> Command {
    if pin {
        let mut cmd = Command::new("taskset");
        cmd.args(["-c", cpu]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

fn start_attractio(server: &Path, pin: bool, ping_ms: u64) -> Result<Server> {
    let data = scratch_dir("bench-data")?;
    let mut cmd = pinned(pin, "0", server);
    cmd.args(["--addr", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .args(OPEN_LIMITS)
        .args(["--ping-interval", &format!("{ping_ms}ms")])
        .env("RUST_LOG", "warn");
    Server::start("attractio", cmd, attractio_ready)
}

fn start_seed(seed: &Path, pin: bool, ping_ms: u64) -> Result<Server> {
    let port = free_port()?;
    let mut cmd = pinned(pin, "0", Path::new("node"));
    cmd.arg("server.js")
        .current_dir(seed)
        .env("PORT", port.to_string())
        .env("WS_PING_MS", ping_ms.to_string());
    Server::start("seed-node", cmd, move |line| {
        line.starts_with("seed-node listening").then_some(port)
    })
}

/// Copy the seed-node baseline into target/ and install its packages once.
fn prepare_seed() -> Result<PathBuf> {
    step("prepare the seed-node baseline");
    let source = Path::new(SEED_SOURCE);
    if !source.join("server.js").is_file() {
        bail!("the seed-node baseline is not at {}", source.display());
    }
    let copy = Path::new(SEED_COPY);
    copy_tree(source, copy)?;
    if which("npm").is_none() {
        bail!("npm is needed for the seed-node baseline; install Node.js and npm");
    }
    if !copy.join("node_modules").is_dir() {
        run(Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(copy))?;
    }
    absolute(copy)
}

/// Copy files (not node_modules), leaving the copies writable: shared/ may be read-only.
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)?.flatten() {
        let name = entry.file_name();
        if name == "node_modules" {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            if target.exists() {
                std::fs::remove_file(&target)?;
            }
            std::fs::copy(entry.path(), &target)
                .with_context(|| format!("cannot copy {}", entry.path().display()))?;
            let mode = std::fs::metadata(&target)?.permissions().mode();
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode | 0o200))?;
        }
    }
    Ok(())
}
