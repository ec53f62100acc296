//! One simulated notebook user, as a sequence of phases (see [`Phase`]): log in, request a
//! server, follow its progress stream until ready, (form login: pass the single-user server's
//! OAuth redirects), start a kernel, open its WebSocket, run the execute loop, stop. Each step is
//! what JupyterHub's API promises, and edgehub keeps the same promises (its own session cookie,
//! checked by its edge proxy, and the same OAuth endpoints for `jupyterhub-singleuser`).
//!
//! Every phase records its latency on success, or its failure reason; the first failure ends the
//! journey, except that a server once requested is always asked to stop so a run leaves nothing
//! behind. Each request that gets a 429 waits for its `Retry-After` (1 s when absent) and is sent
//! again, until the phase's deadline (`--spawn-timeout` after the phase began); the wait is part
//! of the phase's latency, as it is for a real user.

use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, header};
use http_body_util::BodyExt;
use serde_json::json;

use super::JourneyPlan;
use super::client::{Body, Client, Credentials, Response, form_encode, xsrf_field};
use super::kernel::KernelSocket;
use super::phase::{Counters, Failure, FailureTable, Phase};
use super::sse::EventStream;
use super::{Auth, client};
use crate::error_kind::ErrorKind;
use crate::recorder::CounterId;
use crate::workers::WorkerCtx;

/// Redirects followed before calling it a loop.
const MAX_REDIRECTS: usize = 10;
/// Wait before retrying a 429 without `Retry-After`.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);
/// How many times a progress stream that ended early is opened again, and after how long (a
/// browser's EventSource waits about as long before it reconnects).
const PROGRESS_REOPENS: u32 = 5;
const PROGRESS_REOPEN_AFTER: Duration = Duration::from_secs(1);
/// Polling interval while a stop is pending (DELETE answered 202).
const STOP_POLL: Duration = Duration::from_millis(250);

/// What a worker thread shares with its users.
pub struct Worker {
    pub plan: Arc<JourneyPlan>,
    pub ctx: WorkerCtx,
    pub failures: RefCell<FailureTable>,
}

impl Worker {
    fn succeeded(&self, phase: Phase, started: Instant) {
        self.ctx.record(phase.series(), started, Instant::now());
    }

    fn failed(&self, phase: Phase, failure: Failure, started: Instant) {
        let at = Instant::now();
        self.ctx.count(phase.failed_counter(), 1, started, at);
        self.ctx.error(failure.error_kind(), started, at);
        if self.ctx.clock.is_measured(started) {
            self.failures.borrow_mut().add(phase, failure);
        }
    }

    pub fn count(&self, counter: CounterId, started: Instant) {
        self.ctx.count(counter, 1, started, Instant::now());
    }
}

struct User {
    worker: Rc<Worker>,
    name: String,
    client: Client,
    session: String,
}

/// Runs user number `index` to the end of its journey.
pub async fn run(worker: Rc<Worker>, index: u64, arrived: Instant) {
    let plan = worker.plan.clone();
    let name = format!("{}{index}", plan.user_prefix);
    let session = format!("edgeload-{:x}-{index}", std::process::id());
    let mut user = User {
        client: Client::new(plan.hub.clone(), plan.timeout),
        worker: worker.clone(),
        name,
        session,
    };
    worker.count(Counters::USERS_STARTED, arrived);
    if user.journey().await {
        worker.count(Counters::USERS_COMPLETED, arrived);
    }
}

impl User {
    fn plan(&self) -> &JourneyPlan {
        &self.worker.plan
    }

    /// Runs `phase`: its latency on success, its failure otherwise.
    async fn phase<T>(&mut self, phase: Phase, f: impl AsyncFnOnce(&mut User) -> Result<T, Failure>) -> Option<T> {
        let started = Instant::now();
        match f(self).await {
            Ok(v) => {
                self.worker.succeeded(phase, started);
                Some(v)
            }
            Err(failure) => {
                self.worker.failed(phase, failure, started);
                None
            }
        }
    }

    /// The whole journey; true when every phase succeeded.
    async fn journey(&mut self) -> bool {
        if self.phase(Phase::Login, User::login).await.is_none() {
            return false;
        }
        if self.phase(Phase::SpawnRequest, User::request_spawn).await.is_none() {
            return false;
        }
        let mut ok = self.phase(Phase::SpawnReady, User::await_ready).await.is_some();
        if self.plan().spawn_only {
            return ok;
        }
        if ok && matches!(self.client.credentials, Credentials::Cookies) {
            ok = self.phase(Phase::ServerAuth, User::server_auth).await.is_some();
        }
        let mut kernel = None;
        if ok {
            kernel = self.phase(Phase::KernelStart, User::start_kernel).await;
            ok = kernel.is_some();
        }
        let mut socket = None;
        if let Some(id) = &kernel {
            let id = id.clone();
            socket = self
                .phase(Phase::WsConnect, async |u: &mut User| u.connect_ws(&id).await)
                .await;
            ok = socket.is_some();
        }
        if let Some(s) = &mut socket {
            ok = self.execute_loop(s).await;
        }
        if let Some(s) = socket {
            s.close().await;
        }
        let stopped = self
            .phase(Phase::Stop, async |u: &mut User| u.stop(kernel.as_deref()).await)
            .await;
        ok && stopped.is_some()
    }

    /// A request that waits out 429s (see the module documentation).
    async fn call(&mut self, method: Method, path: &str, body: Option<Body>) -> Result<Response, Failure> {
        let deadline = Instant::now() + self.plan().spawn_timeout;
        loop {
            let r = self.client.request(method.clone(), path, body.clone()).await?;
            if r.status != 429 {
                return Ok(r);
            }
            let wait = r.retry_after().unwrap_or(DEFAULT_RETRY_AFTER);
            if Instant::now() + wait > deadline {
                return Err(Failure::RateLimited);
            }
            self.worker.count(Counters::RETRIES_429, Instant::now());
            tokio::time::sleep(wait).await;
        }
    }

    fn user_api(&self, rest: &str) -> String {
        self.client.hub.path(&format!("/hub/api/users/{}{rest}", self.name))
    }

    fn server_path(&self, rest: &str) -> String {
        self.client.hub.path(&format!("/user/{}/{rest}", self.name))
    }

    async fn login(&mut self) -> Result<(), Failure> {
        match self.plan().auth.clone() {
            Auth::Form { password } => self.form_login(&password).await,
            Auth::Token { admin_token } => self.token_login(admin_token).await,
        }
    }

    /// The hub's login form, as a browser submits it: GET sets the `_xsrf` cookie and renders
    /// the same value in a hidden field (JupyterHub 5 and edgehub alike); the POST carries both.
    /// A login that worked answers with a redirect and sets the hub's session cookie, whose name
    /// differs from hub to hub (`jupyterhub-hub-login`, edgehub's `edgehub-token` or whatever its
    /// `session.cookie` says). So rather than look for one name, the session is proven as the
    /// hub itself sees it: `GET /hub/api/user` with the cookies must name this user.
    async fn form_login(&mut self, password: &str) -> Result<(), Failure> {
        let path = self.client.hub.path("/hub/login");
        let page = self.call(Method::GET, &path, None).await?;
        if page.status != 200 {
            return Err(Failure::from_status(page.status));
        }
        let xsrf = xsrf_field(&String::from_utf8_lossy(&page.body))
            .or_else(|| self.client.jar.get("_xsrf", &path).map(str::to_owned))
            .ok_or(Failure::NoXsrf)?;
        let form = form_encode(&[("username", &self.name), ("password", password), ("_xsrf", &xsrf)]);
        let body = Body {
            content_type: "application/x-www-form-urlencoded",
            bytes: Bytes::from(form),
        };
        let r = self.call(Method::POST, &path, Some(body)).await?;
        if !matches!(r.status, 302 | 303) {
            // A refused login renders the form again (403 on JupyterHub and edgehub).
            return Err(Failure::from_status(r.status));
        }
        self.client.credentials = Credentials::Cookies;
        let r = self
            .call(Method::GET, &self.client.hub.path("/hub/api/user"), None)
            .await?;
        match r.status {
            200 if r.json().is_some_and(|v| v["name"] == self.name.as_str()) => Ok(()),
            200 | 401 | 403 => Err(Failure::NoSession),
            status => Err(Failure::from_status(status)),
        }
    }

    /// With an admin token: create the user (409: it exists) and a token for it.
    async fn token_login(&mut self, admin_token: String) -> Result<(), Failure> {
        self.client.credentials = Credentials::Token(admin_token);
        let r = self.call(Method::POST, &self.user_api(""), None).await?;
        if !matches!(r.status, 201 | 409) {
            return Err(Failure::from_status(r.status));
        }
        let body = Body::json(&json!({"note": "edgeload journey", "expires_in": 86400}));
        let r = self.call(Method::POST, &self.user_api("/tokens"), Some(body)).await?;
        if !matches!(r.status, 200 | 201) {
            return Err(Failure::from_status(r.status));
        }
        let token = r
            .json()
            .and_then(|v| v["token"].as_str().map(str::to_owned))
            .ok_or(Failure::BadResponse)?;
        self.client.credentials = Credentials::Token(token);
        Ok(())
    }

    async fn request_spawn(&mut self) -> Result<(), Failure> {
        let r = self
            .call(Method::POST, &self.user_api("/server"), Some(Body::json(&json!({}))))
            .await?;
        match r.status {
            201 | 202 => Ok(()),
            s => Err(Failure::from_status(s)),
        }
    }

    /// Follows `GET …/server/progress` until `ready` or `failed`, within `--spawn-timeout`. A
    /// stream that ends or breaks before either is opened again, as a browser's EventSource does
    /// (a hub replica that stopped mid-spawn, its spawn carried on by another), a few times.
    async fn await_ready(&mut self) -> Result<(), Failure> {
        let deadline = tokio::time::Instant::now() + self.plan().spawn_timeout;
        let mut reopened = 0;
        loop {
            match self.follow_progress(deadline).await {
                Err(Failure::ProgressEnded | Failure::Http(ErrorKind::Reset | ErrorKind::Closed))
                    if reopened < PROGRESS_REOPENS
                        && tokio::time::Instant::now() + PROGRESS_REOPEN_AFTER < deadline =>
                {
                    reopened += 1;
                    tokio::time::sleep(PROGRESS_REOPEN_AFTER).await;
                }
                other => return other,
            }
        }
    }

    /// One progress stream, to its `ready` or `failed` event or its end.
    async fn follow_progress(&mut self, deadline: tokio::time::Instant) -> Result<(), Failure> {
        let path = self.user_api("/server/progress");
        let (parts, mut body) = loop {
            let (parts, body) = self
                .client
                .request_stream(Method::GET, &path, &[(header::ACCEPT, "text/event-stream")])
                .await?;
            if parts.status != 429 {
                break (parts, body);
            }
            let wait = parts
                .headers
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()?.trim().parse::<f64>().ok())
                .map_or(DEFAULT_RETRY_AFTER, Duration::from_secs_f64);
            if tokio::time::Instant::now() + wait > deadline {
                return Err(Failure::RateLimited);
            }
            self.worker.count(Counters::RETRIES_429, Instant::now());
            tokio::time::sleep(wait).await;
        };
        if parts.status != 200 {
            return Err(Failure::from_status(parts.status.as_u16()));
        }
        let mut events = EventStream::default();
        let follow = async {
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| Failure::Http(ErrorKind::from_hyper(&e)))?;
                let Ok(data) = frame.into_data() else { continue };
                for event in events.feed(&data) {
                    let Ok(v) = serde_json::from_str::<serde_json::Value>(&event) else {
                        continue;
                    };
                    if v["ready"] == true {
                        return Ok(());
                    }
                    if v["failed"] == true {
                        return Err(Failure::SpawnFailed);
                    }
                }
            }
            Err(Failure::ProgressEnded)
        };
        tokio::time::timeout_at(deadline, follow)
            .await
            .map_err(|_| Failure::Http(ErrorKind::Timeout))?
    }

    /// Form login only: `GET /user/{name}/files/` and its redirects (the hub's OAuth authorize,
    /// the server's callback) until the server has set its `jupyterhub-user-{name}` cookie. The
    /// files handler requires a login in every jupyter_server, with or without JupyterLab (the
    /// server's landing page may not); what it answers afterwards (a 403 for a directory) does
    /// not matter.
    async fn server_auth(&mut self) -> Result<(), Failure> {
        let mut path = self.server_path("files/");
        let mut seen = HashSet::new();
        for _ in 0..=MAX_REDIRECTS {
            // The chain comes back to where it started once the cookie is set; the same URL
            // with the same cookies, though, can only answer the same way again.
            let cookies = self.client.jar.header_for(&path).unwrap_or_default();
            if !seen.insert(format!("{path}\n{cookies}")) {
                return Err(Failure::RedirectLoop);
            }
            let r = self.call(Method::GET, &path, None).await?;
            match (r.status, r.location()) {
                (301..=303 | 307 | 308, Some(loc)) => {
                    path = same_origin_path(&self.client.hub, &path, loc).ok_or(Failure::BadResponse)?;
                }
                _ => {
                    let cookie = format!("jupyterhub-user-{}", self.name);
                    if self.client.jar.get(&cookie, &self.server_path("")).is_some() {
                        return Ok(());
                    }
                    return Err(Failure::from_status(r.status));
                }
            }
        }
        Err(Failure::RedirectLoop)
    }

    async fn start_kernel(&mut self) -> Result<String, Failure> {
        let body = match &self.plan().kernel {
            Some(k) => json!({ "name": k }),
            None => json!({}),
        };
        let path = self.server_path("api/kernels");
        if matches!(self.client.credentials, Credentials::Cookies) && self.client.jar.get("_xsrf", &path).is_none() {
            // jupyter_server compares the `_xsrf` cookie with `X-XSRFToken` (double submit);
            // when no page of the server set one, a client may choose it, as a browser script would.
            let cookie = format!("_xsrf={}; Path={}", self.session, self.server_path(""));
            self.client.jar.store(&path, &cookie);
        }
        let r = self.call(Method::POST, &path, Some(Body::json(&body))).await?;
        if r.status != 201 {
            return Err(Failure::from_status(r.status));
        }
        r.json()
            .and_then(|v| v["id"].as_str().map(str::to_owned))
            .ok_or(Failure::BadResponse)
    }

    async fn connect_ws(&mut self, kernel_id: &str) -> Result<KernelSocket, Failure> {
        let path = self.server_path(&format!("api/kernels/{kernel_id}/channels"));
        let scheme = if self.client.hub.is_tls() { "wss" } else { "ws" };
        let url = format!(
            "{scheme}://{}{path}?session_id={}",
            self.client.hub.endpoint.authority, self.session
        );
        let headers = self.client.auth_headers(&path);
        let timeout = self.plan().timeout;
        let connect = KernelSocket::connect(&self.client.hub, &url, headers, self.session.clone(), self.name.clone());
        tokio::time::timeout(timeout, connect)
            .await
            .map_err(|_| Failure::Http(ErrorKind::Timeout))?
    }

    /// `--executes` round trips (or until `--session-length`), `--think-time` apart. A failed
    /// check is counted and the loop goes on; a dead socket ends it. True when all succeeded.
    async fn execute_loop(&mut self, socket: &mut KernelSocket) -> bool {
        let plan = self.worker.plan.clone();
        let session_end = plan.session_length.map(|d| Instant::now() + d);
        let mut all_ok = true;
        let mut done = 0u64;
        loop {
            if plan.executes > 0 && done >= plan.executes {
                break;
            }
            if done > 0 {
                let mut wait = plan.think_time;
                if let Some(end) = session_end {
                    wait = wait.min(end.saturating_duration_since(Instant::now()));
                }
                tokio::time::sleep(wait).await;
            }
            if session_end.is_some_and(|end| Instant::now() >= end) {
                break;
            }
            let started = Instant::now();
            let result = socket.execute(&plan.code, plan.timeout).await;
            done += 1;
            match result.and_then(|o| o.check(plan.expect.as_deref())) {
                Ok(()) => {
                    self.worker.succeeded(Phase::Execute, started);
                    if plan.expect.is_some() {
                        self.worker.count(Counters::EXECUTES_CHECKED, started);
                    }
                }
                Err(f) => {
                    self.worker.failed(Phase::Execute, f, started);
                    all_ok = false;
                    if matches!(f, Failure::WsClosed | Failure::Http(_)) {
                        break;
                    }
                }
            }
        }
        all_ok
    }

    /// Deletes the kernel (when one was started), then the server, and waits until the hub no
    /// longer lists it.
    async fn stop(&mut self, kernel_id: Option<&str>) -> Result<(), Failure> {
        let mut kernel_failure = None;
        if let Some(id) = kernel_id {
            let path = self.server_path(&format!("api/kernels/{id}"));
            match self.call(Method::DELETE, &path, None).await {
                Ok(r) if r.status == 204 => {}
                Ok(r) => kernel_failure = Some(Failure::from_status(r.status)),
                Err(f) => kernel_failure = Some(f),
            }
        }
        let r = self.call(Method::DELETE, &self.user_api("/server"), None).await?;
        match r.status {
            204 => {}
            202 => {
                let deadline = Instant::now() + self.plan().spawn_timeout;
                loop {
                    tokio::time::sleep(STOP_POLL).await;
                    let r = self.call(Method::GET, &self.user_api(""), None).await?;
                    if r.status != 200 {
                        return Err(Failure::from_status(r.status));
                    }
                    let model = r.json().ok_or(Failure::BadResponse)?;
                    let server = &model["servers"][""];
                    if server.is_null() || server["stopped"] == true {
                        break;
                    }
                    if Instant::now() >= deadline {
                        return Err(Failure::Http(ErrorKind::Timeout));
                    }
                }
            }
            s => return Err(Failure::from_status(s)),
        }
        kernel_failure.map_or(Ok(()), Err)
    }
}

/// The path to request next for a redirect from `current` to `location`, or `None` when it
/// leaves the hub's origin.
fn same_origin_path(hub: &client::Hub, current: &str, location: &str) -> Option<String> {
    if location.starts_with("http://") || location.starts_with("https://") {
        let uri: http::Uri = location.parse().ok()?;
        let scheme = if hub.is_tls() { "https" } else { "http" };
        if uri.scheme_str() != Some(scheme) || uri.authority()?.as_str() != hub.endpoint.authority {
            return None;
        }
        return Some(uri.path_and_query().map_or("/".to_owned(), |p| p.as_str().to_owned()));
    }
    if location.starts_with("//") {
        return None;
    }
    if location.starts_with('/') {
        return Some(location.to_owned());
    }
    let base = current.split('?').next().unwrap_or("/");
    let dir = &base[..base.rfind('/').map_or(0, |i| i + 1)];
    Some(format!("{dir}{location}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_stay_on_the_hub_origin() {
        let hub = client::Hub::parse("http://127.0.0.1:8000/", &Default::default()).unwrap();
        let cases = [
            (
                "/user/a/",
                "/hub/api/oauth2/authorize?x=1",
                Some("/hub/api/oauth2/authorize?x=1"),
            ),
            ("/user/a/", "http://127.0.0.1:8000/user/a/tree", Some("/user/a/tree")),
            ("/user/a/oauth_callback?c=1", "lab", Some("/user/a/lab")),
            ("/user/a/", "http://example.org/", None),
            ("/user/a/", "//example.org/x", None),
            ("/user/a/", "https://127.0.0.1:8000/", None),
        ];
        for (current, loc, want) in cases {
            assert_eq!(same_origin_path(&hub, current, loc).as_deref(), want, "{loc}");
        }
    }
}
