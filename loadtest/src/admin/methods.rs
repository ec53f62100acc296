//! Route add / get-all / delete latency at several concurrency levels, as traefik-proxy's
//! `methods` benchmark of configurable-http-proxy does (levels 1, 10, 20, 50).
//!
//! For each level *c*, in order: `count` adds of fresh routes by *c* callers at once (each on its
//! own keep-alive connection, back to back: the closed model), then `get_all_count` reads of the
//! whole table, then the deletes of the routes just added, so the table ends as it began. Each
//! (method, level) is its own latency series, named `add_c10`, `get_all_c10`, `delete_c10`.

use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::admin::client::{ApiConn, ApiResponse, ApiTarget, count_routes, expect_status};
use crate::error_kind::ErrorKind;
use crate::recorder::{Layout, Series, SeriesId};
use crate::workers::WorkerCtx;

/// The three API operations measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiMethod {
    Add,
    GetAll,
    Delete,
}

impl ApiMethod {
    pub fn label(self) -> &'static str {
        match self {
            ApiMethod::Add => "add",
            ApiMethod::GetAll => "get_all",
            ApiMethod::Delete => "delete",
        }
    }

    fn expected_status(self) -> u16 {
        match self {
            ApiMethod::Add => 201,
            ApiMethod::GetAll => 200,
            ApiMethod::Delete => 204,
        }
    }
}

const METHODS: [ApiMethod; 3] = [ApiMethod::Add, ApiMethod::GetAll, ApiMethod::Delete];

/// A validated methods run.
#[derive(Debug)]
pub struct MethodsPlan {
    pub api: ApiTarget,
    pub levels: Vec<usize>,
    /// Routes added (and deleted) per level.
    pub count: usize,
    /// `GET /api/routes` calls per level.
    pub get_all_count: usize,
    /// Route keys start with this (e.g. `/edgeload-1234-1700000000000`).
    pub key_prefix: String,
    pub timeout: Duration,
}

/// One (method, level) phase.
#[derive(Debug, Clone, PartialEq)]
pub struct PhaseResult {
    pub method: ApiMethod,
    pub concurrency: usize,
    pub ops: u64,
    pub errors: u64,
    pub seconds: f64,
    /// Routes in the first `GET /api/routes` answer of the phase.
    pub routes_seen: Option<usize>,
}

/// The series of `levels`: `add_cN`, `get_all_cN`, `delete_cN` for each level, in that order.
/// Their names are built at run time and live for the rest of the process.
pub fn layout(levels: &[usize]) -> Layout {
    let series: Vec<Series> = levels
        .iter()
        .flat_map(|c| {
            METHODS.iter().map(move |m| {
                let name: &'static str = Box::leak(format!("{}_c{c}", m.label()).into_boxed_str());
                let description: &'static str = Box::leak(
                    format!("{} at concurrency {c}: request to the end of the response", m.label()).into_boxed_str(),
                );
                Series { name, description }
            })
        })
        .collect();
    Layout {
        series: Box::leak(series.into_boxed_slice()),
        counters: &["sent"],
    }
}

/// The route keys added and deleted at level `c`.
pub fn level_keys(plan: &MethodsPlan, c: usize) -> Vec<String> {
    (0..plan.count)
        .map(|i| format!("{}/c{c}/{i}", plan.key_prefix))
        .collect()
}

/// Runs every level in turn (one worker thread).
pub async fn worker(ctx: WorkerCtx, plan: Arc<MethodsPlan>, quiet: bool) -> Vec<PhaseResult> {
    let mut out = Vec::new();
    for (li, &c) in plan.levels.iter().enumerate() {
        let keys = level_keys(&plan, c);
        for (mi, method) in METHODS.into_iter().enumerate() {
            let n = if method == ApiMethod::GetAll {
                plan.get_all_count
            } else {
                plan.count
            };
            let r = phase(&ctx, &plan, SeriesId(li * 3 + mi), method, c, n, &keys).await;
            if !quiet {
                eprintln!(
                    "{} c={c}: {} calls in {:.2} s ({:.0}/s), {} errors",
                    method.label(),
                    r.ops,
                    r.seconds,
                    r.ops as f64 / r.seconds.max(1e-9),
                    r.errors
                );
            }
            out.push(r);
        }
    }
    out
}

async fn phase(
    ctx: &WorkerCtx,
    plan: &MethodsPlan,
    series: SeriesId,
    method: ApiMethod,
    concurrency: usize,
    n: usize,
    keys: &[String],
) -> PhaseResult {
    let next = Cell::new(0usize);
    let errors = Cell::new(0u64);
    let routes_seen = Cell::new(None);
    let started = Instant::now();
    let callers = (0..concurrency.min(n)).map(|_| async {
        let mut conn: Option<ApiConn> = None;
        loop {
            let i = next.get();
            if i >= n {
                break;
            }
            next.set(i + 1);
            let t0 = Instant::now();
            let keep_body = method == ApiMethod::GetAll && i == 0;
            let result =
                tokio::time::timeout(plan.timeout, call(&plan.api, &mut conn, method, &keys[i], keep_body)).await;
            let t1 = Instant::now();
            ctx.count(crate::recorder::CounterId(0), 1, t0, t1);
            let failure = match result {
                Ok(Ok(response)) => {
                    ctx.record(series, t0, t1);
                    if let Some(body) = &response.body {
                        routes_seen.set(count_routes(body));
                    }
                    expect_status(response.status, method.expected_status()).err()
                }
                Ok(Err(kind)) => Some(kind),
                Err(_) => {
                    conn = None;
                    Some(ErrorKind::Timeout)
                }
            };
            if let Some(kind) = failure {
                ctx.error(kind, t0, t1);
                errors.set(errors.get() + 1);
            }
        }
    });
    futures_util::future::join_all(callers).await;
    PhaseResult {
        method,
        concurrency,
        ops: n as u64,
        errors: errors.get(),
        seconds: started.elapsed().as_secs_f64(),
        routes_seen: routes_seen.get(),
    }
}

async fn call(
    api: &ApiTarget,
    conn: &mut Option<ApiConn>,
    method: ApiMethod,
    key: &str,
    keep_body: bool,
) -> Result<ApiResponse, ErrorKind> {
    match method {
        ApiMethod::Add => api.add(conn, key).await,
        ApiMethod::GetAll => api.get_all(conn, keep_body).await,
        ApiMethod::Delete => api.delete(conn, key).await,
    }
}
