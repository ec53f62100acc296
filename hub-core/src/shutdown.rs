//! Why the hub process should end, when something other than a signal says so: an admin's
//! `POST /hub/api/shutdown`, or too many spawns failing in a row
//! (`limits.consecutive_failure_limit`). The program running the hub (`edgehub up`) waits for
//! the first request and then stops as on Ctrl-C.

use tokio::sync::watch;

/// A request to end the hub process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shutdown {
    /// For the log and the exit message.
    pub why: String,
    /// Whether the process should exit with a failure status (for a supervisor to start a fresh
    /// one) rather than 0.
    pub failed: bool,
}

/// The first request wins; later ones change nothing.
pub struct Requests(watch::Sender<Option<Shutdown>>);

impl Default for Requests {
    fn default() -> Self {
        Requests(watch::Sender::new(None))
    }
}

impl Requests {
    pub fn request(&self, shutdown: Shutdown) {
        self.0.send_if_modified(|current| {
            if current.is_some() {
                return false;
            }
            *current = Some(shutdown);
            true
        });
    }

    /// Resolves with the first request.
    pub async fn requested(&self) -> Shutdown {
        let mut rx = self.0.subscribe();
        loop {
            if let Some(request) = rx.borrow_and_update().clone() {
                return request;
            }
            if rx.changed().await.is_err() {
                // The sender lives as long as `self`: nothing more will come.
                std::future::pending::<()>().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn the_first_request_wins() {
        let requests = Requests::default();
        let pending = tokio::time::timeout(Duration::from_millis(20), requests.requested()).await;
        assert!(pending.is_err(), "nothing asked yet");
        let first = Shutdown {
            why: "asked".into(),
            failed: false,
        };
        requests.request(first.clone());
        requests.request(Shutdown {
            why: "later".into(),
            failed: true,
        });
        assert_eq!(requests.requested().await, first);
    }
}
