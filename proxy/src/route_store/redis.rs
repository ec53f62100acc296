//! The route table shared through Redis (docs/route-store.md).
//!
//! Keys, under the configured prefix `P`:
//! - `P routes`: hash, route key → data as JSON (no `last_activity`);
//! - `P activity`: hash, route key → newest activity any replica saw, ms since the epoch;
//! - `P meta`: hash, `epoch` (a random id, new whenever the store had to be rebuilt) and
//!   `version` (+1 per change);
//! - `P changes`: stream, one entry per change (`e` epoch, `v` version, `at` ms, `c` the change).
//!
//! Writers run one Lua script per change or batch: the hashes, the version and the stream entry
//! change together or not at all. Each replica's follower loads the whole table in one
//! MULTI/EXEC (with the stream position it corresponds to), then applies the stream's entries in
//! version order. Anything it cannot account for (a reconnect, a version gap, a trimmed stream, a
//! new epoch) leads to a full reload, never to a silently missing route.
//!
//! Redis losing its data (restarted empty, or rolled back to an older snapshot) shows as a
//! missing epoch or a version behind the replica's. The replica then keeps its table, puts back
//! into Redis every route Redis lacks (add if absent, never overwrite), and reloads: no replica
//! wipes its table while the hub that could refill it is away. The hub's reconcile then removes
//! whatever is stale.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use config::RedisRouteStore;
use redis::Value;
use redis::aio::MultiplexedConnection;
use serde_json::{Map, Value as Json};
use tokio::sync::watch;

use super::{Applied, Change, StoreMetrics, StoreUnavailable};
use crate::redis_link::{RedisLink, lost_connection};
use crate::route_table::{RouteTable, Routes};
use crate::timestamp::now_ms;

/// How long a write may take in Redis (a batch of 100,000 routes takes a fraction of this).
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a write waits for a connection that is being made (Redis just came back); while
/// Redis is known to be down it waits for nothing.
const CONNECT_WAIT: Duration = Duration::from_secs(3);
/// How long a writer waits for its own table to show its change before answering anyway (the
/// change is in Redis by then: acknowledged, and every replica will apply it).
const APPLY_WAIT: Duration = Duration::from_secs(2);
/// How long the follower blocks on the stream before checking the store's version.
const FOLLOW_BLOCK: Duration = Duration::from_secs(2);
/// Stream entries read at once.
const READ_COUNT: usize = 1000;
/// The stream is trimmed to about this many entries; a replica further behind reloads.
const STREAM_LEN: usize = 10_000;
/// How often each replica adds its activity to the shared record, at most.
const ACTIVITY_FLUSH: Duration = Duration::from_secs(1);
/// ... and at least. Between the two, the walk over the table that finds the active routes
/// (about 11 ms at 100,000 routes on a 2-core EPYC) is kept to 1/WALK_SHARE of one core: every
/// 6 s or so at 100,000 routes, every second up to 20,000.
const ACTIVITY_FLUSH_MAX: Duration = Duration::from_secs(30);
const WALK_SHARE: u32 = 500;
/// Routes per script call when activity is flushed or routes are put back.
const CHUNK: usize = 2000;
/// How long a listing waits for the shared activity before answering with its own.
const ACTIVITY_WAIT: Duration = Duration::from_secs(1);

/// One change or batch: ensure the epoch, apply to the hashes, bump the version, publish.
/// KEYS: meta, routes, activity, changes. ARGV: new epoch, now, stream length, change JSON,
/// kind, then `set`: key, data; `del`: key; `batch`: replace (0/1), removal count, removals...,
/// then key, data pairs. Returns {epoch, version, removed}; a `del` of an absent key changes
/// nothing and returns removed = 0.
const WRITE_LUA: &str = r#"
local meta, routes, activity, changes = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local epoch = redis.call('HGET', meta, 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('HSET', meta, 'epoch', epoch)
end
local now, kind, removed = ARGV[2], ARGV[5], 0
if kind == 'del' then
  removed = redis.call('HDEL', routes, ARGV[6])
  if removed == 0 then
    return {epoch, tonumber(redis.call('HGET', meta, 'version') or '0'), 0}
  end
  redis.call('HDEL', activity, ARGV[6])
elseif kind == 'set' then
  redis.call('HSET', routes, ARGV[6], ARGV[7])
  redis.call('HSET', activity, ARGV[6], now)
else
  if ARGV[6] == '1' then
    redis.call('DEL', routes, activity)
  end
  local n = tonumber(ARGV[7])
  for i = 8, 7 + n do
    removed = removed + redis.call('HDEL', routes, ARGV[i])
    redis.call('HDEL', activity, ARGV[i])
  end
  for i = 8 + n, #ARGV, 2 do
    redis.call('HSET', routes, ARGV[i], ARGV[i + 1])
    redis.call('HSET', activity, ARGV[i], now)
  end
end
local version = redis.call('HINCRBY', meta, 'version', 1)
redis.call('XADD', changes, 'MAXLEN', '~', ARGV[3], '*', 'e', epoch, 'v', version, 'at', now, 'c', ARGV[4])
return {epoch, version, removed}
"#;

/// Puts back routes Redis lacks after it lost data: add if absent, never overwrite. A store
/// with no epoch, or behind what the caller saw under the same epoch (rolled back), gets a new
/// epoch, so that every replica notices. KEYS: meta, routes, activity, changes. ARGV: new epoch,
/// now, stream length, the caller's epoch, its version, then key, data, activity triples.
/// Returns {epoch, version, added}.
const PUT_BACK_LUA: &str = r#"
local meta, routes, activity, changes = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local epoch = redis.call('HGET', meta, 'epoch')
local version = tonumber(redis.call('HGET', meta, 'version') or '0')
local renewed = false
if (not epoch) or (epoch == ARGV[4] and version < tonumber(ARGV[5])) then
  epoch = ARGV[1]
  redis.call('HSET', meta, 'epoch', epoch)
  renewed = true
end
local added = 0
for i = 6, #ARGV, 3 do
  if redis.call('HSETNX', routes, ARGV[i], ARGV[i + 1]) == 1 then
    added = added + 1
    local seen = tonumber(redis.call('HGET', activity, ARGV[i]) or '0')
    if tonumber(ARGV[i + 2]) > seen then
      redis.call('HSET', activity, ARGV[i], ARGV[i + 2])
    end
  end
end
if added > 0 or renewed then
  version = redis.call('HINCRBY', meta, 'version', 1)
  redis.call('XADD', changes, 'MAXLEN', '~', ARGV[3], '*', 'e', epoch, 'v', version, 'at', ARGV[2], 'c', '{"op":"reload"}')
end
return {epoch, version, added}
"#;

/// Raises the shared activity of routes that still exist. KEYS: routes, activity. ARGV: key, ms
/// pairs.
const ACTIVITY_LUA: &str = r#"
for i = 1, #ARGV, 2 do
  if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 1 then
    local seen = tonumber(redis.call('HGET', KEYS[2], ARGV[i]) or '0')
    if tonumber(ARGV[i + 1]) > seen then
      redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
    end
  end
end
return 0
"#;

static WRITE: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(WRITE_LUA));
static PUT_BACK: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(PUT_BACK_LUA));
static ACTIVITY: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(ACTIVITY_LUA));

struct Keys {
    meta: String,
    routes: String,
    activity: String,
    changes: String,
}

impl Keys {
    /// A call of a script that takes every key (the write and the put-back), in their order.
    fn invoke<'a>(&self, script: &'a redis::Script) -> redis::ScriptInvocation<'a> {
        let mut call = script.prepare_invoke();
        call.key(&self.meta)
            .key(&self.routes)
            .key(&self.activity)
            .key(&self.changes);
        call
    }
}

/// Which state of the store the table shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Position {
    /// `None` until the table was loaded from a store that had been written.
    epoch: Option<String>,
    version: u64,
}

/// The whole store, read in one MULTI/EXEC.
struct Snapshot {
    position: Position,
    routes: HashMap<String, String>,
    activity: HashMap<String, u64>,
    /// The stream entry the snapshot includes, to follow from.
    stream_id: String,
}

/// Why following stopped; the follower reconnects and reloads.
#[derive(Debug, thiserror::Error)]
enum FollowError {
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
    #[error("{0}")]
    Protocol(String),
}

pub struct RedisStore {
    keys: Keys,
    routes: Arc<Routes>,
    metrics: StoreMetrics,
    /// Writes, activity and listings; the follower has a connection of its own, since it
    /// blocks on the stream.
    link: Arc<RedisLink>,
    /// What the table shows, published after every change the follower applies.
    applied: watch::Sender<Position>,
    loaded: AtomicBool,
    up: AtomicBool,
}

impl RedisStore {
    pub fn new(
        config: &RedisRouteStore,
        routes: Arc<Routes>,
        metrics: StoreMetrics,
    ) -> Result<Arc<RedisStore>, redis::RedisError> {
        let link = RedisLink::new("route store", &config.url, WRITE_TIMEOUT)?;
        let p = &config.prefix;
        let keys = Keys {
            meta: format!("{p}meta"),
            routes: format!("{p}routes"),
            activity: format!("{p}activity"),
            changes: format!("{p}changes"),
        };
        Ok(Arc::new(RedisStore {
            keys,
            routes,
            metrics,
            link,
            applied: watch::Sender::new(Position::default()),
            loaded: AtomicBool::new(false),
            up: AtomicBool::new(false),
        }))
    }

    pub fn start(self: Arc<Self>, default_route: Option<Change>) {
        tokio::spawn(self.link.clone().keep_connected());
        tokio::spawn(self.clone().follow(default_route));
        tokio::spawn(self.flush_activity());
    }

    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    pub fn version(&self) -> u64 {
        self.applied.borrow().version
    }

    fn unavailable(&self, why: impl std::fmt::Display) -> StoreUnavailable {
        StoreUnavailable(format!("Redis at {} {why}", self.link.url()))
    }

    /// Writes `change` to Redis, then waits (briefly) until this replica's table has it, so that
    /// whoever made the change reads it back from this replica at once.
    pub async fn write(&self, change: Change) -> Result<Applied, StoreUnavailable> {
        let began = Instant::now();
        let mut call = self.keys.invoke(&WRITE);
        // Maps and strings always serialise.
        let json = serde_json::to_string(&change).unwrap_or_default();
        call.arg(new_epoch()).arg(now_ms()).arg(STREAM_LEN).arg(json);
        match &change {
            Change::Set { key, data } => {
                call.arg("set")
                    .arg(key)
                    .arg(serde_json::to_string(data).unwrap_or_default());
            }
            Change::Delete { key } => {
                call.arg("del").arg(key);
            }
            Change::Batch { replace, remove, add } => {
                call.arg("batch").arg(u8::from(*replace)).arg(remove.len());
                for key in remove {
                    call.arg(key);
                }
                for (key, data) in add {
                    call.arg(key).arg(serde_json::to_string(data).unwrap_or_default());
                }
            }
            Change::Reload => return Err(StoreUnavailable("a reload is not a change to write".into())),
        }
        let mut attempt = 0;
        let (epoch, version, removed): (String, u64, usize) = loop {
            attempt += 1;
            let Some(mut conn) = self.link.connection(CONNECT_WAIT).await else {
                return Err(self.unavailable("cannot be reached; the change was not made, retry when Redis is back"));
            };
            match tokio::time::timeout(WRITE_TIMEOUT, call.invoke_async(&mut conn)).await {
                Ok(Ok(answer)) => break answer,
                // The connection died under the call (Redis restarted since it was opened):
                // once more on a new one. Every change is idempotent, so the rare call that
                // reached Redis before its answer was lost does no harm run twice.
                Ok(Err(e)) if attempt == 1 && (e.is_connection_dropped() || e.is_io_error()) => {
                    self.link.report_broken();
                }
                Ok(Err(e)) => {
                    if lost_connection(&e) {
                        self.link.report_broken();
                    }
                    return Err(self.unavailable(format_args!(
                        "failed the write ({e}); the change was not acknowledged, retry it"
                    )));
                }
                Err(_) => {
                    self.link.report_broken();
                    return Err(self.unavailable(format_args!(
                        "did not answer within {WRITE_TIMEOUT:?}; the change was not acknowledged, retry it"
                    )));
                }
            }
        };
        self.wait_applied(&epoch, version, APPLY_WAIT).await;
        self.metrics.write_seconds.record(began.elapsed().as_secs_f64());
        Ok(Applied {
            removed,
            len: self.routes.load().len(),
        })
    }

    /// Waits until the table shows `version` of `epoch`, at most `limit`.
    async fn wait_applied(&self, epoch: &str, version: u64, limit: Duration) {
        let mut applied = self.applied.subscribe();
        let shown = applied.wait_for(|p| p.epoch.as_deref() == Some(epoch) && p.version >= version);
        if tokio::time::timeout(limit, shown).await.is_err() {
            tracing::warn!(
                "route store: version {version} is in Redis but not yet in this replica's table after {limit:?}; it follows"
            );
        }
    }

    /// The newest activity any replica recorded (of `key` alone, when given); `None` when Redis
    /// cannot be asked. Waits first, briefly, until the table shows the store's latest version,
    /// so a listing reflects every change made before it was asked for.
    pub async fn shared_activity(&self, key: Option<&str>) -> Option<HashMap<String, u64>> {
        let began = Instant::now();
        let mut conn = self.link.connection(ACTIVITY_WAIT).await?;
        let mut pipe = redis::pipe();
        pipe.cmd("HMGET").arg(&self.keys.meta).arg("epoch").arg("version");
        match key {
            Some(key) => pipe.cmd("HMGET").arg(&self.keys.activity).arg(key),
            None => pipe.cmd("HGETALL").arg(&self.keys.activity),
        };
        let answer = tokio::time::timeout(ACTIVITY_WAIT, pipe.query_async::<(Value, Value)>(&mut conn)).await;
        let (meta, activity) = match answer {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => {
                tracing::warn!("route store: shared activity not read ({e}); listing this replica's own");
                if lost_connection(&e) {
                    self.link.report_broken();
                }
                return None;
            }
            Err(_) => {
                tracing::warn!(
                    "route store: shared activity not read within {ACTIVITY_WAIT:?}; listing this replica's own"
                );
                self.link.report_broken();
                return None;
            }
        };
        if let Some((epoch, version)) = meta_position(meta) {
            let left = ACTIVITY_WAIT.saturating_sub(began.elapsed());
            if self.applied.borrow().version < version {
                self.wait_applied(&epoch, version, left).await;
            }
        }
        Some(match key {
            Some(key) => bulk_strings(activity)
                .into_iter()
                .next()
                .flatten()
                .and_then(|ms| ms.parse().ok())
                .map(|ms| HashMap::from([(key.to_owned(), ms)]))
                .unwrap_or_default(),
            None => pairs(activity)
                .into_iter()
                .filter_map(|(k, v)| Some((k, v.parse().ok()?)))
                .collect(),
        })
    }

    // ---------------------------------------------------------------------------------------
    // The follower: load, then follow the stream; reconnect and reload on anything unexpected.

    async fn follow(self: Arc<Self>, mut default_route: Option<Change>) {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(FOLLOW_BLOCK + WRITE_TIMEOUT));
        let mut backoff = Duration::from_millis(100);
        let mut position = Position::default();
        let mut reported_down = false;
        loop {
            let result: Result<std::convert::Infallible, FollowError> = async {
                let mut conn = self
                    .link
                    .client()
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?;
                let mut stream_id = self.load(&mut conn, &mut position).await?;
                self.up.store(true, Ordering::Relaxed);
                self.metrics.up.set(1.0);
                reported_down = false;
                backoff = Duration::from_millis(100);
                if let Some(route) = default_route.take() {
                    // Its own task: the write waits for this follower to apply it.
                    let store = self.clone();
                    tokio::spawn(async move { store.ensure_default_route(route).await });
                }
                loop {
                    if !self.read_changes(&mut conn, &mut position, &mut stream_id).await? {
                        stream_id = self.load(&mut conn, &mut position).await?;
                    }
                }
            }
            .await;
            let Err(e) = result;
            self.up.store(false, Ordering::Relaxed);
            self.metrics.up.set(0.0);
            // Once per outage; the table stays as it was.
            if !reported_down {
                tracing::warn!(
                    "Route store unreachable: {} ({e}); serving the last table ({} routes), retrying",
                    self.link.url(),
                    self.routes.load().len()
                );
                reported_down = true;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    /// Loads the whole table (putting back first what Redis lost, if it lost data) and returns
    /// the stream position to follow from.
    async fn load(&self, conn: &mut MultiplexedConnection, position: &mut Position) -> Result<String, FollowError> {
        let began = Instant::now();
        let mut snapshot = self.snapshot(conn).await?;
        let lost_data = match (&position.epoch, &snapshot.position.epoch) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(mine), Some(theirs)) => mine != theirs || snapshot.position.version < position.version,
        };
        if lost_data && !self.routes.load().is_empty() {
            let table = self.routes.load_full();
            tracing::warn!(
                "Route store in Redis lost data (it is at version {} of epoch {}; this replica had seen version {}): keeping this replica's {} routes and putting back those Redis lacks",
                snapshot.position.version,
                snapshot.position.epoch.as_deref().unwrap_or("(none)"),
                position.version,
                table.len()
            );
            let added = self.put_back(conn, &table, position).await?;
            tracing::info!("Route store: {added} routes put back into Redis");
            snapshot = self.snapshot(conn).await?;
        }
        let Snapshot {
            position: loaded,
            routes,
            activity,
            stream_id,
        } = snapshot;
        let old = self.routes.load_full();
        let now = now_ms();
        let mut table = RouteTable::default();
        for (key, text) in routes {
            let mut at = activity.get(&key).copied().unwrap_or(now);
            if let Some(route) = old.get(&key) {
                at = at.max(route.last_activity_ms());
            }
            if table.insert_json(&key, text, at).is_none() {
                tracing::error!("route store: route {key} in Redis is not a JSON object; skipped");
            }
        }
        let len = table.len();
        self.routes.update(|t| *t = table);
        self.metrics.reloads.increment(1);
        self.metrics.routes.set(len as f64);
        *position = loaded;
        self.publish(position);
        self.loaded.store(true, Ordering::Release);
        tracing::info!(
            "Route store loaded: {len} routes, version {} in {} ms",
            position.version,
            began.elapsed().as_millis()
        );
        Ok(stream_id)
    }

    async fn snapshot(&self, conn: &mut MultiplexedConnection) -> Result<Snapshot, FollowError> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("HMGET")
            .arg(&self.keys.meta)
            .arg("epoch")
            .arg("version")
            .cmd("HGETALL")
            .arg(&self.keys.routes)
            .cmd("HGETALL")
            .arg(&self.keys.activity)
            .cmd("XREVRANGE")
            .arg(&self.keys.changes)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1);
        let (meta, routes, activity, last): (Value, Value, Value, Value) = pipe.query_async(conn).await?;
        let position = match meta_position(meta) {
            Some((epoch, version)) => Position {
                epoch: Some(epoch),
                version,
            },
            None => Position::default(),
        };
        let stream_id = range_entries(&last)
            .into_iter()
            .next()
            .map_or_else(|| "0-0".to_owned(), |(id, _)| id);
        Ok(Snapshot {
            position,
            routes: pairs(routes).into_iter().collect(),
            activity: pairs(activity)
                .into_iter()
                .filter_map(|(k, v)| Some((k, v.parse().ok()?)))
                .collect(),
            stream_id,
        })
    }

    /// Adds every route of `table` that Redis lacks; returns how many it added.
    async fn put_back(
        &self,
        conn: &mut MultiplexedConnection,
        table: &RouteTable,
        mine: &Position,
    ) -> Result<u64, FollowError> {
        let routes = table.routes();
        let epoch = new_epoch();
        let mut added = 0;
        for chunk in routes.chunks(CHUNK) {
            let mut call = self.keys.invoke(&PUT_BACK);
            call.arg(&epoch)
                .arg(now_ms())
                .arg(STREAM_LEN)
                .arg(mine.epoch.as_deref().unwrap_or(""))
                .arg(mine.version);
            for (key, route) in chunk {
                call.arg(key).arg(route.data()).arg(route.last_activity_ms());
            }
            let (_, _, n): (String, u64, u64) = call.invoke_async(conn).await?;
            added += n;
        }
        Ok(added)
    }

    /// Reads the next entries of the stream and applies them in one table swap. Returns false
    /// when only a full reload can bring the table up to date.
    async fn read_changes(
        &self,
        conn: &mut MultiplexedConnection,
        position: &mut Position,
        stream_id: &mut String,
    ) -> Result<bool, FollowError> {
        let read = |block: Option<Duration>| {
            let mut cmd = redis::cmd("XREAD");
            cmd.arg("COUNT").arg(READ_COUNT);
            if let Some(block) = block {
                cmd.arg("BLOCK").arg(block.as_millis() as u64);
            }
            cmd.arg("STREAMS").arg(&self.keys.changes).arg(&*stream_id);
            cmd
        };
        let mut batch = read_entries(read(Some(FOLLOW_BLOCK)).query_async(conn).await?);
        if batch.is_empty() {
            // Quiet for a while: make sure nothing was missed. The version and the stream entry
            // are written by one script, so a version ahead of ours with no entry to read means
            // entries were trimmed or lost.
            let meta: Value = redis::cmd("HMGET")
                .arg(&self.keys.meta)
                .arg("epoch")
                .arg("version")
                .query_async(conn)
                .await?;
            let store = meta_position(meta);
            match (&store, &position.epoch) {
                (Some((epoch, version)), Some(mine)) if epoch == mine && *version == position.version => {
                    return Ok(true);
                }
                (None, None) => return Ok(true),
                (Some((_, version)), None) if *version == 0 => return Ok(true),
                _ => {}
            }
            batch = read_entries(read(None).query_async(conn).await?);
            if batch.is_empty() {
                tracing::warn!(
                    "route store: Redis is at {store:?}, this replica at {:?} version {} with nothing to read: reloading",
                    position.epoch,
                    position.version
                );
                return Ok(false);
            }
        }
        let mut changes = Vec::with_capacity(batch.len());
        let mut next = position.clone();
        for (id, fields) in batch {
            let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
            let (Some(epoch), Some(version), Some(at), Some(text)) = (
                field("e"),
                field("v").and_then(|v| v.parse::<u64>().ok()),
                field("at").and_then(|v| v.parse::<u64>().ok()),
                field("c"),
            ) else {
                return Err(FollowError::Protocol(format!("stream entry {id} lacks e, v, at or c")));
            };
            if next.epoch.as_deref().is_some_and(|mine| mine != epoch) {
                tracing::warn!(
                    "route store: a change of epoch {epoch} follows epoch {:?}: reloading",
                    next.epoch
                );
                return Ok(false);
            }
            if version <= next.version && next.epoch.is_some() {
                *stream_id = id;
                continue;
            }
            if version != next.version + 1 {
                tracing::warn!(
                    "route store: change {version} follows {} (the ones between were trimmed or lost): reloading",
                    next.version
                );
                return Ok(false);
            }
            let change = match serde_json::from_str::<Change>(text) {
                Ok(Change::Reload) => return Ok(false),
                Ok(change) => change,
                Err(e) => return Err(FollowError::Protocol(format!("stream entry {id}: {e}"))),
            };
            changes.push((change, at));
            next = Position {
                epoch: Some(epoch.to_owned()),
                version,
            };
            *stream_id = id;
        }
        if !changes.is_empty() {
            let len = self.routes.update(|table| {
                for (change, at) in changes {
                    change.apply(table, at);
                }
                table.len()
            });
            self.metrics.routes.set(len as f64);
        }
        *position = next;
        self.publish(position);
        Ok(true)
    }

    fn publish(&self, position: &Position) {
        self.metrics.version.set(position.version as f64);
        self.applied.send_if_modified(|p| {
            let changed = p != position;
            if changed {
                *p = position.clone();
            }
            changed
        });
    }

    /// `--default-target`: the route `/` is written once the table is loaded, unless the store
    /// already has it with that target.
    async fn ensure_default_route(&self, route: Change) {
        let Change::Set { key, data } = &route else { return };
        let current = self.routes.load().get(key).map(|r| r.data().to_owned());
        let target = data.get("target").and_then(Json::as_str).unwrap_or_default().to_owned();
        let same_target = current
            .as_deref()
            .and_then(|c| serde_json::from_str::<Map<String, Json>>(c).ok())
            .is_some_and(|c| c.get("target").and_then(Json::as_str) == Some(&target));
        if same_target {
            return;
        }
        let key = key.clone();
        match self.write(route).await {
            Ok(_) => tracing::info!("Route added {key} -> {target}"),
            Err(e) => tracing::error!("the default route was not written: {e}"),
        }
    }

    // ---------------------------------------------------------------------------------------
    // Activity: each replica adds what it saw to the shared record every second (less often for
    // tables so large that finding the active routes would cost more than 0.2 % of a core).

    async fn flush_activity(self: Arc<Self>) {
        let mut since = 0;
        let mut pause = ACTIVITY_FLUSH;
        loop {
            tokio::time::sleep(pause).await;
            if !self.is_loaded() {
                continue;
            }
            let Some(mut conn) = self.link.connection(Duration::ZERO).await else {
                continue;
            };
            // Activity recorded while the walk runs is newer than `began`: sent next time.
            let began = now_ms().saturating_sub(1);
            // Off the runtime's threads: with one worker, a walk of 100,000 routes would hold up
            // the requests and the follower behind it for its 11 ms.
            let table = self.routes.load_full();
            let walked = tokio::task::spawn_blocking(move || {
                let walk = Instant::now();
                let mut active = Vec::new();
                table.for_each_route(|key, route| {
                    let at = route.last_activity_ms();
                    if at > since {
                        active.push((key.to_owned(), at));
                    }
                });
                (active, walk.elapsed())
            })
            .await;
            let Ok((active, took)) = walked else { continue };
            pause = (took * WALK_SHARE).clamp(ACTIVITY_FLUSH, ACTIVITY_FLUSH_MAX);
            let mut sent = true;
            for chunk in active.chunks(CHUNK) {
                let mut call = ACTIVITY.prepare_invoke();
                call.key(&self.keys.routes).key(&self.keys.activity);
                for (key, at) in chunk {
                    call.arg(key).arg(*at);
                }
                if let Err(e) = call.invoke_async::<()>(&mut conn).await {
                    tracing::debug!("route store: activity not flushed ({e}); retried");
                    if lost_connection(&e) {
                        self.link.report_broken();
                    }
                    sent = false;
                    break;
                }
            }
            if sent {
                since = began;
            }
        }
    }
}

/// A random epoch id: 128 bits from the system's generator.
fn new_epoch() -> String {
    let mut bytes = [0u8; 16];
    if getrandom(&mut bytes).is_err() {
        // No randomness: the time and the pid still tell one store's rebuild from another.
        let fallback = (now_ms() as u128) << 32 | u128::from(std::process::id());
        bytes = fallback.to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn getrandom(buf: &mut [u8]) -> std::io::Result<()> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(buf)
}

// -------------------------------------------------------------------------------------------
// Reading Redis's answers. RESP2 gives hashes as flat arrays, RESP3 as maps; both are taken.

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

/// As [`text`], taking the bytes rather than copying them.
fn owned_text(v: Value) -> Option<String> {
    match v {
        Value::BulkString(b) => {
            Some(String::from_utf8(b).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
        }
        other => text(&other),
    }
}

/// `HMGET` of strings: one `Option` per field.
fn bulk_strings(v: Value) -> Vec<Option<String>> {
    match v {
        Value::Array(items) => items.iter().map(text).collect(),
        _ => Vec::new(),
    }
}

/// `HMGET meta epoch version` → the store's epoch and version, when it has an epoch.
fn meta_position(v: Value) -> Option<(String, u64)> {
    let mut fields = bulk_strings(v).into_iter();
    let epoch = fields.next().flatten()?;
    let version = fields.next().flatten().and_then(|v| v.parse().ok()).unwrap_or(0);
    Some((epoch, version))
}

/// A hash as (field, value) pairs.
fn pairs(v: Value) -> Vec<(String, String)> {
    match v {
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len() / 2);
            let mut items = items.into_iter();
            while let (Some(k), Some(v)) = (items.next(), items.next()) {
                if let (Some(k), Some(v)) = (owned_text(k), owned_text(v)) {
                    out.push((k, v));
                }
            }
            out
        }
        Value::Map(items) => items.iter().filter_map(|(k, v)| Some((text(k)?, text(v)?))).collect(),
        _ => Vec::new(),
    }
}

/// A stream entry: its id and its fields.
type Entry = (String, Vec<(String, String)>);

/// `XRANGE` / `XREVRANGE`: `[[id, [field, value, ...]], ...]`.
fn range_entries(v: &Value) -> Vec<Entry> {
    let Value::Array(items) = v else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|e| match e {
            Value::Array(parts) if parts.len() == 2 => Some((text(&parts[0])?, pairs(parts[1].clone()))),
            _ => None,
        })
        .collect()
}

/// `XREAD` of one stream: nil, `[[name, entries]]` (RESP2) or `{name: entries}` (RESP3).
fn read_entries(v: Value) -> Vec<Entry> {
    match v {
        Value::Array(streams) => streams
            .iter()
            .flat_map(|s| match s {
                Value::Array(p) if p.len() == 2 => range_entries(&p[1]),
                _ => Vec::new(),
            })
            .collect(),
        Value::Map(streams) => streams.iter().flat_map(|(_, l)| range_entries(l)).collect(),
        _ => Vec::new(),
    }
}
