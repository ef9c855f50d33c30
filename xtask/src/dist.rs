//! `cargo xtask dist`: the release server and the release web app, copied
//! into dist/ with a README, so the folder runs on its own anywhere.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};

use crate::js;
use crate::progress::Progress;
use crate::shell::{self, run, step, which};
use crate::test::target_dir;
use crate::tools::{self, Needs};
use crate::web::{self, Profile};

const DIST: &str = "dist";

pub fn dist() -> Result<()> {
    // The tools install in the background while the server builds.
    let progress = Progress::new();
    let installs = tools::start(Needs::all(false), &progress)?;
    step("build the release server");
    run(shell::cargo().args(["build", "--release", "-p", "server"]))?;
    installs.wait().context("installing the tools")?;
    drop(progress);
    web::build_if_stale(Profile::Release, Path::new(web::APP_DIR))?;
    js::build_chat(Profile::Release, Path::new(web::APP_DIR))?;

    step("assemble dist/");
    let binary = Path::new(DIST).join("attractio");
    let built = target_dir().join("release/attractio");
    std::fs::copy(&built, &binary)
        .with_context(|| format!("cannot copy {} to {}", built.display(), binary.display()))?;
    // The release profile keeps line tables for profiling; the shipped copy needs none.
    if which("strip").is_some() {
        run(Command::new("strip").arg("--strip-debug").arg(&binary))?;
    }
    let start = Path::new(DIST).join("start.sh");
    std::fs::write(&start, START_SH)?;
    std::fs::set_permissions(&start, std::fs::Permissions::from_mode(0o755))?;
    std::fs::write(Path::new(DIST).join("README.txt"), README)?;

    for entry in std::fs::read_dir(web::APP_DIR)?.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "wasm") {
            let bytes = entry.metadata()?.len();
            println!("{}: {} KiB", path.display(), bytes / 1024);
        }
    }
    let bytes = std::fs::metadata(&binary)?.len();
    println!("{}: {} KiB", binary.display(), bytes / 1024);
    println!("\ndist/ is ready: `cd dist && ./start.sh`, then open http://127.0.0.1:3000/");
    Ok(())
}

const START_SH: &str = r#"#!/bin/sh
# Start attractio with the web app next to it; extra flags go to the server.
cd "$(dirname "$0")" && exec ./attractio --static-dir web "$@"
"#;

const README: &str = "\
attractio: a real-time room server with a multiplayer magnetic-poetry board.

This folder runs on its own (Linux x86-64, no other files needed):

    ./start.sh            # from anywhere; runs ./attractio --static-dir web here
    then open http://127.0.0.1:3000/ in a browser

  attractio   the server (one binary; `./attractio --help` lists every flag)
  web/        the browser app it serves
  start.sh    starts the server from this folder with --static-dir web

Useful flags (each also an environment variable ATTRACTIO_<NAME>):
  --addr 0.0.0.0:3000   listen on every interface
  --data-dir ./data     where room boards are stored
  RUST_LOG=info         log level

Stop it with Ctrl-C or SIGTERM: it closes the sockets and saves the boards.
";
