//! Calls to the API server: at most `api_concurrency` in flight across all spawns, and retried on
//! 429 and 5xx (and on transport errors) with exponential backoff, honouring the server's
//! `retryAfterSeconds` (API Priority and Fairness sends it with 429).
//!
//! Watches do not go through here: they are long-lived and would hold permits forever.
//! A permit is held for one attempt only, never during a backoff sleep, so a throttled call does
//! not block the others.

use std::future::Future;
use std::time::Duration;

use tokio::sync::Semaphore;

/// First backoff; doubled on each retry.
const BASE_DELAY: Duration = Duration::from_millis(100);
/// Longest backoff between two attempts, and the cap on a server's `retryAfterSeconds`.
const MAX_DELAY: Duration = Duration::from_secs(10);

pub struct ApiGate {
    permits: Semaphore,
    retries: u32,
}

impl ApiGate {
    pub fn new(concurrency: usize, retries: u32) -> ApiGate {
        ApiGate {
            permits: Semaphore::new(concurrency.max(1)),
            retries,
        }
    }

    /// Runs `call` until it succeeds, fails for good, or the retries are spent.
    pub async fn call<T, F, Fut>(&self, what: &str, mut call: F) -> Result<T, kube::Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, kube::Error>>,
    {
        let mut attempt = 0;
        loop {
            let result = {
                // The semaphore is never closed, so acquire cannot fail; without a permit the call
                // still goes ahead rather than failing the spawn.
                let _permit = self.permits.acquire().await.ok();
                call().await
            };
            match result {
                Ok(v) => return Ok(v),
                Err(e) => match retry_delay(&e, attempt, self.retries, jitter()) {
                    Some(delay) => {
                        tracing::debug!("{what}: {e}; retrying in {delay:?}");
                        tokio::time::sleep(delay).await;
                        attempt += 1;
                    }
                    None => return Err(e),
                },
            }
        }
    }
}

/// How long to wait before retry `attempt` (0-based) of a call that failed with `error`, or
/// `None` when it must not be retried. `jitter` in [0, 1) spreads retries of concurrent calls.
pub fn retry_delay(error: &kube::Error, attempt: u32, retries: u32, jitter: f64) -> Option<Duration> {
    if attempt >= retries {
        return None;
    }
    let server_says = match error {
        kube::Error::Api(status) if status.code == 429 || status.code >= 500 => status
            .details
            .as_ref()
            .map(|d| d.retry_after_seconds)
            .filter(|s| *s > 0)
            .map(|s| Duration::from_secs(u64::from(s))),
        kube::Error::Api(_) => return None,
        // Transport errors (connection refused or reset, timeouts): the server may not have seen
        // the call; a retried create then meets 409, which the callers handle.
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::HttpError(_) => None,
        _ => return None,
    };
    if let Some(d) = server_says {
        return Some(d.min(MAX_DELAY));
    }
    let exp = BASE_DELAY.saturating_mul(1u32 << attempt.min(16)).min(MAX_DELAY);
    Some(exp.mul_f64(0.5 + jitter.clamp(0.0, 1.0) / 2.0))
}

/// A cheap jitter in [0, 1): the clock's nanoseconds. Good enough to de-synchronise retries.
fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    f64::from(nanos % 1000) / 1000.0
}

/// Is this the API's 409 Conflict (AlreadyExists, or a failed precondition)?
pub fn is_conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(s) if s.code == 409)
}

/// Is this the API's 404?
pub fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(s) if s.code == 404)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    fn api(code: u16, retry_after: Option<u32>) -> kube::Error {
        let mut status = Status::failure("x", "y").with_code(code);
        if let Some(s) = retry_after {
            status.details = Some(serde_json::from_value(serde_json::json!({"retryAfterSeconds": s})).unwrap());
        }
        kube::Error::Api(status.boxed())
    }

    #[test]
    fn what_is_retried() {
        for (code, retried) in [
            (429, true),
            (500, true),
            (503, true),
            (504, true),
            (400, false),
            (403, false),
            (404, false),
            (409, false),
            (422, false),
        ] {
            assert_eq!(retry_delay(&api(code, None), 0, 5, 0.0).is_some(), retried, "{code}");
        }
        assert!(retry_delay(&api(429, None), 5, 5, 0.0).is_none(), "retries are bounded");
        assert!(
            retry_delay(&api(429, None), 0, 0, 0.0).is_none(),
            "0 retries means none"
        );
    }

    #[test]
    fn backoff_grows_and_honours_retry_after() {
        let d0 = retry_delay(&api(503, None), 0, 10, 0.0).unwrap();
        let d3 = retry_delay(&api(503, None), 3, 10, 0.0).unwrap();
        assert_eq!(d0, Duration::from_millis(50));
        assert_eq!(d3, Duration::from_millis(400));
        let capped = retry_delay(&api(503, None), 9, 10, 0.999).unwrap();
        assert!(capped <= MAX_DELAY);
        assert_eq!(
            retry_delay(&api(429, Some(2)), 0, 5, 0.5).unwrap(),
            Duration::from_secs(2)
        );
        assert_eq!(retry_delay(&api(429, Some(3600)), 0, 5, 0.5).unwrap(), MAX_DELAY);
    }

    #[test]
    fn conflicts_and_missing() {
        assert!(is_conflict(&api(409, None)));
        assert!(!is_conflict(&api(404, None)));
        assert!(is_not_found(&api(404, None)));
    }
}
