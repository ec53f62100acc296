//! The state store's contract, on both backends: SQLite in a temp file, and a real PostgreSQL
//! server started by the test. What several hub replicas rely on (a start claimed once, leases,
//! orphans, one signing key, concurrent migrations) is checked with one store per replica.

mod support;

use std::sync::{Arc, Barrier};
use std::time::Duration;

use hub_core::model::{Phase, ServerRecord, TokenRecord, UserRecord};
use hub_core::store::postgres::PostgresStore;
use hub_core::store::{Cas, Expect, Grantee, OAuthCode, ShareRecord, SqliteStore, StateStore};
use serde_json::json;
use support::postgres::Postgres;

/// One store per "replica" on the same state: SQLite (one connection per open, as two
/// processes would have) and PostgreSQL.
fn backends(name: &str, replicas: usize) -> Vec<(&'static str, Vec<Arc<dyn StateStore>>)> {
    let dir = support::temp_dir(name);
    let path = dir.join("hub.sqlite");
    let sqlite = (0..replicas)
        .map(|_| Arc::new(SqliteStore::open(&path).unwrap()) as Arc<dyn StateStore>)
        .collect();
    let url = support::postgres::shared().database();
    let postgres = (0..replicas)
        .map(|i| Arc::new(PostgresStore::open(&url, &format!("r{i}")).unwrap()) as Arc<dyn StateStore>)
        .collect();
    vec![("sqlite", sqlite), ("postgres", postgres)]
}

fn user(name: &str) -> UserRecord {
    UserRecord {
        name: name.into(),
        admin: false,
        created_ms: 1_700_000_000_000,
        last_activity_ms: None,
    }
}

fn server(user: &str, phase: Phase, owner: Option<&str>) -> ServerRecord {
    ServerRecord {
        user: user.into(),
        name: String::new(),
        phase,
        url: None,
        spawner_state: json!({}),
        started_ms: None,
        last_activity_ms: None,
        user_options: json!({"profile": "small"}),
        owner: owner.map(str::to_owned),
    }
}

#[test]
fn everything_written_is_read_back_by_another_replica() {
    for (backend, stores) in backends("roundtrip", 2) {
        let (a, b) = (&stores[0], &stores[1]);
        a.put_user(&UserRecord {
            admin: true,
            last_activity_ms: Some(5),
            ..user("alice")
        })
        .unwrap();
        let mut s = server("alice", Phase::Running, None);
        s.url = Some("http://127.0.0.1:9".into());
        s.spawner_state = json!({"pid": 42});
        s.started_ms = Some(u64::MAX / 4);
        a.put_server(&s).unwrap();
        let id = a
            .add_token(&TokenRecord {
                id: 0,
                hash: "h1".into(),
                user: "alice".into(),
                server: Some(String::new()),
                note: "server".into(),
                created_ms: 1,
                expires_ms: Some(2),
                scopes: Some(vec!["read:users!user=alice".into()]),
            })
            .unwrap();
        let loaded = b.load().unwrap();
        assert_eq!(loaded.users.len(), 1, "{backend}");
        assert!(loaded.users[0].admin, "{backend}");
        assert_eq!(loaded.servers, vec![s.clone()], "{backend}");
        assert_eq!(loaded.tokens[0].id, id, "{backend}");
        assert_eq!(
            loaded.tokens[0].scopes,
            Some(vec!["read:users!user=alice".to_owned()]),
            "{backend}: a token keeps its scopes"
        );
        let one = b.load_user("alice").unwrap().expect("alice");
        assert_eq!((one.servers.len(), one.tokens.len()), (1, 1), "{backend}");
        assert!(b.load_user("nobody").unwrap().is_none(), "{backend}");

        b.touch_server("alice", "", 1_000).unwrap();
        b.touch_server("alice", "", 500).unwrap();
        assert_eq!(
            a.load_user("alice").unwrap().unwrap().servers[0].last_activity_ms,
            Some(1_000),
            "{backend}: activity only moves forward"
        );
        b.delete_user("alice").unwrap();
        let loaded = a.load().unwrap();
        assert!(
            loaded.users.is_empty() && loaded.servers.is_empty() && loaded.tokens.is_empty(),
            "{backend}: a user goes with their servers and tokens"
        );
    }
}

#[test]
fn a_start_raced_on_every_replica_is_claimed_once() {
    for (backend, stores) in backends("claim", 4) {
        stores[0].put_user(&user("bob")).unwrap();
        for round in 0..5 {
            let barrier = Arc::new(Barrier::new(stores.len()));
            let wins: Vec<bool> = std::thread::scope(|scope| {
                let racers: Vec<_> = stores
                    .iter()
                    .enumerate()
                    .map(|(i, store)| {
                        let barrier = barrier.clone();
                        scope.spawn(move || {
                            let me = format!("r{i}");
                            barrier.wait();
                            let claim = server("bob", Phase::Pending, Some(&me));
                            let expect = Expect {
                                phases: &[Phase::Stopped],
                                owner: None,
                            };
                            match store.set_server(&claim, expect).unwrap() {
                                Cas::Written => true,
                                Cas::Refused(now) => {
                                    let now = now.expect("the winner's row");
                                    assert_eq!(now.phase, Phase::Pending);
                                    false
                                }
                            }
                        })
                    })
                    .collect();
                racers.into_iter().map(|r| r.join().unwrap()).collect()
            });
            assert_eq!(
                wins.iter().filter(|w| **w).count(),
                1,
                "{backend} round {round}: exactly one replica claims the start"
            );
            let owner = stores[1].load_user("bob").unwrap().unwrap().servers[0].owner.clone();
            let winner = format!("r{}", wins.iter().position(|w| *w).unwrap());
            assert_eq!(owner, Some(winner.clone()), "{backend}: the row names the winner");

            // Only the owner may carry the transition on.
            let loser = if winner == "r0" { "r1" } else { "r0" };
            let running = server("bob", Phase::Running, None);
            let mine = |who: &str| Expect {
                phases: &[Phase::Pending],
                owner: Some(Box::leak(who.to_owned().into_boxed_str())),
            };
            assert!(
                matches!(
                    stores[0].set_server(&running, mine(loser)).unwrap(),
                    Cas::Refused(Some(_))
                ),
                "{backend}: a replica that does not own the spawn cannot finish it"
            );
            assert_eq!(stores[0].set_server(&running, mine(&winner)).unwrap(), Cas::Written);
            stores[0].put_server(&server("bob", Phase::Stopped, None)).unwrap();
        }
    }
}

#[test]
fn a_lease_has_one_holder_until_it_runs_out() {
    for (backend, stores) in backends("lease", 2) {
        let (a, b) = (&stores[0], &stores[1]);
        let ttl = Duration::from_millis(400);
        assert!(a.lease("background", "a", ttl).unwrap(), "{backend}");
        assert!(!b.lease("background", "b", ttl).unwrap(), "{backend}: held by a");
        assert!(a.lease("background", "a", ttl).unwrap(), "{backend}: a renews");
        std::thread::sleep(Duration::from_millis(600));
        assert!(
            b.lease("background", "b", ttl).unwrap(),
            "{backend}: a stopped renewing"
        );
        assert!(!a.lease("background", "a", ttl).unwrap(), "{backend}: b has it now");
        b.release("background", "b").unwrap();
        assert!(a.lease("background", "a", ttl).unwrap(), "{backend}: released");
    }
}

#[test]
fn orphans_are_transitions_whose_owner_stopped_renewing() {
    for (backend, stores) in backends("orphans", 2) {
        let (a, b) = (&stores[0], &stores[1]);
        let ttl = Duration::from_millis(400);
        for name in ["carol", "dave", "erin"] {
            a.put_user(&user(name)).unwrap();
        }
        assert!(a.lease("replica:a", "a", ttl).unwrap());
        assert!(b.lease("replica:b", "b", ttl).unwrap());
        a.put_server(&server("carol", Phase::Pending, Some("a"))).unwrap();
        a.put_server(&server("dave", Phase::Stopping, Some("b"))).unwrap();
        a.put_server(&server("erin", Phase::Running, Some("a"))).unwrap();
        assert!(b.orphans("b").unwrap().is_empty(), "{backend}: every owner is alive");
        std::thread::sleep(Duration::from_millis(600));
        assert!(b.lease("replica:b", "b", ttl).unwrap(), "b renews, a does not");
        let orphans: Vec<String> = b.orphans("b").unwrap().into_iter().map(|s| s.user).collect();
        assert_eq!(
            orphans,
            ["carol"],
            "{backend}: a's pending start; not b's own, not a running server"
        );
    }
}

#[test]
fn replicas_share_one_signing_key_sessions_progress_and_single_use_codes() {
    for (backend, stores) in backends("shared", 3) {
        let keys: Vec<Vec<u8>> = std::thread::scope(|scope| {
            let handles: Vec<_> = stores
                .iter()
                .enumerate()
                .map(|(i, s)| scope.spawn(move || s.secret("signing", &mut || vec![i as u8; 32]).unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(keys.windows(2).all(|w| w[0] == w[1]), "{backend}: one key for all");

        let (a, b) = (&stores[0], &stores[1]);
        a.put_session("j1", "alice", 10_000).unwrap();
        a.put_session("j2", "alice", 10_000).unwrap();
        a.put_session("j3", "bob", 10_000).unwrap();
        let mut of_alice = b.sessions_of("alice").unwrap();
        of_alice.sort();
        assert_eq!(of_alice, ["j1", "j2"], "{backend}: a user's sessions");
        a.delete_session("j2").unwrap();
        a.delete_session("j3").unwrap();
        assert_eq!(
            b.session_live("j1", 5_000).unwrap().as_deref(),
            Some("alice"),
            "{backend}"
        );
        assert_eq!(b.session_live("j1", 20_000).unwrap(), None, "{backend}: expired");
        b.delete_session("j1").unwrap();
        assert_eq!(
            a.session_live("j1", 5_000).unwrap(),
            None,
            "{backend}: ended everywhere"
        );

        a.add_progress("alice", "", &json!({"progress": 10, "message": "one"}))
            .unwrap();
        a.add_progress("alice", "", &json!({"progress": 50, "message": "two"}))
            .unwrap();
        let after_one = b.progress("alice", "", 1).unwrap();
        assert_eq!(after_one, vec![json!({"progress": 50, "message": "two"})], "{backend}");
        a.clear_progress("alice", "").unwrap();
        assert!(b.progress("alice", "", 0).unwrap().is_empty(), "{backend}");

        let grant = OAuthCode {
            user: "alice".into(),
            client_id: "jupyterhub-user-alice".into(),
            redirect_uri: "/user/alice/oauth_callback".into(),
            expires_ms: 99,
        };
        a.put_code("c1", &grant).unwrap();
        assert_eq!(b.take_code("c1").unwrap(), Some(grant), "{backend}");
        assert_eq!(a.take_code("c1").unwrap(), None, "{backend}: a code is used once");
    }
}

#[test]
fn replicas_starting_together_migrate_the_database_once() {
    let pg = support::postgres::shared();
    let url = pg.database();
    let barrier = Arc::new(Barrier::new(6));
    std::thread::scope(|scope| {
        for i in 0..6 {
            let (url, barrier) = (url.clone(), barrier.clone());
            scope.spawn(move || {
                barrier.wait();
                PostgresStore::open(&url, &format!("r{i}")).expect("every replica starts");
            });
        }
    });
    let db = url.rsplit('/').next().unwrap();
    assert_eq!(
        pg.psql(db, "SELECT count(*), min(version) FROM edgehub_schema")
            .unwrap(),
        format!("1|{}", hub_core::store::postgres::SCHEMA_VERSION),
        "one schema row, at the latest version"
    );

    pg.psql(db, "UPDATE edgehub_schema SET version = 99").unwrap();
    let err = PostgresStore::open(&url, "late").err().expect("refused").to_string();
    assert!(
        err.contains("schema version 99") && err.contains("newer edgehub"),
        "{err}"
    );
}

#[test]
fn an_unreachable_database_is_named_without_its_password() {
    let port = support::free_port();
    let url = format!("postgres://edgehub:s3cret-pw@127.0.0.1:{port}/hub");
    let err = PostgresStore::open(&url, "r").err().expect("refused").to_string();
    assert!(err.contains(&format!("127.0.0.1:{port}/hub")), "{err}");
    assert!(!err.contains("s3cret-pw"), "the password stays out of messages: {err}");

    let err = PostgresStore::open("postgres://a@b/c?sslmode=verify_full", "r")
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("state.url") && err.contains("sslmode=verify_full"),
        "{err}"
    );
    let err = PostgresStore::open("postgres://a@b/c?sslcrl=/x.crl", "r")
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("unknown option") && err.contains("sslcrl"), "{err}");
}

/// Opens a store at `url` and writes a user through it, or says why not.
fn open_and_write(url: &str, name: &str) -> Result<(), String> {
    let store = PostgresStore::open(url, "r").map_err(|e| e.to_string())?;
    store.put_user(&user(name)).map_err(|e| e.to_string())
}

#[test]
fn the_database_is_reached_over_tls_as_libpq_s_sslmode_says() {
    let dir = support::temp_dir("postgres-tls");
    // The certificate names `localhost` only, so that 127.0.0.1 is an address it does not name.
    let pki = support::pki::Pki::for_names(&dir.join("pki"), &["localhost"]);
    let stranger = support::pki::Pki::new(&dir.join("other-ca"));
    let pg = Postgres::start_with_tls(&pki);
    let by_address = pg.database();
    let db = by_address.rsplit('/').next().unwrap().to_owned();
    let by_name = format!("postgres://edgehub@localhost:{}/{db}", pg.port);
    let (ca, other_ca) = (pki.ca.display().to_string(), stranger.ca.display().to_string());

    // The server refuses plain text: TLS is what lets the others in.
    let err = open_and_write(&format!("{by_address}?sslmode=disable"), "plain").unwrap_err();
    assert!(err.contains("no encryption"), "the server's reason is told: {err}");
    // prefer (the default) and require encrypt without checking the certificate, as libpq does.
    open_and_write(&by_address, "preferred").unwrap();
    open_and_write(&format!("{by_address}?sslmode=require"), "required").unwrap();
    // verify-ca: the chain, not the name.
    open_and_write(&format!("{by_address}?sslmode=verify-ca&sslrootcert={ca}"), "chained").unwrap();
    // verify-full: the chain and the name.
    let err = open_and_write(&format!("{by_address}?sslmode=verify-full&sslrootcert={ca}"), "x").unwrap_err();
    assert!(err.contains("certificate not valid for name"), "{err}");
    open_and_write(&format!("{by_name}?sslmode=verify-full&sslrootcert={ca}"), "named").unwrap();
    // A certificate from another CA is refused whenever a root certificate is given, even with
    // require (libpq's rule).
    for mode in ["verify-ca", "verify-full", "require"] {
        let url = format!("{by_name}?sslmode={mode}&sslrootcert={other_ca}");
        let err = open_and_write(&url, "x").unwrap_err();
        // (BadSignature: the other CA has the same name, and did not sign it.)
        assert!(err.contains("invalid peer certificate: BadSignature"), "{mode}: {err}");
    }
    // The public CAs do not vouch for this one either.
    let err = open_and_write(&format!("{by_name}?sslrootcert=system"), "x").unwrap_err();
    assert!(err.contains("UnknownIssuer"), "{err}");

    // A database that wants a client certificate (`cert` in pg_hba.conf).
    let certdb = format!(
        "postgres://edgehub@localhost:{}/certdb?sslmode=verify-full&sslrootcert={ca}",
        pg.port
    );
    let err = open_and_write(&certdb, "x").unwrap_err();
    assert!(err.contains("certificate"), "refused without one: {err}");
    let (cert, key) = (pki.client_cert.display(), pki.client_key.display());
    open_and_write(&format!("{certdb}&sslcert={cert}&sslkey={key}"), "certified").unwrap();

    // A password login (SCRAM) is bound to the server's certificate when both sides can
    // (SCRAM-SHA-256-PLUS, libpq's channel_binding): `require` insists, and gets it.
    let password = support::postgres::SCRAM_PASSWORD;
    let scramdb = format!("postgres://scrammer:{password}@localhost:{}/scramdb", pg.port);
    for binding in ["require", "prefer", "disable"] {
        let url = format!("{scramdb}?sslmode=require&channel_binding={binding}");
        open_and_write(&url, &format!("scram-{binding}")).unwrap_or_else(|e| panic!("{binding}: {e}"));
    }
    let err = open_and_write(
        &format!(
            "postgres://scrammer:wrong@localhost:{}/scramdb?sslmode=require",
            pg.port
        ),
        "x",
    )
    .unwrap_err();
    assert!(err.contains("password authentication failed"), "{err}");

    let store = PostgresStore::open(&by_address, "reader").unwrap();
    for name in ["preferred", "required", "chained", "named"] {
        assert!(store.load_user(name).unwrap().is_some(), "{name} was written");
    }
    assert!(store.load_user("plain").unwrap().is_none());
    assert!(store.load_user("x").unwrap().is_none());
}

#[test]
fn a_restarted_database_is_used_again_without_restarting_the_hub() {
    let mut pg = Postgres::start();
    let url = pg.database();
    let store = PostgresStore::open(&url, "r").unwrap();
    store.put_user(&user("frank")).unwrap();
    pg.kill();
    let err = store.load_user("frank").err().expect("down").to_string();
    assert!(err.contains("state database"), "{err}");
    pg.start_again();
    assert!(
        store.load_user("frank").unwrap().is_some(),
        "the first call after the restart reconnects"
    );
}

#[test]
fn groups_and_their_members_are_shared_and_go_with_their_users() {
    for (backend, stores) in backends("groups", 2) {
        let (a, b) = (&stores[0], &stores[1]);
        for name in ["alice", "bob"] {
            a.put_user(&user(name)).unwrap();
        }
        assert!(
            a.create_group("proj-42", &json!({"course": "ml"})).unwrap(),
            "{backend}"
        );
        assert!(
            !b.create_group("proj-42", &json!({})).unwrap(),
            "{backend}: one of a name"
        );
        assert!(b.create_group("staff", &json!({})).unwrap(), "{backend}");
        let members = ["alice".to_owned(), "bob".to_owned()];
        a.set_group_members("proj-42", &members, true).unwrap();
        a.set_group_members("proj-42", &members[..1], true).unwrap();
        b.set_group_members("staff", &members[1..], true).unwrap();

        let group = b.group("proj-42").unwrap().unwrap();
        assert_eq!(group.users, members, "{backend}");
        assert_eq!(group.properties, json!({"course": "ml"}), "{backend}");
        assert_eq!(b.user_groups("bob").unwrap(), ["proj-42", "staff"], "{backend}");
        let names: Vec<String> = a.groups().unwrap().into_iter().map(|g| g.name).collect();
        assert_eq!(names, ["proj-42", "staff"], "{backend}");

        b.set_group_members("proj-42", &members[..1], false).unwrap();
        assert_eq!(a.group("proj-42").unwrap().unwrap().users, ["bob"], "{backend}");
        assert!(a.set_group_properties("staff", &json!({"x": 1})).unwrap(), "{backend}");
        assert!(!a.set_group_properties("nope", &json!({})).unwrap(), "{backend}");
        // A deleted user leaves every group; a deleted group frees its members.
        a.delete_user("bob").unwrap();
        assert!(b.group("staff").unwrap().unwrap().users.is_empty(), "{backend}");
        assert!(b.delete_group("proj-42").unwrap(), "{backend}");
        assert!(!b.delete_group("proj-42").unwrap(), "{backend}");
        assert_eq!(a.group("proj-42").unwrap(), None, "{backend}");
        assert!(a.user_groups("alice").unwrap().is_empty(), "{backend}");
    }
}

#[test]
fn shares_are_kept_until_revoked_and_go_with_their_owner_grantee_or_group() {
    for (backend, stores) in backends("shares", 2) {
        let (a, b) = (&stores[0], &stores[1]);
        for name in ["alice", "bob", "carol"] {
            a.put_user(&user(name)).unwrap();
        }
        a.create_group("proj", &json!({})).unwrap();
        let share = |owner: &str, server: &str, grantee: Grantee, at: u64| ShareRecord {
            owner: owner.into(),
            server: server.into(),
            grantee,
            scopes: vec![format!("access:servers!server={owner}/{server}")],
            created_ms: at,
        };
        a.grant_share(&share("alice", "", Grantee::User("bob".into()), 1))
            .unwrap();
        a.grant_share(&share("alice", "", Grantee::Group("proj".into()), 2))
            .unwrap();
        a.grant_share(&share("alice", "big", Grantee::User("carol".into()), 3))
            .unwrap();
        // Granting again keeps one share, and its age.
        b.grant_share(&share("alice", "", Grantee::User("bob".into()), 9))
            .unwrap();
        let all = b.shares().unwrap();
        assert_eq!(all.len(), 3, "{backend}: {all:?}");
        assert_eq!((all[0].grantee.name(), all[0].created_ms), ("bob", 1), "{backend}");

        assert!(
            b.revoke_share("alice", "", &Grantee::User("bob".into())).unwrap(),
            "{backend}"
        );
        assert!(
            !b.revoke_share("alice", "", &Grantee::User("bob".into())).unwrap(),
            "{backend}"
        );
        // A deleted group or grantee takes its shares along; so does a deleted owner.
        a.delete_group("proj").unwrap();
        assert_eq!(a.shares().unwrap().len(), 1, "{backend}");
        a.grant_share(&share("bob", "", Grantee::User("carol".into()), 4))
            .unwrap();
        a.delete_user("carol").unwrap();
        assert!(a.shares().unwrap().is_empty(), "{backend}");
        a.grant_share(&share("bob", "", Grantee::User("alice".into()), 5))
            .unwrap();
        assert_eq!(a.revoke_server_shares("bob", None).unwrap(), 1, "{backend}");
    }
}
