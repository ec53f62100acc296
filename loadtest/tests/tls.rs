//! edgeload over TLS, against real TLS servers: `edgeload serve` with a certificate of a test CA
//! (HTTPS, HTTP/2 by ALPN, WSS), and edgeproxy terminating TLS in front of a plain backend
//! (HTTPS for requests, and for its REST API). Certificates are trusted through `--cacert`,
//! refused without it, and accepted blindly with `--insecure`.

mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::test_ca::TestCa;
use support::*;

/// A scratch directory named `name`, a test CA written into it, and `edgeload serve` with a
/// certificate of that CA.
fn tls_server(name: &str) -> (PathBuf, TestCa, TestServer) {
    let dir = scratch_dir(name);
    let ca = TestCa::new(&dir);
    let srv = server(ServeConfig {
        tls: Some(ca.serve_config()),
        ..ServeConfig::default()
    });
    (dir, ca, srv)
}

fn errors_total(report: &Value) -> u64 {
    report["errors"]["total"].as_u64().unwrap()
}

fn series_count(report: &Value, series: &str) -> u64 {
    report["latency"][series]["count"]
        .as_u64()
        .unwrap_or_else(|| panic!("no latency.{series} in {report:#}"))
}

#[test]
fn https_closed_model_verifies_with_cacert_and_reports_handshakes_apart() {
    let (_, ca, srv) = tls_server("tls-closed");
    let url = srv.url("/");
    assert!(url.starts_with("https://"), "{url}");
    let report = run_http(
        "tls-closed-run",
        &[
            &url,
            "--cacert",
            ca.ca(),
            "-c",
            "4",
            "-t",
            "1",
            "-d",
            "1s",
            "-w",
            "0",
            "--threshold",
            "tls_handshake.p99<10s",
        ],
    );
    assert_eq!(report["thresholds"][0]["passed"], true, "{report:#}");
    assert_eq!(errors_total(&report), 0, "{report:#}");
    let sent = counter(&report, "sent");
    assert!(sent > 100, "only {sent} requests over HTTPS in 1 s");
    assert_eq!(series_count(&report, "service_time"), sent);
    // Keep-alive: one handshake per connection, each a real one (not zero).
    assert_eq!(series_count(&report, "tls_handshake"), 4, "{report:#}");
    assert!(latency_ms(&report, "tls_handshake", "p50_us") > 0.0);
    assert_eq!(report["environment"]["tls"], true);
    assert_eq!(srv.counters.connections(), 4);
    assert_eq!(srv.counters.requests(), sent);
}

#[test]
fn https_without_keepalive_handshakes_for_every_request_in_the_open_model() {
    let (_, ca, srv) = tls_server("tls-open");
    let report = run_http(
        "tls-open-run",
        &[
            &srv.url("/"),
            "--cacert",
            ca.ca(),
            "--rate",
            "100",
            "-d",
            "1s",
            "-w",
            "0",
            "--no-keepalive",
        ],
    );
    assert_eq!(errors_total(&report), 0, "{report:#}");
    let sent = counter(&report, "sent");
    assert!((95..=105).contains(&sent), "{sent} requests at 100/s for 1 s");
    assert_eq!(series_count(&report, "tls_handshake"), sent, "{report:#}");
    // The corrected latency of a new connection includes its handshake.
    assert!(latency_ms(&report, "corrected", "min_us") >= latency_ms(&report, "tls_handshake", "min_us"));
}

#[test]
fn an_untrusted_certificate_is_a_tls_error_unless_insecure() {
    let (dir, _, srv) = tls_server("tls-untrusted");
    // The system's roots do not know the test CA (and a machine without any roots says so).
    let json = dir.join("system-roots.json");
    let out = edgeload()
        .args([
            "http",
            &srv.url("/"),
            "-c",
            "2",
            "-t",
            "1",
            "-d",
            "500ms",
            "-w",
            "0",
            "--quiet",
            "--json",
        ])
        .arg(&json)
        .output()
        .unwrap();
    if out.status.code() == Some(2) {
        assert!(text(&out).contains("no trusted root certificates"), "{}", text(&out));
    } else {
        assert!(out.status.success(), "{}", text(&out));
        let report = read_json(&json);
        assert!(error_count(&report, "tls") > 0, "{report:#}");
        assert_eq!(errors_total(&report), error_count(&report, "tls"), "{report:#}");
    }
    assert_eq!(srv.counters.requests(), 0);
    // Another CA is no better.
    let other = TestCa::new(&scratch_dir("tls-other-ca"));
    let report = run_http(
        "tls-other-ca-run",
        &[
            &srv.url("/"),
            "--cacert",
            other.ca(),
            "-c",
            "1",
            "-d",
            "300ms",
            "-w",
            "0",
        ],
    );
    assert!(error_count(&report, "tls") > 0, "{report:#}");
    // --insecure accepts it.
    let report = run_http(
        "tls-insecure-run",
        &[
            &srv.url("/"),
            "--insecure",
            "-c",
            "2",
            "-t",
            "1",
            "-d",
            "500ms",
            "-w",
            "0",
        ],
    );
    assert_eq!(errors_total(&report), 0, "{report:#}");
    assert!(counter(&report, "sent") > 10);
}

#[test]
fn http2_over_tls_is_negotiated_by_alpn() {
    let (_, ca, srv) = tls_server("tls-h2");
    let report = run_http(
        "tls-h2-run",
        &[
            &srv.url("/"),
            "--cacert",
            ca.ca(),
            "--http2",
            "-c",
            "2",
            "-t",
            "1",
            "-d",
            "1s",
            "-w",
            "0",
        ],
    );
    assert_eq!(errors_total(&report), 0, "{report:#}");
    assert_eq!(report["environment"]["http_version"], "HTTP/2");
    assert!(counter(&report, "sent") > 50);
    assert_eq!(series_count(&report, "tls_handshake"), 2);
}

#[test]
fn a_missing_cacert_file_is_a_clear_error_before_the_run() {
    let out = edgeload()
        .args([
            "http",
            "https://127.0.0.1:1/",
            "--cacert",
            "/nonexistent/ca.pem",
            "-d",
            "1s",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let msg = text(&out);
    assert!(msg.contains("/nonexistent/ca.pem") && msg.contains("--cacert"), "{msg}");
}

#[test]
fn wss_echo_round_trips_through_tls() {
    let (dir, ca, srv) = tls_server("tls-wss");
    let url = format!("wss://127.0.0.1:{}/ws", srv.addr.port());
    let json = dir.join("ws.json");
    let out = edgeload()
        .args([
            "ws",
            "echo",
            &url,
            "--cacert",
            ca.ca(),
            "-c",
            "3",
            "--rate",
            "20",
            "-d",
            "1s",
            "-w",
            "500ms",
        ])
        .args(["--quiet", "--json"])
        .arg(&json)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let report = read_json(&json);
    assert_eq!(errors_total(&report), 0, "{report:#}");
    assert!(counter(&report, "received") >= 50, "{report:#}");
    assert_eq!(report["environment"]["tls"], true);
    // The sockets opened in the warm-up; their handshakes still count.
    assert_eq!(series_count(&report, "tls_handshake"), 3, "{report:#}");
    assert_eq!(srv.counters.websockets(), 3);
}

/// edgeproxy with a certificate of the test CA on its public port and its API, routing
/// everything to a plain backend.
struct TlsProxy {
    child: Child,
    public: SocketAddr,
    api: SocketAddr,
}

impl TlsProxy {
    fn start(ca: &TestCa, backend: &str, token: &str) -> TlsProxy {
        let exe = workspace_binary("proxy", "edgeproxy");
        let (cert, key) = (ca.cert.to_str().unwrap(), ca.key.to_str().unwrap());
        let mut child = Command::new(exe)
            .args([
                "--ip",
                "127.0.0.1",
                "--port",
                "0",
                "--api-ip",
                "127.0.0.1",
                "--api-port",
                "0",
            ])
            .args([
                "--ssl-cert",
                cert,
                "--ssl-key",
                key,
                "--api-ssl-cert",
                cert,
                "--api-ssl-key",
                key,
            ])
            .args(["--default-target", backend])
            .env("CONFIGPROXY_AUTH_TOKEN", token)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start edgeproxy");
        let logged = |line: &str, marker: &str| -> Option<SocketAddr> {
            let rest = &line[line.find(marker)? + marker.len()..];
            rest.split("://").nth(1)?.split(['/', ' ']).next()?.parse().ok()
        };
        // The log goes to stdout or stderr; read both until both addresses are known.
        let (tx, rx) = std::sync::mpsc::channel();
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        let (mut public, mut api) = (None, None);
        while public.is_none() || api.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx
                .recv_timeout(left)
                .expect("edgeproxy logged its addresses within 30 s");
            public = public.or_else(|| logged(&line, "Proxying "));
            api = api.or_else(|| logged(&line, "Proxy API at "));
        }
        TlsProxy {
            child,
            public: public.unwrap(),
            api: api.unwrap(),
        }
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn through_edgeproxy_terminating_tls_for_requests_and_its_api() {
    let dir = scratch_dir("tls-edgeproxy");
    let ca = TestCa::new(&dir);
    let backend = server(ServeConfig::default());
    let proxy = TlsProxy::start(&ca, &backend.url(""), "secret-token");
    let report = run_http(
        "tls-edgeproxy-run",
        &[
            &format!("https://localhost:{}/any/path", proxy.public.port()),
            "--cacert",
            ca.ca(),
            "-c",
            "4",
            "-t",
            "1",
            "-d",
            "1s",
            "-w",
            "0",
        ],
    );
    assert_eq!(errors_total(&report), 0, "{report:#}");
    let sent = counter(&report, "sent");
    assert!(sent > 100, "{sent}");
    assert_eq!(backend.counters.requests(), sent, "every request reached the backend");
    assert_eq!(series_count(&report, "tls_handshake"), 4);

    // The REST API over TLS: routes added, listed and deleted.
    let json = dir.join("admin.json");
    let out = edgeload()
        .args(["admin", "methods", &format!("https://127.0.0.1:{}", proxy.api.port())])
        .args([
            "--cacert",
            ca.ca(),
            "--token",
            "secret-token",
            "--concurrency",
            "2",
            "--count",
            "20",
        ])
        .args(["--get-all-count", "3", "--quiet", "--json"])
        .arg(&json)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let report = read_json(&json);
    assert_eq!(errors_total(&report), 0, "{report:#}");
}
