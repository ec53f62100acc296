//! Line charts as inline SVG: no script, no external resource, so a report opens anywhere.

use std::fmt::Write;

const WIDTH: f64 = 860.0;
const HEIGHT: f64 = 300.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 150.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 45.0;
const COLORS: [&str; 6] = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"];

/// How the x axis maps values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum XAxis {
    /// Plain numbers (seconds).
    Linear,
    /// Percentiles 0–100 spread as log10(1/(1−p)), the HdrHistogram spectrum view, up to
    /// `max_nines` nines (3 → 99.9%).
    Percentile { max_nines: u32 },
}

/// One line of a chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// A chart: title, axis labels, lines.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub x_axis: XAxis,
    pub lines: Vec<Line>,
}

impl Chart {
    /// The chart as an `<svg>` element.
    pub fn render(&self) -> String {
        let plot_w = WIDTH - LEFT - RIGHT;
        let plot_h = HEIGHT - TOP - BOTTOM;
        let x_of = |x: f64| match self.x_axis {
            XAxis::Linear => x,
            XAxis::Percentile { max_nines } => {
                let p = (x / 100.0).min(1.0 - 10f64.powi(-(max_nines as i32)));
                (1.0 / (1.0 - p)).log10()
            }
        };
        let all = self.lines.iter().flat_map(|l| l.points.iter());
        let (x_min, x_max) = match self.x_axis {
            XAxis::Linear => all
                .clone()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p.0), b.max(p.0))),
            XAxis::Percentile { max_nines } => (0.0, f64::from(max_nines)),
        };
        let (x_min, x_max) = if x_min.is_finite() && x_max > x_min {
            (x_min, x_max)
        } else {
            (0.0, 1.0)
        };
        let y_max = nice_ceiling(all.map(|p| p.1).fold(0.0, f64::max));
        let sx =
            |x: f64| LEFT + (x_of(x) - x_of_min(self.x_axis, x_min)) / (x_max - x_of_min(self.x_axis, x_min)) * plot_w;
        let sy = |y: f64| TOP + plot_h - y / y_max * plot_h;

        let mut s = String::new();
        let _ = write!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" font-size="12">"#
        );
        let _ = write!(
            s,
            r#"<text x="{LEFT}" y="18" font-weight="bold">{}</text>"#,
            escape(&self.title)
        );
        // Axes, grid and tick labels.
        let _ = write!(
            s,
            r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#999"/>"##
        );
        for i in 0..=4 {
            let y = y_max * f64::from(i) / 4.0;
            let py = sy(y);
            let _ = write!(
                s,
                r##"<line x1="{LEFT}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#eee"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                LEFT + plot_w,
                LEFT - 6.0,
                py + 4.0,
                tick_label(y)
            );
        }
        match self.x_axis {
            XAxis::Linear => {
                for i in 0..=5 {
                    let x = x_min + (x_max - x_min) * f64::from(i) / 5.0;
                    let px = LEFT + plot_w * f64::from(i) / 5.0;
                    let _ = write!(
                        s,
                        r#"<text x="{px:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                        TOP + plot_h + 16.0,
                        tick_label(x)
                    );
                }
            }
            XAxis::Percentile { max_nines } => {
                for n in 0..=max_nines {
                    let px = LEFT + plot_w * f64::from(n) / f64::from(max_nines.max(1));
                    let label = match n {
                        0 => "0%".to_owned(),
                        1 => "90%".to_owned(),
                        2 => "99%".to_owned(),
                        n => format!("99.{}%", "9".repeat(n as usize - 2)),
                    };
                    let _ = write!(
                        s,
                        r#"<text x="{px:.1}" y="{:.1}" text-anchor="middle">{label}</text>"#,
                        TOP + plot_h + 16.0
                    );
                }
            }
        }
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            LEFT + plot_w / 2.0,
            HEIGHT - 8.0,
            escape(&self.x_label)
        );
        let _ = write!(
            s,
            r#"<text x="14" y="{:.1}" transform="rotate(-90 14 {:.1})" text-anchor="middle">{}</text>"#,
            TOP + plot_h / 2.0,
            TOP + plot_h / 2.0,
            escape(&self.y_label)
        );
        // Lines and legend.
        for (i, line) in self.lines.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            if !line.points.is_empty() {
                let pts: Vec<String> = line
                    .points
                    .iter()
                    .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
                    .collect();
                let _ = write!(
                    s,
                    r#"<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{}"/>"#,
                    pts.join(" ")
                );
            }
            let ly = TOP + 10.0 + 18.0 * i as f64;
            let lx = LEFT + plot_w + 12.0;
            let _ = write!(
                s,
                r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{color}" stroke-width="3"/><text x="{}" y="{}">{}</text>"#,
                lx + 18.0,
                lx + 24.0,
                ly + 4.0,
                escape(&line.name)
            );
        }
        s.push_str("</svg>");
        s
    }
}

fn x_of_min(axis: XAxis, x_min: f64) -> f64 {
    match axis {
        XAxis::Linear => x_min,
        XAxis::Percentile { .. } => 0.0,
    }
}

/// The smallest 1, 2 or 5 × 10^k at or above `v` (at least 1).
fn nice_ceiling(v: f64) -> f64 {
    if v <= 1.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|&c| c >= v)
        .unwrap_or(10.0 * magnitude)
}

fn tick_label(v: f64) -> String {
    if v == v.trunc() && v.abs() < 1e7 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Escapes text for XML content and attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_polyline_per_line_and_a_legend() {
        let chart = Chart {
            title: "latency <ms>".into(),
            x_label: "s".into(),
            y_label: "ms".into(),
            x_axis: XAxis::Linear,
            lines: vec![
                Line {
                    name: "p50".into(),
                    points: vec![(0.0, 1.0), (1.0, 2.0), (2.0, 1.5)],
                },
                Line {
                    name: "p99".into(),
                    points: vec![(0.0, 3.0), (1.0, 9.0), (2.0, 4.0)],
                },
            ],
        };
        let svg = chart.render();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("latency &lt;ms&gt;"));
        assert!(svg.contains(">p99</text>"));
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }

    #[test]
    fn empty_and_percentile_charts_stay_finite() {
        let chart = Chart {
            title: "spectrum".into(),
            x_label: "percentile".into(),
            y_label: "ms".into(),
            x_axis: XAxis::Percentile { max_nines: 4 },
            lines: vec![
                Line {
                    name: "a".into(),
                    points: vec![(0.0, 1.0), (99.0, 5.0), (100.0, 7.0)],
                },
                Line {
                    name: "empty".into(),
                    points: vec![],
                },
            ],
        };
        let svg = chart.render();
        assert!(svg.contains(">99.99%</text>"), "{svg}");
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }

    #[test]
    fn nice_ceilings() {
        for (v, want) in [(0.3, 1.0), (3.0, 5.0), (7.0, 10.0), (12.0, 20.0), (450.0, 500.0)] {
            assert_eq!(nice_ceiling(v), want, "{v}");
        }
    }
}
