//! The phases of a simulated notebook user, in order, and why a phase can fail.
//!
//! Each phase is one latency series of the run's [`Layout`] and has a `<phase>_failed` counter;
//! the reasons are counted per phase in a [`FailureTable`] (the report's `failures` object).
//! Reason names are part of the JSON schema: add reasons, never rename them.

use std::collections::BTreeMap;
use std::fmt;

use crate::error_kind::ErrorKind;
use crate::recorder::{CounterId, Layout, Series, SeriesId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    Login,
    SpawnRequest,
    SpawnReady,
    ServerAuth,
    KernelStart,
    WsConnect,
    Execute,
    Stop,
}

#[cfg(test)]
const PHASES: [Phase; 8] = [
    Phase::Login,
    Phase::SpawnRequest,
    Phase::SpawnReady,
    Phase::ServerAuth,
    Phase::KernelStart,
    Phase::WsConnect,
    Phase::Execute,
    Phase::Stop,
];

const SERIES: [Series; 8] = [
    Series {
        name: "login",
        description: "form: GET /hub/login, POST the form, and GET /hub/api/user with the session cookie; token: create the user and a token for it",
    },
    Series {
        name: "spawn_request",
        description: "POST /hub/api/users/{name}/server until its 201/202 (429s waited out and retried)",
    },
    Series {
        name: "spawn_ready",
        description: "from the spawn request's answer to the progress stream's ready event",
    },
    Series {
        name: "server_auth",
        description: "form login only: GET /user/{name}/files/ through the OAuth redirects until the server's cookie is set",
    },
    Series {
        name: "kernel_start",
        description: "POST /user/{name}/api/kernels until its 201",
    },
    Series {
        name: "ws_connect",
        description: "WebSocket handshake on /user/{name}/api/kernels/{id}/channels",
    },
    Series {
        name: "execute",
        description: "execute_request sent until execute_reply ok and iopub idle, output checked",
    },
    Series {
        name: "stop",
        description: "DELETE the kernel, then DELETE /hub/api/users/{name}/server until the server is gone",
    },
];

/// Counters before the per-phase failure counters.
const USERS_STARTED: CounterId = CounterId(0);
const USERS_COMPLETED: CounterId = CounterId(1);
const EXECUTES_CHECKED: CounterId = CounterId(2);
const RETRIES_429: CounterId = CounterId(3);
const FIRST_FAILURE_COUNTER: usize = 4;

pub const LAYOUT: Layout = Layout {
    series: &SERIES,
    counters: &[
        "users_started",
        "users_completed",
        "executes_checked",
        "retries_429",
        "login_failed",
        "spawn_request_failed",
        "spawn_ready_failed",
        "server_auth_failed",
        "kernel_start_failed",
        "ws_connect_failed",
        "execute_failed",
        "stop_failed",
    ],
};

/// The counters of [`LAYOUT`] that are not per-phase failures.
pub struct Counters;

impl Counters {
    pub const USERS_STARTED: CounterId = USERS_STARTED;
    pub const USERS_COMPLETED: CounterId = USERS_COMPLETED;
    pub const EXECUTES_CHECKED: CounterId = EXECUTES_CHECKED;
    pub const RETRIES_429: CounterId = RETRIES_429;
}

impl Phase {
    pub fn name(self) -> &'static str {
        SERIES[self as usize].name
    }

    pub fn series(self) -> SeriesId {
        SeriesId(self as usize)
    }

    pub fn failed_counter(self) -> CounterId {
        CounterId(FIRST_FAILURE_COUNTER + self as usize)
    }
}

/// Why a phase failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Failure {
    /// A transport error, a timeout, or an HTTP status ≥ 400 (named as in `errors.by_kind`).
    Http(ErrorKind),
    /// Redirects came back to a URL already visited with the same cookies, or exceeded the hop
    /// limit.
    RedirectLoop,
    /// 429 again and again until the phase's deadline (Retry-After was honoured each time).
    RateLimited,
    /// The login page had no `_xsrf` form field and no `_xsrf` cookie was set.
    NoXsrf,
    /// The login form was accepted (a redirect), but the hub did not know the user afterwards:
    /// no session cookie, or one the hub does not accept.
    NoSession,
    /// An answer that is not what the API promises (status, JSON, missing cookie).
    BadResponse,
    /// The progress stream reported `failed: true`.
    SpawnFailed,
    /// The progress stream ended without `ready` or `failed`.
    ProgressEnded,
    /// The WebSocket closed (or failed) while an execute was outstanding.
    WsClosed,
    /// `execute_reply` with a status other than `ok`, or an `error` message on iopub.
    KernelError,
    /// The reply was ok but the output was not the expected one.
    WrongOutput,
}

impl Failure {
    /// The kind counted in the report's `errors.by_kind`: journey-level reasons count as
    /// `protocol` there (the exact reason is in `failures`).
    pub fn error_kind(self) -> ErrorKind {
        match self {
            Failure::Http(kind) => kind,
            _ => ErrorKind::Protocol,
        }
    }

    /// The status failure for an unexpected status: 4xx/5xx by code, anything else is a bad
    /// response.
    pub fn from_status(status: u16) -> Failure {
        ErrorKind::from_status(status).map_or(Failure::BadResponse, Failure::Http)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Failure::Http(kind) => return kind.fmt(f),
            Failure::RedirectLoop => "redirect_loop",
            Failure::RateLimited => "rate_limited",
            Failure::NoXsrf => "no_xsrf",
            Failure::NoSession => "no_session",
            Failure::BadResponse => "bad_response",
            Failure::SpawnFailed => "spawn_failed",
            Failure::ProgressEnded => "progress_ended",
            Failure::WsClosed => "ws_closed",
            Failure::KernelError => "kernel_error",
            Failure::WrongOutput => "wrong_output",
        };
        f.write_str(name)
    }
}

/// Failures counted by phase and reason; one per worker, merged at the end.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FailureTable(BTreeMap<(Phase, Failure), u64>);

impl FailureTable {
    pub fn add(&mut self, phase: Phase, failure: Failure) {
        *self.0.entry((phase, failure)).or_insert(0) += 1;
    }

    /// How many times `phase` failed for `failure`.
    pub fn count(&self, phase: Phase, failure: Failure) -> u64 {
        self.0.get(&(phase, failure)).copied().unwrap_or(0)
    }

    pub fn merge(&mut self, other: &FailureTable) {
        for (&key, &n) in &other.0 {
            *self.0.entry(key).or_insert(0) += n;
        }
    }

    /// `{"login": {"status_403": 3}, "execute": {"wrong_output": 1}}`: phases with failures only.
    pub fn to_json(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut out = serde_json::Map::new();
        for (&(phase, failure), &n) in &self.0 {
            let entry = out
                .entry(phase.name())
                .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
            if let serde_json::Value::Object(m) = entry {
                m.insert(failure.to_string(), n.into());
            }
        }
        out
    }

    /// One line per phase with failures, for the terminal.
    pub fn render_text(&self) -> String {
        let mut s = String::new();
        let mut phase = None;
        for (&(p, failure), &n) in &self.0 {
            if phase != Some(p) {
                if phase.is_some() {
                    s.push('\n');
                }
                s.push_str(&format!("  {:<14}", p.name()));
                phase = Some(p);
            } else {
                s.push(',');
            }
            s.push_str(&format!(" {failure} {n}"));
        }
        if phase.is_some() {
            s.push('\n');
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_phases() {
        for (i, p) in PHASES.iter().enumerate() {
            assert_eq!(*p as usize, i);
            assert_eq!(LAYOUT.series[i].name, p.name());
            assert_eq!(LAYOUT.counters[p.failed_counter().0], format!("{}_failed", p.name()));
        }
    }

    #[test]
    fn failures_by_phase_and_reason() {
        let mut a = FailureTable::default();
        a.add(Phase::Login, Failure::Http(ErrorKind::Status(403)));
        a.add(Phase::Login, Failure::Http(ErrorKind::Status(403)));
        let mut b = FailureTable::default();
        b.add(Phase::Execute, Failure::WrongOutput);
        b.add(Phase::Login, Failure::RedirectLoop);
        a.merge(&b);
        assert_eq!(
            serde_json::Value::Object(a.to_json()).to_string(),
            r#"{"login":{"status_403":2,"redirect_loop":1},"execute":{"wrong_output":1}}"#
        );
        assert_eq!(
            a.render_text(),
            "  login          status_403 2, redirect_loop 1\n  execute        wrong_output 1\n"
        );
        assert_eq!(Failure::RateLimited.error_kind(), ErrorKind::Protocol);
        assert_eq!(Failure::from_status(302), Failure::BadResponse);
    }
}
