//! The REST API under bad input (issue 21), as a careless or hostile client sends it to
//! `edgehub up`: per endpoint, a table of malformed requests (not JSON, wrong types, missing
//! fields, unknown users and servers, huge and odd names), each of which must get its status
//! and message, change nothing the API shows (users, servers, tokens, groups, shares), and be
//! logged once, at INFO. Then `last_activity`, set when a spawn starts.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use http::{Method, StatusCode};
use serde_json::{Value, json};
use support::*;

/// One malformed request: method, path under `/hub/api`, raw body, the status, and a piece of
/// the message it must get.
type Case = (Method, String, Option<&'static str>, u16, &'static str);

fn case(method: Method, path: &str, body: Option<&'static str>, status: u16, message: &'static str) -> Case {
    (method, path.to_owned(), body, status, message)
}

fn tokens() -> Vec<Case> {
    use Method as M;
    let post = |body, message| case(M::POST, "/users/alice/tokens", Some(body), 400, message);
    vec![
        post("{not json", "Invalid JSON in body of request"),
        post("[1]", "Body must be a JSON object"),
        post("\"text\"", "Body must be a JSON object"),
        post(
            r#"{"expires_in": "soon"}"#,
            "expires_in must be null or a non-negative integer, not \"soon\"",
        ),
        post(r#"{"expires_in": -5}"#, "expires_in must be"),
        post(r#"{"expires_in": 1.5}"#, "expires_in must be"),
        post(r#"{"note": 17}"#, "note must be a string"),
        post(
            r#"{"scopes": "read:users"}"#,
            "scopes must be null or a list of strings",
        ),
        post(r#"{"roles": [1]}"#, "roles must be null or a list of strings"),
        post(r#"{"scopes": ["read:everything"]}"#, "read:everything"),
        // A user that does not exist: JupyterHub's 403 for a token, 404 for the rest.
        case(M::POST, "/users/ghost/tokens", Some("{}"), 403, "User ghost not found"),
        case(M::GET, "/users/ghost/tokens", None, 404, "No such user: ghost"),
        case(M::GET, "/users/ghost/tokens/a1", None, 404, "No such user: ghost"),
        case(M::DELETE, "/users/ghost/tokens/a1", None, 404, "No such user: ghost"),
        case(M::GET, "/users/alice/tokens/a999999", None, 404, "No such token"),
        case(M::DELETE, "/users/alice/tokens/zzz", None, 404, "No such token"),
    ]
}

fn servers() -> Vec<Case> {
    use Method as M;
    let long = "s".repeat(300);
    vec![
        case(
            M::POST,
            "/users/alice/server",
            Some("[1,2]"),
            400,
            "Body must be a JSON object",
        ),
        case(
            M::POST,
            "/users/alice/server",
            Some("\"text\""),
            400,
            "Body must be a JSON object",
        ),
        case(
            M::POST,
            "/users/alice/server",
            Some("{not json"),
            400,
            "Invalid JSON in body of request",
        ),
        case(
            M::POST,
            "/users/alice/servers/lab",
            Some("[1]"),
            400,
            "Body must be a JSON object",
        ),
        case(
            M::POST,
            "/users/alice/server",
            Some(r#"{"user_options": 5}"#),
            400,
            "user_options must be an object",
        ),
        case(
            M::POST,
            "/users/alice/server",
            Some(r#"{"user_options": [1]}"#),
            400,
            "user_options must be an object",
        ),
        case(
            M::POST,
            "/users/alice/server",
            Some(r#"{"display_name": 5}"#),
            400,
            "display_name must be a string",
        ),
        case(M::POST, "/users/ghost/server", Some("{}"), 404, "No such user: ghost"),
        case(M::POST, "/users/alice/servers/a%20b", None, 400, "Invalid server name"),
        case(
            M::POST,
            &format!("/users/alice/servers/{long}"),
            None,
            400,
            "Invalid server name",
        ),
        case(
            M::DELETE,
            "/users/alice/server",
            Some(r#"{"remove": "yes"}"#),
            400,
            "remove must be true or false",
        ),
        case(M::DELETE, "/users/alice/servers/nope", None, 404, "no server named"),
        case(M::DELETE, "/users/ghost/server", None, 404, "No such user: ghost"),
        case(M::GET, "/users/alice/servers/nope/progress", None, 404, "has no server"),
        case(M::GET, "/users/ghost/server/progress", None, 404, "No such user: ghost"),
    ]
}

fn users() -> Vec<Case> {
    use Method as M;
    let long = "u".repeat(10_000);
    let integers = "offset and limit must be integers";
    vec![
        case(M::GET, "/users?limit=many", None, 400, integers),
        case(M::GET, "/users?offset=x", None, 400, integers),
        case(M::GET, "/users?limit=", None, 400, integers),
        case(M::GET, "/users?state=bogus", None, 400, "Unrecognized state filter"),
        case(
            M::POST,
            "/users",
            Some(r#"{"usernames": []}"#),
            400,
            "Must specify at least one user",
        ),
        case(M::POST, "/users", Some("{}"), 400, "Must specify at least one user"),
        case(
            M::POST,
            "/users",
            Some(r#"{"usernames": [17]}"#),
            400,
            "usernames must be null or a list of strings",
        ),
        case(
            M::POST,
            "/users",
            Some(r#"{"usernames": "carol"}"#),
            400,
            "usernames must be",
        ),
        case(
            M::POST,
            "/users",
            Some(r#"{"usernames": ["carol", "a b"]}"#),
            400,
            "Invalid username",
        ),
        case(
            M::POST,
            "/users",
            Some(r#"{"usernames": ["carol"], "admin": "yes"}"#),
            400,
            "admin must be true or false",
        ),
        case(
            M::POST,
            "/users",
            Some(r#"{"usernames": ["carol"], "admn": true}"#),
            400,
            "Invalid JSON keys: admn",
        ),
        case(
            M::POST,
            "/users/carol",
            Some(r#"{"admn": true}"#),
            400,
            "Invalid JSON keys: admn",
        ),
        case(
            M::PATCH,
            "/users/alice",
            Some(r#"{"admn": true}"#),
            400,
            "Invalid JSON keys: admn",
        ),
        case(M::POST, "/users", Some("[1]"), 400, "Body must be a JSON object"),
        case(M::POST, "/users", Some("{not json"), 400, "Invalid JSON"),
        case(
            M::POST,
            "/users/carol",
            Some(r#"{"admin": "yes"}"#),
            400,
            "admin must be true or false",
        ),
        case(M::POST, "/users/carol", Some("[1]"), 400, "Body must be a JSON object"),
        case(M::POST, "/users/a%20b", None, 400, "Invalid username"),
        case(
            M::POST,
            &format!("/users/{}", "c".repeat(300)),
            None,
            400,
            "Invalid username",
        ),
        case(
            M::PATCH,
            "/users/alice",
            Some(r#"{"admin": "yes"}"#),
            400,
            "admin must be true or false",
        ),
        case(M::PATCH, "/users/alice", Some("[1]"), 400, "Body must be a JSON object"),
        case(M::PATCH, "/users/alice", Some(r#"{"name": "alicia"}"#), 400, "Renaming"),
        case(
            M::PATCH,
            "/users/ghost",
            Some(r#"{"admin": true}"#),
            404,
            "No such user: ghost",
        ),
        case(M::GET, "/users/ghost", None, 404, "No such user: ghost"),
        case(M::GET, &format!("/users/{long}"), None, 404, "No such user"),
        case(M::GET, "/users/al%2Fice", None, 404, "No such user: al/ice"),
        case(M::GET, "/users/%E2%98%83", None, 404, "No such user: \u{2603}"),
        case(M::DELETE, "/users/ghost", None, 404, "No such user: ghost"),
    ]
}

fn activity() -> Vec<Case> {
    use Method as M;
    let post = |body, message| case(M::POST, "/users/alice/activity", Some(body), 400, message);
    let shape = "servers must be a dict of the form";
    vec![
        post(r#"{"servers": "x"}"#, shape),
        post(r#"{"servers": {"": {}}}"#, shape),
        post(r#"{"servers": {"": 17}}"#, shape),
        post(
            r#"{"servers": {"nope": {"last_activity": "2026-01-01T00:00:00Z"}}}"#,
            "No such server 'nope' for user alice",
        ),
        post("{}", "at least one of `last_activity` or `servers`"),
        post(r#"{"servers": {}}"#, "at least one of"),
        post("[1]", "Body must be a JSON object"),
        post("{not json", "Invalid JSON"),
        post(
            r#"{"last_activity": "yesterday"}"#,
            "last_activity must be an ISO 8601 timestamp",
        ),
        post(
            r#"{"last_activity": 17}"#,
            "last_activity must be an ISO 8601 timestamp",
        ),
        post(
            r#"{"last_activity": "2999-01-01T00:00:00Z"}"#,
            "more than an hour in the future",
        ),
        // One good server and one bad: neither is noted.
        post(
            r#"{"last_activity": "2026-01-01T00:00:00Z", "servers": {"": {"last_activity": "2026-01-01T00:00:00Z"}, "nope": {"last_activity": "2026-01-01T00:00:00Z"}}}"#,
            "No such server 'nope'",
        ),
        case(
            M::POST,
            "/users/ghost/activity",
            Some(r#"{"last_activity": "2026-01-01T00:00:00Z"}"#),
            404,
            "No such user: ghost",
        ),
    ]
}

fn groups_and_shares() -> Vec<Case> {
    use Method as M;
    vec![
        case(M::GET, "/groups?limit=x", None, 400, "must be integers"),
        case(M::POST, "/groups", Some("[1]"), 400, "Body must be a JSON object"),
        case(
            M::POST,
            "/groups",
            Some(r#"{"groups": "g2"}"#),
            400,
            "groups must be a list of names",
        ),
        case(
            M::POST,
            "/groups/g2",
            Some(r#"{"users": "alice"}"#),
            400,
            "users must be a list of names",
        ),
        case(
            M::POST,
            "/groups/g2",
            Some(r#"{"users": ["ghost"]}"#),
            400,
            "No such user: ghost",
        ),
        case(M::POST, "/groups/g2", Some("{not json"), 400, "Invalid JSON"),
        case(
            M::POST,
            "/groups/g/users",
            Some("[1]"),
            400,
            "Body must be a JSON object",
        ),
        case(
            M::PUT,
            "/groups/g/properties",
            Some("[1]"),
            400,
            "Body must be a JSON object",
        ),
        case(M::GET, "/groups/nope", None, 404, "No such group"),
        case(
            M::POST,
            "/shares/alice/",
            Some("[1]"),
            400,
            "Body must be a JSON object",
        ),
        case(
            M::POST,
            "/shares/alice/",
            Some(r#"{"user": "ghost"}"#),
            400,
            "No such user: ghost",
        ),
        case(
            M::POST,
            "/shares/alice/nope",
            Some(r#"{"user": "bob"}"#),
            404,
            "No such server",
        ),
        case(M::GET, "/shares/alice?offset=x", None, 400, "must be integers"),
        case(
            M::POST,
            "/share-codes/alice/",
            Some(r#"{"expires_in": "soon"}"#),
            400,
            "expires_in",
        ),
        case(
            M::POST,
            "/share-codes/alice/",
            Some("[1]"),
            400,
            "Body must be a JSON object",
        ),
    ]
}

/// Everything the API shows of the hub's state: users with all their servers (stopped too),
/// each user's tokens, groups, and alice's shares and share codes.
async fn state(admin: &mut Client) -> Value {
    let users = admin
        .api(Method::GET, "/users?include_stopped_servers=1", None)
        .await
        .json();
    let mut tokens = serde_json::Map::new();
    for user in users.as_array().unwrap() {
        let name = user["name"].as_str().unwrap();
        let list = admin
            .api(Method::GET, &format!("/users/{name}/tokens"), None)
            .await
            .json();
        tokens.insert(name.to_owned(), list);
    }
    json!({
        "users": users,
        "tokens": tokens,
        "groups": admin.api(Method::GET, "/groups", None).await.json(),
        "shares": admin.api(Method::GET, "/shares/alice", None).await.json(),
        "share_codes": admin.api(Method::GET, "/share-codes/alice", None).await.json(),
    })
}

/// The hub's log lines, captured for this test process (nextest runs each test in its own).
fn log() -> Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let sink = buffer.clone();
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || Capture(sink.clone()))
            .try_init();
        buffer
    })
    .clone()
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A hub with alice (a stopped default server), bob, the group g and an admin client.
async fn hub_with_alice_and_bob(name: &str) -> (TestHub, Client) {
    let dir = temp_dir(name);
    let mut config = test_config(&dir);
    config.allow_named_servers = true;
    let hub = TestHub::start(config).await;
    let mut admin = hub.admin();
    let r = admin
        .api(Method::POST, "/users", Some(json!({"usernames": ["alice", "bob"]})))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let r = admin
        .api(Method::POST, "/groups/g", Some(json!({"users": ["bob"]})))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let r = admin
        .api(Method::POST, "/users/alice/tokens", Some(json!({"note": "kept"})))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    (hub, admin)
}

async fn run_table(name: &str, cases: Vec<Case>) {
    let log = log();
    let (hub, mut admin) = hub_with_alice_and_bob(name).await;
    let before = state(&mut admin).await;
    for (method, path, body, status, message) in cases {
        let what = format!("{method} /hub/api{path} {}", body.unwrap_or(""));
        let logged_before = String::from_utf8_lossy(&log.lock().unwrap())
            .matches("refused ")
            .count();
        let r = admin
            .send(
                method.clone(),
                &format!("/hub/api{path}"),
                body.map(|b| b.as_bytes().to_vec()),
                &[],
            )
            .await;
        assert_eq!(r.status.as_u16(), status, "{what}: {}", r.text());
        let reply = r.json();
        assert_eq!(reply["status"], status, "{what}: {reply}");
        let got = reply["message"].as_str().unwrap_or_default();
        assert!(got.contains(message), "{what}: message {got:?}, expected {message:?}");
        assert!(
            !got.contains("database") && !got.contains("constraint"),
            "{what}: {got}"
        );
        assert_eq!(state(&mut admin).await, before, "{what} changed the hub's state");
        // Logged once, at INFO, with its status and message (the state reads above log nothing).
        let text = String::from_utf8_lossy(&log.lock().unwrap()).into_owned();
        let refusals: Vec<&str> = text.lines().filter(|l| l.contains("refused ")).collect();
        assert_eq!(
            refusals.len(),
            logged_before + 1,
            "{what}: logged {:?}",
            &refusals[logged_before..]
        );
        let line = refusals.last().unwrap();
        assert!(
            line.contains(" INFO ") && line.contains(&format!("{status} {got}")),
            "{what}: {line}"
        );
    }
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_refuse_bad_input_and_mint_nothing() {
    run_table("bad-input-tokens", tokens()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_refuse_bad_input_and_start_nothing() {
    run_table("bad-input-servers", servers()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_refuse_bad_input_and_change_nobody() {
    run_table("bad-input-users", users()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activity_refuses_bad_reports_and_notes_nothing() {
    run_table("bad-input-activity", activity()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_and_shares_refuse_bad_input() {
    run_table("bad-input-groups", groups_and_shares()).await;
}

/// A malformed percent-escape is a 400: from the proxy in front (which cannot route it), and
/// from the hub itself, in JSON, for a client that reaches it directly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_escapes_are_400_never_500() {
    let (hub, mut admin) = hub_with_alice_and_bob("bad-input-escapes").await;
    let mut direct = Client {
        base: format!("http://{}", hub.running.hub_addr),
        cookies: Default::default(),
        token: Some(ADMIN_TOKEN.to_owned()),
    };
    for path in [
        "/hub/api/users/%ZZ",
        "/hub/api/users/%",
        "/hub/api/users/%E0%A4%A",
        "/hub/api/users/alice/tokens/%FF",
    ] {
        let r = admin.get(path).await;
        assert_eq!(
            r.status,
            StatusCode::BAD_REQUEST,
            "through the proxy: {path}: {}",
            r.text()
        );
        assert!(
            r.text().contains("The address is not valid."),
            "the hub's page: {}",
            r.text()
        );
        let r = direct.get(path).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "at the hub: {path}: {}", r.text());
        assert!(
            r.json()["message"]
                .as_str()
                .unwrap()
                .contains("Malformed percent-encoding"),
            "{}",
            r.text()
        );
    }
    hub.stop().await;
}

/// JupyterHub sets a user's `last_activity` when their spawn starts; so does edgehub, rather
/// than at the first reconcile after the server is ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_activity_is_set_when_the_spawn_starts() {
    let dir = temp_dir("bad-input-activity-at-spawn");
    let mut config = test_config(&dir);
    // No reconcile within the test: only the spawn may set it.
    config.reconcile_interval_secs = 3600;
    let hub = TestHub::start(config).await;
    let mut admin = hub.admin();
    let r = admin.api(Method::POST, "/users/alice", None).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(r.json()["last_activity"], Value::Null, "a new user has no activity yet");
    let asked = proxy::timestamp::now_ms();
    let r = admin.api(Method::POST, "/users/alice/server", None).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    let model = admin.api(Method::GET, "/users/alice", None).await.json();
    for at in [&model["last_activity"], &model["servers"][""]["last_activity"]] {
        let ms = at
            .as_str()
            .and_then(proxy::timestamp::parse_iso)
            .unwrap_or_else(|| panic!("last_activity set at the start: {model}"));
        assert!(ms as u64 + 1000 >= asked, "{model}");
    }
    follow_progress(&mut admin, "/hub/api/users/alice/server/progress").await;
    hub.stop().await;
}

/// JupyterHub 6's start body, `{"user_options": {…}, "display_name"?}`, gives the options
/// inside it; without either key the body itself is the options, as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_options_in_either_shape() {
    let (hub, mut admin) = hub_with_alice_and_bob("bad-input-user-options").await;
    for (user, body) in [
        (
            "alice",
            json!({"user_options": {"colour": "blue"}, "display_name": "Blue"}),
        ),
        ("bob", json!({"colour": "blue"})),
    ] {
        let r = admin
            .api(Method::POST, &format!("/users/{user}/server"), Some(body))
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
        let model = admin.api(Method::GET, &format!("/users/{user}"), None).await.json();
        assert_eq!(
            model["servers"][""]["user_options"],
            json!({"colour": "blue"}),
            "{model}"
        );
        follow_progress(&mut admin, &format!("/hub/api/users/{user}/server/progress")).await;
    }
    hub.stop().await;
}
