//! `edgeload admin` against the real `edgeproxy` of this workspace (built on first use with
//! `cargo build -p proxy --bin edgeproxy` into the same target directory as this test): route
//! add / get-all / delete at several concurrency levels, pre-population, clean-up, a wrong token,
//! and churn beside an HTTP load through the proxy.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;
use support::*;

const TOKEN: &str = "edgeload-test-token";

/// The edgeproxy binary beside edgeload's, built once per test process (cargo serializes
/// concurrent builds and the second finds nothing to do).
fn edgeproxy_binary() -> &'static PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let edgeload = PathBuf::from(env!("CARGO_BIN_EXE_edgeload"));
        let profile_dir = edgeload.parent().expect("binary directory").to_path_buf();
        let target_dir = profile_dir.parent().expect("target directory").to_path_buf();
        let mut build = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        build
            .args(["build", "--quiet", "-p", "proxy", "--bin", "edgeproxy"])
            .env("CARGO_TARGET_DIR", &target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            build.arg("--release");
        }
        let status = build.status().expect("run cargo build -p proxy");
        let binary = profile_dir.join("edgeproxy");
        // A half-edited proxy in a shared working copy should not fail edgeload's tests when a
        // binary from an earlier build is at hand; say so, and use it.
        if !status.success() {
            assert!(binary.exists(), "cargo build -p proxy --bin edgeproxy failed");
            eprintln!(
                "warning: cargo build -p proxy failed; using the existing {}",
                binary.display()
            );
        }
        binary
    })
}

/// A running edgeproxy, killed on drop.
struct Proxy {
    child: Child,
    port: u16,
    api_port: u16,
}

impl Proxy {
    /// Starts edgeproxy on ports the system picks (`--port 0 --api-port 0`) and reads them from
    /// the lines it logs once bound (`Proxying http://…`, `Proxy API at http://…`).
    fn start(default_target: &str) -> Proxy {
        let mut child = Command::new(edgeproxy_binary())
            .args(["--ip", "127.0.0.1", "--port", "0"])
            .args(["--api-ip", "127.0.0.1", "--api-port", "0"])
            .args(["--default-target", default_target])
            .env("CONFIGPROXY_AUTH_TOKEN", TOKEN)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start edgeproxy");
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        // Reads to the end, so that edgeproxy never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let (mut port, mut api_port) = (None, None);
        let mut log = String::new();
        while port.is_none() || api_port.is_none() {
            let line = rx
                .recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|_| panic!("edgeproxy did not log its ports:\n{log}"));
            port = port.or_else(|| logged_port(&line, "Proxying "));
            api_port = api_port.or_else(|| logged_port(&line, "Proxy API at "));
            log.push_str(&line);
            log.push('\n');
        }
        Proxy {
            child,
            port: port.unwrap(),
            api_port: api_port.unwrap(),
        }
    }

    fn api(&self) -> String {
        format!("http://127.0.0.1:{}", self.api_port)
    }

    /// The route table, read with a plain HTTP/1.0 request.
    fn routes(&self) -> serde_json::Map<String, Value> {
        let mut s = TcpStream::connect(("127.0.0.1", self.api_port)).unwrap();
        write!(
            s,
            "GET /api/routes HTTP/1.0\r\nHost: x\r\nAuthorization: token {TOKEN}\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        match serde_json::from_str(body) {
            Ok(Value::Object(m)) => m,
            other => panic!("GET /api/routes: {other:?} from {text}"),
        }
    }
}

/// The port in edgeproxy's start-up line `marker` (`Proxying http://127.0.0.1:41234 to …`).
fn logged_port(line: &str, marker: &str) -> Option<u16> {
    let rest = &line[line.find(marker)? + marker.len()..];
    let rest = rest.split_once("://").map_or(rest, |(_, after)| after);
    let addr = rest.split(|c: char| c == '/' || c.is_whitespace()).next()?;
    addr.parse::<std::net::SocketAddr>().ok().map(|a| a.port())
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run_admin(name: &str, args: &[&str]) -> Value {
    let dir = scratch_dir(name);
    let json = dir.join("report.json");
    let out = edgeload()
        .arg("admin")
        .args(args)
        .args(["--quiet", "--json"])
        .arg(&json)
        .env_remove("CONFIGPROXY_AUTH_TOKEN")
        .output()
        .expect("run edgeload");
    assert!(out.status.success(), "edgeload admin {args:?} failed: {}", text(&out));
    read_json(&json)
}

#[test]
fn methods_add_get_and_delete_at_each_level_and_clean_up() {
    let proxy = Proxy::start("http://127.0.0.1:9");
    let r = run_admin(
        "methods",
        &[
            "methods",
            &proxy.api(),
            "--token",
            TOKEN,
            "--concurrency",
            "1,5",
            "--count",
            "40",
            "--get-all-count",
            "3",
            "--routes",
            "500",
        ],
    );
    assert_eq!(r["errors"]["total"], 0, "{r:#}");
    let phases = r["admin"]["phases"].as_array().unwrap();
    let summary: Vec<(String, u64, u64)> = phases
        .iter()
        .map(|p| {
            (
                p["method"].as_str().unwrap().to_owned(),
                p["concurrency"].as_u64().unwrap(),
                p["calls"].as_u64().unwrap(),
            )
        })
        .collect();
    let want: Vec<(String, u64, u64)> = [("add", 1, 40), ("get_all", 1, 3), ("delete", 1, 40)]
        .into_iter()
        .chain([("add", 5, 40), ("get_all", 5, 3), ("delete", 5, 40)])
        .map(|(m, c, n)| (m.to_owned(), c, n))
        .collect();
    assert_eq!(summary, want);
    for p in phases {
        assert_eq!(p["errors"], 0, "{p:#}");
        let series = p["series"].as_str().unwrap();
        assert_eq!(r["latency"][series]["count"], p["calls"], "{series}");
    }
    // The default route, the 500 pre-populated ones and the 40 just added.
    assert_eq!(phases[1]["routes_seen"], 541, "{:#}", phases[1]);
    assert_eq!(r["admin"]["load"]["via"], "batch");
    assert_eq!(r["admin"]["prepopulated_routes"], 500);
    let left: Vec<String> = proxy.routes().keys().cloned().collect();
    assert_eq!(left, vec!["/".to_owned()], "everything edgeload added is gone");
}

#[test]
fn a_wrong_token_counts_every_call_as_a_403() {
    let proxy = Proxy::start("http://127.0.0.1:9");
    let r = run_admin(
        "wrong-token",
        &[
            "methods",
            &proxy.api(),
            "--token",
            "wrong",
            "--concurrency",
            "2",
            "--count",
            "10",
            "--get-all-count",
            "2",
        ],
    );
    assert_eq!(error_count(&r, "status_403"), 22, "{r:#}");
    assert_eq!(r["errors"]["total"], 22);
    assert_eq!(proxy.routes().len(), 1);
}

#[test]
fn churn_reaches_its_rate_beside_an_http_load_through_the_proxy() {
    let backend = server(ServeConfig::default());
    let proxy = Proxy::start(&backend.url(""));
    let r = run_admin(
        "churn",
        &[
            "churn",
            &proxy.api(),
            "--token",
            TOKEN,
            "--rate",
            "200",
            "--window",
            "20",
            "-d",
            "2s",
            "-w",
            "0.5s",
            "--with-http",
            &format!("http://127.0.0.1:{}/", proxy.port),
            "--http-rate",
            "200",
        ],
    );
    assert_eq!(r["errors"]["total"], 0, "{r:#}");
    let rate = r["sent_rps"].as_f64().unwrap();
    assert!((rate - 200.0).abs() <= 6.0, "churn rate {rate}/s");
    let adds = r["latency"]["add"]["count"].as_u64().unwrap();
    let deletes = r["latency"]["delete"]["count"].as_u64().unwrap();
    assert!(
        adds.abs_diff(deletes) <= 1,
        "adds {adds} and deletes {deletes} alternate"
    );
    let http = &r["admin"]["with_http"];
    assert_eq!(http["errors"]["total"], 0, "{http:#}");
    let http_rate = http["sent_rps"].as_f64().unwrap();
    assert!((http_rate - 200.0).abs() <= 6.0, "HTTP rate {http_rate}/s");
    assert!(backend.counters.requests() >= 400);
    assert_eq!(proxy.routes().len(), 1, "the churned routes are removed at the end");
}

/// Thresholds written `http.…` judge the HTTP load beside the churn: one that holds and one that
/// cannot are both reported, and the failing one sets the exit code; without `--with-http` they
/// are refused before the run.
#[test]
fn http_thresholds_judge_the_load_beside_the_churn() {
    let backend = server(ServeConfig::default());
    let proxy = Proxy::start(&backend.url(""));
    let dir = scratch_dir("churn-thresholds");
    let json = dir.join("report.json");
    let http_url = format!("http://127.0.0.1:{}/", proxy.port);
    let churn = |extra: &[&str]| {
        edgeload()
            .args([
                "admin",
                "churn",
                &proxy.api(),
                "--token",
                TOKEN,
                "--rate",
                "50",
                "--window",
                "5",
            ])
            .args(["-d", "1s", "-w", "0s", "--quiet"])
            .args(extra)
            .env_remove("CONFIGPROXY_AUTH_TOKEN")
            .output()
            .expect("run edgeload")
    };
    let out = churn(&[
        "--with-http",
        &http_url,
        "--http-rate",
        "100",
        "--threshold",
        "http.rps>10",
        "--threshold",
        "http.p99<1us",
        "--threshold",
        "errors<1%",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(99), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("http.rps>10: passed"), "{stdout}");
    assert!(stdout.contains("http.p99<1us: FAILED, corrected p99"), "{stdout}");
    assert!(stdout.contains("errors<1%: passed"), "{stdout}");
    let r = read_json(&json);
    let judged: Vec<(&str, bool)> = r["thresholds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["expression"].as_str().unwrap(), t["passed"].as_bool().unwrap()))
        .collect();
    assert_eq!(
        judged,
        [("errors<1%", true), ("http.rps>10", true), ("http.p99<1us", false)],
        "{r:#}"
    );

    let out = churn(&["--threshold", "http.p99<50ms"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--with-http"), "{}", text(&out));
}
