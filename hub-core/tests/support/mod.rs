//! Test harness: a whole `edgehub up` in process (embedded proxy, hub, local spawner running the
//! real `edgehub singleuser` binary) on ports the system picks (port 0, read back), and a cookie-keeping HTTP client that talks
//! to it as a browser would (no redirects followed, so tests see each step).

#![allow(dead_code)]

pub mod jupyterhub6;
pub mod pki;
pub mod postgres;
pub mod slapd;
pub mod webdriver;
// The proxy's tests' redis-server harness, shared rather than written again.
#[path = "../../../proxy/tests/support/redis.rs"]
pub mod redis;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use config::HubConfig;
use http::{Method, StatusCode, header};
use hub_core::http_client::{self, HttpUrl};
use hub_core::up::{Overrides, Running};

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("edgehub-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A free loopback port (bound and let go: a race with other processes is possible, so callers
/// that cannot afford one retry).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The state backend the hub-core tests run on: `EDGEHUB_TEST_STATE=postgres` runs every test's
/// hub on a PostgreSQL database (a real server this test process starts), one database per test
/// directory, so a hub restarted on the same directory finds its state; unset, SQLite in it.
pub fn on_postgres() -> bool {
    match std::env::var("EDGEHUB_TEST_STATE").as_deref() {
        Ok("postgres") => true,
        Ok("sqlite") | Ok("") | Err(_) => false,
        Ok(other) => panic!("EDGEHUB_TEST_STATE={other:?}: expected sqlite or postgres"),
    }
}

/// The database a test directory's hub keeps its state in, made on first use.
pub fn postgres_for(dir: &Path) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    dir.hash(&mut h);
    let name = format!("dir{:016x}", h.finish());
    let pg = postgres::shared();
    if let Err(e) = pg.psql("postgres", &format!("CREATE DATABASE {name}"))
        && !e.contains("already exists")
    {
        panic!("cannot create database {name}: {e}");
    }
    pg.url(&name)
}

/// A fresh directory (for the shared Redis harness).
pub fn scratch_dir(name: &str) -> PathBuf {
    temp_dir(name)
}

/// A program from the Python venv that `bash scripts/test.sh` makes (scripts/ensure-pyenv.sh):
/// JupyterHub 5.5.4, jupyterhub-singleuser, jupyterhub-idle-culler, kubernetes-validate.
pub fn pyenv_bin(program: &str) -> PathBuf {
    let venv = match std::env::var_os("EDGEHUB_PYENV") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(std::env::var_os("HOME").expect("HOME or EDGEHUB_PYENV")).join(".cache/edgehub/pyenv"),
    };
    let path = venv.join("bin").join(program);
    assert!(
        path.exists(),
        "no {program} in {} — run `bash scripts/test.sh` (it creates the venv with scripts/ensure-pyenv.sh)",
        venv.display()
    );
    path
}

/// The configuration tests start from: the built-in server as every user's server, the public
/// port any free one (`TestHub` reads it back from `Running::public_url`).
pub fn test_config(dir: &Path) -> HubConfig {
    let mut config = HubConfig {
        bind: "127.0.0.1:0".to_owned(),
        db: dir.join("hub.sqlite"),
        api_tokens: vec![ADMIN_TOKEN.to_owned()],
        reconcile_interval_secs: 1,
        ..HubConfig::default()
    };
    config.spawner.command = Some(vec![
        env!("CARGO_BIN_EXE_edgehub").to_owned(),
        "singleuser".to_owned(),
        "--port".to_owned(),
        "{port}".to_owned(),
    ]);
    config.cull.timeout_secs = 0;
    if on_postgres() {
        config.state.url = Some(postgres_for(dir));
    }
    config
}

/// A public port a test keeps across hub restarts: bound once, and each hub started with
/// `overrides()` serves a clone of it, so the port is never free in between for another process
/// to take. (Connections made while no hub runs wait in its backlog.)
pub struct KeptPort(std::net::TcpListener);

impl KeptPort {
    pub fn new() -> KeptPort {
        KeptPort(std::net::TcpListener::bind("127.0.0.1:0").unwrap())
    }

    pub fn overrides(&self) -> Overrides {
        Overrides {
            public_listener: Some(self.0.try_clone().unwrap()),
            ..Overrides::default()
        }
    }
}

pub struct TestHub {
    pub running: Running,
    /// The public port, as bound.
    pub port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl TestHub {
    pub async fn start(config: HubConfig) -> TestHub {
        TestHub::start_with(config, Default::default()).await
    }

    /// As `start`, with parts of the hub replaced.
    pub async fn start_with(config: HubConfig, overrides: Overrides) -> TestHub {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let running = hub_core::up::start(config, overrides, async {
            let _ = rx.await;
        })
        .await
        .expect("edgehub up starts");
        let port = HttpUrl::parse(&running.public_url)
            .ok()
            .and_then(|url| url.authority.rsplit_once(':')?.1.parse().ok())
            .unwrap_or_else(|| panic!("no port in the public URL {}", running.public_url));
        TestHub {
            running,
            port,
            stop: Some(tx),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn client(&self) -> Client {
        Client {
            base: format!("http://127.0.0.1:{}", self.port),
            cookies: BTreeMap::new(),
            token: None,
        }
    }

    pub fn admin(&self) -> Client {
        self.with_token(ADMIN_TOKEN)
    }

    /// A client sending `Authorization: token <token>` on every request.
    pub fn with_token(&self, token: &str) -> Client {
        let mut c = self.client();
        c.token = Some(token.to_owned());
        c
    }

    /// Logs `user` in through the login form, as a browser would.
    pub async fn login(&self, user: &str) -> Client {
        let mut c = self.client();
        let page = c.get("/hub/login").await;
        assert_eq!(page.status, StatusCode::OK, "login page");
        let xsrf = c.cookies.get("_xsrf").cloned().expect("the login page sets _xsrf");
        let r = c
            .post_form("/hub/login", &[("username", user), ("password", ""), ("_xsrf", &xsrf)])
            .await;
        assert_eq!(r.status, StatusCode::FOUND, "login of {user}: {}", r.text());
        assert!(c.cookies.contains_key("edgehub-token"), "login sets the session cookie");
        c
    }

    /// Stops every user server, then the hub and its proxy: a test leaves nothing running.
    pub async fn stop(self) {
        hub_core::lifecycle::stop_all(&self.running.hub).await;
        self.stop_keeping_servers().await;
    }

    /// Stops the hub and its embedded proxy as Ctrl-C does (user servers keep running), and
    /// waits until both have closed their listeners.
    pub async fn stop_keeping_servers(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(Duration::from_secs(15), self.running.closed())
            .await
            .expect("the hub and its proxy close their listeners");
    }
}

impl Drop for TestHub {
    /// A test that failed before `stop` would leave its local servers running (they are made to
    /// outlive the hub, for restarts): end them, so a failing test leaves no process behind.
    fn drop(&mut self) {
        if self.stop.is_none() {
            return;
        }
        for user in self.running.hub.users().values() {
            for server in user.servers.values().filter(|s| s.phase().is_active()) {
                if let Some(pid) = server.record.spawner_state["pid"].as_i64().filter(|p| *p > 1) {
                    // SAFETY: kill has no memory-safety preconditions.
                    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
                }
            }
        }
    }
}

/// The token in the answer to `POST /hub/api/users/{name}/tokens`, which must be 201.
pub fn created_token(r: Reply) -> String {
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    r.json()["token"].as_str().expect("the new token").to_owned()
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    pub fn location(&self) -> String {
        self.headers
            .get(header::LOCATION)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }
}

pub struct Client {
    pub base: String,
    pub cookies: BTreeMap<String, String>,
    pub token: Option<String>,
}

impl Client {
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        extra: &[(header::HeaderName, String)],
    ) -> Reply {
        let url = HttpUrl::parse(&format!("{}{path}", self.base)).unwrap();
        let mut headers: Vec<(header::HeaderName, String)> = extra.to_vec();
        if !self.cookies.is_empty() {
            let line = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
            headers.push((header::COOKIE, line));
        }
        if let Some(t) = &self.token {
            headers.push((header::AUTHORIZATION, format!("token {t}")));
        }
        if let Some(x) = self.cookies.get("_xsrf") {
            headers.push((header::HeaderName::from_static("x-xsrftoken"), x.clone()));
        }
        let r = http_client::call(method, &url, &headers, body, Duration::from_secs(30))
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        for c in r.headers.get_all(header::SET_COOKIE) {
            let c = c.to_str().unwrap();
            let (pair, attrs) = c.split_once(';').unwrap_or((c, ""));
            let (k, v) = pair.split_once('=').unwrap();
            if attrs.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_owned(), v.to_owned());
            }
        }
        Reply {
            status: r.status,
            headers: r.headers,
            body: r.body,
        }
    }

    pub async fn get(&mut self, path: &str) -> Reply {
        self.send(Method::GET, path, None, &[]).await
    }

    pub async fn post_form(&mut self, path: &str, form: &[(&str, &str)]) -> Reply {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        self.send(
            Method::POST,
            path,
            Some(body.into_bytes()),
            &[(header::CONTENT_TYPE, "application/x-www-form-urlencoded".to_owned())],
        )
        .await
    }

    pub async fn api(&mut self, method: Method, path: &str, body: Option<serde_json::Value>) -> Reply {
        self.send(
            method,
            &format!("/hub/api{path}"),
            body.map(|b| b.to_string().into_bytes()),
            &[],
        )
        .await
    }
}

/// Follows redirects (same origin only) and returns the last reply and the paths visited.
pub async fn follow(client: &mut Client, path: &str, hops: usize) -> (Reply, Vec<String>) {
    let mut path = path.to_owned();
    let mut visited = vec![path.clone()];
    for _ in 0..hops {
        let r = client.get(&path).await;
        if r.status != StatusCode::FOUND && r.status != StatusCode::SEE_OTHER {
            return (r, visited);
        }
        let location = r.location();
        path = match location.strip_prefix(&client.base) {
            Some(rest) => rest.to_owned(),
            None => location,
        };
        assert!(path.starts_with('/'), "redirected off site: {path}");
        visited.push(path.clone());
    }
    panic!("more than {hops} redirects: {visited:?}");
}

/// Starts `user`'s default server through `client` (an admin's, or one the API lets start it)
/// and follows its progress until it is ready.
pub async fn start_server(client: &mut Client, user: &str) {
    let last = spawn_to_the_end(client, user).await;
    assert_eq!(last["ready"], serde_json::Value::Bool(true), "{user}'s server: {last}");
}

/// Starts `user`'s default server through `client` and follows its progress to the end: its
/// last event, `ready` or `failed`.
pub async fn spawn_to_the_end(client: &mut Client, user: &str) -> serde_json::Value {
    let r = client
        .api(
            Method::POST,
            &format!("/users/{user}/server"),
            Some(serde_json::json!({})),
        )
        .await;
    assert!(r.status.is_success(), "starting {user}'s server: {}", r.text());
    let events = follow_progress(client, &format!("/hub/api/users/{user}/server/progress")).await;
    events.last().cloned().unwrap_or_default()
}

/// Reads a progress stream to its end and returns its events.
pub async fn follow_progress(client: &mut Client, path: &str) -> Vec<serde_json::Value> {
    let r = client.get(path).await;
    assert_eq!(r.status, StatusCode::OK, "progress stream {path}: {}", r.text());
    assert_eq!(r.headers[header::CONTENT_TYPE], "text/event-stream");
    r.text()
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

/// Polls `check` every 100 ms until it holds, or panics after `limit` with `what`.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("not within {limit:?}: {what}");
}

pub fn pid_alive(pid: i64) -> bool {
    unsafe { libc::kill(pid as i32, 0) == 0 }
}

/// The built-in server's own page, as the browser shows it through the proxy: its heading names
/// `user`, and its WebSocket echo came back through the proxy's tunnel.
pub async fn assert_builtin_server_page(browser: &webdriver::Browser, user: &str, timeout: Duration) {
    let heading = browser.wait_for("h1", timeout).await.unwrap().text().await.unwrap();
    assert_eq!(heading, format!("edgehub built-in server for {user}"));
    let echoed = browser.wait_for_text("#ws", "came back", timeout).await;
    assert!(
        echoed.as_ref().is_ok_and(|t| t.contains("\"hello\" came back")),
        "WebSocket through the proxy: {echoed:?}"
    );
}

/// Starts `command` so that it gets `signal` when this test process ends, however it ends (a
/// server left behind by a failed or killed test would hold its port and its files). The
/// kernel sends it when the *thread* that forked exits (`PR_SET_PDEATHSIG`), so the fork is
/// made by a thread that lives as long as the process.
pub fn spawn_tied_to_test(
    mut command: std::process::Command,
    signal: libc::c_int,
) -> std::io::Result<std::process::Child> {
    use std::sync::mpsc::{Sender, channel};
    use std::sync::{Mutex, OnceLock};
    type Request = (std::process::Command, Sender<std::io::Result<std::process::Child>>);
    static SPAWNER: OnceLock<Mutex<Sender<Request>>> = OnceLock::new();
    // SAFETY: prctl in the child before exec, async-signal-safe.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, signal);
            Ok(())
        });
    }
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = channel::<Request>();
        std::thread::spawn(move || {
            for (mut command, reply) in rx {
                let _ = reply.send(command.spawn());
            }
        });
        Mutex::new(tx)
    });
    let (reply, answer) = channel();
    spawner.lock().unwrap().send((command, reply)).expect("spawner thread");
    answer.recv().expect("spawner thread")
}
