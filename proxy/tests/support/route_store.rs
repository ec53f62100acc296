//! What the route-store tests (route_store.rs, route_store_contract.rs) share: replicas on a
//! Redis, waiting for a condition, and upstreams that answer with their name.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::redis::RedisServer;
use super::{Edgeproxy, Reply, Response, Upstream, get};

/// A replica on `url` (`--storage-url`, which alone selects the store), once it is ready.
pub fn replica_on(url: &str, extra: &[&str]) -> Edgeproxy {
    let mut args = vec!["--storage-url", url];
    args.extend_from_slice(extra);
    ready(Edgeproxy::start(&args))
}

/// A replica on `redis`'s route store, once it is ready.
pub fn replica(redis: &RedisServer) -> Edgeproxy {
    replica_on(&redis.url(), &["--storage-backend", "redis"])
}

/// `proxy`, once `/ready` on its admin port says its table is loaded.
pub fn ready(proxy: Edgeproxy) -> Edgeproxy {
    eventually(Duration::from_secs(10), "the replica loaded its table", || {
        proxy.api_with("GET", "/ready", None, &[]).status == 200
    });
    proxy
}

/// Polls `check` every few milliseconds until it holds, failing after `limit`.
pub fn eventually(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// An upstream that answers every request with `name`.
pub fn server(name: &'static str) -> Upstream {
    Upstream::with(move |_| Reply::new(200, name))
}

pub fn target(upstream: &Upstream) -> String {
    format!("http://127.0.0.1:{}", upstream.port())
}

/// What `path` answers through the public address: the upstream's name, or the status.
pub fn served_at(public: SocketAddr, path: &str) -> String {
    let r = get(public, path);
    match r.status {
        200 => r.text(),
        other => other.to_string(),
    }
}

/// What `path` answers through `proxy`.
pub fn served(proxy: &Edgeproxy, path: &str) -> String {
    served_at(proxy.public(), path)
}

pub fn batch(proxy: &Edgeproxy, body: Value) -> Response {
    proxy.api("POST", "/api/batch", Some(&body.to_string()))
}

/// `r` is the refusal of a write while Redis is down: 503, saying why.
pub fn assert_unavailable(r: &Response, what: &str) {
    assert_eq!(r.status, 503, "{what} while Redis is down: {}", r.text());
    assert!(
        r.text().starts_with("Route store unavailable"),
        "{what}: the body says why: {:?}",
        r.text()
    );
}
