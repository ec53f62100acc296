//! The Redis session store, behind an in-process cache so a warm request asks Redis nothing.
//!
//! - L1: a `DashMap` from key to the last answer, trusted for `cache_ttl_ms` (live) or
//!   `negative_cache_ttl_ms` (missing). Concurrent misses on one key share one Redis lookup.
//! - Revocation is pushed: a subscriber evicts keys named on the revocation channel and keys that
//!   Redis reports deleted or expired (keyspace events), so a revoked session is refused on every
//!   replica within a round trip, not after the TTL. If the subscription drops, the whole cache
//!   is cleared on reconnect, since revocations may have been missed.
//! - Redis unreachable: fail closed (503) for sessions not verified recently; ones verified within
//!   `grace_secs` keep working. The connection is re-established in the background.
//! - Just started: a lookup that comes before the first connection attempt has ended waits for
//!   it (at most `lookup_timeout_ms`), rather than be refused as if Redis were down.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use futures_util::StreamExt;

use config::SessionConfig;

use super::session_record::{SessionVerdict, satisfies};
use super::shared_lookups::SharedLookups;
use crate::redis_link::RedisLink;

/// What Redis held under a key when last asked. The value itself is kept (not a verdict), so
/// tokens that expect different values (`value = "{jti}"`) are each judged against it.
#[derive(Clone)]
struct Cached {
    /// `None`: the key was missing. With no value template, a present key is `Some(empty)`.
    value: Option<Arc<[u8]>>,
    checked: Instant,
    /// When the key was last seen present; for the grace period.
    last_present: Option<Instant>,
}

impl Cached {
    fn satisfies(&self, expected: Option<&str>) -> bool {
        satisfies(self.value.as_deref(), expected)
    }
}

/// Counters the Redis session check reports into.
pub struct SessionMetrics {
    pub cache_hit: metrics::Counter,
    pub cache_miss: metrics::Counter,
    pub lookup_seconds: metrics::Histogram,
}

pub struct RedisSessions {
    config: SessionConfig,
    link: Arc<RedisLink>,
    // Keys come from verified tokens only, so a fixed-seed fast hash cannot be flooded.
    cache: DashMap<String, Cached, foldhash::fast::FixedState>,
    loading: SharedLookups<Result<Cached, ()>>,
    metrics: SessionMetrics,
}

impl RedisSessions {
    /// Opens no connection yet: that is [`RedisSessions::start`]'s job, so a Redis that is down
    /// at start-up delays nothing but the first lookups.
    pub fn new(config: SessionConfig, metrics: SessionMetrics) -> Result<Arc<RedisSessions>, redis::RedisError> {
        let link = RedisLink::new(
            "session store",
            &config.redis_url,
            Duration::from_millis(config.lookup_timeout_ms),
        )?;
        Ok(Arc::new(RedisSessions {
            config,
            link,
            cache: DashMap::default(),
            loading: SharedLookups::default(),
            metrics,
        }))
    }

    /// Starts the connection keeper, the revocation subscriber and the cache sweeper. Must be
    /// called inside a Tokio runtime.
    pub fn start(self: &Arc<Self>) {
        tokio::spawn(self.link.clone().keep_connected());
        tokio::spawn(self.clone().follow_revocations());
        tokio::spawn(self.clone().sweep());
    }

    /// Whether `key` is present and, when `expected` is given, holds exactly it. Returns without
    /// awaiting when the cache answers.
    pub async fn check(&self, key: &str, expected: Option<&str>) -> SessionVerdict {
        let fresh = self.cache.get(key).and_then(|c| {
            let ttl = if c.value.is_some() {
                self.config.cache_ttl_ms
            } else {
                self.config.negative_cache_ttl_ms
            };
            (c.checked.elapsed() < Duration::from_millis(ttl)).then(|| c.satisfies(expected))
        });
        if let Some(live) = fresh {
            self.metrics.cache_hit.increment(1);
            return SessionVerdict::from_live(live);
        }
        self.metrics.cache_miss.increment(1);
        // One lookup per key at a time: later callers wait for the first one's answer.
        // Boxed: the lookup (a Redis round trip) is most of this future's size, and it runs
        // only on a cache miss; inline, every request's check would carry and move it.
        let answer = Box::pin(self.loading.run(key, || self.lookup(key))).await;
        match answer {
            Ok(c) => SessionVerdict::from_live(c.satisfies(expected)),
            Err(()) => {
                // Redis cannot be asked: a session seen live within the grace period, with the
                // value this token expects, keeps working; anything else is refused.
                let grace = Duration::from_secs(self.config.grace_secs);
                let recent = self
                    .cache
                    .get(key)
                    .is_some_and(|c| c.last_present.is_some_and(|t| t.elapsed() < grace) && c.satisfies(expected));
                if recent {
                    SessionVerdict::Live
                } else {
                    SessionVerdict::Unavailable
                }
            }
        }
    }

    /// Asks Redis, records the answer in the cache; `Err` when Redis could not be asked.
    async fn lookup(&self, key: &str) -> Result<Cached, ()> {
        let limit = Duration::from_millis(self.config.lookup_timeout_ms);
        let Some(mut conn) = self.link.connection(limit).await else {
            return Err(());
        };
        let started = Instant::now();
        let result: Result<redis::RedisResult<Option<Arc<[u8]>>>, _> = if self.config.value.is_some() {
            tokio::time::timeout(limit, redis::cmd("GET").arg(key).query_async(&mut conn))
                .await
                .map(|r: redis::RedisResult<Option<Vec<u8>>>| r.map(|v| v.map(Arc::from)))
        } else {
            tokio::time::timeout(limit, redis::cmd("EXISTS").arg(key).query_async(&mut conn))
                .await
                .map(|r: redis::RedisResult<i64>| r.map(|n| (n > 0).then(|| Arc::from(&[][..]))))
        };
        self.metrics.lookup_seconds.record(started.elapsed().as_secs_f64());
        let value = match result {
            Ok(Ok(value)) => value,
            Ok(Err(e)) => {
                tracing::warn!("session lookup of {key} failed: {e}");
                self.link.report_broken();
                return Err(());
            }
            Err(_) => {
                tracing::warn!("session lookup of {key} timed out after {limit:?}");
                self.link.report_broken();
                return Err(());
            }
        };
        let now = Instant::now();
        let cached = Cached {
            last_present: value.is_some().then_some(now),
            value,
            checked: now,
        };
        self.cache.insert(key.to_owned(), cached.clone());
        Ok(cached)
    }

    /// Evicts revoked keys as Redis announces them.
    async fn follow_revocations(self: Arc<Self>) {
        let mut first = true;
        loop {
            let subscribed = async {
                let mut pubsub = self.link.client().get_async_pubsub().await?;
                if let Some(channel) = &self.config.revocation_channel {
                    pubsub.subscribe(channel).await?;
                }
                if self.config.keyspace_events {
                    for event in ["del", "unlink", "expired", "evicted"] {
                        pubsub.psubscribe(format!("__keyevent@*__:{event}")).await?;
                    }
                }
                Ok::<_, redis::RedisError>(pubsub)
            }
            .await;
            match subscribed {
                Ok(mut pubsub) => {
                    if !first {
                        // Revocations sent while we were away are lost: forget everything.
                        self.cache.clear();
                    }
                    first = false;
                    let mut messages = pubsub.on_message();
                    while let Some(msg) = messages.next().await {
                        let key = String::from_utf8_lossy(msg.get_payload_bytes());
                        if key == "*" {
                            self.cache.clear();
                        } else {
                            self.cache.remove(key.as_ref());
                        }
                    }
                    tracing::warn!("session revocation subscription lost; reconnecting");
                }
                Err(e) => tracing::debug!("session revocation subscription failed: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Drops entries too old to answer or to grant grace, so the cache stays bounded by the
    /// number of sessions active recently.
    async fn sweep(self: Arc<Self>) {
        let keep = Duration::from_millis(self.config.cache_ttl_ms.max(self.config.negative_cache_ttl_ms))
            .max(Duration::from_secs(self.config.grace_secs));
        loop {
            tokio::time::sleep(Duration::from_secs(10)).await;
            self.cache
                .retain(|_, c| c.checked.elapsed() < keep || c.last_present.is_some_and(|t| t.elapsed() < keep));
        }
    }
}
