//! A real load balancer in front of the nodes: `nginx` (the system
//! package; `cargo xtask test` installs it) started by the test on a free
//! port with the configuration the README recommends ("Running several
//! servers"), and clients that reach the cluster only through it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{board, Client, WAIT};
use crate::harness::*;

/// The README's configuration (the `http` block's contents), with the
/// nodes and the port filled in.
fn recommended_config(nodes: &[&Node], port: u16) -> String {
    let servers: String = nodes
        .iter()
        .map(|n| format!("        server {} max_fails=1 fail_timeout=10s;\n", n.addr))
        .collect();
    format!(
        r#"
    upstream attractio {{
{servers}    }}
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      close;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://attractio;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_connect_timeout 2s;
            proxy_read_timeout 1h;
            proxy_next_upstream error timeout http_502 http_503;
        }}
    }}
"#
    )
}

/// An `nginx` of the test's own (not the system service), stopped by its
/// PID.
struct Nginx {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Nginx {
    fn start(nodes: &[&Node]) -> Nginx {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let conf = format!(
            "user root;\nworker_processes 1;\npid {pid};\nevents {{ worker_connections 256; }}\n\
             http {{\n    access_log off;\n    client_body_temp_path {tmp};\n    proxy_temp_path {tmp};\n{http}}}\n",
            pid = dir.path().join("nginx.pid").display(),
            tmp = dir.path().display(),
            http = recommended_config(nodes, port),
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new(nginx())
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx runs (cargo xtask test installs it; apt-get install nginx)");
        let deadline = std::time::Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "nginx did not listen on {port}: {}",
                std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Nginx {
            child,
            port,
            _dir: dir,
        }
    }

    async fn client(&self) -> Client {
        Client::connect(&format!("ws://127.0.0.1:{}/ws", self.port)).await
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `nginx` where Debian puts it, else on `PATH`.
fn nginx() -> PathBuf {
    let debian = PathBuf::from("/usr/sbin/nginx");
    if debian.is_file() {
        debian
    } else {
        PathBuf::from("nginx")
    }
}

/// The open sockets of `node` (`attractio_connections`).
async fn sockets_on(node: &Node) -> f64 {
    metric(node, "attractio_connections").await
}

/// A client through `nginx` that joined `room` on `node` (clients are
/// connected until the balancer sends one there; the others are closed),
/// and its join's answer.
async fn joined_on(nginx: &Nginx, node: &Node, room: &str) -> (Client, Value) {
    for _ in 0..8 {
        let before = sockets_on(node).await;
        let mut c = nginx.client().await;
        if sockets_on(node).await > before {
            let answer = c.join(room).await;
            return (c, answer);
        }
        c.close().await;
    }
    panic!("nginx never sent a client to {}", node.addr)
}

#[tokio::test]
async fn behind_nginx_a_dead_nodes_clients_come_back_on_the_other_node_and_resume() {
    let redis = Redis::start();
    let mut nodes = vec![
        Node::start("127.0.0.2", &redis, &[]),
        Node::start("127.0.0.3", &redis, &[]),
    ];
    let nginx = Nginx::start(&nodes.iter().collect::<Vec<_>>());
    let (mut victim, answer) = joined_on(&nginx, &nodes[0], "balanced").await;
    let (mut watcher, _) = joined_on(&nginx, &nodes[1], "balanced").await;
    victim
        .send(json!({"action":"stateUpdate","data":board(2)}))
        .await;
    let frames = caught_up(&mut victim).await;
    let (id, token, epoch) = (
        victim.id(),
        victim.hello["data"]["resumeToken"]
            .as_str()
            .unwrap()
            .to_owned(),
        answer["epoch"].as_u64().unwrap(),
    );
    let last_seq = numbered(&frames)
        .keys()
        .last()
        .copied()
        .unwrap_or(answer["seq"].as_u64().unwrap());
    // What the room says while the victim is away, it gets on its resume.
    watcher
        .send(json!({"action":"talkToRoom","data":"while you were out"}))
        .await;
    // The victim's node dies (kill -9): its socket through nginx ends.
    drop(nodes.remove(0));
    until_closed(&mut victim).await;
    // It comes back through nginx, which skips the dead node, and resumes
    // its session on the survivor with what it missed.
    let mut back = nginx.client().await;
    back.send(json!({"action":"newClient","room":"balanced","resumeToken":token,"epoch":epoch,"lastSeq":last_seq}))
        .await;
    let replayed = read_until(&mut back, |got| {
        got.iter().any(|v| v["action"] == "resumed")
    })
    .await;
    let resumed = replayed.last().unwrap();
    assert_eq!(resumed["data"]["recovered"], true, "{replayed:?}");
    assert_eq!(resumed["data"]["id"], id);
    assert!(
        replayed.iter().any(|v| v["data"] == "while you were out"),
        "{replayed:?}"
    );
    back.send(json!({"action":"talkToRoom","data":"back through nginx"}))
        .await;
    read_until(&mut watcher, |got| {
        got.iter().any(|v| v["data"] == "back through nginx")
    })
    .await;
    // New clients keep getting in through nginx, all on the survivor.
    for _ in 0..4 {
        let mut c = nginx.client().await;
        assert_eq!(c.join("balanced").await["action"], "hydrate");
    }
}
