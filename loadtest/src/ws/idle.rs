//! Idle tunnels: open N WebSockets, hold them all open for the run, and sample the memory and
//! open descriptors of a target process (`--pid`, e.g. the proxy) and of edgeload itself once a
//! second. With a baseline taken before the first connection, that gives the cost of one tunnel:
//! `(RSS now − RSS before) / tunnels open` and the same for descriptors.
//!
//! Tunnels are opened as fast as [`OPENERS_PER_WORKER`] concurrent handshakes per worker allow.
//! Samples count towards the per-tunnel figures once every tunnel that will open has opened and
//! [`SETTLE`] has passed (allocators return memory lazily); the figures are medians over those
//! samples. Each tunnel reads (and discards) what arrives, so a ping is answered and a tunnel the
//! server closes is noticed and counted as `dropped`.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::recorder::{CounterId, Layout, RunClock, SeriesId};
use crate::workers::WorkerCtx;
use crate::ws::connect::WsTarget;
use crate::ws::connect_close::{HANDSHAKE, RETRY_PAUSE, close_politely, connect, hold_open};
use crate::ws::process_sample::{ProcessSample, median, per_unit, sample};

pub const LAYOUT: Layout = Layout {
    series: &[HANDSHAKE],
    counters: &["sent", "dropped"],
};
const SENT: CounterId = CounterId(0);
const DROPPED: CounterId = CounterId(1);

/// Handshakes in progress at once, per worker thread.
pub const OPENERS_PER_WORKER: usize = 64;
/// Time after the last tunnel opened before samples count.
pub const SETTLE: Duration = Duration::from_secs(1);
/// Time between samples.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// A failed handshake is retried at most this many times per tunnel before the tunnel is given
/// up (and counted as never open).
const ATTEMPTS: u32 = 3;

/// Shared by the workers and the sampler thread.
#[derive(Debug, Default)]
pub struct Tunnels {
    pub open: AtomicUsize,
    /// Nanoseconds after the run start at which the last tunnel opened.
    pub last_open_ns: AtomicU64,
}

/// A worker's part: open its share of `tunnels`, hold them until the end of the run, close them.
pub async fn worker(ctx: WorkerCtx, target: Arc<WsTarget>, tunnels: usize, timeout: Duration, shared: Arc<Tunnels>) {
    let share = ctx.share_of(tunnels);
    let next = Rc::new(Cell::new(0usize));
    let live = Rc::new(Cell::new(0usize));
    let all_closed = Rc::new(tokio::sync::Notify::new());
    let openers: Vec<_> = (0..share.min(OPENERS_PER_WORKER))
        .map(|_| {
            let (ctx, target, next, live, all_closed, shared) = (
                ctx.clone(),
                target.clone(),
                next.clone(),
                live.clone(),
                all_closed.clone(),
                shared.clone(),
            );
            tokio::task::spawn_local(async move {
                while next.get() < share && Instant::now() < ctx.clock.end {
                    // Claim the tunnel before connecting, so that openers never overshoot.
                    next.set(next.get() + 1);
                    let mut attempts = 0;
                    let opened = loop {
                        attempts += 1;
                        let started = Instant::now();
                        let result = connect(&ctx, &target, timeout).await;
                        let done = Instant::now();
                        ctx.count(SENT, 1, started, done);
                        match result {
                            Ok(ws) => break Some((ws, started, done)),
                            Err(kind) => {
                                ctx.error(kind, started, done);
                                if attempts >= ATTEMPTS || done >= ctx.clock.end {
                                    break None;
                                }
                                tokio::time::sleep(RETRY_PAUSE).await;
                            }
                        }
                    };
                    let Some((mut ws, started, done)) = opened else {
                        continue;
                    };
                    ctx.record(SeriesId(0), started, done);
                    shared.open.fetch_add(1, Ordering::Relaxed);
                    shared.last_open_ns.fetch_max(
                        done.saturating_duration_since(ctx.clock.start).as_nanos() as u64,
                        Ordering::Relaxed,
                    );
                    live.set(live.get() + 1);
                    let (ctx, live, all_closed, shared) =
                        (ctx.clone(), live.clone(), all_closed.clone(), shared.clone());
                    tokio::task::spawn_local(async move {
                        match hold_open(&mut ws, ctx.clock.end).await {
                            Ok(()) => {
                                let _ = close_politely(ws, timeout).await;
                            }
                            Err(kind) => {
                                let now = Instant::now();
                                shared.open.fetch_sub(1, Ordering::Relaxed);
                                ctx.count(DROPPED, 1, now, now);
                                ctx.error(kind, now, now);
                            }
                        }
                        live.set(live.get() - 1);
                        if live.get() == 0 {
                            all_closed.notify_one();
                        }
                    });
                }
            })
        })
        .collect();
    for o in openers {
        let _ = o.await;
    }
    while live.get() > 0 {
        all_closed.notified().await;
    }
}

/// One reading during the run.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub t_s: f64,
    pub open: usize,
    pub client: Option<ProcessSample>,
    pub target: Option<ProcessSample>,
}

/// Samples edgeload and `pid` every [`SAMPLE_EVERY`] until shortly before the end of the run.
pub fn sample_until_end(clock: RunClock, pid: Option<u32>, shared: Arc<Tunnels>, out: Arc<Mutex<Vec<Sample>>>) {
    let pid = pid.map(|p| p.to_string());
    let mut at = clock.start + SAMPLE_EVERY;
    // The last sample stays clear of the end, when tunnels start closing.
    while at + Duration::from_millis(200) < clock.end {
        std::thread::sleep(at.saturating_duration_since(Instant::now()));
        let s = Sample {
            t_s: (at - clock.start).as_secs_f64(),
            open: shared.open.load(Ordering::Relaxed),
            client: sample("self").ok(),
            target: pid.as_deref().and_then(|p| sample(p).ok()),
        };
        if let Ok(mut v) = out.lock() {
            v.push(s);
        }
        at += SAMPLE_EVERY;
    }
}

/// The per-tunnel figures of one process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PerTunnel {
    pub baseline: ProcessSample,
    /// Medians over the settled samples.
    pub rss_bytes: f64,
    pub fds: f64,
    pub rss_per_tunnel_bytes: f64,
    pub fds_per_tunnel: f64,
}

/// Medians over `settled` of one process's readings (picked by `pick`), against `baseline`.
pub fn per_tunnel(
    baseline: ProcessSample,
    settled: &[Sample],
    pick: impl Fn(&Sample) -> Option<ProcessSample>,
) -> Option<PerTunnel> {
    let readings: Vec<(ProcessSample, u64)> = settled.iter().filter_map(|s| Some((pick(s)?, s.open as u64))).collect();
    let column = |f: &dyn Fn(&(ProcessSample, u64)) -> f64| -> Option<f64> {
        let mut v: Vec<f64> = readings.iter().map(f).collect();
        median(&mut v)
    };
    Some(PerTunnel {
        baseline,
        rss_bytes: column(&|(s, _)| s.rss_bytes as f64)?,
        fds: column(&|(s, _)| s.fds as f64)?,
        rss_per_tunnel_bytes: column(&|(s, n)| per_unit(s.rss_bytes, baseline.rss_bytes, *n))?,
        fds_per_tunnel: column(&|(s, n)| per_unit(s.fds, baseline.fds, *n))?,
    })
}

/// The samples that count: taken [`SETTLE`] or more after the last tunnel opened, with tunnels
/// open. When there is none (the run was too short), the last sample with tunnels open.
pub fn settled(samples: &[Sample], last_open_s: f64) -> (Vec<Sample>, bool) {
    let good: Vec<Sample> = samples
        .iter()
        .filter(|s| s.open > 0 && s.t_s >= last_open_s + SETTLE.as_secs_f64())
        .copied()
        .collect();
    if !good.is_empty() {
        return (good, true);
    }
    let fallback = samples.iter().rev().find(|s| s.open > 0).copied().into_iter().collect();
    (fallback, false)
}

fn process_json(p: &PerTunnel) -> Value {
    json!({
        "baseline_rss_bytes": p.baseline.rss_bytes,
        "baseline_fds": p.baseline.fds,
        "rss_bytes": p.rss_bytes.round() as u64,
        "fds": p.fds.round() as u64,
        "rss_per_tunnel_bytes": p.rss_per_tunnel_bytes.round(),
        "fds_per_tunnel": (p.fds_per_tunnel * 1000.0).round() / 1000.0,
    })
}

/// Everything the idle scenario adds to the report, as JSON, with lines for the terminal.
pub struct IdleFigures {
    pub json: Value,
    pub lines: Vec<String>,
    pub warnings: Vec<String>,
}

pub fn figures(
    requested: usize,
    pid: Option<u32>,
    client_baseline: Option<ProcessSample>,
    target_baseline: Option<ProcessSample>,
    samples: &[Sample],
    last_open_s: f64,
) -> IdleFigures {
    let mut warnings = Vec::new();
    let (settled, ok) = settled(samples, last_open_s);
    if !ok {
        warnings.push(format!(
            "no sample was taken {:.0} s after the last tunnel opened: raise --duration; the figures come from the last \
             sample",
            SETTLE.as_secs_f64()
        ));
    }
    let mut open: Vec<f64> = settled.iter().map(|s| s.open as f64).collect();
    let open = median(&mut open).unwrap_or(0.0) as u64;
    if (open as usize) < requested {
        warnings.push(format!("only {open} of {requested} tunnels were open while sampling"));
    }
    let client = client_baseline.and_then(|b| per_tunnel(b, &settled, |s| s.client));
    let target = target_baseline.and_then(|b| per_tunnel(b, &settled, |s| s.target));
    if pid.is_some() && target.is_none() {
        warnings.push(format!(
            "could not read /proc/{} (no such process, or another user's)",
            pid.unwrap_or(0)
        ));
    }
    let mut lines = vec![format!(
        "tunnels: {open} of {requested} open while sampling ({} settled sample(s))",
        settled.len()
    )];
    let mib = |b: f64| b / 1048576.0;
    if let Some(c) = &client {
        lines.push(format!(
            "edgeload: RSS {:.1} MiB ({:.0} bytes/tunnel over a {:.1} MiB baseline), {:.2} fds/tunnel",
            mib(c.rss_bytes),
            c.rss_per_tunnel_bytes,
            mib(c.baseline.rss_bytes as f64),
            c.fds_per_tunnel
        ));
    }
    if let (Some(t), Some(pid)) = (&target, pid) {
        lines.push(format!(
            "target pid {pid}: RSS {:.1} MiB, {:.0} bytes/tunnel; fds {:.0}, {:.2} fds/tunnel",
            mib(t.rss_bytes),
            t.rss_per_tunnel_bytes,
            t.fds,
            t.fds_per_tunnel
        ));
    }
    let samples_json: Vec<Value> = samples
        .iter()
        .map(|s| {
            json!({
                "t_s": s.t_s,
                "open": s.open,
                "client_rss_bytes": s.client.map(|c| c.rss_bytes),
                "client_fds": s.client.map(|c| c.fds),
                "target_rss_bytes": s.target.map(|t| t.rss_bytes),
                "target_fds": s.target.map(|t| t.fds),
            })
        })
        .collect();
    let json = json!({
        "tunnels_requested": requested,
        "tunnels_open": open,
        "last_open_at_s": last_open_s,
        "settled_samples": settled.len(),
        "client_rss_bytes": client.map(|c| c.rss_bytes.round() as u64),
        "client": client.as_ref().map(process_json),
        "target_pid": pid,
        "target": target.as_ref().map(process_json),
        "samples": samples_json,
    });
    IdleFigures { json, lines, warnings }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(t_s: f64, open: usize, rss: u64, fds: u64) -> Sample {
        Sample {
            t_s,
            open,
            client: None,
            target: Some(ProcessSample { rss_bytes: rss, fds }),
        }
    }

    #[test]
    fn per_tunnel_figures_are_medians_over_settled_samples() {
        let base = ProcessSample {
            rss_bytes: 1_000_000,
            fds: 10,
        };
        let samples = [
            s(1.0, 500, 2_000_000, 510),
            s(2.0, 1000, 9_000_000, 1010),
            s(3.0, 1000, 11_000_000, 1010),
            s(4.0, 1000, 21_000_000, 1010),
            s(5.0, 1000, 11_000_000, 1011),
        ];
        let (settled, ok) = settled(&samples, 1.8);
        assert!(ok);
        assert_eq!(settled.len(), 3, "samples from t = 2.8 s on");
        let p = per_tunnel(base, &settled, |s| s.target).unwrap();
        assert_eq!(p.rss_bytes, 11_000_000.0);
        assert_eq!(p.rss_per_tunnel_bytes, 10_000.0);
        assert_eq!(p.fds_per_tunnel, 1.0);
    }

    #[test]
    fn too_short_a_run_falls_back_to_the_last_sample_with_a_warning() {
        let samples = [s(1.0, 10, 2_000_000, 20), s(2.0, 0, 1_000_000, 10)];
        let (settled, ok) = settled(&samples, 0.9);
        assert!(!ok);
        assert_eq!(settled.len(), 1);
        assert_eq!(settled[0].t_s, 1.0);
        let base = ProcessSample {
            rss_bytes: 1_000_000,
            fds: 10,
        };
        let f = figures(10, Some(1), None, Some(base), &samples, 0.9);
        assert_eq!(f.json["target"]["fds_per_tunnel"], 1.0);
        assert!(
            f.warnings.iter().any(|w| w.contains("raise --duration")),
            "{:?}",
            f.warnings
        );
    }
}
