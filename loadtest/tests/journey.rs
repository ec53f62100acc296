//! The notebook journey against a real, stock JupyterHub (pinned in
//! `proxy/tests/jupyterhub/requirements.txt`) with DummyAuthenticator, SimpleLocalProcessSpawner
//! and edgeproxy as its proxy, all on loopback: `edgeload journey` drives users through form
//! login, spawn, progress, kernel, WebSocket executes and stop, and its JSON report is checked.
//!
//! The Python environment is made by `scripts/ensure-pyenv.sh`, which the test command
//! (`scripts/test.sh`) runs first and exports as EDGEHUB_PYENV. Without it this test fails; it
//! never skips. edgeproxy is built once with `cargo build -p proxy --bin edgeproxy` into the
//! same target directory.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn pyenv() -> PathBuf {
    match std::env::var_os("EDGEHUB_PYENV") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(std::env::var_os("HOME").expect("HOME or EDGEHUB_PYENV")).join(".cache/edgehub/pyenv"),
    }
}

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Builds edgeproxy (a no-op when it is up to date) and returns its path.
fn edgeproxy() -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(["build", "-p", "proxy", "--bin", "edgeproxy"])
        .current_dir(workspace_root())
        .output()
        .expect("run cargo build -p proxy");
    assert!(
        out.status.success(),
        "cargo build -p proxy --bin edgeproxy failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace_root().join("target"), PathBuf::from);
    let exe = target.join("debug/edgeproxy");
    assert!(exe.exists(), "no edgeproxy at {} after the build", exe.display());
    exe
}

/// A running hub (loadtest/tests/journey_hub.py); closing its stdin shuts it down.
struct Hub {
    child: Child,
    stdin: Option<ChildStdin>,
    url: String,
    token: String,
    password: String,
}

impl Hub {
    fn start() -> Hub {
        let python = pyenv().join("bin/python");
        assert!(
            python.exists(),
            "the JupyterHub test environment is missing at {}: run scripts/test.sh (or scripts/ensure-pyenv.sh) first",
            python.display()
        );
        let proxy = edgeproxy();
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/journey_hub.py");
        let mut child = Command::new(&python)
            .arg(&script)
            .arg("--proxy-command")
            .arg(&proxy)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start journey_hub.py");
        let stdin = child.stdin.take();
        let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        let fields: Vec<&str> = first.split_whitespace().collect();
        if fields.len() != 4 || fields[0] != "ready" {
            let rest: Vec<String> = lines.map_while(Result::ok).collect();
            panic!("the hub did not start:\n{first}\n{}", rest.join("\n"));
        }
        Hub {
            url: format!("{}/", fields[1]),
            token: fields[2].to_owned(),
            password: fields[3].to_owned(),
            child,
            stdin,
        }
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let end = Instant::now() + Duration::from_secs(40);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `edgeload journey` and returns its JSON report and its terminal output.
fn journey(name: &str, hub: &Hub, args: &[&str]) -> (Value, String) {
    let dir = std::env::temp_dir().join(format!("edgeload-journey-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("report.json");
    let html = dir.join("report.html");
    let out = Command::new(env!("CARGO_BIN_EXE_edgeload"))
        .arg("journey")
        .arg(&hub.url)
        .args(args)
        .arg("--quiet")
        .arg("--json")
        .arg(&json)
        .arg("--html")
        .arg(&html)
        .stdin(Stdio::null())
        .output()
        .expect("run edgeload journey");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "edgeload journey {args:?} failed:\n{text}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).expect("read the report"))
        .unwrap_or_else(|e| panic!("the report is not JSON: {e}"));
    assert!(std::fs::read_to_string(&html).unwrap().contains("login"));
    let _ = std::fs::remove_dir_all(&dir);
    (report, text)
}

fn count(report: &Value, series: &str) -> u64 {
    report["latency"][series]["count"]
        .as_u64()
        .unwrap_or_else(|| panic!("no latency.{series}.count in {report:#}"))
}

fn counter(report: &Value, name: &str) -> u64 {
    report["counters"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("no counters.{name} in {report:#}"))
}

#[test]
fn users_go_through_the_whole_journey_on_a_stock_jupyterhub() {
    let hub = Hub::start();
    let users = 3;
    let executes = 2;

    // Form login, as a browser: _xsrf cookie and field, OAuth redirects to the server.
    let (r, text) = journey(
        "form",
        &hub,
        &[
            "--users",
            "3",
            "--users-per-second",
            "3",
            "--password",
            &hub.password,
            "--executes",
            "2",
            "--think-time",
            "200ms",
            "--code",
            "1+1",
            "--expect",
            "2",
            "--spawn-timeout",
            "60s",
        ],
    );
    println!("{text}");
    assert_eq!(r["scenario"], "journey");
    assert_eq!(r["load_model"], "open");
    assert_eq!(r["errors"]["total"], 0, "{text}");
    assert_eq!(r["failures"], serde_json::json!({}), "{text}");
    for series in [
        "login",
        "spawn_request",
        "spawn_ready",
        "server_auth",
        "kernel_start",
        "ws_connect",
        "stop",
    ] {
        assert_eq!(count(&r, series), users, "{series}: {text}");
        assert!(r["latency"][series]["p50_us"].as_u64().unwrap() > 0);
    }
    assert_eq!(count(&r, "execute"), users * executes, "{text}");
    assert_eq!(counter(&r, "executes_checked"), users * executes);
    assert_eq!(counter(&r, "users_started"), users);
    assert_eq!(counter(&r, "users_completed"), users);
    assert!(r["counters"]["login_failed"] == 0 && r["counters"]["stop_failed"] == 0);
    // A spawn starts a Python process: it takes a while, whether the hub answers the request
    // at once (slow_spawn_timeout = 0) or only after the server started.
    let spawn_us = |s: &str| r["latency"][s]["p50_us"].as_u64().unwrap();
    assert!(spawn_us("spawn_request") + spawn_us("spawn_ready") > 100_000, "{text}");

    // Token mode: the admin token creates the users and a token for each; the check fails on
    // purpose, so every execute counts as wrong_output while the rest of the journey succeeds.
    let (r, text) = journey(
        "token",
        &hub,
        &[
            "--users",
            "1",
            "--token",
            &hub.token,
            "--user-prefix",
            "edgeload-token-",
            "--executes",
            "2",
            "--think-time",
            "100ms",
            "--code",
            "print(6*7)",
            "--expect",
            "41",
        ],
    );
    println!("{text}");
    for series in [
        "login",
        "spawn_request",
        "spawn_ready",
        "kernel_start",
        "ws_connect",
        "stop",
    ] {
        assert_eq!(count(&r, series), 1, "{series}: {text}");
    }
    assert_eq!(count(&r, "server_auth"), 0, "token users need no OAuth cookie");
    assert_eq!(count(&r, "execute"), 0);
    assert_eq!(r["failures"]["execute"]["wrong_output"], 2, "{text}");
    assert_eq!(counter(&r, "execute_failed"), 2);
    assert_eq!(counter(&r, "users_completed"), 0);
    assert_eq!(r["errors"]["by_kind"]["protocol"], 2);

    // A wrong password: every login is refused with 403, nothing else is attempted.
    let (r, text) = journey(
        "badpass",
        &hub,
        &["--users", "3", "--users-per-second", "10", "--password", "wrong"],
    );
    println!("{text}");
    assert_eq!(r["failures"]["login"]["status_403"], 3, "{text}");
    assert_eq!(counter(&r, "login_failed"), 3);
    assert_eq!(r["errors"]["by_kind"]["status_403"], 3);
    for series in ["login", "spawn_request", "stop"] {
        assert_eq!(count(&r, series), 0, "{series}: {text}");
    }
    assert!(
        text.contains("failures by phase:") && text.contains("status_403 3"),
        "{text}"
    );
}
