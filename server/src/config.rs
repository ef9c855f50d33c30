//! Command-line flags, each with an `ATTRACTIO_*` environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// attractio: a real-time room server, and the magnetic-poetry board that
/// shows it off.
#[derive(Debug, Clone, Parser)]
#[command(version, about)]
pub struct Config {
    /// Address to listen on (port 0 picks a free port; the bound address is
    /// printed on stdout).
    #[arg(long, env = "ATTRACTIO_ADDR", default_value = "127.0.0.1:3000")]
    pub addr: SocketAddr,

    /// How often every client is pinged; a client that sends nothing (a
    /// pong or any frame) within this long of a ping being written is
    /// disconnected. Human durations: `30s`, `300ms`.
    #[arg(long, env = "ATTRACTIO_PING_INTERVAL", default_value = "30s", value_parser = positive_duration)]
    pub ping_interval: Duration,

    /// Most members in one room; a joiner past it gets `roomFull`.
    #[arg(long, env = "ATTRACTIO_MAX_ROOM_SIZE", default_value_t = 32)]
    pub max_room_size: usize,

    /// Largest frame a client may send, in bytes (larger: close 1009).
    #[arg(long, env = "ATTRACTIO_MAX_MESSAGE_BYTES", default_value_t = 64 * 1024)]
    pub max_message_bytes: usize,

    /// Messages per second a client may send on average ...
    #[arg(long, env = "ATTRACTIO_RATE_LIMIT", default_value_t = 60.0)]
    pub rate_limit: f64,

    /// ... and in one burst. Dragging sends ~30 `moving`/s, so the defaults
    /// leave room for that plus chat and echo.
    #[arg(long, env = "ATTRACTIO_RATE_BURST", default_value_t = 120.0)]
    pub rate_burst: f64,

    /// Origins allowed to open a WebSocket (repeatable). Without any: the
    /// page's own origin and localhost. Clients that send no Origin (not
    /// browsers) are always allowed.
    #[arg(
        long = "allowed-origin",
        env = "ATTRACTIO_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    pub allowed_origins: Vec<String>,

    /// Where room snapshots are stored (sled).
    #[arg(long, env = "ATTRACTIO_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// A changed room is written at most this often.
    #[arg(long, env = "ATTRACTIO_SAVE_INTERVAL", default_value = "1s", value_parser = positive_duration)]
    pub save_interval: Duration,

    /// How long a member asked for the board (`requestCurrentState`) has to
    /// answer before the next member is asked.
    #[arg(long, env = "ATTRACTIO_STATE_TIMEOUT", default_value = "2s", value_parser = positive_duration)]
    pub state_timeout: Duration,

    /// Messages each room keeps for clients that resume after a drop.
    #[arg(long, env = "ATTRACTIO_HISTORY", default_value_t = 512)]
    pub history: usize,

    /// Bytes of frames each room keeps for resume (the JSON text as sent),
    /// oldest dropped first: a room of large messages keeps fewer frames.
    #[arg(long, env = "ATTRACTIO_HISTORY_BYTES", default_value_t = 1024 * 1024)]
    pub history_bytes: usize,

    /// Bytes of history all rooms together keep; over it, the room that
    /// appends drops its own oldest frames (see `history::HistoryBudget`).
    #[arg(long, env = "ATTRACTIO_HISTORY_TOTAL_BYTES", default_value_t = 256 * 1024 * 1024)]
    pub history_total_bytes: usize,

    /// How long a dropped client's seat and identity are held for resume.
    #[arg(long, env = "ATTRACTIO_RESUME_WINDOW", default_value = "2m", value_parser = humantime::parse_duration)]
    pub resume_window: Duration,

    /// Words one board may hold (at most the protocol's 2,000); past it
    /// `newWord` and `stateUpdate` get `board_too_large`.
    #[arg(long, env = "ATTRACTIO_MAX_BOARD_WORDS", default_value_t = protocol::limits::MAX_WORDS,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=protocol::limits::MAX_WORDS as u64))]
    pub max_board_words: usize,

    /// Characters of one word's text (at most the protocol's 200); longer:
    /// `board_too_large`.
    #[arg(long, env = "ATTRACTIO_MAX_WORD_TEXT", default_value_t = protocol::limits::MAX_WORD_TEXT,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=protocol::limits::MAX_WORD_TEXT as u64))]
    pub max_word_text: usize,

    /// Bytes of word ids and texts one board may hold (at most the
    /// protocol's 256 KiB): bounds what a joiner is sent and what a room
    /// stores. Past it: `board_too_large`.
    #[arg(long, env = "ATTRACTIO_MAX_BOARD_BYTES", default_value_t = protocol::limits::MAX_BOARD_BYTES,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=protocol::limits::MAX_BOARD_BYTES as u64))]
    pub max_board_bytes: usize,

    /// Words one member may hold frozen at once (a drag holds one); one
    /// more `freeze` gets `too_many_locks`. Bounds what a joiner is sent
    /// (one `freeze` per lock) and what a member's leave releases.
    #[arg(long, env = "ATTRACTIO_MAX_LOCKS_PER_MEMBER", default_value_t = 4,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1024))]
    pub max_locks_per_member: usize,

    /// Bytes one room's record may take in the store (as JSON). Its board
    /// is bounded by the board's flags; the history kept for held seats
    /// (only on a graceful stop, and only while a seat is held) is cut to
    /// its newest frames that fit.
    #[arg(long, env = "ATTRACTIO_MAX_ROOM_STORED_BYTES", default_value_t = 2 * 1024 * 1024)]
    pub max_room_stored_bytes: usize,

    /// Bytes of frames one turn of a room may queue (each frame counted
    /// once) before it ends and writes them out: a turn is bounded by what
    /// it queued, not by how many commands it took, so one expensive
    /// member cannot make a turn that overflows a member reading promptly.
    /// 1 MiB is a few of the largest messages, far below what a member's
    /// queue (`--outbound-queue` frames) may hold.
    #[arg(long, env = "ATTRACTIO_MAX_TURN_BYTES", default_value_t = 1024 * 1024,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_turn_bytes: usize,

    /// Frames queued for one client before it counts as a slow consumer.
    #[arg(long, env = "ATTRACTIO_OUTBOUND_QUEUE", default_value_t = 1024)]
    pub outbound_queue: usize,

    /// The built web app (index.html and assets). Relative paths are tried
    /// from the working directory, then from the executable's directory.
    #[arg(long, env = "ATTRACTIO_STATIC_DIR", default_value = "dist/web")]
    pub static_dir: PathBuf,

    /// Most WebSockets open at once; past it an upgrade is answered 503
    /// with `Retry-After`. Default: the open-file limit (raised to its hard
    /// maximum) less 512 files for HTTP, the store and the runtime.
    #[arg(long, env = "ATTRACTIO_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,

    /// Most WebSockets open at once from one address (an IPv4 address or an
    /// IPv6 /64); past it an upgrade is answered 429 with `Retry-After`.
    /// Default: a sixteenth of `--max-connections`.
    #[arg(long, env = "ATTRACTIO_MAX_CONNECTIONS_PER_IP")]
    pub max_connections_per_ip: Option<usize>,

    /// Most TCP connections from one address that are not WebSockets (page
    /// and API requests, upgrades not yet answered); past it a new one is
    /// answered 429 at once and closed. Default: `--max-connections-per-ip`,
    /// but at most a quarter of the accept slots (`--max-connections` +
    /// 256), so one address cannot take every slot.
    #[arg(long, env = "ATTRACTIO_MAX_HTTP_CONNECTIONS_PER_IP",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_http_connections_per_ip: Option<u64>,

    /// Bounds every HTTP connection that is not a WebSocket: a request's
    /// head must arrive within this long (also the first one, and the next
    /// one on a kept-alive connection), and a response write the client
    /// does not take for this long ends the connection.
    #[arg(long, env = "ATTRACTIO_HTTP_TIMEOUT", default_value = "10s", value_parser = positive_duration)]
    pub http_timeout: Duration,

    /// Host names this server answers to besides IP addresses and
    /// `localhost` (repeatable; `.example.com` also takes its subdomains).
    /// A request naming another host is refused with 421, so a page on a
    /// DNS-rebinding domain cannot reach the server. `*` allows any host
    /// (only behind a proxy that checks it).
    #[arg(
        long = "allowed-host",
        env = "ATTRACTIO_ALLOWED_HOSTS",
        value_delimiter = ',',
        value_parser = host_name
    )]
    pub allowed_hosts: Vec<String>,

    /// `GET /api/rooms` lists the open rooms by name with their members.
    /// Off by default: a room's name is the only key to it, so without this
    /// the API gives totals only. `true` or `false`.
    #[arg(long, env = "ATTRACTIO_LIST_ROOMS")]
    pub list_rooms: bool,

    /// Rooms one address may create per minute (joining a room that is
    /// neither open nor stored); past it the join gets `too_many_rooms`.
    #[arg(long, env = "ATTRACTIO_NEW_ROOMS_PER_MINUTE", default_value_t = 30)]
    pub new_rooms_per_minute: u32,

    /// Rooms one address may have stored at once among those it created
    /// (an IPv4 address, or an IPv6 /64); past it creating one more gets
    /// `too_many_rooms` until the retention sweep deletes some. Per address
    /// because the per-minute limit alone lets one address fill the disk
    /// over `--room-retention`: this bounds what it makes the server keep
    /// to this many × `--max-room-stored-bytes` (100 × 2 MiB = 200 MiB by
    /// default; a classroom behind one NAT still makes 100 boards). In
    /// cluster mode the rooms it created within `--room-retention` are
    /// counted in Redis, for the whole cluster (`cluster/creation.rs`).
    #[arg(long, env = "ATTRACTIO_MAX_STORED_ROOMS_PER_IP", default_value_t = 100,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_stored_rooms_per_ip: usize,

    /// A stored room nobody opened or changed for this long is deleted by
    /// a background sweep.
    #[arg(long, env = "ATTRACTIO_ROOM_RETENTION", default_value = "30days", value_parser = positive_duration)]
    pub room_retention: Duration,

    /// How long a graceful stop waits for connections to take their close
    /// frames before it drops them (rooms are then saved either way).
    #[arg(long, env = "ATTRACTIO_SHUTDOWN_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,

    /// Makes this server a node of a cluster sharing one room space through
    /// the Redis at this URL (`redis://host:port/db`). Without it: one
    /// server, rooms in the local store, no Redis needed.
    #[arg(long, env = "ATTRACTIO_REDIS_URL")]
    pub redis_url: Option<String>,

    /// The Redis of `--redis-url` is a Redis Cluster (6.0 or newer):
    /// the URL then names one or more of its nodes, comma-separated
    /// (`redis://10.0.0.5:7000,redis://10.0.0.6:7000`), from which the
    /// node learns the rest. `true` or `false`.
    #[arg(
        long,
        env = "ATTRACTIO_REDIS_CLUSTER",
        requires_if("true", "redis_url")
    )]
    pub redis_cluster: bool,
    /// Cluster mode: every this many log entries, a room's state is stored
    /// in Redis and its log trimmed behind it, keeping the entries since the
    /// snapshot before (so Redis holds at most about twice this many
    /// entries per room, plus one snapshot). A node starting to host a
    /// room reads the snapshot and at most that many entries.
    #[arg(long, env = "ATTRACTIO_CLUSTER_SNAPSHOT_EVERY", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub cluster_snapshot_every: u64,
    /// Cluster mode: a room's state is also stored in Redis once the log
    /// entries since its last snapshot hold this many bytes, trimming the
    /// log to the entries after the snapshot it replaces: a room keeps about
    /// twice this in its log, plus one snapshot (its history bounded by
    /// `--history-bytes`), however large its messages. 1 MiB is sixteen
    /// of the largest messages, and thousands of the usual ones.
    #[arg(long, env = "ATTRACTIO_CLUSTER_SNAPSHOT_BYTES", default_value_t = 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub cluster_snapshot_bytes: u64,
    /// Cluster mode: operations of one room waiting for Redis to take them
    /// (a room appends one at a time, in order). Past it an operation is
    /// refused (its sender is told `unavailable`): Redis is not keeping up.
    /// 1024 is seconds of a busy room's traffic at Redis's usual pace.
    #[arg(long, env = "ATTRACTIO_CLUSTER_APPEND_QUEUE", default_value_t = 1024,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub cluster_append_queue: u64,
    /// Cluster mode: entries of one room's log held while an earlier one
    /// is missing (read from the stream). Past it the newest are let go and
    /// read again later, so a hole is always filled.
    #[arg(long, env = "ATTRACTIO_CLUSTER_EARLY_ENTRIES", default_value_t = 4096,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub cluster_early_entries: u64,
    /// Cluster mode: published entries queued for one room's task. Past
    /// it they are dropped there and read from the stream instead.
    #[arg(long, env = "ATTRACTIO_CLUSTER_LIVE_QUEUE", default_value_t = 4096,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub cluster_live_queue: u64,

    /// Tokens from the app's backend (README "Authentication"): the HMAC
    /// secret of HS256 tokens. Any `--auth-*` key turns tokens on: then
    /// only the `--public-rooms` may be joined without one.
    #[arg(long, env = "ATTRACTIO_AUTH_SECRET", hide_env_values = true)]
    pub auth_secret: Option<String>,
    /// A PEM public key verifying RS256 (RSA), ES256 (P-256) or EdDSA
    /// (Ed25519) tokens; the family is the key's.
    #[arg(long, env = "ATTRACTIO_AUTH_PUBLIC_KEY")]
    pub auth_public_key: Option<PathBuf>,
    /// A JWKS file: keys chosen by the token's `kid`, read again when the
    /// file changes (looked at every second) or on SIGHUP.
    #[arg(long, env = "ATTRACTIO_AUTH_JWKS")]
    pub auth_jwks: Option<PathBuf>,
    /// When set, a token's `iss` must be this.
    #[arg(long, env = "ATTRACTIO_AUTH_ISSUER")]
    pub auth_issuer: Option<String>,
    /// When set, a token's `aud` must include this.
    #[arg(long, env = "ATTRACTIO_AUTH_AUDIENCE")]
    pub auth_audience: Option<String>,
    /// Clock skew allowed when checking `exp`, `nbf` and `iat`.
    #[arg(long, env = "ATTRACTIO_AUTH_LEEWAY", default_value = "30s", value_parser = humantime::parse_duration)]
    pub auth_leeway: Duration,
    /// How long a connection whose token expired has to send
    /// `refreshToken` before it is closed (close code 4001).
    #[arg(long, env = "ATTRACTIO_AUTH_GRACE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub auth_grace: Duration,
    /// Rooms anyone may join without a token, under a random identity
    /// (repeatable): a name, or a prefix such as `lobby-*`. Without a key
    /// configured every room is public.
    #[arg(
        long = "public-rooms",
        env = "ATTRACTIO_PUBLIC_ROOMS",
        value_delimiter = ','
    )]
    pub public_rooms: Vec<crate::auth::Pattern>,

    /// A key of the app's backend for the server API (`/api/rooms/…`, README
    /// "From your backend"), sent as `Authorization: Bearer KEY`.
    /// Repeatable, so keys rotate; without any, the API answers 404.
    #[arg(
        long = "api-key",
        env = "ATTRACTIO_API_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub api_keys: Vec<String>,
    /// `idempotencyKey`s of publishes one room remembers (the oldest
    /// forgotten first): a retry with one of them, through any node, gets
    /// the first publish's `seq`. 1000 by default: at most 256 bytes a key,
    /// ~300 KB a room in memory and in its cluster snapshot, and more
    /// retries within `--api-idempotency-window` than a backend makes.
    #[arg(long, env = "ATTRACTIO_API_IDEMPOTENCY_KEYS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub api_idempotency_keys: u64,
    /// How long a publish's `idempotencyKey` is remembered.
    #[arg(long, env = "ATTRACTIO_API_IDEMPOTENCY_WINDOW", default_value = "10m", value_parser = positive_duration)]
    pub api_idempotency_window: Duration,
    /// Most frames one `GET /api/rooms/{room}/history` returns (`limit`
    /// is capped to it).
    #[arg(long, env = "ATTRACTIO_API_HISTORY_LIMIT", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub api_history_limit: u64,
    /// Longest rejoin ban a disconnect may ask for (`banSeconds` is cut
    /// to it).
    #[arg(long, env = "ATTRACTIO_API_MAX_BAN", default_value = "1day", value_parser = positive_duration)]
    pub api_max_ban: Duration,
    /// Rejoin bans held at once (over it, the ones ending first end early).
    #[arg(long, env = "ATTRACTIO_API_BANS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub api_bans: u64,

    /// Where events are posted (README "Webhooks"); needs
    /// `--webhook-secret`, which signs them.
    #[arg(long, env = "ATTRACTIO_WEBHOOK_URL")]
    pub webhook_url: Option<String>,
    #[arg(long, env = "ATTRACTIO_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,
    /// Actions whose messages are posted as `message` events (repeatable,
    /// e.g. `talkToRoom`).
    #[arg(
        long = "webhook-actions",
        env = "ATTRACTIO_WEBHOOK_ACTIONS",
        value_delimiter = ','
    )]
    pub webhook_actions: Vec<String>,
    /// Events waiting to be posted; past it new ones are dropped (counted
    /// in `/metrics`).
    #[arg(long, env = "ATTRACTIO_WEBHOOK_QUEUE", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub webhook_queue: u64,
    /// How long a failing event is retried (exponential backoff) before it
    /// is given up.
    #[arg(long, env = "ATTRACTIO_WEBHOOK_RETRY_FOR", default_value = "10m", value_parser = positive_duration)]
    pub webhook_retry_for: Duration,
}

/// A human duration (`30s`, `300ms`) that is more than zero: a zero ping
/// interval, save interval, state timeout or retention would spin or cut
/// at once.
fn positive_duration(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(d) if d.is_zero() => Err("must be more than zero".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

/// A host name as `Host` headers are compared with it: trimmed, lower
/// case, without the trailing dot of a fully qualified name.
fn host_name(text: &str) -> Result<String, String> {
    let name = text.trim().trim_end_matches('.').to_ascii_lowercase();
    match name.as_str() {
        "" | "." => Err("a host name, `.domain` or `*`".into()),
        _ => Ok(name),
    }
}

impl Config {
    /// The static directory as it exists: relative to the working directory,
    /// else next to the executable (for a copied `dist/` folder).
    pub fn resolved_static_dir(&self) -> PathBuf {
        if self.static_dir.is_absolute() || self.static_dir.exists() {
            return self.static_dir.clone();
        }
        let beside_exe = std::env::current_exe().ok().and_then(|exe| {
            let dir = exe.parent()?;
            [self.static_dir.clone(), PathBuf::from("web")]
                .into_iter()
                .map(|p| dir.join(p))
                .find(|p| p.exists())
        });
        beside_exe.unwrap_or_else(|| self.static_dir.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zero_interval_is_refused_with_a_message() {
        let err = Config::try_parse_from(["attractio", "--ping-interval", "0s"]).unwrap_err();
        assert!(err.to_string().contains("more than zero"), "{err}");
        assert!(Config::try_parse_from(["attractio", "--save-interval", "0ms"]).is_err());
        let ok = Config::try_parse_from(["attractio", "--ping-interval", "250ms"]).unwrap();
        assert_eq!(ok.ping_interval, Duration::from_millis(250));
    }

    #[test]
    fn a_room_is_snapshotted_every_1000_entries_unless_told_and_never_every_0() {
        let default = Config::try_parse_from(["attractio"]).unwrap();
        assert_eq!(default.cluster_snapshot_every, 1000);
        assert!(Config::try_parse_from(["attractio", "--cluster-snapshot-every", "0"]).is_err());
        assert_eq!(default.cluster_snapshot_bytes, 1024 * 1024);
        assert!(Config::try_parse_from(["attractio", "--cluster-snapshot-bytes", "0"]).is_err());
    }

    #[test]
    fn the_cluster_queues_are_bounded_and_never_zero() {
        let default = Config::try_parse_from(["attractio"]).unwrap();
        assert_eq!(
            (
                default.cluster_append_queue,
                default.cluster_early_entries,
                default.cluster_live_queue
            ),
            (1024, 4096, 4096)
        );
        for flag in [
            "--cluster-append-queue",
            "--cluster-early-entries",
            "--cluster-live-queue",
        ] {
            assert!(
                Config::try_parse_from(["attractio", flag, "0"]).is_err(),
                "{flag}"
            );
            assert!(
                Config::try_parse_from(["attractio", flag, "1"]).is_ok(),
                "{flag}"
            );
        }
    }

    #[test]
    fn without_an_auth_key_tokens_are_off_and_every_room_is_public() {
        let default = Config::try_parse_from(["attractio"]).unwrap();
        let auth = crate::auth::Auth::from_config(&default).unwrap();
        assert!(!auth.enabled());
        let on = Config::try_parse_from([
            "attractio",
            "--auth-secret",
            "s",
            "--public-rooms",
            "lobby,open-*",
        ])
        .unwrap();
        assert_eq!(on.public_rooms.len(), 2);
        assert!(crate::auth::Auth::from_config(&on).unwrap().enabled());
        let empty = Config::try_parse_from(["attractio", "--auth-secret", ""]).unwrap();
        assert!(
            crate::auth::Auth::from_config(&empty).is_err(),
            "an empty secret would leave every room open"
        );
    }

    #[test]
    fn rooms_are_not_listed_and_http_is_bounded_unless_told() {
        let default = Config::try_parse_from(["attractio"]).unwrap();
        assert!(!default.list_rooms);
        assert!(default.allowed_hosts.is_empty());
        assert_eq!(default.http_timeout, Duration::from_secs(10));
        assert_eq!(default.max_http_connections_per_ip, None);
        assert!(Config::try_parse_from(["attractio", "--http-timeout", "0s"]).is_err());
        let told = Config::try_parse_from([
            "attractio",
            "--list-rooms",
            "--allowed-host",
            "fridge.example",
            "--allowed-host",
            ".Example.org.",
        ])
        .unwrap();
        assert!(told.list_rooms);
        assert_eq!(told.allowed_hosts, ["fridge.example", ".example.org"]);
        assert!(Config::try_parse_from(["attractio", "--allowed-host", " "]).is_err());
    }

    #[test]
    fn board_bounds_are_at_most_the_protocols_and_never_zero() {
        let default = Config::try_parse_from(["attractio"]).unwrap();
        assert_eq!(
            (
                default.max_board_words,
                default.max_word_text,
                default.max_board_bytes,
                default.max_locks_per_member
            ),
            (2000, 200, 256 * 1024, 4)
        );
        for (flag, over) in [
            ("--max-board-words", "2001"),
            ("--max-word-text", "201"),
            ("--max-board-bytes", "262145"),
            ("--max-locks-per-member", "1025"),
        ] {
            assert!(
                Config::try_parse_from(["attractio", flag, over]).is_err(),
                "{flag}"
            );
            assert!(
                Config::try_parse_from(["attractio", flag, "0"]).is_err(),
                "{flag}"
            );
        }
    }

    #[test]
    fn a_turn_and_an_address_store_are_bounded_and_never_by_zero() {
        let default = Config::try_parse_from(["attractio"]).unwrap();
        assert_eq!(
            (default.max_turn_bytes, default.max_stored_rooms_per_ip),
            (1 << 20, 100)
        );
        for flag in ["--max-turn-bytes", "--max-stored-rooms-per-ip"] {
            assert!(
                Config::try_parse_from(["attractio", flag, "0"]).is_err(),
                "{flag}"
            );
            assert!(
                Config::try_parse_from(["attractio", flag, "1"]).is_ok(),
                "{flag}"
            );
        }
    }

    #[test]
    fn the_api_and_webhook_bounds_have_defaults_and_are_never_zero() {
        let default = Config::try_parse_from(["attractio"]).unwrap();
        assert!(default.api_keys.is_empty() && default.webhook_url.is_none());
        assert_eq!(
            (
                default.api_idempotency_keys,
                default.api_history_limit,
                default.api_bans,
                default.webhook_queue
            ),
            (1000, 1000, 10_000, 10_000)
        );
        for flag in [
            "--api-idempotency-keys",
            "--api-history-limit",
            "--api-bans",
            "--webhook-queue",
        ] {
            assert!(
                Config::try_parse_from(["attractio", flag, "0"]).is_err(),
                "{flag}"
            );
        }
        for flag in [
            "--api-idempotency-window",
            "--api-max-ban",
            "--webhook-retry-for",
        ] {
            assert!(
                Config::try_parse_from(["attractio", flag, "0s"]).is_err(),
                "{flag}"
            );
        }
        let keys =
            Config::try_parse_from(["attractio", "--api-key", "a", "--api-key", "b"]).unwrap();
        assert_eq!(keys.api_keys, ["a", "b"]);
    }

    #[test]
    fn a_redis_cluster_needs_its_seed_nodes() {
        let err = Config::try_parse_from(["attractio", "--redis-cluster"]).unwrap_err();
        assert!(err.to_string().contains("--redis-url"), "{err}");
        let seeds = "redis://10.0.0.5:7000,redis://10.0.0.6:7000";
        let ok =
            Config::try_parse_from(["attractio", "--redis-cluster", "--redis-url", seeds]).unwrap();
        assert!(ok.redis_cluster);
        assert_eq!(ok.redis_url.as_deref(), Some(seeds));
        assert!(!Config::try_parse_from(["attractio"]).unwrap().redis_cluster);
    }
}
