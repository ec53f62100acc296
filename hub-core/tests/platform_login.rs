//! The platform case end to end: a business platform signs HS384 JWTs and keeps each user's
//! session in its Redis under `auth_token_key:{sub}`. The hub's login takes the platform's token
//! (in the URL, as `Authorization: Bearer`, or as the bare `Authorization: <jwt>` such platforms
//! send), checks its signature and its session record, and binds the hub session it makes to that
//! record; the edge accepts the platform's tokens and the hub's sessions at once. Deleting the
//! record on the platform ends the hub session and every way in at the edge within a second.
//! A real redis-server, the hub's embedded proxy, the built-in notebook server.

mod support;

use std::time::{Duration, Instant};

use http::{Method, StatusCode, header};
use serde_json::json;
use support::*;

const PLATFORM_SECRET: &str = "platform-signing-key-of-48-bytes-for-hs384-jwts!";

fn platform_token(user: &str) -> String {
    let claims = json!({
        "sub": user,
        "iss": "platform",
        "exp": proxy::timestamp::now_ms() / 1000 + 600,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS384),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(PLATFORM_SECRET.as_bytes()),
    )
    .unwrap()
}

fn platform_hub(dir: &std::path::Path, redis: &redis::RedisServer) -> config::HubConfig {
    let mut config = test_config(dir);
    config.auth.authenticator = config::AuthenticatorKind::Jwt;
    config.auth.issuers = vec![config::IssuerConfig {
        issuer: Some("platform".into()),
        algorithms: vec!["HS384".into()],
        secret: Some(PLATFORM_SECRET.into()),
        ..Default::default()
    }];
    config.auth.platform_session = Some(config::SessionConfig {
        redis_url: redis.url(),
        key: "auth_token_key:{sub}".into(),
        ..Default::default()
    });
    config.auth.bare_authorization = true;
    config
}

/// A request with `Authorization` set to `value`, nothing else.
async fn with_authorization(hub: &TestHub, path: &str, value: &str) -> Reply {
    hub.client()
        .send(Method::GET, path, None, &[(header::AUTHORIZATION, value.to_owned())])
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_platform_session_ends_hub_and_edge_access_within_a_second() {
    let dir = temp_dir("platform-revoke");
    let redis = redis::RedisServer::start();
    redis.cli(&["SET", "auth_token_key:alice", "1"]);
    redis.cli(&["SET", "auth_token_key:bob", "1"]);
    let hub = TestHub::start(platform_hub(&dir, &redis)).await;
    let alice_jwt = platform_token("alice");

    // The platform hands the token over in the URL; the hub answers with its own session.
    let mut alice = hub.client();
    let r = alice.get(&format!("/hub/login?token={alice_jwt}")).await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.text());
    assert!(alice.cookies.contains_key("edgehub-token"));
    let r = alice.api(Method::GET, "/user", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["name"], "alice");

    start_server(&mut hub.admin(), "alice").await;

    // Every way in works: the hub's session cookie, the platform token as a bearer and bare.
    let r = alice.get("/user/alice/api/status").await;
    assert_eq!(r.status, StatusCode::OK, "cookie: {}", r.text());
    let bearer = format!("Bearer {alice_jwt}");
    for value in [bearer.as_str(), alice_jwt.as_str()] {
        let r = with_authorization(&hub, "/user/alice/api/status", value).await;
        assert_eq!(r.status, StatusCode::OK, "{value:.12}…: {}", r.text());
        let r = with_authorization(&hub, "/hub/api/user", value).await;
        assert_eq!(r.status, StatusCode::OK, "{value:.12}…: {}", r.text());
    }
    // Bob's own valid platform token is still not a key to alice's server.
    let r = with_authorization(&hub, "/user/alice/api/status", &platform_token("bob")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());

    // The platform logs alice out. The edge alone (no request to the hub in between, which
    // would end the hub session itself) refuses her cookie and her token within a second …
    assert_eq!(redis.cli(&["DEL", "auth_token_key:alice"]), "1");
    let logged_out = Instant::now();
    loop {
        let cookie = alice.get("/user/alice/api/status").await.status;
        let bearer_edge = with_authorization(&hub, "/user/alice/api/status", &bearer).await.status;
        if cookie.is_client_error() && bearer_edge.is_client_error() {
            break;
        }
        assert!(
            logged_out.elapsed() < Duration::from_secs(1),
            "a second after the platform logout, the edge still lets in: cookie {cookie}, bearer {bearer_edge}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // … and so does the hub, by cookie and by token.
    let r = alice.api(Method::GET, "/user", None).await;
    assert!(r.status.is_client_error(), "hub by cookie: {}", r.status);
    let r = with_authorization(&hub, "/hub/api/user", &alice_jwt).await;
    assert!(r.status.is_client_error(), "hub by bare token: {}", r.status);
    // And her token is no login any more; bob's session goes on.
    let r = hub.client().get(&format!("/hub/login?token={alice_jwt}")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.text().contains("the platform session has ended"), "{}", r.text());
    let r = with_authorization(&hub, "/hub/api/user", &platform_token("bob")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());

    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_platform_login_by_header_and_a_platform_redis_that_is_down() {
    let dir = temp_dir("platform-header");
    let mut redis = redis::RedisServer::start();
    redis.cli(&["SET", "auth_token_key:carol", "1"]);
    redis.cli(&["SET", "auth_token_key:erin", "1"]);
    let hub = TestHub::start(platform_hub(&dir, &redis)).await;
    let carol_jwt = platform_token("carol");

    // `Authorization: <jwt>` on the login URL is a login too: the hub's cookie comes back.
    let mut carol = hub.client();
    let r = carol
        .send(
            Method::GET,
            "/hub/login?next=%2Fhub%2Fhome",
            None,
            &[(header::AUTHORIZATION, carol_jwt.clone())],
        )
        .await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.text());
    assert_eq!(r.location(), "/hub/home");
    assert!(carol.cookies.contains_key("edgehub-token"));

    // A token whose platform session never existed is refused, saying why.
    let r = hub
        .client()
        .get(&format!("/hub/login?token={}", platform_token("dave")))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.text().contains("the platform session has ended"), "{}", r.text());

    // The platform's Redis goes away: a login cannot be checked, which is no wrong password.
    // (Erin's session was never seen, so no grace period covers it.)
    redis.kill();
    let r = hub
        .client()
        .get(&format!("/hub/login?token={}", platform_token("erin")))
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
    assert!(
        r.text().contains("cannot be reached"),
        "the page says what is wrong: {}",
        r.text()
    );
    hub.stop().await;
}
