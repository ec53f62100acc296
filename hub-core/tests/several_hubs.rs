//! Several hubs on one PostgreSQL database, all active: a real PostgreSQL and a real
//! redis-server (the embedded proxies' shared route store) started by the test, real server
//! processes. What a user or an operator sees: a start raced through two hubs spawns once, each
//! hub shows and stops the other's servers, progress and logins work on any hub, and a hub
//! SIGKILLed in the middle of a spawn storm leaves nothing unfinished, doubled or orphaned.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use config::HubConfig;
use http::{Method, StatusCode};
use serde_json::json;
use support::postgres::Postgres;
use support::redis::RedisServer;
use support::*;

/// A hub of the pair, in this process, sharing `url` and the route store.
fn replica_config(dir: &Path, url: &str, redis: &RedisServer) -> HubConfig {
    let mut config = test_config(dir);
    config.state.url = Some(url.to_owned());
    config.proxy.storage_backend = Some("redis".into());
    config.proxy.storage_url = Some(format!("unix://{}", redis.socket.display()));
    config
}

/// The hub's own listener, not the public proxy: with one route table for both proxies, `/hub/`
/// leads to whichever hub set that route last.
fn direct(hub: &TestHub, token: Option<&str>) -> Client {
    Client {
        base: format!("http://{}", hub.running.hub_addr),
        cookies: BTreeMap::new(),
        token: token.map(str::to_owned),
    }
}

/// Server processes of `user` that either hub started (known by the environment the hub gives).
fn server_processes(user: &str, api_urls: &[String]) -> Vec<u32> {
    processes_with(&format!("JUPYTERHUB_USER={user}"), api_urls)
}

/// Live processes whose environment holds `marker` (`NAME=value`) and names one of `api_urls`
/// as `JUPYTERHUB_API_URL`: what one of these hubs started.
fn processes_with(marker: &str, api_urls: &[String]) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        let vars: Vec<&[u8]> = environ.split(|b| *b == 0).collect();
        let has = |kv: &str| vars.contains(&kv.as_bytes());
        if has(marker)
            && api_urls.iter().any(|api| has(&format!("JUPYTERHUB_API_URL={api}")))
            && std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
        {
            found.push(pid);
        }
    }
    found
}

async fn server_model(client: &mut Client, user: &str) -> serde_json::Value {
    let r = client.api(Method::GET, &format!("/users/{user}"), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    r.json()["servers"][""].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hubs_on_one_database_act_as_one() {
    let pg = support::postgres::shared();
    let url = pg.database();
    let redis = RedisServer::start();
    let a = TestHub::start(replica_config(&temp_dir("pair-a"), &url, &redis)).await;
    let b = TestHub::start(replica_config(&temp_dir("pair-b"), &url, &redis)).await;
    let apis: Vec<String> = [&a, &b]
        .iter()
        .map(|h| format!("http://{}/hub/api", h.running.hub_addr))
        .collect();
    let (mut on_a, mut on_b) = (direct(&a, Some(ADMIN_TOKEN)), direct(&b, Some(ADMIN_TOKEN)));

    // A user made through A exists on B.
    let r = on_a.api(Method::POST, "/users/alice", None).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    eventually(Duration::from_secs(2), "B knows alice", || {
        let mut on_b = direct(&b, Some(ADMIN_TOKEN));
        async move { on_b.api(Method::GET, "/users/alice", None).await.status == StatusCode::OK }
    })
    .await;

    // The same start through both at once: both accept it, one server runs.
    let (ra, rb) = tokio::join!(
        on_a.api(Method::POST, "/users/alice/server", None),
        on_b.api(Method::POST, "/users/alice/server", None)
    );
    for r in [&ra, &rb] {
        assert!(
            matches!(r.status, StatusCode::CREATED | StatusCode::ACCEPTED),
            "{}: {}",
            r.status,
            r.text()
        );
    }
    let mut follow_b = direct(&b, Some(ADMIN_TOKEN));
    let events = follow_progress(&mut follow_b, "/hub/api/users/alice/server/progress").await;
    assert!(
        events.last().is_some_and(|e| e["ready"] == true),
        "B's progress stream ends ready, whichever hub spawned: {events:?}"
    );
    for client in [&mut on_a, &mut on_b] {
        let model = server_model(client, "alice").await;
        assert_eq!(model["ready"], true, "{model}");
        assert_eq!(model["url"], "/user/alice/");
    }
    assert_eq!(server_processes("alice", &apis).len(), 1, "spawned once");

    // Through either public proxy, the server answers (one shared route table).
    let mut alice_a = a.login("alice").await;
    let r = alice_a.get("/user/alice/").await;
    assert_eq!(r.status, StatusCode::OK, "through A's proxy: {}", r.text());

    // A login made on A is good on B's proxy too (the session is in the shared database).
    let mut alice_b = b.client();
    alice_b.cookies = alice_a.cookies.clone();
    let r = alice_b.get("/user/alice/").await;
    assert_eq!(r.status, StatusCode::OK, "A's login on B's proxy: {}", r.text());

    // Bob starts on B; A follows the spawn's progress from its own API.
    on_b.api(Method::POST, "/users/bob", None).await;
    let r = on_b.api(Method::POST, "/users/bob/server", None).await;
    assert!(r.status.is_success(), "{}", r.text());
    let events = follow_progress(&mut on_a, "/hub/api/users/bob/server/progress").await;
    assert!(events.last().is_some_and(|e| e["ready"] == true), "{events:?}");
    let r = on_a.api(Method::GET, "/users", None).await;
    let users = r.json();
    let running: Vec<&str> = users
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["servers"][""]["ready"] == true)
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(running, ["alice", "bob"], "A lists B's server too");

    // A stop through B stops what was started through A, and A sees it.
    let spawned_by = server_processes("alice", &apis);
    let r = on_b.api(Method::DELETE, "/users/alice/server", None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    assert!(server_processes("alice", &apis).is_empty(), "{spawned_by:?} stopped");
    eventually(Duration::from_secs(2), "A sees alice's server stopped", || {
        let mut on_a = direct(&a, Some(ADMIN_TOKEN));
        async move { server_model(&mut on_a, "alice").await.is_null() }
    })
    .await;
    let r = alice_a.get("/user/alice/").await;
    assert_ne!(r.status, StatusCode::OK, "no route left to the stopped server");

    // One of them runs the background work, not both.
    let mut background = Vec::new();
    for client in [&mut on_a, &mut on_b] {
        let info = client.api(Method::GET, "/info", None).await.json();
        background.push(info["replica"]["background"] == true);
    }
    assert_eq!(background.iter().filter(|b| **b).count(), 1, "{background:?}");

    on_a.api(Method::DELETE, "/users/bob/server", None).await;
    b.stop().await;
    a.stop().await;
    assert!(server_processes("bob", &apis).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_with_sqlite_state_is_alone_and_says_how_to_run_several() {
    let dir = temp_dir("alone");
    let mut config = test_config(&dir);
    config.state.url = None;
    let first = TestHub::start(config.clone()).await;
    let err = hub_core::up::start(config, Default::default(), std::future::pending())
        .await
        .err()
        .expect("a second hub on the same SQLite file is refused")
        .to_string();
    assert!(
        err.contains("in use by another edgehub") && err.contains("state.url"),
        "{err}"
    );
    first.stop().await;
}

/// An `edgehub up` process, so that it can be SIGKILLed or restarted.
struct HubProcess {
    child: Child,
    dir: std::path::PathBuf,
    /// The hub's own listener.
    hub: String,
    /// The public URL it printed (its embedded proxy's, or `bind` with an external proxy).
    public: String,
}

impl HubProcess {
    /// Runs `edgehub up` in `dir` with `config` (TOML) and waits until it says it is up. The
    /// hub's own address is the one it logs as bound (`hub_bind` may say port 0).
    fn start(dir: &Path, config: &str) -> HubProcess {
        std::fs::write(dir.join("edgehub.toml"), config).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_edgehub"))
            .args(["up", "--config", "edgehub.toml"])
            .current_dir(dir)
            .env("EDGEHUB_LOG_LEVEL", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run edgehub up");
        // Both streams to `hub.log` (kept with the test's directory), and each line to here.
        let (tx, rx) = std::sync::mpsc::channel();
        let log = std::sync::Arc::new(std::sync::Mutex::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("hub.log"))
                .unwrap(),
        ));
        let stdout: Box<dyn std::io::Read + Send> = Box::new(child.stdout.take().unwrap());
        let stderr: Box<dyn std::io::Read + Send> = Box::new(child.stderr.take().unwrap());
        for stream in [stdout, stderr] {
            let (tx, log) = (tx.clone(), log.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = writeln!(log.lock().unwrap(), "{line}");
                    let _ = tx.send(line);
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut hub = None;
        while Instant::now() < deadline {
            let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) else {
                continue;
            };
            if let Some(addr) = line
                .split_once("the hub listens on ")
                .and_then(|(_, rest)| rest.split_whitespace().next())
            {
                hub = Some(format!("http://{addr}"));
            }
            if let Some((_, url)) = line.split_once("edgehub is up: open ") {
                return HubProcess {
                    child,
                    dir: dir.to_owned(),
                    hub: hub.expect("the hub logs its address before it says it is up"),
                    public: url.trim().trim_end_matches('/').to_owned(),
                };
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "edgehub up did not start: {}",
            std::fs::read_to_string(dir.join("hub.log")).unwrap_or_default()
        );
    }

    /// As an upgrade does: SIGTERM, wait for the exit, start again on the same configuration.
    fn restart(&mut self) {
        // SAFETY: signalling a child this value owns.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().unwrap();
        assert!(status.success(), "edgehub up exited with {status} on SIGTERM");
        let config = std::fs::read_to_string(self.dir.join("edgehub.toml")).unwrap();
        *self = HubProcess::start(&self.dir.clone(), &config);
    }

    fn client(&self) -> Client {
        Client {
            base: self.hub.clone(),
            cookies: BTreeMap::new(),
            token: Some(ADMIN_TOKEN.to_owned()),
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The storm's hubs: embedded proxies on one Redis route table, servers slow to answer.
fn storm_config(url: &str, redis: &RedisServer) -> String {
    format!(
        r#"bind = "127.0.0.1:0"
hub_bind = "127.0.0.1:0"
api_tokens = ["{ADMIN_TOKEN}"]
reconcile_interval_secs = 1

[state]
url = "{url}"

[proxy]
storage_backend = "redis"
storage_url = "unix://{socket}"

# Each server takes half a second to answer, so that spawns are in flight when a hub dies.
[spawner]
command = ["sh", "-c", "sleep 0.5; exec {exe} singleuser --port {{port}}"]
http_timeout_secs = 30
"#,
        socket = redis.socket.display(),
        exe = env!("CARGO_BIN_EXE_edgehub"),
    )
}

/// Asks `hub` to start `user`'s server; `None` if the hub did not answer (it is dead).
async fn try_start(hub: &str, user: &str) -> Option<StatusCode> {
    let url = hub_core::http_client::HttpUrl::parse(&format!("{hub}/hub/api/users/{user}/server")).ok()?;
    let auth = [(http::header::AUTHORIZATION, format!("token {ADMIN_TOKEN}"))];
    hub_core::http_client::call(Method::POST, &url, &auth, None, Duration::from_secs(30))
        .await
        .ok()
        .map(|r| r.status)
}

async fn background_holder(hub: &HubProcess) -> bool {
    let r = hub.client().api(Method::GET, "/info", None).await;
    r.status == StatusCode::OK && r.json()["replica"]["background"] == true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_killed_in_a_spawn_storm_leaves_every_spawn_finished_once() {
    const USERS: usize = 200;
    let pg = Postgres::start();
    let url = pg.database();
    let redis = RedisServer::start();
    // A first, so it holds the background lease when it dies.
    let mut a = HubProcess::start(&temp_dir("storm-a"), &storm_config(&url, &redis));
    eventually(Duration::from_secs(5), "A runs the background work", || {
        background_holder(&a)
    })
    .await;
    let b = HubProcess::start(&temp_dir("storm-b"), &storm_config(&url, &redis));
    let apis = vec![format!("{}/hub/api", a.hub), format!("{}/hub/api", b.hub)];
    let names: Vec<String> = (0..USERS).map(|i| format!("u{i:03}")).collect();
    let r = b
        .client()
        .api(Method::POST, "/users", Some(json!({ "usernames": names })))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());

    // Every user's start goes to A or B in turn, 16 at a time; a start A cannot take (it died)
    // is made again through B, as a load balancer's retry would.
    let starts = {
        let (a_base, b_base) = (a.hub.clone(), b.hub.clone());
        let names = names.clone();
        tokio::spawn(async move {
            use futures_util::StreamExt;
            futures_util::stream::iter(names.into_iter().enumerate())
                .map(|(i, name)| {
                    let first = if i % 2 == 0 { a_base.clone() } else { b_base.clone() };
                    let b_base = b_base.clone();
                    async move {
                        // As a client does: 429 (too many spawns at once) is tried again a
                        // second later, and a hub that does not answer is replaced by the other.
                        let mut answers = Vec::new();
                        let mut base = first;
                        for _ in 0..120 {
                            let answer = try_start(&base, &name).await;
                            // 400: already running (a retry after the first hub took it and died).
                            if answer.is_some_and(|s| s.is_success() || s == StatusCode::BAD_REQUEST) {
                                return;
                            }
                            if answer.is_none() {
                                base = b_base.clone();
                            }
                            answers.push(answer);
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                        panic!("{name}'s start was refused through both hubs: {answers:?}");
                    }
                })
                .buffer_unordered(16)
                .collect::<Vec<()>>()
                .await;
        })
    };

    // Half-way through, A is SIGKILLed.
    let ready = |hub: &HubProcess| {
        let mut c = hub.client();
        async move {
            let r = c.api(Method::GET, "/users", None).await;
            if r.status != StatusCode::OK {
                return 0;
            }
            r.json().as_array().map_or(0, |users| {
                users.iter().filter(|u| u["servers"][""]["ready"] == true).count()
            })
        }
    };
    eventually(Duration::from_secs(120), "half the servers ready", || async {
        ready(&b).await >= USERS / 2
    })
    .await;
    a.kill();
    let killed = Instant::now();

    // B takes the background work over within 5 s, and its reconcile repairs the shared route
    // table: `/hub/` led to A (the last to reconcile), and through B's proxy it works again.
    eventually(Duration::from_secs(5), "B runs the background work", || {
        background_holder(&b)
    })
    .await;
    let took_over = killed.elapsed();
    eventually(
        Duration::from_secs(5).saturating_sub(killed.elapsed()),
        "the login page through B's proxy",
        || async {
            let mut browser = Client {
                base: b.public.clone(),
                cookies: BTreeMap::new(),
                token: None,
            };
            browser.get("/hub/login").await.status == StatusCode::OK
        },
    )
    .await;

    starts.await.expect("every start was accepted by a hub");
    eventually(Duration::from_secs(120), "every server ready through B", || async {
        ready(&b).await == USERS
    })
    .await;

    // Each user has exactly one server process: none spawned twice, none orphaned.
    let mut doubled = Vec::new();
    let mut total = 0;
    for name in &names {
        let pids = server_processes(name, &apis);
        total += pids.len();
        if pids.len() != 1 {
            doubled.push((name.clone(), pids));
        }
    }
    assert!(doubled.is_empty(), "users without exactly one server: {doubled:?}");
    assert_eq!(total, USERS);
    eprintln!("B took the background work over {took_over:?} after A was killed");

    // Cleaning up through B stops every server, A's included.
    let mut c = b.client();
    for name in &names {
        c.api(Method::DELETE, &format!("/users/{name}/server"), None).await;
    }
    let left: usize = names.iter().map(|n| server_processes(n, &apis).len()).sum();
    assert_eq!(left, 0, "every server stopped");
}

/// nginx in front of the hub replicas, as a Kubernetes Service is: a request to a replica that
/// is not listening (restarting) goes to the other. Debian's `nginx-light`, installed by the test
/// command; one process, gone with the test.
struct HubService {
    child: Child,
    port: u16,
}

impl HubService {
    /// nginx on a free port in front of `hubs`. nginx must be told its port (it cannot bind 0
    /// and say which it got), so one that another process took meanwhile (nginx then exits at
    /// once) is tried again with another.
    fn start(dir: &Path, hubs: &[u16]) -> HubService {
        for _ in 0..5 {
            if let Some(service) = HubService::try_start(dir, hubs, free_port()) {
                return service;
            }
        }
        panic!(
            "nginx did not start: {}",
            std::fs::read_to_string(dir.join("nginx.log")).unwrap_or_default()
        );
    }

    fn try_start(dir: &Path, hubs: &[u16], port: u16) -> Option<HubService> {
        let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("nginx not found: run the test command (scripts/test.sh), which installs nginx-light");
        let servers: String = hubs
            .iter()
            .map(|p| format!("server 127.0.0.1:{p} max_fails=0; "))
            .collect();
        let d = dir.display();
        let conf = format!(
            "daemon off; master_process off; pid {d}/nginx.pid; error_log {d}/nginx.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  upstream hubs {{ {servers} }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://hubs;
      proxy_next_upstream error timeout non_idempotent;
      proxy_set_header Host $http_host;
      proxy_buffering off;
      proxy_read_timeout 3600s;
    }}
  }}
}}
"
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let mut command = Command::new(nginx);
        command
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .args(["-e", &format!("{d}/nginx.log")])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut service = HubService {
            child: spawn_tied_to_test(command, libc::SIGTERM).expect("start nginx"),
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            // Gone: it could not bind the port. (A connection alone might reach whoever took it.)
            if service.child.try_wait().unwrap().is_some() {
                return None;
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                std::thread::sleep(Duration::from_millis(50));
                if service.child.try_wait().unwrap().is_none() {
                    return Some(service);
                }
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = service.child.kill();
        None
    }
}

impl Drop for HubService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An edgeproxy (the library, as the binary runs it) in this process, with an empty table: the
/// one public front both hubs drive over its admin API. Returns its public and admin ports.
async fn external_proxy() -> (u16, u16, tokio::sync::oneshot::Sender<()>) {
    let config = config::ProxyConfig {
        public: config::Listen::Tcp {
            host: "127.0.0.1".into(),
            port: 0,
        },
        api: config::Listen::Tcp {
            host: "127.0.0.1".into(),
            port: 0,
        },
        auth_token: Some("proxy-admin-token".into()),
        ..config::ProxyConfig::default()
    };
    let bound = proxy::server::bind_with(&config, proxy::server::Prebound::default())
        .await
        .expect("the proxy binds");
    let ports = (bound.public_addr().unwrap().port(), bound.api_addr().unwrap().port());
    let proxy = proxy::Proxy::new(bound.config()).unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = bound
            .serve(proxy, async {
                let _ = rx.await;
            })
            .await;
    });
    (ports.0, ports.1, tx)
}

/// One request as a client makes it: the status, or why there was none.
async fn fetch(method: Method, url: &str, token: Option<&str>) -> Result<(StatusCode, Option<u64>), String> {
    let target = hub_core::http_client::HttpUrl::parse(url).map_err(|e| e.to_string())?;
    let auth: Vec<_> = token
        .map(|t| (http::header::AUTHORIZATION, format!("token {t}")))
        .into_iter()
        .collect();
    let r = hub_core::http_client::call(method, &target, &auth, None, Duration::from_secs(30))
        .await
        .map_err(|e| e.to_string())?;
    let retry_after = r
        .headers
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok()?.parse().ok());
    Ok((r.status, retry_after))
}

/// An API call through the proxy; a 503 with `Retry-After` is tried again after it, as clients
/// do (and counted). Anything else unexpected is a failure, described.
async fn api_call(method: Method, url: &str, ok: &[StatusCode], retried: &AtomicUsize) -> Result<StatusCode, String> {
    for _ in 0..5 {
        match fetch(method.clone(), url, Some(ADMIN_TOKEN)).await {
            Ok((status, _)) if ok.contains(&status) => return Ok(status),
            Ok((StatusCode::SERVICE_UNAVAILABLE, Some(after))) => {
                retried.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_secs(after.min(2))).await;
            }
            Ok((status, _)) => return Err(format!("{method} {url}: {status}")),
            Err(e) => return Err(format!("{method} {url}: {e}")),
        }
    }
    Err(format!("{method} {url}: still 503 after 5 tries"))
}

/// Polls a user's model (admin API at `url`) until `done` holds, for at most 30 s.
async fn wait_for_model(url: &str, done: impl Fn(&serde_json::Value) -> bool, what: &str) -> Result<(), String> {
    let target = hub_core::http_client::HttpUrl::parse(url).map_err(|e| e.to_string())?;
    let auth = [(http::header::AUTHORIZATION, format!("token {ADMIN_TOKEN}"))];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = hub_core::http_client::call(Method::GET, &target, &auth, None, Duration::from_secs(30))
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        if r.status != StatusCode::OK {
            return Err(format!("GET {url}: {}", r.status));
        }
        let model: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
        if done(&model) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{url} not {what} within 30 s: {model}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_hubs_restarted_one_at_a_time_under_load_fail_no_request() {
    const USERS: usize = 6;
    let pg = support::postgres::shared();
    let url = pg.database();
    let redis = RedisServer::start();
    let (public, api, _proxy) = external_proxy().await;
    let (port_a, port_b) = (free_port(), free_port());
    let service = HubService::start(&temp_dir("rolling-lb"), &[port_a, port_b]);
    let config = |hub_port: u16| {
        format!(
            r#"bind = "127.0.0.1:{public}"
hub_bind = "127.0.0.1:{hub_port}"
hub_connect_url = "http://127.0.0.1:{lb}"
api_tokens = ["{ADMIN_TOKEN}"]
reconcile_interval_secs = 1

[state]
url = "{url}"

[proxy]
api_url = "http://127.0.0.1:{api}"
api_token = "proxy-admin-token"

[session]
redis_url = "unix://{socket}"

[spawner]
command = ["{exe}", "singleuser", "--port", "{{port}}"]
"#,
            lb = service.port,
            socket = redis.socket.display(),
            exe = env!("CARGO_BIN_EXE_edgehub"),
        )
    };
    let mut a = HubProcess::start(&temp_dir("rolling-a"), &config(port_a));
    let mut b = HubProcess::start(&temp_dir("rolling-b"), &config(port_b));
    let front = format!("http://127.0.0.1:{public}");
    let retried = Arc::new(AtomicUsize::new(0));

    // Users with running servers, made through the proxy (and so through either hub).
    let names: Vec<String> = (0..USERS).map(|i| format!("steady{i}")).collect();
    let users = json!({ "usernames": names });
    let r = a.client().api(Method::POST, "/users", Some(users)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    for name in &names {
        api_call(
            Method::POST,
            &format!("{front}/hub/api/users/{name}/server"),
            &[StatusCode::CREATED, StatusCode::ACCEPTED],
            &retried,
        )
        .await
        .unwrap();
    }
    for name in &names {
        let url = format!("{front}/user/{name}/api/status");
        eventually(Duration::from_secs(30), "every server up", || {
            let url = url.clone();
            async move { matches!(fetch(Method::GET, &url, None).await, Ok((StatusCode::OK, _))) }
        })
        .await;
    }

    // The steady load: each user's server and the hub's API and pages, through the proxy; and
    // one user's server started and stopped again and again.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let done = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for name in names.clone() {
        let (front, stop, failures, done, retried) = (
            front.clone(),
            stop.clone(),
            failures.clone(),
            done.clone(),
            retried.clone(),
        );
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let server = format!("{front}/user/{name}/api/status");
                match fetch(Method::GET, &server, None).await {
                    Ok((StatusCode::OK, _)) => {}
                    other => failures.lock().unwrap().push(format!("GET {server}: {other:?}")),
                }
                let user = format!("{front}/hub/api/users/{name}");
                if let Err(e) = api_call(Method::GET, &user, &[StatusCode::OK], &retried).await {
                    failures.lock().unwrap().push(e);
                }
                let login = format!("{front}/hub/login");
                match fetch(Method::GET, &login, None).await {
                    Ok((StatusCode::OK, _)) => {}
                    other => failures.lock().unwrap().push(format!("GET {login}: {other:?}")),
                }
                done.fetch_add(3, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    let churned = Arc::new(AtomicUsize::new(0));
    {
        let (front, stop, failures, churned, retried) = (
            front.clone(),
            stop.clone(),
            failures.clone(),
            churned.clone(),
            retried.clone(),
        );
        a.client().api(Method::POST, "/users/churn", None).await;
        load.push(tokio::spawn(async move {
            let server = format!("{front}/hub/api/users/churn/server");
            let user = format!("{front}/hub/api/users/churn");
            while !stop.load(Ordering::Relaxed) {
                let cycle = async {
                    api_call(
                        Method::POST,
                        &server,
                        &[StatusCode::CREATED, StatusCode::ACCEPTED],
                        &retried,
                    )
                    .await?;
                    wait_for_model(&user, |m| m["servers"][""]["ready"] == true, "ready").await?;
                    api_call(
                        Method::DELETE,
                        &server,
                        &[StatusCode::NO_CONTENT, StatusCode::ACCEPTED],
                        &retried,
                    )
                    .await?;
                    wait_for_model(&user, |m| m["servers"][""].is_null(), "stopped").await
                };
                match cycle.await {
                    Ok(()) => {
                        churned.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => failures.lock().unwrap().push(e),
                }
            }
        }));
    }

    // The rolling restart: A, then B, each back before the next goes.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = done.load(Ordering::Relaxed);
    tokio::task::block_in_place(|| a.restart());
    tokio::time::sleep(Duration::from_secs(2)).await;
    tokio::task::block_in_place(|| b.restart());
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    let during = done.load(Ordering::Relaxed) - before;
    let failures = failures.lock().unwrap().clone();
    eprintln!(
        "{during} requests during the restarts, {} start/stop cycles, {} retried 503s",
        churned.load(Ordering::Relaxed),
        retried.load(Ordering::Relaxed)
    );
    assert!(failures.is_empty(), "{} failed: {failures:#?}", failures.len());
    assert!(during > 300, "the load ran throughout ({during} requests)");
    assert!(
        churned.load(Ordering::Relaxed) >= 2,
        "servers were started and stopped meanwhile"
    );

    for name in names.iter().chain([&"churn".to_owned()]) {
        fetch(
            Method::DELETE,
            &format!("{front}/hub/api/users/{name}/server"),
            Some(ADMIN_TOKEN),
        )
        .await
        .ok();
    }
    drop(service);
    let _ = (pg, &mut a, &mut b);
}

/// A managed service runs once across the hubs, on the one holding the background lease, and
/// moves to the other when that hub stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_managed_service_runs_once_across_hubs_and_moves_with_the_lease() {
    let pg = support::postgres::shared();
    let url = pg.database();
    let redis = RedisServer::start();
    let with_service = |name: &str| {
        let mut config = replica_config(&temp_dir(name), &url, &redis);
        config.services = vec![toml::from_str("name = \"keeper\"\ncommand = [\"sleep\", \"600\"]").unwrap()];
        config
    };
    let a = TestHub::start(with_service("service-a")).await;
    let b = TestHub::start(with_service("service-b")).await;
    let api = |hub: &TestHub| vec![format!("http://{}/hub/api", hub.running.hub_addr)];
    let (api_a, api_b) = (api(&a), api(&b));
    let copies = |apis: &[String]| processes_with("JUPYTERHUB_SERVICE_NAME=keeper", apis).len();

    eventually(Duration::from_secs(10), "one hub runs the service", || {
        let n = copies(&api_a) + copies(&api_b);
        async move { n == 1 }
    })
    .await;
    // Longer than a lease: still one copy, not one per hub.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(copies(&api_a) + copies(&api_b), 1);

    let (holder, holder_api, other, other_api) = if copies(&api_a) == 1 {
        (a, api_a, b, api_b)
    } else {
        (b, api_b, a, api_a)
    };
    holder.stop().await;
    assert_eq!(copies(&holder_api), 0, "the stopped hub's copy is gone");
    eventually(Duration::from_secs(15), "the other hub runs the service", || {
        let n = copies(&other_api);
        async move { n == 1 }
    })
    .await;
    other.stop().await;
    assert_eq!(copies(&other_api), 0);
}
