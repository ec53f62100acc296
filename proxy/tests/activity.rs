//! `last_activity`, black-box: the case of CHP's `test/proxy_spec.js`, and which responses count
//! as activity on CHP 5.3.0 (docs/routing.md#activity).

mod support;

use std::time::Duration;

use support::*;

#[test]
fn successful_responses_and_request_bodies_are_activity() {
    let up = Upstream::with(|seen| {
        let status = seen.url.trim_start_matches("/user/a/").parse().unwrap_or(200);
        Reply::new(status, "")
    });
    let p = Edgeproxy::start(&[]);
    p.add_route("/user/a", &up.target);
    let step = || std::thread::sleep(Duration::from_millis(15));
    let cases = [
        ("GET", "/user/a/200", None, true),
        ("GET", "/user/a/204", None, true),
        ("GET", "/user/a/301", None, false),
        ("GET", "/user/a/404", None, false),
        ("GET", "/user/a/500", None, false),
        ("POST", "/user/a/404", Some(&b"payload"[..]), true),
    ];
    for (method, path, body, counts) in cases {
        let before = p.last_activity("/user/a");
        step();
        let r = request(p.public(), method, path, &[], body);
        assert_eq!(r.status.to_string(), path.rsplit('/').next().unwrap());
        step();
        let after = p.last_activity("/user/a");
        assert_eq!(ms(&after) > ms(&before), counts, "{method} {path}: {before} → {after}");
    }
}

#[test]
fn health_checks_and_unrouted_requests_are_not_activity() {
    let up = Upstream::echo("/");
    let p = Edgeproxy::start(&[]);
    p.add_route("/user/a", &up.target);
    let before = p.last_activity("/user/a");
    std::thread::sleep(Duration::from_millis(15));
    p.get("/_chp_healthz");
    p.get("/user/b/x");
    std::thread::sleep(Duration::from_millis(15));
    assert_eq!(p.last_activity("/user/a"), before);
}
