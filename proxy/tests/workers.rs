//! `--workers N`: N event loops on N threads, each accepting on its own listener
//! (docs/architecture.md, "Workers").

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::*;

/// Nanoseconds each thread of `pid` has run, by thread name.
fn on_cpu_by_thread(pid: u32) -> Vec<(String, u64)> {
    let mut threads = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let dir = task.unwrap().path();
        let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let ns = std::fs::read_to_string(dir.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        threads.push((name.trim().to_owned(), ns));
    }
    threads.sort();
    threads
}

/// `requests` keep-alive GETs on one connection; the number answered 200.
fn keep_alive_gets(addr: std::net::SocketAddr, requests: usize) -> usize {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut ok = 0;
    for _ in 0..requests {
        s.write_all(b"GET /w HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        // Until the whole response (head and `Content-Length` bytes of body) is in.
        while !complete(&got) {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "connection closed mid-response");
            got.extend_from_slice(&buf[..n]);
        }
        ok += usize::from(parse_response(&got).unwrap().status == 200);
    }
    ok
}

fn complete(got: &[u8]) -> bool {
    let Some(r) = parse_response(got) else {
        return false;
    };
    let length = r.header("content-length").and_then(|v| v.parse::<usize>().ok());
    length.is_some_and(|n| r.body.len() >= n)
}

#[test]
fn every_worker_serves_connections_and_all_stop_on_sigterm() {
    let up = Upstream::echo("/");
    let mut p = Edgeproxy::start(&["--workers", "3", "--default-target", &up.target]);
    let named = |threads: &[(String, u64)], name: &str| threads.iter().any(|(n, _)| n == name);
    let before = on_cpu_by_thread(p.pid());
    for worker in ["edgeproxy-w1", "edgeproxy-w2"] {
        assert!(named(&before, worker), "no thread {worker}: {before:?}");
    }
    assert!(
        !named(&before, "edgeproxy-w3"),
        "3 workers are the main thread and two more"
    );

    // 60 connections at once: the three event loops race to accept each one. Which wins is up
    // to the scheduler, so a machine busy with other tests gets a few rounds to spread them.
    let workers = ["edgeproxy", "edgeproxy-w1", "edgeproxy-w2"];
    let ran = |threads: &[(String, u64)], name: &str| -> u64 {
        threads.iter().filter(|(n, _)| n == name).map(|(_, ns)| ns).sum()
    };
    let mut idle_workers = Vec::new();
    for _round in 0..5 {
        let clients: Vec<_> = (0..60)
            .map(|_| {
                let addr = p.public();
                std::thread::spawn(move || keep_alive_gets(addr, 20))
            })
            .collect();
        let answered: usize = clients.into_iter().map(|c| c.join().unwrap()).sum();
        assert_eq!(answered, 60 * 20);
        let after = on_cpu_by_thread(p.pid());
        // An idle event loop runs for microseconds a second; serving a share of 1,200 proxied
        // requests takes milliseconds.
        idle_workers = workers
            .iter()
            .filter(|name| ran(&after, name) - ran(&before, name) < 1_000_000)
            .collect();
        if idle_workers.is_empty() {
            break;
        }
    }
    assert!(idle_workers.is_empty(), "{idle_workers:?} served nothing");

    // Idle keep-alive connections on every worker do not hold the exit up.
    let idle: Vec<TcpStream> = (0..12).map(|_| TcpStream::connect(p.public()).unwrap()).collect();
    let started = std::time::Instant::now();
    let status = p.stop("TERM");
    assert_eq!(status.code(), Some(2), "{}", p.log_text());
    assert!(started.elapsed() < Duration::from_secs(10));
    drop(idle);
    assert!(TcpStream::connect(p.public()).is_err(), "a worker still listens");
}

#[test]
fn workers_share_a_unix_socket_listener() {
    let dir = scratch_dir("workers-unix");
    let public = dir.join("public.sock");
    let up = Upstream::echo("/");
    let mut child = spawn_raw(&[
        "--socket",
        public.to_str().unwrap(),
        "--api-ip",
        "127.0.0.1",
        "--api-port",
        "0",
        "--workers",
        "2",
        "--default-target",
        &up.target,
    ]);
    wait_until(|| std::os::unix::net::UnixStream::connect(&public).is_ok());
    for _ in 0..20 {
        let r = raw_unix(&public, b"GET /u HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        assert_eq!(r.status, 200);
    }
    assert!(public.exists(), "the socket file stays while the proxy runs");
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = wait_exit(&mut child, Duration::from_secs(15)).expect("exit after SIGTERM");
    assert_eq!(status.code(), Some(2));
    assert!(!public.exists(), "the socket file is removed at exit");
}
