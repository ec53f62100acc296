//! `cargo run --release -p proxy --example demo`: edgeproxy, embedded as a library, in front of a
//! small demo server (a page and a WebSocket echo): the proxy and its admin API with no hub.
//! `edgehub up` embeds it the same way, with the hub's route at `/`.
//!
//! Public port 8000, admin API on 127.0.0.1:8001 (token from CONFIGPROXY_AUTH_TOKEN, if set).
//! Set EDGEPROXY_DEMO_PORT to use another public port (the API is on the next one).

use std::sync::Arc;

use bytes::Bytes;
use config::{Listen, ProxyConfig};
use futures_util::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

const PAGE: &str = r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>edgeproxy demo</title>
<style>body{font-family:system-ui,sans-serif;max-width:40rem;margin:3rem auto}code{background:#eee;padding:0 .2em}</style>
</head><body>
<h1>edgeproxy is running</h1>
<p>This page came from the demo upstream through edgeproxy. The line below is a WebSocket round
trip through the proxy's byte-level tunnel:</p>
<p id="ws"><em>connecting…</em></p>
<p>Add a route: <code>curl -X POST -d '{"target":"http://127.0.0.1:9999"}' http://127.0.0.1:API/api/routes/user/alice</code></p>
<p>List routes: <code>curl http://127.0.0.1:API/api/routes</code></p>
<script>
const ws = new WebSocket(`ws://${location.host}/ws`);
ws.onopen = () => ws.send("hello through the tunnel");
ws.onmessage = (e) => { document.getElementById("ws").textContent = "echo: " + e.data; };
ws.onerror = () => { document.getElementById("ws").textContent = "WebSocket failed"; };
</script>
</body></html>"#;

async fn demo_upstream(api_port: u16) -> std::io::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let target = format!("http://{}", listener.local_addr()?);
    let page: Arc<str> = Arc::from(PAGE.replace("API", &api_port.to_string()));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let page = page.clone();
            let service = service_fn(move |req| answer(req, page.clone()));
            tokio::spawn(async move {
                let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
                let _ = conn.with_upgrades().await;
            });
        }
    });
    Ok(target)
}

async fn answer(
    mut req: hyper::Request<Incoming>,
    page: Arc<str>,
) -> Result<hyper::Response<Full<Bytes>>, http::Error> {
    let key = req.headers().get("sec-websocket-key").map(|k| k.as_bytes().to_vec());
    let Some(key) = key else {
        return hyper::Response::builder()
            .header("content-type", "text/html; charset=utf-8")
            .body(Full::new(Bytes::from(page.to_string())));
    };
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(io) = upgrade.await else { return };
        let role = tokio_tungstenite::tungstenite::protocol::Role::Server;
        let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(TokioIo::new(io), role, None).await;
        while let Some(Ok(msg)) = ws.next().await {
            if msg.is_close() || (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                break;
            }
        }
    });
    hyper::Response::builder()
        .status(101)
        .header("upgrade", "websocket")
        .header("connection", "Upgrade")
        .header(
            "sec-websocket-accept",
            tokio_tungstenite::tungstenite::handshake::derive_accept_key(&key),
        )
        .body(Full::new(Bytes::new()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_target(false).init();
    let port: u16 = std::env::var("EDGEPROXY_DEMO_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8000);
    let upstream = demo_upstream(port + 1).await?;
    let config = ProxyConfig {
        public: Listen::Tcp {
            host: "127.0.0.1".into(),
            port,
        },
        api: Listen::Tcp {
            host: "127.0.0.1".into(),
            port: port + 1,
        },
        default_target: Some(upstream),
        auth_token: std::env::var("CONFIGPROXY_AUTH_TOKEN").ok().filter(|t| !t.is_empty()),
        ..ProxyConfig::default()
    };
    let proxy = proxy::Proxy::new(&config)?;
    println!(
        "\n  edgeproxy demo: open http://127.0.0.1:{port}/  (admin API: http://127.0.0.1:{}/api/routes)\n  Ctrl-C stops it.\n",
        port + 1
    );
    proxy::server::run(proxy, &config, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
