//! Building the Yew app with trunk. A build is skipped when its output is
//! newer than every input (the app's sources, the protocol crate, the trunk
//! config and the lock file) and was made with the same profile.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use anyhow::{Context, Result};

use crate::shell::{run, step};

/// Where `run` and `dist` put the release app; the server's default `--static-dir`.
pub const RELEASE_DIR: &str = "dist/web";
/// Where `test` puts the debug app for the browser tests, away from the release build.
pub const TEST_DIR: &str = "target/e2e-web";

/// Written next to the app so a debug build is never mistaken for a release one.
const PROFILE_MARK: &str = ".xtask-profile";

/// What the app's bundle is built from.
const INPUTS: &[&str] = &[
    "web-client",
    "protocol/src",
    "protocol/Cargo.toml",
    "Trunk.toml",
    "Cargo.lock",
    "index.html",
];

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Debug,
    /// Optimised by cargo and, when index.html asks for it, by wasm-opt.
    Release,
}

impl Profile {
    fn name(self) -> &'static str {
        match self {
            Profile::Debug => "debug",
            Profile::Release => "release",
        }
    }
}

/// Build the app into `dist` unless an up-to-date build of the same profile is there.
pub fn build_if_stale(profile: Profile, dist: &Path) -> Result<()> {
    match staleness(profile, dist) {
        None => {
            step(&format!(
                "web app in {} is up to date ({})",
                dist.display(),
                profile.name()
            ));
            Ok(())
        }
        Some(reason) => {
            println!("\nweb app needs a build: {reason}");
            build(profile, dist)
        }
    }
}

/// Build the app into `dist` with trunk.
pub fn build(profile: Profile, dist: &Path) -> Result<()> {
    step(&format!(
        "build the web app ({}) into {}",
        profile.name(),
        dist.display()
    ));
    let mut trunk = Command::new("trunk");
    trunk.arg("build");
    if profile == Profile::Release {
        trunk.arg("--release");
    }
    trunk.arg("--dist").arg(dist);
    run(&mut trunk)?;
    std::fs::write(dist.join(PROFILE_MARK), profile.name())
        .with_context(|| format!("cannot write into {}", dist.display()))
}

/// Why `dist` needs a rebuild, or `None` when it does not.
fn staleness(profile: Profile, dist: &Path) -> Option<String> {
    let index = dist.join("index.html");
    let Some(built) = modified(&index) else {
        return Some(format!("{} is missing", index.display()));
    };
    let mark = std::fs::read_to_string(dist.join(PROFILE_MARK)).unwrap_or_default();
    if mark.trim() != profile.name() {
        return Some(format!("it is not a {} build", profile.name()));
    }
    let newer = INPUTS
        .iter()
        .flat_map(|input| files_under(Path::new(input)))
        .find(|file| modified(file).is_some_and(|t| t > built));
    newer.map(|file| format!("{} changed", file.display()))
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Every file at or below `path` (nothing when it does not exist).
fn files_under(path: &Path) -> Vec<PathBuf> {
    let Ok(meta) = std::fs::metadata(path) else {
        return Vec::new();
    };
    if meta.is_file() {
        return vec![path.to_path_buf()];
    }
    let Ok(entries) = std::fs::read_dir(path) else {
        return Vec::new();
    };
    entries
        .flatten()
        .flat_map(|entry| files_under(&entry.path()))
        .collect()
}
