//! TLS on the listeners and to upstreams, and the redirect listener: the TLS cases of CHP's
//! `test/proxy_spec.js` and `test/cli_spec.js`, and the redirect listener as CHP 5.3.0 answers.

mod support;

use support::pki::Pki;
use support::*;

fn get_over_tls(pki: &Pki, addr: std::net::SocketAddr, path: &str) -> Response {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    pki.https_raw(addr, &req, &[b"http/1.1"]).1.expect("an HTTPS response")
}

#[test]
fn public_listener_speaks_tls_and_offers_h2() {
    let pki = Pki::new(&scratch_dir("tls-public"));
    let up = Upstream::echo("/");
    let p = Edgeproxy::start(&[
        "--default-target",
        &up.target,
        "--ssl-key",
        pki.server_key.to_str().unwrap(),
        "--ssl-cert",
        pki.server_cert.to_str().unwrap(),
    ]);
    let r = get_over_tls(&pki, p.public(), "/x");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["headers"]["x-forwarded-proto"], "https");
    assert_eq!(r.json()["headers"]["x-forwarded-port"], p.port.to_string());
    let alpn = pki.negotiated_alpn(p.public(), &[b"h2", b"http/1.1"]);
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]), "ALPN picks HTTP/2 when offered");
}

#[test]
fn redirect_listener_sends_plain_http_to_https() {
    let pki = Pki::new(&scratch_dir("tls-redirect"));
    let up = Upstream::echo("/");
    let tls_args = [
        "--ssl-key",
        pki.server_key.to_str().unwrap(),
        "--ssl-cert",
        pki.server_cert.to_str().unwrap(),
    ];
    let mut args = vec!["--default-target", up.target.as_str(), "--redirect-port", "0"];
    args.extend(tls_args);
    let mut p = Edgeproxy::start(&args);
    let plain = p.redirect_addr();
    let r = request(plain, "GET", "/some/path?q=1", &[("Host", &plain.to_string())], None);
    assert_eq!(r.status, 301);
    let location = r.header("location").unwrap().to_owned();
    assert_eq!(location, format!("https://127.0.0.1:{}/some/path?q=1", p.port));
    // Following it lands on the default target over TLS.
    assert_eq!(
        get_over_tls(&pki, p.public(), "/some/path?q=1").json()["url"],
        "/some/path?q=1"
    );
    // No Host: a 400 naming the HTTPS port to use (not the port the request came to), as CHP.
    let r = raw(plain, b"GET /x HTTP/1.0\r\n\r\n").unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(
        r.text(),
        format!(
            "This server is HTTPS-only on port {}, but an HTTP request was made and the host could not be determined from the request.",
            p.port
        )
    );

    // Only written in the Location: nothing listens on it.
    let to_port = "8443";
    let mut args = vec!["--redirect-port", "0", "--redirect-to", to_port];
    args.extend(tls_args);
    let mut p2 = Edgeproxy::start(&args);
    let r = request(p2.redirect_addr(), "GET", "/p", &[("Host", "hub.example:80")], None);
    assert_eq!(
        r.header("location"),
        Some(format!("https://hub.example:{to_port}/p").as_str())
    );
    let r = raw(p2.redirect_addr(), b"GET /x HTTP/1.0\r\n\r\n").unwrap();
    assert_eq!(r.status, 400);
    assert!(
        r.text()
            .starts_with(&format!("This server is HTTPS-only on port {to_port}, ")),
        "{}",
        r.text()
    );
}

#[test]
fn https_targets_with_client_certificates() {
    let pki = Pki::new(&scratch_dir("tls-client"));
    let up = Upstream::echo_tls("/backend", pki.upstream_acceptor(true), "127.0.0.1");
    let with_cert = Edgeproxy::start(&[
        "--client-ssl-key",
        pki.client_key.to_str().unwrap(),
        "--client-ssl-cert",
        pki.client_cert.to_str().unwrap(),
        "--client-ssl-ca",
        pki.ca.to_str().unwrap(),
    ]);
    with_cert.add_route("/backend", &up.target);
    let r = with_cert.get("/backend/urlpath/");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["path"], "/backend");

    // Without a client certificate the upstream refuses the handshake: 503.
    let without = Edgeproxy::start(&["--client-ssl-ca", pki.ca.to_str().unwrap()]);
    without.add_route("/backend", &up.target);
    assert_eq!(without.get("/backend/urlpath/").status, 503);
}

#[test]
fn upstream_certificates_are_verified_unless_insecure() {
    let pki = Pki::new(&scratch_dir("tls-verify"));
    let up = Upstream::echo_tls("/", pki.upstream_acceptor(false), "127.0.0.1");
    let strict = Edgeproxy::start(&[]);
    strict.add_route("/", &up.target);
    assert_eq!(strict.get("/x").status, 503, "unknown CA is refused");
    let insecure = Edgeproxy::start(&["--insecure"]);
    insecure.add_route("/", &up.target);
    assert_eq!(
        insecure.get("/x").status,
        200,
        "--insecure skips verification (CHP ignores the flag)"
    );
}

#[test]
fn api_listener_over_tls() {
    let pki = Pki::new(&scratch_dir("tls-api"));
    let p = Edgeproxy::start(&[
        "--api-ssl-key",
        pki.server_key.to_str().unwrap(),
        "--api-ssl-cert",
        pki.server_cert.to_str().unwrap(),
    ]);
    let req =
        format!("GET /api/routes HTTP/1.1\r\nHost: x\r\nAuthorization: token {TOKEN}\r\nConnection: close\r\n\r\n");
    let (_, r) = pki.https_raw(p.api_addr(), &req, &[]);
    let r = r.expect("an HTTPS response");
    assert_eq!((r.status, r.text().as_str()), (200, "{}"));
}

#[test]
fn broken_tls_files_stop_startup_with_a_clear_error() {
    let dir = scratch_dir("tls-bad");
    let bad = dir.join("bad.pem");
    std::fs::write(&bad, "not a certificate").unwrap();
    let enc = dir.join("enc.key");
    let encrypted = "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
    std::fs::write(&enc, encrypted).unwrap();
    let start = |key: &std::path::Path, cert: &std::path::Path| {
        let (key, cert) = (key.to_str().unwrap(), cert.to_str().unwrap());
        run_to_exit(&["--port", "0", "--api-port", "0", "--ssl-key", key, "--ssl-cert", cert])
    };
    let (code, out) = start(&bad, &bad);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("bad.pem"), "names the file: {out}");
    let (code, out) = start(&enc, &bad);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("encrypted"), "{out}");
}
