//! API tokens (`Authorization: token …`): made from 32 random bytes, stored only as their
//! SHA-256, looked up in memory. Admin tokens for services (such as jupyterhub-idle-culler) come
//! from the configuration; user tokens from `POST /hub/api/users/{name}/tokens`; each server gets
//! one at spawn (`JUPYTERHUB_API_TOKEN`), revoked when it stops.

use std::collections::HashMap;
use std::sync::Mutex;

use ring::rand::{SecureRandom, SystemRandom};

use crate::model::TokenRecord;

/// A new secret: 32 random bytes, hex.
pub fn generate() -> String {
    hex(&random_bytes::<32>())
}

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // The system RNG failing means the machine cannot make secrets at all; there is no safe
    // fallback, and this happens at start-up or on a login, never silently.
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system random number generator failed");
    bytes
}

pub fn hash(token: &str) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, token.as_bytes()).as_ref())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Who a request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// A user name, or the service name of an admin token.
    pub name: String,
    pub kind: CallerKind,
    pub admin: bool,
    /// For a server's own token: which server (`""` is the default).
    pub server: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallerKind {
    User,
    Service,
}

/// The tokens the hub accepts, by hash.
#[derive(Default)]
pub struct Tokens {
    admin: Vec<String>,
    by_hash: Mutex<HashMap<String, TokenRecord>>,
}

impl Tokens {
    pub fn new(admin_tokens: &[String], records: Vec<TokenRecord>) -> Tokens {
        Tokens {
            admin: admin_tokens.iter().filter(|t| !t.is_empty()).map(|t| hash(t)).collect(),
            by_hash: Mutex::new(records.into_iter().map(|r| (r.hash.clone(), r)).collect()),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, TokenRecord>> {
        self.by_hash.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The owner of `token`, if it is known and not expired. Admin tokens answer as the service
    /// `admin-token`; user tokens carry the user's name (the caller checks admin rights).
    pub fn lookup(&self, token: &str, now_ms: u64) -> Option<TokenRecordOrAdmin> {
        let h = hash(token);
        if self
            .admin
            .iter()
            .any(|a| proxy::admin_api::constant_time_eq(a.as_bytes(), h.as_bytes()))
        {
            return Some(TokenRecordOrAdmin::Admin);
        }
        let map = self.map();
        let record = map.get(&h)?;
        if record.expires_ms.is_some_and(|e| e <= now_ms) {
            return None;
        }
        Some(TokenRecordOrAdmin::Record(record.clone()))
    }

    pub fn insert(&self, record: TokenRecord) {
        self.map().insert(record.hash.clone(), record);
    }

    pub fn remove_id(&self, id: i64) -> Option<TokenRecord> {
        let mut map = self.map();
        let hash = map.iter().find(|(_, r)| r.id == id)?.0.clone();
        map.remove(&hash)
    }

    pub fn of_user(&self, user: &str) -> Vec<TokenRecord> {
        let mut v: Vec<_> = self.map().values().filter(|r| r.user == user).cloned().collect();
        v.sort_by_key(|r| r.id);
        v
    }

    /// Removes every token of a server (at stop) and returns their ids.
    pub fn remove_server_tokens(&self, user: &str, server: &str) -> Vec<i64> {
        let mut map = self.map();
        let ids: Vec<i64> = map
            .values()
            .filter(|r| r.user == user && r.server.as_deref() == Some(server))
            .map(|r| r.id)
            .collect();
        map.retain(|_, r| !ids.contains(&r.id));
        ids
    }

    pub fn remove_user(&self, user: &str) {
        self.map().retain(|_, r| r.user != user);
    }

    /// Makes a user's tokens exactly `records` (as the state database has them now).
    pub fn replace_user(&self, user: &str, records: Vec<TokenRecord>) {
        let mut map = self.map();
        map.retain(|_, r| r.user != user);
        map.extend(records.into_iter().map(|r| (r.hash.clone(), r)));
    }
}

pub enum TokenRecordOrAdmin {
    Admin,
    Record(TokenRecord),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: i64, token: &str, user: &str, server: Option<&str>, expires_ms: Option<u64>) -> TokenRecord {
        TokenRecord {
            id,
            hash: hash(token),
            user: user.into(),
            server: server.map(Into::into),
            note: String::new(),
            created_ms: 0,
            expires_ms,
        }
    }

    #[test]
    fn lookups() {
        let tokens = Tokens::new(
            &["adm".into(), "".into()],
            vec![
                record(1, "t1", "alice", None, None),
                record(2, "t2", "bob", Some(""), Some(100)),
            ],
        );
        assert!(matches!(tokens.lookup("adm", 0), Some(TokenRecordOrAdmin::Admin)));
        assert!(tokens.lookup("", 0).is_none(), "an empty admin token is never accepted");
        assert!(matches!(tokens.lookup("t1", 0), Some(TokenRecordOrAdmin::Record(r)) if r.user == "alice"));
        assert!(tokens.lookup("t2", 99).is_some());
        assert!(tokens.lookup("t2", 100).is_none(), "expired");
        assert!(tokens.lookup("nope", 0).is_none());
        assert_eq!(tokens.remove_server_tokens("bob", ""), vec![2]);
        assert!(tokens.lookup("t2", 0).is_none());
    }

    #[test]
    fn generated_tokens_are_distinct_hex() {
        let (a, b) = (generate(), generate());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert_eq!(hash("abc").len(), 64);
    }
}
