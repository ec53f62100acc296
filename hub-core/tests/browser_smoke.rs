//! The hub's pages in a real browser (headless Chromium through chromedriver).
//!
//! A small local site serves what the pages link to (the HTML from `hub_core::pages`, the
//! stylesheet and the script) under a `default-src 'self'` Content-Security-Policy, plus stand-ins
//! for the hub's API and progress stream; it records every request. The tests click what a user
//! clicks and check what the hub would receive and where the browser goes.
//!
//! Screenshots land in /tmp/edgehub-shots/ for a look by eye.

mod support;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hub_core::pages::{self, LoginOptions, NamedServers, PageContext, ServerPhase, ServerView};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use support::webdriver::Browser;

const WAIT: Duration = Duration::from_secs(10);
const SHOTS: &str = "/tmp/edgehub-shots";
const XSRF: &str = "test-xsrf-token";

type Body = BoxBody<Bytes, Infallible>;

/// A request as the site received it.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    path: String,
    headers: HeaderMap,
    body: String,
}

/// A local HTTP site on a free port. `route` answers a request or passes (`None`, then 404);
/// `/hub/static/*` is served from `pages::assets` before it is asked.
struct Site {
    origin: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Site {
    async fn start(route: impl Fn(&Seen) -> Option<Response<Body>> + Send + Sync + 'static) -> Site {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let route = Arc::new(route);
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (route, log) = (route.clone(), log.clone());
                let service = service_fn(move |request: Request<Incoming>| {
                    let (route, log) = (route.clone(), log.clone());
                    async move {
                        let (head, body) = request.into_parts();
                        let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                        let seen = Seen {
                            method: head.method,
                            path: head.uri.path().to_string(),
                            headers: head.headers,
                            body: String::from_utf8_lossy(&body).into_owned(),
                        };
                        log.lock().unwrap().push(seen.clone());
                        let response = static_file(&seen)
                            .or_else(|| route(&seen))
                            .unwrap_or_else(|| text(StatusCode::NOT_FOUND, "not found"));
                        Ok::<_, Infallible>(response)
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        Site { origin, seen }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin)
    }

    /// The requests for `method` `path` so far.
    fn requests(&self, method: Method, path: &str) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.method == method && s.path == path)
            .cloned()
            .collect()
    }

    /// Requests to anything but the static files, in order, as `METHOD path`.
    fn calls(&self) -> Vec<String> {
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .filter(|s| !s.path.starts_with("/hub/static/") && s.path != "/favicon.ico")
            .map(|s| format!("{} {}", s.method, s.path))
            .collect()
    }
}

fn static_file(seen: &Seen) -> Option<Response<Body>> {
    let asset = pages::assets::asset(seen.path.strip_prefix("/hub/static/")?)?;
    Some(respond(StatusCode::OK, asset.content_type, asset.body.to_string()))
}

fn respond(status: StatusCode, content_type: &str, body: String) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .body(Full::new(Bytes::from(body)).boxed())
        .unwrap()
}

/// A page as the hub serves it: no inline script or style can run under this policy.
fn html(body: String) -> Option<Response<Body>> {
    let mut response = respond(StatusCode::OK, "text/html; charset=utf-8", body);
    response
        .headers_mut()
        .insert(header::CONTENT_SECURITY_POLICY, "default-src 'self'".parse().unwrap());
    Some(response)
}

fn text(status: StatusCode, body: &str) -> Response<Body> {
    respond(status, "text/plain", body.to_string())
}

fn api(status: StatusCode, body: Value) -> Option<Response<Body>> {
    Some(respond(status, "application/json", body.to_string()))
}

/// A server-sent event stream fed by `events`; it ends when the sender is dropped.
fn event_stream(mut events: mpsc::UnboundedReceiver<Value>) -> Option<Response<Body>> {
    let frames = futures_util::stream::poll_fn(move |cx| {
        events
            .poll_recv(cx)
            .map(|event| event.map(|e| Ok(Frame::data(Bytes::from(format!("data: {e}\n\n"))))))
    });
    Some(
        Response::builder()
            .header(header::CONTENT_TYPE, "text/event-stream")
            .header(header::CACHE_CONTROL, "no-cache")
            .body(StreamBody::new(frames).boxed())
            .unwrap(),
    )
}

fn ctx(user: Option<&str>) -> PageContext {
    PageContext {
        base: "/".into(),
        user: user.map(Into::into),
        admin: false,
        // What a hub with one service behind the proxy shows signed-in users.
        services: vec![("usage-dashboard".into(), "/services/usage-dashboard/".into())],
        xsrf: XSRF.into(),
        // An operator's notice, as `[announcements] all` puts on every page.
        announcements: vec![r#"Maintenance on Friday: see <a href="/status">the status page</a>."#.into()],
    }
}

fn server(name: &str, phase: ServerPhase, last_activity: Option<&str>) -> ServerView {
    let url = if name.is_empty() {
        "/user/alice/".to_string()
    } else {
        format!("/user/alice/{name}/")
    };
    ServerView {
        name: name.into(),
        phase,
        progress_url: format!("/hub/api/users/alice/servers/{name}/progress"),
        url,
        last_activity: last_activity.map(Into::into),
        options_url: None,
    }
}

fn home_page(servers: &[ServerView]) -> String {
    pages::home(
        &ctx(Some("alice")),
        servers,
        NamedServers {
            allowed: true,
            limit: 3,
        },
    )
}

/// Polls the JavaScript expression `expr` until it is truthy, and returns its value.
async fn until(browser: &Browser, expr: &str) -> Value {
    let script = format!("return {expr};");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let value = browser.execute(&script, &[]).await.unwrap();
        let truthy = !matches!(&value, Value::Null | Value::Bool(false)) && value != json!(0) && value != json!("");
        if truthy {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still {value} after {WAIT:?}: {expr}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn shot(browser: &Browser, name: &str) {
    browser.screenshot_png(format!("{SHOTS}/{name}.png")).await.unwrap();
}

#[tokio::test]
async fn webdriver_client_clicks_and_reads() {
    let site = Site::start(|seen| match seen.path.as_str() {
        "/" => html(
            r#"<!DOCTYPE html><title>smoke</title><p id="out">not clicked</p><p>second</p>
<button id="go" type="button">Go</button><script src="/app.js"></script>"#
                .into(),
        ),
        "/app.js" => Some(respond(
            StatusCode::OK,
            "text/javascript",
            r#"document.getElementById("go").addEventListener("click", () => {
                 document.getElementById("out").textContent = "clicked";
               });"#
                .into(),
        )),
        _ => None,
    })
    .await;
    let browser = Browser::start().await.unwrap();

    browser.goto(&site.url("/")).await.unwrap();
    assert_eq!(browser.title().await.unwrap(), "smoke");
    assert_eq!(browser.current_url().await.unwrap(), site.url("/"));
    let out = browser.find("#out").await.unwrap();
    assert_eq!(out.text().await.unwrap(), "not clicked");
    assert_eq!(browser.find_all("p").await.unwrap().len(), 2);

    let button = browser.wait_for("button#go", WAIT).await.unwrap();
    assert_eq!(button.attr("type").await.unwrap().as_deref(), Some("button"));
    assert_eq!(button.attr("data-nothing").await.unwrap(), None);
    button.click().await.unwrap();
    assert_eq!(out.text().await.unwrap(), "clicked");

    assert_eq!(
        browser.execute("return arguments[0] + 1;", &[json!(41)]).await.unwrap(),
        json!(42)
    );

    let missing = browser.find("#missing").await.err().expect("no such element");
    let message = missing.to_string();
    assert!(message.contains(r##"find "#missing""##), "{message}");
    assert!(message.contains("no such element"), "{message}");
}

#[tokio::test]
async fn login_form_has_its_fields_and_posts_them() {
    let site = Site::start(|seen| match (&seen.method, seen.path.as_str()) {
        (&Method::GET, "/hub/login") => html(pages::login(
            &ctx(None),
            &LoginOptions {
                ask_password: true,
                next: Some("/user/alice/".into()),
                hint: Some("Use your lab account.".into()),
                ..LoginOptions::default()
            },
        )),
        (&Method::POST, "/hub/login") => html(pages::error(&ctx(Some("alice")), 404, "")),
        _ => None,
    })
    .await;
    let browser = Browser::start().await.unwrap();
    browser.goto(&site.url("/hub/login")).await.unwrap();

    assert_eq!(browser.title().await.unwrap(), "Sign in · edgehub");
    assert_eq!(
        browser.find("label[for=username]").await.unwrap().text().await.unwrap(),
        "Username"
    );
    assert_eq!(
        browser.find("label[for=password]").await.unwrap().text().await.unwrap(),
        "Password"
    );
    let xsrf = browser.find("input[type=hidden][name=_xsrf]").await.unwrap();
    assert_eq!(xsrf.attr("value").await.unwrap().as_deref(), Some(XSRF));
    let next = browser.find("input[type=hidden][name=next]").await.unwrap();
    assert_eq!(next.attr("value").await.unwrap().as_deref(), Some("/user/alice/"));
    // The name field has focus, so typing starts there.
    assert_eq!(
        browser.execute("return document.activeElement.id;", &[]).await.unwrap(),
        json!("username")
    );
    shot(&browser, "login").await;

    browser
        .find("input[name=username]")
        .await
        .unwrap()
        .send_keys("alice")
        .await
        .unwrap();
    browser
        .find("input[name=password][type=password]")
        .await
        .unwrap()
        .send_keys("s3cret&more")
        .await
        .unwrap();
    browser.submit().await.unwrap();
    browser.wait_for("#error-heading", WAIT).await.unwrap();

    let posts = site.requests(Method::POST, "/hub/login");
    assert_eq!(posts.len(), 1);
    let form: Vec<(String, String)> = form_urlencoded::parse(posts[0].body.as_bytes()).into_owned().collect();
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    assert_eq!(field("_xsrf"), Some(XSRF));
    assert_eq!(field("next"), Some("/user/alice/"));
    assert_eq!(field("username"), Some("alice"));
    assert_eq!(field("password"), Some("s3cret&more"));
}

#[tokio::test]
async fn home_start_posts_with_the_xsrf_header_then_goes_to_the_pending_page() {
    let site = Site::start(|seen| match (&seen.method, seen.path.as_str()) {
        (&Method::GET, "/hub/home") => html(home_page(&[
            server("", ServerPhase::Stopped, None),
            server("lab", ServerPhase::Running, Some("2024-05-01T12:03:04.123Z")),
            server("analysis", ServerPhase::Stopped, None),
        ])),
        (&Method::POST, "/hub/api/users/alice/server") => api(StatusCode::ACCEPTED, json!({})),
        (&Method::GET, "/hub/spawn-pending/alice") => html("<!DOCTYPE html><title>pending</title>".into()),
        _ => None,
    })
    .await;
    let browser = Browser::start().await.unwrap();
    browser.goto(&site.url("/hub/home")).await.unwrap();

    // What the user sees: the default server to start, the named ones with their actions.
    let default = browser.find(r#"[data-server=""]"#).await.unwrap();
    let default_text = default.text().await.unwrap();
    assert!(
        default_text.contains("Default server") && default_text.contains("Stopped"),
        "{default_text}"
    );
    let open = browser.find(r#"[data-server="lab"] a.button"#).await.unwrap();
    assert_eq!(open.text().await.unwrap(), "Open");
    assert_eq!(open.attr("href").await.unwrap().as_deref(), Some("/user/alice/lab/"));
    // The script turned the timestamp into words, keeping the exact time as a tooltip.
    let activity = browser.find(r#"[data-server="lab"] time"#).await.unwrap();
    assert!(
        activity.text().await.unwrap().ends_with("ago"),
        "{:?}",
        activity.text().await
    );
    assert_eq!(
        activity.attr("title").await.unwrap().as_deref(),
        Some("2024-05-01 12:03 UTC")
    );
    assert_eq!(
        browser
            .find("header a[href='/hub/logout']")
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "Log out"
    );
    shot(&browser, "home").await;

    browser
        .find(r#"[data-server=""] button[data-action="start"]"#)
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .wait_until_url(|url| url.ends_with("/hub/spawn-pending/alice"), WAIT)
        .await
        .unwrap();

    let posts = site.requests(Method::POST, "/hub/api/users/alice/server");
    assert_eq!(posts.len(), 1);
    assert_eq!(
        posts[0].headers.get("x-xsrftoken").map(|v| v.to_str().unwrap()),
        Some(XSRF)
    );
    assert_eq!(
        site.calls(),
        [
            "GET /hub/home",
            "POST /hub/api/users/alice/server",
            "GET /hub/spawn-pending/alice"
        ]
    );
}

#[tokio::test]
async fn home_creates_a_named_server_and_reports_a_429() {
    let attempts = Arc::new(AtomicUsize::new(0));
    let site = Site::start({
        let attempts = attempts.clone();
        move |seen| match (&seen.method, seen.path.as_str()) {
            (&Method::GET, "/hub/home") => html(home_page(&[server("", ServerPhase::Running, None)])),
            (&Method::POST, "/hub/api/users/alice/servers/my%20lab") => {
                if attempts.fetch_add(1, Ordering::SeqCst) == 0 {
                    let mut busy = api(StatusCode::TOO_MANY_REQUESTS, json!({"status": 429, "message": "busy"}))?;
                    busy.headers_mut().insert(header::RETRY_AFTER, "7".parse().unwrap());
                    Some(busy)
                } else {
                    api(StatusCode::CREATED, json!({}))
                }
            }
            (&Method::GET, "/hub/spawn-pending/alice/my%20lab") => html("<!DOCTYPE html><title>pending</title>".into()),
            _ => None,
        }
    })
    .await;
    let browser = Browser::start().await.unwrap();
    browser.goto(&site.url("/hub/home")).await.unwrap();

    browser.find("label[for=new-server-name]").await.unwrap();
    browser
        .find("#new-server-name")
        .await
        .unwrap()
        .send_keys("my lab")
        .await
        .unwrap();
    let add = browser.find("form[data-new-server] button[type=submit]").await.unwrap();
    add.click().await.unwrap();
    let status = until(&browser, "document.querySelector('[role=status]').textContent").await;
    assert_eq!(status, json!("Too many servers are starting; try again in 7 seconds"));
    assert!(browser.current_url().await.unwrap().ends_with("/hub/home"));
    assert_eq!(add.attr("disabled").await.unwrap(), None, "the button works again");

    add.click().await.unwrap();
    browser
        .wait_until_url(|url| url.ends_with("/hub/spawn-pending/alice/my%20lab"), WAIT)
        .await
        .unwrap();
    let posts = site.requests(Method::POST, "/hub/api/users/alice/servers/my%20lab");
    assert_eq!(posts.len(), 2);
    assert!(
        posts
            .iter()
            .all(|p| p.headers.get("x-xsrftoken").is_some_and(|v| v == XSRF))
    );
}

#[tokio::test]
async fn home_stop_waits_until_the_server_is_gone_then_reloads() {
    let polls = Arc::new(AtomicUsize::new(0));
    let site = Site::start({
        let polls = polls.clone();
        move |seen| match (&seen.method, seen.path.as_str()) {
            (&Method::GET, "/hub/home") => html(home_page(&[server("", ServerPhase::Running, None)])),
            (&Method::DELETE, "/hub/api/users/alice/server") => api(StatusCode::ACCEPTED, json!({})),
            // Two polls see it stopping, the third sees it gone.
            (&Method::GET, "/hub/api/users/alice") => {
                let servers = if polls.fetch_add(1, Ordering::SeqCst) < 2 {
                    json!({"": {"name": "", "pending": "stop", "ready": false}})
                } else {
                    json!({})
                };
                api(StatusCode::OK, json!({"name": "alice", "servers": servers}))
            }
            _ => None,
        }
    })
    .await;
    let browser = Browser::start().await.unwrap();
    browser.goto(&site.url("/hub/home")).await.unwrap();

    browser
        .find(r#"[data-server=""] button[data-action="stop"]"#)
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let status = until(&browser, "document.querySelector('[role=status]').textContent").await;
    assert_eq!(status, json!("Stopping…"));

    let deadline = tokio::time::Instant::now() + WAIT;
    while site.requests(Method::GET, "/hub/home").len() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "no reload: {:?}", site.calls());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        site.calls(),
        [
            "GET /hub/home",
            "DELETE /hub/api/users/alice/server",
            "GET /hub/api/users/alice",
            "GET /hub/api/users/alice",
            "GET /hub/api/users/alice",
            "GET /hub/home",
        ]
    );
    assert!(
        site.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.path.starts_with("/hub/api/"))
            .all(|s| s.headers.get("x-xsrftoken").is_some_and(|v| v == XSRF))
    );
}

/// The pending page on a site whose progress stream the test feeds through the returned sender.
async fn pending_site() -> (Site, mpsc::UnboundedSender<Value>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let rx = Mutex::new(Some(rx));
    let site = Site::start(move |seen| match (&seen.method, seen.path.as_str()) {
        (&Method::GET, "/hub/spawn-pending/alice") => html(pages::spawn_pending(
            &ctx(Some("alice")),
            "alice",
            "",
            "/hub/api/users/alice/server/progress",
            "/user/alice/",
        )),
        // One stream; a second connection (after a reload) gets a stream that ends at once.
        (&Method::GET, "/hub/api/users/alice/server/progress") => match rx.lock().unwrap().take() {
            Some(rx) => event_stream(rx),
            None => event_stream(mpsc::unbounded_channel().1),
        },
        (&Method::GET, "/user/alice/") => {
            html("<!DOCTYPE html><title>alice's server</title><h1>JupyterLab</h1>".into())
        }
        (&Method::GET, "/hub/home") => html(home_page(&[])),
        _ => None,
    })
    .await;
    (site, tx)
}

#[tokio::test]
async fn spawn_pending_follows_progress_to_the_server() {
    let (site, events) = pending_site().await;
    let browser = Browser::start().await.unwrap();
    browser.goto(&site.url("/hub/spawn-pending/alice")).await.unwrap();
    assert_eq!(
        browser.find("h1").await.unwrap().text().await.unwrap(),
        "Starting your server"
    );
    let bar = browser.find("progress[max='100']").await.unwrap();
    assert_eq!(
        bar.attr("aria-label").await.unwrap().as_deref(),
        Some("Server start progress")
    );

    events
        .send(json!({"progress": 20, "message": "Server requested"}))
        .unwrap();
    events
        .send(json!({
            "progress": 60,
            "message": "Pulling image <b>jupyter/base</b>",
            "html_message": "<b id=\"injected\">Pulling</b>",
        }))
        .unwrap();
    until(&browser, "document.querySelectorAll('[data-log] li').length === 2").await;
    assert_eq!(
        browser
            .execute("return document.querySelector('progress').value;", &[])
            .await
            .unwrap(),
        json!(60)
    );
    let log: Vec<String> = {
        let mut texts = Vec::new();
        for item in browser.find_all("[data-log] li").await.unwrap() {
            texts.push(item.text().await.unwrap());
        }
        texts
    };
    // Messages are text; the spawner's HTML is not rendered.
    assert_eq!(log, ["Server requested", "Pulling image <b>jupyter/base</b>"]);
    assert!(browser.find_all("#injected, [data-log] b").await.unwrap().is_empty());
    shot(&browser, "pending").await;

    events
        .send(json!({"progress": 100, "ready": true, "message": "Ready", "url": "/user/alice/"}))
        .unwrap();
    browser
        .wait_until_url(|url| url.ends_with("/user/alice/"), WAIT)
        .await
        .unwrap();
    assert_eq!(browser.title().await.unwrap(), "alice's server");
}

#[tokio::test]
async fn spawn_pending_shows_a_failure_with_a_way_back() {
    let (site, events) = pending_site().await;
    let browser = Browser::start().await.unwrap();
    browser.goto(&site.url("/hub/spawn-pending/alice")).await.unwrap();
    assert!(
        browser
            .find("[data-failed]")
            .await
            .unwrap()
            .attr("hidden")
            .await
            .unwrap()
            .is_some()
    );

    events.send(json!({"progress": 30, "message": "Starting"})).unwrap();
    events
        .send(json!({"progress": 100, "failed": true, "message": "Spawn failed: image <x> not found"}))
        .unwrap();
    until(&browser, "!document.querySelector('[data-failed]').hidden").await;
    let failed = browser.find("[data-failed]").await.unwrap().text().await.unwrap();
    assert!(failed.contains("Your server failed to start"), "{failed}");
    assert!(failed.contains("Spawn failed: image <x> not found"), "{failed}");
    let again = browser.find("[data-failed] a").await.unwrap();
    assert_eq!(again.text().await.unwrap(), "Try again");
    assert_eq!(again.attr("href").await.unwrap().as_deref(), Some("/hub/home"));
    // The bar stays where the spawn got to; the failure's `progress: 100` is not success.
    assert_eq!(
        browser
            .execute("return document.querySelector('progress').value;", &[])
            .await
            .unwrap(),
        json!(30)
    );
    shot(&browser, "pending-failed").await;
    assert!(
        browser
            .current_url()
            .await
            .unwrap()
            .ends_with("/hub/spawn-pending/alice")
    );
}

#[tokio::test]
async fn spawn_pending_reloads_once_when_the_stream_ends_early() {
    let (site, events) = pending_site().await;
    let browser = Browser::start().await.unwrap();
    browser.goto(&site.url("/hub/spawn-pending/alice")).await.unwrap();
    events.send(json!({"progress": 50, "message": "Halfway"})).unwrap();
    until(&browser, "document.querySelectorAll('[data-log] li').length === 1").await;
    drop(events); // the stream ends with no verdict

    // One reload after about 2 s; the reloaded page's stream ends at once too, and it says so
    // instead of reloading again.
    let note = until(&browser, "document.querySelector('[data-note]').textContent.startsWith('Lost contact') && document.querySelector('[data-note]').textContent").await;
    assert_eq!(
        note,
        json!("Lost contact with the hub. Reload this page to check on your server.")
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        site.requests(Method::GET, "/hub/spawn-pending/alice").len(),
        2,
        "{:?}",
        site.calls()
    );
}

/// The "Services" menu opens without a script, fits a narrow screen open, and its link goes to
/// the service.
#[tokio::test]
async fn the_services_menu_opens_and_leads_to_the_service() {
    let site = Site::start(|seen| match (&seen.method, seen.path.as_str()) {
        (&Method::GET, "/hub/home") => html(home_page(&[server("", ServerPhase::Stopped, None)])),
        (&Method::GET, "/services/usage-dashboard/") => html("<!DOCTYPE html><title>usage</title>".into()),
        _ => None,
    })
    .await;
    let browser = Browser::start().await.unwrap();
    browser.set_window_size(320, 720).await.unwrap();
    browser.goto(&site.url("/hub/home")).await.unwrap();
    let link_shown = "document.querySelector('.services a').checkVisibility()";
    assert_eq!(
        browser.execute(&format!("return {link_shown};"), &[]).await.unwrap(),
        false,
        "closed at first"
    );
    browser.find(".services summary").await.unwrap().click().await.unwrap();
    until(&browser, link_shown).await;
    let fits = "return document.documentElement.scrollWidth <= window.innerWidth;";
    assert_eq!(
        browser.execute(fits, &[]).await.unwrap(),
        true,
        "the open menu is wider than the screen"
    );
    shot(&browser, "services-menu").await;
    let link = browser.find(".services a").await.unwrap();
    assert_eq!(link.text().await.unwrap(), "usage-dashboard");
    link.click().await.unwrap();
    browser
        .wait_until_url(|u| u.ends_with("/services/usage-dashboard/"), WAIT)
        .await
        .unwrap();
    assert_eq!(site.requests(Method::GET, "/services/usage-dashboard/").len(), 1);
}

/// Every page at 320 CSS pixels: nothing wider than the screen. Screenshots for a look by eye.
#[tokio::test]
async fn every_page_fits_a_narrow_screen() {
    let alice = ctx(Some("alice"));
    let named = [
        server("", ServerPhase::Running, Some("2024-05-01T12:03:04Z")),
        server("a-rather-long-server-name-for-the-table", ServerPhase::Pending, None),
        server("lab", ServerPhase::Stopped, Some("2024-05-01T12:03:04Z")),
    ];
    let pages: Vec<(&str, String)> = vec![
        (
            "login",
            pages::login(
                &ctx(None),
                &LoginOptions {
                    ask_password: true,
                    error: Some("Invalid username or password.".into()),
                    username: Some("alice".into()),
                    ..LoginOptions::default()
                },
            ),
        ),
        ("home", home_page(&named)),
        (
            "pending",
            pages::spawn_pending(&alice, "alice", "lab", "/nowhere", "/user/alice/lab/"),
        ),
        (
            "not-running",
            pages::not_running(&alice, "alice", "", "/hub/spawn/alice"),
        ),
        ("error-404", pages::error(&alice, 404, "")),
        ("error-503", pages::error(&alice, 503, "/user/alice/ is not answering")),
    ];
    let by_path: Vec<(String, String)> = pages
        .iter()
        .map(|(name, page)| (format!("/{name}"), page.clone()))
        .collect();
    let site = Site::start(move |seen| {
        by_path
            .iter()
            .find(|(p, _)| *p == seen.path)
            .and_then(|(_, page)| html(page.clone()))
    })
    .await;
    let browser = Browser::start().await.unwrap();
    browser.set_window_size(320, 720).await.unwrap();

    for (name, _) in &pages {
        browser.goto(&site.url(&format!("/{name}"))).await.unwrap();
        let sizes = browser
            .execute("return [window.innerWidth, document.documentElement.scrollWidth];", &[])
            .await
            .unwrap();
        let (viewport, content) = (sizes[0].as_u64().unwrap(), sizes[1].as_u64().unwrap());
        assert!(viewport <= 400, "window did not shrink: {viewport} px");
        assert!(
            content <= viewport,
            "{name}: content is {content} px wide at {viewport} px"
        );
        shot(&browser, &format!("narrow-{name}")).await;
    }
}
