//! `cargo xtask`: attractio's own make. Each subcommand is one file:
//! `ensure-tools` installs the toolchain pieces a fresh machine lacks,
//! `run` builds what is missing and starts the server with the app, `test`
//! is everything CI checks, `dist` packages a self-contained release and
//! `bench` drives the load generator against our server and the seed.

mod bench;
mod dist;
mod js;
mod progress;
mod redis;
mod run;
mod server;
mod shell;
mod test;
mod tools;
mod web;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "attractio's build, run, test, dist and bench tasks"
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what is missing: wasm32 target, trunk, wasm-bindgen-cli, wasm-opt, Chromium.
    EnsureTools {
        /// Skip Chromium and chromedriver (only needed by the browser tests).
        #[arg(long)]
        no_browser: bool,
    },
    /// Start the server with the board: built on first use (the server first, so
    /// that :3000 shows the build's progress), up in seconds after that.
    Run {
        /// Extra flags for the server, e.g. `-- --addr 0.0.0.0:3000`.
        #[arg(last = true)]
        server_args: Vec<String>,
    },
    /// Everything CI checks: fmt, clippy, unit and integration tests, browser tests, load smoke.
    Test,
    /// Release server and release web app into dist/, runnable on their own.
    Dist,
    /// Run the load generator's scenarios against our server and the seed-node baseline.
    Bench {
        /// Only these scenarios (broadcast, ceiling, echo, drag, idle); default all.
        scenarios: Vec<String>,
        /// Extra arguments passed to every `loadgen` invocation.
        #[arg(last = true)]
        loadgen_args: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = shell::enter_repo().and_then(|()| match cli.task {
        Task::EnsureTools { no_browser } => tools::ensure(tools::Needs::all(!no_browser)),
        Task::Run { server_args } => run::run(&server_args),
        Task::Test => test::all(),
        Task::Dist => dist::dist(),
        Task::Bench {
            scenarios,
            loadgen_args,
        } => bench::all(&scenarios, &loadgen_args),
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("\nxtask: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
