//! The Redis route store seen from outside, test by test against its contract (issue 16:
//! flags, environment, Redis keys, readiness, failure behaviour), with real edgeproxy processes
//! and a real redis-server. route_store.rs covers the main journeys; these are the rest of the
//! contract and the harder cases an operator meets: fleets sharing one Redis under prefixes, a
//! database number, the environment, the keys' layout, read-your-write on every write, several
//! writers at once, a replica killed with SIGKILL, writes refused during an outage never
//! applied later, a replica started during the outage, Redis rolled back to an older copy, and
//! activity on a freshly started replica.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};
use support::redis::RedisServer;
use support::route_store::*;
use support::*;

fn keys(table: &Value) -> BTreeSet<String> {
    table.as_object().unwrap().keys().cloned().collect()
}

fn ready_json(proxy: &Edgeproxy) -> (u16, Value) {
    let r = proxy.api_with("GET", "/ready", None, &[]);
    (r.status, r.json())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn bad_storage_settings_stop_the_start_with_exit_1() {
    let with = on_loopback;
    let run = |args: Vec<&str>, env: &[(&str, &str)]| run_to_exit_with_env(&args, env);

    let (code, out) = run(with(&["--storage-backend", "bogus"]), &[]);
    assert_eq!(code, Some(1), "--storage-backend bogus: {out}");
    assert!(
        out.contains("bogus") && out.contains("redis"),
        "names the bad value and what is accepted: {out}"
    );

    let (code, out) = run(with(&["--storage-backend", "redis"]), &[]);
    assert_eq!(code, Some(1), "--storage-backend redis without a URL: {out}");
    assert!(out.contains("storage-url"), "says the URL is missing: {out}");

    let (code, out) = run(with(&[]), &[("EDGEPROXY_STORAGE_BACKEND", "bogus")]);
    assert_eq!(code, Some(1), "EDGEPROXY_STORAGE_BACKEND=bogus: {out}");
    assert!(out.contains("bogus"), "{out}");

    let (code, out) = run(with(&[]), &[("EDGEPROXY_STORAGE_BACKEND", "redis")]);
    assert_eq!(code, Some(1), "EDGEPROXY_STORAGE_BACKEND=redis without a URL: {out}");
}

#[test]
fn fleets_with_their_own_prefix_share_one_redis_without_seeing_each_other() {
    let redis = RedisServer::start();
    let url = redis.url();
    let x1 = replica_on(&url, &["--storage-prefix", "fleetx:"]);
    let x2 = replica_on(&url, &["--storage-prefix", "fleetx:"]);
    let y = replica(&redis);
    let (ux, uy) = (server("x"), server("y"));

    x1.add_route("/shared", &target(&ux));
    x1.add_route("/only-x", &target(&ux));
    y.add_route("/shared", &target(&uy));
    eventually(Duration::from_secs(1), "x2 has fleet x's routes", || {
        served(&x2, "/only-x/") == "x" && served(&x2, "/shared/") == "x"
    });
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(served(&y, "/shared/"), "y", "fleet y keeps its own /shared");
    assert_eq!(served(&y, "/only-x/"), "404", "fleet x's route is not fleet y's");
    assert_eq!(keys(&y.routes()), BTreeSet::from(["/shared".to_owned()]));
    assert_eq!(keys(&x2.routes()).len(), 2);
    assert_eq!(redis.cli(&["HLEN", "fleetx:routes"]), "2");
    assert_eq!(redis.cli(&["HLEN", "edgeproxy:routes"]), "1");

    // A delete in one fleet leaves the other's route of the same key alone.
    assert_eq!(x2.api("DELETE", "/api/routes/shared", None).status, 204);
    eventually(Duration::from_secs(1), "the delete reached x1", || {
        served(&x1, "/shared/") == "404"
    });
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(served(&y, "/shared/"), "y");
}

#[test]
fn the_environment_and_a_database_number_select_the_store() {
    let redis = RedisServer::start();
    let url = format!("{}?db=3", redis.url());
    // EDGEPROXY_STORAGE_URL alone selects the Redis backend.
    let a = ready(Edgeproxy::start_with_env(
        &[],
        &[("EDGEPROXY_STORAGE_URL", &url), ("EDGEPROXY_STORAGE_PREFIX", "envp:")],
    ));
    assert_eq!(ready_json(&a).1["backend"], "redis");
    let upstream = server("env");
    a.add_route("/user/env", &target(&upstream));
    assert_eq!(redis.cli(&["-n", "3", "HEXISTS", "envp:routes", "/user/env"]), "1");
    assert_eq!(redis.cli(&["DBSIZE"]), "0", "database 0 untouched");

    // The same store named by flags.
    let b = replica_on(&url, &["--storage-backend", "redis", "--storage-prefix", "envp:"]);
    assert_eq!(served(&b, "/user/env/"), "env");
    let c = ready(Edgeproxy::start_with_env(
        &[],
        &[
            ("EDGEPROXY_STORAGE_BACKEND", "redis"),
            ("EDGEPROXY_STORAGE_URL", &url),
            ("EDGEPROXY_STORAGE_PREFIX", "envp:"),
        ],
    ));
    assert_eq!(served(&c, "/user/env/"), "env");
}

/// The fields of the newest entry of a stream, from redis-cli's raw output.
fn newest_entry(redis: &RedisServer, stream: &str) -> BTreeMap<String, String> {
    let out = redis.cli(&["XREVRANGE", stream, "+", "-", "COUNT", "1"]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.len() >= 3, "an entry in {stream}: {out:?}");
    lines[1..]
        .chunks(2)
        .map(|kv| (kv[0].to_owned(), kv.get(1).copied().unwrap_or_default().to_owned()))
        .collect()
}

#[test]
fn the_keys_in_redis_readiness_and_log_lines_are_as_documented() {
    let redis = RedisServer::start();
    let a = replica(&redis);
    assert!(
        a.log_text().contains("Route store loaded: 0 routes, version"),
        "{}",
        a.log_text()
    );
    let upstream = server("user");
    let body = json!({ "target": target(&upstream), "user": "k1" }).to_string();
    assert_eq!(a.api("POST", "/api/routes/user/k1", Some(&body)).status, 201);

    let route: Value = serde_json::from_str(&redis.cli(&["HGET", "edgeproxy:routes", "/user/k1"])).unwrap();
    assert_eq!(route["target"], target(&upstream), "{route}");
    assert_eq!(route["user"], "k1", "{route}");
    assert!(
        route.get("last_activity").is_none(),
        "no activity in the route data: {route}"
    );
    let epoch = redis.cli(&["HGET", "edgeproxy:meta", "epoch"]);
    assert!(!epoch.is_empty(), "meta has an epoch");
    let version = |r: &RedisServer| -> i64 {
        let v = r.cli(&["HGET", "edgeproxy:meta", "version"]);
        v.parse().unwrap_or_else(|_| panic!("meta version {v:?}"))
    };
    let v1 = version(&redis);

    a.add_route("/user/k2", &target(&upstream));
    assert_eq!(version(&redis), v1 + 1, "+1 per change");
    let add: Map<String, Value> = (0..10)
        .map(|i| (format!("/user/b{i}"), json!({ "target": target(&upstream) })))
        .collect();
    let r = a.api(
        "POST",
        "/api/batch",
        Some(&json!({ "add": add, "remove": ["/user/k2"] }).to_string()),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(version(&redis), v1 + 2, "+1 per batch, however many changes it has");
    assert_eq!(redis.cli(&["HLEN", "edgeproxy:routes"]), "11");

    let entry = newest_entry(&redis, "edgeproxy:changes");
    assert_eq!(entry.get("e"), Some(&epoch), "{entry:?}");
    assert_eq!(entry.get("v"), Some(&(v1 + 2).to_string()), "{entry:?}");
    let at: i64 = entry["at"].parse().unwrap();
    assert!((now_ms() - at).abs() < 60_000, "at is ms since 1970: {entry:?}");
    let change: Result<Value, _> = serde_json::from_str(&entry["c"]);
    assert!(change.is_ok(), "c is JSON: {entry:?}");
    let len: usize = redis.cli(&["XLEN", "edgeproxy:changes"]).parse().unwrap();
    assert!(len >= 3, "one entry per change at least: {len}");

    // /ready on the admin port (no token) and, with the Redis backend, on the public port.
    let expected = json!({ "ready": true, "backend": "redis", "routes": 11, "version": v1 + 2, "redis": "up" });
    let (status, body) = ready_json(&a);
    let public = a.get("/ready");
    assert_eq!((status, public.status), (200, 200), "{body}");
    for (field, value) in expected.as_object().unwrap() {
        assert_eq!(&body[field], value, "/ready on the admin port: {body}");
        assert_eq!(
            &public.json()[field],
            value,
            "/ready on the public port: {}",
            public.text()
        );
    }

    // A replica started now logs what it loaded.
    let b = replica(&redis);
    let line = format!("Route store loaded: 11 routes, version {}", v1 + 2);
    assert!(b.log_text().contains(&line), "{line:?} in\n{}", b.log_text());

    // Only GET /ready itself is the proxy's; everything else is routed as usual.
    let root = server("root");
    a.add_route("/", &target(&root));
    eventually(Duration::from_secs(1), "b has the root route", || {
        served(&b, "/ready/sub") == "root"
    });
    assert_eq!(served(&b, "/readyz"), "root");
    assert_eq!(b.get("/ready").json()["ready"], true);

    // Activity reaches the shared hash, in ms since 1970.
    let before = now_ms();
    assert_eq!(served(&b, "/user/k1/lab"), "user");
    eventually(Duration::from_secs(3), "b's activity is in Redis", || {
        redis
            .cli(&["HGET", "edgeproxy:activity", "/user/k1"])
            .parse::<i64>()
            .is_ok_and(|t| t >= before - 1 && t <= now_ms() + 1000)
    });
}

#[test]
fn every_write_reads_back_at_once_on_the_replica_that_took_it() {
    let redis = RedisServer::start();
    let replicas = [replica(&redis), replica(&redis), replica(&redis)];
    let upstream = server("u");
    let body = json!({ "target": target(&upstream) }).to_string();
    for i in 0..60 {
        let w = &replicas[i % 3];
        let r = w.api("POST", &format!("/api/routes/user/r{i}"), Some(&body));
        assert_eq!(r.status, 201, "{}", r.text());
        assert_eq!(
            served(w, &format!("/user/r{i}/")),
            "u",
            "r{i} routed at once by its writer"
        );
        let one = w.api("GET", &format!("/api/routes/user/r{i}"), None);
        assert_eq!(one.status, 200, "r{i} listed at once by its writer");
        if i % 2 == 0 {
            assert_eq!(w.api("DELETE", &format!("/api/routes/user/r{i}"), None).status, 204);
            assert_eq!(
                served(w, &format!("/user/r{i}/")),
                "404",
                "r{i} gone at once from its writer"
            );
            assert_eq!(w.api("GET", &format!("/api/routes/user/r{i}"), None).status, 404);
        }
    }
    let add: Map<String, Value> = (0..20)
        .map(|i| (format!("/user/batch{i}"), json!({ "target": target(&upstream) })))
        .collect();
    let remove: Vec<String> = (1..10).step_by(2).map(|i| format!("/user/r{i}")).collect();
    let b = &replicas[1];
    let r = b.api(
        "POST",
        "/api/batch",
        Some(&json!({ "add": add, "remove": remove }).to_string()),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    for i in 0..20 {
        assert_eq!(
            served(b, &format!("/user/batch{i}/")),
            "u",
            "the batch routed at once by its writer"
        );
    }
    assert_eq!(served(b, "/user/r1/"), "404", "the batch's removes at once too");
    // 30 odd routes, 5 of them removed by the batch, and the batch's 20.
    assert_eq!(b.routes().as_object().unwrap().len(), 45);
    for other in [&replicas[0], &replicas[2]] {
        eventually(Duration::from_secs(1), "every replica has the same table", || {
            keys(&other.routes()) == keys(&b.routes())
        });
    }
}

#[test]
fn concurrent_writers_on_every_replica_converge_on_one_table() {
    let redis = RedisServer::start();
    let replicas = [replica(&redis), replica(&redis), replica(&redis)];
    let upstreams = [server("w0"), server("w1"), server("w2")];
    std::thread::scope(|s| {
        for (w, (proxy, upstream)) in replicas.iter().zip(&upstreams).enumerate() {
            let api = proxy.api_addr();
            let body = json!({ "target": target(upstream) }).to_string();
            s.spawn(move || {
                let auth = [("Authorization", "token secret")];
                for i in 0..80 {
                    let r = request(
                        api,
                        "POST",
                        &format!("/api/routes/user/w{w}-{i}"),
                        &auth,
                        Some(body.as_bytes()),
                    );
                    assert_eq!(r.status, 201, "{}", r.text());
                    // Every writer fights over the same key.
                    if i % 5 == 0 {
                        let r = request(api, "POST", "/api/routes/user/hot", &auth, Some(body.as_bytes()));
                        assert_eq!(r.status, 201, "{}", r.text());
                    }
                    if i % 3 == 0 {
                        let r = request(api, "DELETE", &format!("/api/routes/user/w{w}-{i}"), &auth, None);
                        assert_eq!(r.status, 204, "{}", r.text());
                    }
                }
            });
        }
    });

    let in_redis: BTreeSet<String> = redis
        .cli(&["HKEYS", "edgeproxy:routes"])
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        in_redis.len(),
        3 * (80 - 27) + 1,
        "every acknowledged write is in Redis"
    );
    let hot: Value = serde_json::from_str(&redis.cli(&["HGET", "edgeproxy:routes", "/user/hot"])).unwrap();
    let version: i64 = redis.cli(&["HGET", "edgeproxy:meta", "version"]).parse().unwrap();
    for proxy in &replicas {
        eventually(
            Duration::from_secs(2),
            "every replica has Redis's table, at its version",
            || {
                let table = proxy.routes();
                keys(&table) == in_redis
                    && table["/user/hot"]["target"] == hot["target"]
                    && ready_json(proxy).1["version"] == version
            },
        );
    }
    let winner = served(&replicas[0], "/user/hot/");
    for proxy in &replicas[1..] {
        assert_eq!(
            served(proxy, "/user/hot/"),
            winner,
            "the contested route goes one place"
        );
    }
}

#[test]
fn a_replica_killed_and_started_again_serves_every_route_within_a_second() {
    let redis = RedisServer::start();
    let upstream = server("user");
    let add: Map<String, Value> = (0..1000)
        .map(|i| (format!("/user/u{i}"), json!({ "target": target(&upstream) })))
        .collect();
    let mut c = replica(&redis);
    {
        let [a, b] = [replica(&redis), replica(&redis)];
        let r = a.api("POST", "/api/batch", Some(&json!({ "add": add }).to_string()));
        assert_eq!(r.status, 200, "{}", r.text());
        for proxy in [&b, &c] {
            eventually(Duration::from_secs(2), "the batch reached the replica", || {
                served(proxy, "/user/u999/") == "user"
            });
        }
        // The writers go away: no hub, no API client, no other replica is left.
    }
    c.stop("KILL");
    drop(c);

    let url = redis.url();
    let spawned = Instant::now();
    let c = Edgeproxy::start(&["--storage-backend", "redis", "--storage-url", &url]);
    let public = c.public();
    let last: Vec<Duration> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..4)
            .map(|w| {
                s.spawn(move || {
                    let mut last = Duration::ZERO;
                    for i in (w..1000).step_by(4) {
                        loop {
                            let r = get(public, &format!("/user/u{i}/tree"));
                            // Not loaded yet is 503; a user never sees a 404 for a route the
                            // store has.
                            assert!(
                                r.status == 200 || r.status == 503,
                                "/user/u{i} answered {} while the replica started",
                                r.status
                            );
                            if r.status == 200 {
                                break;
                            }
                            assert!(spawned.elapsed() < Duration::from_secs(5), "/user/u{i} never served");
                            std::thread::sleep(Duration::from_millis(2));
                        }
                        last = spawned.elapsed();
                    }
                    last
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let all = last.into_iter().max().unwrap();
    assert!(
        all < Duration::from_secs(1),
        "every route served {all:?} after the spawn"
    );
    let (status, body) = ready_json(&c);
    assert_eq!((status, &body["routes"]), (200, &json!(1000)), "{body}");
    assert_eq!(c.get("/_chp_healthz").status, 200);
}

#[test]
fn during_a_redis_outage_writes_are_refused_and_never_applied_later() {
    let mut redis = RedisServer::start_persistent();
    let [a, b, c] = [replica(&redis), replica(&redis), replica(&redis)];
    let before = server("before");
    let add: Map<String, Value> = (0..30)
        .map(|i| (format!("/user/u{i}"), json!({ "target": target(&before) })))
        .collect();
    assert_eq!(
        a.api("POST", "/api/batch", Some(&json!({ "add": add }).to_string()))
            .status,
        200
    );
    for i in 30..35 {
        b.add_route(&format!("/user/u{i}"), &target(&before));
    }
    // The last acknowledged write, just before Redis dies.
    c.add_route("/user/last", &target(&before));
    redis.kill();
    let down = Instant::now();
    let url = redis.url();
    // A replica started during the outage cannot know the table: not ready, 503, never 404.
    let d = Edgeproxy::start(&["--storage-backend", "redis", "--storage-url", &url]);

    for replica in [&a, &b, &c] {
        eventually(Duration::from_secs(5), "the replica saw Redis go", || {
            ready_json(replica).1["redis"] == "down"
        });
    }
    let refused_batch = json!({ "add": { "/user/refused-batch": { "target": target(&before) } } }).to_string();
    let refused_add = json!({ "target": target(&before) }).to_string();
    while down.elapsed() < Duration::from_secs(10) {
        for replica in [&a, &b, &c] {
            for path in ["/user/u0/", "/user/u34/", "/user/last/"] {
                assert_eq!(served(replica, path), "before", "routes fail static");
            }
            assert_eq!(replica.get("/_chp_healthz").status, 200, "healthy on its last table");
            assert_eq!(ready_json(replica).0, 200, "ready on its last table");
            assert_eq!(replica.get("/ready").status, 200, "public /ready too");
            let one = replica.api("GET", "/api/routes/user/u3", None);
            assert_eq!(one.status, 200, "reads answer from the table: {}", one.text());
        }
        assert_unavailable(
            &a.api("POST", "/api/routes/user/refused", Some(&refused_add)),
            "POST /api/routes",
        );
        assert_unavailable(&b.api("DELETE", "/api/routes/user/u1", None), "DELETE /api/routes");
        assert_unavailable(&c.api("POST", "/api/batch", Some(&refused_batch)), "POST /api/batch");
        assert_eq!(
            ready_json(&d).0,
            503,
            "the replica started during the outage is not ready"
        );
        assert_eq!(d.get("/user/u0/").status, 503, "and says so to users");
        std::thread::sleep(Duration::from_millis(300));
    }
    for replica in [&a, &b, &c] {
        assert!(
            replica.log_text().contains("Route store unreachable"),
            "{}",
            replica.log_text()
        );
    }

    redis.start_again();
    let after = server("after");
    let body = json!({ "target": target(&after) }).to_string();
    eventually(Duration::from_secs(10), "writes work again", || {
        b.api("POST", "/api/routes/user/after", Some(&body)).status == 201
    });
    let d = ready(d);
    for replica in [&a, &b, &c, &d] {
        eventually(Duration::from_secs(2), "every replica converged", || {
            served(replica, "/user/after/") == "after"
        });
        let table = replica.routes();
        for i in 0..35 {
            assert!(
                table.get(format!("/user/u{i}")).is_some(),
                "acknowledged /user/u{i} kept"
            );
        }
        assert!(table.get("/user/last").is_some(), "the last acknowledged write kept");
        for refused in ["/user/refused", "/user/refused-batch"] {
            assert!(table.get(refused).is_none(), "{refused} got a 503, yet appeared later");
        }
        assert_eq!(table.as_object().unwrap().len(), 37);
    }
    assert_eq!(redis.cli(&["HLEN", "edgeproxy:routes"]), "37");
}

#[test]
fn redis_rolled_back_to_an_older_copy_loses_no_route_a_replica_serves() {
    let mut redis = RedisServer::start_persistent();
    let [a, b] = [replica(&redis), replica(&redis)];
    let upstream = server("user");
    let body = json!({ "target": target(&upstream) }).to_string();
    for i in 0..10 {
        a.add_route(&format!("/user/r{i}"), &target(&upstream));
    }
    redis.kill();
    let old = redis.copy_data("backup");
    redis.start_again();

    eventually(Duration::from_secs(10), "writes work again", || {
        a.api("POST", "/api/routes/user/r10", Some(&body)).status == 201
    });
    for i in 11..20 {
        a.add_route(&format!("/user/r{i}"), &target(&upstream));
    }
    assert_eq!(b.api("DELETE", "/api/routes/user/r0", None).status, 204);
    eventually(Duration::from_secs(2), "b has the new routes", || {
        keys(&b.routes()).len() == 19 && served(&b, "/user/r19/") == "user"
    });

    // Redis comes back from the old copy: r10..r19 are gone from it, r0 is back in it.
    redis.kill();
    redis.roll_back_to(&old);
    redis.start_again();
    let newer: Vec<String> = (10..20).map(|i| format!("/user/r{i}")).collect();
    eventually(
        Duration::from_secs(10),
        "the replicas put the newer routes back",
        || {
            let hkeys = redis.cli(&["HKEYS", "edgeproxy:routes"]);
            let hkeys: BTreeSet<&str> = hkeys.lines().collect();
            newer.iter().all(|k| hkeys.contains(k.as_str()))
        },
    );
    for replica in [&a, &b] {
        for key in &newer {
            assert_eq!(served(replica, &format!("{key}/")), "user", "no replica lost {key}");
        }
    }
    let in_redis: BTreeSet<String> = redis
        .cli(&["HKEYS", "edgeproxy:routes"])
        .lines()
        .map(str::to_owned)
        .collect();
    let expected: BTreeSet<String> = (0..20).map(|i| format!("/user/r{i}")).collect();
    assert_eq!(
        in_redis, expected,
        "the old copy's routes (r0 among them, deleted since) and every route put back"
    );
    for replica in [&a, &b] {
        eventually(Duration::from_secs(2), "the replicas reloaded the store", || {
            keys(&replica.routes()) == in_redis
        });
    }
    let c = replica(&redis);
    assert_eq!(keys(&c.routes()), in_redis, "a replica started now has the same table");

    // The hub's reconcile deletes what came back stale; every replica follows.
    assert_eq!(a.api("DELETE", "/api/routes/user/r0", None).status, 204);
    for replica in [&a, &b, &c] {
        eventually(Duration::from_secs(2), "every replica converged", || {
            keys(&replica.routes()).len() == 19 && served(replica, "/user/r0/") == "404"
        });
    }
}

#[test]
fn a_replica_started_after_the_traffic_lists_the_activity_others_saw() {
    let redis = RedisServer::start();
    let [a, b] = [replica(&redis), replica(&redis)];
    let upstream = server("user");
    a.add_route("/user/busy", &target(&upstream));
    a.add_route("/user/idle", &target(&upstream));
    std::thread::sleep(Duration::from_millis(300));

    let traffic = now_ms();
    eventually(Duration::from_secs(1), "b routes /user/busy", || {
        served(&b, "/user/busy/api") == "user"
    });
    eventually(Duration::from_secs(3), "b's activity reached the store", || {
        redis
            .cli(&["HGET", "edgeproxy:activity", "/user/busy"])
            .parse::<i64>()
            .is_ok_and(|t| t >= traffic)
    });
    // A culler polling a replica that saw none of it (it was not even running) must not take
    // /user/busy for idle.
    let d = replica(&redis);
    let busy = ms(&d.last_activity("/user/busy"));
    assert!(
        busy >= traffic,
        "d lists /user/busy active at {busy}, traffic was at {traffic}"
    );
    assert!(
        ms(&d.last_activity("/user/idle")) < traffic,
        "/user/idle saw no traffic"
    );
    eventually(Duration::from_secs(3), "a lists b's activity", || {
        ms(&a.last_activity("/user/busy")) >= traffic
    });

    // Later traffic through d shows on b: the newest wins, wherever it was seen.
    std::thread::sleep(Duration::from_millis(50));
    let later = now_ms();
    assert_eq!(served(&d, "/user/busy/api"), "user");
    eventually(Duration::from_secs(3), "b lists d's activity", || {
        ms(&b.last_activity("/user/busy")) >= later
    });
    assert!(ms(&d.last_activity("/user/busy")) >= later);
}

#[test]
fn redis_flushed_under_running_replicas_wipes_no_replica() {
    let redis = RedisServer::start();
    let [a, b, c] = [replica(&redis), replica(&redis), replica(&redis)];
    let upstream = server("user");
    let add: Map<String, Value> = (0..50)
        .map(|i| (format!("/user/u{i}"), json!({ "target": target(&upstream) })))
        .collect();
    assert_eq!(
        a.api("POST", "/api/batch", Some(&json!({ "add": add }).to_string()))
            .status,
        200
    );
    for replica in [&b, &c] {
        eventually(Duration::from_secs(1), "the batch reached every replica", || {
            replica.routes().as_object().unwrap().len() == 50
        });
    }

    // Someone empties Redis under the running fleet (FLUSHALL, no restart), and the hub then
    // adds a route through one replica.
    assert_eq!(redis.cli(&["FLUSHALL"]), "OK");
    let body = json!({ "target": target(&upstream) }).to_string();
    let r = a.api("POST", "/api/routes/user/new", Some(&body));
    assert_eq!(r.status, 201, "{}", r.text());
    for replica in [&a, &b, &c] {
        for i in (0..50).step_by(7) {
            assert_eq!(served(replica, &format!("/user/u{i}/")), "user", "no replica is wiped");
        }
    }
    eventually(Duration::from_secs(10), "the routes are back in Redis", || {
        redis.cli(&["HLEN", "edgeproxy:routes"]) == "51"
    });
    for replica in [&a, &b, &c] {
        eventually(Duration::from_secs(2), "every replica has every route", || {
            replica.routes().as_object().unwrap().len() == 51 && served(replica, "/user/new/") == "user"
        });
    }
    let d = replica(&redis);
    assert_eq!(
        d.routes().as_object().unwrap().len(),
        51,
        "a replica started now has them all"
    );

    // Emptied again, with nobody writing: the replicas notice on their own and put it back.
    assert_eq!(redis.cli(&["FLUSHALL"]), "OK");
    eventually(
        Duration::from_secs(10),
        "the routes are back in Redis with no write",
        || redis.cli(&["HLEN", "edgeproxy:routes"]) == "51",
    );
    for replica in [&a, &b, &c, &d] {
        assert_eq!(replica.routes().as_object().unwrap().len(), 51, "no replica is wiped");
    }
}

#[test]
fn a_hung_redis_holds_up_no_request_and_the_fleet_converges_after() {
    let redis = RedisServer::start();
    let [a, b] = [replica(&redis), replica(&redis)];
    let upstream = server("user");
    for i in 0..10 {
        a.add_route(&format!("/user/u{i}"), &target(&upstream));
    }
    eventually(Duration::from_secs(1), "b has the routes", || {
        served(&b, "/user/u9/") == "user"
    });

    // Redis stops answering but keeps its connections open.
    redis.pause();
    let hung = Instant::now();
    let refused = std::thread::scope(|s| {
        let write = s.spawn(|| {
            let body = json!({ "target": target(&upstream) }).to_string();
            let t = Instant::now();
            let r = b.api("POST", "/api/routes/user/during", Some(&body));
            (r, t.elapsed())
        });
        while hung.elapsed() < Duration::from_secs(3) {
            for replica in [&a, &b] {
                let t = Instant::now();
                assert_eq!(served(replica, "/user/u3/"), "user", "routes fail static");
                assert_eq!(replica.get("/_chp_healthz").status, 200);
                assert!(
                    t.elapsed() < Duration::from_millis(500),
                    "a proxied request waited {:?} on a hung Redis",
                    t.elapsed()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let t = Instant::now();
        let listing = a.api("GET", "/api/routes", None);
        assert_eq!(
            listing.status,
            200,
            "listings answer from the table: {}",
            listing.text()
        );
        assert_eq!(listing.json().as_object().unwrap().len(), 10);
        assert!(
            t.elapsed() < Duration::from_millis(2500),
            "GET /api/routes took {:?} on a hung Redis",
            t.elapsed()
        );
        redis.resume();
        write.join().unwrap()
    });
    let (r, took) = refused;
    assert!(took < Duration::from_secs(12), "the write answered after {took:?}");
    if r.status != 201 {
        assert_unavailable(&r, "a write to a hung Redis");
    }

    // Thawed: writes work, and both replicas hold exactly Redis's table.
    let body = json!({ "target": target(&upstream) }).to_string();
    eventually(Duration::from_secs(10), "writes work again", || {
        a.api("POST", "/api/routes/user/after", Some(&body)).status == 201
    });
    let in_redis: BTreeSet<String> = redis
        .cli(&["HKEYS", "edgeproxy:routes"])
        .lines()
        .map(str::to_owned)
        .collect();
    assert!(in_redis.contains("/user/after") && in_redis.len() >= 11, "{in_redis:?}");
    for replica in [&a, &b] {
        eventually(Duration::from_secs(2), "the replica has Redis's table", || {
            keys(&replica.routes()) == in_redis
        });
    }
}
