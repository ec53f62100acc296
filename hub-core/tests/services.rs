//! JupyterHub services (`[[services]]`): a managed service started with JupyterHub's environment
//! and started again when it exits, served behind the proxy at `/services/{name}/`; services'
//! tokens holding only their scopes; `GET /hub/api/services`; and jupyterhub-idle-culler (pip,
//! unchanged) run by the hub as a managed service that is no admin.

mod support;

use std::time::Duration;

use config::{ServiceAccess, ServiceConfig};
use http::{Method, StatusCode};
use serde_json::{Value, json};
use support::*;

/// A service in Python: asks the hub who it is and for the user list with its token, appends
/// what it saw and its environment to OUT, exits on its first run, and on later runs serves
/// its URL (on the listener it inherits, `LISTEN_FD`), answering with its name and the path it
/// was asked for.
const PROBE: &str = r#"
import http.server, json, os, socket, sys, urllib.error, urllib.request
out = sys.argv[1]
def call(path):
    req = urllib.request.Request(os.environ["JUPYTERHUB_API_URL"] + path,
        headers={"Authorization": "token " + os.environ["JUPYTERHUB_API_TOKEN"]})
    try:
        with urllib.request.urlopen(req) as r:
            return [r.status, json.load(r)]
    except urllib.error.HTTPError as e:
        return [e.code, None]
seen = {"pid": os.getpid(), "whoami": call("/user"), "users": call("/users")[0],
        "env": {k: v for k, v in os.environ.items() if k.startswith("JUPYTERHUB_") or k == "PROBE_COLOUR"}}
with open(out, "a") as f:
    f.write(json.dumps(seen) + "\n")
if sum(1 for _ in open(out)) == 1:
    sys.exit(3)
class Answer(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"service": os.environ["JUPYTERHUB_SERVICE_NAME"], "path": self.path,
                           "user": self.headers.get("X-Forwarded-User")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), Answer, bind_and_activate=False)
server.socket = socket.socket(fileno=int(os.environ["LISTEN_FD"]))
server.serve_forever()
"#;

/// A listener on a free port, bound now and left open across `exec` in the processes the hub
/// starts, as the service's `environment` tells them (`LISTEN_FD`): the service serves on it, so
/// the port of its `url` cannot be taken between being chosen and being served.
/// Returns the listener (to keep open), its URL and the environment entry.
fn inherited_listener() -> (std::net::TcpListener, String, (String, String)) {
    use std::os::fd::AsRawFd;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let fd = listener.as_raw_fd();
    // SAFETY: clears FD_CLOEXEC on a descriptor `listener` owns and keeps open.
    assert_eq!(unsafe { libc::fcntl(fd, libc::F_SETFD, 0) }, 0, "clear FD_CLOEXEC");
    let url = format!("http://{}", listener.local_addr().unwrap());
    (listener, url, ("LISTEN_FD".to_owned(), fd.to_string()))
}

fn service(name: &str) -> ServiceConfig {
    ServiceConfig {
        name: name.to_owned(),
        api_token: None,
        admin: false,
        scopes: Vec::new(),
        url: None,
        command: Vec::new(),
        environment: Default::default(),
        access: ServiceAccess::Public,
        groups: Vec::new(),
        display: true,
    }
}

fn runs(out: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_run_with_their_own_tokens_scopes_and_routes() {
    let dir = temp_dir("services");
    let out = dir.join("probe-runs.jsonl");
    let script = dir.join("probe.py");
    std::fs::write(&script, PROBE).unwrap();
    let (_listener, url, listen_fd) = inherited_listener();
    let mut config = test_config(&dir);
    config.services = vec![
        ServiceConfig {
            command: vec![
                pyenv_bin("python").display().to_string(),
                script.display().to_string(),
                out.display().to_string(),
            ],
            url: Some(url.clone()),
            access: ServiceAccess::Users,
            scopes: vec!["read:users:name".to_owned()],
            environment: [("PROBE_COLOUR".to_owned(), "teal".to_owned()), listen_fd].into(),
            ..service("probe")
        },
        ServiceConfig {
            api_token: Some("dashboard-token-0123".to_owned()),
            scopes: ["list:users", "read:users", "list:services", "read:services"]
                .map(str::to_owned)
                .to_vec(),
            ..service("dashboard")
        },
        ServiceConfig {
            api_token: Some("ops-token-0123".to_owned()),
            admin: true,
            ..service("ops")
        },
    ];
    let hub = TestHub::start(config).await;

    // The probe ran, exited, and was started again.
    eventually(Duration::from_secs(20), "the probe started twice", || {
        let n = runs(&out).len();
        async move { n >= 2 }
    })
    .await;
    let seen = runs(&out);
    let first = &seen[0];
    assert_eq!(first["whoami"][0], 200, "{first}");
    assert_eq!(first["whoami"][1]["kind"], "service");
    assert_eq!(first["whoami"][1]["name"], "probe");
    assert_eq!(first["whoami"][1]["admin"], false);
    assert_eq!(
        first["users"], 403,
        "listing users needs list:users, which the probe lacks"
    );
    let env = &first["env"];
    assert_eq!(env["JUPYTERHUB_SERVICE_NAME"], "probe");
    assert_eq!(env["JUPYTERHUB_SERVICE_PREFIX"], "/services/probe/");
    assert_eq!(env["JUPYTERHUB_SERVICE_URL"], url);
    assert_eq!(env["JUPYTERHUB_BASE_URL"], "/");
    assert_eq!(env["PROBE_COLOUR"], "teal");
    assert!(
        env["JUPYTERHUB_API_URL"].as_str().unwrap().ends_with("/hub/api"),
        "{env}"
    );
    assert_ne!(seen[1]["pid"], first["pid"], "a new process");
    let pid = seen[1]["pid"].as_i64().unwrap();

    // Its web server is behind the proxy at its prefix, the path passed on whole; with
    // `access = "users"` the edge lets signed-in users through, named in X-Forwarded-User.
    let mut user = hub.login("alice").await;
    eventually(Duration::from_secs(10), "the probe answers at /services/probe/", || {
        let mut alice = hub.client();
        alice.cookies = user.cookies.clone();
        async move {
            let r = alice.get("/services/probe/hello?x=1").await;
            r.status == StatusCode::OK
                && r.json() == json!({"service": "probe", "path": "/services/probe/hello?x=1", "user": "alice"})
        }
    })
    .await;
    let anonymous = hub.client().get("/services/probe/hello").await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED, "{}", anonymous.text());

    // A service's token holds its scopes and nothing more.
    let mut dashboard = hub.with_token("dashboard-token-0123");
    let me = dashboard.api(Method::GET, "/user", None).await.json();
    assert_eq!(
        (me["kind"].as_str(), me["name"].as_str(), me["admin"].as_bool()),
        (Some("service"), Some("dashboard"), Some(false))
    );
    assert!(me["scopes"].as_array().unwrap().contains(&json!("list:users")), "{me}");
    assert_eq!(dashboard.api(Method::GET, "/users", None).await.status, StatusCode::OK);
    let create = dashboard
        .api(Method::POST, "/users", Some(json!({"usernames": ["eve"]})))
        .await;
    assert_eq!(create.status, StatusCode::FORBIDDEN, "{}", create.text());
    assert_eq!(
        dashboard.api(Method::DELETE, "/users/eve/server", None).await.status,
        StatusCode::FORBIDDEN
    );

    // The service list, as JupyterHub gives it: by name, with the managed one's process.
    let listed = dashboard.api(Method::GET, "/services", None).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text());
    let listed = listed.json();
    assert_eq!(listed["probe"]["pid"].as_i64(), Some(pid), "{listed}");
    assert_eq!(listed["probe"]["prefix"], "/services/probe/");
    assert_eq!(listed["probe"]["url"], url);
    assert_eq!(listed["ops"]["admin"], true);
    assert_eq!(listed["dashboard"]["command"], json!([]));
    let one = dashboard.api(Method::GET, "/services/probe", None).await.json();
    assert_eq!(one["name"], "probe");
    assert_eq!(
        dashboard.api(Method::GET, "/services/nope", None).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        user.api(Method::GET, "/services", None).await.status,
        StatusCode::FORBIDDEN
    );
    // Signed-in users find the services with a web page in the pages' "Services" menu.
    let home = user.get("/hub/home").await.text();
    assert!(
        home.contains(r#"<li><a href="/services/probe/">probe</a></li>"#),
        "{home}"
    );
    assert!(
        !home.contains(">dashboard<"),
        "a service without a url has no page to link"
    );

    // An admin service may do what an admin may.
    let mut ops = hub.with_token("ops-token-0123");
    let created = ops
        .api(Method::POST, "/users", Some(json!({"usernames": ["eve"]})))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
    assert_eq!(ops.api(Method::GET, "/user", None).await.json()["admin"], true);

    // The service's route is the hub's: tagged, and put back if the proxy loses it.
    let routes = hub.running.hub.proxy.routes().await.unwrap();
    let route = &routes["/services/probe"];
    assert_eq!(route.target, url);
    assert_eq!(route.data["service"], "probe");
    hub.running.hub.proxy.delete_route("/services/probe/").await.unwrap();
    eventually(
        Duration::from_secs(10),
        "the reconcile restores the service's route",
        || {
            let proxy = hub.running.hub.proxy.clone();
            async move { proxy.routes().await.is_ok_and(|r| r.contains_key("/services/probe")) }
        },
    )
    .await;

    // The hub stops its services with it.
    hub.stop().await;
    assert!(!pid_alive(pid), "the probe (pid {pid}) outlived the hub");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jupyterhub_idle_culler_runs_as_a_managed_service_with_only_its_scopes() {
    let dir = temp_dir("culler-service");
    let mut config = test_config(&dir);
    config.services = vec![ServiceConfig {
        command: [
            pyenv_bin("python").display().to_string().as_str(),
            "-m",
            "jupyterhub_idle_culler",
            "--timeout=2",
            "--cull-every=1",
        ]
        .map(str::to_owned)
        .to_vec(),
        // What z2jh's culler role holds: no admin.
        scopes: ["list:users", "read:users:activity", "read:servers", "delete:servers"]
            .map(str::to_owned)
            .to_vec(),
        ..service("idle-culler")
    }];
    let hub = TestHub::start(config).await;
    let mut admin = hub.admin();
    admin
        .api(Method::POST, "/users", Some(json!({"usernames": ["idle1", "idle2"]})))
        .await;
    for user in ["idle1", "idle2"] {
        start_server(&mut admin, user).await;
    }
    eventually(Duration::from_secs(30), "the culler stopped both idle servers", || {
        let mut admin = hub.admin();
        async move {
            let ready = admin.api(Method::GET, "/users?state=ready", None).await.json();
            ready.as_array().is_some_and(|a| a.is_empty())
        }
    })
    .await;
    let log = std::fs::read_to_string(dir.join("logs/service-idle-culler.log")).unwrap_or_default();
    assert!(
        log.contains("idle1") && log.contains("idle2"),
        "the culler's log:\n{log}"
    );
    hub.stop().await;
}

/// A service's page written with JupyterHub's own `HubOAuth` (pip's jupyterhub, unchanged): it
/// sends the browser to the hub to sign in, and shows who signed in and the scopes it was given.
const WHOAMI_OAUTH: &str = r#"
import json, os, socket
from tornado import ioloop, web
from tornado.httpserver import HTTPServer
from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated
from jupyterhub.utils import url_path_join
class WhoAmI(HubOAuthenticated, web.RequestHandler):
    @web.authenticated
    def get(self):
        user = self.get_current_user()
        self.set_header("Content-Type", "application/json")
        self.write(json.dumps({"name": user["name"], "scopes": sorted(user.get("scopes", []))}))
prefix = os.environ["JUPYTERHUB_SERVICE_PREFIX"]
app = web.Application(
    [(prefix, WhoAmI), (url_path_join(prefix, "oauth_callback"), HubOAuthCallbackHandler)],
    cookie_secret=os.urandom(32),
)
listener = socket.socket(fileno=int(os.environ["LISTEN_FD"]))
listener.setblocking(False)
HTTPServer(app).add_sockets([listener])
ioloop.IOLoop.current().start()
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_signs_users_in_through_the_hubs_oauth() {
    let dir = temp_dir("service-oauth");
    let script = dir.join("whoami.py");
    std::fs::write(&script, WHOAMI_OAUTH).unwrap();
    let (_listener, url, listen_fd) = inherited_listener();
    let mut config = test_config(&dir);
    config.services = vec![
        ServiceConfig {
            command: vec![pyenv_bin("python").display().to_string(), script.display().to_string()],
            url: Some(url),
            environment: [listen_fd].into(),
            ..service("whoami")
        },
        ServiceConfig {
            url: Some("http://127.0.0.1:9".to_owned()),
            access: ServiceAccess::Admins,
            groups: vec!["staff".to_owned()],
            ..service("staff-only")
        },
    ];
    let hub = TestHub::start(config).await;
    let alice = hub.login("alice").await;

    // Signed in to the hub, alice opens the service: it sends her to the hub's OAuth endpoint,
    // which sends her back to its callback with a code that it trades for a token.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let (body, visited) = loop {
        let mut browser = hub.client();
        browser.cookies = alice.cookies.clone();
        let (reply, visited) = follow(&mut browser, "/services/whoami/", 8).await;
        if reply.status == StatusCode::OK {
            break (reply.text(), visited);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the service did not sign alice in: {visited:?} ended in {} {}",
            reply.status,
            reply.text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        visited.iter().any(|p| p.starts_with("/hub/api/oauth2/authorize?")),
        "{visited:?}"
    );
    assert!(
        visited
            .iter()
            .any(|p| p.starts_with("/services/whoami/oauth_callback?")),
        "{visited:?}"
    );
    let seen: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(seen["name"], "alice");
    // The token the service holds tells it who she is and that she may use it, and no more: it
    // cannot act as alice (her own tokens hold `servers!user=alice`, `tokens!user=alice`…).
    let scopes: Vec<&str> = seen["scopes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert!(scopes.contains(&"access:services!service=whoami"), "{scopes:?}");
    assert!(
        !scopes
            .iter()
            .any(|s| s.starts_with("servers") || s.starts_with("tokens")),
        "{scopes:?}"
    );

    // A service for admins and staff: alice, in neither, gets no code; a callback of another
    // client is refused.
    let mut alice_api = hub.client();
    alice_api.cookies = alice.cookies.clone();
    let authorize = |client: &str, callback: &str| {
        format!("/hub/api/oauth2/authorize?client_id={client}&redirect_uri={callback}&response_type=code")
    };
    let r = alice_api
        .get(&authorize(
            "service-staff-only",
            "%2Fservices%2Fstaff-only%2Foauth_callback",
        ))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    let r = alice_api
        .get(&authorize(
            "service-whoami",
            "%2Fservices%2Fstaff-only%2Foauth_callback",
        ))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    // Once in the group, she may.
    let mut admin = hub.admin();
    let r = admin
        .api(Method::POST, "/groups/staff", Some(json!({"users": ["alice"]})))
        .await;
    assert!(r.status.is_success(), "{}", r.text());
    let r = alice_api
        .get(&authorize(
            "service-staff-only",
            "%2Fservices%2Fstaff-only%2Foauth_callback",
        ))
        .await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.text());
    assert!(
        r.location().starts_with("/services/staff-only/oauth_callback?code="),
        "{}",
        r.location()
    );
    hub.stop().await;
}
