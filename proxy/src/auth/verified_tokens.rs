//! Tokens already verified, so a warm request skips the signature check (HMAC or RSA over the
//! token, base64 and JSON: over ten microseconds, more than the rest of the request path). The
//! hub's token check keeps its answers, and its refusals, in caches of the same kind.
//!
//! Keyed by the whole token, hashed with a per-process random key and compared in full, so one
//! token never answers for another. An entry lives until the token's `exp` plus leeway or
//! `MAX_AGE`, whichever comes first: a key withdrawn from a JWKS stops being honoured within
//! `MAX_AGE`. Session revocation is not cached here; it is checked on every request.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dashmap::DashMap;
use foldhash::fast::FixedState;
use http::HeaderValue;
use serde_json::Value;

use super::jwt::Identity;
use super::session::SessionKey;

/// A verified token with everything the request path derives from it, computed once.
pub struct Verified {
    pub who: Identity,
    /// The session checks this token must pass: which store, and the key with its expected
    /// value, `Err` when the token lacks a claim the key template names. Empty without sessions.
    pub sessions: Vec<(usize, Result<SessionKey, ()>)>,
    pub user_header: Option<HeaderValue>,
    pub groups_header: Option<HeaderValue>,
}

const MAX_AGE: Duration = Duration::from_secs(60);
/// Past this many live entries new tokens are verified every time (memory stays bounded even
/// if many distinct valid tokens arrive); expired ones are swept as they are found.
const MAX_ENTRIES: usize = 100_000;

struct Entry<V> {
    value: V,
    until: Instant,
}

/// What is known about tokens, each for a time: by default the verified tokens themselves.
pub struct VerifiedTokens<V = Arc<Verified>> {
    /// A fast hash with a per-process random seed: tokens are attacker-chosen, and the seed keeps
    /// collisions unplannable (a collision would only cost time: keys are compared in full).
    map: DashMap<Box<str>, Entry<V>, FixedState>,
    /// When a full cache was last swept; a full sweep runs at most once a second, so a cache
    /// full of live tokens does not turn every new token into a scan of all of them.
    last_sweep: std::sync::Mutex<Option<Instant>>,
    max_entries: usize,
}

impl<V: Clone> Default for VerifiedTokens<V> {
    fn default() -> Self {
        VerifiedTokens::bounded(MAX_ENTRIES)
    }
}

impl<V: Clone> VerifiedTokens<V> {
    /// A cache that keeps at most `max_entries` live tokens.
    pub fn bounded(max_entries: usize) -> Self {
        VerifiedTokens {
            map: DashMap::with_hasher(super::shared_lookups::unpredictable_hasher()),
            last_sweep: std::sync::Mutex::new(None),
            max_entries,
        }
    }

    pub fn get(&self, token: &str) -> Option<V> {
        let entry = self.map.get(token)?;
        if entry.until > Instant::now() {
            return Some(entry.value.clone());
        }
        drop(entry);
        self.map.remove(token);
        None
    }

    /// Keeps `value` for `token` for `ttl` (a hub's answer about an API token, which has no
    /// `exp`). A full cache first drops what has expired; if it is still full, nothing is kept.
    pub fn insert_for(&self, token: &str, value: V, ttl: Duration) {
        if self.map.len() >= self.max_entries {
            let now = Instant::now();
            let due = self.last_sweep.lock().is_ok_and(|mut last| {
                let due = last.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1));
                if due {
                    *last = Some(now);
                }
                due
            });
            if due {
                self.map.retain(|_, e| e.until > now);
            }
            if self.map.len() >= self.max_entries {
                return;
            }
        }
        let until = Instant::now() + ttl;
        self.map.insert(token.into(), Entry { value, until });
    }
}

impl VerifiedTokens {
    /// Keeps a verified JWT until its `exp` plus `leeway_secs`, or `MAX_AGE`.
    pub fn insert(&self, token: &str, verified: Arc<Verified>, leeway_secs: u64) {
        let Some(exp) = verified.who.claims.get("exp").and_then(Value::as_u64) else {
            return;
        };
        let now_unix = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let left = Duration::from_secs((exp + leeway_secs).saturating_sub(now_unix));
        self.insert_for(token, verified, left.min(MAX_AGE));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn who(exp: u64) -> Arc<Verified> {
        Arc::new(Verified {
            who: Identity {
                user: "alice".into(),
                groups: vec![],
                admin: false,
                claims: json!({"sub": "alice", "exp": exp}).as_object().unwrap().clone(),
                issuer: 0,
            },
            sessions: Vec::new(),
            user_header: None,
            groups_header: None,
        })
    }

    fn unix_now() -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
    }

    #[test]
    fn a_token_answers_only_for_itself_and_only_until_it_expires() {
        let cache: VerifiedTokens = VerifiedTokens::default();
        cache.insert("tok-a", who(unix_now() + 600), 0);
        assert_eq!(cache.get("tok-a").unwrap().who.user, "alice");
        assert!(cache.get("tok-b").is_none());
        assert!(cache.get("tok-").is_none());
        cache.insert("tok-old", who(unix_now() - 1), 0);
        assert!(cache.get("tok-old").is_none(), "expired tokens are not served");
    }
}
