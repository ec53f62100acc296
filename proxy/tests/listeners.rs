//! UNIX sockets (the cases of CHP's `test/proxy_spec.js`), HTTP/2, and metrics under CHP's names
//! (docs/routing.md#metrics).

mod support;

use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use support::*;
use tokio_tungstenite::tungstenite::Message;

#[test]
fn unix_socket_targets() {
    let dir = scratch_dir("unix-target");
    let up = Upstream::echo_unix("/unix", &dir.join("up.sock"));
    let p = Edgeproxy::start(&[]);
    p.add_route("/unix", &up.target);
    let r = p.get("/unix");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["path"], "/unix");
}

#[test]
fn listening_on_unix_sockets() {
    let dir = scratch_dir("unix-listen");
    let (public, api, metrics) = (dir.join("public.sock"), dir.join("api.sock"), dir.join("metrics.sock"));
    let up = Upstream::echo("/");
    let mut child = spawn_raw(&[
        "--socket",
        public.to_str().unwrap(),
        "--api-socket",
        api.to_str().unwrap(),
        "--metrics-socket",
        metrics.to_str().unwrap(),
        "--default-target",
        &up.target,
    ]);
    wait_until(|| {
        std::os::unix::net::UnixStream::connect(&public).is_ok()
            && std::os::unix::net::UnixStream::connect(&api).is_ok()
    });

    let r = raw_unix(
        &public,
        b"GET /x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!((r.status, r.json()["path"].as_str()), (200, Some("/")));
    let routes = raw_unix(
        &api,
        format!("GET /api/routes HTTP/1.1\r\nHost: x\r\nAuthorization: token {TOKEN}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .unwrap();
    let before = routes.json()["/"]["last_activity"].as_str().unwrap().to_owned();

    std::thread::sleep(Duration::from_millis(10));
    let stream = std::os::unix::net::UnixStream::connect(&public).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let (mut ws, _) = tokio_tungstenite::tungstenite::client::client("ws://localhost/ws", stream)
        .expect("WebSocket over a UNIX socket");
    let first = ws.read().unwrap();
    assert_eq!(first.into_text().unwrap().as_str(), "connected");
    ws.send(Message::text("hi")).unwrap();
    let reply: serde_json::Value = serde_json::from_str(ws.read().unwrap().into_text().unwrap().as_str()).unwrap();
    assert_eq!(reply["message"], "hi");
    std::thread::sleep(Duration::from_millis(10));
    let routes = raw_unix(
        &api,
        format!("GET /api/routes HTTP/1.1\r\nHost: x\r\nAuthorization: token {TOKEN}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .unwrap();
    assert!(ms(routes.json()["/"]["last_activity"].as_str().unwrap()) > ms(&before));

    let m = raw_unix(
        &metrics,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!(m.status, 200);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn http2_with_prior_knowledge() {
    let up = Upstream::echo("/");
    let p = Edgeproxy::start(&["--default-target", &up.target]);
    let addr = p.public();
    let (status, body) = block_on(async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut send, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tcp),
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        let req = http::Request::builder()
            .uri(format!("http://{addr}/h2/path?q=1"))
            .body(Empty::<bytes::Bytes>::new())
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        let status = resp.status();
        let content_type = resp.headers().get("content-type").cloned();
        (
            (status, content_type),
            resp.into_body().collect().await.unwrap().to_bytes(),
        )
    });
    let (status, content_type) = status;
    assert_eq!(status, 200);
    assert_eq!(
        content_type.as_ref().and_then(|v| v.to_str().ok()),
        Some("application/json"),
        "the upstream's headers reach an HTTP/2 client"
    );
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["url"], "/h2/path?q=1", "forwarded to the HTTP/1.1 upstream");
    assert_eq!(v["headers"]["host"], addr.to_string(), ":authority becomes Host");
}

#[test]
fn metrics_use_chps_names() {
    let up = Upstream::echo("/");
    let mut p = Edgeproxy::start(&[
        "--default-target",
        &up.target,
        "--metrics-ip",
        "127.0.0.1",
        "--metrics-port",
        "0",
    ]);
    p.get("/x");
    p.get("/_chp_healthz");
    p.add_route("/user/a", &up.target);
    p.api("DELETE", "/api/routes/user/a", None);
    p.routes();
    let (mut ws, _) = ws_connect(p.public(), "/ws").unwrap();
    ws_read_text(&mut ws);
    let addr = p.metrics_addr();
    let r = get(addr, "/metrics");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = r.text();
    for line in [
        "requests_web 1",
        "requests_ws 1",
        "api_route_add 1",
        "api_route_delete 1",
        "api_route_get 1",
        "requests_proxy{status=\"200\"} 1",
        "requests_api{status=\"201\"} 1",
        "edgeproxy_open_tunnels 1",
        "edgeproxy_routes 1",
    ] {
        assert!(text.lines().any(|l| l == line), "metrics have {line:?}:\n{text}");
    }
    for name in [
        "find_target_for_req",
        "edgeproxy_request_duration_seconds_bucket",
        "edgeproxy_open_connections",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
    ] {
        assert!(text.contains(name), "metrics have {name}:\n{text}");
    }
    // CHP's summary of activity updates: one, at least, for the proxied GET /x.
    assert!(
        text.lines().any(|l| l == "# TYPE last_activity_updating summary"),
        "{text}"
    );
    let updates: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("last_activity_updating_count "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no last_activity_updating_count in\n{text}"));
    assert!(updates >= 1, "{text}");
    assert!(text.contains("last_activity_updating{quantile=\"0.5\"}"), "{text}");
    assert_eq!(get(addr, "/metrics?x=1").status, 404);
    assert_eq!(get(addr, "/").status, 404);
    assert_eq!(p.api("GET", "/metrics", None).status, 404, "not on the API listener");
}

/// The library binds before it serves and reports the ports the system chose for port 0 (what
/// an embedder reads back instead of guessing a free port), and serves a listener the embedder
/// bound itself: kept by the embedder, it carries the proxy across a restart on the same port.
#[test]
fn bind_reports_the_ports_it_got_and_serves_an_embedders_listener() {
    use config::{Listen, ProxyConfig};
    use proxy::{Proxy, server};

    let up = Upstream::echo("/");
    let any = Listen::Tcp {
        host: "127.0.0.1".into(),
        port: 0,
    };
    let config = ProxyConfig {
        public: any.clone(),
        api: any.clone(),
        metrics: Some(any),
        default_target: Some(up.target.clone()),
        auth_token: Some(TOKEN.into()),
        ..ProxyConfig::default()
    };
    let kept = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let kept_addr = kept.local_addr().unwrap();
    let start = || {
        let prebound = server::Prebound {
            public: Some(kept.try_clone().unwrap()),
            ..Default::default()
        };
        let bound = block_on(server::bind_with(&config, prebound)).expect("binds");
        let proxy = block_on(async { Proxy::new(bound.config()) }).unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let addrs = (bound.api_addr().unwrap(), bound.metrics_addr().unwrap());
        let config = bound.config().clone();
        let served = spawn(bound.serve(proxy, async {
            let _ = stopped.await;
        }));
        (addrs, config, stop, served)
    };

    let ((api, metrics), as_bound, stop, served) = start();
    for addr in [api, metrics] {
        assert!(addr.ip().is_loopback() && addr.port() != 0, "{addr}");
    }
    assert_ne!(api, metrics);
    let port = |l: &Listen| match l {
        Listen::Tcp { port, .. } => *port,
        Listen::Unix(_) => 0,
    };
    assert_eq!(port(&as_bound.public), kept_addr.port(), "the embedder's listener");
    assert_eq!(port(&as_bound.api), api.port());
    assert_eq!(as_bound.metrics.as_ref().map(port), Some(metrics.port()));
    assert_eq!(get(kept_addr, "/x").json()["url"], "/x");
    let auth = format!("token {TOKEN}");
    let r = request(
        api,
        "POST",
        "/api/routes/added",
        &[("Authorization", &auth)],
        Some(br#"{"target":"http://127.0.0.1:1"}"#),
    );
    assert_eq!(r.status, 201);
    assert_eq!(get(metrics, "/metrics").status, 200);

    // Stopped and started again: the same public port (never free in between), a new table.
    let _ = stop.send(());
    block_on(served).unwrap().unwrap();
    let ((api, _), _, stop, served) = start();
    assert_eq!(get(kept_addr, "/x").json()["url"], "/x");
    let routes = request(api, "GET", "/api/routes", &[("Authorization", &auth)], None).json();
    assert!(routes.get("/added").is_none(), "{routes}");
    let _ = stop.send(());
    block_on(served).unwrap().unwrap();
}
