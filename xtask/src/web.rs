//! Building the Yew app with trunk. A build is skipped when its output is
//! newer than every input (the app's sources, the protocol crate, the trunk
//! config and the lock file) and was made with the same profile. A release
//! build is then shrunk with wasm-opt (npm binaryen), here rather than in
//! trunk so that a plain `trunk build --release` never needs it, and the
//! integrity hash trunk wrote into index.html is updated to match.
//!
//! The cargo part of trunk's build can run ahead, before trunk is even
//! installed ([`compile`]); trunk then finds it fresh and only runs
//! wasm-bindgen and writes the files.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use anyhow::{bail, Context, Result};
use base64::Engine;
use sha2::{Digest, Sha384};

use crate::shell::{self, run, step, TOOLS_DIR};

/// Where `run` (debug, unless a release build is there) and `dist`
/// (release) put the app; the server's default `--static-dir`.
pub const APP_DIR: &str = "dist/web";
/// Where `test` puts the debug app for the browser tests (under cargo's
/// target directory), away from the release build.
pub fn test_dir() -> std::path::PathBuf {
    crate::test::target_dir().join("e2e-web")
}

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
    pub fn name(self) -> &'static str {
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
    run(&mut trunk_build(profile, dist))?;
    finish(profile, dist)
}

/// `trunk build` of the app into `dist`; [`finish`] completes it.
pub fn trunk_build(profile: Profile, dist: &Path) -> Command {
    let mut trunk = Command::new("trunk");
    trunk.arg("build");
    if profile == Profile::Release {
        trunk.arg("--release");
    }
    trunk.arg("--dist").arg(dist);
    trunk
}

/// After trunk: shrink a release build and mark `dist` with its profile.
pub fn finish(profile: Profile, dist: &Path) -> Result<()> {
    if profile == Profile::Release {
        optimize_wasm(dist)?;
    }
    std::fs::write(dist.join(PROFILE_MARK), profile.name())
        .with_context(|| format!("cannot write into {}", dist.display()))
}

/// The cargo build that trunk runs for the app (`cargo build
/// --target=wasm32-unknown-unknown --bin web-client`, the same profile and
/// features), to run ahead of trunk; what it builds trunk's finds fresh.
pub fn compile(profile: Profile) -> Command {
    let mut cargo = shell::cargo();
    cargo.args([
        "build",
        "--target=wasm32-unknown-unknown",
        "-p",
        "web-client",
        "--bin",
        "web-client",
    ]);
    if profile == Profile::Release {
        cargo.arg("--release");
    }
    cargo
}

/// The profile the app in `dist` was built with, if xtask built one there.
pub fn built_profile(dist: &Path) -> Option<Profile> {
    let mark = std::fs::read_to_string(dist.join(PROFILE_MARK)).ok()?;
    [Profile::Debug, Profile::Release]
        .into_iter()
        .find(|p| p.name() == mark.trim())
}

/// Whether `dist` holds an app built by xtask (of either profile), up to
/// date or not, rather than nothing or the building page.
pub fn has_app(dist: &Path) -> bool {
    dist.join("index.html").is_file() && dist.join(PROFILE_MARK).is_file()
}

/// Forget which profile `dist` was built with, so the building page written
/// there is never taken for a built app, even if the build is cut short.
pub fn forget_build(dist: &Path) -> Result<()> {
    match std::fs::remove_file(dist.join(PROFILE_MARK)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot clear {}", dist.display()))
        }
        _ => Ok(()),
    }
}

/// The wasm features rustc's wasm32 target emits by default; wasm-opt must accept them.
const WASM_FEATURES: &[&str] = &[
    "--enable-bulk-memory",
    "--enable-bulk-memory-opt",
    "--enable-multivalue",
    "--enable-mutable-globals",
    "--enable-nontrapping-float-to-int",
    "--enable-reference-types",
    "--enable-sign-ext",
];

/// Run `wasm-opt -Oz` over each wasm file in `dist` and fix its hash in index.html.
fn optimize_wasm(dist: &Path) -> Result<()> {
    let wasm_opt = Path::new(TOOLS_DIR).join("node_modules/.bin/wasm-opt");
    if !wasm_opt.is_file() {
        bail!(
            "{} is missing: run `cargo xtask ensure-tools`",
            wasm_opt.display()
        );
    }
    let index_path = dist.join("index.html");
    let mut index = std::fs::read_to_string(&index_path)?;
    let wasm_files = files_under(dist)
        .into_iter()
        .filter(|f| f.extension().is_some_and(|e| e == "wasm"));
    for wasm in wasm_files {
        step(&format!(
            "shrink {} with wasm-opt (takes a minute)",
            wasm.display()
        ));
        let before = std::fs::read(&wasm)?;
        let optimized = wasm.with_extension("opt.wasm");
        run(std::process::Command::new(&wasm_opt)
            .arg("-Oz")
            .args(WASM_FEATURES)
            .arg(&wasm)
            .arg("-o")
            .arg(&optimized))?;
        std::fs::rename(&optimized, &wasm)?;
        let after = std::fs::read(&wasm)?;
        println!("{} KiB -> {} KiB", before.len() / 1024, after.len() / 1024);
        index = index.replace(&integrity(&before), &integrity(&after));
    }
    std::fs::write(&index_path, index)?;
    Ok(())
}

/// A Subresource Integrity value as trunk writes it.
fn integrity(bytes: &[u8]) -> String {
    let digest = Sha384::digest(bytes);
    format!(
        "sha384-{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// Why `dist` needs a rebuild, or `None` when it does not.
pub fn staleness(profile: Profile, dist: &Path) -> Option<String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_building_page_is_never_taken_for_a_built_app() {
        let dist = std::env::temp_dir().join(format!("xtask-web-{}", std::process::id()));
        std::fs::create_dir_all(&dist).unwrap();
        std::fs::write(dist.join("index.html"), "<!doctype html>a built app").unwrap();
        std::fs::write(dist.join(PROFILE_MARK), "debug").unwrap();
        assert!(has_app(&dist));
        assert!(built_profile(&dist) == Some(Profile::Debug));

        // What `run` does before it writes the building page there.
        forget_build(&dist).unwrap();
        std::fs::write(dist.join("index.html"), "<!doctype html>building").unwrap();
        assert!(!has_app(&dist));
        assert!(built_profile(&dist).is_none());
        assert!(staleness(Profile::Debug, &dist).is_some());
        forget_build(&dist).unwrap();
        std::fs::remove_dir_all(&dist).unwrap();
    }
}
