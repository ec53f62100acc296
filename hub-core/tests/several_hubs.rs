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
        if has(&format!("JUPYTERHUB_USER={user}"))
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

/// An `edgehub up` process of the pair, so that it can be SIGKILLed.
struct HubProcess {
    child: Child,
    /// The hub's own listener.
    hub: String,
    /// Its embedded proxy's public listener.
    public: String,
}

impl HubProcess {
    fn start(dir: &Path, url: &str, redis: &RedisServer) -> HubProcess {
        let hub_port = free_port();
        let config = format!(
            r#"bind = "127.0.0.1:0"
hub_bind = "127.0.0.1:{hub_port}"
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
        );
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
            std::fs::File::create(dir.join("hub.log")).unwrap(),
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
        while Instant::now() < deadline {
            let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) else {
                continue;
            };
            if let Some((_, url)) = line.split_once("edgehub is up: open ") {
                return HubProcess {
                    child,
                    hub: format!("http://127.0.0.1:{hub_port}"),
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
    let mut a = HubProcess::start(&temp_dir("storm-a"), &url, &redis);
    eventually(Duration::from_secs(5), "A runs the background work", || {
        background_holder(&a)
    })
    .await;
    let b = HubProcess::start(&temp_dir("storm-b"), &url, &redis);
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
