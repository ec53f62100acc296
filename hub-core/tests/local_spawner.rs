//! The local spawner with real processes: the edgehub binary's built-in server, shells that
//! misbehave, and a second spawner standing in for a restarted hub.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Empty};
use hub_core::progress::{self, ProgressEvent};
use hub_core::spawner::local::LocalSpawner;
use hub_core::spawner::{PollStatus, SpawnError, SpawnRequest, Spawner, SpawnerState, Started};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

fn edgehub() -> String {
    env!("CARGO_BIN_EXE_edgehub").to_owned()
}

/// A fresh, empty directory for one test's logs.
fn log_dir(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("local-spawner-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn spawner(command: &[&str], stop_grace_secs: u64, log_dir: &Path) -> LocalSpawner {
    let config = config::LocalSpawnerConfig {
        command: Some(command.iter().map(|s| (*s).to_owned()).collect()),
        stop_grace_secs,
        ..Default::default()
    };
    LocalSpawner::new(&config, PathBuf::from(edgehub())).with_log_dir(log_dir.to_owned())
}

fn builtin(log_dir: &Path) -> LocalSpawner {
    spawner(&[&edgehub(), "singleuser", "--port", "{port}"], 5, log_dir)
}

fn request(user: &str, env: &[(&str, &str)]) -> SpawnRequest {
    let prefix = format!("/user/{user}/");
    let mut vars: BTreeMap<String, String> = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    vars.insert("JUPYTERHUB_USER".to_owned(), user.to_owned());
    vars.insert("JUPYTERHUB_SERVICE_PREFIX".to_owned(), prefix.clone());
    SpawnRequest {
        user: user.to_owned(),
        server_name: String::new(),
        prefix,
        env: vars,
        user_options: json!({}),
    }
}

async fn start(spawner: &LocalSpawner, request: SpawnRequest) -> (Result<Started, SpawnError>, Vec<ProgressEvent>) {
    let (sink, log) = progress::channel();
    let result = spawner.start(request, sink).await;
    (result, log.snapshot())
}

fn pid(state: &SpawnerState) -> i32 {
    state["pid"].as_i64().expect("a pid in the state") as i32
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks whether the pid exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

/// GET `path` from `base` (`http://127.0.0.1:PORT`), retrying the connection until the server
/// listens.
async fn get(base: &str, path: &str) -> (StatusCode, String) {
    let authority = base.strip_prefix("http://").expect("an http URL");
    let deadline = Instant::now() + Duration::from_secs(10);
    let stream = loop {
        match tokio::net::TcpStream::connect(authority).await {
            Ok(stream) => break stream,
            Err(e) if Instant::now() > deadline => panic!("{base} never answered: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = Request::get(path)
        .header("host", authority)
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn the_builtin_server_starts_serves_and_stops() {
    let logs = log_dir("builtin");
    let spawner = builtin(&logs);
    let (started, events) = start(&spawner, request("alice", &[])).await;
    let Started { url, state } = started.expect("the built-in server starts");

    let messages: Vec<_> = events.iter().map(|e| e.message.as_str()).collect();
    let port = state["port"].as_u64().unwrap();
    let pid = pid(&state);
    assert_eq!(url, format!("http://127.0.0.1:{port}"));
    assert_eq!(
        messages,
        [
            format!("Starting edgehub on port {port}"),
            format!("Process started (pid {pid})")
        ]
    );
    assert!(state["start_time"].as_u64().is_some(), "{state}");
    // SAFETY: getpgid only reads.
    assert_eq!(
        unsafe { libc::getpgid(pid) },
        pid,
        "the server leads its own process group"
    );

    let (status, page) = get(&url, "/user/alice/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("edgehub built-in server for alice"), "{page}");
    assert_eq!(get(&url, "/user/alice/lab/tree").await.0, StatusCode::OK);
    assert_eq!(get(&url, "/user/alice/nope").await.0, StatusCode::NOT_FOUND);
    assert_eq!(get(&url, "/user/bob/").await.0, StatusCode::NOT_FOUND);

    let ws_url = format!("ws://127.0.0.1:{port}/user/alice/ws");
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url.as_str())
        .await
        .expect("WebSocket handshake");
    ws.send(Message::text("round trip")).await.unwrap();
    let echoed = ws.next().await.expect("an echo").unwrap();
    assert_eq!(echoed.into_text().unwrap().as_str(), "round trip");
    let (status, body) = get(&url, "/user/alice/api/status").await;
    assert_eq!(status, StatusCode::OK);
    let status: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["version"], "edgehub-builtin");
    assert_eq!(status["connections"], 1, "{status}");
    assert!(
        status["last_activity"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{status}"
    );
    ws.close(None).await.unwrap();

    assert_eq!(
        spawner.poll(state.clone()).await,
        PollStatus::Running { url: url.clone() }
    );
    let stopping = Instant::now();
    spawner.stop(state.clone()).await.expect("stop");
    assert!(stopping.elapsed() < Duration::from_secs(2), "SIGTERM was enough");
    assert!(!alive(pid), "pid {pid} is gone");
    assert_eq!(spawner.poll(state.clone()).await, PollStatus::Exited { code: None });
    spawner.stop(state).await.expect("stopping a stopped server is fine");

    let log = std::fs::read_to_string(logs.join("alice.log")).unwrap();
    assert!(
        log.contains(&format!(
            "edgehub built-in server for alice at http://127.0.0.1:{port}/user/alice/"
        )),
        "{log}"
    );
}

#[tokio::test]
async fn a_command_that_exits_at_once_is_reported_with_its_output() {
    let logs = log_dir("early");
    let spawner = spawner(&["sh", "-c", "echo boom >&2; exit 3"], 5, &logs);
    match start(&spawner, request("bob", &[])).await.0 {
        Err(SpawnError::ExitedEarly { code: Some(3), detail }) => assert_eq!(detail, "boom"),
        other => panic!("expected an early exit, got {other:?}"),
    }
}

#[tokio::test]
async fn a_server_whose_port_was_taken_is_started_again_on_another() {
    let logs = log_dir("port-taken");
    std::fs::create_dir_all(&logs).unwrap();
    let flag = logs.join("first-attempt-done");
    // The first attempt fails as a server does when another process took its port meanwhile.
    let script = format!(
        "if [ ! -e {flag} ]; then touch {flag}; echo 'Error: Address already in use (os error 98)' >&2; exit 1; fi; exec {} singleuser --port {{port}}",
        edgehub(),
        flag = flag.display()
    );
    let spawner = spawner(&["sh", "-c", &script], 5, &logs);
    let (result, events) = start(&spawner, request("erin", &[])).await;
    let started = result.expect("started on the second attempt");
    assert!(
        events.iter().any(|e| e.message.contains("port was taken")),
        "{events:?}"
    );
    spawner.stop(started.state).await.unwrap();

    // Any other early exit is not retried.
    let spawner = spawner_for_early_exit(&logs);
    assert!(matches!(
        start(&spawner, request("erin", &[])).await.0,
        Err(SpawnError::ExitedEarly { .. })
    ));
}

fn spawner_for_early_exit(logs: &Path) -> LocalSpawner {
    spawner(&["sh", "-c", "echo 'no such module' >&2; exit 1"], 5, logs)
}

#[tokio::test]
async fn a_missing_program_is_a_launch_error_naming_it() {
    let logs = log_dir("missing");
    let spawner = spawner(&["/nonexistent/jupyter-nowhere", "--port={port}"], 5, &logs);
    match start(&spawner, request("carol", &[])).await.0 {
        Err(SpawnError::Launch(message)) => assert!(message.contains("/nonexistent/jupyter-nowhere"), "{message}"),
        other => panic!("expected a launch error, got {other:?}"),
    }
}

#[tokio::test]
async fn stop_kills_what_ignores_sigterm_once_the_grace_period_is_over() {
    let logs = log_dir("stubborn");
    let spawner = spawner(&["sh", "-c", "trap '' TERM; echo ready; sleep 60"], 1, &logs);
    let Started { state, .. } = start(&spawner, request("dave", &[])).await.0.expect("start");
    // SIGTERM must arrive after the trap is set, or the shell dies of it.
    let log = logs.join("dave.log");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&log).unwrap_or_default().contains("ready") {
        assert!(Instant::now() < deadline, "the shell never got ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let stopping = Instant::now();
    spawner.stop(state.clone()).await.expect("stop");
    let took = stopping.elapsed();
    assert!(
        took >= Duration::from_secs(1),
        "SIGKILL came before the grace period ended: {took:?}"
    );
    assert!(took < Duration::from_secs(2), "stop took {took:?}");
    assert!(!alive(pid(&state)));
}

#[tokio::test]
async fn a_start_abandoned_by_the_hub_leaves_no_server_behind() {
    let logs = log_dir("abandoned");
    let spawner = spawner(&["sleep", "60"], 1, &logs);
    let (sink, log) = progress::channel();
    let started_pid = async {
        let mut seen = 0;
        while let Some(batch) = log.next_batch(seen).await {
            seen += batch.len();
            let pid = batch
                .iter()
                .find_map(|e| e.message.strip_prefix("Process started (pid "));
            if let Some(pid) = pid {
                return pid.trim_end_matches(')').parse::<i32>().unwrap();
            }
        }
        panic!("no pid in the progress events");
    };
    // The hub's start timeout, firing while `start` still watches for an early exit.
    let pid = tokio::select! {
        result = spawner.start(request("heidi", &[]), sink) => panic!("start ended first: {result:?}"),
        pid = started_pid => pid,
    };
    let deadline = Instant::now() + Duration::from_secs(2);
    while alive(pid) {
        assert!(Instant::now() < deadline, "pid {pid} outlived its abandoned start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_reused_pid_is_never_taken_for_the_server() {
    let logs = log_dir("reuse");
    let spawner = spawner(&["sleep", "60"], 1, &logs);
    let Started { url, state } = start(&spawner, request("erin", &[])).await.0.expect("start");
    let mut reused = state.clone();
    reused["start_time"] = json!(state["start_time"].as_u64().unwrap() + 1);

    assert_eq!(spawner.poll(reused.clone()).await, PollStatus::Exited { code: None });
    spawner.stop(reused).await.expect("nothing to stop");
    assert!(alive(pid(&state)), "a pid whose start time differs was signalled");

    assert_eq!(spawner.poll(state.clone()).await, PollStatus::Running { url });
    spawner.stop(state.clone()).await.expect("stop");
    assert!(!alive(pid(&state)));
}

#[tokio::test]
async fn a_restarted_hub_finds_and_stops_the_servers_of_the_last_one() {
    let logs = log_dir("restart");
    let Started { url, state } = start(&builtin(&logs), request("frank", &[])).await.0.expect("start");
    assert_eq!(get(&url, "/user/frank/api").await.0, StatusCode::OK);

    let next_hub = builtin(&logs);
    assert_eq!(
        next_hub.poll(state.clone()).await,
        PollStatus::Running { url: url.clone() }
    );
    assert_eq!(get(&url, "/user/frank/").await.0, StatusCode::OK);
    next_hub.stop(state.clone()).await.expect("stop");
    assert!(!alive(pid(&state)));
    assert_eq!(next_hub.poll(state).await, PollStatus::Exited { code: None });
}

#[tokio::test]
async fn the_builtin_server_reports_activity_to_the_hub() {
    // A stand-in for the hub's activity endpoint that hands over every request it gets.
    let hub = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hub_addr = hub.local_addr().unwrap();
    let (tx, mut posts) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = hub.accept().await {
            let tx = tx.clone();
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let tx = tx.clone();
                async move {
                    let (head, body) = req.into_parts();
                    let body = body.collect().await?.to_bytes();
                    let _ = tx.send((head, body));
                    Ok::<_, hyper::Error>(Response::new(Empty::<Bytes>::new()))
                }
            });
            tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service));
        }
    });

    let logs = log_dir("activity");
    let activity_url = format!("http://{hub_addr}/hub/api/users/grace/activity");
    let env = [
        ("JUPYTERHUB_ACTIVITY_URL", activity_url.as_str()),
        ("JUPYTERHUB_API_TOKEN", "secret-token"),
        ("JUPYTERHUB_ACTIVITY_INTERVAL", "1"),
        ("JUPYTERHUB_SERVER_NAME", ""),
    ];
    let spawner = builtin(&logs);
    let Started { url, state } = start(&spawner, request("grace", &env)).await.0.expect("start");
    assert_eq!(get(&url, "/user/grace/").await.0, StatusCode::OK);

    let (head, body) = tokio::time::timeout(Duration::from_secs(5), posts.recv())
        .await
        .expect("an activity report within the interval")
        .unwrap();
    assert_eq!(head.method, hyper::Method::POST);
    assert_eq!(head.uri.path(), "/hub/api/users/grace/activity");
    assert_eq!(head.headers["authorization"], "token secret-token");
    assert_eq!(head.headers["content-type"], "application/json");
    let body: Value = serde_json::from_slice(&body).unwrap();
    let when = body["last_activity"].as_str().expect("last_activity");
    assert!(when.ends_with('Z'), "{body}");
    assert_eq!(body["servers"][""]["last_activity"], when, "{body}");

    spawner.stop(state).await.expect("stop");
}
