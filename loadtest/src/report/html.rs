//! The self-contained HTML report (`--html FILE`): a summary table and three inline-SVG charts
//! (latency over time, throughput over time, percentile spectrum). No script, no network.

use std::fmt::Write;

use super::svg::{Chart, Line, XAxis, escape};
use super::{Report, hdr_spectrum, ms, per_second};

/// Nines shown on the spectrum's x axis (99.999%).
const SPECTRUM_NINES: u32 = 5;

pub fn render(r: &Report) -> String {
    let mut h = String::new();
    let title = format!("edgeload {} — {} model", r.scenario, r.model.label());
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\n<style>\
         body{{font-family:sans-serif;margin:2em;max-width:960px}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}th:first-child,td:first-child{{text-align:left}}\
         .note{{color:#555}}.warn{{color:#a00}}\
         .bottleneck{{border:2px solid #a00;padding:6px}}tr.pass td{{background:#e6f4e6}}tr.fail td{{background:#f9dcdc;font-weight:bold}}</style></head><body>\n",
        escape(&title)
    );
    let _ = writeln!(h, "<h1>{}</h1>", escape(&title));
    let _ = writeln!(h, "<p class=\"note\">{}</p>", escape(r.model.note()));
    let _ = writeln!(
        h,
        "<p>Targets: {}<br>Measured {:.1} s after {:.1} s of warm-up; throughput {:.1}/s; errors {}.</p>",
        escape(&r.targets.join(", ")),
        r.duration.as_secs_f64(),
        r.warmup.as_secs_f64(),
        r.throughput_per_second(),
        r.totals.errors.total()
    );
    if let Some(b) = &r.bottleneck {
        let _ = writeln!(
            h,
            "<p class=\"warn bottleneck\"><strong>Bottleneck: the load generator ({}).</strong> {}</p>",
            b.kind,
            escape(&b.reason)
        );
    }
    for w in &r.warnings {
        let _ = writeln!(h, "<p class=\"warn\">Warning: {}</p>", escape(w));
    }
    h.push_str("<table><tr><th>series (ms)</th><th>count</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th><th>mean</th></tr>\n");
    for s in r.series() {
        let _ = writeln!(
            h,
            "<tr><td title=\"{}\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(s.description),
            s.name,
            s.count,
            ms(s.p50_us as f64),
            ms(s.p90_us as f64),
            ms(s.p99_us as f64),
            ms(s.p999_us as f64),
            ms(s.max_us as f64),
            ms(s.mean_us)
        );
    }
    h.push_str("</table>\n");
    if !r.thresholds.is_empty() {
        h.push_str("<h2>Thresholds</h2>\n<table><tr><th>threshold</th><th>observed</th><th>result</th></tr>\n");
        for t in &r.thresholds {
            let observed = t.line();
            let observed = observed.split_once(", ").map_or("", |(_, rest)| rest);
            let (class, verdict) = if t.passed {
                ("pass", "passed")
            } else {
                ("fail", "FAILED")
            };
            let _ = writeln!(
                h,
                "<tr class=\"{class}\"><td>{}</td><td>{}</td><td>{verdict}</td></tr>",
                escape(&t.threshold.expression),
                escape(observed)
            );
        }
        h.push_str("</table>\n");
    }
    if !r.totals.errors.is_empty() {
        h.push_str("<table><tr><th>error</th><th>count</th></tr>\n");
        for (kind, n) in r.totals.errors.iter() {
            let _ = writeln!(h, "<tr><td>{kind}</td><td>{n}</td></tr>");
        }
        h.push_str("</table>\n");
    }
    let _ = writeln!(h, "<h2>Latency over time</h2>\n{}", latency_chart(r).render());
    let _ = writeln!(h, "<h2>Throughput over time</h2>\n{}", throughput_chart(r).render());
    let _ = writeln!(h, "<h2>Percentile spectrum</h2>\n{}", spectrum_chart(r).render());
    let g = &r.generator;
    let _ = writeln!(
        h,
        "<p class=\"note\">Generator: {:.2} CPU s over {:.1} s ({:.0}% of {} core(s)), peak RSS {:.1} MiB. \
         Machine: Linux {}, {} CPUs ({}), allowed CPUs {}. Parameters: {}. Environment: {}.</p>",
        g.cpu_seconds,
        g.wall_seconds,
        g.busy_fraction * 100.0,
        g.threads.min(g.cpus_usable),
        g.peak_rss_bytes as f64 / 1048576.0,
        escape(&r.environment.kernel),
        r.environment.cpu_count,
        escape(&r.environment.cpu_model),
        escape(&r.environment.cpus_allowed),
        escape(&serde_json::Value::Object(r.parameters.clone()).to_string()),
        escape(&serde_json::Value::Object(r.environment_extra.clone()).to_string()),
    );
    h.push_str("</body></html>\n");
    h
}

fn latency_chart(r: &Report) -> Chart {
    let mut lines = Vec::new();
    for (i, s) in r.layout.series.iter().enumerate() {
        for (label, pick) in [("p50", 0usize), ("p99", 1)] {
            let points = r
                .intervals
                .iter()
                .filter(|row| row.series[i].count > 0)
                .map(|row| {
                    let st = &row.series[i];
                    let v = if pick == 0 { st.p50_us } else { st.p99_us };
                    (row.index as f64, v as f64 / 1000.0)
                })
                .collect();
            lines.push(Line {
                name: format!("{} {label}", s.name),
                points,
            });
        }
    }
    Chart {
        title: "Latency per second (p50, p99)".into(),
        x_label: "seconds since start (warm-up included)".into(),
        y_label: "ms".into(),
        x_axis: XAxis::Linear,
        lines,
    }
}

fn throughput_chart(r: &Report) -> Chart {
    let per_s = |n: u64| per_second(n, std::time::Duration::from_secs(1));
    let completed = r
        .intervals
        .iter()
        .map(|row| (row.index as f64, per_s(row.series[0].count)))
        .collect();
    let errors = r
        .intervals
        .iter()
        .map(|row| (row.index as f64, per_s(row.errors.total())))
        .collect();
    Chart {
        title: "Throughput per second".into(),
        x_label: "seconds since start (warm-up included)".into(),
        y_label: "per second".into(),
        x_axis: XAxis::Linear,
        lines: vec![
            Line {
                name: "completed".into(),
                points: completed,
            },
            Line {
                name: "errors".into(),
                points: errors,
            },
        ],
    }
}

fn spectrum_chart(r: &Report) -> Chart {
    let lines = r
        .layout
        .series
        .iter()
        .zip(&r.totals.histograms)
        .map(|(s, hist)| Line {
            name: s.name.to_owned(),
            points: hdr_spectrum::points(hist)
                .into_iter()
                .map(|(p, us)| (p, us as f64 / 1000.0))
                .collect(),
        })
        .collect();
    Chart {
        title: "Latency by percentile (measured window)".into(),
        x_label: "percentile".into(),
        y_label: "ms".into(),
        x_axis: XAxis::Percentile {
            max_nines: SPECTRUM_NINES,
        },
        lines,
    }
}
