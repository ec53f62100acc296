//! The hub driving an external proxy over its admin API (here an edgeproxy in CHP mode, started
//! and restarted by the test), with login sessions in a real redis-server: a proxy restarted with
//! an empty table is repaired by the hub within 5 s, and logins survive in Redis. With
//! `replicas = "dns"`, two such proxies (on 127.0.0.1 and 127.0.0.2, one port) behind one name
//! are kept in step. Replicas sharing a Redis route store are one table: the hub writes each
//! change once, to any of them.

mod support;

use std::time::{Duration, Instant};

use std::net::{SocketAddr, TcpListener};

use config::{ProxyConfig, ProxyReplicas, RedisRouteStore, RouteStorage};
use http::{Method, StatusCode};
use hub_core::proxy_api::{ProxyApi, resolver};
use hub_core::up::Overrides;
use support::*;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// An edgeproxy (the library, as the binary runs it) on two listeners the test holds for its
/// whole length. Each start serves clones of them, so a proxy stopped and started again comes
/// back on the same ports, which no other process can take in between. While it is down, a
/// stand-in closes every connection at once, as a stopped process's port refuses it (without
/// it, connections would wait in the backlog for the next start, and the hub's calls to a
/// replica that is down would hang until their timeout instead of failing).
struct TestProxy {
    public: TcpListener,
    api: TcpListener,
    storage: RouteStorage,
    running: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
}

impl TestProxy {
    fn on(public: TcpListener, api: TcpListener) -> TestProxy {
        TestProxy {
            public,
            api,
            storage: RouteStorage::Memory,
            running: None,
        }
    }

    /// A replica on loopback ports of its own, its table in the route store at `redis_url`.
    fn sharing(redis_url: &str) -> TestProxy {
        let loopback = || TcpListener::bind("127.0.0.1:0").unwrap();
        TestProxy {
            storage: RouteStorage::Redis(RedisRouteStore::at(redis_url)),
            ..TestProxy::on(loopback(), loopback())
        }
    }

    fn public_port(&self) -> u16 {
        self.public.local_addr().unwrap().port()
    }

    fn api_port(&self) -> u16 {
        self.api.local_addr().unwrap().port()
    }

    /// Starts the proxy, with an empty table (or the shared one) and token `proxy-admin-token`;
    /// its listeners are bound (connections queue) when this returns.
    async fn start(&mut self) {
        self.end_running().await;
        let config = ProxyConfig {
            auth_token: Some("proxy-admin-token".into()),
            storage: self.storage.clone(),
            ..ProxyConfig::default()
        };
        let prebound = proxy::server::Prebound {
            public: Some(self.public.try_clone().unwrap()),
            api: Some(self.api.try_clone().unwrap()),
        };
        let bound = proxy::server::bind_with(&config, prebound)
            .await
            .expect("the proxy serves the test's listeners");
        let proxy = proxy::Proxy::new(bound.config()).unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            bound
                .serve(proxy, async {
                    let _ = rx.await;
                })
                .await
                .expect("the proxy runs");
        });
        self.running = Some((tx, task));
    }

    /// Stops the proxy (its routes are gone) and refuses connections until the next start.
    async fn stop(&mut self) {
        self.end_running().await;
        let (tx, mut rx) = oneshot::channel::<()>();
        let listeners = [&self.public, &self.api].map(|l| {
            let l = l.try_clone().unwrap();
            l.set_nonblocking(true).unwrap();
            tokio::net::TcpListener::from_std(l).unwrap()
        });
        let task = tokio::spawn(async move {
            let [public, api] = listeners;
            loop {
                tokio::select! {
                    Ok((refused, _)) = public.accept() => drop(refused),
                    Ok((refused, _)) = api.accept() => drop(refused),
                    _ = &mut rx => return,
                }
            }
        });
        self.running = Some((tx, task));
    }

    /// Ends the proxy or the stand-in, whichever runs, and waits until it has let go of the
    /// listeners.
    async fn end_running(&mut self) {
        if let Some((stop, task)) = self.running.take() {
            let _ = stop.send(());
            task.await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_external_proxy_is_repaired_and_logins_live_in_redis() {
    let redis = support::redis::RedisServer::start();
    let dir = temp_dir("external");
    let loopback = || TcpListener::bind("127.0.0.1:0").unwrap();
    let mut external = TestProxy::on(loopback(), loopback());
    external.start().await;
    let (public, api) = (external.public_port(), external.api_port());

    let mut config = test_config(&dir);
    // The external proxy's public address: the hub does not bind it, the test's client uses it.
    config.bind = format!("127.0.0.1:{public}");
    config.proxy.api_url = Some(format!("http://127.0.0.1:{api}"));
    config.proxy.api_token = Some("proxy-admin-token".into());
    config.session.redis_url = Some(redis.url());
    let hub = TestHub::start(config).await;

    // The hub put its own route in the empty proxy; a user signs in and starts a server.
    let mut alice = hub.login("alice").await;
    assert_eq!(
        alice.api(Method::POST, "/users/alice/server", None).await.status,
        StatusCode::ACCEPTED
    );
    let events = follow_progress(&mut alice, "/hub/api/users/alice/server/progress").await;
    assert_eq!(events.last().unwrap()["ready"], true, "{events:?}");
    assert_eq!(alice.get("/user/alice/").await.status, StatusCode::OK);

    // The proxy restarts with an empty table (CHP keeps routes only in memory).
    external.stop().await;
    external.start().await;
    let restarted = Instant::now();
    eventually(Duration::from_secs(6), "the user's route is back", || {
        let mut probe = hub.client();
        probe.cookies = alice.cookies.clone();
        async move { probe.get("/user/alice/").await.status == StatusCode::OK }
    })
    .await;
    let repaired_in = restarted.elapsed();
    assert!(repaired_in <= Duration::from_secs(6), "repaired in {repaired_in:?}");

    // The login lives in Redis: still valid; logout ends it.
    assert_eq!(alice.api(Method::GET, "/user", None).await.json()["name"], "alice");
    let old = alice.cookies.clone();
    alice.get("/hub/logout").await;
    let mut replay = hub.client();
    replay.cookies = old;
    assert_eq!(
        replay.api(Method::GET, "/user", None).await.status,
        StatusCode::FORBIDDEN
    );

    // A change to bob that his token's claims no longer match (here: he is deleted) ends his
    // sessions in Redis too: the hub noted whose they were.
    let mut bob = hub.login("bob").await;
    assert_eq!(bob.api(Method::GET, "/user", None).await.json()["name"], "bob");
    let records = || redis.cli(&["KEYS", "edgehub:session:*"]);
    assert_eq!(
        records().lines().filter(|k| !k.is_empty()).count(),
        1,
        "bob's: {}",
        records()
    );
    let mut admin = hub.admin();
    assert_eq!(
        admin.api(Method::DELETE, "/users/bob", None).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(bob.api(Method::GET, "/user", None).await.status, StatusCode::FORBIDDEN);
    assert_eq!(records().trim(), "", "no session record left");

    admin.api(Method::DELETE, "/users/alice/server", None).await;
    external.stop().await;
    hub.stop().await;
}

/// Two replicas, on 127.0.0.1 and 127.0.0.2 with the same two ports (a name resolves to their
/// addresses, one port). The first gets ports from the system; the second binds the same ports
/// on its address, which another process may hold: then both are bound afresh.
fn two_replicas() -> (TestProxy, TestProxy) {
    for _ in 0..10 {
        let first = TestProxy::on(
            TcpListener::bind("127.0.0.1:0").unwrap(),
            TcpListener::bind("127.0.0.1:0").unwrap(),
        );
        let second = |port| TcpListener::bind(("127.0.0.2", port));
        if let (Ok(public), Ok(api)) = (second(first.public_port()), second(first.api_port())) {
            return (first, TestProxy::on(public, api));
        }
    }
    panic!("no two ports free on both 127.0.0.1 and 127.0.0.2");
}

/// The route keys in one replica's table, read from its admin API.
async fn route_keys(ip: &str, api: u16) -> Vec<String> {
    let replica = ProxyApi::new(&format!("http://{ip}:{api}"), Some("proxy-admin-token".into())).unwrap();
    replica.routes().await.unwrap().into_keys().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dns_replica_of_the_proxy_gets_every_route() {
    let redis = support::redis::RedisServer::start();
    let dir = temp_dir("replicas");
    let (mut first, mut second) = two_replicas();
    let (public, api) = (first.public_port(), first.api_port());
    first.start().await;
    second.start().await;

    // `edgeproxy-api` resolves to both replicas, as a headless Service's name does.
    let replicas: Vec<SocketAddr> = vec![([127, 0, 0, 1], api).into(), ([127, 0, 0, 2], api).into()];
    let both = resolver(move |authority| {
        assert_eq!(authority, format!("edgeproxy-api:{api}"));
        let found = replicas.clone();
        async move { Ok(found) }
    });
    let mut config = test_config(&dir);
    // The first replica's public address: the hub does not bind it, the test's client uses it.
    config.bind = format!("127.0.0.1:{public}");
    config.proxy.api_url = Some(format!("http://edgeproxy-api:{api}"));
    config.proxy.api_token = Some("proxy-admin-token".into());
    config.proxy.replicas = ProxyReplicas::Dns;
    config.session.redis_url = Some(redis.url());
    let overrides = Overrides {
        resolver: Some(both),
        ..Default::default()
    };
    let hub = TestHub::start_with(config, overrides).await;
    let user_route = |keys: &Vec<String>, user: &str| keys.contains(&format!("/user/{user}"));

    // A spawn's route lands on both replicas.
    let mut alice = hub.login("alice").await;
    alice.api(Method::POST, "/users/alice/server", None).await;
    let events = follow_progress(&mut alice, "/hub/api/users/alice/server/progress").await;
    assert_eq!(events.last().unwrap()["ready"], true, "{events:?}");
    for ip in ["127.0.0.1", "127.0.0.2"] {
        assert!(user_route(&route_keys(ip, api).await, "alice"), "alice's route on {ip}");
    }

    // A replica restarted empty is filled by the next reconcile (every second here).
    second.stop().await;
    second.start().await;
    let restarted = Instant::now();
    eventually(Duration::from_secs(3), "the new replica has alice's route", || async {
        user_route(&route_keys("127.0.0.2", api).await, "alice")
    })
    .await;
    assert!(
        restarted.elapsed() <= Duration::from_secs(2),
        "filled in {:?}",
        restarted.elapsed()
    );

    // With one replica down, a spawn still succeeds, on the one that is up.
    second.stop().await;
    let mut bob = hub.login("bob").await;
    bob.api(Method::POST, "/users/bob/server", None).await;
    let events = follow_progress(&mut bob, "/hub/api/users/bob/server/progress").await;
    assert_eq!(events.last().unwrap()["ready"], true, "{events:?}");
    assert_eq!(bob.get("/user/bob/").await.status, StatusCode::OK);

    // Back up, it catches up; then a stop deletes the route from both at once.
    second.start().await;
    eventually(
        Duration::from_secs(3),
        "the returned replica has bob's route",
        || async { user_route(&route_keys("127.0.0.2", api).await, "bob") },
    )
    .await;
    let stopped = hub.admin().api(Method::DELETE, "/users/alice/server", None).await;
    assert_eq!(stopped.status, StatusCode::NO_CONTENT);
    for ip in ["127.0.0.1", "127.0.0.2"] {
        assert!(
            !user_route(&route_keys(ip, api).await, "alice"),
            "alice's route left on {ip}"
        );
    }

    // The hub's view of the proxy comes from the first replica that answers: with the first
    // down, the second's (asked on the hub's own port, the public one being the first proxy's).
    first.stop().await;
    let mut direct = hub.admin();
    direct.base = format!("http://{}", hub.running.hub_addr);
    let table = direct.api(Method::GET, "/proxy", None).await;
    assert_eq!(table.status, StatusCode::OK, "{}", table.text());
    assert!(table.json().get("/user/bob/").is_some(), "{}", table.text());

    let _ = direct.api(Method::DELETE, "/users/bob/server", None).await;
    second.stop().await;
    hub.stop().await;
}

/// The hub's configuration with the replica at `api` (public port `public`) as its proxy, and
/// its login sessions in the Redis at `sessions`.
fn hub_with_replica(dir: &std::path::Path, public: u16, api: u16, sessions: &str) -> config::HubConfig {
    let mut config = test_config(dir);
    config.bind = format!("127.0.0.1:{public}");
    config.proxy.api_url = Some(format!("http://127.0.0.1:{api}"));
    config.proxy.api_token = Some("proxy-admin-token".into());
    config.session.redis_url = Some(sessions.to_owned());
    config
}

/// Stream entries of the route store that set or delete `key`, in order (`set` / `delete`).
fn store_changes_of(redis: &support::redis::RedisServer, key: &str) -> Vec<String> {
    let listing = redis.cli(&["XRANGE", "edgeproxy:changes", "-", "+"]);
    listing
        .lines()
        .filter(|line| line.contains(&format!("\"key\":\"{key}\"")))
        .map(|line| {
            line.split("\"op\":\"")
                .nth(1)
                .unwrap_or("")
                .split('"')
                .next()
                .unwrap_or("")
                .to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_sharing_a_route_store_take_each_change_once() {
    let redis = support::redis::RedisServer::start();
    let dir = temp_dir("route-store");
    let mut replicas = [0, 1, 2].map(|_| TestProxy::sharing(&redis.url()));
    for r in &mut replicas {
        r.start().await;
    }
    let apis = replicas.each_ref().map(TestProxy::api_port);

    // The hub knows one replica (in a cluster: a Service in front of all), writes once.
    let config = hub_with_replica(&dir, replicas[0].public_port(), apis[0], &redis.url());
    let hub = TestHub::start(config).await;
    let has_alice = |api: u16| async move { route_keys("127.0.0.1", api).await.contains(&"/user/alice".to_owned()) };

    let mut alice = hub.login("alice").await;
    alice.api(Method::POST, "/users/alice/server", None).await;
    let events = follow_progress(&mut alice, "/hub/api/users/alice/server/progress").await;
    assert_eq!(events.last().unwrap()["ready"], true, "{events:?}");
    for api in apis {
        assert!(has_alice(api).await, "alice's route on the replica with API port {api}");
    }
    assert_eq!(
        store_changes_of(&redis, "/user/alice"),
        ["set"],
        "one write for one spawn"
    );

    // Drift: the route is deleted behind the hub's back, on another replica. The hub's reconcile
    // reads the store's table through the replica it knows, and writes the route back once.
    ProxyApi::new(
        &format!("http://127.0.0.1:{}", apis[1]),
        Some("proxy-admin-token".into()),
    )
    .unwrap()
    .delete_route("/user/alice/")
    .await
    .unwrap();
    eventually(Duration::from_secs(3), "reconcile put alice's route back", || {
        has_alice(apis[2])
    })
    .await;
    assert_eq!(store_changes_of(&redis, "/user/alice"), ["set", "delete", "set"]);

    // A replica restarted loads the table from the store: nobody writes to fill it.
    replicas[2].stop().await;
    replicas[2].start().await;
    eventually(
        Duration::from_secs(1),
        "the restarted replica has alice's route",
        || has_alice(apis[2]),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        store_changes_of(&redis, "/user/alice").len(),
        3,
        "no write to fill a restarted replica"
    );

    // The stop's deletion leaves every replica.
    let stopped = hub.admin().api(Method::DELETE, "/users/alice/server", None).await;
    assert_eq!(stopped.status, StatusCode::NO_CONTENT);
    for api in apis {
        assert!(
            !has_alice(api).await,
            "alice's route left the replica with API port {api}"
        );
    }
    for r in &mut replicas {
        r.stop().await;
    }
    hub.stop().await;
}

/// `edgehub up` with `[proxy] storage_backend = "redis"`: its embedded proxy keeps the table in
/// the store, so an edgeproxy replica started beside it has the same routes, added and removed
/// with the hub's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_proxy_can_share_the_route_store() {
    let redis = support::redis::RedisServer::start();
    let dir = temp_dir("embedded-store");
    let mut config = test_config(&dir);
    config.proxy.storage_backend = Some("redis".into());
    config.proxy.storage_url = Some(redis.url());
    let hub = TestHub::start(config).await;
    let mut beside = TestProxy::sharing(&redis.url());
    beside.start().await;

    let mut alice = hub.login("alice").await;
    alice.api(Method::POST, "/users/alice/server", None).await;
    let events = follow_progress(&mut alice, "/hub/api/users/alice/server/progress").await;
    assert_eq!(events.last().unwrap()["ready"], true, "{events:?}");
    assert_eq!(alice.get("/user/alice/").await.status, StatusCode::OK);
    let beside_has = |user: &'static str| {
        let api = beside.api_port();
        async move { route_keys("127.0.0.1", api).await.contains(&format!("/user/{user}")) }
    };
    eventually(Duration::from_secs(1), "alice's route on the replica beside", || {
        beside_has("alice")
    })
    .await;
    assert_eq!(redis.cli(&["HEXISTS", "edgeproxy:routes", "/user/alice"]), "1");

    let stopped = hub.admin().api(Method::DELETE, "/users/alice/server", None).await;
    assert_eq!(stopped.status, StatusCode::NO_CONTENT);
    eventually(Duration::from_secs(1), "alice's route gone beside", || async {
        !beside_has("alice").await
    })
    .await;
    beside.stop().await;
    hub.stop().await;
}

/// Redis loses the route store while the hub runs (its sessions live in another Redis): the
/// replicas keep serving, put the routes back, and the hub's reconcile finds the store whole,
/// so a replica started afterwards has every route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_store_that_lost_its_data_is_refilled() {
    let sessions = support::redis::RedisServer::start();
    let mut routes = support::redis::RedisServer::start();
    let dir = temp_dir("route-store-lost");
    let mut replicas = [0, 1].map(|_| TestProxy::sharing(&routes.url()));
    for r in &mut replicas {
        r.start().await;
    }
    let apis = replicas.each_ref().map(TestProxy::api_port);
    let config = hub_with_replica(&dir, replicas[0].public_port(), apis[0], &sessions.url());
    let hub = TestHub::start(config).await;
    let mut alice = hub.login("alice").await;
    alice.api(Method::POST, "/users/alice/server", None).await;
    let events = follow_progress(&mut alice, "/hub/api/users/alice/server/progress").await;
    assert_eq!(events.last().unwrap()["ready"], true, "{events:?}");

    routes.restart();
    assert_eq!(alice.get("/user/alice/").await.status, StatusCode::OK, "still served");
    eventually(Duration::from_secs(5), "alice's route is back in Redis", || async {
        routes.cli(&["HEXISTS", "edgeproxy:routes", "/user/alice"]) == "1"
    })
    .await;
    // The hub's reconcile (every second here) keeps it so; a replica started now has it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut late = TestProxy::sharing(&routes.url());
    late.start().await;
    let late_api = late.api_port();
    eventually(
        Duration::from_secs(1),
        "the late replica has alice's route",
        || async move {
            route_keys("127.0.0.1", late_api)
                .await
                .contains(&"/user/alice".to_owned())
        },
    )
    .await;
    assert!(
        route_keys("127.0.0.1", late_api).await.contains(&"/".to_owned()),
        "and the hub's"
    );

    hub.admin().api(Method::DELETE, "/users/alice/server", None).await;
    late.stop().await;
    for r in &mut replicas {
        r.stop().await;
    }
    hub.stop().await;
}
