//! A stock `jupyterhub-singleuser` (JupyterHub 5.5.4 from pip) as the spawned server: it starts
//! with edgehub's environment contract, logs the browser in through the hub's OAuth flow, and its
//! API answers through the proxy, to the browser and to a script holding an API token.

mod support;

use http::{Method, StatusCode};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jupyterhub_singleuser_logs_in_through_the_hub_and_serves_through_the_proxy() {
    let singleuser = pyenv_bin("jupyterhub-singleuser");
    let venv_bin = singleuser.parent().unwrap().to_owned();
    let dir = temp_dir("singleuser");
    let mut config = test_config(&dir);
    config.spawner.command = Some(vec![
        singleuser.display().to_string(),
        "--ip=127.0.0.1".into(),
        "--port={port}".into(),
        "--allow-root".into(),
    ]);
    // Where the server opens and what it serves, as JupyterHub's `default_url` and
    // `notebook_dir`: `/` sends the browser to the status API, and the files are alice's own.
    config.spawner.default_url = Some("/api/status".into());
    config.spawner.notebook_dir = Some(format!("{}/home-{{username}}", dir.display()));
    std::fs::create_dir_all(dir.join("home-alice")).unwrap();
    std::fs::write(dir.join("home-alice/marker.txt"), "alice's").unwrap();
    config.spawner.working_dir = Some(dir.clone());
    config
        .spawner
        .environment
        .insert("HOME".into(), dir.display().to_string());
    config
        .spawner
        .environment
        .insert("PATH".into(), format!("{}:/usr/bin:/bin", venv_bin.display()));
    let hub = TestHub::start(config).await;
    let mut alice = hub.login("alice").await;
    assert_eq!(
        alice.api(Method::POST, "/users/alice/server", None).await.status,
        StatusCode::ACCEPTED
    );
    let events = follow_progress(&mut alice, "/hub/api/users/alice/server/progress").await;
    assert_eq!(events.last().unwrap()["ready"], true, "{events:?}");

    // The server sends the browser to the hub's OAuth endpoint, which sends it back with a code;
    // the server trades it for a token and sets its own cookie.
    // Not yet logged in to its server: the API refuses, and the login page sends the browser to
    // the hub's OAuth endpoint, which sends it back with a code that the server trades for a
    // token before setting its own cookie.
    let r = alice.get("/user/alice/api/status").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    let (last, visited) = follow(&mut alice, "/user/alice/files/notes.txt", 8).await;
    assert!(
        visited.iter().any(|p| p.starts_with("/hub/api/oauth2/authorize")),
        "the server did not use the hub's OAuth: {visited:?}, ending in {} {}",
        last.status,
        last.text().chars().take(600).collect::<String>()
    );
    assert!(
        visited.iter().any(|p| p.starts_with("/user/alice/oauth_callback")),
        "no callback: {visited:?}"
    );
    let status = alice.get("/user/alice/api/status").await;
    assert_eq!(status.status, StatusCode::OK, "{}", status.text());
    assert!(status.json()["started"].is_string(), "{}", status.text());
    let (opened, visited) = follow(&mut alice, "/user/alice/", 4).await;
    assert!(
        opened.status == StatusCode::OK && opened.json()["started"].is_string(),
        "/user/alice/ did not open at the default_url: {visited:?}, ending in {} {}",
        opened.status,
        opened.text()
    );
    let files = alice.get("/user/alice/api/contents").await;
    assert!(
        files.json()["content"]
            .as_array()
            .is_some_and(|c| c.iter().any(|f| f["name"] == "marker.txt")),
        "not serving notebook_dir: {}",
        files.text()
    );

    // Bob cannot get into alice's server, even through OAuth.
    let mut bob = hub.login("bob").await;
    let r = bob.get("/user/alice/api/status").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "the edge refuses bob");
    let client_id = "jupyterhub-user-alice";
    let r = bob
        .get(&format!("/hub/api/oauth2/authorize?client_id={client_id}&redirect_uri=%2Fuser%2Falice%2Foauth_callback&response_type=code"))
        .await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "the hub refuses bob a code: {}",
        r.text()
    );

    // Once alice shares her server with him, bob signs in to it through the same OAuth flow:
    // the hub gives him a code, and jupyterhub-singleuser finds the access scope it checks
    // (`access:servers!server=alice/`) in his token, which holds nothing of his own rights.
    let r = alice
        .api(Method::POST, "/shares/alice/", Some(serde_json::json!({"user": "bob"})))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let (last, visited) = follow(&mut bob, "/user/alice/files/notes.txt", 8).await;
    assert!(
        visited.iter().any(|p| p.starts_with("/user/alice/oauth_callback")),
        "bob did not come back with a code: {visited:?}, ending in {} {}",
        last.status,
        last.text().chars().take(600).collect::<String>()
    );
    let r = bob.get("/user/alice/api/status").await;
    assert_eq!(r.status, StatusCode::OK, "bob in alice's shared server: {}", r.text());
    let r = alice.api(Method::DELETE, "/shares/alice/", None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    let r = bob.get("/user/alice/api/status").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "the share is revoked: {}", r.text());

    // A script with alice's API token reaches her server's API through the front door: the edge
    // asks the hub whose token it is, and jupyterhub-singleuser, seeing the same token, asks too.
    let full = created_token(
        alice
            .api(Method::POST, "/users/alice/tokens", Some(serde_json::json!({})))
            .await,
    );
    let read_only = created_token(
        alice
            .api(
                Method::POST,
                "/users/alice/tokens",
                Some(serde_json::json!({"scopes": ["read:users!user=alice"]})),
            )
            .await,
    );
    let r = hub.with_token(&full).get("/user/alice/api/contents").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["type"], "directory", "{}", r.text());
    let r = hub.with_token(&read_only).get("/user/alice/api/contents").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "a read-only token: {}", r.text());
    let bobs = created_token(
        bob.api(Method::POST, "/users/bob/tokens", Some(serde_json::json!({})))
            .await,
    );
    let r = hub.with_token(&bobs).get("/user/alice/api/contents").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "bob's token: {}", r.text());

    let mut admin = hub.admin();
    assert_eq!(
        admin.api(Method::DELETE, "/users/alice/server", None).await.status,
        StatusCode::NO_CONTENT
    );
    hub.stop().await;
}
