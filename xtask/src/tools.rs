//! `cargo xtask ensure-tools`: install what a fresh machine lacks to build
//! and test the web app, and skip what is already there. Each tool is
//! checked by asking it for its version, so a second run only prints
//! "ok" lines.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::shell::{self, first_line, run, step, which, TOOLS_DIR};

/// trunk builds and bundles the Yew app.
const TRUNK_VERSION: &str = "0.21.14";
/// binaryen on npm ships `wasm-opt`; Debian's (108) breaks on current wasm-bindgen output.
const BINARYEN_VERSION: &str = "132";
const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// Whether Chromium and chromedriver are part of the request.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Browser {
    Include,
    Skip,
}

impl Browser {
    pub fn from_skip(skip: bool) -> Self {
        if skip {
            Browser::Skip
        } else {
            Browser::Include
        }
    }
}

/// Install every missing tool, in the order a build needs them.
pub fn ensure(browser: Browser) -> Result<()> {
    step("ensure tools");
    wasm_target()?;
    trunk()?;
    wasm_bindgen()?;
    wasm_opt()?;
    crate::redis::ensure_redis_server()?; // the cluster tests need it
    if browser == Browser::Include {
        chromium()?;
    }
    Ok(())
}

fn wasm_target() -> Result<()> {
    let installed = first_line_all("rustup", &["target", "list", "--installed"]).context(
        "rustup is needed to add the wasm32 target; install it from your distribution or rustup's site",
    )?;
    if installed.lines().any(|l| l.trim() == WASM_TARGET) {
        println!("ok: rust target {WASM_TARGET}");
        return Ok(());
    }
    run(Command::new("rustup").args(["target", "add", WASM_TARGET]))
}

fn trunk() -> Result<()> {
    let wanted = format!("trunk {TRUNK_VERSION}");
    match first_line("trunk", &["--version"]) {
        Some(v) if v == wanted => {
            println!("ok: {v}");
            return Ok(());
        }
        Some(v) => println!("found {v}, want {wanted}: installing"),
        None => println!("trunk not found: installing {wanted} (takes a few minutes)"),
    }
    run(shell::cargo().args(["install", "--locked", "trunk", "--version", TRUNK_VERSION]))
}

/// wasm-bindgen-cli must match the `wasm-bindgen` crate in Cargo.lock exactly.
fn wasm_bindgen() -> Result<()> {
    let Some(locked) = locked_version("wasm-bindgen")? else {
        println!("skip: Cargo.lock has no wasm-bindgen yet, so no wasm-bindgen-cli is needed");
        return Ok(());
    };
    let wanted = format!("wasm-bindgen {locked}");
    match first_line("wasm-bindgen", &["--version"]) {
        Some(v) if v == wanted => {
            println!("ok: {v}");
            return Ok(());
        }
        Some(v) => println!("found {v}, Cargo.lock wants {locked}: installing"),
        None => println!("wasm-bindgen not found: installing wasm-bindgen-cli {locked}"),
    }
    // `--locked` fails for wasm-bindgen-cli's published lock file; build it without.
    run(shell::cargo().args(["install", "wasm-bindgen-cli", "--version", &locked]))
}

fn wasm_opt() -> Result<()> {
    let bin = Path::new(TOOLS_DIR).join("node_modules/.bin/wasm-opt");
    if let Some(v) = first_line(&bin.to_string_lossy(), &["--version"]) {
        if v.contains(BINARYEN_VERSION) {
            println!("ok: {v} ({})", bin.display());
            return Ok(());
        }
    }
    if which("npm").is_none() {
        bail!("npm is needed for wasm-opt (npm package binaryen@{BINARYEN_VERSION}); install Node.js and npm, e.g. `apt-get install nodejs npm`");
    }
    std::fs::create_dir_all(TOOLS_DIR)?;
    run(Command::new("npm").args([
        "install",
        "--no-audit",
        "--no-fund",
        "--prefix",
        TOOLS_DIR,
        &format!("binaryen@{BINARYEN_VERSION}"),
    ]))
}

fn chromium() -> Result<()> {
    let browser = first_line("chromium", &["--version"]);
    let driver = first_line("chromedriver", &["--version"]);
    if let (Some(b), Some(d)) = (&browser, &driver) {
        println!("ok: {b}");
        println!("ok: {d}");
        return Ok(());
    }
    let install = "apt-get install -y chromium chromium-driver";
    if !is_root() {
        bail!(
            "Chromium and chromedriver are needed for the browser tests; install them with `sudo apt-get update && sudo {install}`"
        );
    }
    println!("Chromium or chromedriver missing: installing with apt-get");
    run(Command::new("apt-get").arg("update"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "chromium", "chromium-driver"])
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

fn is_root() -> bool {
    first_line("id", &["-u"]).as_deref() == Some("0")
}

/// The whole output of a command, or `None` when it cannot be run.
fn first_line_all(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The version Cargo.lock pins for `package`, if the lock file has it.
pub fn locked_version(package: &str) -> Result<Option<String>> {
    let lock = std::fs::read_to_string("Cargo.lock").context("cannot read Cargo.lock")?;
    let name_line = format!("name = \"{package}\"");
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == name_line {
            if let Some(version) = lines
                .next()
                .and_then(|l| l.trim().strip_prefix("version = "))
            {
                return Ok(Some(version.trim_matches('"').to_string()));
            }
        }
    }
    Ok(None)
}
