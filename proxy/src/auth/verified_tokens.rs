//! Tokens already verified, so a warm request skips the signature check (HMAC or RSA over the
//! token, base64 and JSON: over ten microseconds, more than the rest of the request path).
//!
//! Keyed by the whole token, hashed with a per-process random key and compared in full, so one
//! token never answers for another. An entry lives until the token's `exp` plus leeway or
//! `MAX_AGE`, whichever comes first: a key withdrawn from a JWKS stops being honoured within
//! `MAX_AGE`. Session revocation is not cached here; it is checked on every request.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dashmap::DashMap;
use serde_json::Value;

use super::jwt::Identity;

const MAX_AGE: Duration = Duration::from_secs(60);
/// Past this many live entries new tokens are verified every time (memory stays bounded even
/// if many distinct valid tokens arrive); expired ones are swept as they are found.
const MAX_ENTRIES: usize = 100_000;

struct Entry {
    who: Arc<Identity>,
    until: Instant,
}

#[derive(Default)]
pub struct VerifiedTokens {
    map: DashMap<Box<str>, Entry>,
}

impl VerifiedTokens {
    pub fn get(&self, token: &str) -> Option<Arc<Identity>> {
        let entry = self.map.get(token)?;
        if entry.until > Instant::now() {
            return Some(entry.who.clone());
        }
        drop(entry);
        self.map.remove(token);
        None
    }

    pub fn insert(&self, token: &str, who: Arc<Identity>, leeway_secs: u64) {
        if self.map.len() >= MAX_ENTRIES {
            let now = Instant::now();
            self.map.retain(|_, e| e.until > now);
            if self.map.len() >= MAX_ENTRIES {
                return;
            }
        }
        let Some(exp) = who.claims.get("exp").and_then(Value::as_u64) else {
            return;
        };
        let now_unix = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let left = Duration::from_secs((exp + leeway_secs).saturating_sub(now_unix));
        let until = Instant::now() + left.min(MAX_AGE);
        self.map.insert(token.into(), Entry { who, until });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn who(exp: u64) -> Arc<Identity> {
        Arc::new(Identity {
            user: "alice".into(),
            groups: vec![],
            admin: false,
            claims: json!({"sub": "alice", "exp": exp}).as_object().unwrap().clone(),
        })
    }

    fn unix_now() -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
    }

    #[test]
    fn a_token_answers_only_for_itself_and_only_until_it_expires() {
        let cache = VerifiedTokens::default();
        cache.insert("tok-a", who(unix_now() + 600), 0);
        assert_eq!(cache.get("tok-a").unwrap().user, "alice");
        assert!(cache.get("tok-b").is_none());
        assert!(cache.get("tok-").is_none());
        cache.insert("tok-old", who(unix_now() - 1), 0);
        assert!(cache.get("tok-old").is_none(), "expired tokens are not served");
    }
}
