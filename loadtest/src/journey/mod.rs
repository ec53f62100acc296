//! The notebook user journey (`edgeload journey HUB_URL`): simulated users arrive at a fixed
//! rate (open model) and each goes through JupyterHub's REST API and a kernel WebSocket, as a
//! notebook user does: log in (form or admin token), start a server, follow its progress
//! stream until ready, start a kernel, open its WebSocket, run `execute_request`s checking the
//! output, stop. It speaks only the public API, so it runs against stock JupyterHub and against
//! anything that implements the same API, edgehub among them. Nothing in it depends on which hub
//! answers: the form login, for one, is proven by the hub's `GET /hub/api/user`, not by a
//! session cookie's name, which differs between hubs.
//!
//! Each phase is a latency series ([`phase::LAYOUT`]), recorded through the same
//! [`Recorder`]/[`Timeline`]/[`Report`] as every scenario; failures are counted per phase and
//! reason ([`phase::FailureTable`]) and added to the JSON report as `failures`.
//!
//! Threads: users are spread round-robin over worker threads, each a single-threaded tokio
//! runtime (a user never crosses threads). Arrivals are evenly spaced at `--users-per-second`;
//! user *k* is due at *k* / rate after the start.

mod client;
mod cookies;
mod dates;
mod kernel;
mod phase;
mod sse;
mod user;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use serde_json::{Map, Value, json};

use crate::cli::{ConfigError, OutputArgs};
use crate::duration_arg::parse_duration;
use crate::error_kind::ErrorKind;
use crate::http_load::RunError;
use crate::progress::Progress;
use crate::recorder::RunClock;
use crate::report::{LoadModelKind, OutputFiles, Report, text};
use crate::workers::{WorkerCtx, run_workers};

pub use client::Hub;
pub use phase::{Failure, FailureTable, LAYOUT, Phase};

#[derive(Args, Debug, Clone)]
pub struct JourneyArgs {
    /// The hub's public URL, e.g. http://127.0.0.1:8000/ or https://… (a base_url prefix is kept)
    #[arg(value_name = "HUB_URL")]
    pub hub_url: String,
    #[command(flatten)]
    pub tls: crate::tls::TlsOptions,
    /// Users arriving per second (open model)
    #[arg(short = 'r', long, value_name = "USERS/S", default_value_t = 1.0)]
    pub users_per_second: f64,
    /// Users in all; the arrivals then last USERS / rate [default: rate × --duration]
    #[arg(short = 'n', long, value_name = "N", conflicts_with = "duration")]
    pub users: Option<u64>,
    /// How long users keep arriving
    #[arg(short, long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Form login (POST /hub/login) with this password for every user
    #[arg(long, value_name = "PASSWORD", conflicts_with = "token", default_value = "edgeload")]
    pub password: String,
    /// Admin API token (scopes admin:users, tokens): create each user and a token for it
    /// instead of the form login
    #[arg(long, value_name = "TOKEN", env = "EDGELOAD_HUB_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// User names are PREFIX0, PREFIX1, …
    #[arg(long, value_name = "PREFIX", default_value = "edgeload-")]
    pub user_prefix: String,
    /// Executes per session (0: until --session-length)
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub executes: u64,
    /// Longest time a user spends in the execute loop
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub session_length: Option<Duration>,
    /// Pause between two executes
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    pub think_time: Duration,
    /// Code each execute runs
    #[arg(long, default_value = "1+1")]
    pub code: String,
    /// Expected output (execute_result text/plain or stdout), compared after trimming
    #[arg(long, default_value = "2", conflicts_with = "no_check")]
    pub expect: String,
    /// Do not check the output (only that execute_reply is ok)
    #[arg(long)]
    pub no_check: bool,
    /// Kernel name for POST /api/kernels [default: the server's default kernel]
    #[arg(long, value_name = "NAME")]
    pub kernel: Option<String>,
    /// Per request (and per execute), connect included
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Longest wait for a server to become ready, to stop, or for 429s to clear
    #[arg(long, value_name = "DURATION", default_value = "120s", value_parser = parse_duration)]
    pub spawn_timeout: Duration,
    /// Worker threads
    #[arg(short, long, value_name = "N", default_value_t = 1)]
    pub threads: usize,
    /// A spawn storm: log in, start the server, wait until it is ready, and leave it running
    /// (no kernel, no stop), e.g. to measure a hub under many arrivals and then its idle users
    #[arg(long)]
    pub spawn_only: bool,
    /// No live progress on stderr
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub scenario_file: crate::scenario::ScenarioArg,
}

/// How users log in.
#[derive(Debug, Clone)]
pub enum Auth {
    Form { password: String },
    Token { admin_token: String },
}

impl Auth {
    fn label(&self) -> &'static str {
        match self {
            Auth::Form { .. } => "form",
            Auth::Token { .. } => "token",
        }
    }
}

/// A validated journey run.
#[derive(Debug, Clone)]
pub struct JourneyPlan {
    pub hub_url: String,
    pub hub: Hub,
    pub auth: Auth,
    pub users: u64,
    pub users_per_second: f64,
    pub user_prefix: String,
    pub executes: u64,
    pub session_length: Option<Duration>,
    pub think_time: Duration,
    pub code: String,
    pub expect: Option<String>,
    pub kernel: Option<String>,
    pub timeout: Duration,
    pub spawn_timeout: Duration,
    pub threads: usize,
    /// Stop each journey at a ready server, left running.
    pub spawn_only: bool,
}

fn invalid(flag: &'static str, value: impl ToString, expected: &'static str) -> ConfigError {
    ConfigError::Invalid {
        flag,
        value: value.to_string(),
        expected,
    }
}

impl JourneyArgs {
    pub fn to_plan(&self) -> Result<JourneyPlan, ConfigError> {
        let rate = self.users_per_second;
        if !(rate.is_finite() && rate > 0.0) {
            return Err(invalid("--users-per-second", rate, "expected a rate > 0"));
        }
        let users = match self.users {
            Some(0) => return Err(invalid("--users", 0, "expected at least 1")),
            Some(n) => n,
            None => ((rate * self.duration.as_secs_f64()).floor() as u64).max(1),
        };
        if self.executes == 0 && self.session_length.is_none() {
            return Err(invalid(
                "--executes",
                0,
                "0 means \"until --session-length\", so give --session-length too",
            ));
        }
        for (flag, d) in [("--timeout", self.timeout), ("--spawn-timeout", self.spawn_timeout)] {
            if d.is_zero() {
                return Err(invalid(flag, "0s", "expected a duration above zero"));
            }
        }
        if self.threads == 0 {
            return Err(invalid("--threads", 0, "expected at least 1"));
        }
        if self.user_prefix.is_empty() || self.user_prefix.contains(['/', '?', '#', ' ', '%']) {
            return Err(invalid(
                "--user-prefix",
                &self.user_prefix,
                "expected a non-empty name without / ? # % or spaces",
            ));
        }
        let hub = Hub::parse(&self.hub_url, &self.tls).map_err(|e| ConfigError::Invalid {
            flag: "HUB_URL",
            value: e,
            expected: "expected http[s]://host[:port][/prefix/]",
        })?;
        let auth = match &self.token {
            Some(t) => Auth::Token { admin_token: t.clone() },
            None => Auth::Form {
                password: self.password.clone(),
            },
        };
        Ok(JourneyPlan {
            hub_url: self.hub_url.clone(),
            hub,
            auth,
            users,
            users_per_second: rate,
            user_prefix: self.user_prefix.clone(),
            executes: self.executes,
            session_length: self.session_length,
            think_time: self.think_time,
            code: self.code.clone(),
            expect: (!self.no_check).then(|| self.expect.clone()),
            kernel: self.kernel.clone(),
            timeout: self.timeout,
            spawn_timeout: self.spawn_timeout,
            threads: self.threads.min(users as usize).max(1),
            spawn_only: self.spawn_only,
        })
    }
}

impl JourneyPlan {
    /// How long users keep arriving.
    pub fn arrival_window(&self) -> Duration {
        Duration::from_secs_f64(self.users as f64 / self.users_per_second)
    }

    /// An upper bound of one user's journey, for the progress display's total.
    fn longest_journey(&self) -> Duration {
        let session = match (self.executes, self.session_length) {
            (0, Some(s)) => s,
            (n, s) => {
                let by_count = (self.think_time + self.timeout) * n as u32;
                s.map_or(by_count, |s| s.min(by_count))
            }
        };
        self.spawn_timeout * 2 + self.timeout * 6 + session
    }

    fn parameters(&self) -> Map<String, Value> {
        let mut p = Map::new();
        p.insert("auth".into(), self.auth.label().into());
        p.insert("users".into(), self.users.into());
        p.insert("users_per_second".into(), json!(self.users_per_second));
        p.insert("user_prefix".into(), self.user_prefix.clone().into());
        p.insert("executes".into(), self.executes.into());
        p.insert(
            "session_length_ms".into(),
            self.session_length
                .map_or(Value::Null, |d| json!(d.as_secs_f64() * 1e3)),
        );
        p.insert("think_time_ms".into(), json!(self.think_time.as_secs_f64() * 1e3));
        p.insert("code".into(), self.code.clone().into());
        p.insert("expect".into(), self.expect.clone().map_or(Value::Null, Value::from));
        p.insert("kernel".into(), self.kernel.clone().map_or(Value::Null, Value::from));
        p.insert("timeout_ms".into(), json!(self.timeout.as_secs_f64() * 1e3));
        p.insert("spawn_timeout_ms".into(), json!(self.spawn_timeout.as_secs_f64() * 1e3));
        p.insert("threads".into(), self.threads.into());
        p
    }
}

/// A finished journey run: the common report plus the failures by phase and reason.
pub struct JourneyReport {
    pub report: Report,
    pub failures: FailureTable,
}

impl JourneyReport {
    /// The `edgeload-report/1` document with `failures` added.
    pub fn to_json(&self) -> Value {
        let mut v = crate::report::json::to_json(&self.report);
        if let Value::Object(m) = &mut v {
            m.insert("failures".into(), Value::Object(self.failures.to_json()));
        }
        v
    }

    pub fn render_text(&self) -> String {
        let mut s = text::render(&self.report);
        let failures = self.failures.render_text();
        if !failures.is_empty() {
            s.push_str("failures by phase:\n");
            s.push_str(&failures);
        }
        s
    }

    pub fn write(&self, files: &OutputFiles) -> anyhow::Result<()> {
        if let Some(p) = &files.json {
            let text = serde_json::to_string_pretty(&self.to_json())?;
            std::fs::write(p, text).with_context(|| format!("cannot write {}", p.display()))?;
        }
        let rest = OutputFiles {
            json: None,
            hdr: files.hdr.clone(),
            html: files.html.clone(),
        };
        rest.write(&self.report)?;
        Ok(())
    }
}

/// Runs the journey for every user and returns the report. Blocks until the last user is done.
pub fn run(plan: &JourneyPlan, mut progress: Progress) -> Result<JourneyReport, RunError> {
    let threads = plan.threads;
    let plan = Arc::new(plan.clone());
    let clock = RunClock::starting_now(Duration::ZERO, plan.arrival_window() + plan.longest_journey());
    let body_plan = plan.clone();
    let finished = run_workers(LAYOUT, clock, threads, &mut progress, move |ctx| {
        run_users(body_plan.clone(), ctx)
    })?;
    let ended = Instant::now();
    let mut failures = FailureTable::default();
    for f in &finished.outputs {
        failures.merge(f);
    }
    let mut report = Report::new(
        "journey",
        LoadModelKind::Open,
        LAYOUT,
        &clock,
        finished.totals,
        finished.rows,
        finished.generator,
    );
    // The clock's end was an upper bound; the run lasted until the last user finished.
    report.duration = ended - clock.measure_from;
    report.parameters = plan.parameters();
    report.targets = vec![plan.hub_url.clone()];
    report.environment_extra.insert("keep_alive".into(), true.into());
    report
        .environment_extra
        .insert("http_version".into(), "HTTP/1.1".into());
    report.environment_extra.insert("tls".into(), plan.hub.is_tls().into());
    let unfinished = plan.users - report.counter("users_completed").unwrap_or(0);
    if unfinished > 0 {
        report.warnings.push(format!(
            "{unfinished} of {} users did not complete their journey (see failures by phase)",
            plan.users
        ));
    }
    if let Some(hint) = no_kernels_hint(&failures) {
        report.warnings.push(hint);
    }
    Ok(JourneyReport { report, failures })
}

/// A 404 from `POST …/api/kernels` means the user's server has no kernels API (edgehub's
/// built-in server is one such), not that the platform failed: say so, and what to do.
fn no_kernels_hint(failures: &FailureTable) -> Option<String> {
    let n = failures.count(Phase::KernelStart, Failure::Http(ErrorKind::Status(404)));
    (n > 0).then(|| {
        format!(
            "kernel_start answered 404 for {n} user(s): their servers have no Jupyter kernels API \
             (edgehub's built-in server has none); run jupyterhub-singleuser or jupyter-server as \
             the user servers, or pass --spawn-only to stop the journey once servers are ready"
        )
    })
}

/// One worker's share of the users: user *k* goes to worker *k* mod threads and arrives at its
/// due time. Returns the failures its users met.
async fn run_users(plan: Arc<JourneyPlan>, ctx: WorkerCtx) -> FailureTable {
    let (index, threads, clock) = (ctx.index, ctx.threads, ctx.clock);
    let worker = Rc::new(user::Worker {
        plan: plan.clone(),
        ctx,
        failures: RefCell::new(FailureTable::default()),
    });
    let mut users = Vec::new();
    for k in (index as u64..plan.users).step_by(threads) {
        let due = clock.start + Duration::from_secs_f64(k as f64 / plan.users_per_second);
        tokio::time::sleep_until(due.into()).await;
        users.push(tokio::task::spawn_local(user::run(worker.clone(), k, due)));
    }
    for u in users {
        let _ = u.await;
    }
    worker.failures.borrow().clone()
}

/// `edgeload journey`: run, print, write the report files.
pub fn command(args: JourneyArgs) -> anyhow::Result<()> {
    args.output.refuse_http_load_thresholds()?;
    let plan = args.to_plan()?;
    let progress = Progress::new(!args.quiet, LoadModelKind::Open);
    let mut result = run(&plan, progress).context("journey run failed")?;
    args.output.check(&mut result.report);
    print!("{}", result.render_text());
    result.write(&args.output.files())?;
    Ok(crate::threshold::verdict(&result.report)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_404_at_kernel_start_is_explained_as_a_server_without_kernels() {
        let mut failures = FailureTable::default();
        failures.add(Phase::Login, Failure::Http(ErrorKind::Status(404)));
        failures.add(Phase::KernelStart, Failure::Http(ErrorKind::Status(503)));
        assert_eq!(no_kernels_hint(&failures), None, "only kernel_start's 404 says so");
        failures.add(Phase::KernelStart, Failure::Http(ErrorKind::Status(404)));
        failures.add(Phase::KernelStart, Failure::Http(ErrorKind::Status(404)));
        let hint = no_kernels_hint(&failures).expect("a hint");
        assert!(hint.starts_with("kernel_start answered 404 for 2 user(s)"), "{hint}");
        assert!(hint.contains("--spawn-only"), "{hint}");
    }
}
