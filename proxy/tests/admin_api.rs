//! The CHP REST API, black-box: the cases of CHP's `test/api_spec.js` and `test/store_spec.js`,
//! what CHP 5.3.0 answers beyond them (token rule, status codes and bodies, key decoding), the
//! fixes of its hangs and crashes (docs/compatibility.md), and the batch extension.

mod support;

use serde_json::json;
use support::*;

#[test]
fn default_target_is_a_listed_route_and_serves_everything() {
    let up = Upstream::echo("/");
    let p = Edgeproxy::start(&["--default-target", &up.target]);
    let routes = p.routes();
    assert_eq!(routes.as_object().unwrap().keys().collect::<Vec<_>>(), ["/"]);
    assert_eq!(routes["/"]["target"], up.target.as_str());
    for path in ["/", "/any/random/url"] {
        let r = p.get(path);
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["path"], "/");
    }
}

#[test]
fn token_is_checked_like_chp() {
    let p = Edgeproxy::start(&[]);
    let cases = [
        (None, 403),
        (Some("token wrong"), 403),
        (Some("Bearer secret"), 403),
        (Some("Token secret"), 403),
        (Some("token secretX"), 403),
        (Some("token secret"), 200),
        (Some("token \t secret"), 200),
        (Some("token secret extra"), 200),
        (Some("xtoken secret"), 200),
    ];
    for (header, want) in cases {
        let headers: Vec<(&str, &str)> = header.map(|h| ("Authorization", h)).into_iter().collect();
        let r = p.api_with("GET", "/api/routes", None, &headers);
        assert_eq!(r.status, want, "Authorization: {header:?}");
        if want == 403 {
            assert!(r.body.is_empty(), "403 has an empty body");
        }
    }
}

#[test]
fn without_a_token_the_api_is_open() {
    let p = Edgeproxy::start_with(&[], None);
    assert_eq!(p.api_with("GET", "/api/routes", None, &[]).status, 200);
    assert!(p.log_text().contains("REST API is not authenticated"));
}

#[test]
fn dispatch_order_paths_methods_and_bodies() {
    let p = Edgeproxy::start(&[]);
    for path in ["/api", "/api/", "/", "/api/routesX", "//api/routes"] {
        let r = p.api("GET", path, None);
        assert_eq!((r.status, r.text().as_str()), (404, "Not Found"), "GET {path}");
    }
    for method in ["PUT", "PATCH", "OPTIONS"] {
        let r = p.api(method, "/api/routes/x", None);
        assert_eq!((r.status, r.text().as_str()), (405, "Method not supported"), "{method}");
    }
    assert_eq!(p.api("HEAD", "/api/routes", None).status, 405);
    // Unauthenticated requests still get 404/405: those checks come first.
    assert_eq!(p.api_with("PUT", "/api/routes", None, &[]).status, 405);

    for body in ["", "{bad"] {
        let r = p.api("POST", "/api/routes/x", Some(body));
        assert_eq!(r.status, 400, "{body:?}");
        assert!(r.text().starts_with("Body not valid JSON"), "{}", r.text());
    }
    for body in ["null", "[1,2]", "{\"foo\":1}", "{\"target\":5}", "false", "\"\""] {
        let r = p.api("POST", "/api/routes/x", Some(body));
        assert_eq!(
            (r.status, r.text().as_str()),
            (400, "Must specify 'target' as string"),
            "{body:?}"
        );
    }
    // The body is parsed before the token is checked, as in CHP.
    assert_eq!(p.api_with("POST", "/api/routes/x", Some("{bad"), &[]).status, 400);
    assert_eq!(
        p.api_with("POST", "/api/routes/x", Some("{\"target\":\"http://x\"}"), &[])
            .status,
        403
    );
    // Any Content-Type is fine (JupyterHub 6 sends text/plain).
    let r = p.api_with(
        "POST",
        "/api/routes/typed",
        Some("{\"target\":\"http://127.0.0.1:1\"}"),
        &[
            ("Authorization", "token secret"),
            ("Content-Type", "text/plain; charset=utf-8"),
        ],
    );
    assert_eq!(r.status, 201);
}

#[test]
fn add_get_replace_delete_round_trip() {
    let p = Edgeproxy::start(&[]);
    let r = p.api(
        "POST",
        "/api/routes/user/foo",
        Some(
            &json!({"target": "http://127.0.0.1:8998", "jupyterhub": true, "user": "foo", "server_name": ""})
                .to_string(),
        ),
    );
    assert_eq!(r.status, 201);
    assert!(r.body.is_empty());

    let one = p.api("GET", "/api/routes/user/foo", None);
    assert_eq!(one.status, 200);
    assert_eq!(one.header("content-type"), Some("application/json"));
    let data = one.json();
    assert_eq!(data["target"], "http://127.0.0.1:8998");
    assert_eq!(
        (
            data["jupyterhub"].clone(),
            data["user"].clone(),
            data["server_name"].clone()
        ),
        (json!(true), json!("foo"), json!(""))
    );
    let stamp = data["last_activity"].as_str().unwrap();
    assert!(
        stamp.len() == 24 && stamp.ends_with('Z') && stamp.as_bytes()[19] == b'.',
        "format with ms and Z: {stamp}"
    );

    // Trailing slashes are normalised; GET-one is exact, not a prefix match.
    assert_eq!(p.api("GET", "/api/routes/user/foo/", None).json(), data);
    assert_eq!(p.api("GET", "/api/routes/user/foo/x", None).status, 404);
    assert_eq!(p.api("GET", "/api/routes/missing", None).status, 404);

    // Re-POST replaces the data whole and resets last_activity (a client value is ignored).
    std::thread::sleep(std::time::Duration::from_millis(5));
    let r = p.api(
        "POST",
        "/api/routes/user/foo/",
        Some(&json!({"target": "http://127.0.0.1:8999", "last_activity": "garbage"}).to_string()),
    );
    assert_eq!(r.status, 201);
    let replaced = p.api("GET", "/api/routes/user/foo", None).json();
    assert_eq!(replaced["target"], "http://127.0.0.1:8999");
    assert!(replaced.get("user").is_none(), "old fields are gone: {replaced}");
    assert!(ms(replaced["last_activity"].as_str().unwrap()) > ms(stamp));

    let r = p.api("DELETE", "/api/routes/user/foo/", None);
    assert_eq!((r.status, r.body.is_empty()), (204, true));
    assert_eq!(p.api("DELETE", "/api/routes/user/foo", None).status, 404);
    assert_eq!(p.api("GET", "/api/routes/user/foo", None).status, 404);
}

#[test]
fn keys_are_percent_decoded_and_returned_decoded() {
    let up = Upstream::echo("/user/foo@bar");
    let p = Edgeproxy::start(&[]);
    p.add_route("/user/foo%40bar", &up.target);
    p.add_route("/user/a%40b%2Fc%20d", "http://127.0.0.1:1");
    p.add_route("/has/%C3%BC%C3%B1", "http://127.0.0.1:1");
    p.add_route("/user/a+b", "http://127.0.0.1:1");
    let routes = p.routes();
    let keys: Vec<&String> = routes.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        ["/user/foo@bar", "/user/a@b/c d", "/has/üñ", "/user/a+b"],
        "decoded, in insertion order"
    );
    let raw = p.api("GET", "/api/routes", None).text();
    assert!(raw.contains("/has/üñ"), "UTF-8 in JSON, not \\u escapes: {raw}");
    assert_eq!(p.get("/user/foo@bar/path").json()["path"], "/user/foo@bar");
}

#[test]
fn root_route_via_empty_and_slash_paths() {
    let p = Edgeproxy::start(&[]);
    let r = p.api("POST", "/api/routes", Some("{\"target\":\"http://127.0.0.1:1\"}"));
    assert_eq!(r.status, 201);
    assert!(p.routes()["/"]["last_activity"].is_string());
    assert_eq!(
        p.api("GET", "/api/routes/", None).json().as_object().unwrap().len(),
        1,
        "/api/routes/ lists"
    );
    assert_eq!(
        p.api("DELETE", "/api/routes/", None).status,
        204,
        "DELETE /api/routes/ removes /"
    );
    assert_eq!(p.routes(), json!({}));
}

#[test]
fn chp_hangs_become_clear_errors() {
    let p = Edgeproxy::start(&[]);
    for path in ["/api/routes/%ZZ", "/api/routes/user/%E0%A4%A", "/api/routes/%"] {
        for method in ["GET", "POST", "DELETE"] {
            let body = (method == "POST").then_some("{\"target\":\"http://x\"}");
            let r = p.api(method, path, body);
            assert_eq!(r.status, 400, "{method} {path}");
            assert!(r.text().contains("percent-encoding"), "{}", r.text());
        }
    }
    let r = p.api("DELETE", "/api/routes", None);
    assert_eq!(r.status, 400);
    assert!(r.text().contains("needs a route path"));
}

#[test]
fn inactive_since_filters_strictly_older_routes() {
    let p = Edgeproxy::start(&[]);
    p.add_route("/old", "http://127.0.0.1:1");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let t = p.last_activity("/old");
    let t_ms = ms(&t) + 500;
    std::thread::sleep(std::time::Duration::from_millis(600));
    p.add_route("/new", "http://127.0.0.1:1");
    let iso = |ms: i64| proxy::timestamp::format_iso(ms as u64);
    let keys = |q: &str| {
        let r = p.api("GET", &format!("/api/routes?{q}"), None);
        assert_eq!(r.status, 200, "{q}: {}", r.text());
        r.json().as_object().unwrap().keys().cloned().collect::<Vec<_>>()
    };
    assert_eq!(keys(&format!("inactive_since={}", iso(t_ms))), ["/old"]);
    assert_eq!(keys(&format!("inactiveSince={}", iso(t_ms))), ["/old"]);
    assert_eq!(
        keys(&format!("inactive_since={}", iso(t_ms - 3_600_000))),
        Vec::<String>::new()
    );
    assert_eq!(keys("inactive_since=1970-01-01T00:00:00.001Z"), Vec::<String>::new());
    assert_eq!(
        keys(&format!("inactive_since={}", iso(t_ms + 3_600_000))),
        ["/old", "/new"]
    );
    assert_eq!(keys("inactive_since="), ["/old", "/new"]);
    assert_eq!(
        keys(&format!("inactive_since={t}")),
        Vec::<String>::new(),
        "equal timestamp is excluded"
    );
    // A non-ASCII offset once split a character while being sliced: 400, and the API lives on.
    let r = p.api("GET", "/api/routes?inactive_since=2026-11-21T10:29%2Ba%C3%A91", None);
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(p.api("GET", "/api/routes", None).status, 200);
    for bad in ["garbage", "endoftheuniverse"] {
        let r = p.api("GET", &format!("/api/routes?inactive_since={bad}"), None);
        assert_eq!(
            (r.status, r.text()),
            (400, format!("Invalid datestamp '{bad}' must be ISO8601."))
        );
    }
}

#[test]
fn host_routing_records_the_host() {
    let p = Edgeproxy::start(&["--host-routing"]);
    p.add_route("/example.com", "http://127.0.0.1:1");
    p.add_route("/", "http://127.0.0.1:1");
    let routes = p.routes();
    assert_eq!(routes["/example.com"]["host"], "example.com");
    assert!(routes["/"].get("host").is_none());
}

#[test]
fn batch_applies_atomically_and_validates_first() {
    let p = Edgeproxy::start(&[]);
    p.add_route("/keep", "http://127.0.0.1:1");
    p.add_route("/drop", "http://127.0.0.1:1");
    let body = json!({
        "remove": ["/drop", "/never-existed"],
        "add": { "/user/a": {"target": "http://127.0.0.1:2", "user": "a"}, "user/b/": {"target": "http://127.0.0.1:3"} }
    });
    let r = p.api("POST", "/api/batch", Some(&body.to_string()));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({"added": 2, "removed": 1, "routes": 3}));
    let keys: Vec<String> = p.routes().as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys, ["/keep", "/user/a", "/user/b"]);

    // One invalid route rejects the whole batch; nothing changes.
    let bad = json!({ "remove": ["/keep"], "add": { "/ok": {"target": "http://x"}, "/bad": {"target": 5} } });
    let r = p.api("POST", "/api/batch", Some(&bad.to_string()));
    assert_eq!(r.status, 400);
    assert!(r.text().contains("/bad"), "{}", r.text());
    assert_eq!(p.routes().as_object().unwrap().len(), 3);

    let replace = json!({ "replace": true, "add": { "/only": {"target": "http://127.0.0.1:4"} } });
    assert_eq!(p.api("POST", "/api/batch", Some(&replace.to_string())).status, 200);
    assert_eq!(p.routes().as_object().unwrap().keys().collect::<Vec<_>>(), ["/only"]);

    assert_eq!(p.api_with("POST", "/api/batch", Some("{}"), &[]).status, 403);
    assert_eq!(p.api("GET", "/api/batch", None).status, 405);
    assert_eq!(p.api("POST", "/api/batch", Some("{\"add\": 1}")).status, 400);
}

#[test]
fn table_reads_are_logged_at_debug_and_changes_at_info() {
    // A hub reads the table every few seconds; at INFO, only changes show.
    let p = Edgeproxy::start(&[]);
    p.add_route("/user/a", "http://127.0.0.1:9");
    p.routes();
    let log = p.log_text();
    assert!(log.contains("201 POST /api/routes/user/a"), "{log}");
    assert!(log.contains("Route added /user/a -> http://127.0.0.1:9"), "{log}");
    assert!(!log.contains("GET /api/routes"), "{log}");
    // Refused reads are not routine: they stay visible.
    p.api_with("GET", "/api/routes", None, &[("Authorization", "token wrong")]);
    assert!(p.log_text().contains("403 GET /api/routes"), "{}", p.log_text());

    let p = Edgeproxy::start(&["--log-level", "debug"]);
    p.routes();
    assert!(p.log_text().contains("200 GET /api/routes"), "{}", p.log_text());
}
