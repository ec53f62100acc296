//! The SQLite backend: one file (WAL), written through on every change so that a hub restarted
//! at any moment finds every user, server and token it had.
//!
//! One hub at a time: two hubs on one file would each act on their own view and undo each
//! other's work, and SQLite offers no change feed to follow another hub by. A running hub holds
//! an exclusive lock on `<file>.lock` ([`StateLock`]), and a second hub refuses to start, naming
//! the process that holds it.
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

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::Value;

use super::{
    Cas, Expect, Grantee, GroupRecord, Loaded, LoadedUser, OAuthCode, ShareCodeRecord, ShareRecord, StateStore,
    StoreError, parse_json, phase_names, scopes_of,
};
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
    // 3: what a shared store needs, kept here so both backends answer the same calls: the
    // replica owning a server's transition, leases, spawn progress, OAuth codes.
    "ALTER TABLE servers ADD COLUMN owner TEXT;
    CREATE TABLE leases (
        name TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        expires_ms INTEGER NOT NULL
    );
    CREATE TABLE spawn_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        user TEXT NOT NULL,
        server TEXT NOT NULL,
        event TEXT NOT NULL
    );
    CREATE INDEX spawn_events_server ON spawn_events (user, server, id);
    CREATE TABLE oauth_codes (
        code TEXT PRIMARY KEY,
        user TEXT NOT NULL,
        client_id TEXT NOT NULL,
        redirect_uri TEXT NOT NULL,
        expires_ms INTEGER NOT NULL
    );",
    // 4: groups and their members (JupyterHub's), for the edge's group policy and sharing.
    "CREATE TABLE groups (
        name TEXT PRIMARY KEY,
        properties TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TABLE group_members (
        grp TEXT NOT NULL REFERENCES groups(name) ON DELETE CASCADE,
        user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
        PRIMARY KEY (grp, user)
    );
    CREATE INDEX group_members_user ON group_members (user);",
    // 5: servers shared with users and groups. A share goes with its owner; one granted to a
    // user or group goes with them (triggers: the grantee column names either).
    "CREATE TABLE shares (
        owner TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
        server TEXT NOT NULL,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        scopes TEXT NOT NULL DEFAULT '[]',
        created_ms INTEGER NOT NULL,
        PRIMARY KEY (owner, server, kind, name)
    );
    CREATE TRIGGER shares_of_deleted_user AFTER DELETE ON users
        BEGIN DELETE FROM shares WHERE kind = 'user' AND name = OLD.name; END;
    CREATE TRIGGER shares_of_deleted_group AFTER DELETE ON groups
        BEGIN DELETE FROM shares WHERE kind = 'group' AND name = OLD.name; END;",
    // 6: the scopes a token was made with (NULL: all its owner holds).
    "ALTER TABLE tokens ADD COLUMN scopes TEXT;",
    // 7: share codes, by hash.
    "CREATE TABLE share_codes (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        hash TEXT NOT NULL UNIQUE,
        owner TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
        server TEXT NOT NULL,
        scopes TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        expires_ms INTEGER NOT NULL,
        exchange_count INTEGER NOT NULL DEFAULT 0,
        last_exchanged_ms INTEGER
    );",
    // 8: a user's login sessions found without a scan (ended on a group or admin change).
    "CREATE INDEX sessions_user ON sessions (user);",
];

pub struct SqliteStore {
    conn: Mutex<Connection>,
    path: String,
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
    let lock_err = |error| StoreError::Lock {
        path: path.clone(),
        error,
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

const SERVER_COLUMNS: &str = "user, name, phase, url, spawner_state, started_ms, last_activity_ms, user_options, owner";

const TOKEN_COLUMNS: &str = "id, hash, user, server, note, created_ms, expires_ms, scopes";

fn user_row(r: &Row<'_>) -> rusqlite::Result<UserRecord> {
    Ok(UserRecord {
        name: r.get(0)?,
        admin: r.get(1)?,
        created_ms: r.get(2)?,
        last_activity_ms: r.get(3)?,
    })
}

fn token_row(r: &Row<'_>) -> rusqlite::Result<TokenRecord> {
    Ok(TokenRecord {
        id: r.get(0)?,
        hash: r.get(1)?,
        user: r.get(2)?,
        server: r.get(3)?,
        note: r.get(4)?,
        created_ms: r.get(5)?,
        expires_ms: r.get(6)?,
        scopes: crate::model::token_scopes_from_db(r.get(7)?),
    })
}

/// A server row read with [`SERVER_COLUMNS`], its JSON columns still text.
struct RawServer {
    record: ServerRecord,
    state: String,
    options: String,
}

fn server_row(r: &Row<'_>) -> rusqlite::Result<RawServer> {
    let phase: String = r.get(2)?;
    Ok(RawServer {
        record: ServerRecord {
            user: r.get(0)?,
            name: r.get(1)?,
            phase: Phase::from_db(&phase),
            url: r.get(3)?,
            spawner_state: Value::Null,
            started_ms: r.get(5)?,
            last_activity_ms: r.get(6)?,
            user_options: Value::Null,
            owner: r.get(8)?,
        },
        state: r.get(4)?,
        options: r.get(7)?,
    })
}

fn servers_where(c: &Connection, filter: &str, args: impl rusqlite::Params) -> Result<Vec<ServerRecord>, StoreError> {
    let raw = c
        .prepare(&format!("SELECT {SERVER_COLUMNS} FROM servers {filter}"))?
        .query_map(args, server_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    raw.into_iter()
        .map(|raw| {
            let mut record = raw.record;
            record.spawner_state = parse_json("servers.spawner_state", &raw.state)?;
            record.user_options = parse_json("servers.user_options", &raw.options)?;
            Ok(record)
        })
        .collect()
}

impl SqliteStore {
    /// Opens (creating if needed) and migrates the database at `path`.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let open_err = |error| StoreError::Open {
            path: path.display().to_string(),
            error,
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
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            path: path.display().to_string(),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T, StoreError>) -> Result<T, StoreError> {
        // A panic while holding the lock cannot leave SQLite half-written (each call is one
        // statement or one transaction), so a poisoned lock is still safe to use.
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut conn)
    }

    /// Runs one statement.
    fn exec(&self, sql: &str, args: impl rusqlite::Params) -> Result<usize, StoreError> {
        self.with(|c| Ok(c.execute(sql, args)?))
    }

    fn write_server(c: &Connection, server: &ServerRecord) -> rusqlite::Result<usize> {
        c.execute(
            "INSERT INTO servers (user, name, phase, url, spawner_state, started_ms, last_activity_ms, user_options, owner)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT(user, name) DO UPDATE SET phase = ?3, url = ?4, spawner_state = ?5,
                started_ms = ?6, last_activity_ms = ?7, user_options = ?8, owner = ?9",
            params![
                server.user,
                server.name,
                server.phase.as_db(),
                server.url,
                server.spawner_state.to_string(),
                server.started_ms,
                server.last_activity_ms,
                server.user_options.to_string(),
                server.owner,
            ],
        )
    }
}

impl StateStore for SqliteStore {
    fn describe(&self) -> String {
        format!("SQLite {}", self.path)
    }

    fn shared(&self) -> bool {
        false
    }

    fn load(&self) -> Result<Loaded, StoreError> {
        self.with(|c| {
            let users = c
                .prepare("SELECT name, admin, created_ms, last_activity_ms FROM users")?
                .query_map([], user_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let servers = servers_where(c, "", [])?;
            let tokens = c
                .prepare(&format!("SELECT {TOKEN_COLUMNS} FROM tokens"))?
                .query_map([], token_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Loaded { users, servers, tokens })
        })
    }

    fn load_user(&self, name: &str) -> Result<Option<LoadedUser>, StoreError> {
        self.with(|c| {
            let Some(user) = c
                .query_row(
                    "SELECT name, admin, created_ms, last_activity_ms FROM users WHERE name = ?1",
                    params![name],
                    user_row,
                )
                .optional()?
            else {
                return Ok(None);
            };
            let servers = servers_where(c, "WHERE user = ?1", params![name])?;
            let tokens = c
                .prepare(&format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE user = ?1"))?
                .query_map(params![name], token_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Some(LoadedUser { user, servers, tokens }))
        })
    }

    fn put_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO users (name, admin, created_ms, last_activity_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(name) DO UPDATE SET admin = ?2, last_activity_ms = ?4",
            params![user.name, user.admin, user.created_ms, user.last_activity_ms],
        )?;
        Ok(())
    }

    fn delete_user(&self, name: &str) -> Result<(), StoreError> {
        self.exec("DELETE FROM users WHERE name = ?1", params![name])?;
        Ok(())
    }

    fn put_server(&self, server: &ServerRecord) -> Result<(), StoreError> {
        self.with(|c| Ok(Self::write_server(c, server).map(drop)?))
    }

    fn set_server(&self, server: &ServerRecord, expect: Expect<'_>) -> Result<Cas, StoreError> {
        self.with(|c| {
            // IMMEDIATE: the write lock is taken before the read, so two hubs' claims queue
            // (busy_timeout) instead of the second failing to upgrade its read.
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let current = servers_where(&tx, "WHERE user = ?1 AND name = ?2", params![server.user, server.name])?.pop();
            let phase = current.as_ref().map_or(Phase::Stopped, |s| s.phase);
            let owner = current.as_ref().and_then(|s| s.owner.as_deref());
            if !(expect.phases.contains(&phase) && expect.owner.is_none_or(|o| Some(o) == owner)) {
                return Ok(Cas::Refused(current.map(Box::new)));
            }
            Self::write_server(&tx, server)?;
            if server.phase == Phase::Pending && phase != Phase::Pending {
                // A new start: its progress begins empty, in the same step as the claim.
                tx.execute(
                    "DELETE FROM spawn_events WHERE user = ?1 AND server = ?2",
                    params![server.user, server.name],
                )?;
            }
            tx.commit()?;
            Ok(Cas::Written)
        })
    }

    fn touch_server(&self, user: &str, name: &str, at_ms: u64) -> Result<(), StoreError> {
        self.exec(
            "UPDATE servers SET last_activity_ms = ?3 WHERE user = ?1 AND name = ?2
             AND (last_activity_ms IS NULL OR last_activity_ms < ?3)",
            params![user, name, at_ms],
        )?;
        Ok(())
    }

    fn delete_server(&self, user: &str, name: &str) -> Result<(), StoreError> {
        self.exec("DELETE FROM servers WHERE user = ?1 AND name = ?2", params![user, name])?;
        Ok(())
    }

    fn add_token(&self, token: &TokenRecord) -> Result<i64, StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO tokens (hash, user, server, note, created_ms, expires_ms, scopes)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    token.hash,
                    token.user,
                    token.server,
                    token.note,
                    token.created_ms,
                    token.expires_ms,
                    crate::model::token_scopes_to_db(&token.scopes)
                ],
            )?;
            Ok(c.last_insert_rowid())
        })
    }

    fn token(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        self.with(|c| {
            Ok(c.query_row(
                &format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = ?1"),
                params![hash],
                token_row,
            )
            .optional()?)
        })
    }

    fn delete_token(&self, id: i64) -> Result<(), StoreError> {
        self.exec("DELETE FROM tokens WHERE id = ?1", params![id])?;
        Ok(())
    }

    fn put_session(&self, jti: &str, user: &str, expires_ms: u64) -> Result<(), StoreError> {
        self.exec(
            "INSERT OR REPLACE INTO sessions (jti, user, expires_ms) VALUES (?1, ?2, ?3)",
            params![jti, user, expires_ms],
        )?;
        Ok(())
    }

    fn delete_session(&self, jti: &str) -> Result<(), StoreError> {
        self.exec("DELETE FROM sessions WHERE jti = ?1", params![jti])?;
        Ok(())
    }

    fn session_live(&self, jti: &str, now_ms: u64) -> Result<Option<String>, StoreError> {
        self.with(|c| {
            Ok(c.query_row(
                "SELECT user FROM sessions WHERE jti = ?1 AND expires_ms > ?2",
                params![jti, now_ms],
                |r| r.get(0),
            )
            .optional()?)
        })
    }

    fn take_expired_sessions(&self, now_ms: u64) -> Result<Vec<String>, StoreError> {
        self.with(|c| {
            Ok(c.prepare("DELETE FROM sessions WHERE expires_ms <= ?1 RETURNING jti")?
                .query_map(params![now_ms], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?)
        })
    }

    fn sessions_of(&self, user: &str) -> Result<Vec<String>, StoreError> {
        self.with(|c| {
            Ok(c.prepare("SELECT jti FROM sessions WHERE user = ?1")?
                .query_map(params![user], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?)
        })
    }

    fn live_sessions(&self, now_ms: u64) -> Result<Vec<(String, String)>, StoreError> {
        self.with(|c| {
            c.execute("DELETE FROM sessions WHERE expires_ms <= ?1", params![now_ms])?;
            Ok(c.prepare("SELECT jti, user FROM sessions")?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?)
        })
    }

    fn secret(&self, name: &str, generate: &mut dyn FnMut() -> Vec<u8>) -> Result<Vec<u8>, StoreError> {
        self.with(|c| {
            if let Some(v) = c
                .query_row("SELECT value FROM secrets WHERE name = ?1", params![name], |r| r.get(0))
                .optional()?
            {
                return Ok(v);
            }
            // Whoever inserts first wins; everyone reads the winner's.
            c.execute(
                "INSERT OR IGNORE INTO secrets (name, value) VALUES (?1, ?2)",
                params![name, generate()],
            )?;
            Ok(c.query_row("SELECT value FROM secrets WHERE name = ?1", params![name], |r| r.get(0))?)
        })
    }

    fn lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, StoreError> {
        let now = proxy::timestamp::now_ms();
        let taken = self.exec(
            "INSERT INTO leases (name, holder, expires_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT(name) DO UPDATE SET holder = ?2, expires_ms = ?3
             WHERE leases.holder = ?2 OR leases.expires_ms < ?4",
            params![name, holder, now + ttl.as_millis() as u64, now],
        )?;
        Ok(taken == 1)
    }

    fn release(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        self.exec(
            "DELETE FROM leases WHERE name = ?1 AND holder = ?2",
            params![name, holder],
        )?;
        Ok(())
    }

    fn orphans(&self, me: &str) -> Result<Vec<ServerRecord>, StoreError> {
        let now = proxy::timestamp::now_ms();
        let phases = phase_names(&[Phase::Pending, Phase::Stopping]);
        self.with(|c| {
            servers_where(
                c,
                "WHERE phase IN (?1, ?2) AND (owner IS NULL OR owner <> ?3) AND NOT EXISTS (
                    SELECT 1 FROM leases WHERE leases.name = 'replica:' || servers.owner AND leases.expires_ms > ?4)",
                params![phases[0], phases[1], me, now],
            )
        })
    }

    fn add_progress(&self, user: &str, server: &str, event: &Value) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO spawn_events (user, server, event) VALUES (?1, ?2, ?3)",
            params![user, server, event.to_string()],
        )?;
        Ok(())
    }

    fn progress(&self, user: &str, server: &str, after: usize) -> Result<Vec<Value>, StoreError> {
        self.with(|c| {
            let texts = c
                .prepare(
                    "SELECT event FROM spawn_events WHERE user = ?1 AND server = ?2 ORDER BY id LIMIT -1 OFFSET ?3",
                )?
                .query_map(params![user, server, after as i64], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            texts.iter().map(|t| parse_json("spawn_events.event", t)).collect()
        })
    }

    fn clear_progress(&self, user: &str, server: &str) -> Result<(), StoreError> {
        self.exec(
            "DELETE FROM spawn_events WHERE user = ?1 AND server = ?2",
            params![user, server],
        )?;
        Ok(())
    }

    fn groups(&self) -> Result<Vec<GroupRecord>, StoreError> {
        self.with(|c| read_groups(c, None))
    }

    fn group(&self, name: &str) -> Result<Option<GroupRecord>, StoreError> {
        self.with(|c| Ok(read_groups(c, Some(name))?.pop()))
    }

    fn create_group(&self, name: &str, properties: &Value) -> Result<bool, StoreError> {
        let created = self.exec(
            "INSERT INTO groups (name, properties) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
            params![name, properties.to_string()],
        )?;
        Ok(created > 0)
    }

    fn delete_group(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self.exec("DELETE FROM groups WHERE name = ?1", params![name])? > 0)
    }

    fn set_group_properties(&self, name: &str, properties: &Value) -> Result<bool, StoreError> {
        let changed = self.exec(
            "UPDATE groups SET properties = ?2 WHERE name = ?1",
            params![name, properties.to_string()],
        )?;
        Ok(changed > 0)
    }

    fn set_group_members(&self, name: &str, users: &[String], member: bool) -> Result<(), StoreError> {
        self.with(|c| {
            let tx = c.transaction()?;
            let sql = if member {
                "INSERT INTO group_members (grp, user) VALUES (?1, ?2) ON CONFLICT DO NOTHING"
            } else {
                "DELETE FROM group_members WHERE grp = ?1 AND user = ?2"
            };
            for user in users {
                tx.execute(sql, params![name, user])?;
            }
            tx.commit()?;
            Ok(())
        })
    }

    fn user_groups(&self, user: &str) -> Result<Vec<String>, StoreError> {
        self.with(|c| {
            let mut q = c.prepare_cached("SELECT grp FROM group_members WHERE user = ?1 ORDER BY grp")?;
            let names = q.query_map(params![user], |r| r.get(0))?.collect::<Result<_, _>>()?;
            Ok(names)
        })
    }

    fn shares(&self) -> Result<Vec<ShareRecord>, StoreError> {
        self.with(|c| {
            let mut q = c.prepare_cached(
                "SELECT owner, server, kind, name, scopes, created_ms FROM shares ORDER BY created_ms, rowid",
            )?;
            let rows = q
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, u64>(5)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter()
                .map(|(owner, server, kind, name, scopes, created_ms)| {
                    Ok(ShareRecord {
                        owner,
                        server,
                        grantee: Grantee::from_row(&kind, name),
                        scopes: scopes_of(&scopes)?,
                        created_ms,
                    })
                })
                .collect()
        })
    }

    fn grant_share(&self, share: &ShareRecord) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO shares (owner, server, kind, name, scopes, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (owner, server, kind, name) DO UPDATE SET scopes = excluded.scopes",
            params![
                share.owner,
                share.server,
                share.grantee.kind(),
                share.grantee.name(),
                Value::from(share.scopes.clone()).to_string(),
                share.created_ms
            ],
        )?;
        Ok(())
    }

    fn revoke_share(&self, owner: &str, server: &str, grantee: &Grantee) -> Result<bool, StoreError> {
        let gone = self.exec(
            "DELETE FROM shares WHERE owner = ?1 AND server = ?2 AND kind = ?3 AND name = ?4",
            params![owner, server, grantee.kind(), grantee.name()],
        )?;
        Ok(gone > 0)
    }

    fn revoke_server_shares(&self, owner: &str, server: Option<&str>) -> Result<usize, StoreError> {
        self.exec(
            "DELETE FROM shares WHERE owner = ?1 AND (?2 IS NULL OR server = ?2)",
            params![owner, server],
        )
    }

    fn add_share_code(&self, code: &ShareCodeRecord) -> Result<i64, StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO share_codes (hash, owner, server, scopes, created_ms, expires_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    code.hash,
                    code.owner,
                    code.server,
                    Value::from(code.scopes.clone()).to_string(),
                    code.created_ms,
                    code.expires_ms
                ],
            )?;
            Ok(c.last_insert_rowid())
        })
    }

    fn share_codes(&self, now_ms: u64) -> Result<Vec<ShareCodeRecord>, StoreError> {
        self.with(|c| {
            c.execute("DELETE FROM share_codes WHERE expires_ms <= ?1", params![now_ms])?;
            let mut q = c.prepare_cached(
                "SELECT id, hash, owner, server, scopes, created_ms, expires_ms, exchange_count, last_exchanged_ms
                 FROM share_codes ORDER BY id",
            )?;
            let rows = q
                .query_map([], |r| {
                    Ok((
                        ShareCodeRecord {
                            id: r.get(0)?,
                            hash: r.get(1)?,
                            owner: r.get(2)?,
                            server: r.get(3)?,
                            scopes: Vec::new(),
                            created_ms: r.get(5)?,
                            expires_ms: r.get(6)?,
                            exchange_count: r.get(7)?,
                            last_exchanged_ms: r.get(8)?,
                        },
                        r.get::<_, String>(4)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter()
                .map(|(code, scopes)| {
                    Ok(ShareCodeRecord {
                        scopes: scopes_of(&scopes)?,
                        ..code
                    })
                })
                .collect()
        })
    }

    fn delete_share_codes(&self, owner: &str, server: &str, id: Option<i64>) -> Result<usize, StoreError> {
        self.exec(
            "DELETE FROM share_codes WHERE owner = ?1 AND server = ?2 AND (?3 IS NULL OR id = ?3)",
            params![owner, server, id],
        )
    }

    fn note_share_code_exchange(&self, id: i64, at_ms: u64) -> Result<(), StoreError> {
        self.exec(
            "UPDATE share_codes SET exchange_count = exchange_count + 1, last_exchanged_ms = ?2 WHERE id = ?1",
            params![id, at_ms],
        )?;
        Ok(())
    }

    fn put_code(&self, code: &str, grant: &OAuthCode) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO oauth_codes (code, user, client_id, redirect_uri, expires_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![code, grant.user, grant.client_id, grant.redirect_uri, grant.expires_ms],
        )?;
        Ok(())
    }

    fn take_code(&self, code: &str) -> Result<Option<OAuthCode>, StoreError> {
        self.with(|c| {
            Ok(c.query_row(
                "DELETE FROM oauth_codes WHERE code = ?1 RETURNING user, client_id, redirect_uri, expires_ms",
                params![code],
                |r| {
                    Ok(OAuthCode {
                        user: r.get(0)?,
                        client_id: r.get(1)?,
                        redirect_uri: r.get(2)?,
                        expires_ms: r.get(3)?,
                    })
                },
            )
            .optional()?)
        })
    }
}

/// Groups with their members: all of them, or the one named.
fn read_groups(c: &Connection, only: Option<&str>) -> Result<Vec<GroupRecord>, StoreError> {
    let mut q = c.prepare_cached(
        "SELECT g.name, g.properties, m.user FROM groups g LEFT JOIN group_members m ON m.grp = g.name
         WHERE ?1 IS NULL OR g.name = ?1 ORDER BY g.name, m.user",
    )?;
    let mut rows = q.query(params![only])?;
    let mut groups: Vec<GroupRecord> = Vec::new();
    while let Some(row) = rows.next()? {
        let name: String = row.get(0)?;
        if groups.last().is_none_or(|g| g.name != name) {
            let properties: String = row.get(1)?;
            groups.push(GroupRecord {
                name,
                properties: parse_json("groups.properties", &properties)?,
                users: Vec::new(),
            });
        }
        if let (Some(group), Some(user)) = (groups.last_mut(), row.get::<_, Option<String>>(2)?) {
            group.users.push(user);
        }
    }
    Ok(groups)
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
            let store = SqliteStore::open(&path).unwrap();
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
                    owner: None,
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
                    scopes: None,
                })
                .unwrap();
            assert!(id > 0);
            assert_eq!(store.secret("k", &mut || vec![1, 2]).unwrap(), vec![1, 2]);
            store.put_session("j1", "alice", 1_000).unwrap();
            store.put_session("j2", "alice", 5_000).unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        let loaded = store.load().unwrap();
        assert_eq!(loaded.users.len(), 1);
        assert!(loaded.users[0].admin);
        assert_eq!(loaded.servers[0].phase, Phase::Running);
        assert_eq!(loaded.servers[0].spawner_state["pid"], 42);
        assert_eq!(loaded.tokens[0].user, "alice");
        assert_eq!(
            store.secret("k", &mut || vec![9]).unwrap(),
            vec![1, 2],
            "secrets are kept"
        );
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
        let err = SqliteStore::open(&path).err().unwrap().to_string();
        assert!(
            err.contains("schema version 99") && err.contains("newer edgehub"),
            "{err}"
        );
    }
}
