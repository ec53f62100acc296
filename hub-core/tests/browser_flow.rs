//! The whole flow in a real browser (headless Chromium): a user opens their server's address,
//! signs in, watches the progress bar, lands on their server's page through the proxy, sees a
//! WebSocket round trip through the proxy's tunnel, and stops the server from the home page.

mod support;

use std::time::Duration;

use support::webdriver::Browser;
use support::*;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_start_progress_and_the_servers_page_in_a_browser() {
    let dir = temp_dir("browser-flow");
    let mut config = test_config(&dir);
    // A server that takes a second to come up, so the pending page has something to show.
    config.spawner.command = Some(vec![
        "sh".into(),
        "-c".into(),
        format!(
            "sleep 1; exec {} singleuser --port {{port}}",
            env!("CARGO_BIN_EXE_edgehub")
        ),
    ]);
    let hub = TestHub::start(config).await;
    let browser = Browser::start().await.expect("chromium and chromedriver start");
    let shots = std::path::Path::new("/tmp/edgehub-shots");
    let _ = std::fs::create_dir_all(shots);

    browser
        .sign_in(&hub.url("/user/alice/"), "alice", WAIT)
        .await
        .expect("the login page, then signed in");

    // Signed in: the server starts and the pending page follows its progress.
    browser
        .wait_for("#pending-heading", WAIT)
        .await
        .expect("the pending page");
    let _ = browser.screenshot_png(shots.join("flow-pending.png")).await;

    // Then the browser lands on the server's own page, through the proxy.
    let url = browser
        .wait_until_url(|u| u.ends_with("/user/alice/"), WAIT)
        .await
        .expect("redirected to the server once ready");
    assert_eq!(url, hub.url("/user/alice/"));
    assert_builtin_server_page(&browser, "alice", WAIT).await;
    let _ = browser.screenshot_png(shots.join("flow-server.png")).await;

    // Home: the server shows as running; Stop stops it and the page offers Start again.
    browser.goto(&hub.url("/hub/home")).await.unwrap();
    browser
        .wait_for("[data-action=stop]", WAIT)
        .await
        .expect("a Stop button for the running server")
        .click()
        .await
        .unwrap();
    browser
        .wait_for("[data-action=start]", WAIT)
        .await
        .expect("a Start button once stopped");
    let _ = browser.screenshot_png(shots.join("flow-home-stopped.png")).await;
    let model = hub.admin().api(http::Method::GET, "/users/alice", None).await.json();
    assert!(model["servers"].as_object().unwrap().is_empty(), "{model}");
    drop(browser);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_the_front_page_signing_in_starts_your_server() {
    // What the README promises a newcomer: open the address, sign in with any name, and the
    // server starts and opens, with no click on the home page.
    let dir = temp_dir("browser-landing");
    let hub = TestHub::start(test_config(&dir)).await;
    let browser = Browser::start().await.expect("chromium and chromedriver start");
    browser
        .sign_in(&hub.url("/"), "carol", WAIT)
        .await
        .expect("/ leads to the login page");
    browser
        .wait_until_url(|u| u.ends_with("/user/carol/"), WAIT)
        .await
        .expect("signed in, the browser lands on carol's server");
    assert_builtin_server_page(&browser, "carol", WAIT).await;
    // Coming back to the front page while it runs opens the server again.
    browser.goto(&hub.url("/")).await.unwrap();
    let url = browser
        .wait_until_url(|u| u.ends_with("/user/carol/"), WAIT)
        .await
        .expect("the front page leads to the running server");
    assert_eq!(url, hub.url("/user/carol/"));
    drop(browser);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_into_a_stopped_server_opens_its_page_once_started() {
    // A link handed out in a course (nbgitpuller's are of this shape): the follower signs in,
    // their server starts, and the browser ends on the page linked, not the server's front page.
    let dir = temp_dir("browser-user-redirect");
    let hub = TestHub::start(test_config(&dir)).await;
    let browser = Browser::start().await.expect("chromium and chromedriver start");
    browser
        .sign_in(
            &hub.url("/hub/user-redirect/lab/tree/week1.ipynb?from=course"),
            "dave",
            WAIT,
        )
        .await
        .expect("the link leads to the login page");
    let url = browser
        .wait_until_url(|u| u.contains("/user/dave/lab"), WAIT)
        .await
        .expect("signed in, the browser lands on the linked page in dave's server");
    assert_eq!(url, hub.url("/user/dave/lab/tree/week1.ipynb?from=course"));
    drop(browser);
    hub.stop().await;
}
