//! HTTP/1.1 towards upstreams, black-box: edgeproxy in front of a scripted raw upstream that
//! answers with exact bytes, so every framing (RFC 9112 §6.3) and connection-reuse case is seen
//! the way a client sees it.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::*;

/// What the scripted upstream does after answering.
#[derive(Clone, Copy, PartialEq)]
enum Then {
    KeepOpen,
    Close,
}

/// Given (connection number, request number on it, request head): the bytes to answer with.
type Script = dyn Fn(usize, usize, &str) -> (Vec<u8>, Then) + Send + Sync;

/// A raw upstream: for each request it reads the head (and a Content-Length body), calls
/// `script(connection number, request number on that connection, request head)` and writes the
/// bytes it returns.
struct Scripted {
    port: u16,
    connections: Arc<AtomicUsize>,
    heads: Arc<Mutex<Vec<String>>>,
}

impl Scripted {
    fn start(script: impl Fn(usize, usize, &str) -> (Vec<u8>, Then) + Send + Sync + 'static) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(script);
        let (count, seen) = (connections.clone(), heads.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let n = count.fetch_add(1, Ordering::SeqCst);
                let (script, seen) = (script.clone(), seen.clone());
                std::thread::spawn(move || serve(stream, n, &*script, &seen));
            }
        });
        Scripted {
            port,
            connections,
            heads,
        }
    }

    fn target(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

fn serve(mut stream: TcpStream, conn: usize, script: &Script, seen: &Mutex<Vec<String>>) {
    let mut buf = Vec::new();
    for request in 0.. {
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let body_len = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse::<usize>().unwrap())
            })
            .unwrap_or(0);
        while buf.len() < end + body_len {
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..end + body_len);
        seen.lock().unwrap().push(head.clone());
        let (reply, then) = script(conn, request, &head);
        if stream.write_all(&reply).is_err() || then == Then::Close {
            return;
        }
    }
}

/// A keep-alive client connection to the proxy: requests one after another, each response read
/// by its framing.
struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    fn new(p: &Edgeproxy) -> Client {
        let stream = TcpStream::connect(p.public()).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    /// Sends a request and reads one response; the body is read by Content-Length or chunked
    /// framing (`head_request`: no body).
    fn send(&mut self, method: &str, path: &str, head_request: bool) -> Response {
        let req = format!("{method} {path} HTTP/1.1\r\nHost: proxy\r\n\r\n");
        self.stream.write_all(req.as_bytes()).unwrap();
        let end = self.fill_until(|b| b.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4));
        let head = parse_response(&self.buf[..end]).unwrap();
        self.buf.drain(..end);
        let body = if head_request || head.status == 204 || head.status == 304 {
            Vec::new()
        } else if let Some(n) = head.header("content-length") {
            let n: usize = n.parse().unwrap();
            self.fill_until(|b| (b.len() >= n).then_some(n));
            self.buf.drain(..n).collect()
        } else {
            // Scan only what arrived since the last look: bodies here are megabytes.
            let mut from = 0;
            let end = self.fill_until(|b| {
                let found = b[from..]
                    .windows(5)
                    .position(|w| w == b"0\r\n\r\n")
                    .map(|i| from + i + 5);
                from = b.len().saturating_sub(4);
                found
            });
            let mut raw = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
            raw.extend(self.buf.drain(..end));
            parse_response(&raw).unwrap().body
        };
        Response { body, ..head }
    }

    fn fill_until(&mut self, mut done: impl FnMut(&[u8]) -> Option<usize>) -> usize {
        loop {
            if let Some(n) = done(&self.buf) {
                return n;
            }
            let mut chunk = [0u8; 16384];
            let n = self.stream.read(&mut chunk).expect("response");
            assert!(n > 0, "proxy closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// One worker thread: the idle pool is per thread, so connection counts are then exact.
fn proxy_to(up: &Scripted) -> Edgeproxy {
    let p = Edgeproxy::start(&["--workers", "1"]);
    p.add_route("/", &up.target());
    p
}

#[test]
fn chunked_responses_are_decoded_relayed_and_reuse_the_connection() {
    let up = Scripted::start(|_, _, _| {
        let body = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Up: 1\r\n\r\n\
                    5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: dropped\r\n\r\n";
        (body.as_bytes().to_vec(), Then::KeepOpen)
    });
    let p = proxy_to(&up);
    let mut c = Client::new(&p);
    for _ in 0..3 {
        let r = c.send("GET", "/x", false);
        assert_eq!(
            (r.status, r.text().as_str(), r.header("x-up")),
            (200, "hello world", Some("1"))
        );
    }
    assert_eq!(
        up.connections(),
        1,
        "one upstream connection carries all three requests"
    );
}

#[test]
fn a_body_delimited_by_close_is_relayed_whole_and_its_connection_not_reused() {
    let up = Scripted::start(|conn, _, _| {
        (
            format!("HTTP/1.1 200 OK\r\n\r\nbody of {conn}").into_bytes(),
            Then::Close,
        )
    });
    let p = proxy_to(&up);
    let mut c = Client::new(&p);
    assert_eq!(c.send("GET", "/a", false).text(), "body of 0");
    assert_eq!(c.send("GET", "/b", false).text(), "body of 1");
    assert_eq!(up.connections(), 2);
}

#[test]
fn head_204_304_and_interim_responses_have_no_body_and_keep_the_connection() {
    let up = Scripted::start(|_, _, head| {
        let reply = if head.starts_with("HEAD") {
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"
        } else if head.contains("/204") {
            "HTTP/1.1 204 No Content\r\n\r\n"
        } else if head.contains("/304") {
            "HTTP/1.1 304 Not Modified\r\nETag: \"e\"\r\n\r\n"
        } else {
            "HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nbody"
        };
        (reply.as_bytes().to_vec(), Then::KeepOpen)
    });
    let p = proxy_to(&up);
    let mut c = Client::new(&p);
    let r = c.send("HEAD", "/h", true);
    assert_eq!((r.status, r.header("content-length")), (200, Some("5")));
    assert_eq!(c.send("GET", "/204", true).status, 204);
    let r = c.send("GET", "/304", true);
    assert_eq!((r.status, r.header("etag")), (304, Some("\"e\"")));
    let r = c.send("GET", "/hints", false);
    assert_eq!((r.status, r.text().as_str()), (200, "body"));
    assert_eq!(up.connections(), 1);
}

#[test]
fn a_pooled_connection_the_upstream_closed_is_not_used_again() {
    // The upstream answers keep-alive but closes every connection right after its first
    // response, the way a server with a short keep-alive timeout does.
    let up = Scripted::start(|conn, _, _| {
        (
            format!("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n{}", conn % 10).into_bytes(),
            Then::Close,
        )
    });
    let p = proxy_to(&up);
    for i in 0..5 {
        let r = get(p.public(), &format!("/{i}"));
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
        // Let the close reach the proxy's idle connection, as it would between real requests.
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(up.connections(), 5);
    // And when the close races the next request, that request is sent again on a new one.
    let mut c = Client::new(&p);
    for i in 0..20 {
        let r = c.send("GET", &format!("/race/{i}"), false);
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
    }
    assert_eq!(up.connections(), 25);
}

#[test]
fn malformed_or_ambiguous_responses_become_503_and_are_never_reused() {
    let up = Scripted::start(|_, _, head| {
        let reply = if head.contains("/garbage") {
            "HTTP/1.1 two hundred\r\n\r\n"
        } else if head.contains("/lengths") {
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc"
        } else if head.contains("/closed") {
            ""
        } else {
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        };
        let then = if reply.is_empty() { Then::Close } else { Then::KeepOpen };
        (reply.as_bytes().to_vec(), then)
    });
    let p = proxy_to(&up);
    for path in ["/garbage", "/lengths", "/closed"] {
        let r = get(p.public(), path);
        assert_eq!(r.status, 503, "{path}: {}", r.text());
    }
    assert_eq!(get(p.public(), "/fine").text(), "ok");
    assert!(p.log_text().contains("malformed response head"), "{}", p.log_text());
}

#[test]
fn responses_with_transfer_codings_besides_chunked_are_not_relayed_garbled() {
    // Relayed, the proxy would frame the body again as plain chunked and the client would get
    // gzip bytes it is not told of; nginx refuses these too.
    let up = Scripted::start(|_, _, head| {
        let reply: &[u8] = if head.contains("/gzip-chunked") {
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
        } else if head.contains("/gzip") {
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nabc"
        } else {
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
        };
        (reply.to_vec(), Then::Close)
    });
    let p = proxy_to(&up);
    for path in ["/gzip-chunked", "/gzip"] {
        let r = get(p.public(), path);
        assert_eq!(r.status, 503, "{path}: {}", r.text());
        assert!(!r.text().contains("abc"), "{path}: no garbled body reaches the client");
    }
    assert_eq!(get(p.public(), "/chunked").text(), "ok");
    assert!(
        p.log_text().contains("unsupported Transfer-Encoding in response"),
        "{}",
        p.log_text()
    );
}

#[test]
fn large_bodies_stream_through_intact_both_ways_of_framing() {
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let expected = big.clone();
    let up = Scripted::start(move |_, _, head| {
        let mut reply = Vec::new();
        if head.contains("/chunked") {
            reply.extend_from_slice(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
            for part in big.chunks(70_000) {
                reply.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
                reply.extend_from_slice(part);
                reply.extend_from_slice(b"\r\n");
            }
            reply.extend_from_slice(b"0\r\n\r\n");
        } else {
            reply.extend_from_slice(format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", big.len()).as_bytes());
            reply.extend_from_slice(&big);
        }
        (reply, Then::KeepOpen)
    });
    let p = proxy_to(&up);
    let mut c = Client::new(&p);
    for path in ["/length", "/chunked", "/chunked", "/length"] {
        let r = c.send("GET", path, false);
        assert!(r.body == expected, "{path}: {} bytes differ", r.body.len());
    }
    assert_eq!(up.connections(), 1);
}

#[test]
fn an_upstream_that_dies_mid_body_aborts_the_client_response() {
    let up = Scripted::start(|_, _, _| {
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten..".to_vec(),
            Then::Close,
        )
    });
    let p = proxy_to(&up);
    // The client sees the connection end without a complete response (hyper may not even have
    // sent the head yet).
    let r = raw(p.public(), b"GET /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    assert!(
        r.as_ref().is_none_or(|r| r.status == 200 && r.body.len() < 100),
        "{r:?}"
    );
}

#[test]
fn reason_phrases_and_request_heads_are_kept() {
    let up = Scripted::start(|_, _, _| {
        (
            b"HTTP/1.1 299 Quite Fine\r\nContent-Length: 0\r\n\r\n".to_vec(),
            Then::KeepOpen,
        )
    });
    let p = proxy_to(&up);
    let mut s = TcpStream::connect(p.public()).unwrap();
    s.write_all(b"GET /r?q=1 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 299 Quite Fine\r\n"), "{out}");
    let head = &up.heads()[0];
    assert!(head.starts_with("GET /r?q=1 HTTP/1.1\r\n"), "{head}");
    assert!(
        head.contains("\r\nHost: h\r\n") && head.contains("\r\nx-forwarded-for: 127.0.0.1\r\n"),
        "{head}"
    );
    assert!(
        !head.to_ascii_lowercase().contains("connection: close"),
        "hop-by-hop: {head}"
    );
}

/// A request's own lines reach the upstream as the client wrote them, in order; the lines about
/// the client's connection do not, and the body's framing is the proxy's to state, once.
#[test]
fn request_heads_are_forwarded_as_the_client_spelled_them_without_hop_by_hop_lines() {
    let up = Scripted::start(|_, _, _| (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec(), Then::KeepOpen));
    let p = proxy_to(&up);
    let mut s = TcpStream::connect(p.public()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let ok = |s: &mut TcpStream| {
        let resp = read_until(s, |b| b.ends_with(b"\r\n\r\n"));
        assert!(
            resp.starts_with(b"HTTP/1.1 200 OK\r\n"),
            "{}",
            String::from_utf8_lossy(&resp)
        );
    };
    s.write_all(
        b"POST /f HTTP/1.1\r\nHost: h\r\nX-Mixed-Case: A  b\r\nTE: trailers\r\nKeep-Alive: timeout=5\r\n\
          Content-Length: 5\r\nConnection: keep-alive\r\nAccept:*/*\r\n\r\nhello",
    )
    .unwrap();
    ok(&mut s);
    s.write_all(b"PUT /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nUpgrade-Insecure-Requests: 1\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
        .unwrap();
    ok(&mut s);

    let heads = up.heads();
    let lengths = heads[0].to_ascii_lowercase().matches("content-length").count();
    assert!(
        heads[0]
            .starts_with("POST /f HTTP/1.1\r\nHost: h\r\nX-Mixed-Case: A  b\r\nContent-Length: 5\r\nAccept:*/*\r\n"),
        "{}",
        heads[0]
    );
    assert_eq!(lengths, 1, "{}", heads[0]);
    for hop in ["te:", "keep-alive", "connection", "transfer-encoding"] {
        assert!(!heads[0].to_ascii_lowercase().contains(hop), "{hop}: {}", heads[0]);
    }
    assert!(heads[0].contains("\r\nx-forwarded-for: 127.0.0.1\r\n"), "{}", heads[0]);
    let chunked = heads[1].to_ascii_lowercase();
    assert!(
        chunked.starts_with("put /c http/1.1\r\nhost: h\r\nupgrade-insecure-requests: 1\r\n"),
        "{}",
        heads[1]
    );
    assert_eq!(chunked.matches("transfer-encoding: chunked").count(), 1, "{}", heads[1]);
    assert!(!chunked.contains("content-length"), "{}", heads[1]);
}

// ---------------------------------------------------------------------------------------------
// The client side: edgeproxy's own HTTP/1.x server (proxy/src/h1_server) in front of the same
// scripted upstream.

/// Reads from `s` until `want` bytes have come or the peer closes.
fn read_until(s: &mut TcpStream, mut done: impl FnMut(&[u8]) -> bool) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !done(&buf) {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    buf
}

#[test]
fn response_heads_are_relayed_as_the_upstream_spelled_them_without_hop_by_hop_lines() {
    let up = Scripted::start(|_, _, head| {
        let reply = if head.contains("/names-others") {
            // `Connection` naming a header: that header goes too.
            "HTTP/1.1 200 OK\r\nX-Mixed-Case: a\r\nConnection: keep-alive, X-Private\r\nX-Private: secret\r\nContent-Length: 2\r\n\r\nok"
        } else {
            "HTTP/1.1 200 OK\r\nX-Mixed-Case: a\r\nKeep-Alive: timeout=5\r\nConnection: keep-alive\r\nTrailer: X-T\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nContent-Length: 2\r\n\r\nok"
        };
        (reply.as_bytes().to_vec(), Then::KeepOpen)
    });
    let p = proxy_to(&up);
    let mut s = TcpStream::connect(p.public()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /plain HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let text = String::from_utf8(read_until(&mut s, |_| false)).unwrap();
    assert!(text.contains("\r\nX-Mixed-Case: a\r\n"), "spelling kept: {text}");
    assert!(text.contains("\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n"), "{text}");
    assert_eq!(
        text.matches("ate: ").count(),
        1,
        "the upstream's Date, and no second one: {text}"
    );
    for gone in ["Keep-Alive", "Trailer", "keep-alive\r\n\r\n"] {
        assert!(!text.contains(gone), "{gone} relayed: {text}");
    }
    assert!(
        text.contains("\r\nconnection: close\r\n") && text.ends_with("\r\n\r\nok"),
        "{text}"
    );

    let r = raw(
        p.public(),
        b"GET /names-others HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!(
        (r.status, r.header("x-mixed-case"), r.text().as_str()),
        (200, Some("a"), "ok")
    );
    assert_eq!(r.header("x-private"), None, "named by Connection, so hop-by-hop");
}

#[test]
fn pipelined_requests_are_answered_in_order_on_one_connection() {
    let up = Scripted::start(|_, _, head| {
        let path = head.split(' ').nth(1).unwrap_or("?").to_owned();
        let reply = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{path}", path.len());
        (reply.into_bytes(), Then::KeepOpen)
    });
    let p = proxy_to(&up);
    let mut s = TcpStream::connect(p.public()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(
        b"GET /one HTTP/1.1\r\nHost: x\r\n\r\nPOST /two HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET /three HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let text = String::from_utf8(read_until(&mut s, |_| false)).unwrap();
    let bodies: Vec<&str> = text
        .split("\r\n\r\n")
        .skip(1)
        .map(|b| b.split("HTTP/1.1").next().unwrap())
        .collect();
    assert_eq!(bodies, ["/one", "/two", "/three"], "{text}");
    assert_eq!(text.matches("connection: keep-alive").count(), 2, "{text}");
}

#[test]
fn expect_100_continue_is_answered_when_the_body_is_wanted() {
    let up = Scripted::start(|_, _, _| {
        (
            b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n".to_vec(),
            Then::KeepOpen,
        )
    });
    let p = proxy_to(&up);
    let mut s = TcpStream::connect(p.public()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"PUT /upload HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        .unwrap();
    let interim = read_until(&mut s, |b| b.ends_with(b"\r\n\r\n"));
    assert!(
        interim.starts_with(b"HTTP/1.1 100 Continue\r\n\r\n"),
        "{}",
        String::from_utf8_lossy(&interim)
    );
    s.write_all(b"hello").unwrap();
    let rest = read_until(&mut s, |b| b.windows(4).any(|w| w == b"\r\n\r\n"));
    assert!(
        rest.starts_with(b"HTTP/1.1 201 Created\r\n"),
        "{}",
        String::from_utf8_lossy(&rest)
    );
    let forwarded = up.heads();
    assert_eq!(forwarded.len(), 1);
    assert!(
        !forwarded[0].to_ascii_lowercase().contains("expect"),
        "Expect is answered here, not forwarded"
    );
}

#[test]
fn requests_that_could_smuggle_are_refused_and_never_forwarded() {
    let up = Scripted::start(|_, _, _| (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec(), Then::KeepOpen));
    let p = proxy_to(&up);
    for req in [
        &b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n"[..],
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nxx",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx",
    ] {
        let r = raw(p.public(), req).expect("an answer");
        assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(req));
        assert_eq!(r.header("connection"), Some("close"));
    }
    assert!(up.heads().is_empty(), "nothing reached the upstream: {:?}", up.heads());

    // A coding before the final chunked frames the body, but the proxy could pass the body on
    // only without it: 501, as nginx answers (RFC 9112 §6.1).
    for req in [
        &b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"[..],
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ] {
        let r = raw(p.public(), req).expect("an answer");
        assert_eq!(r.status, 501, "{}", String::from_utf8_lossy(req));
        assert_eq!(r.header("connection"), Some("close"));
    }
    assert!(up.heads().is_empty(), "nothing reached the upstream: {:?}", up.heads());
}

#[test]
fn a_chunked_body_that_breaks_its_framing_is_the_clients_400_and_ends_the_connection() {
    let up = Scripted::start(|_, _, _| {
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
            Then::KeepOpen,
        )
    });
    let p = proxy_to(&up);
    for body in [&b"zz\r\nabc\r\n"[..], b"ffffffffffffffffffff\r\n", b"3\r\nabcXY"] {
        let req = [
            &b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            body,
            b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n",
        ]
        .concat();
        let r = raw(p.public(), &req).expect("an answer");
        assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(body));
        assert_eq!(r.header("connection"), Some("close"));
    }
    assert!(
        !up.heads().iter().any(|h| h.contains("/after")),
        "nothing after a broken body is read as a request: {:?}",
        up.heads()
    );
    assert!(
        !p.log_text().contains("ERROR"),
        "a client's mistake is not logged as an error: {}",
        p.log_text()
    );
    assert_eq!(get(p.public(), "/fine").text(), "ok");
}
