//! The hub's state store: users, servers, API tokens, login sessions, the hub's secrets, and what
//! several hub replicas need to share one database (who is doing what to a server, leases, spawn
//! progress, OAuth codes).
//!
//! Two backends behind one trait:
//! - [`sqlite::SqliteStore`], one file, `edgehub up`'s default. One hub at a time: a running hub
//!   holds [`StateLock`] on `<file>.lock`, and a second hub refuses to start.
//! - [`postgres::PostgresStore`] (`state.url = "postgres://…"`), shared by any number of active
//!   replicas. Every change is announced on a channel (`LISTEN edgehub_state`) so each replica's
//!   view follows the others' within milliseconds ([`crate::replicas`]).
//!
//! Calls are synchronous and short (a row or two), made while the hub holds its users lock, so
//! what the hub shows never runs ahead of what the database has.

pub mod postgres;
pub mod postgres_tls;
pub mod sqlite;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::model::{Phase, ServerRecord, TokenRecord, UserRecord};

pub use sqlite::{SqliteStore, StateLock};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    // `error`, not a `source`: the message holds it, and a report that follows the chain
    // (anyhow's) would print it again (as for `Lock`).
    #[error("cannot open the state database {path}: {error}")]
    Open { path: String, error: rusqlite::Error },
    #[error(
        "the state database {path} has schema version {found}, newer than this edgehub knows ({known}); use a newer edgehub"
    )]
    TooNew { path: String, found: i64, known: usize },
    #[error(
        "the state database {path} is in use by another edgehub ({holder}); stop it first: SQLite state is for one hub at a time (set state.url to a PostgreSQL database to run several)"
    )]
    InUse { path: String, holder: String },
    #[error("cannot lock the state database {path}: {error}")]
    Lock { path: String, error: std::io::Error },
    // Not `#[from]`, which would make it a source too: see `Open`.
    #[error("state database: {0}")]
    Sql(rusqlite::Error),
    /// The message carries the client library's error with its causes (`describe`), so the
    /// error is not also given as a source: a report would list the causes twice.
    #[error("state database {place}: {}", postgres::describe(error))]
    Postgres { place: String, error: ::postgres::Error },
    #[error("state database {place}: {why}")]
    Unavailable { place: String, why: String },
    #[error("state.url: {0}")]
    BadUrl(String),
    #[error("state database holds unreadable JSON in {what}: {error}")]
    Json {
        what: &'static str,
        error: serde_json::Error,
    },
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> StoreError {
        StoreError::Sql(error)
    }
}

impl StoreError {
    /// The database could not be written for want of space: SQLite's "database or disk is
    /// full", PostgreSQL's `disk_full` (53100). What failed was not written.
    pub fn is_full(&self) -> bool {
        match self {
            StoreError::Sql(e) | StoreError::Open { error: e, .. } => {
                e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull)
            }
            StoreError::Postgres { error, .. } => error.code() == Some(&::postgres::error::SqlState::DISK_FULL),
            _ => false,
        }
    }
}

/// Everything read back at start-up.
pub struct Loaded {
    pub users: Vec<UserRecord>,
    pub servers: Vec<ServerRecord>,
    pub tokens: Vec<TokenRecord>,
}

/// One user as the database has them now.
pub struct LoadedUser {
    pub user: UserRecord,
    pub servers: Vec<ServerRecord>,
    pub tokens: Vec<TokenRecord>,
}

impl Loaded {
    /// Everything, by user (rows of users that are gone are dropped).
    pub fn into_users(self) -> std::collections::BTreeMap<String, LoadedUser> {
        let mut by_user: std::collections::BTreeMap<String, LoadedUser> = self
            .users
            .into_iter()
            .map(|user| {
                let loaded = LoadedUser {
                    user,
                    servers: Vec::new(),
                    tokens: Vec::new(),
                };
                (loaded.user.name.clone(), loaded)
            })
            .collect();
        for s in self.servers {
            if let Some(u) = by_user.get_mut(&s.user) {
                u.servers.push(s);
            }
        }
        for t in self.tokens {
            if let Some(u) = by_user.get_mut(&t.user) {
                u.tokens.push(t);
            }
        }
        by_user
    }
}

/// The condition of a compare-and-set on a server ([`StateStore::set_server`]).
#[derive(Debug, Clone, Copy)]
pub struct Expect<'a> {
    /// The phases the row may be in; a server with no row counts as `Stopped`.
    pub phases: &'a [Phase],
    /// The replica that must own the row's current transition, if it matters.
    pub owner: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Cas {
    Written,
    /// The row did not match; here it is as it is now (`None`: there is none).
    Refused(Option<Box<ServerRecord>>),
}

/// A group of users, as JupyterHub has them: a name, free-form properties, members.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupRecord {
    pub name: String,
    pub properties: Value,
    /// Member names, sorted.
    pub users: Vec<String>,
}

/// Who a server is shared with.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Grantee {
    User(String),
    Group(String),
}

impl Grantee {
    pub fn kind(&self) -> &'static str {
        match self {
            Grantee::User(_) => "user",
            Grantee::Group(_) => "group",
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Grantee::User(name) | Grantee::Group(name) => name,
        }
    }

    /// From the database's `kind` and `name` columns.
    pub fn from_row(kind: &str, name: String) -> Grantee {
        match kind {
            "group" => Grantee::Group(name),
            _ => Grantee::User(name),
        }
    }
}

/// A server shared with a user or a group (JupyterHub 5's sharing).
#[derive(Debug, Clone, PartialEq)]
pub struct ShareRecord {
    pub owner: String,
    pub server: String,
    pub grantee: Grantee,
    pub scopes: Vec<String>,
    pub created_ms: u64,
}

/// A share code (JupyterHub 5): whoever exchanges it before it expires gets a share of the
/// server with its scopes. Only the code's hash is kept.
#[derive(Debug, Clone, PartialEq)]
pub struct ShareCodeRecord {
    pub id: i64,
    pub hash: String,
    pub owner: String,
    pub server: String,
    pub scopes: Vec<String>,
    pub created_ms: u64,
    pub expires_ms: u64,
    pub exchange_count: u64,
    pub last_exchanged_ms: Option<u64>,
}

/// An OAuth authorization code not yet exchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthCode {
    pub user: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub expires_ms: u64,
}

pub trait StateStore: Send + Sync {
    /// Where the state is, for logs and errors (never with a password).
    fn describe(&self) -> String;
    /// Whether other hub replicas may share this store (and must be listened to).
    fn shared(&self) -> bool;

    fn load(&self) -> Result<Loaded, StoreError>;
    fn load_user(&self, name: &str) -> Result<Option<LoadedUser>, StoreError>;

    fn put_user(&self, user: &UserRecord) -> Result<(), StoreError>;
    /// Deletes a user with their servers and tokens.
    fn delete_user(&self, name: &str) -> Result<(), StoreError>;

    /// Writes a server whatever its row holds: for the replica that owns its transition.
    fn put_server(&self, server: &ServerRecord) -> Result<(), StoreError>;
    /// Writes a server only if its row is as `expect` says: how a start or a stop is claimed.
    fn set_server(&self, server: &ServerRecord, expect: Expect<'_>) -> Result<Cas, StoreError>;
    /// Moves a server's `last_activity` forward (never back), whatever else its row holds.
    fn touch_server(&self, user: &str, name: &str, at_ms: u64) -> Result<(), StoreError>;
    fn delete_server(&self, user: &str, name: &str) -> Result<(), StoreError>;

    /// Stores a new token and returns its id.
    fn add_token(&self, token: &TokenRecord) -> Result<i64, StoreError>;
    /// The token whose SHA-256 is `hash`, if there is one.
    fn token(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError>;
    fn delete_token(&self, id: i64) -> Result<(), StoreError>;

    fn put_session(&self, jti: &str, user: &str, expires_ms: u64) -> Result<(), StoreError>;
    fn delete_session(&self, jti: &str) -> Result<(), StoreError>;
    /// Whether a session exists and has not expired at `now_ms`.
    fn session_live(&self, jti: &str, now_ms: u64) -> Result<Option<String>, StoreError>;
    /// Deletes the sessions expired at `now_ms` and returns their ids.
    fn take_expired_sessions(&self, now_ms: u64) -> Result<Vec<String>, StoreError>;
    /// The ids of `user`'s sessions (expired ones too, until they are swept).
    fn sessions_of(&self, user: &str) -> Result<Vec<String>, StoreError>;
    /// Sessions still valid at `now_ms` as `(jti, user)`; expired ones are deleted.
    fn live_sessions(&self, now_ms: u64) -> Result<Vec<(String, String)>, StoreError>;

    /// A secret the hub generated once and must keep across restarts (the session signing key),
    /// made by `generate` the first time. Replicas starting together all get the same one.
    fn secret(&self, name: &str, generate: &mut dyn FnMut() -> Vec<u8>) -> Result<Vec<u8>, StoreError>;

    /// Takes or renews the lease `name` for `holder` for `ttl`: true if `holder` has it now.
    /// A lease whose holder stopped renewing is free once `ttl` has passed.
    fn lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, StoreError>;
    fn release(&self, name: &str, holder: &str) -> Result<(), StoreError>;
    /// Servers starting or stopping whose owner holds no live `replica:{owner}` lease (it died
    /// mid-transition), other than `me`'s.
    fn orphans(&self, me: &str) -> Result<Vec<ServerRecord>, StoreError>;

    /// Appends an event to a server's spawn progress, for replicas following it.
    fn add_progress(&self, user: &str, server: &str, event: &Value) -> Result<(), StoreError>;
    /// The server's progress events after the first `after`.
    fn progress(&self, user: &str, server: &str, after: usize) -> Result<Vec<Value>, StoreError>;
    fn clear_progress(&self, user: &str, server: &str) -> Result<(), StoreError>;

    /// Every group with its members, by name.
    fn groups(&self) -> Result<Vec<GroupRecord>, StoreError>;
    fn group(&self, name: &str) -> Result<Option<GroupRecord>, StoreError>;
    /// Creates a group; false if one of that name exists (it is left as it is).
    fn create_group(&self, name: &str, properties: &Value) -> Result<bool, StoreError>;
    /// Deletes a group and its memberships; false if there was none.
    fn delete_group(&self, name: &str) -> Result<bool, StoreError>;
    /// Replaces a group's properties; false if there is no such group.
    fn set_group_properties(&self, name: &str, properties: &Value) -> Result<bool, StoreError>;
    /// Adds (`member = true`) or removes users of a group. Users must exist.
    fn set_group_members(&self, name: &str, users: &[String], member: bool) -> Result<(), StoreError>;
    /// The groups `user` is in, sorted.
    fn user_groups(&self, user: &str) -> Result<Vec<String>, StoreError>;

    /// Every share, oldest first.
    fn shares(&self) -> Result<Vec<ShareRecord>, StoreError>;
    /// Grants a share, or replaces the scopes of the one that exists (keeping its age).
    fn grant_share(&self, share: &ShareRecord) -> Result<(), StoreError>;
    /// Revokes one share; false if there was none.
    fn revoke_share(&self, owner: &str, server: &str, grantee: &Grantee) -> Result<bool, StoreError>;
    /// Revokes every share of a server (or of every server of `owner` with `server = None`);
    /// returns how many went.
    fn revoke_server_shares(&self, owner: &str, server: Option<&str>) -> Result<usize, StoreError>;

    /// Stores a new share code and returns its id.
    fn add_share_code(&self, code: &ShareCodeRecord) -> Result<i64, StoreError>;
    /// Every share code not expired at `now_ms`, oldest first (expired ones are deleted).
    fn share_codes(&self, now_ms: u64) -> Result<Vec<ShareCodeRecord>, StoreError>;
    /// Deletes the codes of `owner`'s `server` (one of them with `id`); returns how many went.
    fn delete_share_codes(&self, owner: &str, server: &str, id: Option<i64>) -> Result<usize, StoreError>;
    /// Counts one exchange of a code.
    fn note_share_code_exchange(&self, id: i64, at_ms: u64) -> Result<(), StoreError>;

    fn put_code(&self, code: &str, grant: &OAuthCode) -> Result<(), StoreError>;
    /// Takes a code (single use): it is gone afterwards, whoever asked.
    fn take_code(&self, code: &str) -> Result<Option<OAuthCode>, StoreError>;
}

/// Opens the configured store: PostgreSQL at `state.url`, else SQLite at `db` (locked for this
/// hub, so the lock is returned too). `replica` names this hub in the database.
pub fn open(config: &config::HubConfig, replica: &str) -> Result<(Arc<dyn StateStore>, Option<StateLock>), StoreError> {
    match &config.state.url {
        Some(url) => Ok((Arc::new(postgres::PostgresStore::open(url, replica)?), None)),
        None => {
            // Before anything is read: a second hub on this file must not start at all.
            let lock = StateLock::acquire(&config.db)?;
            Ok((Arc::new(SqliteStore::open(&config.db)?), Some(lock)))
        }
    }
}

pub(crate) fn parse_json(what: &'static str, text: &str) -> Result<Value, StoreError> {
    serde_json::from_str(text).map_err(|error| StoreError::Json { what, error })
}

/// A share's scopes as stored (a JSON list of strings).
pub(crate) fn scopes_of(text: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(text).map_err(|error| StoreError::Json {
        what: "shares.scopes",
        error,
    })
}

/// The phases as the database spells them, for `phase IN (…)`.
pub(crate) fn phase_names(phases: &[Phase]) -> Vec<&'static str> {
    phases.iter().map(|p| p.as_db()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A report that follows the chain (anyhow's `{:#}` and `{:?}`) says each cause once: the
    /// messages carry the library's error, so it must not be a source as well.
    #[test]
    fn a_database_error_is_said_once() {
        let errors = [
            StoreError::from(rusqlite::Error::InvalidQuery),
            parse_json("servers.state", "{").unwrap_err(),
        ];
        for e in errors {
            let cause = match &e {
                StoreError::Sql(inner) => inner.to_string(),
                StoreError::Json { error, .. } => error.to_string(),
                _ => unreachable!(),
            };
            let report = format!("{:#}", anyhow::Error::from(e));
            assert_eq!(report.matches(&cause).count(), 1, "{report}");
        }
    }
}
