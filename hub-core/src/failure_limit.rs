//! `limits.consecutive_failure_limit`: a hub whose spawns keep failing stops, so that its
//! supervisor starts it afresh (JupyterHub's `Spawner.consecutive_failure_limit`).
//!
//! The remedy is for a hub that went bad while running (a Kubernetes client that lost its way,
//! a spawner stuck on stale state): a fresh process adopts the running servers and starts clean.
//! A failure of one user's bad image counts too, as in JupyterHub, which is why the limit is off
//! by default and z2jh sets 5: any spawn that succeeds ends the run.

use std::sync::atomic::{AtomicU32, Ordering};

pub struct ConsecutiveFailures {
    limit: u32,
    in_a_row: AtomicU32,
}

impl ConsecutiveFailures {
    /// Gives up after `limit` failures in a row; 0 never does.
    pub fn new(limit: u32) -> ConsecutiveFailures {
        ConsecutiveFailures {
            limit,
            in_a_row: AtomicU32::new(0),
        }
    }

    /// A spawn succeeded: the run of failures is over.
    pub fn success(&self) {
        self.in_a_row.store(0, Ordering::Relaxed);
    }

    /// A spawn failed. At the limit (reached once per run of failures), why the hub gives up.
    pub fn failure(&self) -> Option<String> {
        let in_a_row = self.in_a_row.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        if self.limit == 0 || in_a_row != self.limit {
            return None;
        }
        Some(format!(
            "{in_a_row} spawns failed in a row (limits.consecutive_failure_limit = {}): \
             the hub stops, for its supervisor to start it afresh; user servers keep running",
            self.limit
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_failures_in_a_row_count() {
        let failures = ConsecutiveFailures::new(3);
        assert_eq!(failures.failure(), None);
        assert_eq!(failures.failure(), None);
        failures.success();
        assert_eq!(failures.failure(), None);
        assert_eq!(failures.failure(), None, "a success ended the first run");
        let why = failures.failure().expect("three in a row");
        assert!(why.starts_with("3 spawns failed in a row"), "{why}");
        assert_eq!(failures.failure(), None, "given up once");
    }

    #[test]
    fn no_limit_never_gives_up() {
        let failures = ConsecutiveFailures::new(0);
        assert!((0..1000).all(|_| failures.failure().is_none()));
    }
}
