//! The notebook journey, black-box, against the two hubs it is meant for, each on loopback with
//! real `jupyterhub-singleuser` servers (so kernels and WebSockets are real): `edgeload journey`
//! drives users through form login, spawn, progress, the server's OAuth login, kernel, WebSocket
//! executes and stop, and its JSON report is checked.
//!
//! - A stock JupyterHub (pinned in `proxy/tests/jupyterhub/requirements.txt`) with
//!   DummyAuthenticator, SimpleLocalProcessSpawner and edgeproxy as its proxy
//!   (`journey_hub.py`).
//! - This workspace's `edgehub up`, the real binary, with its state in a temporary directory. It
//!   lives here rather than in hub-core's tests because what is under test is the journey: the
//!   same login code has to work against both hubs, and edgeload stays a plain client (it
//!   depends on no crate of the workspace; the binaries are only run).
//!
//! The Python environment is made by `scripts/ensure-pyenv.sh`, which the test command
//! (`scripts/test.sh`) runs first and exports as EDGEHUB_PYENV. Without it these tests fail; they
//! never skip. edgeproxy and edgehub are built with `cargo build -p … --bin …` into the same
//! target directory (a no-op when they are up to date).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod support;
use support::{pyenv, workspace_binary};

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
        Hub::start_with(&[])
    }

    /// A hub started with more arguments for journey_hub.py (e.g. `--ssl-cert`).
    fn start_with(extra: &[&str]) -> Hub {
        let python = pyenv().join("bin/python");
        assert!(
            python.exists(),
            "the JupyterHub test environment is missing at {}: run scripts/test.sh (or scripts/ensure-pyenv.sh) first",
            python.display()
        );
        let proxy = workspace_binary("proxy", "edgeproxy");
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/journey_hub.py");
        let mut child = Command::new(&python)
            .arg(&script)
            .arg("--proxy-command")
            .arg(&proxy)
            .args(extra)
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

/// The longest an `edgeload journey` run may take here: a few spawns, executes and stops, with
/// time to spare on a loaded machine. Beyond it the run is killed and the test fails, so a
/// journey that hangs shows as a failure, not as a test that never ends.
const RUN_LIMIT: Duration = Duration::from_secs(300);

/// Runs `edgeload journey HUB_URL ARGS` and returns its JSON report and its terminal output.
fn journey(name: &str, hub_url: &str, args: &[&str]) -> (Value, String) {
    let dir = std::env::temp_dir().join(format!("edgeload-journey-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("report.json");
    let html = dir.join("report.html");
    let (stdout, stderr) = (dir.join("stdout"), dir.join("stderr"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_edgeload"))
        .arg("journey")
        .arg(hub_url)
        .args(args)
        .arg("--quiet")
        .arg("--json")
        .arg(&json)
        .arg("--html")
        .arg(&html)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .expect("run edgeload journey");
    let began = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if began.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = format!(
        "{}{}",
        std::fs::read_to_string(&stdout).unwrap_or_default(),
        std::fs::read_to_string(&stderr).unwrap_or_default()
    );
    let Some(status) = status else {
        panic!("edgeload journey {args:?} did not end within {RUN_LIMIT:?}:\n{text}");
    };
    assert!(status.success(), "edgeload journey {args:?} failed:\n{text}");
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

/// Every user went through every phase without an error or a failure, and every execute's
/// output was checked: the report of a journey that worked, whichever hub it ran against.
fn assert_whole_journey(r: &Value, text: &str, users: u64, executes: u64) {
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
        assert_eq!(count(r, series), users, "{series}: {text}");
        assert!(r["latency"][series]["p50_us"].as_u64().unwrap() > 0, "{series}: {text}");
    }
    assert_eq!(count(r, "execute"), users * executes, "{text}");
    assert_eq!(counter(r, "executes_checked"), users * executes, "{text}");
    assert_eq!(counter(r, "users_started"), users, "{text}");
    assert_eq!(counter(r, "users_completed"), users, "{text}");
}

/// One token-mode user went through every phase once, without the server's OAuth login: the
/// token is the credential there.
fn assert_token_user_went_through_every_phase(r: &Value, text: &str) {
    for series in [
        "login",
        "spawn_request",
        "spawn_ready",
        "kernel_start",
        "ws_connect",
        "stop",
    ] {
        assert_eq!(count(r, series), 1, "{series}: {text}");
    }
    assert_eq!(count(r, "server_auth"), 0, "token users need no OAuth cookie: {text}");
}

#[test]
fn users_go_through_the_whole_journey_on_a_stock_jupyterhub() {
    let hub = Hub::start();
    let users = 3;
    let executes = 2;

    // Form login, as a browser: _xsrf cookie and field, OAuth redirects to the server.
    let (r, text) = journey(
        "form",
        &hub.url,
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
    assert_whole_journey(&r, &text, users, executes);
    assert!(r["counters"]["login_failed"] == 0 && r["counters"]["stop_failed"] == 0);
    // A spawn starts a Python process: it takes a while, whether the hub answers the request
    // at once (slow_spawn_timeout = 0) or only after the server started.
    let spawn_us = |s: &str| r["latency"][s]["p50_us"].as_u64().unwrap();
    assert!(spawn_us("spawn_request") + spawn_us("spawn_ready") > 100_000, "{text}");

    // Token mode: the admin token creates the users and a token for each; the check fails on
    // purpose, so every execute counts as wrong_output while the rest of the journey succeeds.
    let (r, text) = journey(
        "token",
        &hub.url,
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
    assert_token_user_went_through_every_phase(&r, &text);
    assert_eq!(count(&r, "execute"), 0);
    assert_eq!(r["failures"]["execute"]["wrong_output"], 2, "{text}");
    assert_eq!(counter(&r, "execute_failed"), 2);
    assert_eq!(counter(&r, "users_completed"), 0);
    assert_eq!(r["errors"]["by_kind"]["protocol"], 2);

    // A wrong password: every login is refused with 403, nothing else is attempted.
    let (r, text) = journey(
        "badpass",
        &hub.url,
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

/// The one password of the edgehub run (`auth.shared_password`): a wrong one is refused.
const EDGEHUB_PASSWORD: &str = "journey-password";

/// A running `edgehub up` (the binary), its state, log and servers' home in a temporary
/// directory; every server is a real `jupyterhub-singleuser` from the test venv. Dropping it
/// stops the servers, then the hub.
struct Edgehub {
    child: Child,
    dir: PathBuf,
    /// The URL `edgehub up` printed, e.g. `http://127.0.0.1:41234/`.
    url: String,
    /// An admin token (`api_tokens`) for the checks and the clean-up.
    token: String,
}

impl Edgehub {
    fn start() -> Edgehub {
        let singleuser = pyenv().join("bin/jupyterhub-singleuser");
        assert!(
            singleuser.exists(),
            "no jupyterhub-singleuser at {}: run scripts/test.sh (or scripts/ensure-pyenv.sh) first",
            singleuser.display()
        );
        let venv_bin = singleuser.parent().unwrap().display().to_string();
        let exe = workspace_binary("hub-core", "edgehub");
        let dir = std::env::temp_dir().join(format!("edgeload-journey-edgehub-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let token = format!("journey-admin-{}-{nanos}", std::process::id());
        let config = format!(
            r#"bind = {bind:?}
db = {db:?}
api_tokens = [{token:?}]

[auth]
shared_password = {EDGEHUB_PASSWORD:?}

[spawner]
command = [{singleuser:?}, "--ip=127.0.0.1", "--port={{port}}", {root_dir:?}, "--allow-root",
           "--KernelManager.transport=ipc"]
working_dir = {dir:?}

[spawner.environment]
HOME = {dir:?}
PATH = {path:?}
JUPYTER_RUNTIME_DIR = {runtime_dir:?}

[cull]
timeout_secs = 0
"#,
            bind = "127.0.0.1:0",
            db = dir.join("edgehub.sqlite").display().to_string(),
            singleuser = singleuser.display().to_string(),
            root_dir = format!("--ServerApp.root_dir={}", dir.display()),
            dir = dir.display().to_string(),
            // Kernels on Unix sockets: a TCP port jupyter_client picked (bind port 0, let go)
            // could be taken by another kernel before it is bound. Paths stay under 107 bytes.
            runtime_dir = dir.join("rt").display().to_string(),
            path = format!("{venv_bin}:/usr/bin:/bin"),
        );
        let config_file = dir.join("edgehub.toml");
        std::fs::write(&config_file, config).unwrap();
        let log = dir.join("edgehub.log");
        let log_file = std::fs::File::create(&log).unwrap();
        let child = Command::new(exe)
            .arg("up")
            .arg("--config")
            .arg(&config_file)
            .current_dir(&dir)
            // The log is read by people when a test fails: no colour codes in it.
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .expect("run edgehub up");
        let mut hub = Edgehub {
            child,
            dir,
            url: String::new(),
            token,
        };
        // The URL is printed once the proxy and the hub serve and the routes are in.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let printed = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(at) = printed.find("edgehub is up: open ") {
                let rest = &printed[at + "edgehub is up: open ".len()..];
                hub.url = rest.split_whitespace().next().unwrap_or_default().to_owned();
                break;
            }
            if let Ok(Some(status)) = hub.child.try_wait() {
                panic!("edgehub up exited with {status}:\n{printed}");
            }
            assert!(
                Instant::now() < deadline,
                "edgehub up did not come up in 30 s:\n{printed}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        hub
    }

    /// One call to the hub's REST API with the admin token: its status and JSON body, `None`
    /// when the hub cannot be reached. HTTP/1.0, so the answer ends with the connection.
    fn api(&self, method: &str, path: &str) -> Option<(u16, Value)> {
        let authority = self.url.strip_prefix("http://")?.trim_end_matches('/');
        let mut s = TcpStream::connect(authority).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
        let request = format!(
            "{method} {path} HTTP/1.0\r\nHost: {authority}\r\nAuthorization: token {}\r\nContent-Length: 0\r\n\r\n",
            self.token
        );
        s.write_all(request.as_bytes()).ok()?;
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).ok()?;
        let answer = String::from_utf8_lossy(&answer);
        let (head, body) = answer.split_once("\r\n\r\n")?;
        let status = head.split_whitespace().nth(1)?.parse().ok()?;
        Some((status, serde_json::from_str(body).unwrap_or(Value::Null)))
    }

    /// The users with a server that is not stopped (`GET /hub/api/users?state=active`).
    fn active_users(&self) -> Option<Vec<Value>> {
        match self.api("GET", "/hub/api/users?state=active")? {
            (200, Value::Array(users)) => Some(users),
            _ => None,
        }
    }

    /// Asks the hub to stop every server still active and waits until none is, for at most
    /// `within`; false when some were left.
    fn stop_all_servers(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let mut asked = false;
        while Instant::now() < deadline {
            let Some(active) = self.active_users() else {
                return false;
            };
            if active.is_empty() {
                return true;
            }
            if !asked {
                for user in &active {
                    let name = user["name"].as_str().unwrap_or_default();
                    for server in user["servers"].as_object().into_iter().flat_map(|s| s.keys()) {
                        let path = if server.is_empty() {
                            format!("/hub/api/users/{name}/server")
                        } else {
                            format!("/hub/api/users/{name}/servers/{server}")
                        };
                        let _ = self.api("DELETE", &path);
                    }
                }
                asked = true;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        false
    }
}

impl Drop for Edgehub {
    fn drop(&mut self) {
        // `edgehub up` leaves user servers running when it stops (the next start adopts them),
        // so a run that failed half-way must stop them itself.
        let stopped = self.stop_all_servers(Duration::from_secs(60));
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let end = Instant::now() + Duration::from_secs(15);
        while Instant::now() < end && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() || !stopped {
            let log = std::fs::read_to_string(self.dir.join("edgehub.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!(
                "edgehub up's log (last lines; servers all stopped: {stopped}; kept in {}):\n{}",
                self.dir.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

#[test]
fn a_whole_journey_over_https_and_wss() {
    // The same stock JupyterHub with its public port on TLS (a test CA's certificate, which
    // edgeproxy, as its proxy, serves): the form login, the OAuth redirects, the REST calls and
    // the kernel's WebSocket (wss://) all go through TLS, trusted through --cacert.
    let dir = std::env::temp_dir().join(format!("edgeload-journey-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ca = support::test_ca::TestCa::new(&dir);
    let hub = Hub::start_with(&[
        "--ssl-cert",
        ca.cert.to_str().unwrap(),
        "--ssl-key",
        ca.key.to_str().unwrap(),
        "--ssl-ca",
        ca.ca(),
    ]);
    assert!(hub.url.starts_with("https://"), "{}", hub.url);
    let (r, text) = journey(
        "https",
        &hub.url,
        &[
            "--cacert",
            ca.ca(),
            "--users",
            "1",
            "--password",
            &hub.password,
            "--executes",
            "1",
            "--spawn-timeout",
            "60s",
        ],
    );
    assert_whole_journey(&r, &text, 1, 1);
    assert_eq!(r["environment"]["tls"], true, "{text}");
    // Trusting another CA, the hub's certificate is refused at the first request: a tls error.
    let other = dir.join("other");
    std::fs::create_dir_all(&other).unwrap();
    let other = support::test_ca::TestCa::new(&other);
    let (r, text) = journey(
        "https-untrusted",
        &hub.url,
        &["--cacert", other.ca(), "--users", "1", "--password", &hub.password],
    );
    assert_eq!(r["failures"]["login"]["tls"], 1, "{text}");
}

#[test]
fn users_go_through_the_whole_journey_on_edgehub_up() {
    let hub = Edgehub::start();
    let users = 3;
    let executes = 2;

    // The default login, the form, exactly as against JupyterHub: edgehub's login page and its
    // `_xsrf`, its own session cookie, the edge proxy checking that cookie, and the server's
    // OAuth login through edgehub's endpoints.
    let (r, text) = journey(
        "edgehub-form",
        &hub.url,
        &[
            "--users",
            "3",
            "--users-per-second",
            "3",
            "--password",
            EDGEHUB_PASSWORD,
            "--user-prefix",
            "edgeload-form-",
            "--executes",
            "2",
            "--think-time",
            "200ms",
            "--code",
            "6*7",
            "--expect",
            "42",
            "--spawn-timeout",
            "60s",
        ],
    );
    println!("{text}");
    assert_whole_journey(&r, &text, users, executes);

    // The journey stopped what it started: no server active, each user's server gone from the
    // hub's model, and no user route left in the proxy's table.
    assert_eq!(
        hub.active_users(),
        Some(vec![]),
        "servers still active after the journey"
    );
    let (status, all) = hub.api("GET", "/hub/api/users").expect("GET /hub/api/users");
    assert_eq!(status, 200, "{all}");
    let journeyed: Vec<&Value> = all
        .as_array()
        .into_iter()
        .flatten()
        .filter(|u| u["name"].as_str().is_some_and(|n| n.starts_with("edgeload-form-")))
        .collect();
    assert_eq!(journeyed.len(), 3, "{all:#}");
    for u in journeyed {
        assert_eq!(u["servers"], serde_json::json!({}), "{u:#}");
    }
    let (status, routes) = hub.api("GET", "/hub/api/proxy").expect("GET /hub/api/proxy");
    assert_eq!(status, 200, "{routes}");
    let paths: Vec<&String> = routes.as_object().into_iter().flat_map(|m| m.keys()).collect();
    assert_eq!(paths, ["/"], "only the hub's own route is left: {routes:#}");

    // Token mode: the admin token creates a user and a token for it, and the kernel phases
    // carry that token (`Authorization: token …`) through edgehub's edge proxy, which asks the
    // hub what the token may reach before letting it into the user's server.
    let (r, text) = journey(
        "edgehub-token",
        &hub.url,
        &[
            "--users",
            "1",
            "--token",
            &hub.token,
            "--user-prefix",
            "edgeload-token-",
            "--executes",
            "2",
            "--code",
            "6*7",
            "--expect",
            "42",
            "--spawn-timeout",
            "60s",
        ],
    );
    println!("{text}");
    assert_eq!(r["failures"], serde_json::json!({}), "{text}");
    assert_eq!(r["errors"]["total"], 0, "{text}");
    assert_token_user_went_through_every_phase(&r, &text);
    assert_eq!(counter(&r, "executes_checked"), 2, "{text}");
    assert_eq!(counter(&r, "users_completed"), 1, "{text}");
    assert_eq!(
        hub.active_users(),
        Some(vec![]),
        "the token journey left a server running"
    );

    // A wrong password with `auth.shared_password` set: edgehub renders the form again with
    // 403, and every login counts as that at once, not after a time-out.
    let (r, text) = journey(
        "edgehub-badpass",
        &hub.url,
        &[
            "--users",
            "3",
            "--users-per-second",
            "10",
            "--password",
            "wrong",
            "--user-prefix",
            "edgeload-badpass-",
        ],
    );
    println!("{text}");
    assert_eq!(r["failures"], serde_json::json!({"login": {"status_403": 3}}), "{text}");
    assert_eq!(counter(&r, "login_failed"), 3);
    assert_eq!(counter(&r, "users_completed"), 0);
    assert_eq!(r["errors"]["by_kind"]["status_403"], 3);
    for series in ["login", "spawn_request", "stop"] {
        assert_eq!(count(&r, series), 0, "{series}: {text}");
    }
    let took = r["duration_s"].as_f64().expect("duration_s");
    assert!(took < 10.0, "refused logins took {took} s: {text}");
    assert_eq!(hub.active_users(), Some(vec![]), "a refused login started a server");
}

/// A hub that takes any login form (a redirect and a cookie), yet does not know the user
/// afterwards: its `GET /hub/api/user` answers 403. One request per connection.
fn start_forgetful_hub() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            let _ = reader.read_line(&mut request_line);
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((k, v)) = line.split_once(':')
                    && k.eq_ignore_ascii_case("content-length")
                {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let _ = reader.read_exact(&mut vec![0; length]);
            let (status, headers, body) = match request_line.split_whitespace().take(2).collect::<Vec<_>>()[..] {
                ["GET", "/hub/login"] => (
                    "200 OK",
                    "Set-Cookie: _xsrf=x1; Path=/hub/\r\n",
                    r#"<form><input type="hidden" name="_xsrf" value="x1"/></form>"#,
                ),
                ["POST", "/hub/login"] => (
                    "302 Found",
                    "Location: /hub/home\r\nSet-Cookie: forgetful-session=s1; Path=/\r\n",
                    "",
                ),
                _ => ("403 Forbidden", "", r#"{"status": 403}"#),
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

#[test]
fn a_login_redirect_without_a_working_session_is_no_session() {
    let url = start_forgetful_hub();
    let (r, text) = journey(
        "no-session",
        &url,
        &["--users", "2", "--users-per-second", "20", "--timeout", "5s"],
    );
    assert_eq!(r["failures"], serde_json::json!({"login": {"no_session": 2}}), "{text}");
    assert_eq!(counter(&r, "login_failed"), 2);
    assert_eq!(count(&r, "login"), 0, "{text}");
    assert_eq!(count(&r, "spawn_request"), 0, "{text}");
}
