//! Where the harness finds the server binary, the built app, chromedriver
//! and Chromium, and where it writes screenshots and logs. Environment
//! variables win; otherwise the places `cargo xtask test` builds to.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e sits inside the workspace")
        .to_path_buf()
}

fn from_env(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The `attractio` binary under test.
pub fn server_binary() -> Result<PathBuf> {
    let bin =
        from_env("ATTRACTIO_BIN").unwrap_or_else(|| workspace().join("target/debug/attractio"));
    if !bin.is_file() {
        bail!(
            "the server binary {} does not exist: run `cargo xtask test`, or `cargo build -p server` \
             and set ATTRACTIO_BIN",
            bin.display()
        );
    }
    Ok(bin)
}

/// The built web app (a directory with index.html).
pub fn static_dir() -> Result<PathBuf> {
    let dir = from_env("ATTRACTIO_STATIC").unwrap_or_else(|| workspace().join("target/e2e-web"));
    if !dir.join("index.html").is_file() {
        bail!(
            "no built web app in {}: run `cargo xtask test`, or `trunk build --dist {}` and set \
             ATTRACTIO_STATIC",
            dir.display(),
            dir.display()
        );
    }
    Ok(dir)
}

/// axe-core's script, installed from e2e/axe/package-lock.json.
pub fn axe_script() -> Result<PathBuf> {
    let dir = workspace().join("e2e/axe");
    let script = dir.join("node_modules/axe-core/axe.min.js");
    if !script.is_file() {
        bail!(
            "axe-core is not installed: run `cargo xtask ensure-tools`, or `npm ci --prefix {}`",
            dir.display()
        );
    }
    Ok(script)
}

/// Screenshots and logs; git-ignored.
pub fn artifacts() -> Result<PathBuf> {
    let dir = from_env("ATTRACTIO_ARTIFACTS").unwrap_or_else(|| workspace().join("artifacts"));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// A program on PATH, or an explanation of how to install it.
pub fn program(env: &str, name: &str) -> Result<PathBuf> {
    if let Some(path) = from_env(env) {
        if !path.is_file() {
            bail!("{env} names {}, which does not exist", path.display());
        }
        return Ok(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    if let Some(found) = std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
    {
        return Ok(found);
    }
    bail!(
        "{name} is not installed (or set {env}): the browser tests need Chromium and chromedriver. \
         Run `cargo xtask ensure-tools`, or `apt-get install chromium chromium-driver` as root"
    )
}

/// A fresh, empty scratch directory, removed when dropped.
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    pub fn new(label: &str) -> Result<ScratchDir> {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir()
            .join("attractio-e2e")
            .join(format!("{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        Ok(ScratchDir(dir))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
