//! Running other programs the way a person at a terminal would: print the
//! command, let it talk to the terminal, and turn a non-zero exit into an
//! error that names the command. Also where the repository root and the
//! tool directories on `PATH` are decided, once, at start-up.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Where npm installs `wasm-opt` (from the `binaryen` package), relative to the repo root.
pub const TOOLS_DIR: &str = "target/tools";
/// Where work that runs in the background writes its output, one file per job.
pub const LOG_DIR: &str = "target/xtask-logs";

/// Change to the repository root and put cargo's and our npm tools' bin
/// directories in front of `PATH`, so freshly installed tools are found
/// without a new shell.
pub fn enter_repo() -> Result<()> {
    let root = repo_root();
    std::env::set_current_dir(&root)
        .with_context(|| format!("cannot enter the repository at {}", root.display()))?;
    let mut dirs = vec![root.join(TOOLS_DIR).join("node_modules/.bin")];
    dirs.push(cargo_home().join("bin"));
    let old = std::env::var_os("PATH").unwrap_or_default();
    dirs.extend(std::env::split_paths(&old));
    let path = std::env::join_paths(dirs).context("PATH contains an unusable entry")?;
    // Single-threaded here: nothing else reads the environment yet.
    std::env::set_var("PATH", path);
    Ok(())
}

/// The workspace root: xtask lives one level below it.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits inside the workspace")
        .to_path_buf()
}

fn cargo_home() -> PathBuf {
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        return PathBuf::from(home);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| OsString::from("/root"));
    PathBuf::from(home).join(".cargo")
}

/// `cargo`, the same one that started us (`cargo run` sets `$CARGO`).
pub fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo")))
}

/// Print a step heading so a long log can be scanned by eye.
pub fn step(title: &str) {
    println!("\n==> {title}");
}

/// The command as a person would type it.
pub fn display(cmd: &Command) -> String {
    let mut words = vec![cmd.get_program().to_string_lossy().into_owned()];
    words.extend(cmd.get_args().map(quote));
    words.join(" ")
}

fn quote(word: &OsStr) -> String {
    let word = word.to_string_lossy();
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:@,+".contains(c))
    {
        word.into_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Run to completion with the terminal attached; fail if it exits non-zero.
pub fn run(cmd: &mut Command) -> Result<()> {
    let shown = display(cmd);
    println!("$ {shown}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot start `{shown}` (is it installed and on PATH?)"))?;
    if !status.success() {
        bail!("`{shown}` failed ({status})");
    }
    Ok(())
}

/// The first line a program prints, or `None` when it cannot be run or fails.
/// Used for `--version` checks, so nothing is echoed.
pub fn first_line(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Some(text.lines().next().unwrap_or("").trim().to_string())
}

/// The full path of a program found on `PATH`.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// A command running to completion with its output in a log file, so that
/// several can run at once without mixing their lines on the terminal.
pub struct Job {
    child: Child,
    shown: String,
    log: PathBuf,
    started: Instant,
}

impl Job {
    /// Start `cmd` with stdout and stderr in `LOG_DIR/<name>.log`.
    pub fn start(name: &str, cmd: &mut Command) -> Result<Job> {
        std::fs::create_dir_all(LOG_DIR).with_context(|| format!("cannot create {LOG_DIR}"))?;
        let log = Path::new(LOG_DIR).join(format!("{name}.log"));
        let out = File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let shown = display(cmd);
        println!("$ {shown} > {}", log.display());
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("cannot start `{shown}` (is it installed and on PATH?)"))?;
        Ok(Job {
            child,
            shown,
            log,
            started: Instant::now(),
        })
    }

    /// Where its output goes.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Wait for it; on failure print the end of its log and fail with the command.
    pub fn wait(mut self) -> Result<Duration> {
        let status = self.child.wait()?;
        if !status.success() {
            println!("\n--- last lines of {} ---", self.log.display());
            for line in last_lines(&self.log, 40) {
                println!("{line}");
            }
            bail!(
                "`{}` failed ({status}); its whole output is in {}",
                self.shown,
                self.log.display()
            );
        }
        Ok(self.started.elapsed())
    }
}

/// The last `n` lines of a text file (fewer if it is shorter or unreadable).
fn last_lines(path: &Path, n: usize) -> Vec<String> {
    let Ok(file) = File::open(path) else {
        return Vec::new();
    };
    let lines: Vec<String> = BufReader::new(file).lines().map_while(Result::ok).collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}

/// How many crates a cargo log says it compiled so far: the progress figure
/// for a build whose output is in a log file.
pub fn crates_compiled(log: &Path) -> usize {
    let Ok(file) = File::open(log) else {
        return 0;
    };
    BufReader::new(file)
        .lines()
        .map_while(Result::ok)
        .filter(|l| l.trim_start().starts_with("Compiling "))
        .count()
}

/// `1 min 05 s`, `42 s`: a duration as a person reads it.
pub fn minutes(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        format!("{s} s")
    } else {
        format!("{} min {:02} s", s / 60, s % 60)
    }
}
