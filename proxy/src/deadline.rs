//! An optional deadline around a future: `--proxy-timeout` for a WebSocket handshake.
//!
//! The request path does not use it: there a `match` between the bare future and
//! `tokio::time::timeout` measured some 1,000 user-space instructions a request cheaper (the
//! wrapper's copies and polls), although it lays the future out in two variants.

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
