//! Tokens with scopes (JupyterHub's RBAC): a token holds what it was made with and never more
//! than its owner; outside its scopes it gets 403. Filters narrow a scope to one user's
//! resources (`!user=`), one server's (`!server=`) or a group's members' (`!group=`).

mod support;

use http::{Method, StatusCode};
use serde_json::{Value, json};
use support::*;

/// Makes a token for `owner` through `client`; returns the reply.
async fn token_for(client: &mut Client, owner: &str, scopes: Value) -> Reply {
    client
        .api(
            Method::POST,
            &format!("/users/{owner}/tokens"),
            Some(json!({"note": "test", "scopes": scopes})),
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scoped_token_gets_403_outside_its_scopes() {
    let dir = temp_dir("scopes");
    let mut config = test_config(&dir);
    config.auth.admin_users = vec!["root".into()];
    let hub = TestHub::start(config).await;
    let mut admin = hub.admin();
    let r = admin
        .api(
            Method::POST,
            "/users",
            Some(json!({"usernames": ["alice", "bob", "carol", "dave", "root"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let r = admin
        .api(Method::POST, "/groups/proj", Some(json!({"users": ["carol"]})))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());

    // Alice makes herself a read-only token.
    let mut alice = hub.login("alice").await;
    let r = token_for(&mut alice, "alice", json!(["read:users!user=alice"])).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    // Listed expanded, as JupyterHub lists them.
    assert_eq!(
        r.json()["scopes"],
        json!([
            "read:users!user=alice",
            "read:users:activity!user=alice",
            "read:users:groups!user=alice",
            "read:users:name!user=alice"
        ])
    );
    let mut reader = hub.with_token(r.json()["token"].as_str().unwrap());
    assert_eq!(
        reader.api(Method::GET, "/users/alice", None).await.status,
        StatusCode::OK
    );
    let me = reader.api(Method::GET, "/user", None).await.json();
    let scopes: Vec<&str> = me["scopes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(scopes.contains(&"read:users:name!user=alice"), "expanded: {scopes:?}");
    assert!(!scopes.iter().any(|s| s.starts_with("servers")), "{scopes:?}");
    // Outside its scopes: alice's server, her tokens, another user.
    for (method, path) in [
        (Method::POST, "/users/alice/server"),
        (Method::GET, "/users/alice/tokens"),
        (Method::POST, "/users/alice/tokens"),
        (Method::GET, "/users/bob"),
        (Method::GET, "/users"),
        (Method::GET, "/groups"),
    ] {
        let r = reader.api(method.clone(), path, Some(json!({}))).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{method} {path}: {}", r.text());
        assert!(r.text().contains("requires any of"), "{}", r.text());
    }

    // No more than the owner holds (400, as JupyterHub), and only known scopes.
    let r = token_for(&mut alice, "alice", json!(["read:users"])).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "everyone's users: {}", r.text());
    assert!(r.text().contains("not held by alice"), "{}", r.text());
    let r = token_for(&mut alice, "alice", json!(["admin:users"])).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    let r = token_for(&mut alice, "alice", json!(["servers!user=bob"])).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    let r = token_for(&mut alice, "alice", json!(["read:everything"])).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    let r = token_for(&mut alice, "alice", json!(["servers!team=x"])).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());

    // A server filter: this token may start and stop alice's default server, nothing else.
    let r = token_for(&mut alice, "alice", json!(["servers!server=alice/"])).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let mut starter = hub.with_token(r.json()["token"].as_str().unwrap());
    let r = starter.api(Method::POST, "/users/alice/server", Some(json!({}))).await;
    assert!(r.status.is_success(), "{}", r.text());
    let events = follow_progress(&mut starter, "/hub/api/users/alice/server/progress").await;
    assert_eq!(events.last().unwrap()["ready"], true, "{events:?}");
    assert_eq!(
        starter.api(Method::GET, "/users/alice", None).await.status,
        StatusCode::FORBIDDEN
    );
    let r = starter.api(Method::DELETE, "/users/alice/server", None).await;
    assert!(r.status.is_success(), "{}", r.text());
    // A scoped token cannot make itself a broader one (it does not even hold `tokens`).
    let r = token_for(&mut starter, "alice", json!(["servers!server=alice/"])).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());

    // A group filter, on an admin's token: the members of proj, no one else.
    let r = token_for(&mut admin, "root", json!(["read:users!group=proj"])).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let mut proj_reader = hub.with_token(r.json()["token"].as_str().unwrap());
    assert_eq!(
        proj_reader.api(Method::GET, "/users/carol", None).await.status,
        StatusCode::OK
    );
    assert_eq!(
        proj_reader.api(Method::GET, "/users/dave", None).await.status,
        StatusCode::FORBIDDEN
    );
    // Bob holds no one else's users: an admin cannot give him a token that does.
    let r = token_for(&mut admin, "bob", json!(["read:users!group=proj"])).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    // Roles, JupyterHub's older way to ask: each is its scopes.
    let roles = |r: Value| json!({"note": "roles", "roles": r});
    let r = alice
        .api(Method::POST, "/users/alice/tokens", Some(roles(json!(["server"]))))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let mut server_like = hub.with_token(r.json()["token"].as_str().unwrap());
    let r = server_like
        .api(
            Method::POST,
            "/users/alice/activity",
            Some(json!({"last_activity": "2026-01-01T00:00:00Z"})),
        )
        .await;
    assert!(r.status.is_success(), "activity: {}", r.text());
    assert_eq!(
        server_like.api(Method::GET, "/users/alice/tokens", None).await.status,
        StatusCode::FORBIDDEN
    );
    let r = alice
        .api(Method::POST, "/users/alice/tokens", Some(roles(json!(["admin"]))))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "alice is no admin: {}", r.text());
    let r = alice
        .api(Method::POST, "/users/alice/tokens", Some(roles(json!(["emperor"]))))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    // Tokens without scopes are unchanged: all their owner holds.
    let r = token_for(&mut alice, "alice", Value::Null).await;
    assert_eq!(r.json()["scopes"], json!(["inherit"]), "{}", r.text());
    let mut full = hub.with_token(r.json()["token"].as_str().unwrap());
    assert_eq!(
        full.api(Method::GET, "/users/alice/tokens", None).await.status,
        StatusCode::OK
    );
    assert_eq!(
        full.api(Method::GET, "/users/bob", None).await.status,
        StatusCode::FORBIDDEN
    );
    hub.stop().await;
}

/// Through the front door, a JupyterHub API token reaches the servers its scopes name, as
/// jupyterhub-singleuser would let it: the edge asks the hub whose token it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_tokens_reach_through_the_proxy_the_servers_their_scopes_name() {
    let dir = temp_dir("edge-api-tokens");
    let hub = TestHub::start(test_config(&dir)).await;
    let mut admin = hub.admin();
    let r = admin
        .api(Method::POST, "/users", Some(json!({"usernames": ["alice", "bob"]})))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    start_server(&mut admin, "alice").await;
    let mut alice = hub.login("alice").await;
    let mut bob = hub.login("bob").await;
    let full = created_token(token_for(&mut alice, "alice", Value::Null).await);
    let server_only = created_token(token_for(&mut alice, "alice", json!(["access:servers!server=alice/"])).await);
    let read_only = created_token(token_for(&mut alice, "alice", json!(["read:users!user=alice"])).await);
    let bobs = created_token(token_for(&mut bob, "bob", Value::Null).await);

    for (who, token, expected) in [
        ("alice's own token", full.as_str(), StatusCode::OK),
        ("a token for her server alone", &server_only, StatusCode::OK),
        ("a read-only token", &read_only, StatusCode::FORBIDDEN),
        ("bob's token", &bobs, StatusCode::FORBIDDEN),
        ("a made-up token", "0123456789abcdef", StatusCode::UNAUTHORIZED),
        ("the hub's admin token", ADMIN_TOKEN, StatusCode::OK),
    ] {
        let r = hub.with_token(token).get("/user/alice/api").await;
        assert_eq!(r.status, expected, "{who}: {}", r.text());
        if expected == StatusCode::OK {
            assert!(
                r.json()["version"].is_string(),
                "{who}: alice's server answered: {}",
                r.text()
            );
        }
    }
    hub.stop().await;
}
