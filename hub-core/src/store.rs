//! The hub's state on disk: one SQLite file (WAL), written through on every change so that a
//! hub restarted at any moment finds every user, server and token it had.
//!
//! One hub at a time: the hub keeps its state in memory and writes it through, so two hubs on one
//! file would each trust their own copy and undo each other's work. A running hub holds an
//! exclusive lock on `<file>.lock` ([`StateLock`]), and a second hub refuses to start, naming the
//! process that holds it.
//!
//! The schema evolves by numbered migrations, applied in order inside one transaction each and
//! recorded in `PRAGMA user_version`; a database newer than this binary is refused rather than
//! misread. Calls are short (one row) and made under a mutex: SQLite serialises writers anyway,
//! and a row write in WAL mode with `synchronous=NORMAL` costs tens of microseconds.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

use crate::model::{Phase, ServerRecord, TokenRecord, UserRecord};

/// Schema changes, oldest first. Never edit one that has shipped: add another.
const MIGRATIONS: &[&str] = &[
    // 1: users, their servers, API tokens, and the hub's own secrets.
    "CREATE TABLE users (
        name TEXT PRIMARY KEY,
        admin INTEGER NOT NULL DEFAULT 0,
        created_ms INTEGER NOT NULL,
        last_activity_ms INTEGER
    );
    CREATE TABLE servers (
        user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
        name TEXT NOT NULL,
        phase TEXT NOT NULL,
        url TEXT,
        spawner_state TEXT NOT NULL DEFAULT '{}',
        started_ms INTEGER,
        last_activity_ms INTEGER,
        user_options TEXT NOT NULL DEFAULT '{}',
        PRIMARY KEY (user, name)
    );
    CREATE TABLE tokens (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        hash TEXT NOT NULL UNIQUE,
        user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
        server TEXT,
        note TEXT NOT NULL DEFAULT '',
        created_ms INTEGER NOT NULL,
        expires_ms INTEGER
    );
    CREATE TABLE secrets (
        name TEXT PRIMARY KEY,
        value BLOB NOT NULL
    );",
    // 2: login sessions kept in process (`edgehub up`), so a hub restart logs no one out.
    "CREATE TABLE sessions (
        jti TEXT PRIMARY KEY,
        user TEXT NOT NULL,
        expires_ms INTEGER NOT NULL
    );",
];

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the state database {path}: {source}")]
    Open { path: String, source: rusqlite::Error },
    #[error(
        "the state database {path} has schema version {found}, newer than this edgehub knows ({known}); use a newer edgehub"
    )]
    TooNew { path: String, found: i64, known: usize },
    #[error(
        "the state database {path} is in use by another edgehub ({holder}); stop it first: SQLite state is for one hub at a time"
    )]
    InUse { path: String, holder: String },
    #[error("cannot lock the state database {path}: {source}")]
    Lock { path: String, source: std::io::Error },
    #[error("state database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("state database holds unreadable JSON in {what}: {source}")]
    Json {
        what: &'static str,
        source: serde_json::Error,
    },
}

pub struct Store {
    conn: Mutex<Connection>,
}

/// The right to run a hub on a state database: an exclusive lock on `<db>.lock`, released when
/// this is dropped (or, however the process ends, by the kernel).
pub struct StateLock {
    _file: File,
}

/// How long a hub waits for the lock before refusing: long enough for a hub stopped in the same
/// process (a restart) to finish letting go of it.
const LOCK_WAIT: Duration = Duration::from_secs(3);

impl StateLock {
    /// Takes the lock on `<db>.lock` and writes this process's id into it; if another process
    /// (or another hub in this one) holds it for longer than 3 s, says which.
    pub fn acquire(db: &Path) -> Result<StateLock, StoreError> {
        lock_for_one_hub(db).map(|file| StateLock { _file: file })
    }
}

fn lock_for_one_hub(db: &Path) -> Result<File, StoreError> {
    let path = format!("{}.lock", db.display());
    let lock_err = |source| StoreError::Lock {
        path: path.clone(),
        source,
    };
    let mut file = File::options()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(lock_err)?;
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        // SAFETY: flock on a descriptor this function owns; no memory is involved.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            let pid = std::process::id().to_string();
            file.set_len(0).map_err(lock_err)?;
            file.rewind().map_err(lock_err)?;
            file.write_all(pid.as_bytes()).map_err(lock_err)?;
            return Ok(file);
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(lock_err(err));
        }
        if Instant::now() >= deadline {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = match holder.trim() {
                "" => "a process that has not said which".to_owned(),
                pid => format!("process {pid}"),
            };
            return Err(StoreError::InUse {
                path: db.display().to_string(),
                holder,
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Everything read back at start-up.
pub struct Loaded {
    pub users: Vec<UserRecord>,
    pub servers: Vec<ServerRecord>,
    pub tokens: Vec<TokenRecord>,
}

impl Store {
    /// Opens (creating if needed) and migrates the database at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.display().to_string(),
            source,
        };
        let mut conn = Connection::open(path).map_err(open_err)?;
        // The hub holds its state in memory and reads the database only at start-up, so a page
        // cache (SQLite's default is 2 MiB) would only mirror what is already held: 256 KiB is
        // enough for the pages a write touches.
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             PRAGMA foreign_keys = ON;
             PRAGMA busy_timeout = 5000;
             PRAGMA cache_size = -256;",
        )
        .map_err(open_err)?;
        migrate(&mut conn, path)?;
        Ok(Store { conn: Mutex::new(conn) })
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        // A panic while holding the lock cannot leave SQLite half-written (each call is one
        // statement or one transaction), so a poisoned lock is still safe to use.
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        Ok(f(&conn)?)
    }

    pub fn load(&self) -> Result<Loaded, StoreError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let users = conn
            .prepare("SELECT name, admin, created_ms, last_activity_ms FROM users")?
            .query_map([], |r| {
                Ok(UserRecord {
                    name: r.get(0)?,
                    admin: r.get(1)?,
                    created_ms: r.get(2)?,
                    last_activity_ms: r.get(3)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mut servers = Vec::new();
        let mut stmt = conn.prepare(
            "SELECT user, name, phase, url, spawner_state, started_ms, last_activity_ms, user_options FROM servers",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let state: String = r.get(4)?;
            let options: String = r.get(7)?;
            let phase: String = r.get(2)?;
            servers.push(ServerRecord {
                user: r.get(0)?,
                name: r.get(1)?,
                phase: Phase::from_db(&phase),
                url: r.get(3)?,
                spawner_state: parse_json("servers.spawner_state", &state)?,
                started_ms: r.get(5)?,
                last_activity_ms: r.get(6)?,
                user_options: parse_json("servers.user_options", &options)?,
            });
        }
        let tokens = conn
            .prepare("SELECT id, hash, user, server, note, created_ms, expires_ms FROM tokens")?
            .query_map([], |r| {
                Ok(TokenRecord {
                    id: r.get(0)?,
                    hash: r.get(1)?,
                    user: r.get(2)?,
                    server: r.get(3)?,
                    note: r.get(4)?,
                    created_ms: r.get(5)?,
                    expires_ms: r.get(6)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(Loaded { users, servers, tokens })
    }

    pub fn put_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO users (name, admin, created_ms, last_activity_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(name) DO UPDATE SET admin = ?2, last_activity_ms = ?4",
                params![user.name, user.admin, user.created_ms, user.last_activity_ms],
            )
        })?;
        Ok(())
    }

    /// Deletes a user with their servers and tokens.
    pub fn delete_user(&self, name: &str) -> Result<(), StoreError> {
        self.with(|c| c.execute("DELETE FROM users WHERE name = ?1", params![name]))?;
        Ok(())
    }

    pub fn put_server(&self, server: &ServerRecord) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO servers (user, name, phase, url, spawner_state, started_ms, last_activity_ms, user_options)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT(user, name) DO UPDATE SET phase = ?3, url = ?4, spawner_state = ?5,
                    started_ms = ?6, last_activity_ms = ?7, user_options = ?8",
                params![
                    server.user,
                    server.name,
                    server.phase.as_db(),
                    server.url,
                    server.spawner_state.to_string(),
                    server.started_ms,
                    server.last_activity_ms,
                    server.user_options.to_string(),
                ],
            )
        })?;
        Ok(())
    }

    pub fn delete_server(&self, user: &str, name: &str) -> Result<(), StoreError> {
        self.with(|c| c.execute("DELETE FROM servers WHERE user = ?1 AND name = ?2", params![user, name]))?;
        Ok(())
    }

    /// Stores a new token and returns its id.
    pub fn add_token(&self, token: &TokenRecord) -> Result<i64, StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO tokens (hash, user, server, note, created_ms, expires_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    token.hash,
                    token.user,
                    token.server,
                    token.note,
                    token.created_ms,
                    token.expires_ms
                ],
            )?;
            Ok(c.last_insert_rowid())
        })
    }

    pub fn delete_token(&self, id: i64) -> Result<(), StoreError> {
        self.with(|c| c.execute("DELETE FROM tokens WHERE id = ?1", params![id]))?;
        Ok(())
    }

    pub fn put_session(&self, jti: &str, user: &str, expires_ms: u64) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT OR REPLACE INTO sessions (jti, user, expires_ms) VALUES (?1, ?2, ?3)",
                params![jti, user, expires_ms],
            )
        })?;
        Ok(())
    }

    pub fn delete_session(&self, jti: &str) -> Result<(), StoreError> {
        self.with(|c| c.execute("DELETE FROM sessions WHERE jti = ?1", params![jti]))?;
        Ok(())
    }

    /// Deletes the sessions expired at `now_ms` and returns their ids.
    pub fn take_expired_sessions(&self, now_ms: u64) -> Result<Vec<String>, StoreError> {
        self.with(|c| {
            c.prepare("DELETE FROM sessions WHERE expires_ms <= ?1 RETURNING jti")?
                .query_map(params![now_ms], |r| r.get(0))?
                .collect()
        })
    }

    /// Sessions still valid at `now_ms` as `(jti, user)`; expired ones are deleted.
    pub fn live_sessions(&self, now_ms: u64) -> Result<Vec<(String, String)>, StoreError> {
        self.with(|c| {
            c.execute("DELETE FROM sessions WHERE expires_ms <= ?1", params![now_ms])?;
            c.prepare("SELECT jti, user FROM sessions")?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect()
        })
    }

    /// A secret the hub generated once and must keep across restarts (the session signing key),
    /// made by `generate` the first time.
    pub fn secret(&self, name: &str, generate: impl FnOnce() -> Vec<u8>) -> Result<Vec<u8>, StoreError> {
        self.with(|c| {
            if let Some(v) = c
                .query_row("SELECT value FROM secrets WHERE name = ?1", params![name], |r| r.get(0))
                .optional()?
            {
                return Ok(v);
            }
            let value = generate();
            c.execute(
                "INSERT INTO secrets (name, value) VALUES (?1, ?2)",
                params![name, value],
            )?;
            Ok(value)
        })
    }
}

fn parse_json(what: &'static str, text: &str) -> Result<Value, StoreError> {
    serde_json::from_str(text).map_err(|source| StoreError::Json { what, source })
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version as usize > MIGRATIONS.len() {
        return Err(StoreError::TooNew {
            path: path.display().to_string(),
            found: version,
            known: MIGRATIONS.len(),
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
        tracing::info!("state database {}: migrated to schema {}", path.display(), i + 1);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_db(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("edgehub-store-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("hub.sqlite")
    }

    #[test]
    fn everything_written_is_read_back_after_reopening() {
        let path = temp_db("roundtrip");
        {
            let store = Store::open(&path).unwrap();
            store
                .put_user(&UserRecord {
                    name: "alice".into(),
                    admin: true,
                    created_ms: 1,
                    last_activity_ms: Some(5),
                })
                .unwrap();
            store
                .put_server(&ServerRecord {
                    user: "alice".into(),
                    name: "".into(),
                    phase: Phase::Running,
                    url: Some("http://127.0.0.1:9".into()),
                    spawner_state: serde_json::json!({"pid": 42}),
                    started_ms: Some(2),
                    last_activity_ms: Some(3),
                    user_options: serde_json::json!({}),
                })
                .unwrap();
            let id = store
                .add_token(&TokenRecord {
                    id: 0,
                    hash: "h".into(),
                    user: "alice".into(),
                    server: None,
                    note: "n".into(),
                    created_ms: 1,
                    expires_ms: None,
                })
                .unwrap();
            assert!(id > 0);
            assert_eq!(store.secret("k", || vec![1, 2]).unwrap(), vec![1, 2]);
            store.put_session("j1", "alice", 1_000).unwrap();
            store.put_session("j2", "alice", 5_000).unwrap();
        }
        let store = Store::open(&path).unwrap();
        let loaded = store.load().unwrap();
        assert_eq!(loaded.users.len(), 1);
        assert!(loaded.users[0].admin);
        assert_eq!(loaded.servers[0].phase, Phase::Running);
        assert_eq!(loaded.servers[0].spawner_state["pid"], 42);
        assert_eq!(loaded.tokens[0].user, "alice");
        assert_eq!(store.secret("k", || vec![9]).unwrap(), vec![1, 2], "secrets are kept");
        assert_eq!(
            store.live_sessions(2_000).unwrap(),
            vec![("j2".to_owned(), "alice".to_owned())]
        );
        store.delete_session("j2").unwrap();
        assert!(store.live_sessions(0).unwrap().is_empty());
        store.delete_user("alice").unwrap();
        let loaded = store.load().unwrap();
        assert!(loaded.servers.is_empty() && loaded.tokens.is_empty(), "cascade");
    }

    #[test]
    fn a_second_hub_on_the_same_file_is_refused_naming_the_first() {
        let path = temp_db("one-hub");
        let first = StateLock::acquire(&path).unwrap();
        let began = Instant::now();
        let err = StateLock::acquire(&path).err().unwrap().to_string();
        assert!(
            err.contains("in use by another edgehub") && err.contains(&format!("process {}", std::process::id())),
            "{err}"
        );
        assert!(began.elapsed() >= LOCK_WAIT, "it waited for the first to let go");
        drop(first);
        assert!(StateLock::acquire(&path).is_ok(), "free once the first hub let go");
    }

    #[test]
    fn a_newer_schema_is_refused_by_name() {
        let path = temp_db("newer");
        {
            let conn = Connection::open(&path).unwrap();
            conn.pragma_update(None, "user_version", 99).unwrap();
        }
        let err = Store::open(&path).err().unwrap().to_string();
        assert!(
            err.contains("schema version 99") && err.contains("newer edgehub"),
            "{err}"
        );
    }
}
