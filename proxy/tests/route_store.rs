//! The Redis route store (docs/route-store.md), with real edgeproxy processes sharing a real
//! redis-server: changes made through one replica reach every replica, batches are never seen
//! half applied, a restarted replica serves every route with no hub about, Redis going away or
//! losing its data loses no route, and activity seen by one replica shows in every listing.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use support::redis::RedisServer;
use support::route_store::*;
use support::*;

#[test]
fn a_change_on_one_replica_reaches_every_replica() {
    let redis = RedisServer::start();
    let [a, b, c] = [replica(&redis), replica(&redis), replica(&redis)];
    let alice = server("alice");

    // The replica that took the change answers once its own table has it.
    a.add_route("/user/alice", &target(&alice));
    assert_eq!(served(&a, "/user/alice/lab"), "alice");
    for other in [&b, &c] {
        eventually(Duration::from_secs(1), "the route reached the other replicas", || {
            served(other, "/user/alice/lab") == "alice"
        });
    }
    assert_eq!(c.routes()["/user/alice"]["target"], target(&alice));
    assert_eq!(redis.cli(&["HEXISTS", "edgeproxy:routes", "/user/alice"]), "1");

    // A delete through another replica leaves all of them.
    assert_eq!(b.api("DELETE", "/api/routes/user/alice", None).status, 204);
    assert_eq!(served(&b, "/user/alice/lab"), "404");
    for other in [&a, &c] {
        eventually(Duration::from_secs(1), "the delete reached the other replicas", || {
            served(other, "/user/alice/lab") == "404"
        });
    }
    assert_eq!(
        c.api("DELETE", "/api/routes/user/alice", None).status,
        404,
        "already gone"
    );
    assert!(a.routes().get("/user/alice").is_none());
}

#[test]
fn a_batch_is_never_seen_half_applied() {
    let redis = RedisServer::start();
    let [a, b, c] = [replica(&redis), replica(&redis), replica(&redis)];
    a.add_route("/marker", "http://127.0.0.1:1");
    let add: Map<String, Value> = (0..500)
        .map(|i| {
            (
                format!("/user/u{i}"),
                json!({ "target": format!("http://127.0.0.1:{}", 2000 + i) }),
            )
        })
        .collect();

    // Readers on the other replicas list the table as fast as they can while the batch lands.
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = [b.api_addr(), c.api_addr()]
        .into_iter()
        .map(|api| {
            let done = done.clone();
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                while !done.load(Ordering::Relaxed) {
                    let r = request(api, "GET", "/api/routes", &[("Authorization", "token secret")], None);
                    let table = r.json();
                    let users = table
                        .as_object()
                        .unwrap()
                        .keys()
                        .filter(|k| k.starts_with("/user/"))
                        .count();
                    seen.push((users, table.get("/marker").is_some()));
                }
                seen
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(50));
    let r = batch(&a, json!({ "remove": ["/marker"], "add": add }));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["routes"], 500);
    for replica in [&b, &c] {
        eventually(Duration::from_secs(2), "the batch reached the replica", || {
            replica.routes().as_object().unwrap().len() == 500
        });
    }
    std::thread::sleep(Duration::from_millis(50));
    done.store(true, Ordering::Relaxed);
    for reader in readers {
        let seen = reader.join().unwrap();
        assert!(seen.len() > 2, "the reader listed the table a few times");
        for (users, marker) in seen {
            assert!(
                (users, marker) == (0, true) || (users, marker) == (500, false),
                "a listing showed {users} of the batch's 500 routes with the marker {}",
                if marker { "still there" } else { "gone" }
            );
        }
    }
}

#[test]
fn a_restarted_replica_serves_every_route_within_a_second_with_no_writer_about() {
    let redis = RedisServer::start();
    let upstream = server("user");
    let add: Map<String, Value> = (0..300)
        .map(|i| {
            (
                format!("/user/u{i}"),
                json!({ "target": target(&upstream), "user": format!("u{i}") }),
            )
        })
        .collect();
    {
        let writer = replica(&redis);
        assert_eq!(batch(&writer, json!({ "add": add })).status, 200);
        // The writer goes away; no hub, no API client is left.
    }

    let spawned = Instant::now();
    let c = replica(&redis);
    let mut missing: Vec<String> = (0..300).map(|i| format!("/user/u{i}/tree")).collect();
    while !missing.is_empty() {
        missing.retain(|path| served(&c, path) != "user");
        assert!(
            spawned.elapsed() < Duration::from_secs(1) || missing.is_empty(),
            "{} routes not served 1 s after the replica started, e.g. {}",
            missing.len(),
            missing[0]
        );
    }
    let ready = c.api_with("GET", "/ready", None, &[]);
    assert_eq!(ready.status, 200);
    assert_eq!(ready.json()["routes"], 300);
    assert_eq!(ready.json()["backend"], "redis");
    assert!(
        c.log_text().contains("Route store loaded: 300 routes"),
        "{}",
        c.log_text()
    );
}

#[test]
fn until_the_table_is_loaded_health_checks_and_requests_get_503() {
    // Redis is not there yet: the replica listens but has no table.
    let dir = scratch_dir("route-store-late");
    let socket = dir.join("late.sock");
    let url = format!("unix://{}", socket.display());
    let c = Edgeproxy::start(&["--storage-backend", "redis", "--storage-url", &url]);
    for path in ["/_chp_healthz", "/ready", "/user/alice/"] {
        assert_eq!(c.get(path).status, 503, "{path} before the table is loaded");
    }
    assert_eq!(c.api_with("GET", "/ready", None, &[]).status, 503);
    assert_eq!(c.api_with("GET", "/ready", None, &[]).json()["ready"], false);
    assert_eq!(
        c.api("POST", "/api/routes/x", Some(r#"{"target":"http://127.0.0.1:1"}"#))
            .status,
        503
    );

    // Redis appears (on the path the replica was given); the replica loads and is ready.
    let mut redis = RedisServer::start();
    redis.kill();
    std::fs::remove_file(&redis.socket).ok();
    std::os::unix::fs::symlink(&redis.socket, &socket).unwrap();
    redis.start_again();
    eventually(Duration::from_secs(10), "the replica loaded the table", || {
        c.get("/_chp_healthz").status == 200
    });
    assert_eq!(c.get("/ready").json()["redis"], "up");
    assert_eq!(
        c.get("/user/alice/").status,
        404,
        "no route, now that the table is known"
    );
}

#[test]
fn with_redis_down_replicas_serve_and_refuse_writes_then_converge() {
    let mut redis = RedisServer::start_persistent();
    let [a, b, c] = [replica(&redis), replica(&redis), replica(&redis)];
    let before = server("before");
    for i in 0..20 {
        a.add_route(&format!("/user/u{i}"), &target(&before));
    }
    for replica in [&b, &c] {
        eventually(Duration::from_secs(1), "the routes reached every replica", || {
            served(replica, "/user/u19/") == "before"
        });
    }

    redis.kill();
    let down = Instant::now();
    while down.elapsed() < Duration::from_secs(10) {
        for replica in [&a, &b, &c] {
            assert_eq!(served(replica, "/user/u7/"), "before", "routes fail static");
        }
        let r = b.api(
            "POST",
            "/api/routes/user/new",
            Some(r#"{"target":"http://127.0.0.1:1"}"#),
        );
        assert_unavailable(&r, "a POST");
        assert_eq!(c.api("DELETE", "/api/routes/user/u1", None).status, 503);
        assert_eq!(
            a.routes().as_object().unwrap().len(),
            20,
            "listings answer from the table"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let ready = a.api_with("GET", "/ready", None, &[]);
    assert_eq!((ready.status, ready.json()["redis"].clone()), (200, json!("down")));

    redis.start_again();
    let after = server("after");
    eventually(Duration::from_secs(10), "writes work again", || {
        let body = json!({ "target": target(&after) }).to_string();
        c.api("POST", "/api/routes/user/new", Some(&body)).status == 201
    });
    for replica in [&a, &b, &c] {
        eventually(Duration::from_secs(2), "every replica converged", || {
            served(replica, "/user/new/") == "after"
        });
        let table = replica.routes();
        for i in 0..20 {
            assert!(
                table.get(format!("/user/u{i}")).is_some(),
                "/user/u{i} acknowledged, still there"
            );
        }
    }
    assert_eq!(redis.cli(&["HLEN", "edgeproxy:routes"]), "21");
}

#[test]
fn redis_restarted_empty_gets_the_routes_back_and_no_replica_is_wiped() {
    let mut redis = RedisServer::start();
    let [a, b, c] = [replica(&redis), replica(&redis), replica(&redis)];
    let upstream = server("user");
    let add: Map<String, Value> = (0..50)
        .map(|i| {
            (
                format!("/user/u{i}"),
                json!({ "target": target(&upstream), "jupyterhub": true }),
            )
        })
        .collect();
    assert_eq!(batch(&a, json!({ "add": add })).status, 200);
    for replica in [&b, &c] {
        eventually(Duration::from_secs(1), "the batch reached every replica", || {
            replica.routes().as_object().unwrap().len() == 50
        });
    }

    // Redis loses everything; the hub is away. Every replica keeps serving, and they put the
    // routes back into Redis.
    redis.restart();
    eventually(Duration::from_secs(10), "the routes are back in Redis", || {
        redis.cli(&["HLEN", "edgeproxy:routes"]) == "50"
    });
    for replica in [&a, &b, &c] {
        for i in (0..50).step_by(7) {
            assert_eq!(served(replica, &format!("/user/u{i}/")), "user", "no replica is wiped");
        }
    }
    let d = replica(&redis);
    assert_eq!(
        d.routes().as_object().unwrap().len(),
        50,
        "a replica started now gets them all"
    );

    // The hub comes back and reconciles through any replica: it re-adds what it wants and
    // deletes what went stale. Every replica follows.
    for i in 0..49 {
        let body = json!({ "target": target(&upstream), "jupyterhub": true }).to_string();
        assert_eq!(
            b.api("POST", &format!("/api/routes/user/u{i}"), Some(&body)).status,
            201
        );
    }
    assert_eq!(b.api("DELETE", "/api/routes/user/u49", None).status, 204);
    for replica in [&a, &b, &c, &d] {
        eventually(Duration::from_secs(2), "every replica converged", || {
            replica.routes().as_object().unwrap().len() == 49 && served(replica, "/user/u49/") == "404"
        });
    }
    assert!(a.log_text().contains("lost data"), "{}", a.log_text());
}

#[test]
fn activity_through_one_replica_shows_in_every_listing() {
    let redis = RedisServer::start();
    let [a, b] = [replica(&redis), replica(&redis)];
    let upstream = server("user");
    a.add_route("/user/busy", &target(&upstream));
    eventually(Duration::from_secs(1), "the route reached b", || {
        served(&b, "/user/busy/") == "user"
    });
    let first = ms(&a.last_activity("/user/busy"));

    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(served(&b, "/user/busy/api"), "user");
    // Replicas add their activity to Redis every second.
    eventually(Duration::from_secs(3), "b's traffic shows in a's listing", || {
        ms(&a.last_activity("/user/busy")) > first
    });
    let one = a.api("GET", "/api/routes/user/busy", None).json();
    assert!(ms(one["last_activity"].as_str().unwrap()) > first, "{one}");
    let since = a
        .api("GET", "/api/routes?inactive_since=1970-01-02T00:00:00Z", None)
        .json();
    assert!(
        since.get("/user/busy").is_none(),
        "active routes are not inactive: {since}"
    );
}

#[test]
fn route_store_metrics_tell_its_state() {
    let redis = RedisServer::start();
    let url = redis.url();
    let mut a = Edgeproxy::start(&["--storage-url", &url, "--metrics-port", "0"]);
    let metrics = a.metrics_addr();
    eventually(Duration::from_secs(5), "the store is up in the metrics", || {
        get(metrics, "/metrics").text().contains("edgeproxy_route_store_up 1")
    });
    a.add_route("/user/m", "http://127.0.0.1:1");
    let text = get(metrics, "/metrics").text();
    for line in [
        "edgeproxy_route_store_version 1",
        "edgeproxy_route_store_reloads_total 1",
        "edgeproxy_routes 1",
    ] {
        assert!(text.contains(line), "{line} in\n{text}");
    }
    assert!(text.contains("edgeproxy_route_store_write_seconds"), "{text}");
}

#[test]
fn the_memory_backend_is_ready_at_once_and_routes_its_ready_path() {
    let proxy = Edgeproxy::start(&[]);
    let ready = proxy.api_with("GET", "/ready", None, &[]);
    assert_eq!(ready.status, 200);
    assert_eq!(ready.json()["backend"], "memory");
    // The public `/ready` is an ordinary path with the memory backend, as in CHP.
    assert_eq!(proxy.get("/ready").status, 404);
    let upstream = server("root");
    proxy.add_route("/", &target(&upstream));
    assert_eq!(served(&proxy, "/ready"), "root");
}

#[test]
fn changes_missing_from_the_stream_lead_to_a_full_reload() {
    let redis = RedisServer::start();
    let [a, b] = [replica(&redis), replica(&redis)];
    let upstream = server("user");
    a.add_route("/user/first", &target(&upstream));
    eventually(Duration::from_secs(1), "b has the first route", || {
        served(&b, "/user/first/") == "user"
    });

    // A change whose stream entry is gone (trimmed away, or lost): the route is in the table in
    // Redis and the version moved, but no replica was told. They notice the version and reload.
    let data = json!({ "target": target(&upstream) }).to_string();
    redis.cli(&["HSET", "edgeproxy:routes", "/user/unannounced", &data]);
    redis.cli(&["HINCRBY", "edgeproxy:meta", "version", "1"]);
    redis.cli(&["XTRIM", "edgeproxy:changes", "MAXLEN", "0"]);
    for replica in [&a, &b] {
        eventually(Duration::from_secs(5), "the replica reloaded", || {
            served(replica, "/user/unannounced/") == "user"
        });
        assert!(replica.log_text().contains("reloading"), "{}", replica.log_text());
    }

    // And they follow the stream again from there.
    b.add_route("/user/after", &target(&upstream));
    eventually(Duration::from_secs(1), "a follows again", || {
        served(&a, "/user/after/") == "user"
    });
    assert_eq!(served(&a, "/user/first/"), "user");
}
