//! `cargo xtask ensure-tools`: install what a fresh machine lacks to build
//! and test the web app, and skip what is already there. Each tool is
//! checked by asking it for its version, so a second run only prints
//! "ok" lines.
//!
//! The installs run at once, each in the background with its output in a
//! log file, beside whatever the caller does meanwhile.
//! trunk and wasm-bindgen-cli are built in cargo's dev profile without debug
//! info and without TLS: they are only ever asked to run cargo and
//! wasm-bindgen over a small app, so their own speed hardly matters, and
//! building them that way takes a fraction of the time (BENCHMARKS.md,
//! "First run"). A trunk or wasm-bindgen already installed in the right
//! version, however built, is kept.

use std::path::Path;
use std::process::Command;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use crate::progress::Progress;
use crate::shell::{self, first_line, run, step, which, TOOLS_DIR};

/// trunk builds and bundles the Yew app.
const TRUNK_VERSION: &str = "0.21.14";
/// binaryen on npm ships `wasm-opt`; Debian's (108) breaks on current wasm-bindgen output.
const BINARYEN_VERSION: &str = "132";
const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// What a task needs besides the wasm32 target, trunk and wasm-bindgen-cli.
#[derive(Clone, Copy)]
pub struct Needs {
    /// Chromium and chromedriver, for the browser tests.
    pub browser: bool,
    /// `wasm-opt`, for release builds of the app.
    pub wasm_opt: bool,
    /// `redis-server` and `nginx` for the cluster tests, and `openssl` for
    /// the authentication tests' keys (installed before the others start,
    /// so two apt-gets never wait on each other's lock).
    pub redis: bool,
}

impl Needs {
    /// Everything: what `ensure-tools` installs unless told otherwise.
    pub fn all(browser: bool) -> Needs {
        Needs {
            browser,
            wasm_opt: true,
            // redis-server is a test tool, like the browser.
            redis: browser,
        }
    }
}

/// Install every missing tool and wait for all of them.
pub fn ensure(needs: Needs) -> Result<()> {
    start(needs, &Progress::new())?.wait()
}

/// Where Debian puts `nginx` (`/usr/sbin`, not on every user's `PATH`).
pub const NGINX: &str = "/usr/sbin/nginx";

/// Installs `nginx` from the system's packages when it is missing: the
/// cluster tests put it in front of two nodes as the README recommends
/// (`server/tests/cluster/behind_nginx.rs`), started on a free port with a
/// configuration of their own; the system service is never used.
fn ensure_nginx() -> Result<()> {
    ensure_package(NGINX, "nginx", "the cluster tests")
}

/// Installs the `openssl` command when it is missing: the authentication
/// tests make their RSA, EC and Ed25519 keys with it at test time
/// (`server/tests/auth.rs`), so no key is checked in.
fn ensure_openssl() -> Result<()> {
    ensure_package("/usr/bin/openssl", "openssl", "the authentication tests")
}

/// Installs Debian package `package` with apt-get unless `binary` (or a
/// command of the package's name) is already there.
fn ensure_package(binary: &str, package: &str, needed_by: &str) -> Result<()> {
    if Path::new(binary).is_file() || which(package).is_some() {
        println!("ok: {package}");
        return Ok(());
    }
    if first_line("id", &["-u"]).as_deref() != Some("0") {
        bail!("{package} is needed for {needed_by}; install it with `sudo apt-get update && sudo apt-get install -y {package}`");
    }
    println!("{package} missing: installing with apt-get");
    run(Command::new("apt-get").arg("update"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", package])
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

/// Installs going on in the background.
#[must_use = "wait for the installs before using the tools"]
pub struct Installs(Vec<JoinHandle<Result<()>>>);

impl Installs {
    /// Wait for every install; the first failure is the error (all are waited for).
    pub fn wait(self) -> Result<()> {
        let mut outcome = Ok(());
        for handle in self.0 {
            let done = handle
                .join()
                .unwrap_or_else(|_| Err(anyhow!("an install thread panicked")));
            if outcome.is_ok() {
                outcome = done;
            }
        }
        outcome
    }
}

/// Check every tool now, add the wasm32 target if missing, and start
/// installing the other missing ones in the background.
pub fn start(needs: Needs, progress: &Progress) -> Result<Installs> {
    step("ensure tools");
    wasm_target()?;
    if needs.redis {
        crate::redis::ensure_redis_server()?;
        ensure_nginx()?;
        ensure_openssl()?;
    }
    let mut installs = Vec::new();
    let mut install = |title: String, usual: Duration, log: &'static str, mut cmd: Command| {
        let id = progress.add(title, usual);
        let progress = progress.clone();
        installs.push(thread::spawn(move || progress.run(id, log, &mut cmd)));
    };
    if let Some(cmd) = trunk() {
        install(
            format!("install trunk {TRUNK_VERSION}"),
            TRUNK_USUAL,
            "install-trunk",
            cmd,
        );
    }
    if let Some((version, cmd)) = wasm_bindgen()? {
        install(
            format!("install wasm-bindgen-cli {version}"),
            WASM_BINDGEN_USUAL,
            "install-wasm-bindgen",
            cmd,
        );
    }
    if needs.wasm_opt {
        if let Some(cmd) = wasm_opt()? {
            install(
                format!("install wasm-opt (npm binaryen@{BINARYEN_VERSION})"),
                Duration::from_secs(30),
                "install-wasm-opt",
                cmd,
            );
        }
    }
    if needs.browser {
        if let Some(cmd) = chromium()? {
            install(
                "install Chromium and chromedriver (apt)".to_string(),
                Duration::from_secs(90),
                "install-chromium",
                cmd,
            );
        }
        if let Some(cmd) = axe_core()? {
            install(
                "install axe-core (npm ci in e2e/axe)".to_string(),
                Duration::from_secs(20),
                "install-axe-core",
                cmd,
            );
        }
    }
    Ok(Installs(installs))
}

/// Measured on 2 shared cores with an empty cargo home (BENCHMARKS.md, "First run").
const TRUNK_USUAL: Duration = Duration::from_secs(9 * 60);
const WASM_BINDGEN_USUAL: Duration = Duration::from_secs(5 * 60);

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

/// `cargo install` in a profile that builds fast: the dev profile without
/// debug info (half the time of the release profile, less to link), in
/// cargo's own temporary directory even when `CARGO_TARGET_DIR` is set, so
/// that installs running side by side do not wait on one lock.
fn quick_install() -> Command {
    let mut cmd = shell::cargo();
    cmd.args(["install", "--debug", "--no-default-features"])
        .env("CARGO_PROFILE_DEV_DEBUG", "0")
        .env_remove("CARGO_TARGET_DIR");
    cmd
}

/// The install for trunk, unless the right version is on `PATH`. Built
/// without its default features: no TLS (`Trunk.toml` has it download
/// nothing and `trunk serve` proxies to plain http/ws on localhost) and no
/// update check.
fn trunk() -> Option<Command> {
    let wanted = format!("trunk {TRUNK_VERSION}");
    match first_line("trunk", &["--version"]) {
        Some(v) if v == wanted => {
            println!("ok: {v}");
            return None;
        }
        Some(v) => println!("found {v}, want {wanted}: installing"),
        None => println!("trunk not found: installing {wanted}"),
    }
    let mut cmd = quick_install();
    cmd.args(["--locked", "trunk", "--version", TRUNK_VERSION]);
    Some(cmd)
}

/// The install for wasm-bindgen-cli, which must match the `wasm-bindgen`
/// crate in Cargo.lock exactly, unless that version is on `PATH`; with the
/// version it installs.
fn wasm_bindgen() -> Result<Option<(String, Command)>> {
    let Some(locked) = locked_version("wasm-bindgen")? else {
        println!("skip: Cargo.lock has no wasm-bindgen yet, so no wasm-bindgen-cli is needed");
        return Ok(None);
    };
    let wanted = format!("wasm-bindgen {locked}");
    match first_line("wasm-bindgen", &["--version"]) {
        Some(v) if v == wanted => {
            println!("ok: {v}");
            return Ok(None);
        }
        Some(v) => println!("found {v}, Cargo.lock wants {locked}: installing"),
        None => println!("wasm-bindgen not found: installing wasm-bindgen-cli {locked}"),
    }
    let mut cmd = quick_install();
    // `--locked` fails for wasm-bindgen-cli's published lock file; build it without.
    // Only the `wasm-bindgen` binary: trunk runs nothing else of it. No TLS:
    // that is for its test runner's downloads.
    cmd.args([
        "wasm-bindgen-cli",
        "--version",
        &locked,
        "--bin",
        "wasm-bindgen",
    ]);
    Ok(Some((locked, cmd)))
}

fn wasm_opt() -> Result<Option<Command>> {
    let bin = Path::new(TOOLS_DIR).join("node_modules/.bin/wasm-opt");
    if let Some(v) = first_line(&bin.to_string_lossy(), &["--version"]) {
        if v.contains(BINARYEN_VERSION) {
            println!("ok: {v} ({})", bin.display());
            return Ok(None);
        }
    }
    if which("npm").is_none() {
        bail!("npm is needed for wasm-opt (npm package binaryen@{BINARYEN_VERSION}); install Node.js and npm, e.g. `apt-get install nodejs npm`");
    }
    std::fs::create_dir_all(TOOLS_DIR)?;
    let mut cmd = Command::new("npm");
    cmd.args([
        "install",
        "--no-audit",
        "--no-fund",
        "--prefix",
        TOOLS_DIR,
        &format!("binaryen@{BINARYEN_VERSION}"),
    ]);
    Ok(Some(cmd))
}

/// Where the browser tests' accessibility checker is installed from its lock file.
const AXE_DIR: &str = "e2e/axe";

/// `npm ci` for axe-core, which the browser tests inject into pages to
/// check them against WCAG 2.1 A/AA, unless e2e/axe/node_modules has it.
fn axe_core() -> Result<Option<Command>> {
    let script = Path::new(AXE_DIR).join("node_modules/axe-core/axe.min.js");
    if script.is_file() {
        println!("ok: axe-core ({})", script.display());
        return Ok(None);
    }
    if which("npm").is_none() {
        bail!("npm is needed for axe-core (e2e/axe/package-lock.json); install Node.js and npm, e.g. `apt-get install nodejs npm`");
    }
    let mut cmd = Command::new("npm");
    cmd.args(["ci", "--no-audit", "--no-fund", "--prefix", AXE_DIR]);
    Ok(Some(cmd))
}

fn chromium() -> Result<Option<Command>> {
    let browser = first_line("chromium", &["--version"]);
    let driver = first_line("chromedriver", &["--version"]);
    if let (Some(b), Some(d)) = (&browser, &driver) {
        println!("ok: {b}");
        println!("ok: {d}");
        return Ok(None);
    }
    let install = "apt-get install -y chromium chromium-driver";
    if !is_root() {
        bail!(
            "Chromium and chromedriver are needed for the browser tests; install them with `sudo apt-get update && sudo {install}`"
        );
    }
    println!("Chromium or chromedriver missing: installing with apt-get");
    let mut cmd = Command::new("sh");
    cmd.args(["-c", &format!("apt-get update && {install}")])
        .env("DEBIAN_FRONTEND", "noninteractive");
    Ok(Some(cmd))
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
