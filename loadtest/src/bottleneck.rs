//! Was the generator, rather than the target, what limited the run? A load generator that cannot
//! keep up blames the target for its own slowness: the closed model's throughput is then the
//! generator's, and the open model's late sends show in the corrected latency as if the target
//! had been slow. The verdict is a pure function of what was observed:
//!
//! - **cpu**: the worker threads were runnable (on a CPU or waiting for one) nearly all the run
//!   ([`RUNNABLE_SATURATED`]). A generator waiting for the target spends time blocked on its
//!   sockets; one that never blocks had more work than CPU, whether it used the cores itself or
//!   other processes took them (`cpu_wait_fraction`, from `schedstat`). Runnable time is the
//!   larger of the kernel's figure and the runtime's unparked time (see
//!   `process_stats::ThreadLife`); with neither, its own CPU use (`busy_fraction`) stands in.
//! - **late_sends** (open model): at least [`LATE_SHARE`] of the requests left late although a
//!   connection was free. Slots that waited for a connection because every one was busy with
//!   the pool at `--max-connections` are not counted against the generator: there the target
//!   held the connections (it answered too slowly for the rate), which the report says apart.

use crate::process_stats::GeneratorUsage;

/// Worker threads runnable this share of their life had no time to wait for the target.
pub const RUNNABLE_SATURATED: f64 = 0.90;
/// A share of late sends that says the schedule was not kept...
pub const LATE_SHARE: f64 = 0.05;
/// ...when it is at least this many requests, not the odd timer slip of a short run.
pub const LATE_MIN: u64 = 10;

/// The generator's verdict on itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Bottleneck {
    /// `"cpu"` or `"late_sends"`.
    pub kind: &'static str,
    /// What was observed and what it means for the figures, in one or two sentences.
    pub reason: String,
}

/// The open model's send counts, when a scenario keeps them apart (HTTP does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LateSends {
    pub sent: u64,
    pub late: u64,
    /// Late sends that waited for a connection with the pool full (the target's doing).
    pub late_pool_full: u64,
}

/// What the run says about its own limits.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Judgement {
    pub generator: Option<Bottleneck>,
    /// When late sends come from a full pool: a note that they are the target's.
    pub target_note: Option<String>,
}

fn pct(x: f64) -> String {
    format!("{:.0}%", x * 100.0)
}

pub fn judge(g: &GeneratorUsage, late: Option<LateSends>) -> Judgement {
    let share = |n: u64| late.map_or(0.0, |l| if l.sent > 0 { n as f64 / l.sent as f64 } else { 0.0 });
    let late_note = late
        .filter(|l| l.late > 0)
        .map(|l| format!(", and {} of the requests ({}) left late", l.late, pct(share(l.late))))
        .unwrap_or_default();
    let (saturated, how) = match (g.runnable_fraction, g.cpu_wait_fraction) {
        (Some(r), Some(wait)) => (
            r >= RUNNABLE_SATURATED,
            format!(
                "its worker threads were runnable {} of the run (on a CPU {}, waiting for one {}{})",
                pct(r),
                pct(r - wait),
                pct(wait),
                if wait >= 0.2 {
                    ": other processes had the cores"
                } else {
                    ""
                }
            ),
        ),
        (Some(r), None) => (
            r >= RUNNABLE_SATURATED,
            format!("its worker threads were runnable {} of the run", pct(r)),
        ),
        (None, _) => (
            g.busy_fraction >= RUNNABLE_SATURATED,
            format!(
                "it used {} of the {} core(s) it can use",
                pct(g.busy_fraction),
                g.threads.min(g.cpus_usable)
            ),
        ),
    };
    if saturated {
        return Judgement {
            generator: Some(Bottleneck {
                kind: "cpu",
                reason: format!(
                    "the load generator was the bottleneck: {how}, so it never waited for the target{late_note}. \
                     The throughput and latencies say more about the generator than about the target: add --threads, \
                     give it cores the target does not use, or lower the load"
                ),
            }),
            target_note: None,
        };
    }
    let Some(l) = late else {
        return Judgement::default();
    };
    let own = l.late.saturating_sub(l.late_pool_full);
    if own >= LATE_MIN && share(own) >= LATE_SHARE {
        return Judgement {
            generator: Some(Bottleneck {
                kind: "late_sends",
                reason: format!(
                    "the load generator did not keep its schedule: {own} requests ({}) left later than --late-after \
                     after their intended time although a connection was free ({how}). That lag is the generator's \
                     (a loaded machine, timer or scheduling delays), yet it is part of the corrected latency: read \
                     the latencies as the generator's limit, not the target's",
                    pct(share(own))
                ),
            }),
            target_note: None,
        };
    }
    let target_note = (l.late_pool_full >= LATE_MIN && share(l.late_pool_full) >= LATE_SHARE).then(|| {
        format!(
            "{} requests ({}) left late because every connection was busy with the pool at --max-connections: the \
             target answered too slowly for the rate (raise --max-connections if it can take more requests at once). \
             That wait is the target's and is in the corrected latency, as users would see it",
            l.late_pool_full,
            pct(share(l.late_pool_full))
        )
    });
    Judgement {
        generator: None,
        target_note,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(busy: f64, runnable: Option<(f64, f64)>) -> GeneratorUsage {
        GeneratorUsage {
            cpu_seconds: 1.0,
            wall_seconds: 1.0,
            threads: 1,
            cpus_usable: 2,
            busy_fraction: busy,
            peak_rss_bytes: 0,
            runnable_fraction: runnable.map(|r| r.0),
            cpu_wait_fraction: runnable.map(|r| r.1),
        }
    }

    fn late(sent: u64, late: u64, late_pool_full: u64) -> Option<LateSends> {
        Some(LateSends {
            sent,
            late,
            late_pool_full,
        })
    }

    #[test]
    fn verdicts() {
        // (name, usage, late sends, verdict, target note)
        type Case = (
            &'static str,
            GeneratorUsage,
            Option<LateSends>,
            Option<&'static str>,
            bool,
        );
        let cases: &[Case] = &[
            (
                "idle, on time",
                usage(0.2, Some((0.25, 0.0))),
                late(1000, 3, 0),
                None,
                false,
            ),
            (
                "closed, saturated",
                usage(0.95, Some((0.97, 0.02))),
                None,
                Some("cpu"),
                false,
            ),
            (
                "cores taken by others",
                usage(0.5, Some((0.95, 0.45))),
                late(1000, 800, 700),
                Some("cpu"),
                false,
            ),
            ("no schedstat, busy", usage(0.93, None), None, Some("cpu"), false),
            (
                "no schedstat, never parked, half a core",
                GeneratorUsage {
                    runnable_fraction: Some(0.97),
                    ..usage(0.5, None)
                },
                None,
                Some("cpu"),
                false,
            ),
            (
                "own late sends",
                usage(0.4, Some((0.5, 0.1))),
                late(1000, 200, 20),
                Some("late_sends"),
                false,
            ),
            (
                "late behind a full pool",
                usage(0.1, Some((0.12, 0.0))),
                late(1000, 600, 590),
                None,
                true,
            ),
            (
                "a few late",
                usage(0.1, Some((0.12, 0.0))),
                late(1000, 40, 0),
                None,
                false,
            ),
            (
                "a short run's timer slips",
                usage(0.1, Some((0.12, 0.0))),
                late(25, 3, 0),
                None,
                false,
            ),
            (
                "nothing sent",
                usage(0.1, Some((0.12, 0.0))),
                late(0, 0, 0),
                None,
                false,
            ),
        ];
        for (name, g, l, kind, note) in cases {
            let j = judge(g, *l);
            assert_eq!(j.generator.as_ref().map(|b| b.kind), *kind, "{name}: {j:?}");
            assert_eq!(j.target_note.is_some(), *note, "{name}: {j:?}");
        }
    }

    #[test]
    fn the_reason_says_what_was_seen() {
        let j = judge(&usage(0.5, Some((0.95, 0.45))), late(1000, 800, 700));
        let reason = j.generator.unwrap().reason;
        assert!(
            reason
                .contains("runnable 95% of the run (on a CPU 50%, waiting for one 45%: other processes had the cores)"),
            "{reason}"
        );
        assert!(reason.contains("800 of the requests (80%) left late"), "{reason}");
    }
}
