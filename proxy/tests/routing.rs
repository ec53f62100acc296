//! Routing and forwarding, black-box: the cases of CHP's `test/proxy_spec.js` and
//! `test/trie_spec.js`, and what CHP 5.3.0 does beyond them (segment matching, path clean-up,
//! decoding, path and query joins, host routing, the health check); docs/routing.md.

mod support;

use support::*;

fn url_seen(p: &Edgeproxy, path: &str) -> String {
    let r = p.get(path);
    assert_eq!(r.status, 200, "GET {path}: {}", r.text());
    r.json()["url"].as_str().unwrap().to_owned()
}

#[test]
fn longest_segment_prefix_and_exact_segments() {
    let root = Upstream::echo("/");
    let foo = Upstream::echo("/user/foo");
    let p = Edgeproxy::start(&["--default-target", &root.target]);
    p.add_route("/user/foo", &foo.target);
    let cases = [
        ("/user/foo", "/user/foo"),
        ("/user/foo/", "/user/foo"),
        ("/user/foo/x?y=1", "/user/foo"),
        ("/user/foobar", "/"),
        ("/USER/foo", "/"),
        ("/user//foo/x", "/"),
        ("/user/foo;x=1", "/"),
        ("/user/%66oo/x", "/user/foo"),
        ("/user%2Ffoo/x", "/user/foo"),
        ("/user/foo/../bar", "/"),
        ("/user/bar/../foo/x", "/user/foo"),
        ("/user\\foo/x", "/user/foo"),
        ("//user/foo/x", "/"),
    ];
    for (path, want) in cases {
        let r = p.get(path);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.json()["path"], want, "route for {path}");
    }
}

#[test]
fn trie_cases_through_the_proxy() {
    let p = Edgeproxy::start(&[]);
    let ups: Vec<(String, Upstream)> = ["/1", "/2", "/a/b/c/d", "/a/b/d", "/a/b/e", "/b", "/b/c", "/b/c/d"]
        .iter()
        .map(|k| (k.to_string(), Upstream::echo(k)))
        .collect();
    for (k, u) in &ups {
        p.add_route(k, &u.target);
    }
    let cases = [
        ("/not/found", None),
        ("/1/etc/etc/", Some("/1")),
        ("/a", None),
        ("/a/b/c", None),
        ("/a/b/c/d/e/f", Some("/a/b/c/d")),
        ("/b/c/d/word", Some("/b/c/d")),
        ("/b/c/dword", Some("/b/c")),
    ];
    for (path, want) in cases {
        let r = p.get(path);
        match want {
            Some(key) => assert_eq!(r.json()["path"], key, "{path}"),
            None => assert_eq!(r.status, 404, "{path}"),
        }
    }
    assert_eq!(p.api("DELETE", "/api/routes/b", None).status, 204);
    assert_eq!(p.get("/b/just-b").status, 404);
    assert_eq!(p.get("/b/c/sub-still-here").json()["path"], "/b/c");
}

#[test]
fn prepend_path_and_include_prefix() {
    let up = Upstream::echo("/bar");
    let target = format!("{}/foo", up.target);
    let default = Edgeproxy::start(&[]);
    default.add_route("/bar", &target);
    assert_eq!(url_seen(&default, "/bar/rest/of/it"), "/foo/bar/rest/of/it");
    assert_eq!(url_seen(&default, "/bar?query=foo"), "/foo/bar?query=foo");
    assert_eq!(default.get("/bar?query=foo").json()["target"], up.target.as_str());

    let no_prepend = Edgeproxy::start(&["--no-prepend-path"]);
    no_prepend.add_route("/bar", &target);
    assert_eq!(url_seen(&no_prepend, "/bar/rest/of/it"), "/bar/rest/of/it");

    let no_prefix = Edgeproxy::start(&["--no-include-prefix"]);
    no_prefix.add_route("/bar", &target);
    assert_eq!(url_seen(&no_prefix, "/bar/rest/of/it"), "/foo/rest/of/it");
    assert_eq!(url_seen(&no_prefix, "/bar"), "/foo");
    assert_eq!(url_seen(&no_prefix, "/bar/"), "/foo/");
    assert_eq!(url_seen(&no_prefix, "/bar?x=1"), "/foo?x=1");
    // CHP slices the raw URL by the decoded key's length (`/b%40r/x` → `0r/x`); we strip by segments.
    no_prefix.add_route("/b%40r", &target);
    assert_eq!(url_seen(&no_prefix, "/b%40r/x"), "/foo/x");

    let neither = Edgeproxy::start(&["--no-prepend-path", "--no-include-prefix"]);
    neither.add_route("/bar", &target);
    assert_eq!(url_seen(&neither, "/bar/rest/of/it"), "/rest/of/it");
    assert_eq!(url_seen(&neither, "/bar"), "/");
}

#[test]
fn encoding_is_preserved_upstream() {
    let up = Upstream::echo("/b@r/b r");
    let p = Edgeproxy::start(&[]);
    p.add_route("/b%40r/b%20r", &format!("{}/foo", up.target));
    let r = p.get("/b%40r/b%20r/rest/of/it");
    assert_eq!(r.json()["path"], "/b@r/b r");
    assert_eq!(r.json()["url"], "/foo/b%40r/b%20r/rest/of/it");
    assert_eq!(url_seen(&p, "/b@r/b%20r/rest/of/it"), "/foo/b@r/b%20r/rest/of/it");
}

#[test]
fn target_paths_and_queries_join() {
    let up = Upstream::echo("/");
    let p = Edgeproxy::start(&[]);
    p.add_route("/pre", &format!("{}/base/", up.target));
    p.add_route("/user/foo", &format!("{}/sub/path?tq=1", up.target));
    assert_eq!(url_seen(&p, "/pre/fix/rest?q=1"), "/base/pre/fix/rest?q=1");
    assert_eq!(
        url_seen(&p, "/user/foo/lab/tree?q=2"),
        "/sub/path/user/foo/lab/tree?tq=1&q=2"
    );
    assert_eq!(url_seen(&p, "/user/foo/?"), "/sub/path/user/foo/?tq=1");
    assert_eq!(url_seen(&p, "/user/foo/./x/../y"), "/sub/path/user/foo/y?tq=1");
}

#[test]
fn host_routing_uses_the_host_as_first_segment() {
    let up = Upstream::echo("/test.localhost.jovyan.org");
    let root = Upstream::echo("/");
    let p = Edgeproxy::start(&["--host-routing", "--default-target", &root.target]);
    p.add_route("/test.localhost.jovyan.org", &up.target);
    let host = |h: &str, path: &str| request(p.public(), "GET", path, &[("Host", h)], None).json();
    let r = host(&format!("test.localhost.jovyan.org:{}", p.port), "/some/path");
    assert_eq!(
        (r["path"].as_str(), r["url"].as_str()),
        (Some("/test.localhost.jovyan.org"), Some("/some/path"))
    );
    assert_eq!(
        host("test.localhost.jovyan.org", "/x")["path"],
        "/test.localhost.jovyan.org"
    );
    assert_eq!(
        host("TEST.localhost.jovyan.org", "/x")["path"],
        "/",
        "host is case-sensitive, as CHP"
    );
    assert_eq!(host("other.org", "/x")["path"], "/");
}

#[test]
fn health_check_is_exact_and_before_routing() {
    let p = Edgeproxy::start(&[]);
    for method in ["GET", "POST", "HEAD"] {
        let r = request(p.public(), method, "/_chp_healthz", &[], None);
        assert_eq!(r.status, 200, "{method}");
        assert_eq!(r.header("content-type"), Some("application/json"));
        if method != "HEAD" {
            assert_eq!(r.text(), "{\"status\":\"OK\"}");
        }
    }
    assert_eq!(p.get("/_chp_healthz?x=1").status, 404, "with a query it is routed");
    assert_eq!(p.get("/_chp_healthz/").status, 404);
    let host_routed = Edgeproxy::start(&["--host-routing"]);
    assert_eq!(host_routed.get("/_chp_healthz").status, 200);
}

#[test]
fn request_bodies_and_methods_pass_through() {
    let up = Upstream::echo("/");
    let p = Edgeproxy::start(&["--default-target", &up.target]);
    let big = "x".repeat(300_000);
    for method in ["POST", "PUT", "PATCH", "DELETE"] {
        let r = request(
            p.public(),
            method,
            "/upload",
            &[("Content-Type", "text/plain")],
            Some(big.as_bytes()),
        );
        let echoed = r.json();
        assert_eq!(echoed["method"], method);
        assert_eq!(
            echoed["body"].as_str().map(str::len),
            Some(big.len()),
            "{method} body intact"
        );
    }
    // Chunked request bodies are streamed through.
    let raw_req = format!(
        "POST /chunked HTTP/1.1\r\nHost: {}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        p.public()
    );
    let r = raw(p.public(), raw_req.as_bytes()).unwrap();
    assert_eq!(r.json()["body"], "hello world");
}

#[test]
fn upstream_statuses_and_redirects_pass_through_untouched() {
    let up = Upstream::with(|seen| match seen.url.as_str() {
        "/404" => Reply::new(404, "upstream says no").header("x-from", "upstream"),
        "/500" => Reply::new(500, "upstream broke"),
        _ => Reply::new(301, "").header("location", "http://foo.com:12345/whatever"),
    });
    let p = Edgeproxy::start(&["--default-target", &up.target]);
    let r = p.get("/404");
    assert_eq!(
        (r.status, r.text().as_str(), r.header("x-from")),
        (404, "upstream says no", Some("upstream"))
    );
    let r = p.get("/500");
    assert_eq!((r.status, r.text().as_str()), (500, "upstream broke"));
    let r = p.get("/external/urlpath/rest/of/it");
    assert_eq!(
        (r.status, r.header("location")),
        (301, Some("http://foo.com:12345/whatever"))
    );
}

#[test]
fn error_pages_keep_the_connection_alive_and_close_when_asked() {
    let p = Edgeproxy::start(&[]);
    let r = request(p.public(), "GET", "/nope", &[], None);
    assert_eq!(
        (r.status, r.header("connection")),
        (404, Some("close")),
        "the client asked to close"
    );
    let mut s = std::net::TcpStream::connect(p.public()).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    std::io::Write::write_all(&mut s, b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut buf = [0u8; 4096];
    let n = std::io::Read::read(&mut s, &mut buf).unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
    assert!(
        head.starts_with("http/1.1 404") && head.contains("connection: keep-alive"),
        "{head}"
    );
}

#[test]
fn keep_alive_connection_serves_many_requests() {
    use std::io::{BufRead, BufReader, Read, Write};
    let up = Upstream::echo("/");
    let p = Edgeproxy::start(&["--default-target", &up.target]);
    let mut s = std::net::TcpStream::connect(p.public()).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    let mut reader = BufReader::new(s.try_clone().unwrap());
    for i in 0..20 {
        write!(s, "GET /n/{i} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        let mut len = 0;
        let mut connection = None;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            let lower = line.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
            if let Some(v) = lower.strip_prefix("connection:") {
                connection = Some(v.trim().to_owned());
            }
        }
        assert_eq!(connection.as_deref(), Some("keep-alive"), "stated, as CHP does");
        let mut body = vec![0; len];
        reader.read_exact(&mut body).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["url"], format!("/n/{i}"));
    }
}
