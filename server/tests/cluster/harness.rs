//! The cluster tests' harness: a `redis-server` of their own (or a Redis
//! Cluster of three), nodes of the real binary on their own loopback
//! addresses, and what the tests read and check across clients.

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::{start_binary, Client, WAIT};

/// A `redis-server` of its own, without persistence, stopped by its PID.
pub struct Redis {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
    /// The arguments beyond the usual ones, to start it again alike.
    args: Vec<String>,
}

/// A loopback port nobody listens on (as of now).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Redis {
    pub fn start() -> Redis {
        Redis::start_on(free_port())
    }

    /// Kills this Redis (SIGKILL, by its PID).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends `signal` to this Redis (SIGSTOP, SIGCONT: a pause).
    pub fn signal(&self, signal: i32) {
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// Kills this Redis and starts an empty one on the same port (a
    /// restart without persistence).
    pub fn restart_empty(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let fresh = Redis::start_on(self.port);
        *self = fresh;
    }

    pub fn start_on(port: u16) -> Redis {
        Redis::spawn(port, &[])
    }

    /// A Redis that writes every command to its append-only file before
    /// answering (`appendfsync always`): [`Redis::restart`] loses nothing.
    pub fn start_persistent() -> Redis {
        Redis::spawn(free_port(), PERSISTENT)
    }

    /// Kills this Redis (SIGKILL) and starts it again on the same port,
    /// in the same directory, with the same arguments: a persistent one
    /// comes back from its append-only file; a Redis Cluster master
    /// without persistence comes back empty, its slots kept (its
    /// `nodes.conf`).
    pub fn restart(&mut self) {
        self.stop();
        let dir = std::mem::replace(&mut self._dir, tempfile::tempdir().unwrap());
        let args = std::mem::take(&mut self.args);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        *self = Redis::spawn_in(dir, self.port, &args);
    }

    /// Starts `redis-server` on `port` with `args` beyond the usual ones,
    /// and waits until it listens.
    fn spawn(port: u16, args: &[&str]) -> Redis {
        Redis::spawn_in(tempfile::tempdir().unwrap(), port, args)
    }

    fn spawn_in(dir: tempfile::TempDir, port: u16, args: &[&str]) -> Redis {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .args(args)
            .stdout(Stdio::null())
            .spawn()
            .expect(
                "redis-server runs (cargo xtask test installs it; apt-get install redis-server)",
            );
        let redis = Redis {
            child,
            port,
            _dir: dir,
            args: args.iter().map(|a| a.to_string()).collect(),
        };
        let deadline = std::time::Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        redis
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Runs one command on this Redis, as an operator (or a failover) would.
    pub fn command<T: redis::FromRedisValue>(&self, args: &[&str]) -> T {
        let client = redis::Client::open(self.url()).unwrap();
        let mut connection = client.get_connection().unwrap();
        let mut cmd = redis::cmd(args[0]);
        for arg in &args[1..] {
            cmd.arg(*arg);
        }
        cmd.query(&mut connection)
            .unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    /// One command through `redis-cli`, its answer as printed (trimmed).
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli runs (it comes with redis-server)");
        assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }
}

/// `redis-server` arguments of a Redis that loses nothing on a kill.
const PERSISTENT: &[&str] = &["--appendonly", "yes", "--appendfsync", "always"];

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Redis Cluster of its own: three masters without replicas on free
/// loopback ports, the slots split evenly among them (`redis-cli --cluster
/// create`), each stopped by its PID.
pub struct RedisCluster {
    pub masters: Vec<Redis>,
}

impl RedisCluster {
    /// Starts three `redis-server --cluster-enabled yes`, joins them into
    /// one cluster, and returns once every one says `cluster_state:ok`.
    pub fn start() -> RedisCluster {
        let masters: Vec<Redis> = (0..3)
            .map(|_| {
                let (port, bus) = (free_port(), free_port());
                let config = format!("nodes-{port}.conf");
                Redis::spawn(
                    port,
                    &[
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        &config,
                        // The bus is port + 10000 unless told: it may not
                        // be free, or past 65535.
                        "--cluster-port",
                        &bus.to_string(),
                    ],
                )
            })
            .collect();
        let addrs: Vec<String> = masters
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.port))
            .collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .status()
            .expect("redis-cli runs (it comes with redis-server: apt-get install redis-tools)");
        assert!(created.success(), "redis-cli --cluster create: {created}");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        for master in &masters {
            while !master
                .command::<String>(&["CLUSTER", "INFO"])
                .contains("cluster_state:ok")
            {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the cluster is not ok at {}",
                    master.port
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        RedisCluster { masters }
    }

    /// The port of the master that holds `room`'s keys (the slot of its
    /// hash tag, as `CLUSTER KEYSLOT` and `CLUSTER SLOTS` say).
    pub fn master_of(&self, room: &str) -> u16 {
        let seed = &self.masters[0];
        let key = format!("attractio:{{{room}}}:seq");
        let slot: u16 = seed.command(&["CLUSTER", "KEYSLOT", &key]);
        let ranges: Vec<Vec<redis::Value>> = seed.command(&["CLUSTER", "SLOTS"]);
        for range in ranges {
            let (start, end): (u16, u16) = (
                redis::from_redis_value(range[0].clone()).unwrap(),
                redis::from_redis_value(range[1].clone()).unwrap(),
            );
            if (start..=end).contains(&slot) {
                let master: Vec<redis::Value> = redis::from_redis_value(range[2].clone()).unwrap();
                return redis::from_redis_value(master[1].clone()).unwrap();
            }
        }
        panic!("no master holds slot {slot}")
    }

    /// The master that holds `room`'s keys.
    pub fn master_holding(&mut self, room: &str) -> &mut Redis {
        let port = self.master_of(room);
        self.masters.iter_mut().find(|m| m.port == port).unwrap()
    }

    /// Connections subscribed to `room`'s channel, on all masters together
    /// (a plain `PUBLISH` reaches the subscribers of every master).
    pub fn subscribers(&self, room: &str) -> u64 {
        let channel = format!("attractio:{{{room}}}:live");
        self.masters
            .iter()
            .map(|m| {
                let (_, n): (String, u64) = m.command(&["PUBSUB", "NUMSUB", &channel]);
                n
            })
            .sum()
    }
}

/// The Redis that nodes share: how a node is told to reach it.
pub trait SharedRedis {
    fn node_args(&self) -> Vec<String>;
}

impl SharedRedis for Redis {
    fn node_args(&self) -> Vec<String> {
        vec!["--redis-url".into(), self.url()]
    }
}

impl SharedRedis for RedisCluster {
    /// Every master a seed, as an operator would list them.
    fn node_args(&self) -> Vec<String> {
        let seeds: Vec<String> = self.masters.iter().map(Redis::url).collect();
        vec![
            "--redis-cluster".into(),
            "--redis-url".into(),
            seeds.join(","),
        ]
    }
}

/// One node of the real binary, on its own loopback address.
pub struct Node {
    pub child: Child,
    pub addr: String,
    _data: tempfile::TempDir,
}

impl Node {
    pub fn start(ip: &str, redis: &impl SharedRedis, args: &[&str]) -> Node {
        let data = tempfile::tempdir().unwrap();
        let redis_args = redis.node_args();
        let args: Vec<&str> = redis_args
            .iter()
            .map(String::as_str)
            .chain(args.iter().copied())
            .collect();
        let (child, addr) = start_binary(
            &format!("{ip}:0"),
            data.path(),
            &data.path().join("no-app"),
            &args,
        );
        Node {
            child,
            addr,
            _data: data,
        }
    }

    pub async fn client(&self) -> Client {
        Client::connect(&format!("ws://{}/ws", self.addr)).await
    }

    pub async fn joined(&self, room: &str) -> Client {
        let mut c = self.client().await;
        c.join(room).await;
        c
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Redis and three nodes on 127.0.0.2–4, each started with `args`.
pub fn cluster(args: &[&str]) -> (Redis, Vec<Node>) {
    let redis = Redis::start();
    let nodes = three_nodes(&redis, args);
    (redis, nodes)
}

/// A Redis Cluster of three masters and three nodes on 127.0.0.2–4, each
/// started with `args`.
pub fn cluster_on_redis_cluster(args: &[&str]) -> (RedisCluster, Vec<Node>) {
    let redis = RedisCluster::start();
    let nodes = three_nodes(&redis, args);
    (redis, nodes)
}

pub fn three_nodes(redis: &impl SharedRedis, args: &[&str]) -> Vec<Node> {
    ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
        .iter()
        .map(|ip| Node::start(ip, redis, args))
        .collect()
}

/// The numbered frames a client got (`seq` → frame), leaving out the
/// stamped answers that only repeat the current `seq`.
pub fn numbered(frames: &[Value]) -> BTreeMap<u64, Value> {
    frames
        .iter()
        .filter(|v| {
            !matches!(
                v["action"].as_str(),
                Some("hydrate" | "newRoom" | "resumed")
            )
        })
        .filter_map(|v| Some((v["seq"].as_u64()?, v.clone())))
        .collect()
}

/// A new client on `node` resuming a session into `room` with its token,
/// epoch and last `seq`; returns it with every frame up to its `resumed`.
pub async fn resume_on(
    node: &Node,
    room: &str,
    token: &str,
    epoch: u64,
    last_seq: u64,
) -> (Client, Vec<Value>) {
    let mut back = node.client().await;
    back.send(json!({"action":"newClient","room":room,"resumeToken":token,"epoch":epoch,"lastSeq":last_seq}))
        .await;
    let replayed = read_until(&mut back, |got| {
        got.iter().any(|v| v["action"] == "resumed")
    })
    .await;
    (back, replayed)
}

/// Reads until `done` says the frames so far are enough.
pub async fn read_until(c: &mut Client, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let mut got = Vec::new();
    while !done(&got) {
        let v = c
            .next_within(WAIT)
            .await
            .unwrap_or_else(|| panic!("stalled after {} frames: {:?}", got.len(), got.last()));
        got.push(v);
    }
    got
}

/// Every client says `lines` chat lines (`"<k>:<i>"`, client `k`, line
/// `i`), in turns; checks that each got every other client's lines once,
/// in the order sent, and that all saw one order; returns what each read.
pub async fn chat_in_turns(clients: &mut [Client], lines: usize) -> Vec<Vec<Value>> {
    for i in 0..lines {
        for (k, c) in clients.iter_mut().enumerate() {
            c.send(json!({"action":"talkToRoom","data":format!("{k}:{i}")}))
                .await;
        }
    }
    let expected = lines * (clients.len() - 1);
    let mut streams = Vec::new();
    for c in clients.iter_mut() {
        streams.push(read_until(c, |got| chats_from_others(got) >= expected).await);
    }
    for (k, frames) in streams.iter().enumerate() {
        for other in (0..clients.len()).filter(|o| *o != k) {
            let theirs: Vec<&str> = frames
                .iter()
                .filter(|v| v["action"] == "talkToRoom" && v.get("from").is_some())
                .filter_map(|v| v["data"].as_str())
                .filter(|l| l.starts_with(&format!("{other}:")))
                .collect();
            let sent: Vec<String> = (0..lines).map(|i| format!("{other}:{i}")).collect();
            assert_eq!(theirs, sent, "client {k}");
        }
    }
    let ids: Vec<u64> = clients.iter().map(Client::id).collect();
    assert_one_order(&streams, &ids);
    streams
}

pub fn chats_from_others(frames: &[Value]) -> usize {
    frames
        .iter()
        .filter(|v| v["action"] == "talkToRoom" && v.get("from").is_some())
        .count()
}

/// One order: a seq means the same frame everywhere, each client's seqs
/// increase, and between the first and last seq all clients read, every
/// seq is missing only where the client sent the frame itself. Returns
/// that window.
pub fn assert_one_order(streams: &[Vec<Value>], ids: &[u64]) -> (u64, u64) {
    let mut by_seq: BTreeMap<u64, Value> = BTreeMap::new();
    for frames in streams {
        let seqs: Vec<u64> = frames.iter().filter_map(|v| v["seq"].as_u64()).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
        for (seq, v) in numbered(frames) {
            let same = by_seq.entry(seq).or_insert_with(|| v.clone());
            assert_eq!(*same, v, "seq {seq} is two different frames");
        }
    }
    let lo = streams
        .iter()
        .map(|f| *numbered(f).keys().next().unwrap())
        .max()
        .unwrap();
    let hi = streams
        .iter()
        .map(|f| *numbered(f).keys().last().unwrap())
        .min()
        .unwrap();
    for (frames, id) in streams.iter().zip(ids) {
        let got: BTreeSet<u64> = numbered(frames).into_keys().collect();
        for seq in lo..=hi {
            let frame = by_seq
                .get(&seq)
                .unwrap_or_else(|| panic!("seq {seq} reached nobody"));
            let own = frame["from"]["id"].as_u64() == Some(*id);
            assert_eq!(got.contains(&seq), !own, "seq {seq} at {id}: {frame}");
        }
    }
    (lo, hi)
}

/// The board as a client last heard it, for comparing nodes.
pub async fn board_seen_by_a_joiner(node: &Node, room: &str) -> Value {
    let mut c = node.client().await;
    let answer = c.join(room).await;
    assert_eq!(answer["action"], "hydrate", "{answer}");
    answer["data"].clone()
}

/// Returns once the room has handled everything `c` sent before (a freeze
/// of no word is refused by the room itself, after `c`'s earlier frames);
/// the frames read meanwhile.
pub async fn caught_up(c: &mut Client) -> Vec<Value> {
    static MARKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mark = format!(
        "no-such-word-{}",
        MARKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    c.send(json!({"action":"freeze","elementID":mark})).await;
    read_until(c, |got| {
        got.last().is_some_and(|v| {
            v["data"]["code"] == "unknown_word"
                && v["data"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(&format!("{mark} ")))
        })
    })
    .await
}

/// `/api/rooms` as a node answers it: room → members.
pub async fn rooms_seen_by(node: &Node) -> BTreeMap<String, u64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(&node.addr).await.unwrap();
    let request = format!(
        "GET /api/rooms HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        node.addr
    );
    s.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).await.unwrap();
    let body: Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    body["active"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["room"].as_str().unwrap().to_owned(),
                r["members"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// `GET path` on `node`: the status code and the body.
pub async fn http_get(node: &Node, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(&node.addr).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        node.addr
    );
    s.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).await.unwrap();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {answer:?}"));
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}

/// One number of `node`'s `/metrics` (`name` with its labels, if any).
pub async fn metric(node: &Node, name: &str) -> f64 {
    let (_, text) = http_get(node, "/metrics").await;
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

/// Waits (up to 30 s) until `node`'s `/healthz` answers `status`; returns
/// its body (JSON).
pub async fn until_health(node: &Node, status: u16) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (got, body) = http_get(node, "/healthz").await;
        if got == status {
            return serde_json::from_str(&body).unwrap_or_else(|e| panic!("{body:?}: {e}"));
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} /healthz still {got} {body}",
            node.addr
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until `node`'s `/api/rooms` lists exactly `wanted` (for up to
/// 15 s: a room whose nodes all died goes once no node vouched for it for
/// 6 s, `cluster::rooms`).
pub async fn until_listed(node: &Node, wanted: &BTreeMap<String, u64>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let listed = rooms_seen_by(node).await;
        if listed == *wanted {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} lists {listed:?}, not {wanted:?}",
            node.addr
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Everything `c` gets for `t`.
pub async fn frames_for(c: &mut Client, t: Duration) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + t;
    let mut got = Vec::new();
    while let Some(v) = c
        .next_within(deadline.saturating_duration_since(tokio::time::Instant::now()))
        .await
    {
        got.push(v);
    }
    got
}

/// Reads until the server closes the socket; panics if it does not soon.
pub async fn until_closed(c: &mut Client) {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        match tokio::time::timeout(Duration::from_secs(15), c.ws.next()).await {
            Err(_) => panic!("the socket was not closed"),
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => return,
            Ok(Some(Ok(_))) => continue,
        }
    }
}

/// A small deterministic generator, so a failing run can be replayed.
pub struct Dice(pub u64);

impl Dice {
    pub fn roll(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}
