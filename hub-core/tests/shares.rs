//! Sharing a server (JupyterHub 5's `/hub/api/shares`): the owner shares her server with a user
//! or a group, the edge lets them in because the route carries the grant, the grantee's token
//! reports the access scope a notebook server checks, and a revoked share is refused at the
//! edge within a second. Only the owner (or an admin) manages her shares.

mod support;

use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use serde_json::json;
use support::*;

/// Polls `client` on alice's server until it gets `want`, for at most a second.
async fn within_a_second(client: &mut Client, want: StatusCode, what: &str) {
    first_within_a_second(client, |got| got == want, what).await;
}

/// Polls `client` on alice's server until its answer's status is `wanted`, for at most a
/// second, and returns that status.
async fn first_within_a_second(client: &mut Client, wanted: impl Fn(StatusCode) -> bool, what: &str) -> StatusCode {
    let began = Instant::now();
    loop {
        let got = client.get("/user/alice/api/status").await.status;
        if wanted(got) {
            return got;
        }
        assert!(
            began.elapsed() < Duration::from_secs(1),
            "{what}: still {got} a second later"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_server_admits_its_grantees_until_the_share_is_revoked() {
    let dir = temp_dir("shares");
    let hub = TestHub::start(test_config(&dir)).await;
    let mut admin = hub.admin();
    let r = admin
        .api(
            Method::POST,
            "/users",
            Some(json!({"usernames": ["alice", "bob", "carol", "dave"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let r = admin
        .api(Method::POST, "/groups/proj", Some(json!({"users": ["carol"]})))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    start_server(&mut admin, "alice").await;

    let mut alice = hub.login("alice").await;
    let mut bob = hub.login("bob").await;
    let mut carol = hub.login("carol").await;
    let mut dave = hub.login("dave").await;
    assert_eq!(bob.get("/user/alice/api/status").await.status, StatusCode::FORBIDDEN);

    // Alice shares her server with bob: the edge lets him in, his token says so.
    let r = alice
        .api(Method::POST, "/shares/alice/", Some(json!({"user": "bob"})))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let share = r.json();
    assert_eq!(share["kind"], "user");
    assert_eq!(share["user"]["name"], "bob");
    assert_eq!(share["group"], serde_json::Value::Null);
    assert_eq!(share["server"]["user"]["name"], "alice");
    assert_eq!(share["server"]["ready"], true);
    assert_eq!(share["scopes"], json!(["access:servers!server=alice/"]));
    within_a_second(&mut bob, StatusCode::OK, "bob after the share").await;
    let r = bob.api(Method::GET, "/user", None).await;
    assert!(
        r.json()["scopes"]
            .as_array()
            .unwrap()
            .contains(&json!("access:servers!server=alice/")),
        "{}",
        r.text()
    );
    let r = bob.api(Method::GET, "/users/bob/shared", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["items"][0]["server"]["user"]["name"], "alice", "{}", r.text());
    // Sharing is the owner's: bob cannot pass it on, nor see alice's list.
    let r = bob
        .api(Method::POST, "/shares/alice/", Some(json!({"user": "dave"})))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    assert_eq!(
        bob.api(Method::GET, "/shares/alice", None).await.status,
        StatusCode::FORBIDDEN
    );

    // Alice revokes: bob is refused within a second.
    let r = alice
        .api(Method::PATCH, "/shares/alice/", Some(json!({"user": "bob"})))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json(), json!({}));
    within_a_second(&mut bob, StatusCode::FORBIDDEN, "bob after the revocation").await;

    // Shared with a group: its member carol gets in, dave does not.
    let r = alice
        .api(Method::POST, "/shares/alice/", Some(json!({"group": "proj"})))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["kind"], "group");
    within_a_second(&mut carol, StatusCode::OK, "carol, of the group").await;
    assert_eq!(dave.get("/user/alice/api/status").await.status, StatusCode::FORBIDDEN);
    let r = admin.api(Method::GET, "/groups/proj/shared", None).await;
    assert_eq!(r.json()["_pagination"]["total"], 1, "{}", r.text());
    let r = alice.api(Method::GET, "/shares/alice", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["items"].as_array().unwrap().len(), 1, "{}", r.text());

    // Bad requests are named; nothing changes.
    for (body, status) in [
        (json!({"user": "bob", "group": "proj"}), StatusCode::BAD_REQUEST),
        (json!({"user": "nobody"}), StatusCode::BAD_REQUEST),
        (json!({}), StatusCode::BAD_REQUEST),
        (
            json!({"user": "bob", "scopes": ["admin:users"]}),
            StatusCode::BAD_REQUEST,
        ),
        (json!({"user": "bob", "extra": 1}), StatusCode::BAD_REQUEST),
    ] {
        let r = alice.api(Method::POST, "/shares/alice/", Some(body.clone())).await;
        assert_eq!(r.status, status, "{body}: {}", r.text());
    }
    let r = alice
        .api(Method::POST, "/shares/alice/nosuch", Some(json!({"user": "bob"})))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text());
    assert_eq!(bob.get("/user/alice/api/status").await.status, StatusCode::FORBIDDEN);

    // Revoking every share of the server closes it to the group too.
    let r = alice.api(Method::DELETE, "/shares/alice/", None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    within_a_second(&mut carol, StatusCode::FORBIDDEN, "carol after every share went").await;
    hub.stop().await;
}

/// Polls `client` on alice's server until it is no longer let in, for at most a second.
async fn refused_within_a_second(client: &mut Client, what: &str) -> StatusCode {
    first_within_a_second(client, |got| got != StatusCode::OK, what).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_a_group_losing_admin_or_being_deleted_ends_what_the_session_token_said() {
    // The edge admits by the session token's `groups` and `admin` claims, written at login: a
    // change that makes them untrue must end the sessions, or a token would keep what it
    // granted for a whole session lifetime.
    let dir = temp_dir("stale-claims");
    let hub = TestHub::start(test_config(&dir)).await;
    let mut admin = hub.admin();
    let r = admin
        .api(
            Method::POST,
            "/users",
            Some(json!({"usernames": ["alice", "carol", "dave", "frank", "gina"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let r = admin
        .api(
            Method::POST,
            "/groups/proj",
            Some(json!({"users": ["carol", "dave", "gina"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let r = admin
        .api(Method::PATCH, "/users/frank", Some(json!({"admin": true})))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    start_server(&mut admin, "alice").await;
    let mut alice = hub.login("alice").await;
    let r = alice
        .api(Method::POST, "/shares/alice/", Some(json!({"group": "proj"})))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());

    let mut carol = hub.login("carol").await;
    let mut dave = hub.login("dave").await;
    let mut frank = hub.login("frank").await;
    let mut gina = hub.login("gina").await;
    for (who, client) in [
        ("carol", &mut carol),
        ("dave", &mut dave),
        ("frank", &mut frank),
        ("gina", &mut gina),
    ] {
        within_a_second(client, StatusCode::OK, who).await;
    }

    // Carol leaves the group: her token still names it, so her session ends.
    let r = admin
        .api(Method::DELETE, "/groups/proj/users", Some(json!({"users": ["carol"]})))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let status = refused_within_a_second(&mut carol, "carol, out of the group").await;
    assert!(
        [StatusCode::FOUND, StatusCode::UNAUTHORIZED].contains(&status),
        "sent to log in again, not forbidden: {status}"
    );
    assert_eq!(
        carol.api(Method::GET, "/user", None).await.status,
        StatusCode::FORBIDDEN,
        "the hub no longer knows her session either"
    );
    // Logged in again, her token says what is true now: the group's share no longer applies.
    let mut carol = hub.login("carol").await;
    assert_eq!(carol.get("/user/alice/api/status").await.status, StatusCode::FORBIDDEN);
    // Dave, still in the group, was not logged out.
    assert_eq!(dave.get("/user/alice/api/status").await.status, StatusCode::OK);

    // Frank is an admin no more: his token's admin claim goes with his session.
    let r = admin
        .api(Method::PATCH, "/users/frank", Some(json!({"admin": false})))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    refused_within_a_second(&mut frank, "frank, no longer an admin").await;
    let mut frank = hub.login("frank").await;
    assert_eq!(frank.get("/user/alice/api/status").await.status, StatusCode::FORBIDDEN);

    // Dave is deleted: his session ends with him.
    let r = admin.api(Method::DELETE, "/users/dave", None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    refused_within_a_second(&mut dave, "dave, deleted").await;

    // The group is deleted: every member's session ends.
    let r = admin.api(Method::DELETE, "/groups/proj", None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    refused_within_a_second(&mut gina, "gina, whose group is gone").await;
    // Alice, who is in no group and changed nothing, is still signed in.
    assert_eq!(alice.get("/user/alice/api/status").await.status, StatusCode::OK);
    hub.stop().await;
}

/// A project server: one account's server shared with a group with `servers` as well as
/// `access:servers`, so every member can start it, open it and stop it; no one else can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joining_a_group_reaches_its_shared_servers_without_signing_in_again() {
    // The session token's `groups` claim was written at login; the edge asks the hub what is
    // true now before it refuses, so a user added to a group gets in at once.
    let dir = temp_dir("join-group");
    let hub = TestHub::start(test_config(&dir)).await;
    let mut admin = hub.admin();
    let r = admin
        .api(
            Method::POST,
            "/users",
            Some(json!({"usernames": ["alice", "carol", "dave"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let r = admin
        .api(Method::POST, "/groups/proj", Some(json!({"users": []})))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    start_server(&mut admin, "alice").await;
    let mut alice = hub.login("alice").await;
    let r = alice
        .api(Method::POST, "/shares/alice/", Some(json!({"group": "proj"})))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());

    let mut carol = hub.login("carol").await;
    let mut dave = hub.login("dave").await;
    assert_eq!(carol.get("/user/alice/api/status").await.status, StatusCode::FORBIDDEN);

    // Carol joins the group after she signed in: her next request gets in, no new login.
    let r = admin
        .api(Method::POST, "/groups/proj/users", Some(json!({"users": ["carol"]})))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(carol.get("/user/alice/api/status").await.status, StatusCode::OK);
    // Dave, not in the group, is still refused, however often he asks.
    for _ in 0..5 {
        assert_eq!(dave.get("/user/alice/api/status").await.status, StatusCode::FORBIDDEN);
    }
    // In a browser he is told so on the hub's page, not in JSON.
    let page = dave
        .send(
            Method::GET,
            "/user/alice/lab",
            None,
            &[(http::header::ACCEPT, "text/html,*/*;q=0.8".to_owned())],
        )
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(
        page.text()
            .contains("it is not yours, and it has not been shared with you"),
        "{}",
        page.text()
    );

    // The share is revoked: the hub's earlier answer (carol is in proj) does not outlive it.
    let r = alice
        .api(Method::PATCH, "/shares/alice/", Some(json!({"group": "proj"})))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    within_a_second(&mut carol, StatusCode::FORBIDDEN, "carol after the group's share went").await;

    // Dave made an admin after signing in reaches every server at once too.
    let r = admin
        .api(Method::PATCH, "/users/dave", Some(json!({"admin": true})))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(dave.get("/user/alice/api/status").await.status, StatusCode::OK);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_member_of_a_project_group_starts_opens_and_stops_its_server() {
    let dir = temp_dir("project-server");
    let hub = TestHub::start(test_config(&dir)).await;
    let mut admin = hub.admin();
    let r = admin
        .api(
            Method::POST,
            "/users",
            Some(json!({"usernames": ["proj-42", "carol", "dave", "eve"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let r = admin
        .api(
            Method::POST,
            "/groups/proj-42",
            Some(json!({"users": ["carol", "dave"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let r = admin
        .api(
            Method::POST,
            "/shares/proj-42/",
            Some(json!({"group": "proj-42", "scopes": ["access:servers", "servers"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(
        r.json()["scopes"],
        json!(["access:servers!server=proj-42/", "servers!server=proj-42/"]),
        "filtered to the server"
    );

    let mut carol = hub.login("carol").await;
    let mut dave = hub.login("dave").await;
    let mut eve = hub.login("eve").await;
    // Carol opens it: not running, the page offers to start it (as for any server not one's
    // own), and its Start link starts it.
    let r = carol.get("/hub/user/proj-42/").await;
    assert_eq!(r.status.as_u16(), 424, "{}", r.text());
    assert!(r.text().contains("/hub/spawn/proj-42"), "{}", r.text());
    let r = carol.get("/hub/spawn/proj-42").await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.text());
    assert_eq!(r.location(), "/hub/spawn-pending/proj-42");
    let events = follow_progress(&mut carol, "/hub/api/users/proj-42/server/progress").await;
    assert_eq!(events.last().unwrap()["ready"], true, "{events:?}");
    // Both members open it; eve neither opens nor starts nor stops it.
    for member in [&mut carol, &mut dave] {
        let r = member.get("/user/proj-42/api/status").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    }
    assert_eq!(eve.get("/user/proj-42/api/status").await.status, StatusCode::FORBIDDEN);
    let r = eve.api(Method::DELETE, "/users/proj-42/server", None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    assert_eq!(eve.get("/hub/user/proj-42/").await.status, StatusCode::FORBIDDEN);
    assert_eq!(eve.get("/hub/spawn/proj-42").await.status, StatusCode::FORBIDDEN);
    // A member may not pass the project on, nor act on the account's other things.
    let r = dave
        .api(Method::POST, "/shares/proj-42/", Some(json!({"user": "eve"})))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    assert_eq!(
        dave.api(Method::GET, "/users/proj-42/tokens", None).await.status,
        StatusCode::FORBIDDEN
    );
    // Dave stops it.
    let r = dave.api(Method::DELETE, "/users/proj-42/server", None).await;
    assert!(r.status.is_success(), "{}", r.text());
    let began = Instant::now();
    while hub.admin().api(Method::GET, "/users/proj-42", None).await.json()["servers"]
        .as_object()
        .is_some_and(|s| !s.is_empty())
    {
        assert!(began.elapsed() < Duration::from_secs(10), "the project server stops");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    hub.stop().await;
}

/// A share code: made by the owner, shown once, exchanged by whoever opens its link and
/// accepts, counted, and gone when deleted or expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_code_is_exchanged_for_a_share_by_whoever_accepts_it() {
    let dir = temp_dir("share-codes");
    let hub = TestHub::start(test_config(&dir)).await;
    let mut admin = hub.admin();
    let r = admin
        .api(
            Method::POST,
            "/users",
            Some(json!({"usernames": ["alice", "bob", "carol", "dan"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    start_server(&mut admin, "alice").await;
    let mut alice = hub.login("alice").await;
    let mut bob = hub.login("bob").await;
    let mut carol = hub.login("carol").await;

    let r = alice
        .api(Method::POST, "/share-codes/alice/", Some(json!({"expires_in": 3600})))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let made = r.json();
    let code = made["code"].as_str().unwrap().to_owned();
    let accept_url = made["accept_url"].as_str().unwrap().to_owned();
    assert_eq!(accept_url, format!("/hub/accept-share?code={code}"));
    assert_eq!(made["scopes"], json!(["access:servers!server=alice/"]));
    assert_eq!(made["exchange_count"], 0);
    let r = alice
        .api(Method::POST, "/share-codes/alice/", Some(json!({"expires_in": 30})))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "too short a life: {}", r.text());
    assert_eq!(
        bob.api(Method::POST, "/share-codes/alice/", Some(json!({})))
            .await
            .status,
        StatusCode::FORBIDDEN,
        "only the owner makes codes"
    );

    // Bob opens the link: the page says whose server and what accepting grants.
    assert_eq!(bob.get("/user/alice/api/status").await.status, StatusCode::FORBIDDEN);
    let page = bob.get(&accept_url).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    assert!(page.text().contains("alice&#39;s server"), "{}", page.text());
    assert!(page.text().contains("access:servers!server=alice/"));
    let xsrf = bob.cookies.get("_xsrf").cloned().unwrap();
    let r = bob
        .post_form("/hub/accept-share", &[("code", &code), ("_xsrf", &xsrf)])
        .await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.text());
    assert_eq!(r.location(), "/user/alice/");
    assert_eq!(bob.get("/user/alice/api/status").await.status, StatusCode::OK);
    let r = alice.api(Method::GET, "/shares/alice/", None).await;
    assert_eq!(r.json()["items"][0]["user"]["name"], "bob", "{}", r.text());
    let r = alice.api(Method::GET, "/share-codes/alice", None).await;
    assert_eq!(r.json()["items"][0]["exchange_count"], 1, "{}", r.text());
    assert!(
        r.json()["items"][0].get("code").is_none(),
        "a code is shown only when made"
    );
    // Share lists are paged as JupyterHub pages them, the next page's URL absolute.
    let r = alice
        .api(Method::POST, "/shares/alice/", Some(json!({"user": "dan"})))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let page = alice.api(Method::GET, "/shares/alice/?limit=1", None).await.json();
    assert_eq!(page["_pagination"]["total"], 2, "{page}");
    let next = page["_pagination"]["next"]["url"].as_str().unwrap_or_default();
    assert!(
        next.starts_with("http://") && next.ends_with("/hub/api/shares/alice/?offset=1&limit=1"),
        "{page}"
    );

    // Alice cannot accept her own; after deletion nobody can.
    assert_eq!(alice.get(&accept_url).await.status, StatusCode::FORBIDDEN);
    let id = made["id"].as_str().unwrap();
    let r = alice
        .api(Method::DELETE, &format!("/share-codes/alice/?id={id}"), None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    assert_eq!(carol.get(&accept_url).await.status, StatusCode::NOT_FOUND);
    let xsrf = carol.cookies.get("_xsrf").cloned().unwrap();
    let r = carol
        .post_form("/hub/accept-share", &[("code", &code), ("_xsrf", &xsrf)])
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text());
    assert_eq!(carol.get("/user/alice/api/status").await.status, StatusCode::FORBIDDEN);
    hub.stop().await;
}
