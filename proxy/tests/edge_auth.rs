//! Edge authentication and authorization, black-box: the real binary with `--auth-config`, a real
//! `redis-server`, tokens signed here. Each test states the behaviour a user or attacker sees.
//! The in-process session store can only be written by a program embedding the proxy, so its
//! test embeds it as `edgehub up` does, and drives it over real sockets all the same.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use config::{AuthConfig, ProxyConfig};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use proxy::auth::session::render;
use serde_json::{Value, json};
use support::embedded::EmbeddedProxy;
use support::redis::RedisServer;
use support::*;

/// As long as HS384 needs (48 bytes, RFC 7518 §3.2).
const SECRET: &str = "test-hs384-secret-of-forty-eight-bytes-0123456789";
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/auth");

fn now() -> i64 {
    jsonwebtoken::get_current_timestamp() as i64
}

fn claims(sub: &str) -> Value {
    json!({"sub": sub, "exp": now() + 600, "iss": "https://login.test", "aud": "notebooks", "groups": []})
}

fn hs(claims: &Value) -> String {
    encode(
        &Header::new(Algorithm::HS384),
        claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn rs(kid: &str, key_file: &str, claims: &Value) -> String {
    let pem = std::fs::read(Path::new(FIXTURES).join(key_file)).unwrap();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_owned());
    encode(&header, claims, &EncodingKey::from_rsa_pem(&pem).unwrap()).unwrap()
}

/// Writes an auth config and returns the flag pair for it.
fn auth_config(name: &str, toml: &str) -> String {
    let dir = scratch_dir(&format!("auth-{name}"));
    let path = dir.join("auth.toml");
    std::fs::write(&path, toml).unwrap();
    path.to_str().unwrap().to_owned()
}

fn hs_config(redis: Option<&RedisServer>, extra: &str) -> String {
    let mut toml = format!(
        r#"
login_url = "/hub/login"
admin_claim = "admin"
{extra}

[[issuers]]
issuer = "https://login.test"
audiences = ["notebooks"]
algorithms = ["HS384"]
secret = "{SECRET}"
"#
    );
    if let Some(r) = redis {
        toml.push_str(&format!(
            "\n[session]\nredis_url = \"{}\"\nkey = \"auth_token_key:{{sub}}\"\ncache_ttl_ms = 300\nnegative_cache_ttl_ms = 100\ngrace_secs = 30\n",
            r.url()
        ));
    }
    toml
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn add_route(p: &Edgeproxy, key: &str, data: Value) {
    let r = p.api("POST", &format!("/api/routes{key}"), Some(&data.to_string()));
    assert_eq!(r.status, 201, "{}", r.text());
}

/// A proxy with the hub at `/` (public), alice's and bob's servers, and a project server.
struct Site {
    proxy: Edgeproxy,
    hub: Upstream,
    alice: Upstream,
    bob: Upstream,
    project: Upstream,
}

fn site(config_path: &str) -> Site {
    let hub = Upstream::echo("/");
    let alice = Upstream::echo("/user/alice");
    let bob = Upstream::echo("/user/bob");
    let project = Upstream::echo("/user/proj");
    let proxy = Edgeproxy::start(&["--default-target", &hub.target, "--auth-config", config_path]);
    add_route(
        &proxy,
        "/user/alice",
        json!({"target": alice.target, "user": "alice", "server_name": ""}),
    );
    add_route(&proxy, "/user/bob", json!({"target": bob.target, "user": "bob"}));
    add_route(
        &proxy,
        "/user/proj",
        json!({"target": project.target, "auth": "owner", "users": ["carol"], "group": "proj-42", "upstream_token": "srv-secret"}),
    );
    Site {
        proxy,
        hub,
        alice,
        bob,
        project,
    }
}

fn send(p: &Edgeproxy, path: &str, headers: &[(&str, &str)]) -> Response {
    request(p.public(), "GET", path, headers, None)
}

#[test]
fn each_user_reaches_only_their_own_server() {
    let mut redis = RedisServer::start();
    redis.cli(&["SET", "auth_token_key:alice", "1"]);
    redis.cli(&["SET", "auth_token_key:bob", "1"]);
    let s = site(&auth_config("owner", &hs_config(Some(&redis), "")));
    let alice = bearer(&hs(&claims("alice")));

    // Alice reaches her server; the upstream sees who she is and not her token.
    let r = send(
        &s.proxy,
        "/user/alice/api/contents",
        &[
            ("Authorization", &alice),
            ("X-Forwarded-User", "bob"),
            ("X-Auth-Request-User", "bob"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = s.alice.requests().pop().unwrap();
    assert_eq!(
        seen.header("x-forwarded-user"),
        Some("alice"),
        "forged identity replaced"
    );
    assert_eq!(seen.header("x-auth-request-user"), None);
    assert_eq!(seen.header("authorization"), None, "the token is stripped");

    // Her token on bob's server, directly or through path tricks, never reaches bob.
    for path in [
        "/user/bob/",
        "/user/alice/../bob/",
        "/user/alice/%2e%2e/bob/",
        "/user/alice/%2E%2E/bob/",
        "/user/alice%2F..%2Fbob/",
        "//user/bob/",
        "/USER/BOB/",
        "/user/alice/..%2Fbob/",
    ] {
        let r = send(&s.proxy, path, &[("Authorization", &alice)]);
        assert_ne!(r.status, 502, "{path}");
        if r.status == 200 {
            let where_ = r.json()["path"].as_str().unwrap_or_default().to_owned();
            assert!(!where_.is_empty(), "{path}: {}", r.text());
            assert_ne!(where_, "/user/bob", "{path} reached bob");
        }
    }
    assert!(s.bob.requests().is_empty(), "bob's server saw alice's requests");
    assert_eq!(send(&s.proxy, "/user/bob/", &[("Authorization", &alice)]).status, 403);

    // The cookie works too, and only the token cookie is removed.
    let cookie = format!("_xsrf=x; edgehub-token={}", hs(&claims("alice")));
    let r = send(&s.proxy, "/user/alice/tree", &[("Cookie", &cookie)]);
    assert_eq!(r.status, 200);
    assert_eq!(s.alice.requests().pop().unwrap().header("cookie"), Some("_xsrf=x"));

    // Admins reach every server; the hub route stays public.
    let mut admin = claims("root");
    admin["admin"] = json!(true);
    redis.cli(&["SET", "auth_token_key:root", "1"]);
    assert_eq!(
        send(&s.proxy, "/user/bob/", &[("Authorization", &bearer(&hs(&admin)))]).status,
        200
    );
    assert_eq!(send(&s.proxy, "/hub/login", &[]).status, 200);
    assert!(!s.hub.requests().is_empty());

    // A shared project server: listed users and group members, with the server's credential.
    redis.cli(&["SET", "auth_token_key:carol", "1"]);
    redis.cli(&["SET", "auth_token_key:dave", "1"]);
    redis.cli(&["SET", "auth_token_key:erin", "1"]);
    let carol = bearer(&hs(&claims("carol")));
    assert_eq!(send(&s.proxy, "/user/proj/", &[("Authorization", &carol)]).status, 200);
    assert_eq!(
        s.project.requests().pop().unwrap().header("authorization"),
        Some("token srv-secret")
    );
    let mut dave = claims("dave");
    dave["groups"] = json!(["proj-42"]);
    assert_eq!(
        send(&s.proxy, "/user/proj/", &[("Authorization", &bearer(&hs(&dave)))]).status,
        200
    );
    assert_eq!(
        send(
            &s.proxy,
            "/user/proj/",
            &[("Authorization", &bearer(&hs(&claims("erin"))))]
        )
        .status,
        403
    );
    redis.kill();
}

#[test]
fn bad_tokens_get_401_with_the_reason() {
    let s = site(&auth_config("badtokens", &hs_config(None, "")));
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = claims("alice");
        f(&mut c);
        c
    };
    let rsa_pub = std::fs::read(Path::new(FIXTURES).join("rsa1.pub")).unwrap();
    let cases: Vec<(String, &str)> = vec![
        (
            encode(
                &Header::new(Algorithm::HS384),
                &claims("alice"),
                &EncodingKey::from_secret(b"wrong"),
            )
            .unwrap(),
            "bad_signature",
        ),
        (hs(&with(&|c| c["exp"] = json!(now() - 120))), "expired"),
        (hs(&with(&|c| c["nbf"] = json!(now() + 120))), "not_yet_valid"),
        (hs(&with(&|c| c["iss"] = json!("https://evil.test"))), "wrong_issuer"),
        (hs(&with(&|c| c["aud"] = json!("other"))), "wrong_audience"),
        (
            hs(&with(&|c| drop(c.as_object_mut().unwrap().remove("sub")))),
            "missing_claim",
        ),
        // alg none, hand-made: {"alg":"none"} . {"sub":"alice","exp":9999999999}
        (
            "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSIsImV4cCI6OTk5OTk5OTk5OX0.".into(),
            "malformed_token",
        ),
        // Key confusion: HS256 signed with an RSA public key as the secret.
        (
            encode(
                &Header::new(Algorithm::HS256),
                &claims("alice"),
                &EncodingKey::from_secret(&rsa_pub),
            )
            .unwrap(),
            "algorithm_not_allowed",
        ),
        (rs("k1", "rsa1.key", &claims("alice")), "algorithm_not_allowed"),
        ("garbage".into(), "malformed_token"),
        ("x".repeat(9000), "oversized_token"),
    ];
    for (token, reason) in cases {
        let r = send(
            &s.proxy,
            "/user/alice/",
            &[("Authorization", &bearer(&token)), ("Accept", "application/json")],
        );
        assert_eq!(r.status, 401, "{reason}: {}", r.text());
        assert!(r.text().contains(reason), "wanted {reason}, got {}", r.text());
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    }
    assert!(s.alice.requests().is_empty(), "no bad token reached the server");
}

#[test]
fn browsers_are_sent_to_log_in_with_a_safe_next() {
    let s = site(&auth_config("browser", &hs_config(None, "")));
    let html = ("Accept", "text/html,application/xhtml+xml");
    let r = send(&s.proxy, "/user/alice/lab?path=a.ipynb", &[html]);
    assert_eq!(r.status, 302);
    assert_eq!(
        r.header("location"),
        Some("/hub/login?next=/user/alice/lab%3Fpath%3Da.ipynb")
    );
    // Paths that a browser would read as another host lose their `next`.
    for evil in ["/user/alice/%2F%2Fevil.example", "/user/alice/x\\y"] {
        let r = send(&s.proxy, evil, &[html]);
        assert_eq!(r.status, 302, "{evil}");
        let location = r.header("location").unwrap();
        assert!(
            !location.contains("//evil") && !location.contains('\\'),
            "{evil} -> {location}"
        );
    }
    // API clients get 401 JSON instead.
    let r = send(&s.proxy, "/user/alice/api/status", &[]);
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["status"], 401);
}

#[test]
fn a_revoked_session_is_refused_within_a_second() {
    let redis = RedisServer::start();
    redis.cli(&["SET", "auth_token_key:alice", "1"]);
    // A long positive TTL: only the pushed revocation can explain a quick refusal.
    let config = hs_config(Some(&redis), "").replace("cache_ttl_ms = 300", "cache_ttl_ms = 60000");
    let s = site(&auth_config("revoke", &config));
    let alice = bearer(&hs(&claims("alice")));
    assert_eq!(send(&s.proxy, "/user/alice/", &[("Authorization", &alice)]).status, 200);
    std::thread::sleep(Duration::from_millis(300)); // the subscriber is up by now
    assert_eq!(redis.cli(&["DEL", "auth_token_key:alice"]), "1");
    let revoked = Instant::now();
    loop {
        let status = send(&s.proxy, "/user/alice/", &[("Authorization", &alice)]).status;
        if status == 401 {
            break;
        }
        assert_eq!(status, 200);
        assert!(
            revoked.elapsed() < Duration::from_secs(1),
            "still accepted 1 s after revocation"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // A session that never existed is refused too, and the refusal is cached briefly.
    let r = send(
        &s.proxy,
        "/user/bob/",
        &[("Authorization", &bearer(&hs(&claims("bob"))))],
    );
    assert_eq!(r.status, 401, "{}", r.text());
}

#[test]
fn redis_down_fails_closed_then_recovers() {
    let mut redis = RedisServer::start();
    redis.cli(&["SET", "auth_token_key:alice", "1"]);
    redis.cli(&["SET", "auth_token_key:bob", "1"]);
    let s = site(&auth_config("redisdown", &hs_config(Some(&redis), "")));
    let alice = bearer(&hs(&claims("alice")));
    let bob = bearer(&hs(&claims("bob")));
    assert_eq!(send(&s.proxy, "/user/alice/", &[("Authorization", &alice)]).status, 200);

    redis.kill();
    std::thread::sleep(Duration::from_millis(400)); // past the 300 ms cache TTL
    // Alice was verified moments ago: the grace period carries her.
    assert_eq!(send(&s.proxy, "/user/alice/", &[("Authorization", &alice)]).status, 200);
    // Bob was never verified: refused with 503 and a clear message, never let through.
    let r = send(&s.proxy, "/user/bob/", &[("Authorization", &bob)]);
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.text().contains("session store unreachable"));
    assert!(s.bob.requests().is_empty());

    redis.restart();
    redis.cli(&["SET", "auth_token_key:bob", "1"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while send(&s.proxy, "/user/bob/", &[("Authorization", &bob)]).status != 200 {
        assert!(Instant::now() < deadline, "did not reconnect to Redis");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn websocket_handshakes_are_checked_and_lose_their_query_token() {
    let s = site(&auth_config("ws", &hs_config(None, "")));
    let token = hs(&claims("alice"));
    let addr = s.proxy.public();
    let path = format!("/user/alice/api/kernels/1/channels?session_id=s1&access_token={token}");
    let (mut ws, resp) = ws_connect(addr, &path).expect("alice's own kernel");
    assert_eq!(resp.status(), 101);
    let _ = ws_read_text(&mut ws);
    let seen = s.alice.requests().pop().unwrap();
    assert_eq!(
        seen.url, "/user/alice/api/kernels/1/channels?session_id=s1",
        "query token stripped"
    );
    assert_eq!(seen.header("x-forwarded-user"), Some("alice"));

    // Reads only the response head: an accepted upgrade keeps the connection open.
    let upgrade = |path: &str, extra: &str| {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let head = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
        );
        stream.write_all(head.as_bytes()).unwrap();
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
            buf.push(byte[0]);
        }
        parse_response(&buf).map(|r| r.status)
    };
    let q = format!("?access_token={token}");
    assert_eq!(upgrade(&format!("/user/bob/api/kernels/1/channels{q}"), ""), Some(403));
    assert_eq!(upgrade("/user/alice/api/kernels/1/channels", ""), Some(401));
    // Cross-site WebSocket hijacking: another origin is refused, the same host is fine.
    let evil = "Origin: https://evil.example\r\n";
    assert_eq!(
        upgrade(&format!("/user/alice/api/kernels/1/channels{q}"), evil),
        Some(403)
    );
    let same = format!("Origin: http://{addr}\r\n");
    assert_eq!(
        upgrade(&format!("/user/alice/api/kernels/1/channels{q}"), &same),
        Some(101)
    );
}

#[test]
fn headers_the_proxy_adds_survive_a_clients_connection_header() {
    // RFC 9110 §7.6.1 removes the fields that were received; what the proxy generates stays.
    let s = site(&auth_config("connection-named", &hs_config(None, "")));
    let alice = bearer(&hs(&claims("alice")));
    let mut carol = claims("carol");
    carol["groups"] = json!(["proj-42"]);
    let carol = bearer(&hs(&carol));
    for named in [
        "X-Forwarded-User",
        "x-forwarded-groups",
        "Authorization",
        "keep-alive, X-Forwarded-User, X-Forwarded-Groups, Authorization, X-Forwarded-For",
    ] {
        let r = send(
            &s.proxy,
            "/user/alice/x",
            &[("Authorization", &alice), ("Connection", named)],
        );
        assert_eq!(r.status, 200, "{named}: {}", r.text());
        let seen = s.alice.requests().pop().unwrap();
        assert_eq!(seen.header("x-forwarded-user"), Some("alice"), "{named}");
        assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"), "{named}");

        let r = send(
            &s.proxy,
            "/user/proj/x",
            &[("Authorization", &carol), ("Connection", named)],
        );
        assert_eq!(r.status, 200, "{named}: {}", r.text());
        let seen = s.project.requests().pop().unwrap();
        assert_eq!(seen.header("x-forwarded-user"), Some("carol"), "{named}");
        assert_eq!(seen.header("x-forwarded-groups"), Some("proj-42"), "{named}");
        assert_eq!(seen.header("authorization"), Some("token srv-secret"), "{named}");
    }
    // A header the client sent and named in Connection still goes: it was for this hop only.
    let r = send(
        &s.proxy,
        "/user/alice/x",
        &[
            ("Authorization", &alice),
            ("Connection", "X-Private"),
            ("X-Private", "1"),
        ],
    );
    assert_eq!(r.status, 200);
    assert_eq!(s.alice.requests().pop().unwrap().header("x-private"), None);

    // WebSocket handshakes: the tunnel's own Connection: Upgrade, and the identity, both arrive.
    let path = format!("/user/proj/api/kernels/1/channels?access_token={}", &carol[7..]);
    let addr = s.proxy.public();
    let stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut handshake = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        format!("ws://{addr}{path}").as_str(),
    )
    .unwrap();
    handshake.headers_mut().insert(
        "connection",
        "Upgrade, X-Forwarded-User, X-Forwarded-Groups, Authorization"
            .parse()
            .unwrap(),
    );
    let (mut ws, resp) =
        tokio_tungstenite::tungstenite::client::client(handshake, stream).unwrap_or_else(|e| panic!("handshake: {e}"));
    assert_eq!(resp.status(), 101);
    let _ = ws_read_text(&mut ws);
    let seen = s.project.requests().pop().unwrap();
    assert_eq!(seen.header("x-forwarded-user"), Some("carol"));
    assert_eq!(seen.header("x-forwarded-groups"), Some("proj-42"));
    assert_eq!(seen.header("authorization"), Some("token srv-secret"));
    assert_eq!(seen.header("upgrade"), Some("websocket"));

    // HTTP/2 has no Connection header (RFC 9113 §8.2.2; client libraries drop or refuse it, the
    // server resets a stream that has one): whatever a client tries, what reaches the server
    // carries the identity the proxy added.
    let h2 = |connection: Option<&'static str>| {
        let auth = carol.clone();
        block_on(async move {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (mut sender, conn) = hyper::client::conn::http2::handshake(
                hyper_util::rt::TokioExecutor::new(),
                hyper_util::rt::TokioIo::new(tcp),
            )
            .await
            .unwrap();
            tokio::spawn(conn);
            let mut req = http::Request::builder()
                .uri(format!("http://{addr}/user/proj/h2"))
                .header("authorization", auth);
            if let Some(c) = connection {
                req = req.header("connection", c);
            }
            let req = req.body(http_body_util::Empty::<bytes::Bytes>::new()).unwrap();
            sender.send_request(req).await.map(|r| r.status().as_u16())
        })
    };
    assert_eq!(h2(None).unwrap(), 200);
    let seen = s.project.requests().pop().unwrap();
    assert_eq!(seen.url, "/user/proj/h2");
    assert_eq!(seen.header("x-forwarded-user"), Some("carol"));
    assert_eq!(seen.header("authorization"), Some("token srv-secret"));
    let before = s.project.requests().len();
    let _ = h2(Some("X-Forwarded-User, Authorization"));
    for seen in &s.project.requests()[before..] {
        assert_eq!(seen.header("x-forwarded-user"), Some("carol"));
        assert_eq!(seen.header("authorization"), Some("token srv-secret"));
    }
}

#[test]
fn the_query_token_never_reaches_a_server() {
    // A URL lands in the server's logs; on a shared server, in front of other users.
    let s = site(&auth_config("query-token", &hs_config(None, "")));
    let token = hs(&claims("alice"));
    let r = send(
        &s.proxy,
        &format!("/user/alice/tree?path=a&access_token={token}"),
        &[("Cookie", &format!("edgehub-token={token}"))],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(s.alice.requests().pop().unwrap().url, "/user/alice/tree?path=a");
    // Read only on handshakes: a plain request with nothing but the query token is refused.
    let r = send(&s.proxy, &format!("/user/alice/tree?access_token={token}"), &[]);
    assert_eq!(r.status, 401);
    // Public routes (the hub's pages) lose it too, in any spelling.
    let r = send(
        &s.proxy,
        &format!("/hub/home?access%5Ftoken={token}&x=1&access_token={token}"),
        &[],
    );
    assert_eq!(r.status, 200);
    assert_eq!(s.hub.requests().pop().unwrap().url, "/hub/home?x=1");
    assert!(
        !s.proxy.log_text().contains(&token),
        "the token was logged:\n{}",
        s.proxy.log_text()
    );
}

#[test]
fn jwks_keys_rotate_on_an_unknown_kid() {
    let dir = scratch_dir("jwks-rotate");
    let jwks = dir.join("jwks.json");
    std::fs::copy(Path::new(FIXTURES).join("jwks1.json"), &jwks).unwrap();
    let toml = format!(
        r#"
[[issuers]]
algorithms = ["RS256"]
jwks_file = "{}"
jwks_min_refetch_secs = 1
"#,
        jwks.display()
    );
    let s = site(&auth_config("jwks", &toml));
    let mut c = claims("alice");
    c.as_object_mut().unwrap().remove("aud");
    let k1 = bearer(&rs("k1", "rsa1.key", &c));
    let k2 = bearer(&rs("k2", "rsa2.key", &c));
    assert_eq!(send(&s.proxy, "/user/alice/", &[("Authorization", &k1)]).status, 200);
    let r = send(&s.proxy, "/user/alice/", &[("Authorization", &k2)]);
    assert_eq!(r.status, 401);
    assert!(r.text().contains("unknown_key"), "{}", r.text());
    // The issuer publishes k2; the next unknown-kid refresh (at most once a second) picks it up.
    std::fs::copy(Path::new(FIXTURES).join("jwks12.json"), &jwks).unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(send(&s.proxy, "/user/alice/", &[("Authorization", &k2)]).status, 200);
    // A kid pointing at another key's slot does not verify.
    assert_eq!(
        send(
            &s.proxy,
            "/user/alice/",
            &[("Authorization", &bearer(&rs("k1", "rsa2.key", &c)))]
        )
        .status,
        401
    );
}

#[test]
fn auth_outcomes_and_cache_hits_are_metrics() {
    let redis = RedisServer::start();
    redis.cli(&["SET", "auth_token_key:alice", "1"]);
    let path = auth_config("metrics", &hs_config(Some(&redis), ""));
    let hub = Upstream::echo("/");
    let alice = Upstream::echo("/user/alice");
    let mut p = Edgeproxy::start(&[
        "--default-target",
        &hub.target,
        "--auth-config",
        &path,
        "--metrics-port",
        "0",
    ]);
    add_route(&p, "/user/alice", json!({"target": alice.target, "user": "alice"}));
    let token = bearer(&hs(&claims("alice")));
    for _ in 0..5 {
        assert_eq!(send(&p, "/user/alice/", &[("Authorization", &token)]).status, 200);
    }
    assert_eq!(send(&p, "/user/alice/", &[]).status, 401);
    let text = get(p.metrics_addr(), "/metrics").text();
    let value = |needle: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(needle))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{needle} missing from\n{text}"))
    };
    assert_eq!(value("edgeproxy_auth_requests_total{outcome=\"allowed\"}"), 5.0);
    assert_eq!(value("edgeproxy_auth_requests_total{outcome=\"no_token\"}"), 1.0);
    assert!(value("edgeproxy_auth_session_cache_total{result=\"hit\"}") >= 3.0);
    assert!(value("edgeproxy_auth_session_cache_total{result=\"miss\"}") >= 1.0);
    assert!(text.contains("edgeproxy_auth_redis_lookup_seconds"));
}

#[test]
fn bad_auth_configs_stop_the_start_with_a_clear_message() {
    let cases = [
        (
            "[[issuers]]\nalgorithms=[\"HS256\",\"RS256\"]\nsecret=\"x\"",
            "one family",
        ),
        (
            "[[issuers]]\nalgorithms=[\"RS256\"]\npublic_key_file=\"/nonexistent.pem\"",
            "/nonexistent.pem",
        ),
        ("colour = \"blue\"", "colour"),
        // Nothing could fill the in-process store of a proxy running alone.
        (
            "[[issuers]]\nalgorithms=[\"HS256\"]\nsecret=\"x\"\n[session]\nredis_url = \"memory:\"",
            "for a program embedding the proxy",
        ),
    ];
    for (toml, needle) in cases {
        let path = auth_config("badcfg", toml);
        let (code, out) = run_to_exit(&["--port", "0", "--api-port", "0", "--auth-config", &path]);
        assert_eq!(code, Some(1), "{toml}: {out}");
        assert!(out.contains(needle), "{toml}: wanted {needle:?} in {out}");
    }
}

#[test]
fn empty_and_short_hmac_keys_stop_the_start_naming_the_issuer_and_key() {
    // Before this was refused, a proxy with an empty key let anyone sign tokens for anyone.
    let dir = scratch_dir("short-keys");
    let empty_file = dir.join("empty.key");
    std::fs::write(&empty_file, "\n").unwrap();
    let issuer = |key: &str| format!("[[issuers]]\nissuer = \"https://login.test\"\nalgorithms = [\"HS384\"]\n{key}\n");
    let cases = [
        (issuer("secret = \"\""), "from secret is 0 bytes"),
        (
            issuer(&format!("secret_file = \"{}\"", empty_file.display())),
            "from secret_file ",
        ),
        (
            issuer("secret_env = \"EDGE_TEST_KEY\""),
            "from secret_env EDGE_TEST_KEY is 0 bytes",
        ),
        // One byte short of the hash output.
        (issuer(&format!("secret = \"{}\"", "k".repeat(47))), "is 47 bytes"),
    ];
    for (toml, needle) in cases {
        let path = auth_config("short-key", &toml);
        let (code, out) = run_to_exit_with_env(
            &["--port", "0", "--api-port", "0", "--auth-config", &path],
            &[("EDGE_TEST_KEY", "")],
        );
        assert_eq!(code, Some(1), "{toml}: {out}");
        assert!(
            out.contains("auth issuer \"https://login.test\"") && out.contains(needle),
            "{toml}: wanted the issuer and {needle:?} in {out}"
        );
        assert!(out.contains("HS384 needs at least 48"), "{out}");
    }
}

/// A hub's `GET /hub/api/user`, as JupyterHub answers it: alice's full token reaches her servers,
/// her read-only token nothing, bob's token his own; anything else is unknown (403). `mode`
/// turns the hub into one whose users are gone (`refusing`: 404) or that fails (`broken`).
fn fake_hub_api(mode: std::sync::Arc<std::sync::Mutex<&'static str>>) -> Upstream {
    Upstream::with(move |seen| {
        let model = |name: &str, scopes: Value| {
            json!({"kind": "user", "name": name, "admin": false, "groups": [], "scopes": scopes}).to_string()
        };
        match (*mode.lock().unwrap(), seen.header("authorization")) {
            ("broken", _) => Reply::new(500, "{}"),
            ("refusing", _) => Reply::new(404, r#"{"status": 404, "message": "No such user"}"#),
            (_, Some("token alice-token")) => Reply::new(
                200,
                model(
                    "alice",
                    json!(["self", "access:servers!user=alice", "read:users!user=alice"]),
                ),
            ),
            (_, Some("token alice-slow")) => {
                Reply::new(200, model("alice", json!(["access:servers"]))).after(Duration::from_millis(300))
            }
            (_, Some("token alice-read")) => Reply::new(200, model("alice", json!(["read:users!user=alice"]))),
            (_, Some("token bob-token")) => Reply::new(200, model("bob", json!(["access:servers!server=bob/"]))),
            _ => Reply::new(403, r#"{"status": 403, "message": "Forbidden"}"#),
        }
        .header("Content-Type", "application/json")
    })
}

#[test]
fn a_browser_refused_anothers_server_gets_a_page_and_a_script_gets_json() {
    let s = site(&auth_config("forbidden-page", &hs_config(None, "")));
    let alice = format!("edgehub-token={}", hs(&claims("alice")));
    let html = ("Accept", "text/html,application/xhtml+xml,*/*;q=0.8");

    // Alice's browser on bob's server: a page that says why, with the same 403.
    let r = send(&s.proxy, "/user/bob/lab", &[("Cookie", &alice), html]);
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("text/html"));
    assert!(r.text().contains("it is not yours"), "{}", r.text());
    // A script gets JSON, as before.
    let r = send(&s.proxy, "/user/bob/api/contents", &[("Cookie", &alice)]);
    assert_eq!(
        (r.status, r.json()["message"].as_str()),
        (403, Some("this server belongs to someone else"))
    );
    assert!(s.bob.requests().is_empty());

    // With --error-target (JupyterHub's /hub/error), the page is the hub's, asked for 403.
    let errors = Upstream::with(|_| Reply::new(200, "the hub's page").header("content-type", "text/html"));
    let config = auth_config("forbidden-target", &hs_config(None, ""));
    let error_target = format!("{}/hub/error", errors.target);
    let p = Edgeproxy::start(&["--auth-config", &config, "--error-target", &error_target]);
    add_route(&p, "/user/bob", json!({"target": s.bob.target, "user": "bob"}));
    let r = send(&p, "/user/bob/tree", &[("Cookie", &alice), html]);
    assert_eq!((r.status, r.text().as_str()), (403, "the hub's page"));
    assert_eq!(
        errors.requests().last().unwrap().url,
        "/hub/error/403?url=%2Fuser%2Fbob%2Ftree"
    );
    assert!(s.bob.requests().is_empty());
}

#[test]
fn jupyterhub_api_tokens_are_checked_with_the_hub_and_reach_only_what_their_scopes_say() {
    let mode = std::sync::Arc::new(std::sync::Mutex::new("serving"));
    let hub = fake_hub_api(mode.clone());
    let extra = format!("[hub_tokens]\nurl = \"{}/hub/api/user\"\ncache_secs = 1\n", hub.target);
    let s = site(&auth_config("hub-tokens", &hs_config(None, &extra)));
    let json_accept = ("Accept", "application/json");

    // Alice's token, in either scheme, reaches her server and stays in the request for it.
    for credential in ["token alice-token", "Bearer alice-token"] {
        let r = send(
            &s.proxy,
            "/user/alice/api/kernels",
            &[("Authorization", credential), json_accept],
        );
        assert_eq!(r.status, 200, "{credential}: {}", r.text());
        let seen = s.alice.requests().pop().unwrap();
        assert_eq!(seen.header("x-forwarded-user"), Some("alice"));
        assert_eq!(
            seen.header("authorization"),
            Some(credential),
            "the server checks it too"
        );
    }
    let asked = |token: &str| {
        let wanted = format!("token {token}");
        hub.requests()
            .iter()
            .filter(|r| r.url == "/hub/api/user" && r.header("authorization") == Some(wanted.as_str()))
            .count()
    };
    assert_eq!(asked("alice-token"), 1, "the hub's answer is reused");
    // A script's parallel calls with a token not yet known share one question to the hub.
    std::thread::scope(|threads| {
        let calls: Vec<_> = (0..8)
            .map(|_| threads.spawn(|| send(&s.proxy, "/user/alice/", &[("Authorization", "token alice-slow")]).status))
            .collect();
        for call in calls {
            assert_eq!(call.join().unwrap(), 200);
        }
    });
    assert_eq!(asked("alice-slow"), 1, "one question for eight parallel calls");

    // The scopes decide: not bob's server, not with a read-only token; bob reaches his own.
    let status = |path: &str, token: &str| {
        send(
            &s.proxy,
            path,
            &[("Authorization", &format!("token {token}")), json_accept],
        )
        .status
    };
    assert_eq!(status("/user/bob/", "alice-token"), 403);
    assert_eq!(status("/user/alice/", "alice-read"), 403);
    assert_eq!(status("/user/bob/", "bob-token"), 200);
    assert_eq!(status("/user/alice/", "bob-token"), 403);
    let r = send(
        &s.proxy,
        "/user/alice/",
        &[("Authorization", "token forged"), json_accept],
    );
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r.text().contains("API token"), "{}", r.text());
    assert!(
        s.bob
            .requests()
            .iter()
            .all(|r| r.header("authorization") == Some("token bob-token"))
    );

    // A browser's session cookie wins over a stale token sent beside it: the hub is not asked.
    let cookie = format!("edgehub-token={}", hs(&claims("alice")));
    let r = send(
        &s.proxy,
        "/user/alice/",
        &[("Cookie", &cookie), ("Authorization", "token stale")],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(asked("stale"), 0);

    // Gone at the hub: refused once the cached answer has aged out (cache_secs = 1). The
    // refusal is reused as an answer is: a script retrying with it does not ask the hub each time.
    *mode.lock().unwrap() = "refusing";
    std::thread::sleep(Duration::from_millis(1100));
    let before = asked("alice-token");
    for _ in 0..3 {
        assert_eq!(status("/user/alice/", "alice-token"), 401);
    }
    assert_eq!(asked("alice-token"), before + 1, "the refusal is reused");

    // A hub that fails, or is gone, is a 503: the request is never let through unchecked, and
    // the failure is not remembered. Alice's refusal has aged out by then: the hub is asked.
    *mode.lock().unwrap() = "broken";
    std::thread::sleep(Duration::from_millis(1100));
    let r = send(
        &s.proxy,
        "/user/alice/",
        &[("Authorization", "token alice-token"), json_accept],
    );
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(status("/user/alice/", "alice-token"), 503, "not a cached answer");
    assert_eq!(asked("alice-token"), before + 3);
    drop(hub);
    assert_eq!(status("/user/alice/", "alice-token"), 503);
}

#[test]
fn a_session_refused_by_its_claims_is_asked_about_again_with_the_hub() {
    // The hub's answer about dave's session, as its `GET /hub/api/user` gives it for the
    // session cookie: his groups and admin flag of now (`None`: the hub is failing).
    let answer: std::sync::Arc<std::sync::Mutex<Option<Value>>> = Default::default();
    let now = answer.clone();
    let hub = Upstream::with(move |seen| {
        let Some(model) = now.lock().unwrap().clone() else {
            return Reply::new(500, "{}");
        };
        if seen.header("cookie").is_none_or(|c| !c.starts_with("edgehub-token=ey")) {
            return Reply::new(403, r#"{"status": 403, "message": "Missing or invalid credentials"}"#);
        }
        Reply::new(200, model.to_string()).header("Content-Type", "application/json")
    });
    let dave_now = |groups: Value, admin: bool| {
        // The scopes a hub lists for a session's user; only the groups and admin flag count.
        Some(json!({"kind": "user", "name": "dave", "admin": admin, "groups": groups,
                    "scopes": ["self", "access:servers!user=dave"]}))
    };
    let extra = format!("[hub_tokens]\nurl = \"{}/hub/api/user\"\ncache_secs = 60\n", hub.target);
    let config = hs_config(None, &extra) + "recheck_with_hub = true\n";
    let s = site(&auth_config("recheck", &config));
    let dave = format!("edgehub-token={}", hs(&claims("dave")));
    let json_accept = ("Accept", "application/json");
    let status = |path: &str| send(&s.proxy, path, &[("Cookie", &dave), json_accept]).status;
    let asked = || hub.requests().iter().filter(|r| r.url == "/hub/api/user").count();

    // Not in the group when he signed in, nor now: refused, and each refusal asks again.
    *answer.lock().unwrap() = dave_now(json!([]), false);
    assert_eq!(status("/user/proj/"), 403);
    assert_eq!(status("/user/proj/"), 403);
    assert_eq!(asked(), 2, "an answer that grants nothing is not reused");
    assert!(s.project.requests().is_empty());

    // He joins proj-42: his old token gets in, and the server hears his groups of now.
    *answer.lock().unwrap() = dave_now(json!(["proj-42"]), false);
    let r = send(&s.proxy, "/user/proj/api", &[("Cookie", &dave), json_accept]);
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = s.project.requests().pop().unwrap();
    assert_eq!(seen.header("x-forwarded-user"), Some("dave"));
    assert_eq!(seen.header("x-forwarded-groups"), Some("proj-42"));
    assert_eq!(seen.header("authorization"), Some("token srv-secret"));
    assert_eq!(seen.header("cookie"), None, "the session token is taken out as always");
    assert_eq!(status("/user/proj/"), 200);
    assert_eq!(asked(), 3, "an answer that grants the route is reused");
    // The answer's scopes are not taken for access: alice's server stays closed to him.
    assert_eq!(status("/user/alice/"), 403);

    // The route's policy still decides: with the group's grant gone, the reused answer does
    // not open it.
    add_route(
        &s.proxy,
        "/user/proj",
        json!({"target": s.project.target, "auth": "owner", "users": ["carol"]}),
    );
    assert_eq!(status("/user/proj/"), 403);

    // Made an admin since: every server.
    *answer.lock().unwrap() = dave_now(json!([]), true);
    assert_eq!(status("/user/bob/"), 200);

    // An answer about someone else, or a failing hub, leaves the refusal standing (403).
    let erin = format!("edgehub-token={}", hs(&claims("erin")));
    let erin_status = || send(&s.proxy, "/user/bob/", &[("Cookie", &erin), json_accept]).status;
    assert_eq!(erin_status(), 403, "the hub answered for dave, not erin");
    *answer.lock().unwrap() = None;
    assert_eq!(erin_status(), 403);
    drop(hub);
    assert_eq!(erin_status(), 403);
}

#[test]
fn jwks_from_a_url_is_fetched_at_start_and_refreshed_on_an_unknown_kid() {
    let served = std::sync::Arc::new(std::sync::Mutex::new(
        std::fs::read(Path::new(FIXTURES).join("jwks1.json")).unwrap(),
    ));
    let document = served.clone();
    let issuer = Upstream::with(move |_| {
        Reply::new(200, document.lock().unwrap().clone()).header("Content-Type", "application/json")
    });
    let toml = format!(
        "[[issuers]]\nalgorithms = [\"RS256\"]\njwks_url = \"{}/.well-known/jwks.json\"\njwks_min_refetch_secs = 1\n",
        issuer.target
    );
    let s = site(&auth_config("jwks-url", &toml));
    let mut c = claims("alice");
    c.as_object_mut().unwrap().remove("aud");
    let k1 = bearer(&rs("k1", "rsa1.key", &c));
    let deadline = Instant::now() + Duration::from_secs(5);
    while send(&s.proxy, "/user/alice/", &[("Authorization", &k1)]).status != 200 {
        assert!(Instant::now() < deadline, "JWKS URL never fetched");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(issuer.requests()[0].url, "/.well-known/jwks.json");
    let k2 = bearer(&rs("k2", "rsa2.key", &c));
    *served.lock().unwrap() = std::fs::read(Path::new(FIXTURES).join("jwks12.json")).unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(send(&s.proxy, "/user/alice/", &[("Authorization", &k2)]).status, 200);
}

#[test]
fn the_session_value_must_match_and_a_published_revocation_evicts_at_once() {
    let redis = RedisServer::start();
    redis.cli(&["SET", "session:alice", "jti-1"]);
    // No keyspace events: only the revocation channel can evict before the 60 s TTL.
    let extra = format!(
        "\n[session]\nredis_url = \"{}\"\nkey = \"session:{{sub}}\"\nvalue = \"{{jti}}\"\ncache_ttl_ms = 60000\nkeyspace_events = false\n",
        redis.url()
    );
    let s = site(&auth_config("session-value", &(hs_config(None, "") + &extra)));
    let mut c = claims("alice");
    c["jti"] = json!("jti-1");
    let current = bearer(&hs(&c));
    c["jti"] = json!("jti-0");
    let older = bearer(&hs(&c));
    assert_eq!(
        send(&s.proxy, "/user/alice/", &[("Authorization", &current)]).status,
        200
    );
    std::thread::sleep(Duration::from_millis(300));
    // The session was replaced by a newer login: the old token's value no longer matches.
    redis.cli(&["SET", "session:alice", "jti-2"]);
    assert_eq!(send(&s.proxy, "/user/alice/", &[("Authorization", &older)]).status, 401);
    // The current token is still cached as live until the platform publishes the revocation.
    assert_eq!(
        send(&s.proxy, "/user/alice/", &[("Authorization", &current)]).status,
        200
    );
    assert_eq!(redis.cli(&["PUBLISH", "edgehub:revocations", "session:alice"]), "1");
    let published = Instant::now();
    while send(&s.proxy, "/user/alice/", &[("Authorization", &current)]).status != 401 {
        assert!(
            published.elapsed() < Duration::from_secs(1),
            "published revocation not applied within 1 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_embedder_starts_and_ends_sessions_in_process() {
    let toml =
        hs_config(None, "") + "\n[session]\nredis_url = \"memory:\"\nkey = \"session:{sub}\"\nvalue = \"{jti}\"\n";
    let auth = AuthConfig::from_toml(&toml).unwrap();
    let alice_server = Upstream::echo("/user/alice");
    let bob_server = Upstream::echo("/user/bob");
    let p = EmbeddedProxy::start(ProxyConfig {
        auth: Some(auth.clone()),
        ..ProxyConfig::default()
    });
    p.proxy.routes.update(|t| {
        for (key, user, target) in [
            ("/user/alice", "alice", &alice_server.target),
            ("/user/bob", "bob", &bob_server.target),
        ] {
            let data = json!({"target": target, "user": user});
            t.insert(key, data.as_object().unwrap().clone());
        }
    });
    let sessions = p
        .proxy
        .auth
        .as_ref()
        .unwrap()
        .local_sessions()
        .expect("memory: is in process");
    let send = |path: &str, token: &str| request(p.public(), "GET", path, &[("Authorization", &bearer(token))], None);

    // At login the embedder mints the token and records its session, rendered as the proxy will.
    let mut alice = claims("alice");
    alice["jti"] = json!("j1");
    let templates = auth.session.as_ref().unwrap();
    let key = render(&templates.key, alice.as_object().unwrap()).unwrap();
    let value = render(templates.value.as_deref().unwrap(), alice.as_object().unwrap()).unwrap();
    assert_eq!((key.as_str(), value.as_str()), ("session:alice", "j1"));
    sessions.insert(&key, &value);
    let token = hs(&alice);
    let r = send("/user/alice/", &token);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        alice_server.requests().pop().unwrap().header("x-forwarded-user"),
        Some("alice")
    );
    // An older token of hers names a value the record no longer holds.
    alice["jti"] = json!("j0");
    assert_eq!(send("/user/alice/", &hs(&alice)).status, 401);

    // At logout the record goes, and the very next request is refused: there is no cache.
    assert!(sessions.remove(&key));
    let r = send("/user/alice/", &token);
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r.text().contains("session ended"), "{}", r.text());
    assert_eq!(alice_server.requests().len(), 1);

    // A valid token whose session was never recorded gets nowhere either.
    let r = send("/user/bob/", &hs(&claims("bob")));
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(bob_server.requests().is_empty());
    assert!(sessions.is_empty());
}
