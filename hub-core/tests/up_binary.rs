//! `edgehub up` as a newcomer runs it: the binary prints the URL to open, serves the login page
//! through its embedded proxy, and exits cleanly on SIGTERM. Bound to port 0, it prints the port
//! it got.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use http::StatusCode;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edgehub_up_prints_its_url_and_serves_the_hub() {
    let dir = temp_dir("up-binary");
    let mut child = Command::new(env!("CARGO_BIN_EXE_edgehub"))
        .args(["up", "--bind", "127.0.0.1:0", "--db"])
        .arg(dir.join("edgehub.sqlite"))
        .current_dir(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run edgehub up");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut printed = String::new();
    let mut url = None;
    while Instant::now() < deadline && url.is_none() {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            url = line
                .split_once("edgehub is up: open ")
                .map(|(_, url)| url.trim().to_owned());
            printed.push_str(&line);
            printed.push('\n');
        }
    }
    let url = url.unwrap_or_else(|| panic!("edgehub up printed no URL:\n{printed}"));
    let base = url.strip_suffix('/').unwrap_or(&url);
    let port: u16 = base
        .strip_prefix("http://127.0.0.1:")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("not a loopback URL with a port: {url}"));
    assert_ne!(port, 0, "the port bound, not the one asked for: {url}");

    let mut browser = Client {
        base: base.to_owned(),
        cookies: Default::default(),
        token: None,
    };
    let r = browser.get("/").await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert_eq!(r.location(), "/hub/home");
    let r = browser.get("/hub/login").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text().contains("name=\"username\""), "{}", r.text());

    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "edgehub up exited with {status}");
    assert!(
        dir.join("edgehub.sqlite").exists(),
        "the state database is where --db says"
    );
}
