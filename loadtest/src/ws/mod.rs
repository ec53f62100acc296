//! `edgeload ws`: WebSocket scenarios over tokio-tungstenite with small per-socket buffers
//! ([`connect`]): the handshake storm and churn ([`connect_close`]), idle tunnels with memory and
//! descriptors per tunnel ([`idle`]), and echo round trips of small or large messages
//! ([`echo`]). They record through the same [`crate::recorder`] and report through the same
//! [`crate::report`] as HTTP; what only one scenario knows (memory per tunnel, bytes per second)
//! goes under the JSON summary's `ws` key ([`outcome`]).

pub mod args;
pub mod connect;
pub mod connect_close;
pub mod echo;
pub mod fd_limit;
pub mod idle;
pub mod outcome;
pub mod process_sample;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::http_load::RunError;
use crate::progress::Progress;
use crate::recorder::{Layout, RunClock};
use crate::report::{LoadModelKind, Report, per_second};
use crate::schedule::{ArrivalRate, Schedule};
use crate::workers::{Finished, run_workers};
use args::{WsPlan, WsScenario};
use connect_close::Lifecycle;
use echo::EchoPlan;
use outcome::Outcome;

/// The load model of a plan: a rate of new connections or messages is open, the rest closed.
pub fn model(plan: &WsPlan) -> LoadModelKind {
    match (plan.scenario, plan.rate) {
        (WsScenario::Idle, _) | (_, None) => LoadModelKind::Closed,
        (_, Some(_)) => LoadModelKind::Open,
    }
}

/// Runs `plan`. Blocks until the run is over: warm-up + duration + at most a timeout or two for
/// closing handshakes and outstanding echoes.
pub fn run(plan: &WsPlan, mut progress: Progress) -> Result<Outcome, RunError> {
    let clock = RunClock::starting_now(plan.warmup, plan.duration);
    let threads = plan.threads;
    let mut extra = Map::new();
    let mut lines = Vec::new();
    let mut warnings = Vec::new();
    let (layout, finished) = match plan.scenario {
        WsScenario::Handshake | WsScenario::Churn => {
            let churn = plan.scenario == WsScenario::Churn;
            let life = Arc::new(Lifecycle {
                target: plan.target.clone(),
                timeout: plan.timeout,
                hold: if churn { plan.hold } else { Duration::ZERO },
                measure_close: churn,
            });
            let (max, late_after) = (plan.max_connections, plan.late_after);
            let layout = with_tls(
                plan,
                match (churn, plan.rate) {
                    (true, _) => connect_close::CHURN,
                    (false, Some(_)) => connect_close::STORM_OPEN,
                    (false, None) => connect_close::STORM_CLOSED,
                },
            );
            let finished = match plan.rate {
                Some(rate) => {
                    let schedule = Schedule::new(ArrivalRate::Constant(rate), plan.warmup, plan.duration);
                    run_workers(layout, clock, threads, &mut progress, move |ctx| {
                        let share = max.div_ceil(ctx.threads);
                        connect_close::open(ctx, life.clone(), schedule, share, late_after)
                    })?
                }
                None => {
                    let connections = plan.connections;
                    run_workers(layout, clock, threads, &mut progress, move |ctx| {
                        connect_close::closed(ctx, life.clone(), connections)
                    })?
                }
            };
            // Storms: the last series before any `tls_handshake`; churn: the one before `close`.
            let handshake = layout
                .series
                .iter()
                .position(|s| *s == connect_close::HANDSHAKE)
                .unwrap_or(0);
            let opened = finished.totals.histograms[handshake].len();
            extra.insert("handshakes_per_s".into(), json!(per_second(opened, plan.duration)));
            (layout, finished)
        }
        WsScenario::Echo | WsScenario::Large => {
            let layout = with_tls(plan, if plan.rate.is_some() { echo::OPEN } else { echo::CLOSED });
            let echo_plan = Arc::new(EchoPlan {
                target: plan.target.clone(),
                sockets: plan.connections,
                rate_per_socket: plan.rate,
                message_size: plan.message_size,
                timeout: plan.timeout,
                late_after: plan.late_after,
            });
            let finished = run_workers(layout, clock, threads, &mut progress, move |ctx| {
                echo::worker(ctx, echo_plan.clone())
            })?;
            let received = finished.totals.counters[echo::RECEIVED.0];
            let bytes_per_s = per_second(received, plan.duration) * plan.message_size as f64;
            extra.insert("message_size_bytes".into(), plan.message_size.into());
            extra.insert("received_per_s".into(), json!(per_second(received, plan.duration)));
            extra.insert("throughput_bytes_per_s".into(), json!(bytes_per_s.round()));
            lines.push(format!(
                "echoed: {received} messages of {} bytes, {:.1} MiB/s",
                plan.message_size,
                bytes_per_s / 1048576.0
            ));
            (layout, finished)
        }
        WsScenario::Idle => {
            let shared = Arc::new(idle::Tunnels::default());
            let client_baseline = process_sample::sample("self").ok();
            let target_baseline = plan.pid.and_then(|p| process_sample::sample(&p.to_string()).ok());
            let samples = Arc::new(Mutex::new(Vec::new()));
            let sampler = {
                let (shared, samples, pid) = (shared.clone(), samples.clone(), plan.pid);
                std::thread::Builder::new()
                    .name("edgeload-sampler".into())
                    .spawn(move || idle::sample_until_end(clock, pid, shared, samples))
                    .map_err(|error| RunError::Worker { index: threads, error })?
            };
            let (target, tunnels, timeout) = (Arc::new(plan.target.clone()), plan.connections, plan.timeout);
            let worker_shared = shared.clone();
            let layout = with_tls(plan, idle::LAYOUT);
            let finished = run_workers(layout, clock, threads, &mut progress, move |ctx| {
                idle::worker(ctx, target.clone(), tunnels, timeout, worker_shared.clone())
            })?;
            let _ = sampler.join();
            let samples = samples.lock().map(|s| s.clone()).unwrap_or_default();
            let last_open_s = shared.last_open_ns.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1e9;
            let figures = idle::figures(
                plan.connections,
                plan.pid,
                client_baseline,
                target_baseline,
                &samples,
                last_open_s,
            );
            if let Value::Object(m) = figures.json {
                extra.extend(m);
            }
            lines.extend(figures.lines);
            warnings.extend(figures.warnings);
            (layout, finished)
        }
    };
    let mut report = build_report(plan, layout, &clock, finished);
    report.warnings.extend(warnings);
    let mut ws = Map::new();
    ws.insert("scenario".into(), plan.scenario.label().into());
    ws.insert("read_buffer_bytes".into(), plan.read_buffer.into());
    ws.insert("write_buffer_bytes".into(), 0.into());
    ws.extend(extra);
    Ok(Outcome {
        report,
        key: "ws",
        extra: Value::Object(ws),
        lines,
    })
}

/// `layout`, with the `tls_handshake` series for a `wss://` target.
fn with_tls(plan: &WsPlan, layout: Layout) -> Layout {
    if plan.target.is_tls() {
        layout.with_tls_handshake()
    } else {
        layout
    }
}

fn build_report(plan: &WsPlan, layout: Layout, clock: &RunClock, f: Finished<()>) -> Report {
    let mut report = Report::new(
        &format!("ws {}", plan.scenario.label()),
        model(plan),
        layout,
        clock,
        f.totals,
        f.rows,
        f.generator,
    );
    let p = &mut report.parameters;
    p.insert("scenario".into(), plan.scenario.label().into());
    p.insert("connections".into(), plan.connections.into());
    if let Some(r) = plan.rate {
        let key = match plan.scenario {
            WsScenario::Echo | WsScenario::Large => "messages_per_s_per_socket",
            _ => "connections_per_s",
        };
        p.insert(key.into(), json!(r));
        p.insert("late_after_ms".into(), json!(plan.late_after.as_secs_f64() * 1e3));
    }
    match plan.scenario {
        WsScenario::Handshake | WsScenario::Churn if plan.rate.is_some() => {
            p.insert("max_connections".into(), plan.max_connections.into());
        }
        _ => {}
    }
    if plan.scenario == WsScenario::Churn {
        p.insert("hold_ms".into(), json!(plan.hold.as_secs_f64() * 1e3));
    }
    if matches!(plan.scenario, WsScenario::Echo | WsScenario::Large) {
        p.insert("message_size".into(), plan.message_size.into());
    }
    if let Some(pid) = plan.pid {
        p.insert("pid".into(), pid.into());
    }
    p.insert("read_buffer".into(), plan.read_buffer.into());
    p.insert("threads".into(), plan.threads.into());
    p.insert("timeout_ms".into(), json!(plan.timeout.as_secs_f64() * 1e3));
    report.targets = vec![plan.target.url.clone()];
    report
        .environment_extra
        .insert("tls".into(), plan.target.is_tls().into());
    report.environment_extra.insert("websocket".into(), true.into());
    if let Some(missed) = report.counter("missed")
        && missed > 0
    {
        report.warnings.push(format!(
            "{missed} scheduled connections or messages were never started: the connection limit (--max-connections), \
             blocked sockets or the generator could not keep up, so the requested rate was not offered"
        ));
    }
    report
}

/// `edgeload ws …`: validates, runs, prints the summary and writes the files asked for.
pub fn command(args: args::WsArgs) -> anyhow::Result<()> {
    use anyhow::Context;
    args.output.refuse_http_load_thresholds()?;
    let plan = args.to_plan()?;
    let progress = Progress::new(!args.quiet, model(&plan));
    let mut outcome = run(&plan, progress).context("WebSocket run failed")?;
    args.output.check(&mut outcome.report);
    print!("{}", outcome.render_text());
    outcome.write(&args.output.files())?;
    Ok(crate::threshold::verdict(&outcome.report)?)
}
