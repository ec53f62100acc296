//! Request and response headers, black-box: the `Location` rewrite cases of CHP's
//! `test/proxy_spec.js`, the custom headers of its `test/cli_spec.js`, `X-Forwarded-*`,
//! `--change-origin` and rewrites as CHP 5.3.0 does them, and hop-by-hop headers, which CHP
//! forwards and edgeproxy does not (docs/compatibility.md).

mod support;

use support::*;

#[test]
fn x_forwarded_headers_are_set_and_appended() {
    let up = Upstream::echo("/");
    let p = Edgeproxy::start(&["--default-target", &up.target]);
    let host = format!("127.0.0.1:{}", p.port);
    let h = p.get("/x").json()["headers"].clone();
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-port"], p.port.to_string());
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], host.as_str());
    assert_eq!(h["host"], host.as_str(), "Host is kept");

    let sent = [
        ("X-Forwarded-For", "1.2.3.4"),
        ("X-Forwarded-Port", "443"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "orig.example"),
        ("Host", "orig.example"),
    ];
    let h = request(p.public(), "GET", "/x", &sent, None).json()["headers"].clone();
    assert_eq!(h["x-forwarded-for"], "1.2.3.4,127.0.0.1");
    assert_eq!(h["x-forwarded-port"], "443,80");
    assert_eq!(h["x-forwarded-proto"], "https,http");
    assert_eq!(h["x-forwarded-host"], "orig.example");
    assert_eq!(h["host"], "orig.example");

    let off = Edgeproxy::start(&["--default-target", &up.target, "--no-x-forward"]);
    let h = off.get("/x").json()["headers"].clone();
    for name in [
        "x-forwarded-for",
        "x-forwarded-port",
        "x-forwarded-proto",
        "x-forwarded-host",
    ] {
        assert!(h.get(name).is_none(), "{name} with --no-x-forward");
    }
}

#[test]
fn hop_by_hop_headers_stay_on_their_hop() {
    let up = Upstream::echo("/");
    let p = Edgeproxy::start(&["--default-target", &up.target]);
    let sent = [
        ("Connection", "close, X-Private"),
        ("X-Private", "1"),
        ("Keep-Alive", "timeout=5"),
        ("X-Public", "2"),
    ];
    let h = request(p.public(), "GET", "/x", &sent, None).json()["headers"].clone();
    assert!(h.get("x-private").is_none() && h.get("keep-alive").is_none(), "{h}");
    assert_eq!(h["x-public"], "2");
}

#[test]
fn change_origin_sets_the_target_host() {
    let up = Upstream::echo("/");
    let p = Edgeproxy::start(&["--default-target", &up.target, "--change-origin"]);
    let h = request(p.public(), "GET", "/x", &[("Host", "public.example")], None).json()["headers"].clone();
    assert_eq!(h["host"], format!("127.0.0.1:{}", up.port()));
    assert_eq!(h["x-forwarded-host"], "public.example");
}

#[test]
fn custom_headers_override_the_clients() {
    let up = Upstream::echo("/");
    let p = Edgeproxy::start(&[
        "--default-target",
        &up.target,
        "--custom-header",
        "k1: v1",
        "--custom-header",
        " k2 : host:123 ",
    ]);
    let h = request(p.public(), "GET", "/x", &[("k1", "from-client")], None).json()["headers"].clone();
    assert_eq!(h["k1"], "v1");
    assert_eq!(h["k2"], "host:123");
}

#[test]
fn redirect_locations_are_rewritten_only_when_asked() {
    let upstream_port = std::sync::Arc::new(std::sync::OnceLock::<u16>::new());
    let port_for_handler = upstream_port.clone();
    let up = Upstream::with(move |seen| {
        let port = port_for_handler.get().copied().unwrap_or(0);
        let status: u16 = seen
            .url
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or("301")
            .parse()
            .unwrap_or(301);
        let location = match seen.url.as_str() {
            u if u.ends_with("/foreign") => "http://foo.com:12345/whatever".to_owned(),
            u if u.ends_with("/relative") => "/relative/place".to_owned(),
            _ => format!("http://127.0.0.1:{port}/elsewhere"),
        };
        Reply::new(status, "").header("location", &location)
    });
    upstream_port.set(up.port()).unwrap();
    let both = Edgeproxy::start(&[
        "--default-target",
        &up.target,
        "--auto-rewrite",
        "--protocol-rewrite",
        "https",
    ]);
    let loc = |p: &Edgeproxy, path: &str| {
        request(p.public(), "GET", path, &[("Host", "public.example:9999")], None)
            .header("location")
            .map(str::to_owned)
    };
    for status in [301, 302, 307, 308, 201] {
        assert_eq!(
            loc(&both, &format!("/{status}")).as_deref(),
            Some("https://public.example:9999/elsewhere"),
            "{status}"
        );
    }
    assert_eq!(
        loc(&both, "/303").as_deref(),
        Some(format!("http://127.0.0.1:{}/elsewhere", up.port()).as_str()),
        "303 untouched"
    );
    assert_eq!(
        loc(&both, "/301/foreign").as_deref(),
        Some("http://foo.com:12345/whatever")
    );
    assert_eq!(loc(&both, "/301/relative").as_deref(), Some("/relative/place"));

    let proto_only = Edgeproxy::start(&["--default-target", &up.target, "--protocol-rewrite", "https"]);
    assert_eq!(
        loc(&proto_only, "/302").as_deref(),
        Some(format!("https://127.0.0.1:{}/elsewhere", up.port()).as_str())
    );

    let neither = Edgeproxy::start(&["--default-target", &up.target]);
    assert_eq!(
        loc(&neither, "/302").as_deref(),
        Some(format!("http://127.0.0.1:{}/elsewhere", up.port()).as_str())
    );
}
