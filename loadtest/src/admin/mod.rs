//! `edgeload admin`: load on the configurable-http-proxy REST API (the routes a hub pushes).
//! [`methods`] measures add / get-all / delete latency at several concurrency levels;
//! [`churn`] adds and deletes routes at a fixed rate, optionally with an open HTTP load in the
//! same process (`--with-http`) whose tail latency shows what the churn costs the data plane.
//! Both can start from a table pre-populated with many routes ([`bulk`]), and remove what they
//! added at the end. The scenario's own figures go under the JSON summary's `admin` key.

pub mod bulk;
pub mod churn;
pub mod client;
pub mod methods;

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use serde_json::{Map, Value, json};

use crate::cli::{ConfigError, LoadArgs, OutputArgs};
use crate::duration_arg::parse_duration;
use crate::error_kind::ErrorKind;
use crate::http_load::{LoadPlan, RunError};
use crate::progress::Progress;
use crate::recorder::RunClock;
use crate::report::{LoadModelKind, Report, json as report_json, ms, text};
use crate::schedule::{ArrivalRate, Schedule};
use crate::threshold::Threshold;
use crate::workers::run_workers;
use crate::ws::outcome::Outcome;
use bulk::BulkResult;
use churn::ChurnPlan;
use client::ApiTarget;
use methods::MethodsPlan;

/// An admin-API scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AdminScenario {
    /// Add / get-all / delete latency at each --concurrency level (closed model)
    Methods,
    /// Adds and deletes at --rate for the duration (open model), optionally beside --with-http
    Churn,
}

#[derive(Args, Debug)]
pub struct AdminArgs {
    #[arg(value_enum)]
    pub scenario: AdminScenario,
    /// The API's URL, e.g. http://127.0.0.1:8001 (or https://)
    #[arg(value_name = "URL")]
    pub url: String,
    #[command(flatten)]
    pub tls: crate::tls::TlsOptions,
    /// API token, sent as "Authorization: token T"
    #[arg(long, value_name = "T", env = "CONFIGPROXY_AUTH_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// methods: concurrency levels, comma-separated
    #[arg(long, value_name = "N,N,…", value_delimiter = ',', default_value = "1,10,20,50")]
    pub concurrency: Vec<usize>,
    /// methods: routes added, then deleted, at each level
    #[arg(long, value_name = "N", default_value_t = 500)]
    pub count: usize,
    /// methods: GET /api/routes calls at each level
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub get_all_count: usize,
    /// Routes loaded before the measurements (in batches when the API has /api/batch) and
    /// removed after them
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub routes: usize,
    /// Target of every route added
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:9")]
    pub route_target: String,
    /// Leave the pre-populated routes in place at the end
    #[arg(long)]
    pub keep_routes: bool,
    /// churn: adds + deletes per second (required)
    #[arg(short, long, value_name = "PER_S", allow_negative_numbers = true)]
    pub rate: Option<f64>,
    /// churn: churned routes alive at a time
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub window: usize,
    /// churn: API calls in flight at most; slots beyond wait and count as late
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub max_connections: usize,
    /// churn: a call sent later than this after its intended time counts as late
    #[arg(long, value_name = "DURATION", default_value = "2ms", value_parser = parse_duration)]
    pub late_after: Duration,
    /// churn: measured window
    #[arg(short, long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// churn: warm-up before the measured window
    #[arg(short, long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Per API call
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// churn: also run an open HTTP load (GET) against URL for the same warm-up and duration
    #[arg(long, value_name = "URL")]
    pub with_http: Option<String>,
    /// --with-http: requests per second
    #[arg(long, value_name = "REQ/S", default_value_t = 1000.0)]
    pub http_rate: f64,
    /// --with-http: connections at most
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub http_max_connections: usize,
    /// --with-http: worker threads
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub http_threads: usize,
    /// No progress on stderr
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub scenario_file: crate::scenario::ScenarioArg,
}

fn invalid(flag: &'static str, value: impl ToString, expected: &'static str) -> ConfigError {
    ConfigError::Invalid {
        flag,
        value: value.to_string(),
        expected,
    }
}

/// A validated admin run.
pub struct AdminPlan {
    pub scenario: AdminScenario,
    pub api: ApiTarget,
    pub args_routes: usize,
    pub keep_routes: bool,
    pub key_prefix: String,
    pub methods: Option<Arc<MethodsPlan>>,
    pub churn: Option<Arc<ChurnPlan>>,
    pub http: Option<LoadPlan>,
    /// Thresholds on the `--with-http` load (`http.p99<50ms` written, `p99<50ms` judged).
    pub http_thresholds: Vec<Threshold>,
    pub quiet: bool,
}

impl AdminArgs {
    pub fn to_plan(&self) -> Result<AdminPlan, ConfigError> {
        let api =
            ApiTarget::new(&self.url, self.token.as_deref(), &self.route_target, &self.tls).map_err(|e| match e {
                client::ApiError::Token => invalid("--token", "(hidden)", "not a valid header value"),
                client::ApiError::Url(e) => ConfigError::Endpoint(e),
                client::ApiError::Tls(e) => ConfigError::Tls(e),
            })?;
        if self.timeout.is_zero() {
            return Err(invalid("--timeout", "0s", "expected a duration above zero"));
        }
        let key_prefix = format!(
            "/edgeload-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis())
        );
        let mut plan = AdminPlan {
            scenario: self.scenario,
            api: api.clone(),
            args_routes: self.routes,
            keep_routes: self.keep_routes,
            key_prefix: key_prefix.clone(),
            methods: None,
            churn: None,
            http: None,
            http_thresholds: Vec::new(),
            quiet: self.quiet,
        };
        match self.scenario {
            AdminScenario::Methods => {
                if self.concurrency.is_empty() || self.concurrency.contains(&0) {
                    return Err(invalid(
                        "--concurrency",
                        format!("{:?}", self.concurrency),
                        "expected levels of at least 1, e.g. 1,10,20,50",
                    ));
                }
                if self.count == 0 {
                    return Err(invalid("--count", 0, "expected at least 1"));
                }
                plan.methods = Some(Arc::new(MethodsPlan {
                    api,
                    levels: self.concurrency.clone(),
                    count: self.count,
                    get_all_count: self.get_all_count,
                    key_prefix,
                    timeout: self.timeout,
                }));
            }
            AdminScenario::Churn => {
                let rate = match self.rate {
                    Some(r) if r.is_finite() && r > 0.0 => r,
                    Some(r) => return Err(invalid("--rate", r, "expected a rate > 0 per second")),
                    None => {
                        return Err(invalid(
                            "--rate",
                            "(none)",
                            "churn needs --rate, adds + deletes per second",
                        ));
                    }
                };
                if self.duration.is_zero() {
                    return Err(invalid("--duration", "0s", "expected a duration above zero"));
                }
                if self.max_connections == 0 {
                    return Err(invalid("--max-connections", 0, "expected at least 1"));
                }
                plan.churn = Some(Arc::new(ChurnPlan {
                    api,
                    schedule: Schedule::new(ArrivalRate::Constant(rate), self.warmup, self.duration),
                    warmup: self.warmup,
                    duration: self.duration,
                    window: self.window,
                    max_connections: self.max_connections,
                    late_after: self.late_after,
                    timeout: self.timeout,
                    key_prefix,
                }));
                if let Some(url) = &self.with_http {
                    plan.http = Some(self.http_load().to_plan(vec![url.clone()])?);
                }
            }
        }
        if self.with_http.is_some() && self.scenario != AdminScenario::Churn {
            return Err(invalid(
                "--with-http",
                "(set)",
                "only churn runs an HTTP load beside it",
            ));
        }
        Ok(plan)
    }

    /// The `--with-http` load: open, GET, keep-alive, the churn's warm-up and duration.
    fn http_load(&self) -> LoadArgs {
        LoadArgs {
            connections: None,
            threads: Some(self.http_threads),
            rate: Some(self.http_rate),
            rate_from: None,
            rate_to: None,
            max_connections: self.http_max_connections,
            late_after: self.late_after,
            duration: self.duration,
            requests: None,
            warmup: Some(self.warmup),
            timeout: self.timeout,
            no_keepalive: false,
            http2: false,
            tls: self.tls.clone(),
            pin_urls: false,
            method: "GET".into(),
            headers: Vec::new(),
            body: None,
            body_file: None,
            quiet: true,
        }
    }
}

/// Why an admin run could not take place.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Run(#[from] RunError),
    #[error("cannot start the set-up runtime: {0}")]
    Runtime(std::io::Error),
    #[error("loading {routes} routes into {url} failed ({kind}); check the URL and --token")]
    Populate {
        routes: usize,
        url: String,
        kind: ErrorKind,
    },
    #[error("the --with-http load thread panicked")]
    HttpPanicked,
}

fn bulk_json(b: &BulkResult) -> Value {
    json!({ "via": b.via, "seconds": b.seconds, "failed": b.failed })
}

/// Runs `plan`: set-up (pre-population), the measurements, clean-up.
pub fn run(plan: &AdminPlan, progress: Progress) -> Result<Outcome, AdminError> {
    let setup = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(AdminError::Runtime)?;
    let mut keys: Vec<String> = (0..plan.args_routes)
        .map(|i| format!("{}/pre/{i}", plan.key_prefix))
        .collect();
    let prepopulated = keys.len();
    if let Some(c) = &plan.churn {
        keys.extend((0..c.window as u64).map(|j| c.key(j)));
    }
    let loaded = setup
        .block_on(bulk::add_all(&plan.api, &keys))
        .map_err(|kind| AdminError::Populate {
            routes: keys.len(),
            url: plan.api.url.clone(),
            kind,
        })?;
    let mut warnings = Vec::new();
    if loaded.failed > 0 {
        warnings.push(format!(
            "{} of {} routes could not be loaded",
            loaded.failed,
            keys.len()
        ));
    }
    let mut extra = Map::new();
    extra.insert("api".into(), plan.api.url.clone().into());
    extra.insert("prepopulated_routes".into(), prepopulated.into());
    extra.insert("load".into(), bulk_json(&loaded));
    let mut lines = Vec::new();
    let (mut report, leftover) = match (&plan.methods, &plan.churn) {
        (Some(m), _) => run_methods(m, plan.quiet, &mut extra, &mut lines)?,
        (None, Some(c)) => run_churn(
            c,
            plan.http.as_ref(),
            &plan.http_thresholds,
            progress,
            &mut extra,
            &mut lines,
        )?,
        (None, None) => unreachable!("to_plan sets one scenario"),
    };
    let mut remove = leftover;
    if !plan.keep_routes {
        remove.extend(keys.into_iter().take(prepopulated));
    }
    if let Ok(cleaned) = setup.block_on(bulk::remove_all(&plan.api, &remove)) {
        extra.insert("cleanup".into(), bulk_json(&cleaned));
    }
    report.parameters.insert("routes".into(), prepopulated.into());
    report.targets = vec![plan.api.url.clone()];
    report.warnings.extend(warnings);
    extra.insert(
        "scenario".into(),
        match plan.scenario {
            AdminScenario::Methods => "methods",
            AdminScenario::Churn => "churn",
        }
        .into(),
    );
    Ok(Outcome {
        report,
        key: "admin",
        extra: Value::Object(extra),
        lines,
    })
}

fn run_methods(
    plan: &Arc<MethodsPlan>,
    quiet: bool,
    extra: &mut Map<String, Value>,
    lines: &mut Vec<String>,
) -> Result<(Report, Vec<String>), AdminError> {
    let layout = methods::layout(&plan.levels);
    // Phases are counted, not timed: the clock only dates the per-second series.
    let clock = RunClock::starting_now(Duration::ZERO, Duration::from_secs(24 * 3600));
    let started = Instant::now();
    let worker_plan = plan.clone();
    let mut progress = Progress::new(false, LoadModelKind::Closed);
    let finished = run_workers(layout, clock, 1, &mut progress, move |ctx| {
        methods::worker(ctx, worker_plan.clone(), quiet)
    })?;
    let elapsed = started.elapsed();
    let phases = finished.outputs.into_iter().next().unwrap_or_default();
    let mut report = Report::new(
        "admin methods",
        LoadModelKind::Closed,
        layout,
        &clock,
        finished.totals,
        finished.rows,
        finished.generator,
    );
    report.duration = elapsed;
    let p = &mut report.parameters;
    p.insert("concurrency".into(), json!(plan.levels));
    p.insert("count".into(), plan.count.into());
    p.insert("get_all_count".into(), plan.get_all_count.into());
    p.insert("timeout_ms".into(), json!(plan.timeout.as_secs_f64() * 1e3));
    let series = report.series();
    lines.push(format!(
        "{:<8} {:>4} {:>7} {:>7} {:>9} {:>9} {:>9} {:>9}  routes",
        "method", "c", "calls", "errors", "calls/s", "p50 ms", "p99 ms", "max ms"
    ));
    let mut phases_json = Vec::new();
    for (i, ph) in phases.iter().enumerate() {
        let s = &series[i];
        let per_s = ph.ops as f64 / ph.seconds.max(1e-9);
        lines.push(format!(
            "{:<8} {:>4} {:>7} {:>7} {:>9.0} {:>9} {:>9} {:>9}  {}",
            ph.method.label(),
            ph.concurrency,
            ph.ops,
            ph.errors,
            per_s,
            ms(s.p50_us as f64),
            ms(s.p99_us as f64),
            ms(s.max_us as f64),
            ph.routes_seen.map_or(String::new(), |n| n.to_string())
        ));
        phases_json.push(json!({
            "method": ph.method.label(),
            "concurrency": ph.concurrency,
            "series": s.name,
            "calls": ph.ops,
            "errors": ph.errors,
            "seconds": ph.seconds,
            "calls_per_s": per_s,
            "p50_us": s.p50_us,
            "p90_us": s.p90_us,
            "p99_us": s.p99_us,
            "max_us": s.max_us,
            "mean_us": s.mean_us,
            "routes_seen": ph.routes_seen,
        }));
    }
    extra.insert("phases".into(), Value::Array(phases_json));
    // Routes of a level whose deletes failed are removed at clean-up.
    let leftover = if phases
        .iter()
        .any(|p| p.method == methods::ApiMethod::Delete && p.errors > 0)
    {
        plan.levels.iter().flat_map(|&c| methods::level_keys(plan, c)).collect()
    } else {
        Vec::new()
    };
    Ok((report, leftover))
}

/// The churn's report; with `--with-http`, the HTTP load's thresholds are judged on its own
/// report and their outcomes left in the churn report's (the command adds its own after them).
fn run_churn(
    plan: &Arc<ChurnPlan>,
    http: Option<&LoadPlan>,
    http_thresholds: &[Threshold],
    mut progress: Progress,
    extra: &mut Map<String, Value>,
    lines: &mut Vec<String>,
) -> Result<(Report, Vec<String>), AdminError> {
    let http_thread = http
        .map(|h| {
            let h = h.clone();
            std::thread::Builder::new()
                .name("edgeload-http".into())
                .spawn(move || crate::http_load::run(&h, Progress::new(false, LoadModelKind::Open)))
                .map_err(|error| RunError::Worker { index: 1, error })
        })
        .transpose()?;
    let clock = RunClock::starting_now(plan.warmup, plan.duration);
    let worker_plan = plan.clone();
    let finished = run_workers(churn::LAYOUT, clock, 1, &mut progress, move |ctx| {
        churn::worker(ctx, worker_plan.clone())
    })?;
    let sent = finished.outputs.first().copied().unwrap_or(0);
    let mut report = Report::new(
        "admin churn",
        LoadModelKind::Open,
        churn::LAYOUT,
        &clock,
        finished.totals,
        finished.rows,
        finished.generator,
    );
    let p = &mut report.parameters;
    if let ArrivalRate::Constant(r) = plan.schedule.rate() {
        p.insert("calls_per_s".into(), json!(r));
    }
    p.insert("window".into(), plan.window.into());
    p.insert("max_connections".into(), plan.max_connections.into());
    p.insert("late_after_ms".into(), json!(plan.late_after.as_secs_f64() * 1e3));
    p.insert("timeout_ms".into(), json!(plan.timeout.as_secs_f64() * 1e3));
    if let Some(missed) = report.counter("missed")
        && missed > 0
    {
        report.warnings.push(format!(
            "{missed} scheduled API calls were never sent (--max-connections reached): the requested rate was not offered"
        ));
    }
    let mut with_http = Value::Null;
    if let Some(t) = http_thread {
        let http_report = t.join().map_err(|_| AdminError::HttpPanicked)??;
        lines.push(String::new());
        lines.push("--- HTTP load beside the churn ---".into());
        lines.extend(text::render(&http_report).lines().map(str::to_owned));
        with_http = report_json::to_json(&http_report);
        report.thresholds = http_thresholds.iter().map(|t| t.evaluate_on(&http_report)).collect();
    }
    extra.insert("with_http".into(), with_http);
    Ok((report, churn::remaining_keys(plan, sent)))
}

/// `edgeload admin …`: validates, runs, prints the summary and writes the files asked for.
pub fn command(args: AdminArgs) -> anyhow::Result<()> {
    use anyhow::Context;
    let mut plan = args.to_plan()?;
    if plan.http.is_none() {
        args.output.refuse_http_load_thresholds()?;
    }
    // `http.…` thresholds are judged on the `--with-http` load's report, the others on the churn's.
    let (http_thresholds, thresholds): (Vec<Threshold>, Vec<Threshold>) =
        args.output.thresholds.iter().cloned().partition(|t| t.on_http_load);
    plan.http_thresholds = http_thresholds;
    let model = match plan.scenario {
        AdminScenario::Methods => LoadModelKind::Closed,
        AdminScenario::Churn => LoadModelKind::Open,
    };
    let mut outcome = run(&plan, Progress::new(!args.quiet, model)).context("admin API run failed")?;
    let on_http = std::mem::take(&mut outcome.report.thresholds);
    crate::threshold::check(&mut outcome.report, &thresholds);
    outcome.report.thresholds.extend(on_http);
    print!("{}", outcome.render_text());
    outcome.write(&args.output.files())?;
    Ok(crate::threshold::verdict(&outcome.report)?)
}
