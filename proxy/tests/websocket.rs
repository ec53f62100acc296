//! WebSocket upgrades and tunnels, black-box: the cases of CHP's `test/proxy_spec.js`, and its
//! answers to failed upgrades, with the fix for the socket it leaves open on a 404
//! (docs/websockets.md, docs/compatibility.md).

mod support;

use std::io::{Read, Write};
use std::time::Duration;

use support::*;
use tokio_tungstenite::tungstenite::Message;

#[test]
fn tunnel_relays_both_ways_with_upstream_headers() {
    let up = Upstream::echo("/");
    let p = Edgeproxy::start(&["--default-target", &up.target, "--custom-header", "x-custom: yes"]);
    let (mut ws, resp) = ws_connect(p.public(), "/").expect("handshake");
    assert_eq!(resp.status(), 101);
    assert_eq!(
        resp.headers().get("x-upstream").map(|v| v.to_str().unwrap()),
        Some("yes"),
        "101 carries the upstream's headers"
    );
    assert_eq!(ws_read_text(&mut ws), "connected");
    ws.send(Message::text("hi")).unwrap();
    let reply: serde_json::Value = serde_json::from_str(&ws_read_text(&mut ws)).unwrap();
    assert_eq!(
        (reply["path"].as_str(), reply["message"].as_str()),
        (Some("/"), Some("hi"))
    );

    // Large binary messages pass through whole (the tunnel copies bytes, not frames).
    let big: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
    ws.send(Message::binary(big.clone())).unwrap();
    match ws.read().unwrap() {
        Message::Binary(b) => assert!(b[..] == big[..], "binary echo intact"),
        other => panic!("unexpected {other:?}"),
    }
    ws.close(None).unwrap();

    let seen = up.requests();
    let upgrade = seen
        .iter()
        .find(|s| s.header("upgrade").is_some())
        .expect("upstream saw the upgrade");
    assert_eq!(upgrade.header("x-forwarded-proto"), Some("ws"));
    assert_eq!(upgrade.header("x-custom"), Some("yes"));
    assert!(
        upgrade.header("x-forwarded-host").is_none(),
        "no X-Forwarded-Host on upgrades"
    );
}

#[test]
fn activity_counts_client_frames_only() {
    let up = Upstream::echo("/user/a");
    let p = Edgeproxy::start(&[]);
    p.add_route("/user/a", &up.target);
    let added = p.last_activity("/user/a");
    std::thread::sleep(Duration::from_millis(20));
    let (mut ws, _) = ws_connect(p.public(), "/user/a/api/kernels/1/channels").unwrap();
    assert_eq!(ws_read_text(&mut ws), "connected");
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(
        p.last_activity("/user/a"),
        added,
        "handshake and server frames are not activity"
    );
    ws.send(Message::text("hi")).unwrap();
    ws_read_text(&mut ws);
    std::thread::sleep(Duration::from_millis(20));
    assert!(
        ms(&p.last_activity("/user/a")) > ms(&added),
        "a client frame is activity"
    );
}

#[test]
fn upgrade_errors_are_bare_status_lines() {
    let p = Edgeproxy::start(&[]);
    let upgrade = |path: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
    };
    // No route: 404 with an empty body, and the socket is closed (CHP leaves it open).
    let r = raw(p.public(), upgrade("/nope").as_bytes()).expect("a response, then EOF");
    assert_eq!(
        (r.status, r.body.len(), r.header("content-length")),
        (404, 0, Some("0"))
    );

    p.add_route("/missing", &format!("http://127.0.0.1:{}", refused_port()));
    let r = raw(p.public(), upgrade("/missing/ws").as_bytes()).expect("a response, then EOF");
    assert_eq!((r.status, r.body.len()), (503, 0));
}

#[test]
fn non_websocket_upgrades_are_dropped_without_an_answer() {
    let up = Upstream::echo("/");
    let p = Edgeproxy::start(&["--default-target", &up.target]);
    for req in [
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 0\r\n\r\n",
    ] {
        let mut s = std::net::TcpStream::connect(p.public()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        assert!(
            buf.is_empty(),
            "no response to {req:?}: {}",
            String::from_utf8_lossy(&buf)
        );
    }
}

#[test]
fn refused_upgrade_is_relayed_then_closed() {
    let up = Upstream::with(|_| Reply::new(403, "no websockets for you").header("x-reason", "policy"));
    let p = Edgeproxy::start(&["--default-target", &up.target]);
    let req = "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    let r = raw(p.public(), req.as_bytes()).expect("relayed response, then EOF");
    assert_eq!(
        (r.status, r.text().as_str(), r.header("x-reason")),
        (403, "no websockets for you", Some("policy"))
    );
}

#[test]
fn many_tunnels_at_once_and_closing_one_side_closes_the_other() {
    let up = Upstream::echo("/");
    let p = Edgeproxy::start(&["--default-target", &up.target]);
    let mut sockets: Vec<Ws> = (0..200).map(|_| ws_connect(p.public(), "/").unwrap().0).collect();
    for (i, ws) in sockets.iter_mut().enumerate() {
        assert_eq!(ws_read_text(ws), "connected");
        ws.send(Message::text(format!("n{i}"))).unwrap();
    }
    for (i, ws) in sockets.iter_mut().enumerate() {
        let reply: serde_json::Value = serde_json::from_str(&ws_read_text(ws)).unwrap();
        assert_eq!(reply["message"], format!("n{i}"));
    }
    let mut ws = sockets.pop().unwrap();
    ws.close(None).unwrap();
    // The upstream answers the close and hangs up; the client sees the end of the stream.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match ws.read() {
            Ok(_) if std::time::Instant::now() < deadline => continue,
            Ok(m) => panic!("tunnel still open: {m:?}"),
            Err(_) => break,
        }
    }
}
