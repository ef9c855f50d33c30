//! `loadgen`: drives attractio, or any server speaking its wire protocol
//! (seed-node too), with one scenario per subcommand, then prints a human
//! table and one JSON line per scenario, and can draw an SVG plot.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use loadgen::report::{read_reports, Report};
use loadgen::scenario::{broadcast, ceiling, drag, echo, idle, smoke, storm, Common};
use loadgen::{plot, procfs, summary};

/// Load generator for attractio's wire protocol. Traffic goes to loopback only.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Runtime worker threads; 1 runs everything on one thread (pin it with taskset).
    #[arg(long, global = true, default_value_t = 1)]
    threads: usize,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand, Debug)]
enum Scenario {
    /// R rooms × C clients sending timestamped chat at a fixed rate.
    Broadcast(broadcast::Args),
    /// One big room, raising the rate until delivery or p99 gives out.
    Ceiling(ceiling::Args),
    /// Many joined connections held idle: memory per connection, join rate.
    Idle(idle::Args),
    /// Closed-loop echo round trips.
    Echo(echo::Args),
    /// Members dragging a word: moving at 30 Hz, moveEnd every second.
    Drag(drag::Args),
    /// Everyone in rooms of 100 drops at once and resumes: time and bytes
    /// until every presence view is exact again.
    Storm(storm::Args),
    /// Tiny broadcast + echo; exits non-zero unless all was delivered.
    Smoke(Common),
    /// Print a Markdown table comparing the servers in JSON report files.
    Summary {
        /// JSON-lines files of reports.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
    },
    /// Draw an SVG from JSON report lines written by earlier runs.
    Plot {
        /// Where to write the SVG.
        #[arg(long)]
        out: PathBuf,
        /// JSON-lines files of reports.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = if cli.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cli.threads)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.scenario)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(scenario: Scenario) -> Result<ExitCode> {
    procfs::raise_nofile(0);
    let (common, reports, verdict) = match scenario {
        Scenario::Broadcast(a) => (a.common.clone(), vec![broadcast::run(&a).await?], Ok(())),
        Scenario::Ceiling(a) => (a.common.clone(), vec![ceiling::run(&a).await?], Ok(())),
        Scenario::Idle(a) => (a.common.clone(), vec![idle::run(&a).await?], Ok(())),
        Scenario::Echo(a) => (a.common.clone(), vec![echo::run(&a).await?], Ok(())),
        Scenario::Drag(a) => (a.common.clone(), vec![drag::run(&a).await?], Ok(())),
        Scenario::Storm(a) => (a.common.clone(), vec![storm::run(&a).await?], Ok(())),
        Scenario::Smoke(c) => {
            let (reports, verdict) = smoke::run(&c).await?;
            (c, reports, verdict)
        }
        Scenario::Summary { inputs } => {
            print!("{}", summary::markdown(&read_reports(&inputs)?));
            return Ok(ExitCode::SUCCESS);
        }
        Scenario::Plot { out, inputs } => {
            let reports = read_reports(&inputs)?;
            write_svg(&out, &reports)?;
            println!("wrote {} ({} reports)", out.display(), reports.len());
            return Ok(ExitCode::SUCCESS);
        }
    };
    for r in &reports {
        println!("{}", r.table());
        match &common.json {
            Some(path) => r.append_to(path)?,
            None => println!("{}", r.json_line()),
        }
    }
    if let Some(path) = &common.svg {
        write_svg(path, &reports)?;
    }
    Ok(match verdict {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("smoke FAILED: {why}");
            ExitCode::FAILURE
        }
    })
}

fn write_svg(path: &PathBuf, reports: &[Report]) -> Result<()> {
    std::fs::write(path, plot::svg(reports)).with_context(|| format!("writing {}", path.display()))
}
