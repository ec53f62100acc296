//! API tokens (`Authorization: token …`): made from 32 random bytes, stored only as their
//! SHA-256, looked up in memory. Admin tokens and the tokens of `[[services]]` come from the
//! configuration; user tokens from `POST /hub/api/users/{name}/tokens`; each server gets
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
    /// For a token made with scopes: those (expanded). `None`: all the caller's role holds.
    pub scopes: Option<std::sync::Arc<crate::scopes::Scopes>>,
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
    /// `(hash, name)` of each configured service's token.
    services: Vec<(String, String)>,
    index: Mutex<Index>,
}

/// Each token by its hash, and the hashes of each user's tokens: a user's tokens are replaced
/// whenever another hub replica changed that user, so finding them must not mean reading all.
#[derive(Default)]
struct Index {
    by_hash: HashMap<String, TokenRecord>,
    by_user: HashMap<String, Vec<String>>,
}

impl Index {
    fn insert(&mut self, record: TokenRecord) {
        let hashes = self.by_user.entry(record.user.clone()).or_default();
        if !hashes.contains(&record.hash) {
            hashes.push(record.hash.clone());
        }
        self.by_hash.insert(record.hash.clone(), record);
    }

    fn remove(&mut self, hash: &str) -> Option<TokenRecord> {
        let record = self.by_hash.remove(hash)?;
        if let Some(hashes) = self.by_user.get_mut(&record.user) {
            hashes.retain(|h| h != hash);
            if hashes.is_empty() {
                self.by_user.remove(&record.user);
            }
        }
        Some(record)
    }

    fn of_user(&self, user: &str) -> impl Iterator<Item = &TokenRecord> {
        self.by_user
            .get(user)
            .into_iter()
            .flatten()
            .filter_map(|h| self.by_hash.get(h))
    }
}

impl Tokens {
    /// `services` are `(name, token)` of the configured services.
    pub fn new(admin_tokens: &[String], services: &[(String, String)], records: Vec<TokenRecord>) -> Tokens {
        let mut index = Index::default();
        for record in records {
            index.insert(record);
        }
        Tokens {
            admin: admin_tokens.iter().filter(|t| !t.is_empty()).map(|t| hash(t)).collect(),
            services: services
                .iter()
                .map(|(name, token)| (hash(token), name.clone()))
                .collect(),
            index: Mutex::new(index),
        }
    }

    fn index(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The owner of `token`, if it is known and not expired. Admin tokens answer as the service
    /// `admin-token`; user tokens carry the user's name (the caller checks admin rights).
    pub fn lookup(&self, token: &str, now_ms: u64) -> Option<TokenRecordOrAdmin> {
        let h = hash(token);
        if self
            .admin
            .iter()
            .any(|a| proxy::headers::secret::constant_time_eq(a.as_bytes(), h.as_bytes()))
        {
            return Some(TokenRecordOrAdmin::Admin);
        }
        if let Some((_, name)) = self
            .services
            .iter()
            .find(|(s, _)| proxy::headers::secret::constant_time_eq(s.as_bytes(), h.as_bytes()))
        {
            return Some(TokenRecordOrAdmin::Service(name.clone()));
        }
        let index = self.index();
        let record = index.by_hash.get(&h)?;
        if record.expires_ms.is_some_and(|e| e <= now_ms) {
            return None;
        }
        Some(TokenRecordOrAdmin::Record(record.clone()))
    }

    pub fn insert(&self, record: TokenRecord) {
        self.index().insert(record);
    }

    pub fn remove_id(&self, id: i64) -> Option<TokenRecord> {
        let mut index = self.index();
        let hash = index.by_hash.values().find(|r| r.id == id)?.hash.clone();
        index.remove(&hash)
    }

    pub fn of_user(&self, user: &str) -> Vec<TokenRecord> {
        let mut v: Vec<_> = self.index().of_user(user).cloned().collect();
        v.sort_by_key(|r| r.id);
        v
    }

    /// Removes every token of a server (at stop) and returns their ids.
    pub fn remove_server_tokens(&self, user: &str, server: &str) -> Vec<i64> {
        let mut index = self.index();
        let hashes: Vec<String> = index
            .of_user(user)
            .filter(|r| r.server.as_deref() == Some(server))
            .map(|r| r.hash.clone())
            .collect();
        hashes.iter().filter_map(|h| index.remove(h)).map(|r| r.id).collect()
    }

    pub fn remove_user(&self, user: &str) {
        let mut index = self.index();
        for hash in index.by_user.remove(user).unwrap_or_default() {
            index.by_hash.remove(&hash);
        }
    }

    /// Makes a user's tokens exactly `records` (as the state database has them now).
    pub fn replace_user(&self, user: &str, records: Vec<TokenRecord>) {
        let mut index = self.index();
        for hash in index.by_user.remove(user).unwrap_or_default() {
            index.by_hash.remove(&hash);
        }
        for record in records {
            index.insert(record);
        }
    }
}

pub enum TokenRecordOrAdmin {
    Admin,
    /// A configured service's token: the service's name.
    Service(String),
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
            scopes: None,
        }
    }

    #[test]
    fn lookups() {
        let tokens = Tokens::new(
            &["adm".into(), "".into()],
            &[("culler".into(), "svc-token".into())],
            vec![
                record(1, "t1", "alice", None, None),
                record(2, "t2", "bob", Some(""), Some(100)),
            ],
        );
        assert!(matches!(tokens.lookup("adm", 0), Some(TokenRecordOrAdmin::Admin)));
        assert!(tokens.lookup("", 0).is_none(), "an empty admin token is never accepted");
        assert!(matches!(tokens.lookup("svc-token", 0), Some(TokenRecordOrAdmin::Service(n)) if n == "culler"));
        assert!(matches!(tokens.lookup("t1", 0), Some(TokenRecordOrAdmin::Record(r)) if r.user == "alice"));
        assert!(tokens.lookup("t2", 99).is_some());
        assert!(tokens.lookup("t2", 100).is_none(), "expired");
        assert!(tokens.lookup("nope", 0).is_none());
        assert_eq!(tokens.remove_server_tokens("bob", ""), vec![2]);
        assert!(tokens.lookup("t2", 0).is_none());
    }

    #[test]
    fn a_users_tokens_are_replaced_and_nobody_elses() {
        let tokens = Tokens::new(
            &[],
            &[],
            vec![
                record(1, "a1", "alice", None, None),
                record(2, "a2", "alice", Some(""), None),
                record(3, "b1", "bob", None, None),
            ],
        );
        tokens.replace_user("alice", vec![record(4, "a4", "alice", None, None)]);
        assert!(tokens.lookup("a1", 0).is_none() && tokens.lookup("a2", 0).is_none());
        assert!(tokens.lookup("a4", 0).is_some());
        assert_eq!(tokens.of_user("bob").len(), 1, "bob's token stays");
        assert_eq!(tokens.remove_server_tokens("bob", ""), Vec::<i64>::new());
        tokens.insert(record(5, "b5", "bob", Some("lab"), None));
        assert_eq!(tokens.remove_server_tokens("bob", "lab"), vec![5]);
        tokens.remove_user("alice");
        assert!(tokens.of_user("alice").is_empty() && tokens.lookup("a4", 0).is_none());
        assert_eq!(tokens.remove_id(3).map(|r| r.user), Some("bob".to_owned()));
        assert!(tokens.of_user("bob").is_empty());
    }

    #[test]
    fn generated_tokens_are_distinct_hex() {
        let (a, b) = (generate(), generate());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert_eq!(hash("abc").len(), 64);
    }
}
