//! The JSON summary (`--json FILE`). Schema `edgeload-report/1`, documented field by field in
//! docs/edgeload.md; fields are only ever added within a schema version.

use serde_json::{Map, Value, json};

use super::{Report, SeriesSummary, per_second};
use crate::timeline::IntervalRow;

pub const SCHEMA: &str = "edgeload-report/1";

pub fn to_json(r: &Report) -> Value {
    let latency: Map<String, Value> = r.series().iter().map(|s| (s.name.to_owned(), series(s))).collect();
    let counters: Map<String, Value> = r
        .layout
        .counters
        .iter()
        .zip(&r.totals.counters)
        .map(|(name, n)| ((*name).to_owned(), (*n).into()))
        .collect();
    let mut environment = r.environment.to_json();
    environment.extend(r.environment_extra.clone());
    let g = &r.generator;
    json!({
        "schema": SCHEMA,
        "tool": { "name": "edgeload", "version": env!("CARGO_PKG_VERSION") },
        "scenario": r.scenario,
        "load_model": r.model.label(),
        "load_model_note": r.model.note(),
        "parameters": r.parameters,
        "targets": r.targets,
        "started_at_unix_ms": r.started_unix_ms,
        "warmup_s": r.warmup.as_secs_f64(),
        "duration_s": r.duration.as_secs_f64(),
        "throughput_rps": per_second(r.totals.histograms[0].len(), r.duration),
        "sent_rps": r.counter("sent").map(|n| per_second(n, r.duration)),
        "counters": counters,
        "errors": { "total": r.totals.errors.total(), "by_kind": r.totals.errors.to_json() },
        "latency_unit": "us",
        "latency": latency,
        "intervals": r.intervals.iter().map(|row| interval(r, row)).collect::<Vec<_>>(),
        "generator": {
            "cpu_seconds": g.cpu_seconds,
            "wall_seconds": g.wall_seconds,
            "threads": g.threads,
            "cpus_usable": g.cpus_usable,
            "busy_fraction": g.busy_fraction,
            "peak_rss_bytes": g.peak_rss_bytes,
            "runnable_fraction": g.runnable_fraction,
            "cpu_wait_fraction": g.cpu_wait_fraction,
            "warning": g.warning(),
            "bottleneck": r.bottleneck.as_ref().map(|b| b.kind),
            "bottleneck_reason": r.bottleneck.as_ref().map(|b| b.reason.as_str()),
        },
        "environment": environment,
        "warnings": r.warnings,
        "thresholds": r.thresholds.iter().map(|t| t.to_json()).collect::<Vec<_>>(),
    })
}

fn series(s: &SeriesSummary) -> Value {
    json!({
        "description": s.description,
        "count": s.count,
        "min_us": s.min_us,
        "mean_us": s.mean_us,
        "stdev_us": s.stdev_us,
        "p50_us": s.p50_us,
        "p90_us": s.p90_us,
        "p99_us": s.p99_us,
        "p99_9_us": s.p999_us,
        "max_us": s.max_us,
    })
}

fn interval(r: &Report, row: &IntervalRow) -> Value {
    let series: Map<String, Value> = r
        .layout
        .series
        .iter()
        .zip(&row.series)
        .map(|(s, st)| {
            let v = json!({
                "count": st.count,
                "p50_us": st.p50_us,
                "p90_us": st.p90_us,
                "p99_us": st.p99_us,
                "p99_9_us": st.p999_us,
                "max_us": st.max_us,
            });
            (s.name.to_owned(), v)
        })
        .collect();
    let counters: Map<String, Value> = r
        .layout
        .counters
        .iter()
        .zip(&row.counters)
        .map(|(name, n)| ((*name).to_owned(), (*n).into()))
        .collect();
    json!({
        "t_s": row.index,
        "unix_ms": row.unix_ms,
        "warmup": row.warmup,
        "series": series,
        "errors": row.errors.total(),
        "errors_by_kind": row.errors.to_json(),
        "counters": counters,
    })
}
