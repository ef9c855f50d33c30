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

/// The scenarios loadgen runs, one fresh server pair per scenario.
const SCENARIOS: &[&str] = &["fanout", "chat", "drag", "churn"];

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

    for scenario in SCENARIOS {
        for target in [Target::Attractio, Target::Seed] {
            let (name, running) = match target {
                Target::Attractio => ("attractio", start_attractio(&server, pin)?),
                Target::Seed => ("seed-node", start_seed(&seed, pin)?),
            };
            step(&format!("scenario {scenario} against {name}"));
            let url = format!("ws://127.0.0.1:{}/", running.port);
            let mut cmd = pinned(pin, "1", &loadgen);
            cmd.args([scenario, "--url", &url]).args(extra);
            let outcome = run(&mut cmd);
            let _ = running.stop();
            outcome.with_context(|| format!("scenario {scenario} against {name} failed"))?;
        }
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
