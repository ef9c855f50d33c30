//! `cargo xtask bench`: drive the load generator against a fresh attractio
//! and a fresh seed-node (the Node.js baseline) for each scenario, the
//! server pinned to CPU 0 and the generator to CPU 1 so they do not fight
//! for a core. It drives; loadgen measures and prints.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::server::{attractio_ready, free_port, Server};
use crate::shell::{self, run, step, which};
use crate::test::{absolute, scratch_dir, target_dir};

/// The seed-node baseline as shipped next to the repository.
const SEED_SOURCE: &str = "../shared/peers/seed-node";
/// Our working copy of it, where `npm ci` may write node_modules.
const SEED_COPY: &str = "target/seed-node";

/// loadgen's scenarios (its subcommands), one fresh server per scenario and target.
const SCENARIOS: &[&str] = &["broadcast", "ceiling", "idle", "echo", "drag"];
/// Where the JSON report lines and the plot go.
const OUT: &str = "target/bench";
/// attractio's limits opened up so the generator measures the server, not its guards
/// (the ceiling scenario puts 200 clients in one room at rising rates).
const OPEN_LIMITS: &[&str] = &[
    "--max-room-size",
    "100000",
    "--rate-limit",
    "1000000",
    "--rate-burst",
    "1000000",
];

/// A server the generator can be pointed at.
#[derive(Clone, Copy)]
enum Target {
    Attractio,
    Seed,
}

pub fn all(extra: &[String]) -> Result<()> {
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
    for scenario in SCENARIOS {
        for target in [Target::Attractio, Target::Seed] {
            let (name, running) = match target {
                Target::Attractio => ("attractio", start_attractio(&server, pin)?),
                Target::Seed => ("seed-node", start_seed(&seed, pin)?),
            };
            step(&format!("scenario {scenario} against {name}"));
            let url = format!("ws://127.0.0.1:{}/", running.port);
            let mut cmd = pinned(pin, "1", &loadgen);
            cmd.args([scenario, "--url", &url, "--label", name])
                .arg("--server-pid")
                .arg(running.pid().to_string())
                .arg("--json")
                .arg(&reports);
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

    step("plot");
    let plot = Path::new(OUT).join("bench.svg");
    if reports.is_file() {
        run(Command::new(&loadgen)
            .arg("plot")
            .arg("--out")
            .arg(&plot)
            .arg(&reports))?;
        println!("reports: {}\nplot: {}", reports.display(), plot.display());
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

fn start_attractio(server: &Path, pin: bool) -> Result<Server> {
    let data = scratch_dir("bench-data")?;
    let mut cmd = pinned(pin, "0", server);
    cmd.args(["--addr", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .args(OPEN_LIMITS)
        .env("RUST_LOG", "warn");
    Server::start("attractio", cmd, attractio_ready)
}

fn start_seed(seed: &Path, pin: bool) -> Result<Server> {
    let port = free_port()?;
    let mut cmd = pinned(pin, "0", Path::new("node"));
    cmd.arg("server.js")
        .current_dir(seed)
        .env("PORT", port.to_string());
    Server::start("seed-node", cmd, move |line| {
        line.starts_with("seed-node listening").then_some(port)
    })
}

/// Copy the seed-node baseline into target/ and install its packages once.
fn prepare_seed() -> Result<std::path::PathBuf> {
    step("prepare the seed-node baseline");
    let source = Path::new(SEED_SOURCE);
    if !source.join("server.js").is_file() {
        bail!("the seed-node baseline is not at {}", source.display());
    }
    let copy = Path::new(SEED_COPY);
    std::fs::create_dir_all(copy)?;
    for file in ["server.js", "package.json", "package-lock.json"] {
        std::fs::copy(source.join(file), copy.join(file))
            .with_context(|| format!("cannot copy {file} of the seed-node"))?;
    }
    copy_tree(&source.join("static"), &copy.join("static"))?;
    if !copy.join("node_modules").is_dir() {
        run(Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(copy))?;
    }
    absolute(copy)
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    if !from.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)?.flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}
