//! Request counts by verb and resource: what a benchmark reads to compare API-server load
//! (how many writes a spawn costs, whether anything polls).
//!
//! Only requests that reach the HTTP API count; the simulator's own scheduler and kubelet
//! write to the store directly, as the real ones would be other clients, not this one.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;

use serde_json::{Value, json};

/// An API verb, as the API server's audit log and metrics name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
    DeleteCollection,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::DeleteCollection => "deletecollection",
        }
    }

    pub fn is_write(self) -> bool {
        matches!(
            self,
            Verb::Create | Verb::Update | Verb::Patch | Verb::Delete | Verb::DeleteCollection
        )
    }
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A snapshot of the counts. Resources are plurals, with `/status` for the subresource
/// (`pods/status`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub requests: BTreeMap<(Verb, String), u64>,
}

impl Stats {
    /// Requests with this verb on this resource (`"pods"`, `"pods/status"`, …).
    pub fn count(&self, verb: Verb, resource: &str) -> u64 {
        self.requests.get(&(verb, resource.to_string())).copied().unwrap_or(0)
    }

    /// Requests with this verb on any resource.
    pub fn verb(&self, verb: Verb) -> u64 {
        self.requests
            .iter()
            .filter(|((v, _), _)| *v == verb)
            .map(|(_, n)| n)
            .sum()
    }

    /// create + update + patch + delete (+ deletecollection).
    pub fn writes(&self) -> u64 {
        self.requests
            .iter()
            .filter(|((v, _), _)| v.is_write())
            .map(|(_, n)| n)
            .sum()
    }

    /// get + list + watch.
    pub fn reads(&self) -> u64 {
        self.requests
            .iter()
            .filter(|((v, _), _)| !v.is_write())
            .map(|(_, n)| n)
            .sum()
    }

    pub fn total(&self) -> u64 {
        self.requests.values().sum()
    }

    /// `{"writes":…, "reads":…, "total":…, "requests": {"create pods": 3, …}}` for `/sim/stats`.
    pub fn to_json(&self) -> Value {
        let requests: serde_json::Map<String, Value> = self
            .requests
            .iter()
            .map(|((verb, resource), n)| (format!("{verb} {resource}"), json!(n)))
            .collect();
        json!({"writes": self.writes(), "reads": self.reads(), "total": self.total(), "requests": requests})
    }
}

/// The live counters behind [`Stats`].
#[derive(Default)]
pub struct StatsRecorder {
    counts: Mutex<BTreeMap<(Verb, String), u64>>,
}

impl StatsRecorder {
    pub fn record(&self, verb: Verb, resource: &str) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        *counts.entry((verb, resource.to_string())).or_default() += 1;
    }

    pub fn snapshot(&self) -> Stats {
        Stats {
            requests: self.counts.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_split_reads_from_writes() {
        let recorder = StatsRecorder::default();
        for (verb, resource) in [
            (Verb::Create, "pods"),
            (Verb::Patch, "pods/status"),
            (Verb::List, "pods"),
            (Verb::Watch, "events"),
            (Verb::Create, "pods"),
        ] {
            recorder.record(verb, resource);
        }
        let stats = recorder.snapshot();
        assert_eq!(stats.count(Verb::Create, "pods"), 2);
        assert_eq!((stats.writes(), stats.reads(), stats.total()), (3, 2, 5));
        assert_eq!(stats.to_json()["requests"]["patch pods/status"], 1);
    }
}
