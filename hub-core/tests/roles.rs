//! Configured roles (`[[roles]]`, JupyterHub's `load_roles`) on a teaching hub: the members of
//! `instructors` may list and read their students, use, stop and start their servers, through
//! the REST API, the admin page and the front door; nobody else's. A change of groups counts within a second, for the
//! visitor (who joins the instructors) and for the owner (who joins or leaves the students).

mod support;

use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use serde_json::json;
use support::*;

fn instructor_role() -> config::RoleConfig {
    config::RoleConfig {
        name: "instructor".into(),
        description: "teaches the students".into(),
        scopes: vec![
            "access:servers!group=students".into(),
            "servers!group=students".into(),
            "read:users!group=students".into(),
            "list:users!group=students".into(),
            "admin-ui".into(),
        ],
        users: vec!["prof".into()],
        groups: vec!["instructors".into()],
        services: vec![],
    }
}

/// Polls `path` as `client` until its status is `want`, for at most `limit`.
async fn eventually(client: &mut Client, path: &str, want: StatusCode, limit: Duration, what: &str) {
    let began = Instant::now();
    loop {
        let got = client.get(path).await.status;
        if got == want {
            return;
        }
        assert!(began.elapsed() < limit, "{what}: still {got} after {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instructors_reach_their_students_servers_and_no_one_elses() {
    let dir = temp_dir("roles");
    let mut config = test_config(&dir);
    // tina tutors a group with no members yet: her `list:users` reaches no one, so far.
    let tutor = config::RoleConfig {
        name: "tutor".into(),
        description: String::new(),
        scopes: vec!["list:users!group=tutees".into()],
        users: vec!["tina".into()],
        groups: vec![],
        services: vec![],
    };
    config.roles = vec![instructor_role(), tutor];
    let hub = TestHub::start(config).await;
    let mut admin = hub.admin();
    let r = admin
        .api(
            Method::POST,
            "/users",
            Some(json!({"usernames": ["alice", "bob", "prof", "tina"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    for (group, members) in [("students", json!(["alice"])), ("instructors", json!([]))] {
        let r = admin
            .api(
                Method::POST,
                &format!("/groups/{group}"),
                Some(json!({"users": members})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    }
    start_server(&mut admin, "alice").await;
    start_server(&mut admin, "bob").await;
    let mut prof = hub.login("prof").await;
    let mut tina = hub.login("tina").await;

    // The role shows on prof's model and in what his token holds.
    let r = prof.api(Method::GET, "/user", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let me = r.json();
    assert_eq!(me["roles"], json!(["user", "instructor"]), "{me}");
    let scopes = me["scopes"].as_array().unwrap();
    for held in [
        "access:servers!group=students",
        "read:users:name!group=students",
        "admin-ui",
    ] {
        assert!(scopes.contains(&json!(held)), "{held} missing from {me}");
    }
    assert_eq!(
        admin.api(Method::GET, "/users/prof", None).await.json()["roles"],
        json!(["user", "instructor"])
    );

    // The REST API: a student's model, not anyone else's.
    assert_eq!(prof.api(Method::GET, "/users/alice", None).await.status, StatusCode::OK);
    assert_eq!(
        prof.api(Method::GET, "/users/bob", None).await.status,
        StatusCode::FORBIDDEN
    );
    // `list:users!group=students` lists the students only; the admin page shows them, not bob.
    let listed = prof.api(Method::GET, "/users", None).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text());
    let models = listed.json();
    let names: Vec<&str> = models
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|u| u["name"].as_str())
        .collect();
    assert_eq!(names, ["alice"], "{}", listed.text());
    let admin_page = prof.get("/hub/admin").await;
    assert_eq!(admin_page.status, StatusCode::OK, "admin-ui: {}", admin_page.text());
    let html = admin_page.text();
    assert!(html.contains("alice") && !html.contains("bob"), "{html}");
    assert!(html.contains(">Admin</a>"), "the header links the admin page");
    let r = tina.api(Method::GET, "/users", None).await;
    assert_eq!(
        (r.status, r.json()),
        (StatusCode::OK, json!([])),
        "a filter that reaches no one yet"
    );
    let mut bob_client = hub.login("bob").await;
    let r = bob_client.api(Method::GET, "/users", None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "no list:users at all: {}", r.text());
    assert_eq!(tina.get("/hub/admin").await.status, StatusCode::FORBIDDEN);

    // The front door: alice's server admits prof, bob's does not; tina is no instructor.
    let r = prof.get("/user/alice/api/status").await;
    assert_eq!(r.status, StatusCode::OK, "prof at alice's server: {}", r.text());
    assert_eq!(prof.get("/user/bob/api/status").await.status, StatusCode::FORBIDDEN);
    assert_eq!(tina.get("/user/alice/api/status").await.status, StatusCode::FORBIDDEN);
    assert_eq!(
        tina.api(Method::GET, "/users/alice", None).await.status,
        StatusCode::FORBIDDEN
    );

    // A token holds no more than its owner: alice's model is within prof's role, bob's is not.
    let r = prof
        .api(
            Method::POST,
            "/users/prof/tokens",
            Some(json!({"scopes": ["read:users!user=alice"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let r = prof
        .api(
            Method::POST,
            "/users/prof/tokens",
            Some(json!({"scopes": ["read:users!user=bob"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());

    // tina joins the instructors: her session reaches alice's server without signing in again.
    let r = admin
        .api(
            Method::POST,
            "/groups/instructors/users",
            Some(json!({"users": ["tina"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    eventually(
        &mut tina,
        "/user/alice/api/status",
        StatusCode::OK,
        Duration::from_secs(2),
        "tina, now an instructor",
    )
    .await;
    assert_eq!(tina.api(Method::GET, "/users/alice", None).await.status, StatusCode::OK);

    // bob becomes a student: his server's route names the instructors within a second.
    let r = admin
        .api(Method::POST, "/groups/students/users", Some(json!({"users": ["bob"]})))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(prof.api(Method::GET, "/users/bob", None).await.status, StatusCode::OK);
    eventually(
        &mut prof,
        "/user/bob/api/status",
        StatusCode::OK,
        Duration::from_secs(1),
        "prof at bob's server once bob is a student",
    )
    .await;

    // `servers!group=students`: prof stops and starts a student's server.
    let r = prof.api(Method::DELETE, "/users/alice/server", None).await;
    assert!(r.status.is_success(), "prof stopping alice's server: {}", r.text());
    let r = prof.api(Method::POST, "/users/alice/server", None).await;
    assert!(r.status.is_success(), "prof starting alice's server: {}", r.text());

    // bob leaves the students: prof is refused by the API at once, and at his server within a
    // second (the groups API writes the routes a role's group filter decides before answering).
    let r = admin
        .api(
            Method::DELETE,
            "/groups/students/users",
            Some(json!({"users": ["bob"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(
        prof.api(Method::GET, "/users/bob", None).await.status,
        StatusCode::FORBIDDEN
    );
    eventually(
        &mut prof,
        "/user/bob/api/status",
        StatusCode::FORBIDDEN,
        Duration::from_secs(1),
        "prof at bob's server once bob left the students",
    )
    .await;
    hub.stop().await;
}
