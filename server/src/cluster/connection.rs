//! The node's connections to Redis, the same types whether the cluster's
//! Redis is one server or a Redis Cluster (`--redis-cluster`): commands go
//! through a [`Connection`], subscriptions through a [`Subscriber`], and the
//! code above them (`cluster/mod.rs`, the room's scripts) does not tell the
//! two apart.
//!
//! On a Redis Cluster every command is sent to the shard owning its keys'
//! slot (the keys of one room share the hash tag `{room}`, so a script's
//! keys are always in one slot), and subscriptions ride the same
//! connections as RESP3 pushes, routed to the rooms by a callback.

use std::time::Duration;

use anyhow::Context;
use redis::aio::{ConnectionLike, ConnectionManager, PubSubSink};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Msg, Pipeline, PushInfo, RedisFuture, Value};

/// How long connecting to a Redis may take, and how long a command may wait
/// for its answer, retries and redirections included: a command fails
/// within about two seconds when Redis is unreachable (the member is told;
/// the next command reconnects) rather than after the defaults' seconds of
/// reconnection attempts.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// A multiplexed command connection that reconnects by itself. Cheap to
/// clone (clones share the connection), and a [`redis::aio::ConnectionLike`],
/// so `AsyncCommands`, `Script::invoke_async` and `Pipeline::query_async`
/// take it in either mode.
#[derive(Clone)]
pub enum Connection {
    /// One Redis (`--redis-url redis://host:port/db`).
    Server(ConnectionManager),
    /// A Redis Cluster, reached through its seed nodes: each command goes
    /// to the master owning its slot, following `MOVED`/`ASK` when slots
    /// move. A pipeline's commands must share a slot.
    Cluster(ClusterConnection),
}

/// Subscribes and unsubscribes the node's channels; what is published on
/// them goes to the routing callback given at connect time.
pub enum Subscriber {
    /// A RESP2 pub/sub connection of its own; `cluster::route_published`
    /// reads it and replaces this sink when it reopens the connection.
    Server(PubSubSink),
    /// The cluster connection itself (RESP3): it subscribes on the shard
    /// owning the channel's slot, and subscribes again by itself after a
    /// reconnect or a slot move (redis-rs tracks the subscriptions).
    Cluster(ClusterConnection),
}

impl Connection {
    /// Connects to the one Redis `client` names (`redis://host:port/db`);
    /// errors if it does not answer within `CONNECT_TIMEOUT`.
    pub async fn server(client: &redis::Client) -> redis::RedisResult<Connection> {
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500))
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        let manager = client.get_connection_manager_with_config(config).await?;
        Ok(Connection::Server(manager))
    }

    /// Connects to the Redis Cluster that `seeds` (comma-separated
    /// `redis://host:port` of some of its nodes) belong to, and hands every
    /// message published on a subscribed channel to `published`, which must
    /// not block (it runs on the connection's task). Errors if no seed
    /// answers or the cluster does not speak RESP3 (Redis 6 or newer).
    pub async fn cluster(
        seeds: &str,
        published: impl Fn(Msg) + Send + Sync + 'static,
    ) -> anyhow::Result<(Connection, Subscriber)> {
        let seeds: Vec<&str> = seeds.split(',').map(str::trim).collect();
        let client = ClusterClientBuilder::new(seeds)
            // Retries follow a moved slot or a failed-over shard; the
            // timeout bounds them all, so an unreachable shard still fails
            // a command within RESPONSE_TIMEOUT. A retry after a dropped
            // connection may repeat a command Redis had applied: an append
            // carries its append id, which Redis appends once (`APPEND`).
            .retries(3)
            .min_retry_wait(50)
            .max_retry_wait(500)
            .connection_timeout(CONNECT_TIMEOUT)
            .response_timeout(RESPONSE_TIMEOUT)
            .use_protocol(redis::ProtocolVersion::RESP3)
            .push_sender(move |push: PushInfo| {
                // Subscription confirmations and disconnections are not
                // messages; a room whose entry is lost reads it later.
                if let Some(message) = Msg::from_push_info(push) {
                    published(message);
                }
                Ok::<(), std::convert::Infallible>(())
            })
            .build()
            .context("reading the seed nodes of --redis-url")?;
        let connection = client.get_async_connection().await?;
        Ok((
            Connection::Cluster(connection.clone()),
            Subscriber::Cluster(connection),
        ))
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Server(c) => c.req_packed_command(cmd),
            Connection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Server(c) => c.req_packed_commands(pipeline, offset, count),
            Connection::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Server(c) => c.get_db(),
            Connection::Cluster(c) => c.get_db(),
        }
    }
}

impl Subscriber {
    pub async fn subscribe(&mut self, channel: &str) -> redis::RedisResult<()> {
        match self {
            Subscriber::Server(sink) => sink.subscribe(channel).await,
            Subscriber::Cluster(c) => c.subscribe(channel).await,
        }
    }

    pub async fn unsubscribe(&mut self, channel: &str) -> redis::RedisResult<()> {
        match self {
            Subscriber::Server(sink) => sink.unsubscribe(channel).await,
            Subscriber::Cluster(c) => c.unsubscribe(channel).await,
        }
    }
}
