//! Black-box harness: the real `edgeload` binary as a child process, loading the library's
//! [`TestServer`] (in this process, on its own thread) over real loopback sockets. Assertions
//! read the JSON report the binary writes.
#![allow(dead_code, unused_imports)]

pub mod test_ca;

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub use loadtest::serve::{ServeConfig, Stall, TestServer};
use serde_json::Value;

pub fn server(config: ServeConfig) -> TestServer {
    TestServer::start(config).expect("start the test server")
}

/// A scratch directory unique to this test process and `name`.
/// A loopback port that refuses connections: bound for the whole test process but never
/// listening, so no other process can take it. (A port merely found free could be taken, and
/// answer, before the test connects.)
pub fn refused_port() -> u16 {
    static SOCKET: std::sync::OnceLock<tokio::net::TcpSocket> = std::sync::OnceLock::new();
    let socket = SOCKET.get_or_init(|| {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(([127, 0, 0, 1], 0).into()).unwrap();
        socket
    });
    socket.local_addr().unwrap().port()
}

pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("edgeload-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn edgeload() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_edgeload"));
    cmd.stdin(Stdio::null());
    cmd
}

/// Runs `edgeload http <args> --quiet --json <file>` to completion and returns the report.
pub fn run_http(name: &str, args: &[&str]) -> Value {
    let dir = scratch_dir(name);
    let json = dir.join("report.json");
    let out = edgeload()
        .arg("http")
        .args(args)
        .args(["--quiet", "--json"])
        .arg(&json)
        .output()
        .expect("run edgeload");
    assert!(out.status.success(), "edgeload {args:?} failed: {}", text(&out));
    read_json(&json)
}

pub fn read_json(path: &std::path::Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON ({e}): {text}", path.display()))
}

pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A latency figure of `series` in the report, in ms.
pub fn latency_ms(report: &Value, series: &str, field: &str) -> f64 {
    let v = &report["latency"][series][field];
    v.as_f64()
        .unwrap_or_else(|| panic!("no latency.{series}.{field} in {report:#}"))
        / 1000.0
}

pub fn counter(report: &Value, name: &str) -> u64 {
    report["counters"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("no counters.{name} in {report:#}"))
}

/// The report put its open-model lateness on the target: sends waited for room at
/// `--max-connections` (`late_pool_full`), a warning says so, and no generator verdict.
pub fn assert_lateness_put_on_the_target(report: &Value) {
    assert!(counter(report, "late_pool_full") >= 10, "{report:#}");
    assert!(
        counter(report, "late") >= counter(report, "late_pool_full"),
        "{report:#}"
    );
    assert_eq!(report["generator"]["bottleneck"], Value::Null, "{report:#}");
    let warnings = report["warnings"].to_string();
    assert!(
        warnings.contains("left late because every connection was busy with the pool at --max-connections"),
        "{warnings}"
    );
}

pub fn error_count(report: &Value, kind: &str) -> u64 {
    report["errors"]["by_kind"][kind].as_u64().unwrap_or(0)
}

/// Resident set size of process `pid` in bytes.
pub fn rss_bytes(pid: u32) -> u64 {
    loadtest::process_stats::memory(&pid.to_string())
        .expect("read the child's /proc status")
        .rss_bytes
}

/// Waits up to `limit` for `child` to exit; kills it otherwise.
pub fn wait(child: Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    let mut child = child;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    child.wait_with_output().unwrap()
}

/// The test venv (scripts/ensure-pyenv.sh): EDGEHUB_PYENV, else its default place.
pub fn pyenv() -> PathBuf {
    match std::env::var_os("EDGEHUB_PYENV") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(std::env::var_os("HOME").expect("HOME or EDGEHUB_PYENV")).join(".cache/edgehub/pyenv"),
    }
}

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Builds binary `bin` of workspace package `package` (a no-op when it is up to date) and
/// returns its path.
pub fn workspace_binary(package: &str, bin: &str) -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(["build", "-p", package, "--bin", bin])
        .current_dir(workspace_root())
        .output()
        .unwrap_or_else(|e| panic!("run cargo build -p {package}: {e}"));
    assert!(
        out.status.success(),
        "cargo build -p {package} --bin {bin} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace_root().join("target"), PathBuf::from);
    let exe = target.join("debug").join(bin);
    assert!(exe.exists(), "no {bin} at {} after the build", exe.display());
    exe
}
