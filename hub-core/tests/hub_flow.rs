//! `edgehub up` end to end over real sockets: login, spawn through the proxy, the progress
//! stream, the edge owner check, stop, logout revoking the session at the edge, limits, and a hub
//! restart that re-adopts a running server.

mod support;

use std::time::Duration;

use http::{Method, StatusCode, header};
use serde_json::json;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_logs_in_spawns_and_reaches_only_their_own_server() {
    let dir = temp_dir("flow");
    let hub = TestHub::start(test_config(&dir)).await;

    // Not logged in: the server's address sends the browser to the login page.
    let mut anon = hub.client();
    let r = anon.get("/user/alice/").await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert_eq!(r.location(), "/hub/user/alice/");
    let r = anon.get("/hub/user/alice/").await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert_eq!(r.location(), "/hub/login?next=%2Fhub%2Fuser%2Falice%2F");

    let mut alice = hub.login("alice").await;
    // No route yet: /user/alice/ lands on the hub, which starts the server and shows progress.
    let r = alice.get("/user/alice/").await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert_eq!(r.location(), "/hub/user/alice/");
    let r = alice.get("/hub/user/alice/").await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert_eq!(r.location(), "/hub/spawn-pending/alice");

    let events = follow_progress(&mut alice, "/hub/api/users/alice/server/progress").await;
    let last = events.last().expect("events");
    assert_eq!(last["ready"], true, "{events:?}");
    assert_eq!(last["url"], "/user/alice/");
    assert_eq!(events[0]["message"], "Server requested");
    let percents: Vec<u64> = events.iter().map(|e| e["progress"].as_u64().unwrap()).collect();
    assert!(
        percents.windows(2).all(|w| w[0] <= w[1]),
        "progress only grows: {percents:?}"
    );

    // The route is in: the page comes from alice's server, through the proxy.
    let r = alice.get("/user/alice/").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(r.text().contains("alice"), "{}", r.text());

    // Bob is logged in too, but the edge refuses him alice's server.
    let mut bob = hub.login("bob").await;
    let r = bob.get("/user/alice/").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // And the hub refuses him alice's server controls.
    let r = bob.api(Method::POST, "/users/alice/server", None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // The API shows the server ready, JupyterHub's model.
    let mut admin = hub.admin();
    let model = admin.api(Method::GET, "/users/alice", None).await.json();
    assert_eq!(model["servers"][""]["ready"], true);
    assert_eq!(model["servers"][""]["url"], "/user/alice/");
    assert_eq!(model["server"], "/user/alice/");

    // A second start while running is refused as JupyterHub does.
    let r = alice.api(Method::POST, "/users/alice/server", None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    // Stop: 204, the route goes, and the address leads back to the hub.
    let r = alice.api(Method::DELETE, "/users/alice/server", None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    let r = alice.get("/user/alice/").await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert_eq!(r.location(), "/hub/user/alice/");

    // Logout ends the session at the hub and at the edge, although the cookie has not expired.
    let stolen = alice.cookies.clone();
    let r = alice.get("/hub/logout").await;
    assert_eq!(r.status, StatusCode::FOUND);
    let mut replay = hub.client();
    replay.cookies = stolen;
    let r = replay.api(Method::GET, "/user", None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "the hub refuses an ended session");
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_follows_jupyterhub() {
    let dir = temp_dir("api");
    let hub = TestHub::start(test_config(&dir)).await;
    let mut admin = hub.admin();
    assert!(admin.api(Method::GET, "", None).await.json()["version"].is_string());
    assert_eq!(admin.api(Method::GET, "/user", None).await.json()["kind"], "service");

    let r = admin
        .api(Method::POST, "/users", Some(json!({"usernames": ["u1", "u2", "u3"]})))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = admin.api(Method::POST, "/users/u1", None).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = admin.api(Method::POST, "/users/bad%2Fname", None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    // Start u1 over the API with a token: 202, then ready.
    let r = admin.api(Method::POST, "/users/u1/server", Some(json!({}))).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    let events = follow_progress(&mut admin, "/hub/api/users/u1/server/progress").await;
    assert_eq!(events.last().unwrap()["ready"], true, "{events:?}");

    // Pagination as jupyterhub-idle-culler asks for it, and the state filter.
    let r = admin
        .send(
            Method::GET,
            "/hub/api/users?state=ready&limit=1",
            None,
            &[(header::ACCEPT, "application/jupyterhub-pagination+json".into())],
        )
        .await;
    let page = r.json();
    assert_eq!(page["_pagination"]["total"], 1, "{page}");
    assert_eq!(page["items"][0]["name"], "u1");
    let all = admin.api(Method::GET, "/users?limit=2", None).await.json();
    assert_eq!(all.as_array().unwrap().len(), 2);
    let r = admin.api(Method::GET, "/users?state=bogus", None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    // Activity reports move last_activity forward (by 30 s or more, JupyterHub's
    // activity_resolution), never back, and bad ones are refused.
    let iso = |offset_ms: i64| proxy::timestamp::format_iso((proxy::timestamp::now_ms() as i64 + offset_ms) as u64);
    let (later, earlier) = (iso(45_000), iso(-3_600_000));
    for at in [&later, &earlier] {
        let body = json!({"servers": {"": {"last_activity": at}}});
        let r = admin.api(Method::POST, "/users/u1/activity", Some(body)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    }
    let model = admin.api(Method::GET, "/users/u1", None).await.json();
    assert_eq!(model["servers"][""]["last_activity"], later);
    let now = iso(0);
    let r = admin
        .api(
            Method::POST,
            "/users/u1/activity",
            Some(json!({"servers": {"nope": {"last_activity": now}}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = admin
        .api(
            Method::POST,
            "/users/u1/activity",
            Some(json!({"last_activity": "yesterday"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    // Tokens: a user token works for its user and not for others.
    let r = admin
        .api(Method::POST, "/users/u2/tokens", Some(json!({"note": "ci"})))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let token = r.json()["token"].as_str().unwrap().to_owned();
    let mut u2 = hub.client();
    u2.token = Some(token);
    assert_eq!(u2.api(Method::GET, "/user", None).await.json()["name"], "u2");
    assert_eq!(
        u2.api(Method::GET, "/users/u1", None).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(u2.api(Method::GET, "/users", None).await.status, StatusCode::FORBIDDEN);
    let mut nobody = hub.client();
    nobody.token = Some("wrong".into());
    assert_eq!(
        nobody.api(Method::GET, "/user", None).await.status,
        StatusCode::FORBIDDEN
    );

    // The routing table as the hub sees it, and a forced reconcile.
    let routes = admin.api(Method::GET, "/proxy", None).await.json();
    assert_eq!(routes["/user/u1/"]["data"]["user"], "u1", "{routes}");
    assert_eq!(admin.api(Method::POST, "/proxy", None).await.status, StatusCode::OK);

    // u3 was last active three days ago (u1 is active now).
    let body = json!({"last_activity": iso(-3 * 86_400_000)});
    let r = admin.api(Method::POST, "/users/u3/activity", Some(body)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());

    // Health needs nothing; metrics need an admin and use JupyterHub's names.
    assert_eq!(hub.client().get("/hub/health").await.status, StatusCode::OK);
    assert_eq!(hub.client().get("/hub/metrics").await.status, StatusCode::FORBIDDEN);
    let metrics = admin.get("/hub/metrics").await.text();
    for name in [
        "jupyterhub_running_servers 1",
        "jupyterhub_total_users",
        "jupyterhub_server_spawn_duration_seconds",
        "jupyterhub_request_duration_seconds",
    ] {
        assert!(metrics.contains(name), "{name} missing from:\n{metrics}");
    }
    // Active users by period, counted when the metrics are read: u3 counts for a week and a
    // month, not for the last day.
    let active = |period: &str| -> u64 {
        let line = format!("jupyterhub_active_users{{period=\"{period}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&line))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {line} in:\n{metrics}"))
    };
    let day = active("24h");
    assert!(day >= 1, "u1 is active now:\n{metrics}");
    assert_eq!((active("7d"), active("30d")), (day + 1, day + 1), "{metrics}");
    // A scraper's token needs read:metrics (JupyterHub 3+), not all an admin can do; an
    // admin's token made for something else is refused.
    let r = admin
        .api(
            Method::POST,
            "/users",
            Some(json!({"usernames": ["ops"], "admin": true})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let mut scraper = hub.client();
    for (scopes, status) in [
        (json!(["read:metrics"]), StatusCode::OK),
        (json!(["read:users"]), StatusCode::FORBIDDEN),
    ] {
        let r = admin
            .api(Method::POST, "/users/ops/tokens", Some(json!({"scopes": scopes})))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        scraper.token = Some(r.json()["token"].as_str().unwrap().to_owned());
        let r = scraper.get("/hub/metrics").await;
        assert_eq!(r.status, status, "{scopes}: {}", r.text());
    }

    // Named servers: start, stop, remove.
    let r = admin.api(Method::POST, "/users/u3/servers/lab", None).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let events = follow_progress(&mut admin, "/hub/api/users/u3/servers/lab/progress").await;
    assert_eq!(events.last().unwrap()["url"], "/user/u3/lab/");
    let r = admin
        .api(Method::DELETE, "/users/u3/servers/lab", Some(json!({"remove": true})))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let model = admin.api(Method::GET, "/users/u3", None).await.json();
    assert!(model["servers"].get("lab").is_none(), "{model}");

    // Deleting a user stops their server first.
    let r = admin.api(Method::DELETE, "/users/u1", None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(
        admin.api(Method::GET, "/users/u1", None).await.status,
        StatusCode::NOT_FOUND
    );
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_limits_answer_429_with_retry_after() {
    let dir = temp_dir("limits");
    let mut config = test_config(&dir);
    // A server that takes 3 s to come up keeps the first spawn pending.
    config.spawner.command = Some(vec![
        "sh".into(),
        "-c".into(),
        format!(
            "sleep 3; exec {} singleuser --port {{port}}",
            env!("CARGO_BIN_EXE_edgehub")
        ),
    ]);
    config.limits.concurrent_spawn_limit = 1;
    let hub = TestHub::start(config).await;
    let mut admin = hub.admin();
    admin
        .api(Method::POST, "/users", Some(json!({"usernames": ["a", "b"]})))
        .await;
    assert_eq!(
        admin.api(Method::POST, "/users/a/server", None).await.status,
        StatusCode::ACCEPTED
    );
    // A second POST while pending is still 202.
    assert_eq!(
        admin.api(Method::POST, "/users/a/server", None).await.status,
        StatusCode::ACCEPTED
    );
    let r = admin.api(Method::POST, "/users/b/server", None).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text());
    let retry: u64 = r.headers[header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
    assert!((30..=60).contains(&retry), "Retry-After {retry}");
    let events = follow_progress(&mut admin, "/hub/api/users/a/server/progress").await;
    assert_eq!(events.last().unwrap()["ready"], true);
    assert_eq!(
        admin.api(Method::POST, "/users/b/server", None).await.status,
        StatusCode::ACCEPTED
    );
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_server_reports_why_and_is_not_left_behind() {
    let dir = temp_dir("fail");
    let mut config = test_config(&dir);
    config.spawner.command = Some(vec![
        "sh".into(),
        "-c".into(),
        "echo 'no notebook here' >&2; exit 3".into(),
    ]);
    let hub = TestHub::start(config).await;
    let mut carol = hub.login("carol").await;
    assert_eq!(
        carol.api(Method::POST, "/users/carol/server", None).await.status,
        StatusCode::ACCEPTED
    );
    let events = follow_progress(&mut carol, "/hub/api/users/carol/server/progress").await;
    let last = events.last().unwrap();
    assert_eq!(last["failed"], true, "{events:?}");
    assert!(last["message"].as_str().unwrap().contains("status 3"), "{last}");
    // The hub does not loop on implicit re-spawns: the browser gets the "not running" page.
    let r = carol.get("/hub/user/carol/").await;
    assert_eq!(r.status.as_u16(), 424);
    let model = hub.admin().api(Method::GET, "/users/carol", None).await.json();
    assert!(model["servers"].as_object().unwrap().is_empty(), "{model}");
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_hub_adopts_running_servers_and_repairs_routes() {
    let dir = temp_dir("restart");
    // The same public port after the restart, kept bound in between.
    let public = KeptPort::new();
    let hub = TestHub::start_with(test_config(&dir), public.overrides()).await;
    let mut alice = hub.login("alice").await;
    alice.api(Method::POST, "/users/alice/server", None).await;
    follow_progress(&mut alice, "/hub/api/users/alice/server/progress").await;
    let model = hub.admin().api(Method::GET, "/users/alice", None).await.json();
    let started = model["servers"][""]["started"].clone();
    let state = hub.running.hub.server("alice", "").unwrap().record.spawner_state;
    let pid = state["pid"].as_i64().expect("the local spawner records a pid");
    hub.stop_keeping_servers().await;
    assert!(pid_alive(pid), "stopping the hub leaves user servers running");

    // A new hub on the same database: the server is adopted, not restarted, and reachable
    // again through the (new) proxy with the same login.
    let hub = TestHub::start_with(test_config(&dir), public.overrides()).await;
    let server = hub.running.hub.server("alice", "").unwrap();
    assert_eq!(
        server.record.spawner_state["pid"].as_i64(),
        Some(pid),
        "same process, no duplicate"
    );
    let r = alice.get("/user/alice/").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let model = hub.admin().api(Method::GET, "/users/alice", None).await.json();
    assert_eq!(model["servers"][""]["started"], started);

    // Someone deletes the route behind the hub's back: reconcile puts it back within 5 s.
    hub.running.hub.proxy.delete_route("/user/alice/").await.unwrap();
    eventually(Duration::from_secs(5), "the route is restored", || {
        let proxy = hub.running.hub.proxy.clone();
        async move {
            proxy
                .routes()
                .await
                .map(|r| r.contains_key("/user/alice"))
                .unwrap_or(false)
        }
    })
    .await;

    // The server dies on its own: the hub notices, marks it stopped and drops the route.
    unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
    // (The signal lands, and the process is reaped, a moment later: poll until then.)
    eventually(Duration::from_secs(5), "the dead server is noticed", || {
        let hub_ref = hub.running.hub.clone();
        async move {
            hub_core::lifecycle::poll_all(&hub_ref).await;
            hub_ref
                .server("alice", "")
                .is_some_and(|s| s.phase() == hub_core::model::Phase::Stopped)
        }
    })
    .await;
    let model = hub.admin().api(Method::GET, "/users/alice", None).await.json();
    assert!(model["servers"].as_object().unwrap().is_empty(), "{model}");
    let routes = hub.running.hub.proxy.routes().await.unwrap();
    assert!(!routes.contains_key("/user/alice"), "the dead server's route is gone");
    // No spawn failed, so there is no progress to follow: the page says it is not running
    // (with a Start button) instead of following a stream that has nothing to tell.
    let r = alice.get("/hub/spawn-pending/alice").await;
    assert_eq!(r.status.as_u16(), 424, "{}", r.text());
    hub.stop().await;
}

/// The `_xsrf` cookie lives under `/hub/`. A page answered elsewhere (the 404 for a signed-in
/// browser's `/favicon.ico`) never receives it, and must not set a new one: that would replace the
/// value the forms open in the browser carry, and their next POST would fail as expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_outside_the_hub_leave_the_xsrf_cookie_alone() {
    let dir = temp_dir("xsrf-scope");
    let hub = TestHub::start(test_config(&dir)).await;
    let sets_xsrf = |r: &Reply| {
        r.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|c| c.starts_with("_xsrf="))
    };

    let mut alice = hub.login("alice").await;
    let r = alice.get("/hub/home").await;
    assert_eq!(r.status, StatusCode::OK);
    let token = alice.cookies.get("_xsrf").cloned().expect("the hub's pages set _xsrf");

    // What the browser sends for its favicon: the session cookie (path /), not `_xsrf`.
    let mut favicon = hub.client();
    favicon.cookies = alice.cookies.clone();
    favicon.cookies.remove("_xsrf");
    let r = favicon.get("/favicon.ico").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text());
    assert!(!sets_xsrf(&r), "a page outside /hub/ set a new _xsrf: {:?}", r.headers);

    // A form made before still posts.
    let r = alice.post_form("/hub/spawn/alice", &[("_xsrf", &token)]).await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.text());
    assert_eq!(r.location(), "/hub/spawn-pending/alice");
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announcements_show_on_their_pages() {
    let dir = temp_dir("announcements");
    let mut config = test_config(&dir);
    config.redirect_to_server = false;
    config.announcements = config::Announcements {
        all: Some(r#"Maintenance on <a href="/status">Friday</a>"#.into()),
        login: Some("Use your university account".into()),
        home: Some("New: GPU servers".into()),
        spawn: Some("Starting takes a minute".into()),
    };
    let hub = TestHub::start(config).await;
    let notice =
        |html: &str, text: &str| html.contains(&format!(r#"<div class="announcement" role="note">{text}</div>"#));
    let login = hub.client().get("/hub/login").await.text();
    assert!(
        notice(&login, r#"Maintenance on <a href="/status">Friday</a>"#),
        "{login}"
    );
    assert!(
        notice(&login, "Use your university account") && !login.contains("GPU"),
        "{login}"
    );
    let mut alice = hub.login("alice").await;
    let home = alice.get("/hub/home").await.text();
    assert!(notice(&home, "New: GPU servers") && notice(&home, r#"Maintenance on <a href="/status">Friday</a>"#));
    assert!(
        !home.contains("university account") && !home.contains("Starting takes"),
        "{home}"
    );
    let r = alice
        .post_form("/hub/spawn/alice", &[("_xsrf", &alice.cookies["_xsrf"].clone())])
        .await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.text());
    let pending = alice.get("/hub/spawn-pending/alice").await.text();
    assert!(notice(&pending, "Starting takes a minute"), "{pending}");
    hub.stop().await;
}

/// `next` may only lead to a page of this hub: an address a browser would read as another host
/// (`//host`, `/\\host`, or `/<TAB>/host`, from which browsers drop the tab) is ignored, on the
/// sign-in form and for a user already signed in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_never_leads_off_the_hub() {
    let dir = temp_dir("next-off-hub");
    let mut config = test_config(&dir);
    config.redirect_to_server = false;
    let hub = TestHub::start(config).await;
    let off_hub = [
        "https://evil.example/",
        "//evil.example/",
        "/\\evil.example/",
        "/\t/evil.example/",
        "/\r\n/evil.example/",
    ];
    for next in off_hub {
        let (mut c, landed) = sign_in_form(&hub, &[("username", "alice"), ("password", ""), ("next", next)]).await;
        assert_eq!(landed, "/hub/home", "{next:?}");

        let query: String = form_urlencoded::byte_serialize(next.as_bytes()).collect();
        let r = c.get(&format!("/hub/login?next={query}")).await;
        assert_eq!(
            (r.status, r.location()),
            (StatusCode::FOUND, "/hub/home".into()),
            "{next:?}"
        );
    }
    let mut alice = hub.login("alice").await;
    let r = alice.get("/hub/login?next=%2Fhub%2Ftoken").await;
    assert_eq!(r.location(), "/hub/token", "a page of the hub is still followed");
    hub.stop().await;
}

/// JupyterHub's `/hub/user-redirect/<path>`, the link course material and nbgitpuller hand out:
/// whoever follows it lands on `<path>` in their own server, after signing in if need be.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_redirect_links_open_the_followers_own_server() {
    let dir = temp_dir("user-redirect");
    let hub = TestHub::start(test_config(&dir)).await;
    let link = "/hub/user-redirect/git-pull?repo=https%3A%2F%2Fexample.org%2Fcourse&urlpath=lab";

    let mut visitor = hub.client();
    let r = visitor.get(link).await;
    assert_eq!(r.status, StatusCode::FOUND);
    let login = r.location();
    assert!(login.starts_with("/hub/login?next="), "{login}");
    let next: String = form_urlencoded::parse(login.split_once('?').unwrap().1.as_bytes())
        .find(|(k, _)| k == "next")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    assert_eq!(next, link);

    for (user, mut client) in [("alice", hub.login("alice").await), ("bob", hub.login("bob").await)] {
        let r = client.get(link).await;
        assert_eq!(
            (r.status, r.location()),
            (
                StatusCode::FOUND,
                format!("/user/{user}/git-pull?repo=https%3A%2F%2Fexample.org%2Fcourse&urlpath=lab")
            )
        );
        let r = client.get("/hub/user-redirect/").await;
        assert_eq!(r.location(), format!("/user/{user}/"));
    }

    // Alice's server is off: the proxy hands `/user/alice/git-pull?…` to the hub, which starts
    // it and, once it is up, opens that page, not just the server's front page.
    let mut alice = hub.login("alice").await;
    let asked_for = "/user/alice/git-pull?repo=https%3A%2F%2Fexample.org%2Fcourse&urlpath=lab";
    let r = alice.get(&format!("/hub{asked_for}")).await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.text());
    let pending = r.location();
    let next: String = form_urlencoded::byte_serialize(asked_for.as_bytes()).collect();
    assert_eq!(pending, format!("/hub/spawn-pending/alice?next={next}"));
    let page = alice.get(&pending).await;
    let server_url = asked_for.replace('&', "&amp;");
    assert!(
        page.status == StatusCode::FOUND && page.location() == asked_for
            || page.text().contains(&format!(r#"data-server-url="{server_url}""#)),
        "{} {}",
        page.status,
        page.text()
    );
    let events = follow_progress(&mut alice, "/hub/api/users/alice/server/progress").await;
    assert_eq!(events.last().unwrap()["ready"], true, "{events:?}");
    let r = alice.get(&pending).await;
    assert_eq!((r.status, r.location()), (StatusCode::FOUND, asked_for.to_owned()));
    hub.stop().await;
}

/// The sign-in form's POST as `hub.login` sends it, returning the redirect it answers.
async fn sign_in_redirect(hub: &TestHub, user: &str) -> (Client, String) {
    sign_in_with(hub, user, "").await
}

async fn sign_in_with(hub: &TestHub, user: &str, password: &str) -> (Client, String) {
    sign_in_form(hub, &[("username", user), ("password", password)]).await
}

/// The sign-in form posted with `fields` and the `_xsrf` its page set; the redirect it answers.
async fn sign_in_form(hub: &TestHub, fields: &[(&str, &str)]) -> (Client, String) {
    let mut c = hub.client();
    c.get("/hub/login").await;
    let xsrf = c.cookies.get("_xsrf").cloned().expect("the login page sets _xsrf");
    let mut form = fields.to_vec();
    form.push(("_xsrf", &xsrf));
    let r = c.post_form("/hub/login", &form).await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.text());
    let location = r.location();
    (c, location)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_leads_to_your_server_and_starts_it() {
    let dir = temp_dir("landing");
    let hub = TestHub::start(test_config(&dir)).await;
    // Nobody signed in: `/` and `/hub/` lead to the login page.
    let mut anon = hub.client();
    for path in ["/", "/hub/", "/hub"] {
        let r = anon.get(path).await;
        assert_eq!(
            (r.status, r.location()),
            (StatusCode::FOUND, "/hub/login".into()),
            "{path}"
        );
    }

    // Signed in without a `next`: to the spawn handler, which starts the stopped server.
    let (mut alice, landed) = sign_in_redirect(&hub, "alice").await;
    assert_eq!(landed, "/hub/spawn/alice");
    let r = alice.get(&landed).await;
    assert_eq!(r.location(), "/hub/spawn-pending/alice");
    // While it starts, `/` leads to its progress (unless it is up already); once it runs, to
    // the server itself.
    let early = alice.get("/").await.location();
    assert!(
        ["/hub/spawn-pending/alice", "/user/alice/"].contains(&early.as_str()),
        "{early}"
    );
    let events = follow_progress(&mut alice, "/hub/api/users/alice/server/progress").await;
    assert_eq!(events.last().unwrap()["ready"], true, "{events:?}");
    for path in ["/", "/hub/"] {
        let r = alice.get(path).await;
        assert_eq!(
            (r.status, r.location()),
            (StatusCode::FOUND, "/user/alice/".into()),
            "{path}"
        );
    }
    assert_eq!(alice.get("/user/alice/").await.status, StatusCode::OK);
    // A `next` still wins; signing in again while running goes straight to the server.
    let r = alice.get("/hub/login?next=%2Fhub%2Fhome").await;
    assert_eq!(r.location(), "/hub/home");
    let (_, landed) = sign_in_redirect(&hub, "alice").await;
    assert_eq!(landed, "/user/alice/");
    hub.stop().await;

    // With redirect_to_server off, the home page, and nothing starts.
    let dir = temp_dir("landing-home");
    let mut config = test_config(&dir);
    config.redirect_to_server = false;
    let hub = TestHub::start(config).await;
    let (mut bob, landed) = sign_in_redirect(&hub, "bob").await;
    assert_eq!(landed, "/hub/home");
    assert_eq!(bob.get("/").await.location(), "/hub/home");
    let model = hub.admin().api(Method::GET, "/users/bob", None).await.json();
    assert!(model["servers"].as_object().unwrap().is_empty(), "{model}");
    hub.stop().await;
}

/// An HTTP server on a port of its own that answers every request `200 project server`.
async fn project_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let body = "project server";
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(reply.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_from_the_users_file_reach_the_edges_group_policy() {
    let dir = temp_dir("users-groups");
    let hash = hub_core::login::hash_password("pw").unwrap();
    let users = dir.join("users.toml");
    std::fs::write(
        &users,
        format!(
            "[users.alice]\npassword_hash = \"{hash}\"\ngroups = [\"proj-42\", \"staff\"]\n\n[users.bob]\npassword_hash = \"{hash}\"\n"
        ),
    )
    .unwrap();
    let mut config = test_config(&dir);
    config.auth.authenticator = config::AuthenticatorKind::UsersFile;
    config.auth.users_file = Some(users.clone());
    let hub = TestHub::start(config).await;
    // A project's server, shared with the group `proj-42` through its route's data.
    let target = project_server().await;
    let data = json!({"group": "proj-42"}).as_object().unwrap().clone();
    hub.running
        .hub
        .proxy
        .add_route("/projects/p42/", &target, data)
        .await
        .unwrap();

    let (mut alice, _) = sign_in_with(&hub, "alice", "pw").await;
    let r = alice.get("/projects/p42/tree").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.text(), "project server");
    // The groups are in alice's session token, where any edgeproxy replica reads them.
    let token = alice.cookies.get("edgehub-token").unwrap();
    let payload = token.split('.').nth(1).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload).unwrap(),
    )
    .unwrap();
    assert_eq!(claims["groups"], json!(["proj-42", "staff"]));

    // Bob is in no group: the edge refuses him the project.
    let (mut bob, _) = sign_in_with(&hub, "bob", "pw").await;
    let r = bob.get("/projects/p42/tree").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    hub.stop().await;

    // A group name that would break the comma-joined identity header stops the start.
    std::fs::write(
        &users,
        format!("[users.carol]\npassword_hash = \"{hash}\"\ngroups = [\"a,b\"]\n"),
    )
    .unwrap();
    let err = hub_core::login::Authenticator::new(&config::HubAuth {
        authenticator: config::AuthenticatorKind::UsersFile,
        users_file: Some(users),
        ..Default::default()
    })
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("\"a,b\" is not a valid group name"), "{err}");
}
