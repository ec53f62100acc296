//! A finished run as one value, [`Report`], and its renderings: [`text`] for the terminal,
//! [`json`] for machines (schema in docs/edgeload.md), [`hdr_spectrum`] for hdrplot, [`html`]
//! (with [`svg`] charts) for people.
//!
//! A report holds any number of named latency series (a [`Layout`]), so every scenario, whatever
//! its phases, renders through the same code. The first series is the primary one.

pub mod hdr_spectrum;
pub mod html;
pub mod json;
pub mod svg;
pub mod text;

use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{Map, Value};

use crate::bottleneck::{self, Bottleneck, LateSends};
use crate::environment::Environment;
use crate::process_stats::GeneratorUsage;
use crate::recorder::{Layout, RunClock, Totals};
use crate::threshold::ThresholdOutcome;
use crate::timeline::IntervalRow;

/// The load model, stated in every output because it decides what the latencies mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadModelKind {
    /// Work arrives on a schedule, independent of responses.
    Open,
    /// A fixed number of clients each wait for a response before sending again.
    Closed,
}

impl LoadModelKind {
    pub fn label(self) -> &'static str {
        match self {
            LoadModelKind::Open => "open",
            LoadModelKind::Closed => "closed",
        }
    }

    /// One sentence on how to read the latencies under this model.
    pub fn note(self) -> &'static str {
        match self {
            LoadModelKind::Open => {
                "open model: requests follow an arrival schedule; 'corrected' latency counts from the intended send \
                 time, so time spent waiting behind a slow server is included (coordinated omission corrected)"
            }
            LoadModelKind::Closed => {
                "closed model: each connection sends when its previous response arrived; latencies are service \
                 times at the load the server allowed, and hide stalls (use the open model for latency)"
            }
        }
    }
}

/// The statistics of one series over the measured window. Values in microseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesSummary {
    pub name: &'static str,
    pub description: &'static str,
    pub count: u64,
    pub min_us: u64,
    pub mean_us: f64,
    pub stdev_us: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

impl SeriesSummary {
    fn of(name: &'static str, description: &'static str, h: &Histogram<u64>) -> SeriesSummary {
        let empty = h.is_empty();
        let q = |q| if empty { 0 } else { h.value_at_quantile(q) };
        SeriesSummary {
            name,
            description,
            count: h.len(),
            min_us: if empty { 0 } else { h.min() },
            mean_us: if empty { 0.0 } else { h.mean() },
            stdev_us: if empty { 0.0 } else { h.stdev() },
            p50_us: q(0.5),
            p90_us: q(0.9),
            p99_us: q(0.99),
            p999_us: q(0.999),
            max_us: if empty { 0 } else { h.max() },
        }
    }
}

/// A finished run. Scenarios fill `parameters`, `targets`, `environment_extra` and `warnings`.
#[derive(Debug, Clone)]
pub struct Report {
    /// `http`, and later `ws`, `admin`, `journey`.
    pub scenario: String,
    pub model: LoadModelKind,
    pub layout: Layout,
    /// Scenario-specific load settings (rate, connections, …), rendered as given.
    pub parameters: Map<String, Value>,
    pub targets: Vec<String>,
    pub started_unix_ms: u64,
    pub warmup: Duration,
    pub duration: Duration,
    pub totals: Totals,
    pub intervals: Vec<IntervalRow>,
    pub generator: GeneratorUsage,
    pub environment: Environment,
    /// Run facts that belong beside the machine's (keep-alive, HTTP version, TLS).
    pub environment_extra: Map<String, Value>,
    pub warnings: Vec<String>,
    /// `--threshold` outcomes, judged after the run ([`crate::threshold::check`]).
    pub thresholds: Vec<ThresholdOutcome>,
    /// Set when the generator, not the target, limited the run.
    pub bottleneck: Option<Bottleneck>,
}

impl Report {
    /// A report with the machine's environment detected and the generator's CPU warning added.
    pub fn new(
        scenario: &str,
        model: LoadModelKind,
        layout: Layout,
        clock: &RunClock,
        totals: Totals,
        intervals: Vec<IntervalRow>,
        generator: GeneratorUsage,
    ) -> Report {
        let mut warnings: Vec<String> = generator.warning().into_iter().collect();
        let counter = |name| {
            let i = layout.counters.iter().position(|c| *c == name)?;
            totals.counters.get(i).copied()
        };
        let late = match (counter("sent"), counter("late"), counter("late_pool_full")) {
            (Some(sent), Some(late), Some(late_pool_full)) => Some(LateSends {
                sent,
                late,
                late_pool_full,
            }),
            _ => None,
        };
        let judgement = bottleneck::judge(&generator, late);
        warnings.extend(judgement.target_note);
        Report {
            scenario: scenario.to_owned(),
            model,
            layout,
            parameters: Map::new(),
            targets: Vec::new(),
            started_unix_ms: clock.start_unix_ms,
            warmup: clock.warmup(),
            duration: clock.duration(),
            totals,
            intervals,
            generator,
            environment: Environment::detect(),
            environment_extra: Map::new(),
            warnings,
            thresholds: Vec::new(),
            bottleneck: judgement.generator,
        }
    }

    pub fn series(&self) -> Vec<SeriesSummary> {
        self.layout
            .series
            .iter()
            .zip(&self.totals.histograms)
            .map(|(s, h)| SeriesSummary::of(s.name, s.description, h))
            .collect()
    }

    /// The first series: the one progress lines and comparisons quote.
    pub fn primary(&self) -> SeriesSummary {
        let s = &self.layout.series[0];
        SeriesSummary::of(s.name, s.description, &self.totals.histograms[0])
    }

    pub fn histogram(&self, name: &str) -> Option<&Histogram<u64>> {
        let i = self.layout.series.iter().position(|s| s.name == name)?;
        self.totals.histograms.get(i)
    }

    pub fn counter(&self, name: &str) -> Option<u64> {
        let i = self.layout.counters.iter().position(|c| *c == name)?;
        self.totals.counters.get(i).copied()
    }

    /// Completed events of the primary series (responses, for HTTP) per second of the measured
    /// window.
    pub fn throughput_per_second(&self) -> f64 {
        per_second(self.totals.histograms[0].len(), self.duration)
    }
}

/// `count` over `duration`, 0 for an empty window.
pub fn per_second(count: u64, duration: Duration) -> f64 {
    let s = duration.as_secs_f64();
    if s > 0.0 { count as f64 / s } else { 0.0 }
}

/// `1234` µs → `"1.23"` ms, the unit every human-facing output uses.
pub fn ms(us: impl Into<f64>) -> String {
    let v = us.into() / 1000.0;
    if v >= 100.0 {
        format!("{v:.1}")
    } else if v >= 10.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// Where to write a report besides the terminal. `hdr` gets the primary series; every other
/// series goes beside it as `<stem>.<series>.<ext>` (`run.hdr` → `run.service_time.hdr`).
#[derive(Debug, Clone, Default)]
pub struct OutputFiles {
    pub json: Option<std::path::PathBuf>,
    pub hdr: Option<std::path::PathBuf>,
    pub html: Option<std::path::PathBuf>,
}

/// A report file that could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {path}: {error}")]
pub struct WriteError {
    pub path: String,
    pub error: std::io::Error,
}

impl OutputFiles {
    pub fn write(&self, r: &Report) -> Result<(), WriteError> {
        if let Some(p) = &self.json {
            let text = serde_json::to_string_pretty(&json::to_json(r)).unwrap_or_default();
            write_file(p, &text)?;
        }
        if let Some(p) = &self.hdr {
            for (i, (series, hist)) in r.layout.series.iter().zip(&r.totals.histograms).enumerate() {
                let path = if i == 0 { p.clone() } else { sibling(p, series.name) };
                write_file(&path, &hdr_spectrum::render(hist))?;
            }
        }
        if let Some(p) = &self.html {
            write_file(p, &html::render(r))?;
        }
        Ok(())
    }
}

/// `dir/run.hdr` + `service_time` → `dir/run.service_time.hdr`.
pub fn sibling(path: &std::path::Path, series: &str) -> std::path::PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = match path.extension() {
        Some(ext) => format!("{stem}.{series}.{}", ext.to_string_lossy()),
        None => format!("{stem}.{series}"),
    };
    path.with_file_name(name)
}

fn write_file(path: &std::path::Path, text: &str) -> Result<(), WriteError> {
    std::fs::write(path, text).map_err(|error| WriteError {
        path: path.display().to_string(),
        error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sibling_files_carry_the_series_name() {
        let p = std::path::Path::new("/tmp/x/run.hdr");
        assert_eq!(
            sibling(p, "service_time"),
            std::path::Path::new("/tmp/x/run.service_time.hdr")
        );
        assert_eq!(sibling(std::path::Path::new("run"), "a"), std::path::Path::new("run.a"));
    }

    #[test]
    fn millisecond_formatting_keeps_three_significant_figures() {
        assert_eq!(ms(1234.0), "1.234");
        assert_eq!(ms(12345.0), "12.35");
        assert_eq!(ms(123456.0), "123.5");
    }
}
