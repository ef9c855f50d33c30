//! `redis-server` and `redis-cli` for the cluster tests
//! (`server/tests/cluster/`), which start their own Redis on free loopback
//! ports (and a Redis Cluster of three, joined with `redis-cli --cluster
//! create`) and fail without them.

use std::process::Command;

use anyhow::{bail, Result};

use crate::shell::{first_line, run};

/// Installs `redis-server` from the system's packages when it or
/// `redis-cli` is missing. Debian's `redis-server` depends on `redis-tools`,
/// which has `redis-cli` (`dpkg -S /usr/bin/redis-cli`), so one package
/// brings both. Only the binaries are needed: the tests never use the
/// system service.
pub fn ensure_redis_server() -> Result<()> {
    let server = first_line("redis-server", &["--version"]);
    let cli = first_line("redis-cli", &["--version"]);
    if let (Some(server), Some(cli)) = (&server, &cli) {
        println!("ok: {server}; {cli}");
        return Ok(());
    }
    let package = if server.is_some() {
        "redis-tools"
    } else {
        "redis-server"
    };
    let install = format!("apt-get install -y {package}");
    if first_line("id", &["-u"]).as_deref() != Some("0") {
        bail!("redis-server and redis-cli are needed for the cluster tests; install them with `sudo apt-get update && sudo {install}`");
    }
    println!("{package} missing: installing with apt-get");
    run(Command::new("apt-get").arg("update"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", package])
        .env("DEBIAN_FRONTEND", "noninteractive"))
}
