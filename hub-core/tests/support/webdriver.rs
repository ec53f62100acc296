//! A small W3C WebDriver client for browser tests: it starts `chromedriver` on port 0 (it reports
//! the port it got on its standard output), opens
//! a headless Chromium session and speaks the protocol (JSON over HTTP/1.1, through hyper's
//! client connection API).
//!
//! Each command opens its own connection to chromedriver: on localhost that costs nothing, and a
//! connection chromedriver closed can never fail the next command. Every command is bounded by
//! [`COMMAND_TIMEOUT`], so a wedged browser fails a test instead of hanging it.
//!
//! Dropping the [`Browser`] deletes the session (which closes Chromium; killing chromedriver
//! alone can leave it running), then kills chromedriver.

use std::fmt;
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

/// The longest any one WebDriver command may take.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// How often `wait_*` methods look again.
const POLL: Duration = Duration::from_millis(50);

/// The key under which WebDriver returns an element reference (W3C WebDriver §12.1).
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

const CHROME_ARGS: [&str; 5] = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--window-size=1280,900",
];

pub type Result<T> = std::result::Result<T, Error>;

/// A failed command: which one, and what WebDriver (or the transport) said.
#[derive(Debug)]
pub struct Error {
    pub command: String,
    pub message: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WebDriver {} failed: {}", self.command, self.message)
    }
}

impl std::error::Error for Error {}

fn fail(command: impl Into<String>, message: impl fmt::Display) -> Error {
    Error {
        command: command.into(),
        message: message.to_string(),
    }
}

/// The chromedriver process; killed when dropped, also when `Browser::start` fails half-way.
struct Driver {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A headless Chromium driven through one WebDriver session.
pub struct Browser {
    // Field order matters for drop: `Browser::drop` ends the session while the driver still runs.
    driver: Driver,
    session: String,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session (1280×900). Fails with a message that
    /// says what is missing when chromedriver or Chromium cannot be started.
    pub async fn start() -> Result<Browser> {
        // chromedriver's `--port=0` picks a port free on IPv6, then binds it on IPv4 too, and
        // exits when another process holds it there ("IPv4 port not available"): that is tried
        // again, a few times.
        let mut attempts = 0;
        let (mut driver, port) = loop {
            attempts += 1;
            let mut child = Command::new("chromedriver")
                .arg("--port=0")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .spawn()
                .map_err(|e| {
                    fail(
                        "start",
                        format!("cannot run chromedriver ({e}); install chromium-driver"),
                    )
                })?;
            let reported = reported_port(child.stdout.take().expect("piped stdout"));
            let driver = Driver {
                child,
                addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            };
            match tokio::time::timeout(Duration::from_secs(10), reported).await {
                Ok(Ok(port)) => break (driver, port),
                Ok(Err(_)) if attempts < 5 => continue,
                Ok(Err(_)) => return Err(fail("start", "chromedriver exited before reporting its port, 5 times")),
                Err(_) => return Err(fail("start", "chromedriver reported no port within 10 s")),
            }
        };
        driver.addr.set_port(port);
        wait_ready(&mut driver).await?;

        let mut chrome = json!({ "args": CHROME_ARGS });
        if Path::new("/usr/bin/chromium").exists() {
            chrome["binary"] = json!("/usr/bin/chromium");
        }
        let capabilities = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": chrome,
                    // Bounded page loads and scripts, so `goto` and `execute` cannot hang a test.
                    "timeouts": { "pageLoad": 30_000, "script": 30_000 },
                }
            }
        });
        let value = send(driver.addr, Method::POST, "/session", Some(capabilities), "new session").await?;
        let session = value["sessionId"]
            .as_str()
            .ok_or_else(|| fail("new session", format!("no sessionId in {value}")))?
            .to_string();
        Ok(Browser { driver, session })
    }

    /// A command on this session; `path` is relative to `/session/{id}`.
    async fn command(&self, method: Method, path: &str, body: Option<Value>, name: &str) -> Result<Value> {
        let path = format!("/session/{}{path}", self.session);
        send(self.driver.addr, method, &path, body, name).await
    }

    pub async fn goto(&self, url: &str) -> Result<()> {
        self.command(
            Method::POST,
            "/url",
            Some(json!({ "url": url })),
            &format!("goto {url}"),
        )
        .await?;
        Ok(())
    }

    pub async fn current_url(&self) -> Result<String> {
        string(
            self.command(Method::GET, "/url", None, "current_url").await?,
            "current_url",
        )
    }

    pub async fn title(&self) -> Result<String> {
        string(self.command(Method::GET, "/title", None, "title").await?, "title")
    }

    /// The first element matching `css`; an error if there is none.
    pub async fn find(&self, css: &str) -> Result<Element<'_>> {
        let name = format!("find {css:?}");
        let value = self.command(Method::POST, "/element", Some(by_css(css)), &name).await?;
        self.element(value, css, &name)
    }

    /// Every element matching `css`, possibly none.
    pub async fn find_all(&self, css: &str) -> Result<Vec<Element<'_>>> {
        let name = format!("find_all {css:?}");
        let value = self
            .command(Method::POST, "/elements", Some(by_css(css)), &name)
            .await?;
        let Value::Array(items) = value else {
            return Err(fail(name, format!("expected an array, got {value}")));
        };
        items.into_iter().map(|v| self.element(v, css, &name)).collect()
    }

    fn element(&self, value: Value, css: &str, name: &str) -> Result<Element<'_>> {
        let id = value[ELEMENT_KEY]
            .as_str()
            .ok_or_else(|| fail(name, format!("not an element: {value}")))?;
        Ok(Element {
            browser: self,
            id: id.to_string(),
            css: css.to_string(),
        })
    }

    /// The first element matching `css`, once there is one.
    pub async fn wait_for(&self, css: &str, timeout: Duration) -> Result<Element<'_>> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.find(css).await {
                Ok(element) => return Ok(element),
                Err(e) if Instant::now() >= deadline => {
                    return Err(fail(
                        format!("wait_for {css:?}"),
                        format!("none after {timeout:?} ({})", e.message),
                    ));
                }
                Err(_) => tokio::time::sleep(POLL).await,
            }
        }
    }

    /// The text of the first element matching `css` once it contains `needle` (text that a
    /// script fills in, e.g. a WebSocket round trip); the last text seen in the error otherwise.
    pub async fn wait_for_text(&self, css: &str, needle: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.wait_for(css, timeout).await?.text().await?;
            if text.contains(needle) {
                return Ok(text);
            }
            if Instant::now() >= deadline {
                return Err(fail(
                    format!("wait_for_text {css:?}"),
                    format!("no {needle:?} after {timeout:?}, only {text:?}"),
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Opens `url` and signs in as `user` on the hub's login page it leads to (the test
    /// configurations accept any name without a password).
    pub async fn sign_in(&self, url: &str, user: &str, timeout: Duration) -> Result<()> {
        self.goto(url).await?;
        self.wait_for("#username", timeout).await?.send_keys(user).await?;
        self.submit().await
    }

    /// Clicks the first submit button (of the page's first form with one).
    pub async fn submit(&self) -> Result<()> {
        self.find("button[type=submit]").await?.click().await
    }

    /// Waits until the current URL satisfies `done`, and returns it.
    pub async fn wait_until_url(&self, done: impl Fn(&str) -> bool, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let url = self.current_url().await?;
            if done(&url) {
                return Ok(url);
            }
            if Instant::now() >= deadline {
                return Err(fail("wait_until_url", format!("still at {url} after {timeout:?}")));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Runs `script` as a function body with `arguments` = `args`, and returns what it returns.
    pub async fn execute(&self, script: &str, args: &[Value]) -> Result<Value> {
        let body = json!({ "script": script, "args": args });
        self.command(Method::POST, "/execute/sync", Some(body), "execute").await
    }

    /// Resizes the window (outer size, in CSS pixels).
    pub async fn set_window_size(&self, width: u32, height: u32) -> Result<()> {
        let body = json!({ "width": width, "height": height });
        self.command(Method::POST, "/window/rect", Some(body), "set_window_size")
            .await?;
        Ok(())
    }

    /// Saves a PNG of the viewport at `path`, creating its directory.
    pub async fn screenshot_png(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let name = format!("screenshot {}", path.display());
        let encoded = string(self.command(Method::GET, "/screenshot", None, &name).await?, &name)?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|e| fail(&name, e))?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| fail(&name, e))?;
        }
        std::fs::write(path, png).map_err(|e| fail(&name, e))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Drop cannot await, and may run on the test's runtime thread: end the session from a
        // thread of its own, bounded by COMMAND_TIMEOUT. Best effort; the driver is killed next.
        let addr = self.driver.addr;
        let path = format!("/session/{}", self.session);
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime
                .block_on(send(addr, Method::DELETE, &path, None, "delete session"))
                .ok()
        })
        .join();
    }
}

/// An element found on the current page.
pub struct Element<'b> {
    browser: &'b Browser,
    id: String,
    /// The selector it was found by, for error messages.
    css: String,
}

impl Element<'_> {
    async fn command(&self, method: Method, path: &str, body: Option<Value>, what: &str) -> Result<Value> {
        let path = format!("/element/{}{path}", self.id);
        self.browser
            .command(method, &path, body, &format!("{what} on {:?}", self.css))
            .await
    }

    pub async fn click(&self) -> Result<()> {
        self.command(Method::POST, "/click", Some(json!({})), "click").await?;
        Ok(())
    }

    /// The rendered text, as a user sees it.
    pub async fn text(&self) -> Result<String> {
        string(self.command(Method::GET, "/text", None, "text").await?, "text")
    }

    pub async fn send_keys(&self, keys: &str) -> Result<()> {
        self.command(Method::POST, "/value", Some(json!({ "text": keys })), "send_keys")
            .await?;
        Ok(())
    }

    /// The attribute `name`, or `None` when the element has none.
    pub async fn attr(&self, name: &str) -> Result<Option<String>> {
        let what = format!("attr {name:?}");
        match self
            .command(Method::GET, &format!("/attribute/{name}"), None, &what)
            .await?
        {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(s)),
            other => Err(fail(what, format!("expected a string, got {other}"))),
        }
    }
}

fn by_css(css: &str) -> Value {
    json!({ "using": "css selector", "value": css })
}

fn string(value: Value, command: &str) -> Result<String> {
    match value {
        Value::String(s) => Ok(s),
        other => Err(fail(command, format!("expected a string, got {other}"))),
    }
}

/// The port chromedriver started with `--port=0` got, from its line `ChromeDriver was started
/// successfully on port 41234.` Its output is read to the end (and dropped) so that it never
/// blocks on a full pipe; the receiver fails if it exits without the line.
fn reported_port(stdout: std::process::ChildStdout) -> tokio::sync::oneshot::Receiver<u16> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in std::io::BufReader::new(stdout).lines().map_while(|l| l.ok()) {
            let port = line
                .split_once("started successfully on port ")
                .and_then(|(_, port)| port.trim().trim_end_matches('.').parse().ok());
            if let Some(port) = port
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(port);
            }
        }
    });
    rx
}

/// Polls `/status` until chromedriver says it is ready, or it exits, or ten seconds pass.
async fn wait_ready(driver: &mut Driver) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Some(status)) = driver.child.try_wait() {
            return Err(fail("start", format!("chromedriver exited with {status}")));
        }
        match send(driver.addr, Method::GET, "/status", None, "status").await {
            Ok(value) if value["ready"] == json!(true) => return Ok(()),
            Ok(value) if Instant::now() >= deadline => {
                return Err(fail("start", format!("chromedriver not ready after 10 s: {value}")));
            }
            Err(e) if Instant::now() >= deadline => {
                return Err(fail("start", format!("chromedriver not answering: {e}")));
            }
            _ => tokio::time::sleep(POLL).await,
        }
    }
}

/// One WebDriver request: returns the response's `value`, or an error naming `command` with
/// WebDriver's `error` and `message` (W3C WebDriver §6.6).
async fn send(addr: SocketAddr, method: Method, path: &str, body: Option<Value>, command: &str) -> Result<Value> {
    let name = format!("{command} ({method} {path})");
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect to {addr}: {e}"))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let request = Request::builder()
            .method(&method)
            .uri(path)
            .header(header::HOST, addr.to_string())
            .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok::<_, String>((status, bytes))
    };
    let (status, bytes) = match tokio::time::timeout(COMMAND_TIMEOUT, exchange).await {
        Err(_) => return Err(fail(name, format!("no answer within {COMMAND_TIMEOUT:?}"))),
        Ok(Err(e)) => return Err(fail(name, e)),
        Ok(Ok(answer)) => answer,
    };
    let mut json: Value = serde_json::from_slice(&bytes).map_err(|e| {
        fail(
            &name,
            format!(
                "HTTP {status}, body not JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            ),
        )
    })?;
    let value = json["value"].take();
    if status != StatusCode::OK {
        let error = value["error"].as_str().unwrap_or("unknown error");
        let message = value["message"].as_str().unwrap_or_default();
        return Err(fail(name, format!("HTTP {status}, {error}: {message}")));
    }
    Ok(value)
}
