//! jupyterhub-idle-culler (pip, unchanged) culls idle servers on edgehub through the REST API:
//! paginated `GET /users?state=ready`, then `DELETE /users/{name}/server`.

mod support;

use std::process::Stdio;
use std::time::Duration;

use http::Method;
use serde_json::json;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jupyterhub_idle_culler_culls_idle_servers_on_edgehub() {
    let python = pyenv_bin("python");
    let dir = temp_dir("culler");
    let hub = TestHub::start(test_config(&dir)).await;
    let mut admin = hub.admin();
    admin
        .api(
            Method::POST,
            "/users",
            Some(json!({"usernames": ["idle1", "idle2", "never"]})),
        )
        .await;
    for user in ["idle1", "idle2"] {
        admin.api(Method::POST, &format!("/users/{user}/server"), None).await;
        let events = follow_progress(&mut admin, &format!("/hub/api/users/{user}/server/progress")).await;
        assert_eq!(events.last().unwrap()["ready"], true);
    }

    let mut culler = tokio::process::Command::new(&python)
        .args([
            "-m",
            "jupyterhub_idle_culler",
            &format!("--url={}", hub.url("/hub/api")),
            "--timeout=2",
            "--cull-every=1",
            // One user per page, so the culler follows our pagination links.
            "--api-page-size=1",
        ])
        .env("JUPYTERHUB_API_TOKEN", ADMIN_TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run jupyterhub_idle_culler from the venv");

    let mut admin_poll = hub.admin();
    let mut culled = false;
    for _ in 0..200 {
        let ready = admin_poll.api(Method::GET, "/users?state=ready", None).await.json();
        if ready.as_array().is_some_and(|a| a.is_empty()) {
            culled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    culler.start_kill().ok();
    let output = culler.wait_with_output().await.unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(culled, "servers still running after 20 s; culler log:\n{log}");
    assert!(
        log.contains("Culling server idle1") || log.contains("idle1"),
        "culler log:\n{log}"
    );
    // The servers really stopped: routes gone, phase stopped.
    let routes = hub.running.hub.proxy.routes().await.unwrap();
    assert!(
        !routes.contains_key("/user/idle1") && !routes.contains_key("/user/idle2"),
        "{routes:?}"
    );
    hub.stop().await;
}
