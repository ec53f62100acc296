//! The end-of-run summary printed on the terminal.

use std::fmt::Write;

use super::{Report, ms, per_second};

pub fn render(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "edgeload {}: {} model", r.scenario, r.model.label());
    let _ = writeln!(s, "  {}", r.model.note());
    let _ = writeln!(s, "targets: {}", r.targets.join(" "));
    let params: Vec<String> = r.parameters.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let _ = writeln!(s, "parameters: {}", params.join(" "));
    let _ = writeln!(
        s,
        "measured {:.1} s after {:.1} s warm-up: {} completed ({:.1}/s)",
        r.duration.as_secs_f64(),
        r.warmup.as_secs_f64(),
        r.totals.histograms[0].len(),
        r.throughput_per_second()
    );
    let counters: Vec<String> = r
        .layout
        .counters
        .iter()
        .zip(&r.totals.counters)
        .map(|(name, n)| format!("{name} {n} ({:.1}/s)", per_second(*n, r.duration)))
        .collect();
    if !counters.is_empty() {
        let _ = writeln!(s, "counts: {}", counters.join(", "));
    }
    let _ = writeln!(
        s,
        "{:<14} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "latency (ms)", "p50", "p90", "p99", "p99.9", "max", "mean"
    );
    for x in r.series() {
        let _ = writeln!(
            s,
            "  {:<12} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            x.name,
            ms(x.p50_us as f64),
            ms(x.p90_us as f64),
            ms(x.p99_us as f64),
            ms(x.p999_us as f64),
            ms(x.max_us as f64),
            ms(x.mean_us)
        );
    }
    if r.totals.errors.is_empty() {
        let _ = writeln!(s, "errors: none");
    } else {
        let kinds: Vec<String> = r.totals.errors.iter().map(|(k, n)| format!("{k} {n}")).collect();
        let _ = writeln!(s, "errors: {} ({})", r.totals.errors.total(), kinds.join(", "));
    }
    let g = &r.generator;
    let runnable = g
        .runnable_fraction
        .map(|f| format!(", workers runnable {:.0}%", f * 100.0))
        .unwrap_or_default();
    let _ = writeln!(
        s,
        "generator: {:.2} CPU s in {:.1} s, {:.0}% of {} core(s){runnable}; peak RSS {:.1} MiB",
        g.cpu_seconds,
        g.wall_seconds,
        g.busy_fraction * 100.0,
        g.threads.min(g.cpus_usable),
        g.peak_rss_bytes as f64 / 1048576.0
    );
    if let Some(b) = &r.bottleneck {
        let _ = writeln!(s, "BOTTLENECK ({}): {}", b.kind, b.reason);
    }
    for w in &r.warnings {
        let _ = writeln!(s, "warning: {w}");
    }
    for t in &r.thresholds {
        let _ = writeln!(s, "threshold {}", t.line());
    }
    s
}
