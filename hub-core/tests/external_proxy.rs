//! The hub driving an external proxy over its admin API (here an edgeproxy in CHP mode, started
//! and restarted by the test), with login sessions in a real redis-server: a proxy restarted with
//! an empty table is repaired by the hub within 5 s, and logins survive in Redis. With
//! `replicas = "dns"`, two such proxies (on 127.0.0.1 and 127.0.0.2, one port) behind one name
//! are kept in step.

mod support;

use std::time::{Duration, Instant};

use std::net::SocketAddr;

use config::{Listen, ProxyConfig, ProxyReplicas};
use http::{Method, StatusCode};
use hub_core::proxy_api::{ProxyApi, resolver};
use hub_core::up::Overrides;
use support::*;

/// An edgeproxy (the library, as the binary runs it) until the returned sender fires.
async fn start_proxy(config: &ProxyConfig) -> (tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let proxy = proxy::Proxy::new(config).unwrap();
    let Listen::Tcp {
        host: api_host,
        port: api_port,
    } = config.api.clone()
    else {
        unreachable!("the test proxy's API is on TCP")
    };
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let served = config.clone();
    let task = tokio::spawn(async move {
        proxy::server::run(proxy, &served, async {
            let _ = rx.await;
        })
        .await
        .expect("the proxy runs");
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect((api_host.as_str(), api_port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "the proxy did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (tx, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_external_proxy_is_repaired_and_logins_live_in_redis() {
    let redis = support::redis::RedisServer::start();
    let dir = temp_dir("external");
    let (public, api) = (free_port(), free_port());
    let proxy_config = ProxyConfig {
        public: Listen::Tcp {
            host: "127.0.0.1".into(),
            port: public,
        },
        api: Listen::Tcp {
            host: "127.0.0.1".into(),
            port: api,
        },
        auth_token: Some("proxy-admin-token".into()),
        ..ProxyConfig::default()
    };
    let (stop_proxy, proxy_task) = start_proxy(&proxy_config).await;

    let mut config = test_config(&dir, public);
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
    let _ = stop_proxy.send(());
    proxy_task.await.unwrap();
    let (stop_proxy, proxy_task) = start_proxy(&proxy_config).await;
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

    hub.admin().api(Method::DELETE, "/users/alice/server", None).await;
    let _ = stop_proxy.send(());
    proxy_task.await.unwrap();
    hub.stop().await;
}

/// An edgeproxy's configuration: public and admin listeners on `ip`.
fn proxy_on(ip: &str, public: u16, api: u16) -> ProxyConfig {
    ProxyConfig {
        public: Listen::Tcp {
            host: ip.into(),
            port: public,
        },
        api: Listen::Tcp {
            host: ip.into(),
            port: api,
        },
        auth_token: Some("proxy-admin-token".into()),
        ..ProxyConfig::default()
    }
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
    let (public, api) = (free_port(), free_port());
    let (first, second) = (proxy_on("127.0.0.1", public, api), proxy_on("127.0.0.2", public, api));
    let (stop_first, first_task) = start_proxy(&first).await;
    let (stop_second, second_task) = start_proxy(&second).await;

    // `edgeproxy-api` resolves to both replicas, as a headless Service's name does.
    let replicas: Vec<SocketAddr> = vec![([127, 0, 0, 1], api).into(), ([127, 0, 0, 2], api).into()];
    let both = resolver(move |authority| {
        assert_eq!(authority, format!("edgeproxy-api:{api}"));
        let found = replicas.clone();
        async move { Ok(found) }
    });
    let mut config = test_config(&dir, public);
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
    let _ = stop_second.send(());
    second_task.await.unwrap();
    let (stop_second, second_task) = start_proxy(&second).await;
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
    let _ = stop_second.send(());
    second_task.await.unwrap();
    let mut bob = hub.login("bob").await;
    bob.api(Method::POST, "/users/bob/server", None).await;
    let events = follow_progress(&mut bob, "/hub/api/users/bob/server/progress").await;
    assert_eq!(events.last().unwrap()["ready"], true, "{events:?}");
    assert_eq!(bob.get("/user/bob/").await.status, StatusCode::OK);

    // Back up, it catches up; then a stop deletes the route from both at once.
    let (stop_second, second_task) = start_proxy(&second).await;
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
    let _ = stop_first.send(());
    first_task.await.unwrap();
    let mut direct = hub.admin();
    direct.base = format!("http://{}", hub.running.hub_addr);
    let table = direct.api(Method::GET, "/proxy", None).await;
    assert_eq!(table.status, StatusCode::OK, "{}", table.text());
    assert!(table.json().get("/user/bob/").is_some(), "{}", table.text());

    let _ = direct.api(Method::DELETE, "/users/bob/server", None).await;
    let _ = stop_second.send(());
    second_task.await.unwrap();
    hub.stop().await;
}
