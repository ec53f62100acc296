//! Pass/fail thresholds on a finished run, as k6 has them: `--threshold 'p99<50ms'`,
//! `'errors<0.1%'`, `'rps>1000'`. A CI job gets a failing exit code ([`EXIT_CODE`]) and one line
//! per threshold; the JSON and HTML reports carry every threshold with its observed value.
//!
//! Expressions are parsed when the command line is read, so a typo stops the run before it
//! starts; what they name (a series, a counter) is looked up in the finished report, since the
//! series and counters differ between scenarios. A threshold without data to judge (a
//! percentile of an empty series, an error rate of nothing sent) fails: a CI gate must not pass
//! because nothing was measured.

use std::fmt;
use std::time::Duration;

use serde_json::{Value, json};

use crate::duration_arg::parse_duration;
use crate::recorder::Layout;
use crate::report::{Report, ms, per_second};

/// The exit code of a run whose thresholds failed (k6 uses the same).
pub const EXIT_CODE: u8 = 99;

/// What a threshold measures.
#[derive(Debug, Clone, PartialEq)]
pub enum Metric {
    /// `pNN` (0 < NN ≤ 100) of a latency series.
    Percentile(f64),
    Mean,
    Min,
    Max,
    /// Errors in the measured window: a count, or a percentage of the requests sent.
    Errors,
    /// `throughput_rps`: completed events of the primary series per second.
    Rps,
    /// A counter of the scenario (`late`, `missed`, `dropped`, …): a count or a percentage of
    /// `sent`.
    Counter(String),
}

impl Metric {
    fn is_latency(&self) -> bool {
        matches!(self, Metric::Percentile(_) | Metric::Mean | Metric::Min | Metric::Max)
    }
}

/// How a limit compares with the observed value: the observed value must be `op` the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
}

impl Op {
    pub fn symbol(self) -> &'static str {
        match self {
            Op::Less => "<",
            Op::LessOrEqual => "<=",
            Op::Greater => ">",
            Op::GreaterOrEqual => ">=",
        }
    }

    fn holds(self, observed: f64, limit: f64) -> bool {
        match self {
            Op::Less => observed < limit,
            Op::LessOrEqual => observed <= limit,
            Op::Greater => observed > limit,
            Op::GreaterOrEqual => observed >= limit,
        }
    }
}

/// The unit of a limit and of the observed value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Micros,
    Percent,
    Count,
    PerSecond,
}

impl Unit {
    pub fn label(self) -> &'static str {
        match self {
            Unit::Micros => "us",
            Unit::Percent => "%",
            Unit::Count => "count",
            Unit::PerSecond => "1/s",
        }
    }

    fn show(self, v: f64) -> String {
        match self {
            Unit::Micros => format!("{} ms", ms(v)),
            Unit::Percent => format!("{}%", trim_float(v)),
            Unit::Count => trim_float(v),
            Unit::PerSecond => format!("{v:.1}/s"),
        }
    }
}

fn trim_float(v: f64) -> String {
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_owned()
}

const NO_HTTP_LOAD: &str = "no HTTP load beside this run (http.… thresholds judge the load of admin churn --with-http)";

/// One parsed threshold expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    /// As written, for messages and reports.
    pub expression: String,
    /// Written `http.…`: judged on the HTTP load that `admin churn --with-http` runs beside the
    /// churn, not on the run's own figures.
    pub on_http_load: bool,
    /// Latency metrics: the series (`corrected.p99<…`); `None` is the primary series.
    pub series: Option<String>,
    pub metric: Metric,
    /// The metric as written (`p99.9`, `errors`, `late`).
    pub metric_name: String,
    pub op: Op,
    /// In `unit`.
    pub limit: f64,
    pub unit: Unit,
}

/// An expression that cannot be read; the message shows an example of the accepted form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("threshold {expression:?}: {problem}")]
pub struct ThresholdError {
    pub expression: String,
    pub problem: String,
}

impl Threshold {
    /// Parses `[series.]metric OP limit`.
    pub fn parse(text: &str) -> Result<Threshold, ThresholdError> {
        let err = |problem: &str| ThresholdError {
            expression: text.to_owned(),
            problem: format!(
                "{problem} (e.g. p99<50ms, service_time.p99.9<=1s, errors<0.1%, errors<5, rps>1000, late<1%, http.p99<50ms)"
            ),
        };
        let at = text
            .find(['<', '>'])
            .ok_or_else(|| err("expected a comparison <, <=, > or >="))?;
        let (left, rest) = text.split_at(at);
        let (op, right) = match (rest.as_bytes()[0], rest.as_bytes().get(1)) {
            (b'<', Some(b'=')) => (Op::LessOrEqual, &rest[2..]),
            (b'>', Some(b'=')) => (Op::GreaterOrEqual, &rest[2..]),
            (b'<', _) => (Op::Less, &rest[1..]),
            _ => (Op::Greater, &rest[1..]),
        };
        let (left, right) = (left.trim(), right.trim());
        let (on_http_load, left) = match left.strip_prefix("http.") {
            Some(rest) => (true, rest),
            None => (false, left),
        };
        let (series, metric_name) = match metric_of(left) {
            Some(_) => (None, left),
            None => match left.split_once('.') {
                Some((s, m)) if is_name(s) && metric_of(m).is_some_and(|m| m.is_latency()) => (Some(s.to_owned()), m),
                _ => (None, left),
            },
        };
        let metric = metric_of(metric_name).ok_or_else(|| {
            err("expected a metric: pNN (a percentile), mean, min, max, errors, rps or a counter name, optionally after a series name and a dot")
        })?;
        if right.is_empty() {
            return Err(err("expected a limit after the comparison"));
        }
        let number = |t: &str| -> Result<f64, ThresholdError> {
            t.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| err("expected a number >= 0 as the limit"))
        };
        let (limit, unit) = if metric.is_latency() {
            if !right.ends_with(|c: char| c.is_ascii_alphabetic()) {
                return Err(err("a latency limit needs a unit: us, ms, s, m or h"));
            }
            let d: Duration = parse_duration(right).map_err(|e| err(&e.to_string()))?;
            (d.as_secs_f64() * 1e6, Unit::Micros)
        } else if metric == Metric::Rps {
            (number(right.strip_suffix("/s").unwrap_or(right))?, Unit::PerSecond)
        } else if let Some(p) = right.strip_suffix('%') {
            (number(p)?, Unit::Percent)
        } else {
            (number(right)?, Unit::Count)
        };
        Ok(Threshold {
            expression: text.to_owned(),
            on_http_load,
            series,
            metric,
            metric_name: metric_name.to_owned(),
            op,
            limit,
            unit,
        })
    }

    /// Refuses, before a run, a series or counter that `layout` does not have (the same check
    /// [`Threshold::evaluate`] makes afterwards, for scenarios whose layout is known only then).
    pub fn check_layout(&self, layout: Layout) -> Result<(), ThresholdError> {
        self.refuse_on_http_load()?;
        let problem = match (&self.metric, &self.series) {
            (Metric::Counter(name), _) if !layout.counters.contains(&name.as_str()) => {
                format!(
                    "no counter {name:?} in this scenario (counters: {})",
                    layout.counters.join(", ")
                )
            }
            (_, Some(name)) if !layout.series.iter().any(|s| s.name == name) => {
                let names: Vec<&str> = layout.series.iter().map(|s| s.name).collect();
                format!("no series {name:?} in this scenario (series: {})", names.join(", "))
            }
            _ => return Ok(()),
        };
        Err(ThresholdError {
            expression: self.expression.clone(),
            problem,
        })
    }

    /// Refuses an `http.…` threshold, for a run with no HTTP load beside it.
    pub fn refuse_on_http_load(&self) -> Result<(), ThresholdError> {
        match self.on_http_load {
            true => Err(ThresholdError {
                expression: self.expression.clone(),
                problem: NO_HTTP_LOAD.into(),
            }),
            false => Ok(()),
        }
    }

    /// Judges this threshold on a finished run (an `http.…` one fails: the run has no HTTP load
    /// beside it; `admin churn` judges those with [`Threshold::evaluate_on`]).
    pub fn evaluate(&self, r: &Report) -> ThresholdOutcome {
        if self.on_http_load {
            return ThresholdOutcome {
                threshold: self.clone(),
                observed: None,
                passed: false,
                subject: NO_HTTP_LOAD.into(),
            };
        }
        self.evaluate_on(r)
    }

    /// Judges this threshold on `r`, whichever part of the run it names: `admin churn` passes
    /// its `--with-http` load's report for the `http.…` ones.
    pub fn evaluate_on(&self, r: &Report) -> ThresholdOutcome {
        let (observed, subject) = match self.observe(r) {
            Ok(v) => v,
            Err(problem) => {
                return ThresholdOutcome {
                    threshold: self.clone(),
                    observed: None,
                    passed: false,
                    subject: problem,
                };
            }
        };
        ThresholdOutcome {
            threshold: self.clone(),
            observed,
            passed: observed.is_some_and(|v| self.op.holds(v, self.limit)),
            subject,
        }
    }

    /// The observed value (`None`: no data) and what it is, for the report line.
    fn observe(&self, r: &Report) -> Result<(Option<f64>, String), String> {
        let sent = || {
            r.counter("sent").unwrap_or_else(|| {
                // Scenarios without a `sent` counter: events completed plus those that failed
                // without a latency.
                let transport = r
                    .totals
                    .errors
                    .iter()
                    .filter(|(k, _)| !matches!(k, crate::error_kind::ErrorKind::Status(_)))
                    .map(|(_, n)| n)
                    .sum::<u64>();
                r.totals.histograms[0].len() + transport
            })
        };
        let share = |n: u64| {
            let of = sent();
            (of > 0).then(|| n as f64 * 100.0 / of as f64)
        };
        let scaled = |n: u64| match self.unit {
            Unit::Percent => share(n),
            _ => Some(n as f64),
        };
        match &self.metric {
            Metric::Errors => Ok((scaled(r.totals.errors.total()), "errors".into())),
            Metric::Rps => Ok((
                Some(per_second(r.totals.histograms[0].len(), r.duration)),
                "throughput".into(),
            )),
            Metric::Counter(name) => {
                let n = r.counter(name).ok_or_else(|| {
                    format!(
                        "no counter {name:?} in this scenario (counters: {})",
                        r.layout.counters.join(", ")
                    )
                })?;
                Ok((scaled(n), name.clone()))
            }
            latency => {
                let index = match &self.series {
                    None => 0,
                    Some(name) => r.layout.series.iter().position(|s| s.name == name).ok_or_else(|| {
                        let names: Vec<&str> = r.layout.series.iter().map(|s| s.name).collect();
                        format!("no series {name:?} in this scenario (series: {})", names.join(", "))
                    })?,
                };
                let h = &r.totals.histograms[index];
                let subject = format!("{} {}", r.layout.series[index].name, self.metric_name);
                if h.is_empty() {
                    return Ok((None, subject));
                }
                let v = match latency {
                    Metric::Percentile(p) => h.value_at_quantile(p / 100.0) as f64,
                    Metric::Mean => h.mean(),
                    Metric::Min => h.min() as f64,
                    _ => h.max() as f64,
                };
                Ok((Some(v), subject))
            }
        }
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.expression)
    }
}

fn is_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The metric named `s`, if it is one.
fn metric_of(s: &str) -> Option<Metric> {
    match s {
        "mean" => Some(Metric::Mean),
        "min" => Some(Metric::Min),
        "max" => Some(Metric::Max),
        "errors" => Some(Metric::Errors),
        "rps" => Some(Metric::Rps),
        _ => {
            if let Some(p) = s.strip_prefix('p')
                && p.starts_with(|c: char| c.is_ascii_digit())
            {
                return p
                    .parse::<f64>()
                    .ok()
                    .filter(|p| *p > 0.0 && *p <= 100.0)
                    .map(Metric::Percentile);
            }
            (is_name(s) && s.starts_with(|c: char| c.is_ascii_alphabetic())).then(|| Metric::Counter(s.to_owned()))
        }
    }
}

/// A threshold judged on a run.
#[derive(Debug, Clone, PartialEq)]
pub struct ThresholdOutcome {
    pub threshold: Threshold,
    /// In the threshold's unit; `None` when there was nothing to judge (then it failed).
    pub observed: Option<f64>,
    pub passed: bool,
    /// What was observed (`corrected p99`, `errors`), or why nothing could be.
    pub subject: String,
}

impl ThresholdOutcome {
    /// `p99<50ms: FAILED, corrected p99 63.2 ms (limit < 50 ms)`.
    pub fn line(&self) -> String {
        let t = &self.threshold;
        let verdict = if self.passed { "passed" } else { "FAILED" };
        let observed = match self.observed {
            Some(v) => format!("{} {}", self.subject, t.unit.show(v)),
            None if self.subject.starts_with("no ") => self.subject.clone(),
            None => format!("{}: no data", self.subject),
        };
        format!(
            "{}: {verdict}, {observed} (limit {} {})",
            t.expression,
            t.op.symbol(),
            t.unit.show(t.limit)
        )
    }

    pub fn to_json(&self) -> Value {
        let t = &self.threshold;
        json!({
            "expression": t.expression,
            "metric": t.metric_name,
            "series": t.series,
            "on_http_load": t.on_http_load,
            "op": t.op.symbol(),
            "limit": t.limit,
            "unit": t.unit.label(),
            "observed": self.observed,
            "passed": self.passed,
            "line": self.line(),
        })
    }
}

/// Judges `thresholds` on `r` and keeps the outcomes in it, for the summary and the files.
pub fn check(r: &mut Report, thresholds: &[Threshold]) {
    r.thresholds = thresholds.iter().map(|t| t.evaluate(r)).collect();
}

/// A run whose thresholds did not all pass (exit code [`EXIT_CODE`]).
#[derive(Debug, thiserror::Error)]
#[error("{} of {} thresholds failed: {}", failed.len(), total, failed.join(", "))]
pub struct ThresholdsFailed {
    pub failed: Vec<String>,
    pub total: usize,
}

/// `Err` when a threshold kept in `r` failed.
pub fn verdict(r: &Report) -> Result<(), ThresholdsFailed> {
    let failed: Vec<String> = r
        .thresholds
        .iter()
        .filter(|o| !o.passed)
        .map(|o| o.threshold.expression.clone())
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(ThresholdsFailed {
            failed,
            total: r.thresholds.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions_are_read() {
        // (expression, series, metric, op, limit, unit)
        type Case = (&'static str, Option<&'static str>, Metric, Op, f64, Unit);
        let cases: &[Case] = &[
            (
                "p99<50ms",
                None,
                Metric::Percentile(99.0),
                Op::Less,
                50_000.0,
                Unit::Micros,
            ),
            (
                "p50 <= 10ms",
                None,
                Metric::Percentile(50.0),
                Op::LessOrEqual,
                10_000.0,
                Unit::Micros,
            ),
            ("p99.9<1s", None, Metric::Percentile(99.9), Op::Less, 1e6, Unit::Micros),
            (
                "service_time.p99.9<1.5ms",
                Some("service_time"),
                Metric::Percentile(99.9),
                Op::Less,
                1500.0,
                Unit::Micros,
            ),
            (
                "corrected.max<2s",
                Some("corrected"),
                Metric::Max,
                Op::Less,
                2e6,
                Unit::Micros,
            ),
            ("mean<500us", None, Metric::Mean, Op::Less, 500.0, Unit::Micros),
            ("errors<0.1%", None, Metric::Errors, Op::Less, 0.1, Unit::Percent),
            ("errors<=5", None, Metric::Errors, Op::LessOrEqual, 5.0, Unit::Count),
            ("rps>1000", None, Metric::Rps, Op::Greater, 1000.0, Unit::PerSecond),
            (
                "rps>=20/s",
                None,
                Metric::Rps,
                Op::GreaterOrEqual,
                20.0,
                Unit::PerSecond,
            ),
            (
                "late<1%",
                None,
                Metric::Counter("late".into()),
                Op::Less,
                1.0,
                Unit::Percent,
            ),
            (
                "missed<1",
                None,
                Metric::Counter("missed".into()),
                Op::Less,
                1.0,
                Unit::Count,
            ),
        ];
        for (text, series, metric, op, limit, unit) in cases {
            let t = Threshold::parse(text).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(t.series.as_deref(), *series, "{text}");
            assert_eq!(&t.metric, metric, "{text}");
            assert_eq!((t.op, t.unit), (*op, *unit), "{text}");
            assert!((t.limit - limit).abs() < 1e-6, "{text}: {}", t.limit);
        }
    }

    #[test]
    fn an_http_prefix_names_the_load_beside_an_admin_churn() {
        for (text, series, metric) in [
            ("http.p99<50ms", None, Metric::Percentile(99.0)),
            ("http.errors<1%", None, Metric::Errors),
            ("http.corrected.p99.9<5ms", Some("corrected"), Metric::Percentile(99.9)),
            ("http.rps>100", None, Metric::Rps),
        ] {
            let t = Threshold::parse(text).unwrap();
            assert!(t.on_http_load, "{text}");
            assert_eq!((t.series.as_deref(), &t.metric), (series, &metric), "{text}");
            assert_eq!(t.expression, text);
        }
        assert!(!Threshold::parse("p99<50ms").unwrap().on_http_load);
        let layout = crate::http_load::OPEN_LAYOUT;
        let refused = Threshold::parse("http.p99<50ms")
            .unwrap()
            .check_layout(layout)
            .unwrap_err();
        assert!(refused.problem.contains("admin churn --with-http"), "{refused}");
    }

    #[test]
    fn bad_expressions_say_what_is_wrong() {
        let cases = [
            ("p99", "comparison"),
            ("p99<50", "needs a unit"),
            ("p99<fast", "invalid duration"),
            ("p0<5ms", "expected a metric"),
            ("p101<5ms", "expected a metric"),
            ("9x<5", "expected a metric"),
            ("errors<", "limit after"),
            ("errors<-1%", "number >= 0"),
            ("rps>many", "number >= 0"),
        ];
        for (text, want) in cases {
            let e = Threshold::parse(text).unwrap_err().to_string();
            assert!(e.contains(want) && e.contains(text), "{text}: {e}");
        }
    }

    #[test]
    fn ops_compare_observed_with_limit() {
        assert!(Op::Less.holds(1.0, 2.0) && !Op::Less.holds(2.0, 2.0));
        assert!(Op::LessOrEqual.holds(2.0, 2.0) && !Op::LessOrEqual.holds(2.1, 2.0));
        assert!(Op::Greater.holds(3.0, 2.0) && !Op::Greater.holds(2.0, 2.0));
        assert!(Op::GreaterOrEqual.holds(2.0, 2.0));
    }
}
