//! Starting, stopping, watching and re-adopting servers: the hub's half of every spawn.
//!
//! A start is decided synchronously (limits, current phase) and then runs as a task:
//! spawner start (bounded by `start_timeout`), HTTP readiness (bounded by `http_timeout`), the
//! route, and only then `Running`. Any failure after the spawner started stops the server again,
//! so a server is never left running without a route, nor routed without running. Progress goes
//! to the spawn's log, which the pending page and the SSE stream follow.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::hub::{Claimed, Hub};
use crate::metrics::SpawnStatus;
use crate::model::{Phase, escape_segment, valid_name};
use crate::progress::{self, ProgressEvent, ProgressSink};
use crate::spawner::{Answering, PollStatus, SpawnRequest, Started};
use crate::store::Grantee;

/// How long a stop request waits before answering 202 (JupyterHub's `slow_stop_timeout`).
pub const SLOW_STOP: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartRefused {
    NoSuchUser,
    BadServerName(String),
    NamedServersOff,
    NamedServerLimit(u32),
    AlreadyRunning,
    Stopping,
    /// Too many spawns in flight; retry after this many seconds.
    Throttled(u64),
    /// `user_options` named no profile the spawner offers.
    BadOptions(String),
    /// Too many servers active; retry after this many seconds.
    TooManyServers(u64),
    /// Another replica changed the server between the read and the claim.
    Changed,
    /// The state database failed; the text is for the log, not for the client.
    Store(String),
}

impl std::fmt::Display for StartRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartRefused::NoSuchUser => f.write_str("No such user"),
            StartRefused::BadServerName(n) => write!(f, "Invalid server name {n:?}"),
            StartRefused::NamedServersOff => f.write_str("Named servers are not enabled on this hub"),
            StartRefused::NamedServerLimit(n) => write!(f, "You may have at most {n} named servers"),
            StartRefused::AlreadyRunning => f.write_str("The server is already running"),
            StartRefused::Stopping => f.write_str("The server is stopping; start it again once it has stopped"),
            StartRefused::Throttled(_) => f.write_str("Too many users trying to log in right now. Try again soon."),
            StartRefused::BadOptions(why) => write!(f, "Invalid server options: {why}"),
            StartRefused::TooManyServers(_) => f.write_str("Active user limit exceeded. Try again in a few minutes."),
            StartRefused::Changed => f.write_str("The server changed meanwhile; try again"),
            StartRefused::Store(e) => write!(f, "The hub could not record the spawn: {e}"),
        }
    }
}

impl StartRefused {
    /// For a throttled start: the seconds to put in `Retry-After`.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            StartRefused::Throttled(secs) | StartRefused::TooManyServers(secs) => Some(*secs),
            _ => None,
        }
    }
}

fn retry_after(hub: &Hub) -> u64 {
    let [low, high] = hub.config.limits.retry_after_secs;
    if high <= low {
        return low;
    }
    let r = u64::from_le_bytes(crate::tokens::random_bytes::<8>());
    low + r % (high - low + 1)
}

/// Requests a start. `Ok` means a spawn is now pending (new or already under way); follow it on
/// the server's progress log.
pub fn request_start(hub: &Arc<Hub>, user: &str, server: &str, options: Value) -> Result<(), StartRefused> {
    if !server.is_empty() {
        if !hub.config.allow_named_servers {
            return Err(StartRefused::NamedServersOff);
        }
        if !valid_name(server) {
            return Err(StartRefused::BadServerName(server.to_owned()));
        }
    }
    let options = crate::spawner::choose_profile(hub.spawner.profiles(), options).map_err(StartRefused::BadOptions)?;
    let limits = &hub.config.limits;
    let (sink, log) = progress::channel();
    {
        let mut users = hub.users();
        // Counted under the lock the start is decided under: two starts cannot both take the
        // last slot.
        let counts = crate::hub::Counts::of(&users);
        let u = users.get_mut(user).ok_or(StartRefused::NoSuchUser)?;
        // With a shared store this copy may lag another replica's stop by a moment: it does not
        // refuse on its own then, the claim below asks the database, which has the last word.
        let shared = hub.store.shared();
        match u.servers.get(server).map(|s| s.phase()) {
            Some(Phase::Pending) => return Ok(()),
            Some(Phase::Running) if !shared => return Err(StartRefused::AlreadyRunning),
            Some(Phase::Stopping) if !shared => return Err(StartRefused::Stopping),
            _ => {}
        }
        let limit = hub.config.named_server_limit_per_user;
        if !server.is_empty() && limit > 0 && !u.servers.contains_key(server) {
            let named = u.servers.keys().filter(|n| !n.is_empty()).count();
            if named >= limit as usize {
                return Err(StartRefused::NamedServerLimit(limit));
            }
        }
        if limits.concurrent_spawn_limit > 0 && counts.pending >= limits.concurrent_spawn_limit as usize {
            hub.metrics.spawn(SpawnStatus::Throttled).record(0.0);
            return Err(StartRefused::Throttled(retry_after(hub)));
        }
        if limits.active_server_limit > 0 && counts.active() >= limits.active_server_limit as usize {
            hub.metrics.spawn(SpawnStatus::TooManyUsers).record(0.0);
            return Err(StartRefused::TooManyServers(retry_after(hub)));
        }
        let me = hub.replica.clone();
        // The start is claimed in the database: of two replicas starting this server at once,
        // one writes `Pending` under its name, the other finds it and follows that spawn.
        let claimed = hub
            .claim_in(&mut users, user, server, &[Phase::Stopped], None, |s| {
                s.record.phase = Phase::Pending;
                s.record.owner = Some(me);
                s.record.user_options = options;
                s.record.url = None;
                s.record.started_ms = None;
                s.record.last_activity_ms = Some(proxy::timestamp::now_ms());
                s.record.spawner_state = json!({});
                s.progress = Some(log);
                s.last_failure = None;
            })
            .map_err(|e| StartRefused::Store(e.to_string()))?;
        if let Claimed::Refused(now) = claimed {
            return match now.map(|s| s.phase()) {
                Some(Phase::Pending) => Ok(()),
                Some(Phase::Running) => Err(StartRefused::AlreadyRunning),
                Some(Phase::Stopping) => Err(StartRefused::Stopping),
                _ => Err(StartRefused::Changed),
            };
        }
    }
    // A spawn is activity, as in JupyterHub (`User.spawn`): the user's and the server's
    // `last_activity` are set now, not at the first reconcile after the server is ready.
    if let Err(e) = hub.note_activity(user, None, proxy::timestamp::now_ms()) {
        tracing::warn!("noting {user}'s activity at the start of their server: {e}");
    }
    launch(hub, user, server, publishing(hub, user, server, sink));
    Ok(())
}

/// With a shared database, the spawn's progress is also written there for the other replicas.
fn publishing(hub: &Arc<Hub>, user: &str, server: &str, sink: ProgressSink) -> ProgressSink {
    if !hub.store.shared() {
        return sink;
    }
    let (store, user, server) = (hub.store.clone(), user.to_owned(), server.to_owned());
    sink.publishing(Arc::new(move |event: &ProgressEvent| {
        let event = serde_json::to_value(event).unwrap_or_default();
        if let Err(e) = store.add_progress(&user, &server, &event) {
            tracing::warn!("sharing {user}'s spawn progress: {e}");
        }
    }))
}

/// Runs a claimed spawn as a task of its own.
fn launch(hub: &Arc<Hub>, user: &str, server: &str, sink: ProgressSink) {
    if sink.is_empty() {
        sink.push(ProgressEvent::message(0, "Server requested"));
    }
    let task = tokio::spawn(run_spawn(hub.clone(), user.to_owned(), server.to_owned(), sink));
    hub.spawn_tasks
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert((user.to_owned(), server.to_owned()), task.abort_handle());
}

/// Carries on a start another replica claimed and could not finish (it died): a server that
/// came up meanwhile is adopted; anything else it left is stopped and the spawn run again here.
/// `sink`: the log followers here already read, if any.
pub(crate) fn resume_spawn(hub: &Arc<Hub>, user: &str, server: &str, sink: Option<ProgressSink>) {
    let (sink, log) = match sink {
        Some(sink) => (sink, None),
        None => {
            let (sink, log) = progress::channel();
            (sink, Some(log))
        }
    };
    if let Some(log) = log {
        let _ = hub.update_owned(user, server, Phase::Pending, |s| s.progress = Some(log));
    }
    let sink = publishing(hub, user, server, sink);
    let (hub, user, server) = (hub.clone(), user.to_owned(), server.to_owned());
    tokio::spawn(async move {
        let Some(current) = hub.server(&user, &server) else {
            return;
        };
        let prefix = hub.prefix(&user, &server);
        if let PollStatus::Running { url } = hub.spawner.poll(current.record.spawner_state.clone()).await {
            let probe = format!("{}{}", url.trim_end_matches('/'), prefix);
            if wait_for_http(&probe, Duration::from_secs(5)).await.is_ok()
                && hub
                    .proxy
                    .add_route(&prefix, &url, crate::shares::route_data_now(&hub, &user, &server))
                    .await
                    .is_ok()
            {
                let adopted = hub.update_owned(&user, &server, Phase::Pending, |s| {
                    s.record.phase = Phase::Running;
                    s.record.owner = None;
                    s.record.url = Some(url.clone());
                    s.record.started_ms = Some(proxy::timestamp::now_ms());
                    s.record.last_activity_ms = s.record.started_ms;
                    s.progress = None;
                });
                if matches!(adopted, Ok(Claimed::Done(()))) {
                    let mut done = ProgressEvent::message(100, format!("Server ready at {prefix}"));
                    done.ready = true;
                    done.url = Some(prefix);
                    sink.finish(done);
                    tracing::info!("{user}'s server {server:?}, started by a hub that died, is adopted");
                    hub.update_gauges();
                    return;
                }
            }
        }
        // Whatever the dead replica left (a process, a pod, half-recorded), then start afresh.
        if let Err(e) = hub.spawner.stop(current.record.spawner_state.clone()).await {
            tracing::warn!("stopping what a dead hub left of {user}'s server: {e}");
        }
        let hashes: Vec<String> = hub
            .tokens
            .of_user(&user)
            .into_iter()
            .filter(|t| t.server.as_deref() == Some(server.as_str()))
            .map(|t| t.hash)
            .collect();
        let strays = hub.spawner.stop_strays(&user, &server, &hashes).await;
        if strays > 0 {
            tracing::warn!("{strays} stray process(es) of {user}'s server stopped");
        }
        hub.revoke_server_tokens(&user, &server);
        let _ = hub.update_owned(&user, &server, Phase::Pending, |s| {
            s.record.url = None;
            s.record.spawner_state = json!({});
        });
        sink.push(ProgressEvent::message(
            5,
            "The hub running this spawn stopped; starting again",
        ));
        launch(&hub, &user, &server, sink);
    });
}

/// JupyterHub's environment contract for a server.
fn server_env(hub: &Hub, user: &str, server: &str, token: &str) -> std::collections::BTreeMap<String, String> {
    let prefix = hub.prefix(user, server);
    let api = hub.api_url();
    let client_id = crate::web::oauth::client_id(user, server);
    let access_scope = format!("access:servers!server={user}/{server}");
    [
        ("JUPYTERHUB_API_TOKEN", token.to_owned()),
        ("JPY_API_TOKEN", token.to_owned()),
        ("JUPYTERHUB_CLIENT_ID", client_id),
        ("JUPYTERHUB_API_URL", api.clone()),
        (
            "JUPYTERHUB_ACTIVITY_URL",
            format!("{api}/users/{}/activity", escape_segment(user)),
        ),
        ("JUPYTERHUB_BASE_URL", hub.base.clone()),
        ("JUPYTERHUB_SERVICE_PREFIX", prefix.clone()),
        ("JUPYTERHUB_USER", user.to_owned()),
        ("JUPYTERHUB_SERVER_NAME", server.to_owned()),
        ("JUPYTERHUB_OAUTH_CALLBACK_URL", format!("{prefix}oauth_callback")),
        ("JUPYTERHUB_OAUTH_SCOPES", json!([access_scope]).to_string()),
        ("JUPYTERHUB_OAUTH_ACCESS_SCOPES", json!([access_scope]).to_string()),
        ("JUPYTERHUB_OAUTH_CLIENT_ALLOWED_SCOPES", "[]".to_owned()),
        ("JUPYTERHUB_HOST", String::new()),
        ("JUPYTERHUB_ADMIN_ACCESS", String::new()),
    ]
    .into_iter()
    .chain(where_it_opens(hub, user))
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// `spawner.default_url` and `notebook_dir`, with `{username}` replaced, as JupyterHub passes
/// them: only those configured.
fn where_it_opens(hub: &Hub, user: &str) -> impl Iterator<Item = (&'static str, String)> {
    let spawner = &hub.config.spawner;
    [
        ("JUPYTERHUB_DEFAULT_URL", &spawner.default_url),
        ("JUPYTERHUB_ROOT_DIR", &spawner.notebook_dir),
    ]
    .into_iter()
    .filter_map(move |(name, value)| Some((name, value.as_ref()?.replace("{username}", user))))
}

async fn run_spawn(hub: Arc<Hub>, user: String, server: String, progress: ProgressSink) {
    let began = Instant::now();
    let outcome = spawn_steps(&hub, &user, &server, &progress).await;
    hub.spawn_tasks
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&(user.clone(), server.clone()));
    let prefix = hub.prefix(&user, &server);
    match outcome {
        Ok(()) => {
            hub.spawn_failures.success();
            hub.metrics
                .spawn(SpawnStatus::Success)
                .record(began.elapsed().as_secs_f64());
            let mut done = ProgressEvent::message(100, format!("Server ready at {prefix}"));
            done.ready = true;
            done.url = Some(prefix);
            progress.finish(done);
            tracing::info!("{user}'s server {server:?} is ready ({:.0?})", began.elapsed());
        }
        Err(SpawnFailure::Failed(why)) => {
            hub.metrics
                .spawn(SpawnStatus::Failure)
                .record(began.elapsed().as_secs_f64());
            tracing::warn!("{user}'s server {server:?} failed to start: {why}");
            let state = hub
                .server(&user, &server)
                .map(|s| s.record.spawner_state)
                .unwrap_or_default();
            if let Err(e) = hub.spawner.stop(state).await {
                tracing::warn!("cleaning up {user}'s failed server: {e}");
            }
            hub.revoke_server_tokens(&user, &server);
            let _ = hub.update_owned(&user, &server, Phase::Pending, |s| {
                s.record.phase = Phase::Stopped;
                s.record.owner = None;
                s.record.url = None;
                s.last_failure = Some(why.clone());
            });
            let mut failed = ProgressEvent::message(100, format!("Spawn failed: {why}"));
            failed.failed = true;
            progress.finish(failed);
            if let Some(why) = hub.spawn_failures.failure() {
                tracing::error!("{why}");
                hub.shutdown.request(crate::shutdown::Shutdown { why, failed: true });
            }
        }
        Err(SpawnFailure::Lost { started }) => {
            // Another replica stopped this server or took the spawn over: it is theirs now.
            // What this replica started is stopped; the shared progress is theirs to end.
            tracing::warn!("{user}'s server {server:?}: another hub took over its start; this hub lets go");
            if let Some(state) = started
                && let Err(e) = hub.spawner.stop(state).await
            {
                tracing::warn!("stopping what this hub started of {user}'s server: {e}");
            }
            let mut failed = ProgressEvent::message(100, "Spawn handed over to another hub");
            failed.failed = true;
            progress.unpublished().finish(failed);
        }
    }
    hub.update_gauges();
}

/// Why a spawn did not end with a running server.
enum SpawnFailure {
    /// It failed (shown to the user).
    Failed(String),
    /// The database no longer names this replica as the spawn's owner; `started` is what this
    /// replica had started, if anything.
    Lost { started: Option<Value> },
}

impl From<String> for SpawnFailure {
    fn from(why: String) -> Self {
        SpawnFailure::Failed(why)
    }
}

/// A write to a spawn this replica owns: `Lost` if it no longer does.
fn owned<T>(result: Result<Claimed<T>, crate::store::StoreError>, started: Option<&Value>) -> Result<T, SpawnFailure> {
    match result {
        Ok(Claimed::Done(v)) => Ok(v),
        Ok(Claimed::Refused(_)) => Err(SpawnFailure::Lost {
            started: started.cloned(),
        }),
        Err(e) => Err(SpawnFailure::Failed(e.to_string())),
    }
}

async fn spawn_steps(hub: &Arc<Hub>, user: &str, server: &str, progress: &ProgressSink) -> Result<(), SpawnFailure> {
    let cfg = &hub.config.spawner;
    let (token, _) = hub
        .issue_token(user, Some(server), "server", None, None)
        .map_err(|e| e.to_string())?;
    let options = hub
        .server(user, server)
        .map(|s| s.record.user_options)
        .unwrap_or_default();
    let request = SpawnRequest {
        user: user.to_owned(),
        server_name: server.to_owned(),
        prefix: hub.prefix(user, server),
        env: server_env(hub, user, server, &token),
        user_options: options,
    };
    let start_timeout_secs = hub.config.start_timeout_secs();
    let start_timeout = Duration::from_secs(start_timeout_secs);
    let prefix = hub.prefix(user, server);
    // A server whose port another process took before it could bind it exits; the answer the
    // hub got came from that other process. It is started again, on another port, twice at most.
    let mut attempts = 0;
    let started = loop {
        attempts += 1;
        let started = tokio::time::timeout(start_timeout, hub.spawner.start(request.clone(), progress.clone()))
            .await
            .map_err(|_| format!("the server did not start within {start_timeout_secs} s"))?
            .map_err(|e| e.to_string())?;
        let recorded = hub.update_owned(user, server, Phase::Pending, |s| {
            s.record.url = Some(started.url.clone());
            s.record.spawner_state = started.state.clone();
        });
        match owned(recorded, Some(&started.state)) {
            Ok(()) => {}
            Err(SpawnFailure::Failed(why)) => {
                // Not recorded: nobody else could ever stop it.
                let _ = hub.spawner.stop(started.state.clone()).await;
                return Err(SpawnFailure::Failed(why));
            }
            Err(lost) => return Err(lost),
        }
        progress.push(ProgressEvent::message(70, "Server started; waiting for it to answer"));
        let http_timeout = Duration::from_secs(cfg.http_timeout_secs);
        match answer(hub, &started, &prefix, http_timeout).await {
            Ok(()) => break started,
            Err(Some(why)) => {
                return Err(SpawnFailure::Failed(format!(
                    "{why} (http_timeout {} s)",
                    cfg.http_timeout_secs
                )));
            }
            Err(None) if attempts < 3 => {
                progress.push(ProgressEvent::message(
                    10,
                    "The port was taken meanwhile; trying another",
                ));
            }
            Err(None) => {
                return Err(SpawnFailure::Failed(
                    "the server exited as it came up, three times: its port was taken each time".to_owned(),
                ));
            }
        }
    };
    progress.push(ProgressEvent::message(90, "Server is answering; adding its route"));

    let added = Instant::now();
    let result = hub
        .proxy
        .add_route(&prefix, &started.url, crate::shares::route_data_now(hub, user, server))
        .await;
    hub.metrics
        .proxy_add(result.is_ok())
        .record(added.elapsed().as_secs_f64());
    result.map_err(|e| format!("the proxy did not take the route: {e}"))?;

    let ready = hub.update_owned(user, server, Phase::Pending, |s| {
        s.record.phase = Phase::Running;
        s.record.owner = None;
        s.record.started_ms = Some(proxy::timestamp::now_ms());
        s.record.last_activity_ms = s.record.started_ms;
        // Readers already following the log keep their handle and see it end; later ones are
        // told "ready" at once. An idle server should not carry its spawn's history.
        s.progress = None;
    });
    owned(ready, Some(&started.state))
}

/// Waits until the server itself answers at its URL: `Err(None)` if it exited meanwhile (its
/// port was taken), `Err(Some(why))` if it did not answer in time.
async fn answer(hub: &Hub, started: &Started, prefix: &str, limit: Duration) -> Result<(), Option<String>> {
    let deadline = Instant::now() + limit;
    wait_for_http(&format!("{}{}", started.url.trim_end_matches('/'), prefix), limit)
        .await
        .map_err(Some)?;
    loop {
        match hub.spawner.answering(started.state.clone()).await {
            Answering::Itself | Answering::Unknown => return Ok(()),
            Answering::Exited => return Err(None),
            Answering::Another if Instant::now() >= deadline => {
                return Err(Some(format!(
                    "another process answers at {}, not the server",
                    started.url
                )));
            }
            Answering::Another => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// The data of a user route, as JupyterHub writes it (edge auth reads `user` as the owner),
/// plus the server's shares: the users and groups it is shared with, whom the edge lets in too.
pub fn route_data(user: &str, server: &str, shared_with: &[&Grantee]) -> Map<String, Value> {
    let mut data = Map::new();
    data.insert("user".into(), Value::String(user.to_owned()));
    data.insert("server_name".into(), Value::String(server.to_owned()));
    let names = |kind: &str| -> Vec<Value> {
        shared_with
            .iter()
            .filter(|g| g.kind() == kind)
            .map(|g| Value::String(g.name().to_owned()))
            .collect()
    };
    let (users, groups) = (names("user"), names("group"));
    if !users.is_empty() {
        data.insert("users".into(), Value::Array(users));
    }
    if !groups.is_empty() {
        data.insert("groups".into(), Value::Array(groups));
    }
    data
}

/// Waits until `url` answers HTTP at all (any status: a login redirect or a 404 still means the
/// server is up), retrying with a growing delay.
pub async fn wait_for_http(url: &str, limit: Duration) -> Result<(), String> {
    let target = crate::http_client::HttpUrl::parse(url).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + limit;
    let mut delay = Duration::from_millis(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("the server at {url} did not answer"));
        }
        let attempt =
            crate::http_client::call(http::Method::GET, &target, &[], None, left.min(Duration::from_secs(5))).await;
        if attempt.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(delay.min(deadline.saturating_duration_since(Instant::now()))).await;
        delay = (delay * 2).min(Duration::from_millis(500));
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopOutcome {
    /// Stopped (or was not running): 204.
    Stopped,
    /// Still stopping: 202.
    Stopping,
}

/// Stops a server, waiting up to [`SLOW_STOP`] for it. A pending spawn is cancelled.
pub async fn stop(hub: &Arc<Hub>, user: &str, server: &str) -> Result<StopOutcome, StartRefused> {
    let previous = {
        let mut users = hub.users();
        let u = users.get(user).ok_or(StartRefused::NoSuchUser)?;
        let Some(mut previous) = u.servers.get(server).map(|s| s.phase()) else {
            return Ok(StopOutcome::Stopped);
        };
        // Claimed in the database as a start is: another replica may have moved the server
        // on meanwhile, and then its phase as it is now decides.
        loop {
            match previous {
                Phase::Stopped => return Ok(StopOutcome::Stopped),
                Phase::Stopping => return Ok(StopOutcome::Stopping),
                Phase::Pending | Phase::Running => {}
            }
            let me = hub.replica.clone();
            let claimed = hub
                .claim_in(&mut users, user, server, &[previous], None, |s| {
                    s.record.phase = Phase::Stopping;
                    s.record.owner = Some(me);
                })
                .map_err(|e| StartRefused::Store(e.to_string()))?;
            match claimed {
                Claimed::Done(()) => break,
                Claimed::Refused(now) => previous = now.map_or(Phase::Stopped, |s| s.phase()),
            }
        }
        previous
    };
    if previous == Phase::Pending
        && let Some(task) = hub
            .spawn_tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(user.to_owned(), server.to_owned()))
    {
        task.abort();
        if let Some(log) = hub.server(user, server).and_then(|s| s.progress) {
            log.abandon("Spawn cancelled: the server was stopped while starting");
        }
    }
    let task = tokio::spawn(finish_stop(hub.clone(), user.to_owned(), server.to_owned()));
    match tokio::time::timeout(SLOW_STOP, task).await {
        Ok(_) => Ok(StopOutcome::Stopped),
        Err(_) => Ok(StopOutcome::Stopping),
    }
}

/// Stops every server that is not stopped, all at once, and waits until each has (the hub is
/// about to end: `POST /hub/api/shutdown` with `servers`).
pub async fn stop_all(hub: &Arc<Hub>) {
    let active: Vec<(String, String)> = hub
        .users()
        .values()
        .flat_map(|u| u.servers.values())
        .filter(|s| s.phase().is_active())
        .map(|s| (s.record.user.clone(), s.record.name.clone()))
        .collect();
    let stops: Vec<_> = active
        .into_iter()
        .map(|(user, server)| {
            let hub = hub.clone();
            tokio::spawn(async move {
                if let Err(e) = stop(&hub, &user, &server).await {
                    tracing::warn!("stopping {user}'s server {server:?}: {e:?}");
                }
                // `stop` returns after SLOW_STOP; what it began goes on until `Stopped`, which
                // is waited for a minute more at most.
                let deadline = Instant::now() + Duration::from_secs(60);
                while hub.server(&user, &server).is_some_and(|s| s.phase().is_active()) && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        })
        .collect();
    for stopping in stops {
        let _ = stopping.await;
    }
}

/// Route out, server stopped, tokens revoked, `Stopped`. Used by stop, culling and exit handling,
/// by the replica that claimed the stop.
pub(crate) async fn finish_stop(hub: Arc<Hub>, user: String, server: String) {
    let began = Instant::now();
    let prefix = hub.prefix(&user, &server);
    let deleted = hub.proxy.delete_route(&prefix).await;
    hub.metrics
        .proxy_delete(deleted.is_ok())
        .record(began.elapsed().as_secs_f64());
    if let Err(e) = deleted {
        // Reconcile deletes it later: the server is not Running, so its route is stale.
        tracing::warn!("deleting the route {prefix}: {e}");
    }
    let state = hub
        .server(&user, &server)
        .map(|s| s.record.spawner_state)
        .unwrap_or_default();
    let stopped = hub.spawner.stop(state).await;
    hub.metrics
        .server_stop(stopped.is_ok())
        .record(began.elapsed().as_secs_f64());
    if let Err(e) = &stopped {
        tracing::warn!("stopping {user}'s server {server:?}: {e}");
    }
    hub.revoke_server_tokens(&user, &server);
    let _ = hub.update_owned(&user, &server, Phase::Stopping, |s| {
        s.record.phase = Phase::Stopped;
        s.record.owner = None;
        s.record.url = None;
        s.record.spawner_state = json!({});
    });
    hub.update_gauges();
    tracing::info!("{user}'s server {server:?} stopped ({:.0?})", began.elapsed());
}

/// A server found gone: clean up as for a stop.
pub async fn handle_exit(hub: &Arc<Hub>, user: &str, server: &str, code: Option<i32>) {
    let me = hub.replica.clone();
    let was_running = matches!(
        hub.claim_server(user, server, &[Phase::Running], None, |s| {
            s.record.phase = Phase::Stopping;
            s.record.owner = Some(me);
            s.last_failure = Some(match code {
                Some(c) => format!("The server exited with status {c}"),
                None => "The server exited".to_owned(),
            });
        }),
        Ok(Claimed::Done(()))
    );
    if was_running {
        tracing::warn!("{user}'s server {server:?} exited (status {code:?})");
        finish_stop(hub.clone(), user.to_owned(), server.to_owned()).await;
    }
}

/// Every running server, polled: those that exited are cleaned up.
pub async fn poll_all(hub: &Arc<Hub>) {
    let running: Vec<(String, String, Value)> = hub
        .users()
        .values()
        .flat_map(|u| u.servers.values())
        .filter(|s| s.phase() == Phase::Running)
        .map(|s| {
            (
                s.record.user.clone(),
                s.record.name.clone(),
                s.record.spawner_state.clone(),
            )
        })
        .collect();
    for (user, server, state) in running {
        let began = Instant::now();
        let status = hub.spawner.poll(state).await;
        hub.metrics.server_poll(true).record(began.elapsed().as_secs_f64());
        if let PollStatus::Exited { code } = status {
            handle_exit(hub, &user, &server, code).await;
        }
    }
}

/// At start-up: every server the store says is not stopped is checked against reality.
/// Running ones are kept (no restart, no duplicate); gone ones are marked stopped; a spawn or a
/// stop the last hub did not finish is finished now.
pub async fn adopt_servers(hub: &Arc<Hub>) -> AdoptReport {
    let began = Instant::now();
    let candidates: Vec<(String, String, Phase, Value)> = hub
        .users()
        .values()
        .flat_map(|u| u.servers.values())
        .filter(|s| s.phase().is_active())
        .map(|s| {
            (
                s.record.user.clone(),
                s.record.name.clone(),
                s.phase(),
                s.record.spawner_state.clone(),
            )
        })
        .collect();
    let mut report = AdoptReport::default();
    let checks = candidates.into_iter().map(|(user, server, phase, state)| {
        let hub = hub.clone();
        async move {
            let status = hub.spawner.poll(state).await;
            let prefix = hub.prefix(&user, &server);
            let adopt = match (&status, phase) {
                (PollStatus::Running { url }, Phase::Running | Phase::Pending) => {
                    let probe = format!("{}{}", url.trim_end_matches('/'), prefix);
                    wait_for_http(
                        &probe,
                        Duration::from_secs(hub.config.spawner.http_timeout_secs.min(10)),
                    )
                    .await
                    .is_ok()
                    .then(|| url.clone())
                }
                _ => None,
            };
            match adopt {
                Some(url) => {
                    let _ = hub.update_server(&user, &server, |s| {
                        s.record.phase = Phase::Running;
                        s.record.owner = None;
                        s.record.url = Some(url);
                        if s.record.started_ms.is_none() {
                            s.record.started_ms = Some(proxy::timestamp::now_ms());
                        }
                    });
                    true
                }
                None => {
                    if matches!(status, PollStatus::Running { .. }) {
                        // Half-started, or stopping when the last hub went: finish the job.
                        let me = hub.replica.clone();
                        let _ = hub.update_server(&user, &server, |s| {
                            s.record.phase = Phase::Stopping;
                            s.record.owner = Some(me);
                        });
                        finish_stop(hub.clone(), user.clone(), server.clone()).await;
                    } else {
                        hub.revoke_server_tokens(&user, &server);
                        let _ = hub.update_server(&user, &server, |s| {
                            s.record.phase = Phase::Stopped;
                            s.record.owner = None;
                            s.record.url = None;
                        });
                    }
                    false
                }
            }
        }
    });
    for adopted in futures_util::future::join_all(checks).await {
        if adopted {
            report.adopted += 1;
        } else {
            report.cleaned += 1;
        }
    }
    hub.metrics.init_spawners_duration.record(began.elapsed().as_secs_f64());
    hub.update_gauges();
    report
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AdoptReport {
    pub adopted: usize,
    pub cleaned: usize,
}
