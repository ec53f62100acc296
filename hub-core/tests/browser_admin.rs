//! The admin page and the token page in a real browser (headless Chromium): an admin adds users,
//! starts and stops a user's server, makes a group and changes its members, deletes a group and
//! a user; a user makes a scoped token, sees it once, uses it, and revokes it. Every change is
//! checked through the REST API as well, so the page shows what the hub holds.

mod support;

use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::json;
use support::webdriver::Browser;
use support::*;

const WAIT: Duration = Duration::from_secs(20);

/// Clicks `css` with the page's confirmation dialog answered yes (WebDriver cannot see it).
async fn click_confirmed(browser: &Browser, css: &str) {
    browser
        .execute("window.confirm = () => true;", &[])
        .await
        .expect("answer confirm() with yes");
    browser
        .wait_for(css, WAIT)
        .await
        .unwrap_or_else(|e| panic!("{css}: {e:?}"))
        .click()
        .await
        .unwrap();
}

/// Types `text` into the field `css` and submits the form it is in.
async fn fill_and_submit(browser: &Browser, css: &str, text: &str, submit: &str) {
    browser
        .wait_for(css, WAIT)
        .await
        .unwrap_or_else(|e| panic!("{css}: {e:?}"))
        .send_keys(text)
        .await
        .unwrap();
    browser
        .find(submit)
        .await
        .unwrap_or_else(|e| panic!("{submit}: {e:?}"))
        .click()
        .await
        .unwrap();
}

/// Waits until `css` matches nothing (the page reloaded without it).
async fn wait_gone(browser: &Browser, css: &str) {
    let deadline = std::time::Instant::now() + WAIT;
    while browser.find(css).await.is_ok() {
        assert!(std::time::Instant::now() < deadline, "{css} still on the page");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_manages_users_servers_and_groups_from_the_admin_page() {
    let dir = temp_dir("browser-admin");
    let mut config = test_config(&dir);
    config.auth.admin_users = vec!["root".into()];
    let hub = TestHub::start(config).await;
    let mut api = hub.admin();
    let browser = Browser::start().await.expect("chromium and chromedriver start");
    browser
        .sign_in(&hub.url("/hub/home"), "root", WAIT)
        .await
        .expect("signed in");
    browser.wait_until_url(|u| !u.contains("/login"), WAIT).await.unwrap();
    browser.goto(&hub.url("/hub/admin")).await.unwrap();
    browser.wait_for("[data-users]", WAIT).await.expect("the users table");

    // Add two users.
    fill_and_submit(
        &browser,
        "#new-users",
        "bob carol",
        "form[data-api-url$='/hub/api/users'] button[type=submit]",
    )
    .await;
    browser
        .wait_for("tr[data-user='carol']", WAIT)
        .await
        .expect("carol listed");
    assert_eq!(api.api(Method::GET, "/users/bob", None).await.status, StatusCode::OK);

    // Start bob's server, then stop it.
    browser
        .wait_for("tr[data-user='bob'] button[data-api-method='POST']", WAIT)
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .wait_for(
            "tr[data-user='bob'] button[data-api-method='DELETE'][data-api-url$='/server']",
            WAIT,
        )
        .await
        .expect("a Stop button once bob's server starts")
        .click()
        .await
        .unwrap();
    browser
        .wait_for("tr[data-user='bob'] button[data-api-method='POST']", WAIT)
        .await
        .expect("Start again once stopped");
    let bob = api.api(Method::GET, "/users/bob", None).await.json();
    assert!(bob["servers"].as_object().unwrap().is_empty(), "{bob}");

    // A group with bob, then carol added and bob removed.
    browser
        .find("#new-group")
        .await
        .unwrap()
        .send_keys("proj")
        .await
        .unwrap();
    fill_and_submit(
        &browser,
        "#new-group-users",
        "bob",
        "form[data-api-url$='/hub/api/groups'] button[type=submit]",
    )
    .await;
    browser
        .wait_for("[data-group='proj'] [data-member='bob']", WAIT)
        .await
        .expect("bob in proj");
    fill_and_submit(
        &browser,
        "#add-to-proj",
        "carol",
        "[data-group='proj'] form button[type=submit]",
    )
    .await;
    browser
        .wait_for("[data-group='proj'] [data-member='carol']", WAIT)
        .await
        .expect("carol in proj");
    browser
        .find("[data-group='proj'] [data-member='bob'] button")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_gone(&browser, "[data-group='proj'] [data-member='bob']").await;
    let group = api.api(Method::GET, "/groups/proj", None).await.json();
    assert_eq!(group["users"], json!(["carol"]), "{group}");
    let _ = browser.screenshot_png("/tmp/edgehub-shots/admin.png").await;

    // Delete the group, then carol.
    click_confirmed(&browser, "[data-group='proj'] .actions button").await;
    wait_gone(&browser, "[data-group='proj']").await;
    assert_eq!(
        api.api(Method::GET, "/groups/proj", None).await.status,
        StatusCode::NOT_FOUND
    );
    click_confirmed(&browser, "tr[data-user='carol'] button[data-confirm]").await;
    wait_gone(&browser, "tr[data-user='carol']").await;
    assert_eq!(
        api.api(Method::GET, "/users/carol", None).await.status,
        StatusCode::NOT_FOUND
    );

    // Not an admin: no admin page.
    drop(browser);
    let mut bob = hub.login("bob").await;
    let r = bob.get("/hub/admin").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_makes_uses_and_revokes_a_token_from_the_token_page() {
    let dir = temp_dir("browser-token");
    let hub = TestHub::start(test_config(&dir)).await;
    let browser = Browser::start().await.expect("chromium and chromedriver start");
    browser
        .sign_in(&hub.url("/hub/token"), "alice", WAIT)
        .await
        .expect("signed in");
    browser
        .wait_until_url(|u| u.ends_with("/hub/token"), WAIT)
        .await
        .unwrap();

    browser
        .wait_for("#token-note", WAIT)
        .await
        .unwrap()
        .send_keys("ci")
        .await
        .unwrap();
    browser
        .find("#token-scopes")
        .await
        .unwrap()
        .send_keys("read:users!user=alice")
        .await
        .unwrap();
    browser
        .find("[data-manage] form button[type=submit]")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let token = browser
        .wait_for_text("[data-new-token] code", "", WAIT)
        .await
        .expect("the new token, shown once");
    let deadline = std::time::Instant::now() + WAIT;
    let token = loop {
        let text = browser
            .find("[data-new-token] code")
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if !text.is_empty() {
            break text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no token shown (first read {token:?})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(token.len(), 64, "{token}");

    // It does what its scopes say, and no more.
    let mut client = hub.client();
    client.token = Some(token.clone());
    assert_eq!(
        client.api(Method::GET, "/users/alice", None).await.status,
        StatusCode::OK
    );
    let r = client.api(Method::POST, "/users/alice/server", Some(json!({}))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());

    // Listed after a reload (the token itself is not), and revoked from the list.
    browser.goto(&hub.url("/hub/token")).await.unwrap();
    let row = browser
        .wait_for_text("[data-tokens] tbody tr", "ci", WAIT)
        .await
        .expect("the token listed");
    assert!(row.contains("read:users!user=alice"), "{row}");
    assert!(!row.contains(&token), "the token is never shown again");
    let _ = browser.screenshot_png("/tmp/edgehub-shots/token.png").await;
    browser
        .find("[data-tokens] tbody tr button")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_gone(&browser, "[data-tokens] tbody tr").await;
    let r = client.api(Method::GET, "/users/alice", None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "revoked: {}", r.text());
    drop(browser);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_share_link_is_accepted_in_the_browser_and_opens_the_server() {
    let dir = temp_dir("browser-share");
    let hub = TestHub::start(test_config(&dir)).await;
    let mut admin = hub.admin();
    let r = admin
        .api(Method::POST, "/users", Some(json!({"usernames": ["alice", "bob"]})))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    start_server(&mut admin, "alice").await;
    let r = admin.api(Method::POST, "/share-codes/alice/", Some(json!({}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let accept_url = r.json()["accept_url"].as_str().unwrap().to_owned();

    // Bob follows the link, signs in, reads the offer, accepts, and lands on alice's server.
    let browser = Browser::start().await.expect("chromium and chromedriver start");
    browser
        .sign_in(&hub.url(&accept_url), "bob", WAIT)
        .await
        .expect("signed in");
    let offer = browser
        .wait_for_text("#accept-heading + p", "alice", WAIT)
        .await
        .expect("the offer names whose server");
    assert!(offer.contains("alice's server"), "{offer}");
    let _ = browser.screenshot_png("/tmp/edgehub-shots/accept-share.png").await;
    browser
        .find("form button[type=submit]")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let url = browser
        .wait_until_url(|u| u.ends_with("/user/alice/"), WAIT)
        .await
        .expect("sent to the server");
    assert_eq!(url, hub.url("/user/alice/"));
    assert_builtin_server_page(&browser, "alice", WAIT).await;
    drop(browser);
    hub.stop().await;
}
