//! The in-process session store (`redis_url = "memory:"`): session records that a program
//! embedding the proxy (the hub, in `edgehub up`) writes directly, with no Redis to run.
//!
//! A record is what a Redis key would be: a key, rendered from the token's claims with the
//! `[session]` `key` template, holding a value that must equal the rendered `value` template when
//! one is set (see [`super::session::render`]). Lookups are in-process already, so nothing caches
//! them: [`LocalSessions::remove`] takes effect on the next request, on every connection.
//!
//! Records do not expire on their own; the embedder removes them when the session ends (logout,
//! or the token it backs expiring), as it would delete the Redis key.

use std::hash::BuildHasher;
use std::sync::OnceLock;

use dashmap::DashMap;
use foldhash::fast::FixedState;

use super::session_record::satisfies;

/// Live sessions, by key. Thread-safe; share it as the `Arc` that
/// [`EdgeAuth::local_sessions`](super::EdgeAuth::local_sessions) returns.
pub struct LocalSessions {
    // Looked up on every request with keys from verified tokens: a fast hash, seeded per process
    // so collisions cannot be planned (one would only cost time: keys are compared in full).
    records: DashMap<Box<str>, Box<str>, FixedState>,
    /// Asked about a key this store does not hold ([`LocalSessions::look_up_misses_in`]).
    misses: OnceLock<Box<MissLookup>>,
}

/// Where an embedder looks up a session this store has not been told about: its value, if the
/// session exists.
pub type MissLookup = dyn Fn(&str) -> Option<String> + Send + Sync;

impl Default for LocalSessions {
    fn default() -> Self {
        let seed = std::collections::hash_map::RandomState::new().hash_one(0x5e55_u64);
        LocalSessions {
            records: DashMap::with_hasher(FixedState::with_seed(seed)),
            misses: OnceLock::new(),
        }
    }
}

impl LocalSessions {
    /// Starts (or replaces) the session under `key`. `value` is compared with the rendered
    /// `value` template when one is configured; without one, presence is enough and `value` is
    /// not read (as Redis's `EXISTS`), so any value, `""` included, will do.
    pub fn insert(&self, key: &str, value: &str) {
        self.records.insert(key.into(), value.into());
    }

    /// Ends the session under `key`: tokens that name it are refused from the next request on.
    /// Returns whether there was one.
    pub fn remove(&self, key: &str) -> bool {
        self.records.remove(key).is_some()
    }

    /// Whether a session is recorded under `key`, whatever its value.
    pub fn contains(&self, key: &str) -> bool {
        self.records.contains_key(key)
    }

    /// The number of sessions recorded.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Has `lookup` asked about keys not recorded here, and records what it finds. For an
    /// embedder whose sessions are also begun elsewhere (several hub replicas on one database)
    /// and told to this store a moment later: a token that reaches the proxy first is not
    /// refused meanwhile. Only tokens whose signature was verified get this far. Set once; a
    /// second call is ignored.
    pub fn look_up_misses_in(&self, lookup: Box<MissLookup>) {
        let _ = self.misses.set(lookup);
    }

    /// Whether `key` is recorded and, when `expected` is given, holds exactly it.
    pub(super) fn holds(&self, key: &str, expected: Option<&str>) -> bool {
        if let Some(record) = self.records.get(key) {
            return satisfies(Some(record.as_bytes()), expected);
        }
        let found = self.misses.get().and_then(|lookup| lookup(key));
        if let Some(value) = &found {
            self.insert(key, value);
        }
        satisfies(found.as_deref().map(str::as_bytes), expected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_come_and_go() {
        let s = LocalSessions::default();
        assert!(s.is_empty());
        s.insert("session:alice", "j1");
        s.insert("session:bob", "");
        assert_eq!(s.len(), 2);
        assert!(s.contains("session:alice"));
        assert!(!s.contains("session:ali"), "keys match whole, not by prefix");
        // Replacing keeps one record, with the new value.
        s.insert("session:alice", "j2");
        assert_eq!(s.len(), 2);
        assert!(s.holds("session:alice", Some("j2")));
        assert!(!s.holds("session:alice", Some("j1")));
        assert!(s.remove("session:alice"));
        assert!(!s.remove("session:alice"), "already gone");
        assert!(!s.contains("session:alice"));
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn holds_is_presence_then_value() {
        let s = LocalSessions::default();
        assert!(!s.holds("k", None));
        assert!(!s.holds("k", Some("")));
        s.insert("k", "");
        assert!(s.holds("k", None), "presence is enough without a value template");
        assert!(s.holds("k", Some("")));
        assert!(!s.holds("k", Some("v")));
    }

    #[test]
    fn writers_and_readers_share_it_across_threads() {
        let s = std::sync::Arc::new(LocalSessions::default());
        let writers: Vec<_> = (0..4)
            .map(|t| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for i in 0..250 {
                        s.insert(&format!("k:{t}:{i}"), "1");
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        assert_eq!(s.len(), 1000);
        assert!(s.holds("k:3:249", Some("1")));
    }

    #[test]
    fn a_key_not_recorded_is_looked_up_once_where_the_embedder_says() {
        let s = LocalSessions::default();
        let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = asked.clone();
        s.look_up_misses_in(Box::new(move |key| {
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            (key == "s:elsewhere").then(|| "alice".to_owned())
        }));
        assert!(
            s.holds("s:elsewhere", Some("alice")),
            "found where the embedder keeps it"
        );
        assert!(s.holds("s:elsewhere", None));
        assert_eq!(
            asked.load(std::sync::atomic::Ordering::Relaxed),
            1,
            "then recorded here"
        );
        assert!(!s.holds("s:ended", None), "unknown there too: refused");
        s.remove("s:elsewhere");
        assert!(!s.holds("s:elsewhere", Some("bob")), "a value that differs is refused");
    }
}
