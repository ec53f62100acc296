//! The process contract with JupyterHub and operators (CHP's `test/cli_spec.js`,
//! docs/configuration.md): flags, exit codes, signals, pid file, listeners, graceful shutdown,
//! timeouts, the connection cap.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use support::*;

#[test]
fn version_and_help() {
    let (code, out) = run_to_exit(&["--version"]);
    assert_eq!(code, Some(0));
    assert!(out.contains(env!("CARGO_PKG_VERSION")), "{out}");
    let (code, out) = run_to_exit(&["--help"]);
    assert_eq!(code, Some(0));
    for flag in [
        "--default-target",
        "--error-target",
        "--api-port",
        "--host-routing",
        "--keep-alive-timeout",
        "--custom-header",
        "--metrics-port",
        "CONFIGPROXY_AUTH_TOKEN",
    ] {
        assert!(out.contains(flag), "help mentions {flag}");
    }
}

#[test]
fn configuration_errors_exit_1_with_a_message() {
    let base = ["--port", "0", "--api-port", "0"];
    let cases: [(&[&str], &str); 8] = [
        (&["--custom-header", "invalid"], "colon was expected"),
        (
            &["--redirect-port", "1234"],
            "HTTPS redirection specified but certificates not provided.",
        ),
        (
            &["--error-target", "http://x", "--error-path", "/tmp"],
            "Cannot specify both error-target and error-path. Pick one.",
        ),
        (&["--storage-backend", "mybackend"], "memory or redis"),
        (&["--storage-backend", "redis"], "needs --storage-url"),
        (&["--no-such-flag"], "--no-such-flag"),
        (&["--log-level", "loud"], "log-level"),
        (&["--error-path", "/definitely/not/here"], "error-path"),
    ];
    for (args, message) in cases {
        let all: Vec<&str> = base.iter().chain(args.iter()).copied().collect();
        let (code, out) = run_to_exit(&all);
        assert_eq!(code, Some(1), "{args:?}: {out}");
        assert!(out.contains(message), "{args:?} says {message:?}: {out}");
    }
}

#[test]
fn a_port_in_use_is_an_error_not_a_silent_gap() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let (code, out) = run_to_exit(&["--ip", "127.0.0.1", "--port", &port, "--api-port", "0"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("cannot bind") && out.contains(&port), "{out}");
}

/// `--port 0` (as every listener's port 0) is any free port, not CHP's 8000: the start-up lines
/// name the ports the system chose, and a caller reads them there.
#[test]
fn port_0_is_any_free_port_named_in_the_start_up_lines() {
    let up = Upstream::echo("/");
    let mut p = Edgeproxy::start(&[
        "--default-target",
        &up.target,
        "--metrics-ip",
        "127.0.0.1",
        "--metrics-port",
        "0",
    ]);
    let metrics = p.metrics_addr();
    let ports = [p.port, p.api_port, metrics.port()];
    assert!(
        !ports.contains(&0) && ports[0] != ports[1] && ports[1] != ports[2],
        "{ports:?}"
    );
    let log = p.log_text();
    for line in [
        format!("Proxying http://127.0.0.1:{} to {}", p.port, up.target),
        format!("Proxy API at http://127.0.0.1:{}/api/routes", p.api_port),
        format!("Serve metrics at http://{metrics}/metrics"),
    ] {
        assert!(log.contains(&line), "{line:?} in\n{log}");
    }
    assert_eq!(p.get("/x").status, 200);
    assert_eq!(p.api("GET", "/api/routes", None).status, 200);
    assert_eq!(get(metrics, "/metrics").status, 200);
}

#[test]
fn sigterm_and_sigint_exit_2_and_remove_the_pid_file() {
    for signal in ["TERM", "INT"] {
        let dir = scratch_dir(&format!("pid-{signal}"));
        let pid_file = dir.join("proxy.pid");
        let mut p = Edgeproxy::start(&["--pid-file", pid_file.to_str().unwrap()]);
        assert_eq!(
            std::fs::read_to_string(&pid_file).unwrap(),
            p.pid().to_string(),
            "pid, no newline"
        );
        let status = p.stop(signal);
        assert_eq!(status.code(), Some(2), "SIG{signal}");
        assert!(!pid_file.exists(), "pid file removed after SIG{signal}");
        let log = p.log_text();
        assert!(
            log.contains(if signal == "TERM" { "Terminated" } else { "Interrupted" }),
            "{log}"
        );
    }
}

#[test]
fn graceful_shutdown_lets_in_flight_requests_finish() {
    let up = Upstream::with(|_| Reply::new(200, "slow but complete").after(Duration::from_millis(800)));
    let mut p = Edgeproxy::start(&["--default-target", &up.target]);
    let addr = p.public();
    let in_flight = std::thread::spawn(move || get(addr, "/slow"));
    std::thread::sleep(Duration::from_millis(200));
    let status = p.stop("TERM");
    let r = in_flight.join().unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "slow but complete"));
    assert_eq!(status.code(), Some(2));
    assert!(TcpStream::connect(addr).is_err(), "no longer accepting");
}

#[test]
fn an_empty_ip_listens_on_every_interface() {
    let up = Upstream::echo("/");
    let p = Edgeproxy::launch(
        &[
            "--ip",
            "",
            "--port",
            "0",
            "--api-port",
            "0",
            "--default-target",
            &up.target,
        ],
        Some(TOKEN),
    );
    let port = p.port;
    let v4 = get(SocketAddr::from(([127, 0, 0, 1], port)), "/x");
    assert_eq!(
        v4.json()["headers"]["x-forwarded-for"],
        "127.0.0.1",
        "IPv4 clients are written as IPv4"
    );
    if TcpStream::connect(("::1", port)).is_ok() {
        assert_eq!(
            get(SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port)), "/x").status,
            200,
            "dual-stack"
        );
    }
}

#[test]
fn proxy_timeout_is_503_and_client_timeout_closes() {
    let up = Upstream::with(|_| Reply::new(200, "too late").after(Duration::from_secs(2)));
    let p = Edgeproxy::start(&["--default-target", &up.target, "--proxy-timeout", "500"]);
    let started = Instant::now();
    let r = p.get("/slow");
    assert_eq!(r.status, 503);
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    // A WebSocket handshake waits for the upstream's answer no longer either.
    let started = Instant::now();
    let r = raw(
        p.public(),
        b"GET /slow HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .expect("an answer to the upgrade");
    assert_eq!(r.status, 503);
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );

    let p = Edgeproxy::start(&["--default-target", &up.target, "--timeout", "500"]);
    let started = Instant::now();
    let r = raw(
        p.public(),
        b"GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(r.is_none(), "closed without a response");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn idle_keep_alive_connections_are_closed_after_the_timeout() {
    let up = Upstream::echo("/");
    let p = Edgeproxy::start(&["--default-target", &up.target, "--keep-alive-timeout", "300"]);
    let mut s = TcpStream::connect(p.public()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    assert!(String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 200"));
    let idle = started.elapsed();
    assert!(
        idle >= Duration::from_millis(250) && idle < Duration::from_secs(3),
        "closed after {idle:?}"
    );
}

#[test]
fn connection_cap_queues_the_excess() {
    let up = Upstream::echo("/");
    let p = Edgeproxy::start(&["--default-target", &up.target, "--max-connections", "2"]);
    let held: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut s = TcpStream::connect(p.public()).unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let mut first = [0u8; 12];
            s.read_exact(&mut first).unwrap();
            s
        })
        .collect();
    let addr = p.public();
    let waiting = std::thread::spawn(move || {
        let started = Instant::now();
        let r = get(addr, "/third");
        (r.status, started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(500));
    drop(held);
    let (status, waited) = waiting.join().unwrap();
    assert_eq!(status, 200);
    assert!(
        waited >= Duration::from_millis(400),
        "the third connection waited for a slot: {waited:?}"
    );
}

/// The soft and hard open-files limits of process `pid`, from `/proc/<pid>/limits`.
fn open_files_limits(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    let n: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| {
            if w == "unlimited" {
                Some(u64::MAX)
            } else {
                w.parse().ok()
            }
        })
        .collect();
    (n[0], n[1])
}

#[test]
fn the_open_files_soft_limit_is_raised_to_the_hard_limit_at_start() {
    // This test's own process (nextest runs each test in one) takes a soft limit of 256, as a
    // shell's 1024 would be; the proxy it starts inherits it.
    let me = std::process::id().to_string();
    let (_, hard) = open_files_limits(std::process::id());
    let status = std::process::Command::new("prlimit")
        .args(["--pid", &me, "--nofile=256:"])
        .status()
        .expect("run prlimit (util-linux)");
    assert!(status.success());
    assert_eq!(open_files_limits(std::process::id()).0, 256);
    let up = Upstream::echo("/");
    let p = Edgeproxy::start(&["--default-target", &up.target]);
    assert_eq!(open_files_limits(p.pid()), (hard, hard));
    assert!(
        p.log_text()
            .contains(&format!("open-files limit raised from 256 to {hard}")),
        "{}",
        p.log_text()
    );
}

#[test]
fn running_out_of_file_descriptors_is_logged_once_not_twenty_times_a_second() {
    let up = Upstream::echo("/");
    // One worker: each worker's accept loop reports for itself.
    let p = Edgeproxy::start(&["--default-target", &up.target, "--workers", "1"]);
    let open_now = std::fs::read_dir(format!("/proc/{}/fd", p.pid())).unwrap().count();
    let limit = format!("--nofile={}", open_now + 4);
    let status = std::process::Command::new("prlimit")
        .args(["--pid", &p.pid().to_string(), &limit])
        .status()
        .expect("run prlimit (util-linux)");
    assert!(status.success());
    // More connections than descriptors left: accepting fails, and is retried every 50 ms.
    let held: Vec<TcpStream> = (0..20).map(|_| TcpStream::connect(p.public()).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(1500));
    let failures = |log: &str| log.matches("accept on Public listener").count();
    let log = p.log_text();
    assert!(log.contains("Too many open files"), "{log}");
    assert_eq!(failures(&log), 1, "one line for 30 failures: {log}");
    drop(held);
    // Room again: the queued connections are served, and the log says accepting works.
    let limit = format!("--nofile={}", open_now + 64);
    std::process::Command::new("prlimit")
        .args(["--pid", &p.pid().to_string(), &limit])
        .status()
        .unwrap();
    assert_eq!(get(p.public(), "/").status, 200);
    let log = p.log_text();
    assert!(log.contains("accept on Public listener works again"), "{log}");
}

#[test]
fn api_clients_that_connect_and_leave_are_harmless() {
    let up = Upstream::echo("/");
    let p = Edgeproxy::start(&["--default-target", &up.target]);
    // JupyterHub's readiness check: bare TCP connections, closed without a byte.
    for _ in 0..50 {
        drop(TcpStream::connect(p.api_addr()).unwrap());
        drop(TcpStream::connect(p.public()).unwrap());
    }
    assert_eq!(p.api("GET", "/api/routes", None).status, 200);
    assert_eq!(p.get("/").status, 200);
}
