//! Error responses, black-box: the error-page cases of CHP's `test/proxy_spec.js`, and what CHP
//! 5.3.0 answers beyond them (no route, malformed paths, dead targets, error target and error path
//! fallbacks).

mod support;

use std::io::Write;

use support::*;

/// A route to a port where nothing listens.
fn dead_target() -> String {
    format!("http://127.0.0.1:{}", refused_port())
}

#[test]
fn built_in_pages_for_404_503_and_500() {
    let p = Edgeproxy::start(&[]);
    let r = p.get("/nope");
    assert_eq!((r.status, r.header("content-type")), (404, Some("text/html")));
    assert!(r.text().contains("404:"), "{}", r.text());

    p.add_route("/missing", &dead_target());
    let before = p.last_activity("/missing");
    std::thread::sleep(std::time::Duration::from_millis(5));
    let r = p.get("/missing/prefix");
    assert_eq!((r.status, r.header("content-type")), (503, Some("text/html")));
    assert!(r.text().contains("503:"));
    assert_eq!(p.last_activity("/missing"), before, "a failed request is no activity");

    // A malformed escape is the client's error: 400 (CHP answers 500).
    for path in ["/%", "/%E0%A4%A", "/%ZZ"] {
        let r = p.get(path);
        assert_eq!(r.status, 400, "{path}");
    }
    for target in ["ftp://127.0.0.1/x", "not a url"] {
        p.add_route("/odd", target);
        assert_eq!(p.get("/odd/x").status, 500, "{target}");
    }
    assert!(p.log_text().contains("503 /missing/prefix"), "proxy errors are logged");
}

#[test]
fn https_target_on_a_plain_server_is_503() {
    let up = Upstream::echo("/");
    let p = Edgeproxy::start(&[]);
    p.add_route("/tls", &up.target.replace("http://", "https://"));
    assert_eq!(p.get("/tls/x").status, 503);
}

#[test]
fn error_target_renders_pages_with_our_status() {
    let errors = Upstream::with(|seen| {
        let url = seen
            .url
            .split_once("url=")
            .map(|(_, u)| u.to_owned())
            .unwrap_or_default();
        let decoded = proxy::request_path::percent_decode(&url).unwrap().into_owned();
        Reply::new(418, decoded)
            .header("content-type", "text/plain")
            .header("x-not-copied", "1")
    });
    let p = Edgeproxy::start(&["--error-target", &format!("{}/hub/error", errors.target)]);
    let r = p.get("/foo/bar");
    assert_eq!(
        (r.status, r.header("content-type"), r.text().as_str()),
        (404, Some("text/plain"), "/foo/bar")
    );
    assert!(r.header("x-not-copied").is_none());
    let r = p.get("/nope/x?a=1&b=%2F");
    assert_eq!(r.status, 404);
    let seen = errors.requests();
    assert_eq!(
        seen.last().unwrap().url,
        "/hub/error/404?url=%2Fnope%2Fx%3Fa%3D1%26b%3D%252F"
    );
    let r = p.get("/%");
    assert_eq!((r.status, r.text().as_str()), (400, "/%"));
    assert_eq!(errors.requests().last().unwrap().url, "/hub/error/400?url=%2F%25");

    p.add_route("/missing", &dead_target());
    assert_eq!(p.get("/missing/x").status, 503);
    assert!(errors.requests().last().unwrap().url.starts_with("/hub/error/503?url="));
}

#[test]
fn dead_error_target_falls_back_to_plain_text() {
    let p = Edgeproxy::start(&["--error-target", &dead_target()]);
    let r = p.get("/nope");
    assert_eq!(
        (r.status, r.text().as_str(), r.header("content-type")),
        (404, "Not Found", None)
    );
    p.add_route("/missing", &dead_target());
    let r = p.get("/missing/x");
    assert_eq!((r.status, r.text().as_str()), (503, "Service Unavailable"));
}

#[test]
fn error_target_on_a_unix_socket() {
    let dir = scratch_dir("errsock");
    let errors = Upstream::echo_unix("/", &dir.join("err.sock"));
    let p = Edgeproxy::start(&["--error-target", &errors.target]);
    let r = p.get("/foo/bar");
    assert_eq!(r.status, 404);
    assert!(r.json()["url"].as_str().unwrap().starts_with("/404?url=%2Ffoo%2Fbar"));
}

#[test]
fn error_path_pages_with_fallbacks() {
    let dir = scratch_dir("errpath");
    std::fs::File::create(dir.join("404.html"))
        .unwrap()
        .write_all(b"<b>404'D!</b>")
        .unwrap();
    std::fs::File::create(dir.join("error.html"))
        .unwrap()
        .write_all(b"<i>UNKNOWN ERROR</i>")
        .unwrap();
    let p = Edgeproxy::start(&["--error-path", dir.to_str().unwrap()]);
    let r = p.get("/nope");
    assert_eq!((r.status, r.header("content-type")), (404, Some("text/html")));
    assert!(r.text().contains("404'D"));
    p.add_route("/missing", &dead_target());
    let r = p.get("/missing/prefix");
    assert_eq!(r.status, 503);
    assert!(r.text().contains("UNKNOWN"));

    let only_404 = scratch_dir("errpath404");
    std::fs::File::create(only_404.join("404.html"))
        .unwrap()
        .write_all(b"just 404")
        .unwrap();
    let p = Edgeproxy::start(&["--error-path", only_404.to_str().unwrap()]);
    p.add_route("/missing", &dead_target());
    let r = p.get("/missing/x");
    assert_eq!((r.status, r.text().as_str()), (503, "Service Unavailable"));
}

#[test]
fn malformed_requests_get_400_and_the_proxy_survives() {
    let up = Upstream::echo("/");
    let p = Edgeproxy::start(&["--default-target", &up.target]);
    let bad: [&[u8]; 4] = [
        b"GET /a b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"GET /\xff HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"NONSENSE\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\nConnection: close\r\n\r\n",
    ];
    for req in bad {
        if let Some(r) = raw(p.public(), req) {
            assert_eq!(r.status, 400, "{:?}", String::from_utf8_lossy(req));
        }
    }
    let huge = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(1 << 20)
    );
    if let Some(r) = raw(p.public(), huge.as_bytes()) {
        assert_eq!(r.status, 431, "oversized headers");
    }
    assert_eq!(p.get("/still/alive").status, 200);
}

/// Heads the server behind could read otherwise than the proxy are refused before they reach
/// it: an HTTP/1.1 request without `Host` or any with two (RFC 9112 §3.2), a `Content-Length`
/// given twice or as a list (the line goes upstream as received), and `CONNECT`, which would
/// open a tunnel.
#[test]
fn ambiguous_heads_and_connect_are_refused_before_they_reach_a_server() {
    let up = Upstream::echo("/");
    let p = Edgeproxy::start(&["--default-target", &up.target]);
    let refused: [(&[u8], u16); 6] = [
        (b"GET /no-host HTTP/1.1\r\nConnection: close\r\n\r\n", 400),
        (
            b"GET /two-hosts HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\nConnection: close\r\n\r\n",
            400,
        ),
        (
            b"GET /two-hosts HTTP/1.0\r\nHost: a.example\r\nhost: a.example\r\n\r\n",
            400,
        ),
        (
            b"POST /cl HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
            400,
        ),
        (
            b"POST /cl HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\nhello",
            400,
        ),
        (
            b"CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n\r\n",
            501,
        ),
    ];
    for (req, status) in refused {
        let r = raw(p.public(), req).expect("an answer");
        assert_eq!(r.status, status, "{:?}", String::from_utf8_lossy(req));
    }
    assert!(
        up.requests().is_empty(),
        "reached the server: {:?}",
        up.requests().len()
    );

    // HTTP/1.0 may leave Host out; one Content-Length is fine.
    let r = raw(p.public(), b"GET /old-client HTTP/1.0\r\n\r\n").expect("an answer");
    assert_eq!(r.status, 200);
    let r = raw(
        p.public(),
        b"POST /cl HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    )
    .expect("an answer");
    assert_eq!(r.status, 200);
    let seen = up.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].body, b"hello");
}

/// A server that answers a plain request with `101 Switching Protocols` (which it may do only
/// when asked) gets the client a 503, not a switch to a stream the client never asked for.
#[test]
fn an_unasked_protocol_switch_is_an_upstream_error() {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let target = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let _ = conn
                .write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: other\r\nConnection: Upgrade\r\n\r\nstream");
        }
    });
    let p = Edgeproxy::start(&["--default-target", &target]);
    let r = raw(
        p.public(),
        b"GET /plain HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .expect("an answer");
    assert_eq!(r.status, 503, "{}", r.text());
}
