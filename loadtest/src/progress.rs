//! Live progress while a run goes: on a terminal one line rewritten every second (elapsed time,
//! completion rate, p99 of the last second, errors); otherwise a plain line every few seconds, so
//! logs of CI jobs stay readable. Written to stderr, so stdout carries only the summary.

use std::io::{IsTerminal, Write};

use crate::recorder::{Layout, RunClock};
use crate::report::{LoadModelKind, ms};
use crate::timeline::IntervalRow;

/// Seconds between plain (non-terminal) progress lines.
const PLAIN_EVERY_S: u64 = 5;

pub struct Progress {
    enabled: bool,
    terminal: bool,
    model: LoadModelKind,
    layout: Option<Layout>,
    total_s: u64,
    drew: bool,
    /// Count mode: the requests to send, and those sent so far (counter 0, measured seconds).
    counting: Option<(u64, u64)>,
}

impl Progress {
    /// Progress on stderr when `enabled`; its form depends on whether stderr is a terminal.
    pub fn new(enabled: bool, model: LoadModelKind) -> Progress {
        Progress {
            enabled,
            terminal: std::io::stderr().is_terminal(),
            model,
            layout: None,
            total_s: 0,
            drew: false,
            counting: None,
        }
    }

    /// A counted run (`--requests N`): lines show requests sent of N instead of seconds of a
    /// planned length, which a counted run does not have.
    pub fn counting(&mut self, requests: u64) {
        self.counting = Some((requests, 0));
    }

    pub fn start(&mut self, layout: Layout, clock: RunClock) {
        self.layout = Some(layout);
        self.total_s = clock.interval_count();
    }

    /// Shows the newest of `rows` (newly finalized seconds).
    pub fn show(&mut self, rows: &[IntervalRow]) {
        if let Some((_, sent)) = &mut self.counting {
            *sent += rows
                .iter()
                .filter(|r| !r.warmup)
                .map(|r| r.counters.first().copied().unwrap_or(0))
                .sum::<u64>();
        }
        let (Some(row), Some(layout), true) = (rows.last(), self.layout, self.enabled) else {
            return;
        };
        let line = self.line(layout, row);
        let mut err = std::io::stderr().lock();
        if self.terminal {
            let _ = write!(err, "\r\x1b[2K{line}");
            self.drew = true;
        } else if (row.index + 1) % PLAIN_EVERY_S == 0 {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
    }

    pub fn finish(&mut self) {
        if self.drew {
            let _ = writeln!(std::io::stderr());
            self.drew = false;
        }
    }

    fn line(&self, layout: Layout, row: &IntervalRow) -> String {
        let primary = &row.series[0];
        let rate = primary.count
            + row
                .errors
                .iter()
                .filter(|(k, _)| !matches!(k, crate::error_kind::ErrorKind::Status(_)))
                .map(|(_, n)| n)
                .sum::<u64>();
        let of = match self.counting {
            Some((n, sent)) => format!("s, sent {sent}/{n}"),
            None => format!("s/{}s", self.total_s),
        };
        format!(
            "[{:>4}{of}] {} {}rate {}/s  p99 {} ms ({})  errors {}",
            row.index + 1,
            self.model.label(),
            if row.warmup { "warm-up " } else { "" },
            rate,
            ms(primary.p99_us as f64),
            layout.series[0].name,
            row.errors.total()
        )
    }
}
