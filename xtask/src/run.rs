//! `cargo xtask run`: the server with the board, soon on a fresh machine.
//!
//! The server is built first, alone (dev profile: it compiles in a fraction
//! of the release build's time and serves a board easily), and started at
//! once, so that `/` answers within minutes. Until the app is built its
//! index.html is the building page (see `progress`), which reloads itself
//! and so turns into the board when trunk writes the real one. Then, all
//! at once: trunk and wasm-bindgen-cli install in the background and the
//! app's cargo build runs; trunk then only bundles.
//! Nothing is built twice: `cargo xtask test` uses the same debug builds.
//! A second run finds everything built and starts the server in seconds.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::js;
use crate::progress::{Progress, StepId};
use crate::server::{attractio_ready, Server};
use crate::shell::{self, step};
use crate::test::target_dir;
use crate::tools::{self, Needs};
use crate::web::{self, Profile};

/// Measured on 2 shared cores with an empty cargo home (BENCHMARKS.md, "First run").
const SERVER_USUAL: Duration = Duration::from_secs(100);
const APP_COMPILE_USUAL: Duration = Duration::from_secs(240);
const BUNDLE_USUAL: Duration = Duration::from_secs(10);

/// Build what is missing, start the server as soon as it is built, and
/// finish the app while it runs; then wait for the server to stop.
pub fn run(server_args: &[String]) -> Result<()> {
    let app = Path::new(web::APP_DIR);
    // Whichever profile the app there was built with, it shows the board.
    let built = web::built_profile(app).unwrap_or(Profile::Debug);
    let stale = web::staleness(built, app);

    let progress = Progress::new();
    let server_id = progress.add("build the server (debug)", SERVER_USUAL);
    let mut app_steps = None;
    if let Some(reason) = &stale {
        println!("the web app needs a build: {reason}");
        app_steps = Some((
            progress.add("compile the web app (wasm32, debug)", APP_COMPILE_USUAL),
            progress.add("bundle the web app with trunk", BUNDLE_USUAL),
        ));
        if !web::has_app(app) {
            std::fs::create_dir_all(app)
                .with_context(|| format!("cannot create {}", app.display()))?;
            web::forget_build(app)?;
            progress.show_page(&app.join("index.html"))?;
        }
    }

    step("build and start the server");
    let mut build = shell::cargo();
    build.args(["build", "-p", "server", "--bin", "attractio"]);
    if stale.is_some() {
        // Its lines go to a log, as the other steps' will.
        progress.run(server_id, "build-server", &mut build)?;
    } else {
        shell::run(&mut build)?;
    }
    let mut cmd = Command::new(target_dir().join("debug/attractio"));
    cmd.arg("--static-dir").arg(app).args(server_args);
    let server = Server::start("attractio", cmd, attractio_ready)?;
    let url = format!("http://127.0.0.1:{}/", server.port);

    if let Some((compile_id, bundle_id)) = app_steps {
        println!(
            "\n[{}] {url} answers: it shows how far the build is and turns into the board by itself\n",
            progress.clock()
        );
        let built = finish_app(&progress, compile_id, bundle_id, app);
        if let Err(error) = built {
            let _ = server.stop();
            return Err(error);
        }
    }
    println!(
        "\n[{}] the board is ready: {url} (Ctrl-C stops the server)\n",
        progress.clock()
    );
    drop(progress);
    // After the board: trunk replaces its folder, and the board comes first.
    match js::build_chat(built, app) {
        Ok(()) => println!("the chat app is ready: {url}chat/lobby\n"),
        Err(error) => eprintln!("the chat app was not built: {error:#}"),
    }
    let status = server.wait()?;
    if !status.success() {
        bail!("the server stopped: {status}");
    }
    Ok(())
}

/// Install the missing tools while the app compiles, then let trunk bundle
/// it in place of the building page.
fn finish_app(
    progress: &Progress,
    compile_id: StepId,
    bundle_id: StepId,
    app: &Path,
) -> Result<()> {
    let needs = Needs {
        browser: false,
        wasm_opt: false,
        redis: false,
    };
    let installs = tools::start(needs, progress)?;
    progress.run(
        compile_id,
        "compile-web-app",
        &mut web::compile(Profile::Debug),
    )?;
    installs.wait().context("installing the tools")?;
    progress.stop_page();
    progress.run(
        bundle_id,
        "bundle-web-app",
        &mut web::trunk_build(Profile::Debug, app),
    )?;
    web::finish(Profile::Debug, app)
}
