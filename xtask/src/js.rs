//! The TypeScript side: the client in `clients/js` (its tests against the
//! real server, and the check that its generated types match the protocol's
//! JSON Schemas) and the chat app in `clients/chat`, bundled by esbuild into
//! `<static dir>/chat/` (its page, and everything else under `assets/`),
//! which the server serves at `/chat/<room>`.
//!
//! npm installs only from the lock files (`npm ci`), and only when
//! `node_modules` is older than the lock file. The chat is built after the
//! board (trunk replaces its whole output folder, so it would remove a chat
//! built before it), and skipped when its bundle is newer than its sources.

use std::path::Path;
use std::process::Command;
use std::time::SystemTime;

use anyhow::{bail, Context, Result};

use crate::shell::{run, step, which};
use crate::web::Profile;

const CLIENT_DIR: &str = "clients/js";
const CHAT_DIR: &str = "clients/chat";

/// `npm ci` in `dir`, unless its `node_modules` is as new as its lock file
/// (npm writes `node_modules/.package-lock.json` on every install).
fn npm_ci(dir: &str) -> Result<()> {
    if which("npm").is_none() {
        bail!("npm is needed for {dir}; install Node.js 20 and npm, e.g. `apt-get install nodejs npm`");
    }
    let lock = Path::new(dir).join("package-lock.json");
    let installed = Path::new(dir).join("node_modules/.package-lock.json");
    if modified(&installed).is_some() && modified(&installed) >= modified(&lock) {
        return Ok(());
    }
    step(&format!("npm ci ({dir}, from its lock file)"));
    run(Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir))
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The newest modification time of any file under `paths`.
fn newest(paths: &[&Path]) -> Option<SystemTime> {
    let mut newest = None;
    for path in paths {
        if path.is_dir() {
            for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
                newest = newest.max(newest_of(&entry.path()));
            }
        } else {
            newest = newest.max(modified(path));
        }
    }
    newest
}

fn newest_of(path: &Path) -> Option<SystemTime> {
    newest(&[path])
}

/// Bundles the chat app into `static_dir/chat/` (its page, stylesheet and
/// `assets/chat.js`), unless the bundle there is newer than its sources.
pub fn build_chat(profile: Profile, static_dir: &Path) -> Result<()> {
    let out = static_dir.join("chat");
    let bundle = out.join("assets/chat.js");
    let chat = Path::new(CHAT_DIR);
    let inputs = [
        chat.join("src"),
        chat.join("index.html"),
        chat.join("chat.css"),
        chat.join("package-lock.json"),
        Path::new(CLIENT_DIR).join("src"),
    ];
    let inputs: Vec<&Path> = inputs.iter().map(|p| p.as_path()).collect();
    if modified(&bundle).is_some() && modified(&bundle) >= newest(&inputs) {
        return Ok(());
    }
    npm_ci(CHAT_DIR)?;
    step(&format!(
        "bundle the chat app with esbuild into {}",
        out.display()
    ));
    std::fs::create_dir_all(out.join("assets"))
        .with_context(|| format!("cannot create {}", out.display()))?;
    let mut esbuild = Command::new(Path::new(CHAT_DIR).join("node_modules/.bin/esbuild"));
    esbuild
        .arg(chat.join("src/main.ts"))
        .args(["--bundle", "--format=esm", "--target=es2020", "--sourcemap"])
        .arg(format!("--outfile={}", bundle.display()));
    if profile == Profile::Release {
        esbuild.arg("--minify");
    }
    run(&mut esbuild)?;
    // Everything but the page under assets/: `/chat/<name>` is a room.
    for (file, to) in [
        ("index.html", "index.html"),
        ("chat.css", "assets/chat.css"),
    ] {
        std::fs::copy(chat.join(file), out.join(to))
            .with_context(|| format!("cannot copy {file} into {}", out.display()))?;
    }
    Ok(())
}

/// The client's checks: its types match the protocol's schemas, it builds,
/// the chat type-checks against it, and its tests pass against `server_bin`.
pub fn test_client(server_bin: &Path) -> Result<()> {
    npm_ci(CLIENT_DIR)?;
    step("TypeScript client: schema drift, build and tests (npm test in clients/js)");
    run(Command::new("npm")
        .arg("test")
        .current_dir(CLIENT_DIR)
        .env("ATTRACTIO_BIN", server_bin))?;
    npm_ci(CHAT_DIR)?;
    step("chat app: type check (npm run check in clients/chat)");
    run(Command::new("npm")
        .args(["run", "check"])
        .current_dir(CHAT_DIR))
}
