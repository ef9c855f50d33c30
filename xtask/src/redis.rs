//! `redis-server` for the cluster tests (`server/tests/cluster/`), which
//! start their own on a free loopback port and fail without it.

use std::process::Command;

use anyhow::{bail, Result};

use crate::shell::{first_line, run};

/// Installs `redis-server` from the system's packages when it is missing.
/// Only the binary is needed: the tests never use the system service.
pub fn ensure_redis_server() -> Result<()> {
    if let Some(version) = first_line("redis-server", &["--version"]) {
        println!("ok: {version}");
        return Ok(());
    }
    let install = "apt-get install -y redis-server";
    if first_line("id", &["-u"]).as_deref() != Some("0") {
        bail!("redis-server is needed for the cluster tests; install it with `sudo apt-get update && sudo {install}`");
    }
    println!("redis-server missing: installing with apt-get");
    run(Command::new("apt-get").arg("update"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "redis-server"])
        .env("DEBIAN_FRONTEND", "noninteractive"))
}
