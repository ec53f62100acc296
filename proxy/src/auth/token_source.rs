//! Finding the token in a request (bearer header, cookie, or a query parameter on WebSocket
//! handshakes) and removing it before the request goes upstream.

use std::borrow::Cow;

use http::header::{AUTHORIZATION, COOKIE, HeaderValue};
use http::request::Parts;
use http::uri::{PathAndQuery, Uri};

use config::TokenSources;

/// Tokens longer than this are refused before any parsing (a JWT with a few claims is < 1 KiB).
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// Where a token was found, so it can be stripped from exactly there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    Bearer,
    /// `Authorization: <jwt>`, no scheme (`bare_authorization`).
    BareAuthorization,
    Cookie,
    Query,
}

/// The first token present, in the order bearer, cookie, query (handshakes only).
pub fn find<'a>(parts: &'a Parts, sources: &TokenSources, websocket: bool) -> Option<(Cow<'a, str>, Found)> {
    if sources.bearer
        && let Some(token) = parts.headers.get(AUTHORIZATION).and_then(|v| bearer(v.as_bytes()))
    {
        return Some((Cow::Borrowed(token), Found::Bearer));
    }
    if sources.bare_authorization
        && let Some(token) = parts.headers.get(AUTHORIZATION).and_then(|v| bare_jwt(v.as_bytes()))
    {
        return Some((Cow::Borrowed(token), Found::BareAuthorization));
    }
    if let Some(name) = &sources.cookie
        && let Some(token) = parts
            .headers
            .get_all(COOKIE)
            .iter()
            .find_map(|v| cookie(v.as_bytes(), name))
    {
        return Some((Cow::Borrowed(token), Found::Cookie));
    }
    if websocket
        && let Some(name) = &sources.query_param
        && let Some(token) = parts.uri.query().and_then(|q| query_param(q, name))
    {
        return Some((Cow::Owned(token), Found::Query));
    }
    None
}

fn bearer(value: &[u8]) -> Option<&str> {
    let (scheme, rest) = value.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    std::str::from_utf8(rest).ok().map(str::trim).filter(|t| !t.is_empty())
}

/// An `Authorization` value that is a JWT with no scheme before it: three base64url parts.
/// Anything else (`Basic …`, `token …`) is not ours to read.
pub fn bare_jwt(value: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(value).ok()?.trim();
    let base64url = |part: &str| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let mut parts = text.split('.');
    let shaped = parts.by_ref().take(3).all(base64url) && parts.next().is_none() && text.matches('.').count() == 2;
    shaped.then_some(text)
}

/// The value of the cookie `name` in one `Cookie` field, without the quotes it may have had.
fn cookie<'a>(field: &'a [u8], name: &str) -> Option<&'a str> {
    cookie_pairs(field).find_map(|pair| {
        let (k, v) = split_pair(pair);
        if k != name.as_bytes() {
            return None;
        }
        let v = v?;
        let start = v.iter().position(|b| *b != b'"')?;
        let end = v.iter().rposition(|b| *b != b'"')? + 1;
        std::str::from_utf8(&v[start..end]).ok()
    })
}

/// The `name=value` pairs of one `Cookie` field (`; `-separated, RFC 6265 §5.4), each trimmed,
/// empty ones left out. Read as bytes with `memchr`: a browser's field of a few cookies and a
/// JWT was several thousand instructions a request when each byte was first checked as text
/// (`to_str`) and then split as a string (docs/benchmarks.md).
fn cookie_pairs(field: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(field);
    std::iter::from_fn(move || {
        loop {
            let field = rest?;
            let (pair, after) = match memchr::memchr(b';', field) {
                Some(i) => (&field[..i], Some(&field[i + 1..])),
                None => (field, None),
            };
            rest = after;
            let pair = pair.trim_ascii();
            if !pair.is_empty() {
                return Some(pair);
            }
        }
    })
}

/// A pair's name (before its first `=`, or all of it) and its value, when it has an `=`.
fn split_pair(pair: &[u8]) -> (&[u8], Option<&[u8]>) {
    match memchr::memchr(b'=', pair) {
        Some(i) => (&pair[..i], Some(&pair[i + 1..])),
        None => (pair, None),
    }
}

fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name && !v.is_empty()).then(|| percent_decode_query(v))
    })
}

fn percent_decode_query(v: &str) -> String {
    crate::request_path::percent_decode(&v.replace('+', " "))
        .map(|c| c.into_owned())
        .unwrap_or_else(|_| v.to_owned())
}

/// Removes the token from the request: the query parameter always (URLs are logged), the header
/// or cookie when `strip` is set.
pub fn strip(parts: &mut Parts, sources: &TokenSources) {
    strip_query_token(parts, sources);
    if !sources.strip {
        return;
    }
    if parts.headers.get(AUTHORIZATION).is_some_and(|v| {
        let v = v.as_bytes();
        sources.bearer && v.get(..7).is_some_and(|s| s.eq_ignore_ascii_case(b"bearer "))
            || sources.bare_authorization && bare_jwt(v).is_some()
    }) {
        parts.headers.remove(AUTHORIZATION);
    }
    if let Some(name) = &sources.cookie {
        strip_cookie(&mut parts.headers, name);
    }
}

/// Removes the query-parameter token from every request, whatever the route's policy and
/// although it is read on handshakes only: a URL ends up in the upstream's logs and, on a shared
/// server, in front of other users.
pub fn strip_query_token(parts: &mut Parts, sources: &TokenSources) {
    let Some(name) = &sources.query_param else {
        return;
    };
    // Compared decoded, as the upstream will read it: `access%5Ftoken=` is the same parameter.
    let is_token = |pair: &&str| {
        let key = pair.split('=').next().unwrap_or_default();
        key == name || (key.contains(['%', '+']) && percent_decode_query(key) == *name)
    };
    if let Some(query) = parts.uri.query()
        && query.split('&').any(|p| is_token(&p))
    {
        let kept: Vec<&str> = query.split('&').filter(|p| !is_token(p)).collect();
        let path_and_query = if kept.is_empty() {
            parts.uri.path().to_owned()
        } else {
            format!("{}?{}", parts.uri.path(), kept.join("&"))
        };
        if let Ok(pq) = path_and_query.parse::<PathAndQuery>() {
            let mut uri_parts = parts.uri.clone().into_parts();
            uri_parts.path_and_query = Some(pq);
            if let Ok(uri) = Uri::from_parts(uri_parts) {
                parts.uri = uri;
            }
        }
    }
}

fn strip_cookie(headers: &mut http::HeaderMap, name: &str) {
    let is_token = |pair: &[u8]| split_pair(pair).0 == name.as_bytes();
    // One pass to see whether the token is there and how long the rest is, so that the value
    // without it is made in one allocation of the exact size (which `Bytes` then takes as is).
    let (mut found, mut kept_len) = (false, 0);
    for pair in headers.get_all(COOKIE).iter().flat_map(|v| cookie_pairs(v.as_bytes())) {
        match is_token(pair) {
            true => found = true,
            false => kept_len += pair.len() + 2,
        }
    }
    if !found {
        return;
    }
    // The other cookies, in order, in one value (several `Cookie` fields, as HTTP/2 sends them,
    // are joined as RFC 9113 §8.2.3 says).
    let mut kept = Vec::with_capacity(kept_len.saturating_sub(2));
    for pair in headers.get_all(COOKIE).iter().flat_map(|v| cookie_pairs(v.as_bytes())) {
        if is_token(pair) {
            continue;
        }
        if !kept.is_empty() {
            kept.extend_from_slice(b"; ");
        }
        kept.extend_from_slice(pair);
    }
    headers.remove(COOKIE);
    if !kept.is_empty()
        && let Ok(v) = HeaderValue::from_maybe_shared(bytes::Bytes::from(kept))
    {
        headers.insert(COOKIE, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut b = http::Request::builder().uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn sources_in_order() {
        let s = TokenSources::default();
        let p = parts(
            "/x?access_token=q",
            &[("authorization", "Bearer h"), ("cookie", "edgehub-token=c")],
        );
        assert_eq!(find(&p, &s, true), Some(("h".into(), Found::Bearer)));
        let p = parts("/x?access_token=q", &[("cookie", "a=1; edgehub-token=c")]);
        assert_eq!(find(&p, &s, true), Some(("c".into(), Found::Cookie)));
        let p = parts("/x?a=1&access_token=q%2Bx", &[]);
        assert_eq!(find(&p, &s, true), Some(("q+x".into(), Found::Query)));
        assert_eq!(find(&p, &s, false), None, "query tokens only on handshakes");
        let p = parts("/x", &[("authorization", "token jupyter-api-token")]);
        assert_eq!(find(&p, &s, false), None, "Jupyter's own tokens are not ours");
    }

    #[test]
    fn a_bare_authorization_jwt_is_read_only_when_asked_for() {
        let jwt = "eyJhbGciOiJIUzM4NCJ9.eyJzdWIiOiJhbGljZSJ9.c2ln-_x";
        let mut p = parts("/x", &[("authorization", jwt)]);
        assert_eq!(find(&p, &TokenSources::default(), false), None, "off by default");
        let s = TokenSources {
            bare_authorization: true,
            ..TokenSources::default()
        };
        assert_eq!(find(&p, &s, false), Some((jwt.into(), Found::BareAuthorization)));
        for not_a_jwt in [
            "token abc.def.ghi",
            "Basic YWxhZGRpbjpvcGVu",
            "a.b",
            "a.b.c.d",
            "a..c",
            "a.b.c d",
        ] {
            let q = parts("/x", &[("authorization", not_a_jwt)]);
            assert_eq!(find(&q, &s, false), None, "{not_a_jwt}");
        }
        strip(&mut p, &s);
        assert!(p.headers.get(AUTHORIZATION).is_none(), "taken out like a bearer token");
        let mut q = parts("/x", &[("authorization", "token keep-me")]);
        strip(&mut q, &s);
        assert_eq!(q.headers.get(AUTHORIZATION).unwrap(), "token keep-me");
    }

    #[test]
    fn stripping_removes_only_the_token() {
        let s = TokenSources::default();
        let mut p = parts(
            "/user/a/api/kernels/1/channels?session_id=9&access_token=t",
            &[
                ("authorization", "Bearer h"),
                ("cookie", "_xsrf=1; edgehub-token=c; other=2"),
            ],
        );
        strip(&mut p, &s);
        assert_eq!(p.uri.to_string(), "/user/a/api/kernels/1/channels?session_id=9");
        assert!(p.headers.get(AUTHORIZATION).is_none());
        assert_eq!(p.headers.get(COOKIE).unwrap(), "_xsrf=1; other=2");

        let mut p = parts("/x?access_token=t", &[("authorization", "token keep-me")]);
        strip(&mut p, &s);
        assert_eq!(p.uri.to_string(), "/x");
        assert_eq!(p.headers.get(AUTHORIZATION).unwrap(), "token keep-me");
    }

    #[test]
    fn cookies_are_read_and_stripped_by_name_whatever_their_spacing_or_quotes() {
        let s = TokenSources::default();
        for (field, token) in [
            ("edgehub-token=c", Some("c")),
            ("  a=1 ;edgehub-token=\"c\";b", Some("c")),
            (";;edgehub-token=c=d; ", Some("c=d")),
            ("edgehub-token=; edgehub-token=second", Some("second")),
            ("edgehub-token=\"\"", None),
            ("edgehub-token", None),
            ("edgehub-token =c; Edgehub-Token=c; xedgehub-token=c", None),
        ] {
            let p = parts("/x", &[("cookie", field)]);
            assert_eq!(
                find(&p, &s, false).map(|(t, _)| t.into_owned()).as_deref(),
                token,
                "{field}"
            );
        }
        // Every pair named like the token goes, empty or not; the rest stay, in order, joined
        // into one field when they came in several.
        let mut p = parts(
            "/x",
            &[
                ("cookie", "a=1; edgehub-token=c ;edgehub-token"),
                ("cookie", "b=\"2\";; edgehub-token=; c"),
            ],
        );
        strip(&mut p, &s);
        let left: Vec<_> = p.headers.get_all(COOKIE).iter().collect();
        assert_eq!(left, ["a=1; b=\"2\"; c"]);
        let mut p = parts("/x", &[("cookie", " edgehub-token=c ")]);
        strip(&mut p, &s);
        assert!(p.headers.get(COOKIE).is_none(), "no field is left empty");
        let mut p = parts("/x", &[("cookie", "a=1;b=2")]);
        strip(&mut p, &s);
        assert_eq!(
            p.headers.get(COOKIE).unwrap(),
            "a=1;b=2",
            "a field without the token is untouched"
        );
    }

    #[test]
    fn the_query_token_goes_from_every_request_in_any_spelling() {
        let s = TokenSources::default();
        for (uri, left) in [
            ("/user/a/tree?access_token=t", "/user/a/tree"),
            ("/user/a/files/x?a=1&access_token=t&b=2", "/user/a/files/x?a=1&b=2"),
            ("/user/a/?access%5Ftoken=t&access_token=u", "/user/a/"),
            ("/user/a/?access_token", "/user/a/"),
            (
                "/user/a/?token=jupyter&x=access_token",
                "/user/a/?token=jupyter&x=access_token",
            ),
        ] {
            let mut p = parts(uri, &[]);
            strip_query_token(&mut p, &s);
            assert_eq!(p.uri.to_string(), left, "{uri}");
        }
    }
}
