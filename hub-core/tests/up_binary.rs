//! `edgehub up` as a newcomer runs it: the binary prints the URL to open, serves the login page
//! through its embedded proxy, and exits cleanly on SIGTERM. Bound to port 0, it prints the port
//! it got.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edgehub_up_prints_its_url_and_serves_the_hub() {
    let dir = temp_dir("up-binary");
    let (mut child, url) = run_until_up(
        Command::new(env!("CARGO_BIN_EXE_edgehub"))
            .args(["up", "--bind", "127.0.0.1:0", "--db"])
            .arg(dir.join("edgehub.sqlite"))
            .current_dir(&dir),
    );
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
    assert_eq!(r.location(), "/hub/login");
    let r = browser.get("/hub/login").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text().contains("name=\"username\""), "{}", r.text());

    // A second hub on the same state refuses to start, naming the first.
    let (code, err) = up_refused(&dir, None, &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("is in use by another edgehub") && err.contains(&format!("process {}", child.id())),
        "{err}"
    );

    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "edgehub up exited with {status}");
    assert!(
        dir.join("edgehub.sqlite").exists(),
        "the state database is where --db says"
    );
}

/// Runs `command` (an `edgehub up`) until it prints the URL to open; returns it with the URL.
fn run_until_up(command: &mut Command) -> (std::process::Child, String) {
    let mut child = command
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
    while Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            if let Some((_, url)) = line.split_once("edgehub is up: open ") {
                return (child, url.trim().to_owned());
            }
            printed.push_str(&line);
            printed.push('\n');
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("edgehub up printed no URL:\n{printed}");
}

/// Runs `edgehub up` expecting it to refuse to start; returns its exit code and stderr.
fn up_refused(dir: &std::path::Path, config: Option<&str>, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_edgehub"));
    cmd.args(["up", "--bind", "127.0.0.1:0", "--db"])
        .arg(dir.join("edgehub.sqlite"))
        .current_dir(dir)
        .env_remove("EDGEHUB_SESSION_SECRET")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(toml) = config {
        let path = dir.join("edgehub.toml");
        std::fs::write(&path, toml).unwrap();
        cmd.arg("--config").arg(path);
    }
    let mut child = cmd.spawn().expect("run edgehub up");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("edgehub up started although it should have refused");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn short_signing_keys_stop_edgehub_up_with_a_clear_message() {
    let dir = temp_dir("up-short-keys");
    // The session key the external proxies are given: set means used, so empty or short is refused.
    for value in ["", "too-short-session-key"] {
        let (code, err) = up_refused(&dir, None, &[("EDGEHUB_SESSION_SECRET", value)]);
        assert_eq!(code, Some(1), "{err}");
        assert!(
            err.contains(&format!("EDGEHUB_SESSION_SECRET is {} bytes", value.len()))
                && err.contains("at least 32 bytes"),
            "{err}"
        );
    }
    // A platform issuer's HMAC key is held to the same rule as at the edge.
    let (code, err) = up_refused(
        &dir,
        Some(
            "[auth]\nauthenticator = \"jwt\"\n[[auth.issuers]]\nissuer = \"platform\"\nalgorithms = [\"HS384\"]\nsecret = \"platform-secret\"\n",
        ),
        &[],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("auth issuer \"platform\": the HMAC key from secret is 15 bytes; HS384 needs at least 48"),
        "{err}"
    );
}

/// Runs `edgehub up` for `run` (reconciling every second), then stops it; returns what it printed.
fn up_printed(dir: &std::path::Path, extra: &[&str], run: Duration) -> String {
    let config = dir.join("edgehub.toml");
    std::fs::write(&config, "reconcile_interval_secs = 1\n").unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_edgehub"))
        .args(["up", "--bind", "127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--db")
        .arg(dir.join("edgehub.sqlite"))
        .args(extra)
        .current_dir(dir)
        .env_remove("EDGEHUB_LOG_LEVEL")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run edgehub up");
    std::thread::sleep(run);
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn routine_reconcile_traffic_stays_out_of_the_terminal() {
    let dir = temp_dir("up-quiet");
    let printed = up_printed(&dir, &[], Duration::from_secs(4));
    assert!(printed.contains("edgehub is up"), "{printed}");
    // Three reconcile passes or more read the proxy's table; none of them shows at INFO.
    assert!(!printed.contains("GET /api/routes"), "{printed}");
    // What a person cares about still does: the hub's route going in at the first start.
    assert!(printed.contains("Route added /"), "{printed}");

    let dir = temp_dir("up-debug");
    let printed = up_printed(&dir, &["--log-level", "debug"], Duration::from_secs(4));
    let reads = printed.matches("200 GET /api/routes").count();
    assert!(reads >= 3, "{reads} table reads at debug level:\n{printed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edgehub_state_url_puts_the_state_in_postgresql() {
    let dir = temp_dir("up-state-url");
    let pg = support::postgres::shared();
    let url = pg.database();
    let db = url.rsplit('/').next().unwrap().to_owned();
    let (mut child, base) = run_until_up(
        Command::new(env!("CARGO_BIN_EXE_edgehub"))
            .args(["up", "--bind", "127.0.0.1:0", "--api-token", ADMIN_TOKEN, "--db"])
            .arg(dir.join("edgehub.sqlite"))
            .current_dir(&dir)
            .env("EDGEHUB_STATE_URL", &url),
    );
    let mut admin = Client {
        base: base.trim_end_matches('/').to_owned(),
        cookies: Default::default(),
        token: Some(ADMIN_TOKEN.to_owned()),
    };
    let r = admin.api(Method::POST, "/users/pat", None).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let info = admin.api(Method::GET, "/info", None).await.json();
    assert!(
        info["replica"]["state"]
            .as_str()
            .is_some_and(|s| s.starts_with("PostgreSQL")),
        "{info}"
    );
    assert_eq!(
        pg.psql(&db, "SELECT name FROM users").unwrap(),
        "pat",
        "the user is in PostgreSQL"
    );
    assert!(!dir.join("edgehub.sqlite").exists(), "no SQLite file beside it");
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());

    // A URL that is not PostgreSQL's is refused by name, without what follows its scheme.
    let (code, err) = up_refused(&dir, None, &[("EDGEHUB_STATE_URL", "mysql://root:hunter2@db/hub")]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("state.url") && err.contains("postgres://"), "{err}");
    assert!(!err.contains("hunter2"), "the password stays out of the message: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawns_failing_in_a_row_stop_the_hub_for_its_supervisor_to_start_afresh() {
    // `limits.consecutive_failure_limit` (JupyterHub's, set to 5 by z2jh): a hub whose spawns
    // keep failing exits with status 1, so that Kubernetes or systemd restarts it; a spawn
    // that succeeds ends the run, and user servers keep running for the next start.
    let dir = temp_dir("failure-limit");
    let edgehub = env!("CARGO_BIN_EXE_edgehub");
    let token = "failure-limit-admin-token-0123456789abcdef";
    let config = format!(
        r#"api_tokens = ["{token}"]
[spawner]
command = ["/bin/sh", "-c", "case $JUPYTERHUB_USER in bad*) exit 3;; esac; exec {edgehub} singleuser --port {{port}}"]
[limits]
consecutive_failure_limit = 2
[cull]
timeout_secs = 0
"#
    );
    let (mut child, mut admin, log) = up_with_log(&dir, &config, token);
    let printed = || std::fs::read_to_string(&log).unwrap_or_default();
    let r = admin
        .api(
            Method::POST,
            "/users",
            Some(serde_json::json!({"usernames": ["bad1", "good", "bad2", "bad3"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let exited = |child: &mut std::process::Child| child.try_wait().unwrap();

    // A failure, a success, a failure: never two in a row, the hub stays.
    assert_eq!(spawn_to_the_end(&mut admin, "bad1").await["failed"], true);
    assert_eq!(spawn_to_the_end(&mut admin, "good").await["ready"], true);
    let r = admin.api(Method::GET, "/users/good", None).await;
    let good_pid = r.json()["servers"][""]["state"]["pid"]
        .as_i64()
        .unwrap_or_else(|| panic!("no pid in {}", r.text()));
    assert_eq!(spawn_to_the_end(&mut admin, "bad2").await["failed"], true);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        exited(&mut child),
        None,
        "one failure since the last success:\n{}",
        printed()
    );

    // A second failure in a row: the hub stops, with status 1 and the reason.
    assert_eq!(spawn_to_the_end(&mut admin, "bad3").await["failed"], true);
    let status = exit_within(&mut child, Duration::from_secs(10), &log);
    assert_eq!(status.code(), Some(1), "{}", printed());
    let out = printed();
    assert!(
        out.contains("2 spawns failed in a row (limits.consecutive_failure_limit = 2)"),
        "{out}"
    );
    assert!(
        out.contains("1 user server(s) left running for the next start"),
        "{out}"
    );
    // Good's server outlives the hub, for the next start to adopt; this test stops it.
    assert!(pid_alive(good_pid), "good's server {good_pid} went with the hub");
    unsafe { libc::kill(good_pid as i32, libc::SIGTERM) };
}

/// Runs `edgehub up` with `config` in `dir`, its output in `dir/edgehub.log`, until it prints
/// its URL; returns it with a client holding `token` and the log's path. The process is killed
/// with the test process if a test fails while it runs.
fn up_with_log(dir: &std::path::Path, config: &str, token: &str) -> (std::process::Child, Client, std::path::PathBuf) {
    std::fs::write(dir.join("edgehub.toml"), config).unwrap();
    let log = dir.join("edgehub.log");
    let mut up = Command::new(env!("CARGO_BIN_EXE_edgehub"));
    up.args(["up", "--bind", "127.0.0.1:0", "--config"])
        .arg(dir.join("edgehub.toml"))
        .arg("--db")
        .arg(dir.join("edgehub.sqlite"))
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::options().append(true).open(&log).unwrap());
    let child = spawn_tied_to_test(up, libc::SIGKILL).expect("run edgehub up");
    let printed = || std::fs::read_to_string(&log).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(20);
    let url = loop {
        if let Some((_, rest)) = printed().split_once("edgehub is up: open ") {
            break rest.split_whitespace().next().unwrap_or_default().to_owned();
        }
        assert!(Instant::now() < deadline, "edgehub up printed no URL:\n{}", printed());
        std::thread::sleep(Duration::from_millis(100));
    };
    let client = Client {
        base: url.trim_end_matches('/').to_owned(),
        cookies: Default::default(),
        token: Some(token.to_owned()),
    };
    (child, client, log)
}

/// Waits up to `limit` for `child` to exit.
fn exit_within(child: &mut std::process::Child, limit: Duration, log: &std::path::Path) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "still running after {limit:?}:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_shuts_the_hub_down_through_the_api() {
    // JupyterHub's `POST /hub/api/shutdown`: 202, then the process ends with status 0; with
    // `"servers": true` every user server is stopped first.
    let dir = temp_dir("api-shutdown");
    let token = "api-shutdown-admin-token-0123456789abcdef";
    let edgehub = env!("CARGO_BIN_EXE_edgehub");
    let config = format!(
        r#"api_tokens = ["{token}"]
[spawner]
command = ["{edgehub}", "singleuser", "--port", "{{port}}"]
[cull]
timeout_secs = 0
"#
    );
    let (mut child, mut admin, log) = up_with_log(&dir, &config, token);
    let r = admin
        .api(
            Method::POST,
            "/users",
            Some(serde_json::json!({"usernames": ["alice"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(spawn_to_the_end(&mut admin, "alice").await["ready"], true);
    let r = admin.api(Method::GET, "/users/alice", None).await;
    let pid = r.json()["servers"][""]["state"]["pid"].as_i64().expect("a pid");

    // Not for a user's token, and not with a body it cannot honour.
    let r = admin
        .api(Method::POST, "/users/alice/tokens", Some(serde_json::json!({})))
        .await;
    let mut alice = Client {
        base: admin.base.clone(),
        cookies: Default::default(),
        token: r.json()["token"].as_str().map(str::to_owned),
    };
    let r = alice.api(Method::POST, "/shutdown", None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    for bad in [
        serde_json::json!({"servers": "yes"}),
        serde_json::json!({"server": true}),
    ] {
        let r = admin.api(Method::POST, "/shutdown", Some(bad.clone())).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.text());
    }
    assert_eq!(child.try_wait().unwrap(), None, "refused calls stop nothing");

    let r = admin
        .api(
            Method::POST,
            "/shutdown",
            Some(serde_json::json!({"servers": true, "proxy": true})),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    assert_eq!(r.json()["message"], "Shutting down Hub");
    let status = exit_within(&mut child, Duration::from_secs(30), &log);
    let printed = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(status.code(), Some(0), "{printed}");
    assert!(printed.contains("asked for it (POST /hub/api/shutdown)"), "{printed}");
    assert!(!pid_alive(pid), "alice's server {pid} was stopped first");
}

#[test]
fn a_taken_port_stops_edgehub_up_with_a_way_out() {
    let dir = temp_dir("port-taken");
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = holder.local_addr().unwrap().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_edgehub"))
        .args(["up", "--bind", &taken, "--db"])
        .arg(dir.join("edgehub.sqlite"))
        .current_dir(&dir)
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .output()
        .expect("run edgehub up");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "cannot bind the public listener on {taken}: Address already in use"
        )),
        "{err}"
    );
    assert!(err.contains("--bind 127.0.0.1:8001"), "the way out is named: {err}");
    assert_eq!(err.matches("Address already in use").count(), 1, "said once: {err}");
}

#[test]
fn a_state_file_that_is_not_a_database_is_named_and_left_alone() {
    let dir = temp_dir("not-a-database");
    let db = dir.join("edgehub.sqlite");
    let garbage = "this is a text file, not anybody's SQLite database\n".repeat(100);
    std::fs::write(&db, &garbage).unwrap();
    let (code, err) = up_refused(&dir, None, &[("RUST_BACKTRACE", "0")]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "cannot open the state database {}: file is not a database",
            db.display()
        )),
        "{err}"
    );
    assert_eq!(err.matches("not a database").count(), 1, "said once: {err}");
    assert_eq!(
        std::fs::read_to_string(&db).unwrap(),
        garbage,
        "the file is not touched"
    );
}
