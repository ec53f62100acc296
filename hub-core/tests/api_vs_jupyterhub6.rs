//! The REST API issue 18 added, as JupyterHub has it: groups, shares and tokens with scopes, and
//! the refusals of bad input (issue 21).
//! The same calls made on edgehub and on a stock JupyterHub 6 must get the same status codes and
//! the same models. Then what groups are for: a user's groups in their user model and in their
//! session token, where the edge's group policy reads them, and who may see and change them.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use base64::Engine;
use http::{Method, StatusCode, header};
use serde_json::{Value, json};
use support::*;

/// One API call of the comparison: method, path under `/hub/api`, body, extra headers.
type Call = (Method, &'static str, Option<Value>, bool);

const PAGINATED: bool = true;

fn calls() -> Vec<Call> {
    vec![
        (
            Method::POST,
            "/users",
            Some(json!({"usernames": ["alice", "bob", "carol"]})),
            false,
        ),
        (
            Method::POST,
            "/groups/proj-42",
            Some(json!({"users": ["alice"]})),
            false,
        ),
        (
            Method::POST,
            "/groups",
            Some(json!({"groups": ["staff", "ta"], "users": ["bob"]})),
            false,
        ),
        (Method::GET, "/groups", None, false),
        (Method::GET, "/groups?limit=2", None, PAGINATED),
        (Method::GET, "/groups/proj-42", None, false),
        (Method::POST, "/groups/proj-42", None, false),
        // (JupyterHub makes the groups listed before the one that exists; edgehub makes none.)
        (Method::POST, "/groups", Some(json!({"groups": ["staff"]})), false),
        (
            Method::POST,
            "/groups/proj-42/users",
            Some(json!({"users": ["bob"]})),
            false,
        ),
        (
            Method::DELETE,
            "/groups/proj-42/users",
            Some(json!({"users": ["alice"]})),
            false,
        ),
        (
            Method::POST,
            "/groups/proj-42/users",
            Some(json!({"users": ["nobody"]})),
            false,
        ),
        (Method::POST, "/groups/proj-42/users", Some(json!({})), false),
        (
            Method::PUT,
            "/groups/proj-42/properties",
            Some(json!({"course": "ml"})),
            false,
        ),
        (Method::GET, "/groups/proj-42", None, false),
        (Method::GET, "/groups/nope", None, false),
        (
            Method::POST,
            "/groups/nope/users",
            Some(json!({"users": ["bob"]})),
            false,
        ),
        (Method::GET, "/users/bob", None, false),
        // Sharing alice's default server (it exists for every user, started or not).
        (Method::POST, "/shares/alice/", Some(json!({"user": "bob"})), false),
        (Method::POST, "/shares/alice/", Some(json!({"group": "staff"})), false),
        (Method::GET, "/shares/alice", None, false),
        (Method::GET, "/shares/alice/", None, false),
        (Method::GET, "/users/bob/shared", None, false),
        (Method::GET, "/groups/staff/shared", None, false),
        (
            Method::POST,
            "/shares/alice/",
            Some(json!({"user": "bob", "group": "staff"})),
            false,
        ),
        (Method::POST, "/shares/alice/", Some(json!({"user": "nobody"})), false),
        (Method::POST, "/shares/alice/", Some(json!({})), false),
        (Method::PATCH, "/shares/alice/", Some(json!({"user": "bob"})), false),
        (Method::GET, "/users/bob/shared", None, false),
        (Method::DELETE, "/shares/alice/", None, false),
        (Method::GET, "/shares/alice", None, false),
        // Share codes: made (the code shown once), listed, refused, deleted.
        (
            Method::POST,
            "/share-codes/alice/",
            Some(json!({"expires_in": 3600})),
            false,
        ),
        (Method::GET, "/share-codes/alice", None, false),
        (Method::GET, "/share-codes/alice/", None, false),
        (
            Method::POST,
            "/share-codes/alice/",
            Some(json!({"expires_in": 30})),
            false,
        ),
        (Method::DELETE, "/share-codes/alice/?id=sc_999", None, false),
        (Method::DELETE, "/share-codes/alice/", None, false),
        (Method::GET, "/share-codes/alice", None, false),
        // Tokens with scopes: expanded in the model; unknown or not held is a 400.
        (
            Method::POST,
            "/users/alice/tokens",
            Some(json!({"scopes": ["read:users!user=alice"]})),
            false,
        ),
        (
            Method::POST,
            "/users/alice/tokens",
            Some(json!({"scopes": ["read:everything"]})),
            false,
        ),
        (
            Method::POST,
            "/users/alice/tokens",
            Some(json!({"scopes": ["admin:users"]})),
            false,
        ),
        (
            Method::POST,
            "/users/alice/tokens",
            Some(json!({"scopes": ["servers!user=bob"]})),
            false,
        ),
        // Bad input (issue 21): the same refusals, and nothing made or started.
        (
            Method::POST,
            "/users/alice/tokens",
            Some(json!({"expires_in": "soon"})),
            false,
        ),
        (Method::POST, "/users/alice/tokens", Some(json!([1])), false),
        (Method::POST, "/users/ghost/tokens", Some(json!({})), false),
        (Method::GET, "/users/ghost/tokens", None, false),
        (Method::GET, "/users/ghost", None, false),
        (Method::PATCH, "/users/ghost", Some(json!({"admin": true})), false),
        (Method::DELETE, "/users/ghost", None, false),
        (
            Method::POST,
            "/users/ghost/activity",
            Some(json!({"last_activity": "2026-01-01T00:00:00Z"})),
            false,
        ),
        (Method::POST, "/users/alice/activity", Some(json!({})), false),
        (
            Method::POST,
            "/users/alice/activity",
            Some(json!({"servers": "x"})),
            false,
        ),
        (Method::POST, "/users", Some(json!({"usernames": []})), false),
        (
            Method::POST,
            "/users",
            Some(json!({"usernames": ["frank"], "admn": true})),
            false,
        ),
        (Method::POST, "/users/frank", Some(json!({"admn": true})), false),
        (Method::PATCH, "/users/alice", Some(json!({"admn": true})), false),
        (Method::GET, "/users?limit=many", None, false),
        (Method::GET, "/users?offset=x", None, false),
        (Method::POST, "/users/alice/server", Some(json!([1, 2])), false),
        (Method::POST, "/users/alice/server", Some(json!("text")), false),
        (Method::DELETE, "/groups/ta", None, false),
        (Method::DELETE, "/groups/ta", None, false),
        (Method::POST, "/groups", Some(json!({})), false),
        (Method::GET, "/groups", None, false),
    ]
}

/// Runs the calls as an admin; each answer as (status, body).
async fn run(client: &mut Client) -> Vec<(StatusCode, Value)> {
    let mut answers = Vec::new();
    for (method, path, body, paginated) in calls() {
        let extra = if paginated {
            vec![(header::ACCEPT, "application/jupyterhub-pagination+json".to_owned())]
        } else {
            Vec::new()
        };
        let r = client
            .send(
                method,
                &format!("/hub/api{path}"),
                body.map(|b| b.to_string().into_bytes()),
                &extra,
            )
            .await;
        let body = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        answers.push((r.status, body));
    }
    answers
}

/// What must match between the two hubs: the keys of every object, recursively (lists by
/// their first item); for group models, their name, members (as a set) and properties; for
/// user models, their groups.
fn shape(v: &Value) -> Value {
    match v {
        // A share model (its `kind` says whom it is with): compared key by key, below.
        Value::Object(map) if map.get("server").is_some_and(Value::is_object) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), shape(v))).collect())
        }
        Value::Object(map) if map.get("kind") == Some(&json!("group")) => json!({
            "keys": map.keys().collect::<BTreeSet<_>>(),
            "name": map["name"],
            "users": map["users"].as_array().map(|u| u.iter().filter_map(Value::as_str).collect::<BTreeSet<_>>()),
            "properties": map["properties"],
        }),
        Value::Object(map) if map.get("kind") == Some(&json!("user")) => json!({
            "name": map["name"],
            "groups": map["groups"].as_array().map(|g| g.iter().filter_map(Value::as_str).collect::<BTreeSet<_>>()),
        }),
        // Error bodies: the status says it; the wording may differ.
        Value::Object(map) if map.contains_key("message") && map.contains_key("status") => json!("error"),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    // Pagination: the next page's URL holds each hub's own address.
                    let v = if k == "next" && v.is_object() {
                        json!({"next": "page"})
                    } else {
                        shape(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(shape).collect()),
        Value::Null => Value::Null,
        _ => json!("scalar"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_answer_as_on_jupyterhub_6() {
    let dir = temp_dir("groups-vs-jupyterhub");
    let jupyterhub_dir = dir.clone();
    let jupyterhub = tokio::task::spawn_blocking(move || support::jupyterhub6::JupyterHub6::start(&jupyterhub_dir))
        .await
        .unwrap();
    let hub = TestHub::start(test_config(&dir)).await;

    let mut theirs = Client {
        base: jupyterhub.url.clone(),
        cookies: Default::default(),
        token: Some(jupyterhub.token.clone()),
    };
    let expected = run(&mut theirs).await;
    let got = run(&mut hub.admin()).await;

    for (((method, path, body, _), want), have) in calls().into_iter().zip(&expected).zip(&got) {
        let what = format!(
            "{method} /hub/api{path} {}",
            body.map(|b| b.to_string()).unwrap_or_default()
        );
        assert_eq!(have.0, want.0, "{what}: status; JupyterHub 6 said {}", want.1);
        assert_eq!(
            shape(&have.1),
            shape(&want.1),
            "{what}: model\n edgehub: {}\n JupyterHub 6: {}",
            have.1,
            want.1
        );
    }
    // The comparison saw real groups, not two empty answers.
    let last = &got.last().unwrap().1;
    let names: Vec<&str> = last
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|g| g["name"].as_str())
        .collect();
    assert_eq!(names, ["proj-42", "staff"]);
    hub.stop().await;
}

/// The payload of the session token in a client's cookie.
fn session_claims(client: &Client) -> Value {
    let token = client.cookies.get("edgehub-token").expect("logged in");
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_groups_reach_their_session_and_only_admins_change_them() {
    let dir = temp_dir("groups-session");
    let hub = TestHub::start(test_config(&dir)).await;
    let mut admin = hub.admin();
    let r = admin
        .api(Method::POST, "/users", Some(json!({"usernames": ["dana", "eve"]})))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let r = admin
        .api(Method::POST, "/groups/proj-7", Some(json!({"users": ["dana"]})))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());

    let mut dana = hub.login("dana").await;
    assert_eq!(
        session_claims(&dana)["groups"],
        json!(["proj-7"]),
        "in the session token"
    );
    let r = dana.api(Method::GET, "/user", None).await;
    assert_eq!(r.json()["groups"], json!(["proj-7"]), "{}", r.text());
    // Groups are the admins' (JupyterHub's user role holds no group scope): a member may not
    // read, list or change them.
    assert_eq!(
        dana.api(Method::GET, "/groups/proj-7", None).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        dana.api(Method::GET, "/groups", None).await.status,
        StatusCode::FORBIDDEN
    );
    let r = dana
        .api(Method::POST, "/groups/proj-7/users", Some(json!({"users": ["eve"]})))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let eve = hub.login("eve").await;
    assert!(session_claims(&eve).get("groups").is_none(), "eve is in no group");

    // Names that could not travel in X-Forwarded-Groups are refused.
    let r = admin.api(Method::POST, "/groups/a,b", None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    let r = admin.api(Method::GET, "/groups?offset=x", None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    hub.stop().await;
}

/// edgeproxy as a stock JupyterHub 6's proxy, with edge auth checking API tokens against that
/// hub (`[hub_tokens]`): the answers of the real `/hub/api/user` decide, by their scopes, which
/// user server a token reaches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jupyterhub_6_api_tokens_pass_the_edge_by_their_scopes() {
    let dir = temp_dir("edge-tokens-vs-jupyterhub");
    let template = r#"
[[issuers]]
algorithms = ["HS256"]
secret = "an-issuer-no-token-here-is-signed-by-0123456789"

[hub_tokens]
url = "{hub_api}/user"
cache_secs = 0
"#;
    let jupyterhub_dir = dir.clone();
    let jupyterhub = tokio::task::spawn_blocking(move || {
        support::jupyterhub6::JupyterHub6::start_with_edge_auth(&jupyterhub_dir, Some(template))
    })
    .await
    .unwrap();
    let client = |token: &str| Client {
        base: jupyterhub.url.clone(),
        cookies: Default::default(),
        token: Some(token.to_owned()),
    };
    let mut admin = client(&jupyterhub.token);
    let r = admin
        .api(Method::POST, "/users", Some(json!({"usernames": ["alice", "bob"]})))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let mut token_for = async |user: &str, body: Value| {
        created_token(
            admin
                .api(Method::POST, &format!("/users/{user}/tokens"), Some(body))
                .await,
        )
    };
    let full = token_for("alice", json!({})).await;
    let read_only = token_for("alice", json!({"scopes": ["read:users!user=alice"]})).await;
    let bobs = token_for("bob", json!({})).await;
    // This hub (slow_spawn_timeout = 0) may answer the start with a 500 while the spawn goes on:
    // readiness is what counts.
    admin.api(Method::POST, "/users/alice/server", None).await;
    eventually(Duration::from_secs(60), "alice's server is ready", || {
        let mut admin = client(&jupyterhub.token);
        async move { admin.api(Method::GET, "/users/alice", None).await.json()["servers"][""]["ready"] == true }
    })
    .await;

    for (who, token, expected) in [
        ("alice's token", full.as_str(), StatusCode::OK),
        ("her read-only token", &read_only, StatusCode::FORBIDDEN),
        ("bob's token", &bobs, StatusCode::FORBIDDEN),
        (
            "a made-up token",
            "0123456789abcdef0123456789abcdef",
            StatusCode::UNAUTHORIZED,
        ),
    ] {
        let r = client(token).get("/user/alice/api/status").await;
        assert_eq!(r.status, expected, "{who}: {}", r.text());
        if expected == StatusCode::OK {
            assert!(
                r.json()["version"].is_string(),
                "{who}: the server answered: {}",
                r.text()
            );
        }
    }
    let r = admin.api(Method::DELETE, "/users/alice/server", None).await;
    assert!(r.status.is_success(), "{}", r.text());
}
