//! Who may sign in beyond what the authenticator accepts: `auth.allowed_users` (with the users
//! the hub already knows, as JupyterHub's `allow_existing_users`), and `auth.blocked_users`,
//! which also ends a blocked user's sessions and refuses their cookies and tokens, at the hub
//! and at the edge.

mod support;

use http::{Method, StatusCode};
use serde_json::json;
use support::*;

/// Posts the login form for `user` and returns the answer, whatever it is.
async fn try_login(hub: &TestHub, user: &str) -> (Client, Reply) {
    let mut c = hub.client();
    c.get("/hub/login").await;
    let xsrf = c.cookies.get("_xsrf").cloned().expect("the login page sets _xsrf");
    let r = c
        .post_form("/hub/login", &[("username", user), ("password", ""), ("_xsrf", &xsrf)])
        .await;
    (c, r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_allowed_admins_and_known_users_sign_in() {
    let dir = temp_dir("allowed-users");
    let mut config = test_config(&dir);
    config.auth.allowed_users = vec!["alice".into()];
    config.auth.admin_users = vec!["root".into()];
    let hub = TestHub::start(config).await;
    hub.login("alice").await;
    hub.login("root").await;
    let (bob, r) = try_login(&hub, "bob").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    assert!(r.text().contains("bob is not allowed to sign in"), "{}", r.text());
    assert!(!bob.cookies.contains_key("edgehub-token"), "no session for bob");
    assert!(
        hub.admin().api(Method::GET, "/users/bob", None).await.status == StatusCode::NOT_FOUND,
        "a refused sign-in makes no user"
    );
    // An admin adds carol: a user the hub knows may sign in (JupyterHub's default).
    let r = hub
        .admin()
        .api(Method::POST, "/users", Some(json!({"usernames": ["carol"]})))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    hub.login("carol").await;
    hub.stop().await;

    // Without the users the hub knows: carol is refused now.
    let mut config = test_config(&dir);
    config.auth.allowed_users = vec!["alice".into()];
    config.auth.allow_existing_users = Some(false);
    let hub = TestHub::start(config).await;
    let (_, r) = try_login(&hub, "carol").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    hub.login("alice").await;
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_user_loses_sessions_tokens_and_the_edge() {
    let dir = temp_dir("blocked-users");
    let public = KeptPort::new();
    let hub = TestHub::start_with(test_config(&dir), public.overrides()).await;
    let mut alice = hub.login("alice").await;
    start_server(&mut alice, "alice").await;
    let token = created_token(alice.api(Method::POST, "/users/alice/tokens", Some(json!({}))).await);
    assert_eq!(alice.get("/user/alice/api/status").await.status, StatusCode::OK);
    assert_eq!(
        hub.with_token(&token).api(Method::GET, "/user", None).await.status,
        StatusCode::OK
    );
    let mut bob = hub.login("bob").await;
    hub.stop_keeping_servers().await;

    // alice is blocked: the restarted hub ends her session and refuses her token and sign-in;
    // bob is untouched.
    let mut config = test_config(&dir);
    config.auth.blocked_users = vec!["alice".into()];
    let hub = TestHub::start_with(config, public.overrides()).await;
    let r = alice.api(Method::GET, "/user", None).await;
    assert!(
        r.status.is_client_error(),
        "alice's cookie at the hub: {} {}",
        r.status,
        r.text()
    );
    let r = alice.get("/user/alice/api/status").await;
    assert_ne!(r.status, StatusCode::OK, "alice's cookie at the edge: {}", r.text());
    let r = hub.with_token(&token).api(Method::GET, "/user", None).await;
    assert!(
        r.status.is_client_error(),
        "alice's token at the hub: {} {}",
        r.status,
        r.text()
    );
    let r = hub.with_token(&token).get("/user/alice/api/status").await;
    assert_ne!(r.status, StatusCode::OK, "alice's token at the edge: {}", r.text());
    let (_, r) = try_login(&hub, "alice").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    assert!(r.text().contains("alice is not allowed to sign in"), "{}", r.text());
    let r = bob.api(Method::GET, "/user", None).await;
    assert_eq!(r.status, StatusCode::OK, "bob is not blocked: {}", r.text());
    hub.stop().await;
}
