//! `edgeload compare`: the same load against several targets in turn, round after round
//! (A B A B …) so that drift of the machine hits every target alike; medians per target and
//! ratios against the first target.

use std::fmt::Write;

use serde_json::{Value, json};

use crate::http_load::{self, LoadPlan, RunError};
use crate::progress::Progress;
use crate::report::{LoadModelKind, Report, ms};

/// One named target and the load to run against it.
pub struct Target {
    pub name: String,
    pub url: String,
    pub plan: LoadPlan,
}

/// The figures kept from one run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunFigures {
    pub round: usize,
    pub throughput_rps: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub errors: u64,
}

impl RunFigures {
    pub fn of(round: usize, r: &Report) -> RunFigures {
        let p = r.primary();
        RunFigures {
            round,
            throughput_rps: r.throughput_per_second(),
            p50_us: p.p50_us,
            p99_us: p.p99_us,
            errors: r.totals.errors.total(),
        }
    }
}

/// All runs of one target.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetResult {
    pub name: String,
    pub url: String,
    pub runs: Vec<RunFigures>,
}

impl TargetResult {
    pub fn median_throughput(&self) -> f64 {
        median(self.runs.iter().map(|r| r.throughput_rps).collect())
    }

    pub fn median_p50_us(&self) -> f64 {
        median(self.runs.iter().map(|r| r.p50_us as f64).collect())
    }

    pub fn median_p99_us(&self) -> f64 {
        median(self.runs.iter().map(|r| r.p99_us as f64).collect())
    }
}

/// The comparison of every target.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub model: LoadModelKind,
    /// The latency series quoted (the primary one: `corrected` in open mode).
    pub series: &'static str,
    pub targets: Vec<TargetResult>,
}

/// Runs `rounds` rounds over `targets`, in order within each round.
pub fn run(targets: &[Target], rounds: usize, progress: bool) -> Result<Comparison, RunError> {
    let mut results: Vec<TargetResult> = targets
        .iter()
        .map(|t| TargetResult {
            name: t.name.clone(),
            url: t.url.clone(),
            runs: Vec::new(),
        })
        .collect();
    let mut model = LoadModelKind::Closed;
    let mut series = "";
    for round in 1..=rounds {
        for (t, result) in targets.iter().zip(&mut results) {
            if progress {
                eprintln!("round {round}/{rounds}: {} ({})", t.name, t.url);
            }
            model = match t.plan.model {
                http_load::LoadModel::Closed { .. } => LoadModelKind::Closed,
                http_load::LoadModel::Open { .. } => LoadModelKind::Open,
            };
            let report = http_load::run(&t.plan, Progress::new(progress, model))?;
            series = report.layout.series[0].name;
            for w in &report.warnings {
                eprintln!("warning ({}, round {round}): {w}", t.name);
            }
            result.runs.push(RunFigures::of(round, &report));
        }
    }
    Ok(Comparison {
        model,
        series,
        targets: results,
    })
}

impl Comparison {
    /// A table: medians per target and ratios against the first target.
    pub fn render_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "edgeload compare: {} model; latency = {} (ms)",
            self.model.label(),
            self.series
        );
        let _ = writeln!(
            s,
            "{:<16} {:>12} {:>9} {:>9} {:>8} {:>9} {:>9} {:>7}",
            "target", "req/s", "p50", "p99", "errors", "×req/s", "×p99", "runs"
        );
        let base = self.targets.first();
        for t in &self.targets {
            let ratio = |a: f64, b: f64| if b > 0.0 { format!("{:.3}", a / b) } else { "-".into() };
            let (rps, p99) = (t.median_throughput(), t.median_p99_us());
            let _ = writeln!(
                s,
                "{:<16} {:>12.1} {:>9} {:>9} {:>8} {:>9} {:>9} {:>7}",
                t.name,
                rps,
                ms(t.median_p50_us()),
                ms(p99),
                t.runs.iter().map(|r| r.errors).sum::<u64>(),
                base.map_or("-".into(), |b| ratio(rps, b.median_throughput())),
                base.map_or("-".into(), |b| ratio(p99, b.median_p99_us())),
                t.runs.len()
            );
        }
        s
    }

    pub fn to_json(&self) -> Value {
        let base = self.targets.first();
        let targets: Vec<Value> = self
            .targets
            .iter()
            .map(|t| {
                let ratio = |a: f64, b: f64| if b > 0.0 { Some(a / b) } else { None };
                json!({
                    "name": t.name,
                    "url": t.url,
                    "median_throughput_rps": t.median_throughput(),
                    "median_p50_us": t.median_p50_us(),
                    "median_p99_us": t.median_p99_us(),
                    "throughput_ratio": base.and_then(|b| ratio(t.median_throughput(), b.median_throughput())),
                    "p99_ratio": base.and_then(|b| ratio(t.median_p99_us(), b.median_p99_us())),
                    "runs": t.runs.iter().map(|r| json!({
                        "round": r.round,
                        "throughput_rps": r.throughput_rps,
                        "p50_us": r.p50_us,
                        "p99_us": r.p99_us,
                        "errors": r.errors,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({
            "schema": "edgeload-compare/1",
            "load_model": self.model.label(),
            "latency_series": self.series,
            "targets": targets,
        })
    }
}

/// The median (mean of the middle two for an even count; 0 for none).
pub fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(vec![]), 0.0);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn ratios_are_against_the_first_target() {
        let runs = |rps: f64, p99: u64| {
            vec![RunFigures {
                round: 1,
                throughput_rps: rps,
                p50_us: 100,
                p99_us: p99,
                errors: 0,
            }]
        };
        let c = Comparison {
            model: LoadModelKind::Closed,
            series: "service_time",
            targets: vec![
                TargetResult {
                    name: "a".into(),
                    url: "http://a/".into(),
                    runs: runs(1000.0, 2000),
                },
                TargetResult {
                    name: "b".into(),
                    url: "http://b/".into(),
                    runs: runs(1500.0, 1000),
                },
            ],
        };
        let j = c.to_json();
        assert_eq!(j["targets"][1]["throughput_ratio"], 1.5);
        assert_eq!(j["targets"][1]["p99_ratio"], 0.5);
        let text = c.render_text();
        assert!(text.contains("closed model"), "{text}");
        assert!(text.lines().nth(3).unwrap().contains("1.500"), "{text}");
    }
}
