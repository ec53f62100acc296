//! `limits.consecutive_failure_limit`: a hub whose spawns keep failing stops, so that its
//! supervisor starts it afresh (JupyterHub's `Spawner.consecutive_failure_limit`).
//!
//! The remedy is for a hub that went bad while running (a Kubernetes client that lost its way,
//! a spawner stuck on stale state): a fresh process adopts the running servers and starts clean.
//! A failure of one user's bad image counts too, as in JupyterHub, which is why the limit is off
//! by default and z2jh sets 5: any spawn that succeeds ends the run.

use std::sync::atomic::{AtomicU32, Ordering};

use tokio::sync::watch;

pub struct ConsecutiveFailures {
    limit: u32,
    in_a_row: AtomicU32,
    /// Why the hub gave up, once it has.
    given_up: watch::Sender<Option<String>>,
}

impl ConsecutiveFailures {
    /// Gives up after `limit` failures in a row; 0 never does.
    pub fn new(limit: u32) -> ConsecutiveFailures {
        ConsecutiveFailures {
            limit,
            in_a_row: AtomicU32::new(0),
            given_up: watch::Sender::new(None),
        }
    }

    /// A spawn succeeded: the run of failures is over.
    pub fn success(&self) {
        self.in_a_row.store(0, Ordering::Relaxed);
    }

    /// A spawn failed; at the limit, the hub gives up (once).
    pub fn failure(&self) {
        let in_a_row = self.in_a_row.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        if self.limit == 0 || in_a_row < self.limit {
            return;
        }
        self.given_up.send_if_modified(|given_up| {
            if given_up.is_some() {
                return false;
            }
            let why = format!(
                "{in_a_row} spawns failed in a row (limits.consecutive_failure_limit = {}): \
                 the hub stops, for its supervisor to start it afresh; user servers keep running",
                self.limit
            );
            tracing::error!("{why}");
            *given_up = Some(why);
            true
        });
    }

    /// Resolves with the reason once the hub has given up; never without a limit.
    pub async fn given_up(&self) -> String {
        let mut rx = self.given_up.subscribe();
        match rx.wait_for(Option::is_some).await {
            Ok(why) => why.clone().unwrap_or_default(),
            // The sender lives as long as `self`.
            Err(_) => std::future::pending().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn gave_up(failures: &ConsecutiveFailures) -> Option<String> {
        tokio::time::timeout(Duration::from_millis(50), failures.given_up())
            .await
            .ok()
    }

    #[tokio::test]
    async fn only_failures_in_a_row_count() {
        let failures = ConsecutiveFailures::new(3);
        failures.failure();
        failures.failure();
        failures.success();
        failures.failure();
        failures.failure();
        assert_eq!(gave_up(&failures).await, None, "a success ended the first run");
        failures.failure();
        let why = gave_up(&failures).await.expect("three in a row");
        assert!(why.starts_with("3 spawns failed in a row"), "{why}");
        failures.failure();
        assert_eq!(
            gave_up(&failures).await,
            Some(why),
            "given up once, for the first reason"
        );
    }

    #[tokio::test]
    async fn no_limit_never_gives_up() {
        let failures = ConsecutiveFailures::new(0);
        for _ in 0..1000 {
            failures.failure();
        }
        assert_eq!(gave_up(&failures).await, None);
    }
}
