//! `cargo xtask test`: everything CI checks, in the order that fails
//! fastest — formatting, lints, the app's compile and the workspace tests
//! (while missing tools install in the background), trunk's bundle of the
//! app, the browser tests and a short load smoke against a fresh server. The
//! first failure stops the run with the step's name. cargo test's own
//! lines are passed through, and a closing line adds them up.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::js;
use crate::progress::Progress;
use crate::server::{attractio_ready, Server};
use crate::shell::{self, display, run, step};
use crate::tools::{self, Needs};
use crate::web::{self, Profile};

/// Test counts added up over every `cargo test` run.
#[derive(Default)]
struct Tally {
    passed: u64,
    failed: u64,
    ignored: u64,
}

impl Tally {
    /// Count one `test result: ok. 3 passed; 0 failed; 1 ignored; ...` line.
    fn add_line(&mut self, line: &str) {
        let Some(rest) = line.trim().strip_prefix("test result: ") else {
            return;
        };
        for part in rest.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(label), Some(count)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(count) = count.parse::<u64>() else {
                continue;
            };
            match label {
                "passed" => self.passed += count,
                "failed" => self.failed += count,
                "ignored" => self.ignored += count,
                _ => {}
            }
        }
    }
}

pub fn all() -> Result<()> {
    let mut tally = Tally::default();

    step("format (cargo fmt --check)");
    run(shell::cargo().args(["fmt", "--all", "--", "--check"]))
        .context("formatting differs: run `cargo fmt --all`")?;

    // The tools install in the background while everything that needs
    // none of them runs: only trunk's bundle and the browser tests do.
    let progress = Progress::new();
    let needs = Needs {
        browser: true,
        wasm_opt: false,
        redis: true,
    };
    let installs = tools::start(needs, &progress)?;

    step("lints (clippy, native)");
    run(shell::cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;

    step("lints (clippy, web-client on wasm32)");
    run(shell::cargo().args([
        "clippy",
        "-p",
        "web-client",
        "--target",
        "wasm32-unknown-unknown",
        "--",
        "-D",
        "warnings",
    ]))?;

    let app = web::test_dir();
    if web::staleness(Profile::Debug, &app).is_some() {
        step("compile the web app (wasm32, debug; trunk bundles it later)");
        run(&mut web::compile(Profile::Debug))?;
    }

    // Every member's tests, the web client's pure core included (it runs
    // natively); the browser tests come later, once the app is built.
    step("workspace tests (cargo test --workspace --exclude e2e)");
    cargo_test(
        shell::cargo().args(["test", "--workspace", "--exclude", "e2e"]),
        &mut tally,
    )?;

    installs.wait().context("installing the tools")?;
    drop(progress);
    web::build_if_stale(Profile::Debug, &app)?;
    js::build_chat(Profile::Debug, &app)?;

    step("build the server and the load generator");
    run(shell::cargo().args(["build", "-p", "server", "-p", "loadgen"]))?;
    let bin = target_dir().join("debug");
    let server = absolute(&bin.join("attractio"))?;
    let loadgen = absolute(&bin.join("loadgen"))?;
    let static_dir = absolute(&web::test_dir())?;
    js::test_client(&server)?;

    step("browser tests (cargo test -p e2e)");
    let artifacts = absolute(Path::new("artifacts"))?;
    cargo_test(
        shell::cargo()
            .args(["test", "-p", "e2e"])
            .env("ATTRACTIO_BIN", &server)
            .env("ATTRACTIO_STATIC", &static_dir)
            .env("ATTRACTIO_ARTIFACTS", &artifacts),
        &mut tally,
    )?;
    println!("screenshots: {}", artifacts.display());

    step("load smoke (loadgen smoke against a fresh server)");
    load_smoke(&server, &loadgen, &static_dir)?;

    println!("\nxtask test: every step passed");
    println!(
        "xtask: {} passed, {} failed, {} skipped",
        tally.passed, tally.failed, tally.ignored
    );
    Ok(())
}

/// Run a `cargo test`, passing its output through and counting its results.
fn cargo_test(cmd: &mut Command, tally: &mut Tally) -> Result<()> {
    let shown = display(cmd);
    println!("$ {shown}");
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start `{shown}`"))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        tally.add_line(&line);
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("`{shown}` failed ({status})");
    }
    Ok(())
}

/// Start a fresh server on a free port, run the generator's smoke scenario, stop the server.
fn load_smoke(server_bin: &Path, loadgen: &Path, static_dir: &Path) -> Result<()> {
    let data = scratch_dir("smoke-data")?;
    let mut cmd = Command::new(server_bin);
    cmd.args(["--addr", "127.0.0.1:0", "--static-dir"])
        .arg(static_dir)
        .arg("--data-dir")
        .arg(&data);
    let server = Server::start("attractio", cmd, attractio_ready)?;
    let url = format!("ws://127.0.0.1:{}/ws", server.port);
    let smoke = run(Command::new(loadgen).args(["smoke", "--url", &url]));
    let stopped = server.stop();
    smoke.context("the load smoke failed")?;
    let status = stopped?;
    if !status.success() {
        bail!("the server did not exit cleanly after SIGTERM ({status})");
    }
    let _ = std::fs::remove_dir_all(&data);
    Ok(())
}

/// Cargo's target directory, honouring `CARGO_TARGET_DIR`.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"))
}

/// A fresh, empty directory under target/xtask-tmp.
pub fn scratch_dir(name: &str) -> Result<PathBuf> {
    let dir = target_dir()
        .join("xtask-tmp")
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    absolute(&dir)
}

pub fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("cannot resolve {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_adds_up_cargo_test_result_lines() {
        let mut tally = Tally::default();
        tally.add_line("test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s");
        tally.add_line("test result: FAILED. 3 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.5s");
        tally.add_line("running 3 tests");
        assert_eq!((tally.passed, tally.failed, tally.ignored), (15, 2, 1));
    }
}
