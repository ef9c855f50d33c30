//! What `run` and `test` say while several installs and builds go on at
//! once (each with its output in a log file): a line when a step starts,
//! with how long it usually takes, a line when it ends, and every 30 s one
//! line for what is still running. For `run` also the page the server shows
//! at `/` until the board is built: the same steps with a progress bar,
//! reloading itself every few seconds (a meta refresh, which a
//! Content-Security-Policy without inline scripts still allows).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::shell::{crates_compiled, minutes, Job};

/// How often the terminal hears about steps still running.
const STATUS_EVERY: Duration = Duration::from_secs(30);
/// How often the building page is rewritten (it reloads every 3 s).
const PAGE_EVERY: Duration = Duration::from_secs(3);

/// The steps of one `xtask` run and where they stand; cheap to clone.
#[derive(Clone)]
pub struct Progress {
    shared: Arc<Mutex<Steps>>,
}

/// One of the steps added to a [`Progress`].
#[derive(Clone, Copy)]
pub struct StepId(usize);

struct Steps {
    started: Instant,
    steps: Vec<Step>,
    /// Where the building page goes while the board is not built.
    page: Option<PathBuf>,
}

struct Step {
    title: String,
    /// How long it took on a 2-core machine with an empty cargo home
    /// (BENCHMARKS.md, "First run"); only for the estimate shown.
    usual: Duration,
    log: Option<PathBuf>,
    state: State,
}

enum State {
    Waiting,
    Running(Instant),
    Done(Duration),
    Failed,
}

impl Progress {
    /// Start reporting; the reports stop when the last clone is dropped.
    pub fn new() -> Progress {
        let shared = Arc::new(Mutex::new(Steps {
            started: Instant::now(),
            steps: Vec::new(),
            page: None,
        }));
        let weak = Arc::downgrade(&shared);
        thread::spawn(move || report(weak));
        Progress { shared }
    }

    fn lock(&self) -> MutexGuard<'_, Steps> {
        // A reporter that panicked mid-update leaves plain data behind.
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keep `path` (the app's index.html) showing the building page.
    pub fn show_page(&self, path: &Path) -> Result<()> {
        let mut steps = self.lock();
        steps.page = Some(path.to_path_buf());
        steps.write_page()
    }

    /// Stop writing the page, before the real app is written in its place.
    pub fn stop_page(&self) {
        self.lock().page = None;
    }

    /// A step to come, usually taking `usual`.
    pub fn add(&self, title: impl Into<String>, usual: Duration) -> StepId {
        let mut steps = self.lock();
        steps.steps.push(Step {
            title: title.into(),
            usual,
            log: None,
            state: State::Waiting,
        });
        StepId(steps.steps.len() - 1)
    }

    /// Run `cmd` as step `id`, its output in the log named `log`.
    pub fn run(&self, id: StepId, log: &str, cmd: &mut std::process::Command) -> Result<()> {
        let title = self.lock().steps[id.0].title.clone();
        let job = Job::start(log, cmd).with_context(|| title.clone())?;
        self.begin(id, Some(job.log()));
        let outcome = job.wait().with_context(|| title.clone());
        self.end(id, outcome.is_ok());
        outcome.map(drop)
    }

    /// Step `id` starts now; `log` is where its output goes, if anywhere.
    pub fn begin(&self, id: StepId, log: Option<&Path>) {
        let mut steps = self.lock();
        let at = steps.clock();
        let step = &mut steps.steps[id.0];
        step.log = log.map(Path::to_path_buf);
        step.state = State::Running(Instant::now());
        println!(
            "[{at}] start: {} (from scratch on 2 shared cores: about {})",
            step.title,
            minutes(step.usual)
        );
        let _ = steps.write_page();
    }

    /// Step `id` is over, well or not.
    pub fn end(&self, id: StepId, ok: bool) {
        let mut steps = self.lock();
        let at = steps.clock();
        let step = &mut steps.steps[id.0];
        let took = match step.state {
            State::Running(since) => since.elapsed(),
            _ => Duration::ZERO,
        };
        step.state = if ok { State::Done(took) } else { State::Failed };
        let verdict = if ok { "done" } else { "FAILED" };
        println!("[{at}] {verdict}: {} in {}", step.title, minutes(took));
        let _ = steps.write_page();
    }

    /// Time since the start, for lines the caller prints itself.
    pub fn clock(&self) -> String {
        self.lock().clock()
    }
}

/// The reporter thread: status lines and page rewrites until `Progress` is gone.
fn report(shared: Weak<Mutex<Steps>>) {
    let mut last_status = Instant::now();
    loop {
        thread::sleep(PAGE_EVERY);
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let steps = shared.lock().unwrap_or_else(|e| e.into_inner());
        let _ = steps.write_page();
        if last_status.elapsed() >= STATUS_EVERY {
            last_status = Instant::now();
            steps.print_status();
        }
    }
}

impl Steps {
    fn clock(&self) -> String {
        let s = self.started.elapsed().as_secs();
        format!("{}:{:02}", s / 60, s % 60)
    }

    /// One line naming each running step, how long so far and how far.
    fn print_status(&self) {
        let running: Vec<String> = self
            .steps
            .iter()
            .filter_map(|step| {
                let State::Running(since) = step.state else {
                    return None;
                };
                Some(format!(
                    "{} ({}{}, usually {})",
                    step.title,
                    minutes(since.elapsed()),
                    step.crates()
                        .map(|n| format!(", {n} crates compiled"))
                        .unwrap_or_default(),
                    minutes(step.usual)
                ))
            })
            .collect();
        if !running.is_empty() {
            println!("[{}] still running: {}", self.clock(), running.join("; "));
        }
    }

    /// Share of the usual total already behind us, 0 to 100.
    fn percent(&self) -> u64 {
        let total: Duration = self.steps.iter().map(|s| s.usual).sum();
        let behind: Duration = self
            .steps
            .iter()
            .map(|s| match s.state {
                State::Waiting | State::Failed => Duration::ZERO,
                // A slow step stops short of done until it is.
                State::Running(since) => since.elapsed().min(s.usual.mul_f32(0.95)),
                State::Done(_) => s.usual,
            })
            .sum();
        if total.is_zero() {
            return 0;
        }
        (behind.as_millis() * 100 / total.as_millis()) as u64
    }

    fn write_page(&self) -> Result<()> {
        let Some(path) = &self.page else {
            return Ok(());
        };
        std::fs::write(path, self.page_html())
            .with_context(|| format!("cannot write {}", path.display()))
    }

    fn page_html(&self) -> String {
        let percent = self.percent();
        let mut items = String::new();
        for step in &self.steps {
            let state = match step.state {
                State::Waiting => format!("waits (usually {})", minutes(step.usual)),
                State::Running(since) => format!(
                    "running for {}{} (usually {})",
                    minutes(since.elapsed()),
                    step.crates()
                        .map(|n| format!(", {n} crates compiled"))
                        .unwrap_or_default(),
                    minutes(step.usual)
                ),
                State::Done(took) => format!("done in {}", minutes(took)),
                State::Failed => "FAILED: see the terminal".to_string(),
            };
            let _ = writeln!(items, "<li>{}: {state}</li>", escape(&step.title));
        }
        format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n\
             <meta http-equiv=\"refresh\" content=\"3\">\n\
             <title>attractio: building the board ({percent}%)</title></head>\n\
             <body>\n<h1>The board is being built</h1>\n\
             <p><progress max=\"100\" value=\"{percent}\">{percent}%</progress> \
             about {percent}% after {}</p>\n<ol>\n{items}</ol>\n\
             <p>This page reloads itself and turns into the board when it is ready. \
             <code>cargo xtask run</code> writes it; if that command has stopped, \
             start it again.</p>\n</body></html>\n",
            minutes(self.started.elapsed())
        )
    }
}

impl Step {
    /// Crates compiled so far, for steps that run cargo.
    fn crates(&self) -> Option<usize> {
        let n = crates_compiled(self.log.as_deref()?);
        (n > 0).then_some(n)
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(states: Vec<(u64, State)>) -> Steps {
        Steps {
            started: Instant::now(),
            steps: states
                .into_iter()
                .map(|(usual, state)| Step {
                    title: "a <step>".into(),
                    usual: Duration::from_secs(usual),
                    log: None,
                    state,
                })
                .collect(),
            page: None,
        }
    }

    #[test]
    fn percent_weighs_steps_by_their_usual_time() {
        let s = steps(vec![
            (60, State::Done(Duration::from_secs(200))),
            (180, State::Waiting),
        ]);
        assert_eq!(s.percent(), 25);
    }

    #[test]
    fn a_running_step_never_counts_as_done() {
        let long_ago = Instant::now() - Duration::from_secs(20);
        let s = steps(vec![(10, State::Running(long_ago))]);
        assert_eq!(s.percent(), 95);
    }

    #[test]
    fn the_page_reloads_itself_without_script_and_escapes_titles() {
        let html = steps(vec![(60, State::Waiting)]).page_html();
        assert!(html.contains("<meta http-equiv=\"refresh\" content=\"3\">"));
        assert!(!html.contains("<script"));
        assert!(html.contains("a &lt;step&gt;: waits"));
    }
}
