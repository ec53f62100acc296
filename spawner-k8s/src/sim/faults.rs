//! Injected faults: the failures a spawner must survive, on demand.
//!
//! - [`Fault::Status`]: the next `times` matching requests answer an error `Status` (409, 410,
//!   429 with `Retry-After`, 500, …) instead of being served;
//! - [`Fault::CloseWatches`]: every open watch stream ends now (the client sees a clean end of
//!   stream and must re-watch);
//! - [`Fault::StallWatches`]: watch streams open at the time of the call send nothing, not even
//!   bookmarks, for a while: a silently dead watch. Watches opened later are not affected, so a
//!   client that notices and re-watches recovers;
//! - [`Fault::ExpireHistory`]: the watch history is compacted, so resuming from any older
//!   resourceVersion gets 410 Expired and the client must re-list.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::api_error::ApiError;
use super::stats::Verb;

/// A failure to inject with [`Simulator::inject`](super::Simulator::inject).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The next `times` requests matching `verb` and `resource` (`None` matches any; resource
    /// is a plural, with `/status` for the subresource) answer `code`; `retry_after` adds a
    /// `Retry-After` header and `details.retryAfterSeconds`.
    Status {
        verb: Option<Verb>,
        resource: Option<String>,
        code: u16,
        times: u32,
        retry_after: Option<u64>,
    },
    /// End every open watch stream now.
    CloseWatches,
    /// Open watch streams go silent (no events, no bookmarks) for this long.
    StallWatches { for_: Duration },
    /// Compact the watch history: older resourceVersions become 410 Expired.
    ExpireHistory,
}

impl Fault {
    /// The next `times` `verb` requests on `resource` answer `code` (no `Retry-After`).
    pub fn status(verb: Verb, resource: &str, code: u16, times: u32) -> Self {
        Fault::Status {
            verb: Some(verb),
            resource: Some(resource.to_string()),
            code,
            times,
            retry_after: None,
        }
    }

    /// Adds `Retry-After: seconds` to a status fault (other faults are returned unchanged).
    pub fn with_retry_after(self, seconds: u64) -> Self {
        match self {
            Fault::Status {
                verb,
                resource,
                code,
                times,
                ..
            } => Fault::Status {
                verb,
                resource,
                code,
                times,
                retry_after: Some(seconds),
            },
            other => other,
        }
    }
}

struct PendingStatus {
    verb: Option<Verb>,
    resource: Option<String>,
    code: u16,
    remaining: u32,
    retry_after: Option<u64>,
}

/// A stall: watch streams opened before `opened_before` stay silent until `until`.
#[derive(Debug, Clone, Copy)]
pub struct Stall {
    pub opened_before: u64,
    pub until: Instant,
}

pub struct Faults {
    pending: Mutex<Vec<PendingStatus>>,
    /// Bumped by `CloseWatches`; a stream ends when it changes.
    pub close_generation: watch::Sender<u64>,
    /// The current stall, if any; streams wait on changes to it.
    pub stall: watch::Sender<Option<Stall>>,
    next_stream: std::sync::atomic::AtomicU64,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            pending: Mutex::new(Vec::new()),
            close_generation: watch::Sender::new(0),
            stall: watch::Sender::new(None),
            next_stream: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

impl Faults {
    /// Arms a status fault or acts on a watch fault (the history one is the caller's).
    pub fn arm(&self, fault: &Fault) {
        match fault {
            Fault::Status {
                verb,
                resource,
                code,
                times,
                retry_after,
            } => {
                self.pending
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(PendingStatus {
                        verb: *verb,
                        resource: resource.clone(),
                        code: *code,
                        remaining: *times,
                        retry_after: *retry_after,
                    });
            }
            Fault::CloseWatches => {
                self.close_generation.send_modify(|g| *g += 1);
            }
            Fault::StallWatches { for_ } => {
                let opened_before = self.next_stream.load(std::sync::atomic::Ordering::SeqCst);
                self.stall.send_replace(Some(Stall {
                    opened_before,
                    until: Instant::now() + *for_,
                }));
            }
            Fault::ExpireHistory => {}
        }
    }

    /// The error this request must answer, if a status fault matches it (and uses one of its
    /// `times`).
    pub fn take(&self, verb: Verb, resource: &str) -> Option<ApiError> {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let index = pending.iter().position(|f| {
            f.remaining > 0 && f.verb.is_none_or(|v| v == verb) && f.resource.as_deref().is_none_or(|r| r == resource)
        })?;
        let fault = &mut pending[index];
        fault.remaining -= 1;
        let error = ApiError::injected(fault.code, fault.retry_after);
        if fault.remaining == 0 {
            pending.remove(index);
        }
        Some(error)
    }

    /// A sequence number for a new watch stream (to tell which streams a stall covers).
    pub fn open_stream(&self) -> u64 {
        self.next_stream.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_fault_answers_exactly_its_matching_requests() {
        let faults = Faults::default();
        faults.arm(&Fault::Status {
            verb: Some(Verb::Create),
            resource: Some("pods".into()),
            code: 429,
            times: 2,
            retry_after: Some(3),
        });
        assert!(faults.take(Verb::Get, "pods").is_none());
        assert!(faults.take(Verb::Create, "services").is_none());
        let first = faults.take(Verb::Create, "pods").unwrap();
        assert_eq!(
            (first.code, first.reason, first.retry_after),
            (429, "TooManyRequests", Some(3))
        );
        assert!(faults.take(Verb::Create, "pods").is_some());
        assert!(faults.take(Verb::Create, "pods").is_none());
    }
}
