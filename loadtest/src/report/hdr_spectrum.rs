//! The HdrHistogram percentile-spectrum text format (as written by HdrHistogram's
//! `outputPercentileDistribution` and read by hdrplot / HistogramLogAnalyzer), values in
//! milliseconds, five ticks per half-distance to 100%.

use std::fmt::Write;

use hdrhistogram::Histogram;

/// Points per halving of the distance to the 100th percentile.
const TICKS_PER_HALF_DISTANCE: u32 = 5;

/// The spectrum of `h` (values in µs) as text, values in ms.
pub fn render(h: &Histogram<u64>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total = 0u64;
    if !h.is_empty() {
        for v in h.iter_quantiles(TICKS_PER_HALF_DISTANCE) {
            total += v.count_since_last_iteration();
            let value = v.value_iterated_to() as f64 / 1000.0;
            let q = v.quantile_iterated_to();
            if q < 1.0 {
                let _ = writeln!(out, "{value:12.3} {q:2.12} {total:10} {:14.2}", 1.0 / (1.0 - q));
            } else {
                let _ = writeln!(out, "{value:12.3} {q:2.12} {total:10}");
            }
        }
    }
    let (mean, stdev, max) = if h.is_empty() {
        (0.0, 0.0, 0.0)
    } else {
        (h.mean() / 1000.0, h.stdev() / 1000.0, h.max() as f64 / 1000.0)
    };
    // HdrHistogram's sub-bucket count: the power of two that holds 2·10^sigfig values.
    let sub_buckets = 1u64 << (2.0 * 10f64.powi(i32::from(h.sigfig()))).log2().ceil() as u32;
    let _ = writeln!(out, "#[Mean    = {mean:12.3}, StdDeviation   = {stdev:12.3}]");
    let _ = writeln!(out, "#[Max     = {max:12.3}, Total count    = {:12}]", h.len());
    let _ = writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {sub_buckets:12}]",
        h.buckets()
    );
    out
}

/// `(percentile 0–100, value in µs)` points of the spectrum, for plots.
pub fn points(h: &Histogram<u64>) -> Vec<(f64, u64)> {
    if h.is_empty() {
        return Vec::new();
    }
    h.iter_quantiles(TICKS_PER_HALF_DISTANCE)
        .map(|v| (v.quantile_iterated_to() * 100.0, v.value_iterated_to()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recorder::new_histogram;

    #[test]
    fn spectrum_has_the_hdrplot_layout() {
        let mut h = new_histogram();
        for v in 1..=1000u64 {
            h.record(v * 10).unwrap();
        }
        let text = render(&h);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].contains("Value") && lines[0].contains("1/(1-Percentile)"));
        assert_eq!(lines[1], "");
        let first: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(first, ["0.010", "0.000000000000", "1", "1.00"]);
        let last_data = lines[lines.len() - 4];
        let cols: Vec<&str> = last_data.split_whitespace().collect();
        assert_eq!(cols.len(), 3, "the 100% line has no 1/(1-p) column: {last_data}");
        assert_eq!(cols[1], "1.000000000000");
        assert_eq!(cols[2], "1000");
        assert!(
            text.contains("#[Max     =       10.007, Total count    =         1000]"),
            "{text}"
        );
        assert!(text.contains("SubBuckets     =         2048]"), "{text}");
    }

    #[test]
    fn empty_histograms_render_only_the_footer() {
        let text = render(&new_histogram());
        assert!(text.contains("Total count    =            0"));
    }
}
