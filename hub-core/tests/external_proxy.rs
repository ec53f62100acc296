//! The hub driving an external proxy over its admin API (here an edgeproxy in CHP mode, started
//! and restarted by the test), with login sessions in a real redis-server: a proxy restarted with
//! an empty table is repaired by the hub within 5 s, and logins survive in Redis.

mod support;

use std::time::{Duration, Instant};

use config::{Listen, ProxyConfig};
use http::{Method, StatusCode};
use support::*;

/// An edgeproxy (the library, as the binary runs it) until the returned sender fires.
async fn start_proxy(config: &ProxyConfig) -> (tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let proxy = proxy::Proxy::new(config).unwrap();
    let Listen::Tcp { port: api_port, .. } = config.api else {
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
    while tokio::net::TcpStream::connect(("127.0.0.1", api_port)).await.is_err() {
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
