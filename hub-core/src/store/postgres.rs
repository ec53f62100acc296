//! The PostgreSQL backend: one database shared by every hub replica.
//!
//! Each replica talks to it over one connection owned by a thread of its own (the `postgres`
//! client blocks, and the hub calls the store while holding its users lock, never across an
//! await). A call is a job sent to that thread; the caller waits for the answer, at most
//! [`ANSWER_WITHIN`], so a database that stopped answering gives an error, not a hung hub. A
//! connection found closed is opened again and the job tried once more.
//!
//! Every change to users, servers, tokens, sessions and spawn progress fires a trigger that
//! announces it on the channel `edgehub_state` (`kind \n replica \n key…`), delivered at commit
//! and in commit order; the replica that made the change is named so it can skip its own.
//!
//! Migrations run at start-up under a session advisory lock, so replicas starting together apply
//! each one once, and one after the other; a database newer than this binary is refused.

use std::sync::mpsc;
use std::time::Duration;

use ::postgres::{Client, Config, Row};
use serde_json::Value;

use super::postgres_tls::{PgTls, split_url};
use super::{
    Cas, Expect, Grantee, GroupRecord, Loaded, LoadedUser, OAuthCode, ShareCodeRecord, ShareRecord, StateStore,
    StoreError, parse_json, phase_names, scopes_of,
};
use crate::model::{Phase, ServerRecord, TokenRecord, UserRecord};

/// How long a caller waits for the database before giving up on a call.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(15);
/// How long opening a connection may take.
const CONNECT_WITHIN: Duration = Duration::from_secs(5);
/// The channel changes are announced on.
pub const CHANNEL: &str = "edgehub_state";
/// The advisory lock migrations run under (any constant; this one spells "edgehub").
const MIGRATION_LOCK: i64 = 0x0065_6467_6568_7562;

const MIGRATIONS: &[&str] = &[
    // 1: the whole schema, as SQLite's three migrations leave it, plus the change feed.
    r#"CREATE TABLE users (
        name TEXT PRIMARY KEY,
        admin BOOLEAN NOT NULL DEFAULT false,
        created_ms BIGINT NOT NULL,
        last_activity_ms BIGINT
    );
    CREATE TABLE servers (
        "user" TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
        name TEXT NOT NULL,
        phase TEXT NOT NULL,
        url TEXT,
        spawner_state TEXT NOT NULL DEFAULT '{}',
        started_ms BIGINT,
        last_activity_ms BIGINT,
        user_options TEXT NOT NULL DEFAULT '{}',
        owner TEXT,
        PRIMARY KEY ("user", name)
    );
    CREATE TABLE tokens (
        id BIGSERIAL PRIMARY KEY,
        hash TEXT NOT NULL UNIQUE,
        "user" TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
        server TEXT,
        note TEXT NOT NULL DEFAULT '',
        created_ms BIGINT NOT NULL,
        expires_ms BIGINT
    );
    CREATE INDEX tokens_user ON tokens ("user");
    CREATE TABLE secrets (
        name TEXT PRIMARY KEY,
        value BYTEA NOT NULL
    );
    CREATE TABLE sessions (
        jti TEXT PRIMARY KEY,
        "user" TEXT NOT NULL,
        expires_ms BIGINT NOT NULL
    );
    CREATE TABLE leases (
        name TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        expires TIMESTAMPTZ NOT NULL
    );
    CREATE TABLE spawn_events (
        id BIGSERIAL PRIMARY KEY,
        "user" TEXT NOT NULL,
        server TEXT NOT NULL,
        event TEXT NOT NULL
    );
    CREATE INDEX spawn_events_server ON spawn_events ("user", server, id);
    CREATE TABLE oauth_codes (
        code TEXT PRIMARY KEY,
        "user" TEXT NOT NULL,
        client_id TEXT NOT NULL,
        redirect_uri TEXT NOT NULL,
        expires_ms BIGINT NOT NULL
    );
    -- The change feed: kind, the replica that made the change (the connection's
    -- edgehub.replica setting), then the row's key columns named by the trigger's arguments.
    CREATE FUNCTION edgehub_announce() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        changed jsonb;
        message text;
    BEGIN
        IF TG_OP = 'DELETE' THEN changed := to_jsonb(OLD); ELSE changed := to_jsonb(NEW); END IF;
        message := TG_ARGV[0] || E'\n' || coalesce(current_setting('edgehub.replica', true), '');
        FOR i IN 1 .. TG_NARGS - 1 LOOP
            message := message || E'\n' || coalesce(changed ->> TG_ARGV[i], '');
        END LOOP;
        PERFORM pg_notify('edgehub_state', message);
        RETURN NULL;
    END $$;
    CREATE TRIGGER users_announce AFTER INSERT OR UPDATE OR DELETE ON users
        FOR EACH ROW EXECUTE FUNCTION edgehub_announce('user', 'name');
    CREATE TRIGGER servers_announce AFTER INSERT OR UPDATE OR DELETE ON servers
        FOR EACH ROW EXECUTE FUNCTION edgehub_announce('user', 'user');
    CREATE TRIGGER tokens_announce AFTER INSERT OR UPDATE OR DELETE ON tokens
        FOR EACH ROW EXECUTE FUNCTION edgehub_announce('user', 'user');
    CREATE TRIGGER sessions_announce AFTER INSERT OR DELETE ON sessions
        FOR EACH ROW EXECUTE FUNCTION edgehub_announce('session', 'jti');
    CREATE TRIGGER spawn_events_announce AFTER INSERT ON spawn_events
        FOR EACH ROW EXECUTE FUNCTION edgehub_announce('progress', 'user', 'server');"#,
    // 2: groups and their members (JupyterHub's), for the edge's group policy and sharing. Read
    // from the database when asked, so nothing needs announcing.
    r#"CREATE TABLE groups (
        name TEXT PRIMARY KEY,
        properties TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TABLE group_members (
        grp TEXT NOT NULL REFERENCES groups(name) ON DELETE CASCADE,
        "user" TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
        PRIMARY KEY (grp, "user")
    );
    CREATE INDEX group_members_user ON group_members ("user");"#,
    // 3: servers shared with users and groups. A share goes with its owner; one granted to a
    // user or group goes with them (triggers: the grantee column names either).
    r#"CREATE TABLE shares (
        id BIGSERIAL,
        owner TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
        server TEXT NOT NULL,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        scopes TEXT NOT NULL DEFAULT '[]',
        created_ms BIGINT NOT NULL,
        PRIMARY KEY (owner, server, kind, name)
    );
    CREATE FUNCTION edgehub_drop_grantee_shares() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM shares WHERE kind = TG_ARGV[0] AND name = OLD.name;
        RETURN NULL;
    END $$;
    CREATE TRIGGER shares_of_deleted_user AFTER DELETE ON users
        FOR EACH ROW EXECUTE FUNCTION edgehub_drop_grantee_shares('user');
    CREATE TRIGGER shares_of_deleted_group AFTER DELETE ON groups
        FOR EACH ROW EXECUTE FUNCTION edgehub_drop_grantee_shares('group');"#,
    // 4: the scopes a token was made with (NULL: all its owner holds).
    "ALTER TABLE tokens ADD COLUMN scopes TEXT;",
    // 5: share codes, by hash.
    r#"CREATE TABLE share_codes (
        id BIGSERIAL PRIMARY KEY,
        hash TEXT NOT NULL UNIQUE,
        owner TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
        server TEXT NOT NULL,
        scopes TEXT NOT NULL,
        created_ms BIGINT NOT NULL,
        expires_ms BIGINT NOT NULL,
        exchange_count BIGINT NOT NULL DEFAULT 0,
        last_exchanged_ms BIGINT
    );"#,
    // 8: a user's login sessions found without a scan (ended on a group or admin change).
    r#"CREATE INDEX sessions_user ON sessions ("user");"#,
];

/// Groups with their members: all of them, or the one named.
fn read_groups(c: &mut Client, only: Option<&str>) -> Result<Vec<GroupRecord>, StoreFailure> {
    let rows = c.query(
        r#"SELECT g.name, g.properties, m."user" FROM groups g LEFT JOIN group_members m ON m.grp = g.name
           WHERE $1::text IS NULL OR g.name = $1 ORDER BY g.name, m."user""#,
        &[&only],
    )?;
    let mut groups: Vec<GroupRecord> = Vec::new();
    for row in rows {
        let name: String = row.get(0);
        if groups.last().is_none_or(|g| g.name != name) {
            groups.push(GroupRecord {
                name,
                properties: parse_json("groups.properties", row.get(1))?,
                users: Vec::new(),
            });
        }
        if let (Some(group), Some(user)) = (groups.last_mut(), row.get::<_, Option<String>>(2)) {
            group.users.push(user);
        }
    }
    Ok(groups)
}

/// The schema version this edgehub migrates a database to.
pub const SCHEMA_VERSION: usize = MIGRATIONS.len();

type Job = Box<dyn FnOnce(&mut Link) + Send>;

/// The connection a store's thread owns, opened again when found closed.
pub struct Link {
    endpoint: Endpoint,
    client: Option<Client>,
}

impl Link {
    fn client(&mut self) -> Result<&mut Client, ::postgres::Error> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.client = Some(self.endpoint.connect()?);
        }
        Ok(self.client.as_mut().expect("connected just above"))
    }

    /// Runs `work`, once more on a fresh connection if the connection was found dead.
    fn run<T>(&mut self, mut work: impl FnMut(&mut Client) -> Result<T, StoreFailure>) -> Result<T, StoreFailure> {
        let mut retried = false;
        loop {
            let client = self.client()?;
            match work(client) {
                Err(StoreFailure::Postgres(e)) if client.is_closed() && !retried => {
                    tracing::warn!("state database connection lost ({}); reconnecting", describe(&e));
                    self.client = None;
                    retried = true;
                }
                other => return other,
            }
        }
    }
}

pub struct PostgresStore {
    jobs: mpsc::Sender<Job>,
    /// `host:port/db`, for messages.
    place: String,
}

/// The client library's error with its causes: alone it says only "db error" or "error
/// performing TLS handshake", and what the operator needs is the server's message or the
/// certificate's problem behind it.
pub fn describe(e: &::postgres::Error) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// A database to connect to: the client library's settings and the TLS that goes with them.
#[derive(Clone)]
pub struct Endpoint {
    config: Config,
    tls: PgTls,
}

impl Endpoint {
    pub fn connect(&self) -> Result<Client, ::postgres::Error> {
        self.config.connect(self.tls.clone())
    }
}

/// Reads `state.url`, naming this replica on the connection (the change feed's second field).
/// TLS follows libpq's `sslmode` and `sslrootcert` ([`super::postgres_tls`]).
pub fn connection_config(url: &str, replica: &str) -> Result<(Endpoint, String), StoreError> {
    let (url, tls) = split_url(url).map_err(StoreError::BadUrl)?;
    let mut config: Config = url
        .parse()
        .map_err(|e: ::postgres::Error| StoreError::BadUrl(format!("not a PostgreSQL URL ({})", describe(&e))))?;
    let (mode, tls) = tls.connector(config.get_ssl_mode()).map_err(StoreError::BadUrl)?;
    config
        .ssl_mode(mode.wire())
        .connect_timeout(CONNECT_WITHIN)
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(10))
        .application_name("edgehub")
        .options(&format!("-c edgehub.replica={replica}"));
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            ::postgres::config::Host::Tcp(name) => name.clone(),
            ::postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".to_owned());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config.get_dbname().unwrap_or("(the user's database)").to_owned();
    Ok((Endpoint { config, tls }, format!("postgres://{host}:{port}/{db}")))
}

impl PostgresStore {
    /// Connects, migrates, and starts the thread that owns the connection.
    pub fn open(url: &str, replica: &str) -> Result<PostgresStore, StoreError> {
        let (endpoint, place) = connection_config(url, replica)?;
        let mut link = Link { endpoint, client: None };
        // The connection is opened (and used) on the store's own thread: the client runs a
        // small runtime of its own, which may not start inside the hub's.
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("edgehub-postgres".into())
            .spawn(move || {
                for job in queue {
                    job(&mut link);
                }
            })
            .map_err(|e| StoreError::Unavailable {
                place: place.clone(),
                why: format!("cannot start its thread: {e}"),
            })?;
        let store = PostgresStore { jobs, place };
        store.call(migrate)?;
        Ok(store)
    }

    /// Runs `work` on the store's connection and waits for its answer.
    fn call<T: Send + 'static>(
        &self,
        work: impl FnMut(&mut Client) -> Result<T, StoreFailure> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (answer, answered) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |link: &mut Link| {
            let _ = answer.send(link.run(work));
        });
        let unavailable = |why: String| StoreError::Unavailable {
            place: self.place.clone(),
            why,
        };
        self.jobs
            .send(job)
            .map_err(|_| unavailable("its connection thread has stopped".to_owned()))?;
        match answered.recv_timeout(ANSWER_WITHIN) {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(StoreFailure::Postgres(error))) => Err(StoreError::Postgres {
                place: self.place.clone(),
                error,
            }),
            Ok(Err(StoreFailure::Other(e))) => Err(e),
            Err(_) => Err(unavailable(format!("no answer within {} s", ANSWER_WITHIN.as_secs()))),
        }
    }
}

/// Why a job failed: the database, or what was read from it.
enum StoreFailure {
    Postgres(::postgres::Error),
    Other(StoreError),
}

impl From<::postgres::Error> for StoreFailure {
    fn from(e: ::postgres::Error) -> Self {
        StoreFailure::Postgres(e)
    }
}

impl From<StoreError> for StoreFailure {
    fn from(e: StoreError) -> Self {
        StoreFailure::Other(e)
    }
}

fn migrate(c: &mut Client) -> Result<(), StoreFailure> {
    c.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])?;
    let result = apply_migrations(c);
    // Released whatever happened: the connection lives on and would keep other hubs waiting.
    let unlocked = c.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]);
    result?;
    unlocked?;
    Ok(())
}

fn apply_migrations(c: &mut Client) -> Result<(), StoreFailure> {
    c.batch_execute("CREATE TABLE IF NOT EXISTS edgehub_schema (version INTEGER NOT NULL)")?;
    let version: i32 = match c.query_opt("SELECT version FROM edgehub_schema", &[])? {
        Some(row) => row.get(0),
        None => {
            c.execute("INSERT INTO edgehub_schema (version) VALUES (0)", &[])?;
            0
        }
    };
    if version as usize > MIGRATIONS.len() {
        return Err(StoreFailure::Other(StoreError::TooNew {
            path: "(PostgreSQL)".to_owned(),
            found: i64::from(version),
            known: MIGRATIONS.len(),
        }));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let mut tx = c.transaction()?;
        tx.batch_execute(sql)?;
        tx.execute("UPDATE edgehub_schema SET version = $1", &[&((i + 1) as i32)])?;
        tx.commit()?;
        tracing::info!("state database: migrated to schema {}", i + 1);
    }
    Ok(())
}

fn ms(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn opt_ms(v: Option<u64>) -> Option<i64> {
    v.map(ms)
}

fn unms(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn user_row(r: &Row) -> UserRecord {
    UserRecord {
        name: r.get(0),
        admin: r.get(1),
        created_ms: unms(r.get(2)),
        last_activity_ms: r.get::<_, Option<i64>>(3).map(unms),
    }
}

const USER_COLUMNS: &str = "name, admin, created_ms, last_activity_ms";
const SERVER_COLUMNS: &str =
    r#""user", name, phase, url, spawner_state, started_ms, last_activity_ms, user_options, owner"#;
const TOKEN_COLUMNS: &str = r#"id, hash, "user", server, note, created_ms, expires_ms, scopes"#;

fn server_row(r: &Row) -> Result<ServerRecord, StoreError> {
    Ok(ServerRecord {
        user: r.get(0),
        name: r.get(1),
        phase: Phase::from_db(r.get(2)),
        url: r.get(3),
        spawner_state: parse_json("servers.spawner_state", r.get(4))?,
        started_ms: r.get::<_, Option<i64>>(5).map(unms),
        last_activity_ms: r.get::<_, Option<i64>>(6).map(unms),
        user_options: parse_json("servers.user_options", r.get(7))?,
        owner: r.get(8),
    })
}

fn token_row(r: &Row) -> TokenRecord {
    TokenRecord {
        id: r.get(0),
        hash: r.get(1),
        user: r.get(2),
        server: r.get(3),
        note: r.get(4),
        created_ms: unms(r.get(5)),
        expires_ms: r.get::<_, Option<i64>>(6).map(unms),
        scopes: crate::model::token_scopes_from_db(r.get(7)),
    }
}

/// The server row written whatever it holds (`Upsert`), or only if there is none (`IfAbsent`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Write {
    Upsert,
    IfAbsent,
}

fn write_server(
    c: &mut impl ::postgres::GenericClient,
    s: &ServerRecord,
    how: Write,
) -> Result<u64, ::postgres::Error> {
    const INSERT: &str = r#"INSERT INTO servers ("user", name, phase, url, spawner_state, started_ms, last_activity_ms, user_options, owner)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT ("user", name) "#;
    let on_conflict = match how {
        Write::Upsert => {
            "DO UPDATE SET phase = $3, url = $4, spawner_state = $5, started_ms = $6, \
             last_activity_ms = $7, user_options = $8, owner = $9"
        }
        Write::IfAbsent => "DO NOTHING",
    };
    c.execute(
        &format!("{INSERT}{on_conflict}"),
        &[
            &s.user,
            &s.name,
            &s.phase.as_db(),
            &s.url,
            &s.spawner_state.to_string(),
            &opt_ms(s.started_ms),
            &opt_ms(s.last_activity_ms),
            &s.user_options.to_string(),
            &s.owner,
        ],
    )
}

fn servers_where(
    c: &mut Client,
    filter: &str,
    args: &[&(dyn ::postgres::types::ToSql + Sync)],
) -> Result<Vec<ServerRecord>, StoreFailure> {
    let rows = c.query(&format!("SELECT {SERVER_COLUMNS} FROM servers {filter}"), args)?;
    Ok(rows.iter().map(server_row).collect::<Result<_, _>>()?)
}

impl StateStore for PostgresStore {
    fn describe(&self) -> String {
        format!("PostgreSQL {}", self.place)
    }

    fn shared(&self) -> bool {
        true
    }

    fn load(&self) -> Result<Loaded, StoreError> {
        self.call(|c| {
            // One snapshot: a user added between two of these reads would lose its servers.
            let mut tx = c
                .build_transaction()
                .read_only(true)
                .isolation_level(::postgres::IsolationLevel::RepeatableRead)
                .start()?;
            let users = tx.query(&format!("SELECT {USER_COLUMNS} FROM users"), &[])?;
            let servers = tx.query(&format!("SELECT {SERVER_COLUMNS} FROM servers"), &[])?;
            let tokens = tx.query(&format!("SELECT {TOKEN_COLUMNS} FROM tokens"), &[])?;
            tx.commit()?;
            Ok(Loaded {
                users: users.iter().map(user_row).collect(),
                servers: servers.iter().map(server_row).collect::<Result<_, _>>()?,
                tokens: tokens.iter().map(token_row).collect(),
            })
        })
    }

    fn load_user(&self, name: &str) -> Result<Option<LoadedUser>, StoreError> {
        let name = name.to_owned();
        self.call(move |c| {
            let mut tx = c
                .build_transaction()
                .read_only(true)
                .isolation_level(::postgres::IsolationLevel::RepeatableRead)
                .start()?;
            let Some(user) = tx.query_opt(&format!("SELECT {USER_COLUMNS} FROM users WHERE name = $1"), &[&name])?
            else {
                tx.commit()?;
                return Ok(None);
            };
            let servers = tx.query(
                &format!(r#"SELECT {SERVER_COLUMNS} FROM servers WHERE "user" = $1"#),
                &[&name],
            )?;
            let tokens = tx.query(
                &format!(r#"SELECT {TOKEN_COLUMNS} FROM tokens WHERE "user" = $1"#),
                &[&name],
            )?;
            tx.commit()?;
            Ok(Some(LoadedUser {
                user: user_row(&user),
                servers: servers.iter().map(server_row).collect::<Result<_, _>>()?,
                tokens: tokens.iter().map(token_row).collect(),
            }))
        })
    }

    fn put_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        let u = user.clone();
        self.call(move |c| {
            c.execute(
                "INSERT INTO users (name, admin, created_ms, last_activity_ms) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (name) DO UPDATE SET admin = $2, last_activity_ms = $4",
                &[&u.name, &u.admin, &ms(u.created_ms), &opt_ms(u.last_activity_ms)],
            )?;
            Ok(())
        })
    }

    fn delete_user(&self, name: &str) -> Result<(), StoreError> {
        let name = name.to_owned();
        self.call(move |c| Ok(c.execute("DELETE FROM users WHERE name = $1", &[&name])?))?;
        Ok(())
    }

    fn put_server(&self, server: &ServerRecord) -> Result<(), StoreError> {
        let s = server.clone();
        self.call(move |c| Ok(write_server(c, &s, Write::Upsert).map(drop)?))
    }

    fn set_server(&self, server: &ServerRecord, expect: Expect<'_>) -> Result<Cas, StoreError> {
        let s = server.clone();
        let phases: Vec<String> = phase_names(expect.phases).into_iter().map(str::to_owned).collect();
        let owner = expect.owner.map(str::to_owned);
        self.call(move |c| {
            let mut tx = c.transaction()?;
            // Locks the row (if there is one) until commit: the check and the write are one step.
            let current = tx
                .query_opt(
                    &format!(r#"SELECT {SERVER_COLUMNS} FROM servers WHERE "user" = $1 AND name = $2 FOR UPDATE"#),
                    &[&s.user, &s.name],
                )?
                .map(|r| server_row(&r))
                .transpose()?;
            let phase = current.as_ref().map_or(Phase::Stopped, |r| r.phase);
            let current_owner = current.as_ref().and_then(|r| r.owner.clone());
            let matches = phases.iter().any(|p| p == phase.as_db())
                && owner.as_ref().is_none_or(|o| Some(o) == current_owner.as_ref());
            if !matches {
                tx.commit()?;
                return Ok(Cas::Refused(current.map(Box::new)));
            }
            if current.is_none() {
                // No row to lock: two replicas may both be here. The insert that comes second
                // does nothing, and its replica reads the first one's row.
                let inserted = write_server(&mut tx, &s, Write::IfAbsent)?;
                if inserted == 1 && s.phase == Phase::Pending {
                    tx.execute(
                        r#"DELETE FROM spawn_events WHERE "user" = $1 AND server = $2"#,
                        &[&s.user, &s.name],
                    )?;
                }
                tx.commit()?;
                if inserted == 1 {
                    return Ok(Cas::Written);
                }
                let now = servers_where(c, r#"WHERE "user" = $1 AND name = $2"#, &[&s.user, &s.name])?.pop();
                return Ok(Cas::Refused(now.map(Box::new)));
            }
            write_server(&mut tx, &s, Write::Upsert)?;
            if s.phase == Phase::Pending && phase != Phase::Pending {
                // A new start: its progress begins empty, in the same step as the claim.
                tx.execute(
                    r#"DELETE FROM spawn_events WHERE "user" = $1 AND server = $2"#,
                    &[&s.user, &s.name],
                )?;
            }
            tx.commit()?;
            Ok(Cas::Written)
        })
    }

    fn touch_server(&self, user: &str, name: &str, at_ms: u64) -> Result<(), StoreError> {
        let (user, name) = (user.to_owned(), name.to_owned());
        self.call(move |c| {
            Ok(c.execute(
                r#"UPDATE servers SET last_activity_ms = $3 WHERE "user" = $1 AND name = $2
               AND (last_activity_ms IS NULL OR last_activity_ms < $3)"#,
                &[&user, &name, &ms(at_ms)],
            )?)
        })?;
        Ok(())
    }

    fn delete_server(&self, user: &str, name: &str) -> Result<(), StoreError> {
        let (user, name) = (user.to_owned(), name.to_owned());
        self.call(move |c| {
            Ok(c.execute(
                r#"DELETE FROM servers WHERE "user" = $1 AND name = $2"#,
                &[&user, &name],
            )?)
        })?;
        Ok(())
    }

    fn add_token(&self, token: &TokenRecord) -> Result<i64, StoreError> {
        let t = token.clone();
        self.call(move |c| {
            let row = c.query_one(
                r#"INSERT INTO tokens (hash, "user", server, note, created_ms, expires_ms, scopes)
                   VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id"#,
                &[
                    &t.hash,
                    &t.user,
                    &t.server,
                    &t.note,
                    &ms(t.created_ms),
                    &opt_ms(t.expires_ms),
                    &crate::model::token_scopes_to_db(&t.scopes),
                ],
            )?;
            Ok(row.get(0))
        })
    }

    fn token(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        let hash = hash.to_owned();
        self.call(move |c| {
            Ok(
                c.query_opt(&format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = $1"), &[&hash])?
                    .map(|r| token_row(&r)),
            )
        })
    }

    fn delete_token(&self, id: i64) -> Result<(), StoreError> {
        self.call(move |c| Ok(c.execute("DELETE FROM tokens WHERE id = $1", &[&id])?))?;
        Ok(())
    }

    fn put_session(&self, jti: &str, user: &str, expires_ms: u64) -> Result<(), StoreError> {
        let (jti, user) = (jti.to_owned(), user.to_owned());
        self.call(move |c| {
            Ok(c.execute(
                r#"INSERT INTO sessions (jti, "user", expires_ms) VALUES ($1, $2, $3)
                   ON CONFLICT (jti) DO UPDATE SET "user" = $2, expires_ms = $3"#,
                &[&jti, &user, &ms(expires_ms)],
            )?)
        })?;
        Ok(())
    }

    fn delete_session(&self, jti: &str) -> Result<(), StoreError> {
        let jti = jti.to_owned();
        self.call(move |c| Ok(c.execute("DELETE FROM sessions WHERE jti = $1", &[&jti])?))?;
        Ok(())
    }

    fn session_live(&self, jti: &str, now_ms: u64) -> Result<Option<String>, StoreError> {
        let jti = jti.to_owned();
        self.call(move |c| {
            Ok(c.query_opt(
                r#"SELECT "user" FROM sessions WHERE jti = $1 AND expires_ms > $2"#,
                &[&jti, &ms(now_ms)],
            )?
            .map(|r| r.get(0)))
        })
    }

    fn take_expired_sessions(&self, now_ms: u64) -> Result<Vec<String>, StoreError> {
        self.call(move |c| {
            Ok(c.query(
                "DELETE FROM sessions WHERE expires_ms <= $1 RETURNING jti",
                &[&ms(now_ms)],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect())
        })
    }

    fn sessions_of(&self, user: &str) -> Result<Vec<String>, StoreError> {
        let user = user.to_owned();
        self.call(move |c| {
            Ok(c.query(r#"SELECT jti FROM sessions WHERE "user" = $1"#, &[&user])?
                .iter()
                .map(|r| r.get(0))
                .collect())
        })
    }

    fn live_sessions(&self, now_ms: u64) -> Result<Vec<(String, String)>, StoreError> {
        self.call(move |c| {
            c.execute("DELETE FROM sessions WHERE expires_ms <= $1", &[&ms(now_ms)])?;
            Ok(c.query(r#"SELECT jti, "user" FROM sessions"#, &[])?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect())
        })
    }

    fn secret(&self, name: &str, generate: &mut dyn FnMut() -> Vec<u8>) -> Result<Vec<u8>, StoreError> {
        // Generated before asking: replicas starting together each offer one, the first stays.
        let offered = generate();
        let name = name.to_owned();
        self.call(move |c| {
            c.execute(
                "INSERT INTO secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                &[&name, &offered],
            )?;
            Ok(c.query_one("SELECT value FROM secrets WHERE name = $1", &[&name])?
                .get(0))
        })
    }

    fn lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, StoreError> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        let ttl_ms = ttl.as_millis() as f64;
        // The database's clock decides, so replicas' clocks need not agree.
        let taken = self.call(move |c| {
            Ok(c.execute(
                "INSERT INTO leases (name, holder, expires) VALUES ($1, $2, now() + $3 * interval '1 millisecond')
                 ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, expires = EXCLUDED.expires
                 WHERE leases.holder = EXCLUDED.holder OR leases.expires < now()",
                &[&name, &holder, &ttl_ms],
            )?)
        })?;
        Ok(taken == 1)
    }

    fn release(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.call(move |c| Ok(c.execute("DELETE FROM leases WHERE name = $1 AND holder = $2", &[&name, &holder])?))?;
        Ok(())
    }

    fn orphans(&self, me: &str) -> Result<Vec<ServerRecord>, StoreError> {
        let me = me.to_owned();
        let phases: Vec<String> = phase_names(&[Phase::Pending, Phase::Stopping])
            .into_iter()
            .map(str::to_owned)
            .collect();
        self.call(move |c| {
            servers_where(
                c,
                "WHERE phase = ANY($1) AND owner IS DISTINCT FROM $2 AND NOT EXISTS (
                    SELECT 1 FROM leases WHERE leases.name = 'replica:' || servers.owner AND leases.expires > now())",
                &[&phases, &me],
            )
        })
    }

    fn add_progress(&self, user: &str, server: &str, event: &Value) -> Result<(), StoreError> {
        let (user, server, event) = (user.to_owned(), server.to_owned(), event.to_string());
        self.call(move |c| {
            Ok(c.execute(
                r#"INSERT INTO spawn_events ("user", server, event) VALUES ($1, $2, $3)"#,
                &[&user, &server, &event],
            )?)
        })?;
        Ok(())
    }

    fn progress(&self, user: &str, server: &str, after: usize) -> Result<Vec<Value>, StoreError> {
        let (user, server) = (user.to_owned(), server.to_owned());
        self.call(move |c| {
            let rows = c.query(
                r#"SELECT event FROM spawn_events WHERE "user" = $1 AND server = $2 ORDER BY id OFFSET $3"#,
                &[&user, &server, &(after as i64)],
            )?;
            Ok(rows
                .iter()
                .map(|r| parse_json("spawn_events.event", r.get(0)))
                .collect::<Result<_, _>>()?)
        })
    }

    fn clear_progress(&self, user: &str, server: &str) -> Result<(), StoreError> {
        let (user, server) = (user.to_owned(), server.to_owned());
        self.call(move |c| {
            Ok(c.execute(
                r#"DELETE FROM spawn_events WHERE "user" = $1 AND server = $2"#,
                &[&user, &server],
            )?)
        })?;
        Ok(())
    }

    fn groups(&self) -> Result<Vec<GroupRecord>, StoreError> {
        self.call(|c| read_groups(c, None))
    }

    fn group(&self, name: &str) -> Result<Option<GroupRecord>, StoreError> {
        let name = name.to_owned();
        self.call(move |c| Ok(read_groups(c, Some(&name))?.pop()))
    }

    fn create_group(&self, name: &str, properties: &Value) -> Result<bool, StoreError> {
        let (name, properties) = (name.to_owned(), properties.to_string());
        self.call(move |c| {
            Ok(c.execute(
                "INSERT INTO groups (name, properties) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                &[&name, &properties],
            )? > 0)
        })
    }

    fn delete_group(&self, name: &str) -> Result<bool, StoreError> {
        let name = name.to_owned();
        self.call(move |c| Ok(c.execute("DELETE FROM groups WHERE name = $1", &[&name])? > 0))
    }

    fn set_group_properties(&self, name: &str, properties: &Value) -> Result<bool, StoreError> {
        let (name, properties) = (name.to_owned(), properties.to_string());
        self.call(move |c| {
            Ok(c.execute(
                "UPDATE groups SET properties = $2 WHERE name = $1",
                &[&name, &properties],
            )? > 0)
        })
    }

    fn set_group_members(&self, name: &str, users: &[String], member: bool) -> Result<(), StoreError> {
        let (name, users) = (name.to_owned(), users.to_vec());
        self.call(move |c| {
            let sql = if member {
                r#"INSERT INTO group_members (grp, "user") SELECT $1, u FROM unnest($2::text[]) AS u
                   ON CONFLICT DO NOTHING"#
            } else {
                r#"DELETE FROM group_members WHERE grp = $1 AND "user" = ANY($2::text[])"#
            };
            c.execute(sql, &[&name, &users])?;
            Ok(())
        })
    }

    fn user_groups(&self, user: &str) -> Result<Vec<String>, StoreError> {
        let user = user.to_owned();
        self.call(move |c| {
            Ok(c.query(
                r#"SELECT grp FROM group_members WHERE "user" = $1 ORDER BY grp"#,
                &[&user],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect())
        })
    }

    fn shares(&self) -> Result<Vec<ShareRecord>, StoreError> {
        self.call(|c| {
            c.query(
                "SELECT owner, server, kind, name, scopes, created_ms FROM shares ORDER BY created_ms, id",
                &[],
            )?
            .iter()
            .map(|r| {
                Ok(ShareRecord {
                    owner: r.get(0),
                    server: r.get(1),
                    grantee: Grantee::from_row(r.get(2), r.get(3)),
                    scopes: scopes_of(r.get(4))?,
                    created_ms: unms(r.get(5)),
                })
            })
            .collect()
        })
    }

    fn grant_share(&self, share: &ShareRecord) -> Result<(), StoreError> {
        let s = share.clone();
        let scopes = Value::from(share.scopes.clone()).to_string();
        self.call(move |c| {
            c.execute(
                "INSERT INTO shares (owner, server, kind, name, scopes, created_ms) VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (owner, server, kind, name) DO UPDATE SET scopes = excluded.scopes",
                &[
                    &s.owner,
                    &s.server,
                    &s.grantee.kind(),
                    &s.grantee.name(),
                    &scopes,
                    &ms(s.created_ms),
                ],
            )?;
            Ok(())
        })
    }

    fn revoke_share(&self, owner: &str, server: &str, grantee: &Grantee) -> Result<bool, StoreError> {
        let (owner, server, grantee) = (owner.to_owned(), server.to_owned(), grantee.clone());
        self.call(move |c| {
            Ok(c.execute(
                "DELETE FROM shares WHERE owner = $1 AND server = $2 AND kind = $3 AND name = $4",
                &[&owner, &server, &grantee.kind(), &grantee.name()],
            )? > 0)
        })
    }

    fn revoke_server_shares(&self, owner: &str, server: Option<&str>) -> Result<usize, StoreError> {
        let (owner, server) = (owner.to_owned(), server.map(str::to_owned));
        self.call(move |c| {
            Ok(c.execute(
                "DELETE FROM shares WHERE owner = $1 AND ($2::text IS NULL OR server = $2)",
                &[&owner, &server],
            )? as usize)
        })
    }

    fn add_share_code(&self, code: &ShareCodeRecord) -> Result<i64, StoreError> {
        let c0 = code.clone();
        let scopes = Value::from(code.scopes.clone()).to_string();
        self.call(move |c| {
            let row = c.query_one(
                "INSERT INTO share_codes (hash, owner, server, scopes, created_ms, expires_ms)
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                &[
                    &c0.hash,
                    &c0.owner,
                    &c0.server,
                    &scopes,
                    &ms(c0.created_ms),
                    &ms(c0.expires_ms),
                ],
            )?;
            Ok(row.get(0))
        })
    }

    fn share_codes(&self, now_ms: u64) -> Result<Vec<ShareCodeRecord>, StoreError> {
        self.call(move |c| {
            c.execute("DELETE FROM share_codes WHERE expires_ms <= $1", &[&ms(now_ms)])?;
            c.query(
                "SELECT id, hash, owner, server, scopes, created_ms, expires_ms, exchange_count, last_exchanged_ms
                 FROM share_codes ORDER BY id",
                &[],
            )?
            .iter()
            .map(|r| {
                Ok(ShareCodeRecord {
                    id: r.get(0),
                    hash: r.get(1),
                    owner: r.get(2),
                    server: r.get(3),
                    scopes: scopes_of(r.get(4))?,
                    created_ms: unms(r.get(5)),
                    expires_ms: unms(r.get(6)),
                    exchange_count: unms(r.get(7)),
                    last_exchanged_ms: r.get::<_, Option<i64>>(8).map(unms),
                })
            })
            .collect()
        })
    }

    fn delete_share_codes(&self, owner: &str, server: &str, id: Option<i64>) -> Result<usize, StoreError> {
        let (owner, server) = (owner.to_owned(), server.to_owned());
        self.call(move |c| {
            Ok(c.execute(
                "DELETE FROM share_codes WHERE owner = $1 AND server = $2 AND ($3::bigint IS NULL OR id = $3)",
                &[&owner, &server, &id],
            )? as usize)
        })
    }

    fn note_share_code_exchange(&self, id: i64, at_ms: u64) -> Result<(), StoreError> {
        self.call(move |c| {
            c.execute(
                "UPDATE share_codes SET exchange_count = exchange_count + 1, last_exchanged_ms = $2 WHERE id = $1",
                &[&id, &ms(at_ms)],
            )?;
            Ok(())
        })
    }

    fn put_code(&self, code: &str, grant: &OAuthCode) -> Result<(), StoreError> {
        let (code, g) = (code.to_owned(), grant.clone());
        self.call(move |c| {
            // Codes live a minute: the ones never exchanged go with the next.
            c.execute("DELETE FROM oauth_codes WHERE expires_ms < $1", &[&ms(g.expires_ms.saturating_sub(120_000))])?;
            c.execute(
                r#"INSERT INTO oauth_codes (code, "user", client_id, redirect_uri, expires_ms) VALUES ($1, $2, $3, $4, $5)"#,
                &[&code, &g.user, &g.client_id, &g.redirect_uri, &ms(g.expires_ms)],
            )?;
            Ok(())
        })
    }

    fn take_code(&self, code: &str) -> Result<Option<OAuthCode>, StoreError> {
        let code = code.to_owned();
        self.call(move |c| {
            Ok(c.query_opt(
                r#"DELETE FROM oauth_codes WHERE code = $1 RETURNING "user", client_id, redirect_uri, expires_ms"#,
                &[&code],
            )?
            .map(|r| OAuthCode {
                user: r.get(0),
                client_id: r.get(1),
                redirect_uri: r.get(2),
                expires_ms: unms(r.get(3)),
            }))
        })
    }
}
