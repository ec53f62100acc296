//! An optional deadline around a future, for `--timeout` and `--proxy-timeout`.
//!
//! `tokio::time::timeout` would do, but choosing between it and the bare future in an `async fn`
//! (or passing the future into one) lays the future out twice in the caller's state machine, and
//! every request's future is moved whole at least once. This wrapper keeps one copy, plus a
//! pointer to a boxed timer that exists only when a limit is configured.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::Sleep;

/// The limit passed before the future finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

pin_project! {
    /// Resolves to the future's output, or to [`Elapsed`] once the limit (if any) has passed.
    pub struct Deadline<F> {
        #[pin]
        inner: F,
        timer: Option<Pin<Box<Sleep>>>,
    }
}

impl<F: Future> Deadline<F> {
    /// `None` never expires and starts no timer.
    #[inline]
    pub fn new(limit: Option<Duration>, inner: F) -> Self {
        Deadline {
            inner,
            timer: limit.map(|l| Box::pin(tokio::time::sleep(l))),
        }
    }
}

impl<F: Future> Future for Deadline<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(out) = this.inner.poll(cx) {
            return Poll::Ready(Ok(out));
        }
        match this.timer {
            Some(timer) => timer.as_mut().poll(cx).map(|()| Err(Elapsed)),
            None => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn no_limit_waits_for_the_future() {
        let slow = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            7
        };
        assert_eq!(Deadline::new(None, slow).await, Ok(7));
    }

    #[tokio::test]
    async fn a_limit_cuts_a_slow_future_short() {
        let slow = tokio::time::sleep(Duration::from_secs(30));
        let started = std::time::Instant::now();
        assert_eq!(Deadline::new(Some(Duration::from_millis(20)), slow).await, Err(Elapsed));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_future_that_finishes_in_time_wins() {
        let quick = async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            "done"
        };
        assert_eq!(Deadline::new(Some(Duration::from_secs(30)), quick).await, Ok("done"));
    }
}
