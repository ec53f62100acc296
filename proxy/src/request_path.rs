//! Request-target and route-key handling: the pure functions that decide which route a request
//! belongs to and which path it is forwarded with, by CHP's rules
//! (docs/routing.md#matching-as-chp).
//!
//! Two views of one path are kept apart on purpose:
//! - the *wire path* keeps the client's percent-encoding and is what the upstream receives;
//! - the *lookup path* is the wire path percent-decoded (`decodeURIComponent` semantics, so
//!   `%2F` becomes `/`) and is what the route table is searched with.
//!
//! Both are computed after the WHATWG path clean-up that configurable-http-proxy applies:
//! backslashes become `/` and dot segments (`.`, `..`, `%2e`, …) are resolved. Unlike CHP, a
//! request-target that starts with `//` is *not* read as an authority (CHP routes
//! `//user/foo/x` by its second segment; docs/compatibility.md).

use std::borrow::Cow;

/// A percent-escape that does not decode to valid UTF-8 (`%ZZ`, `%E0%A4%A`, a lone `%`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed percent-encoding in {0:?}")]
pub struct MalformedEscape(pub String);

/// `decodeURIComponent`: every `%XX` is decoded (including `%2F` and `%25`), `+` is left alone,
/// and the resulting bytes must be UTF-8.
pub fn percent_decode(input: &str) -> Result<Cow<'_, str>, MalformedEscape> {
    if !input.contains('%') {
        return Ok(Cow::Borrowed(input));
    }
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).and_then(|h| {
                let hi = (h[0] as char).to_digit(16)?;
                let lo = (h[1] as char).to_digit(16)?;
                Some((hi * 16 + lo) as u8)
            });
            match hex {
                Some(b) => {
                    out.push(b);
                    i += 3;
                }
                None => return Err(MalformedEscape(input.to_owned())),
            }
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|_| MalformedEscape(input.to_owned()))
}

/// The inverse used for the error target's `?url=` parameter: `encodeURIComponent`, which keeps
/// only `A-Z a-z 0-9 - _ . ! ~ * ' ( )` unescaped.
pub fn encode_uri_component(input: &str) -> String {
    let mut out = String::with_capacity(input.len() * 3 / 2);
    for &b in input.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Route-key normalisation for the admin API (CHP's `trimPrefix`): ensure a leading `/` and
/// remove *one* trailing `/` unless the key is `/` itself. No case folding, no dot-segment
/// removal, no collapsing of `//`.
pub fn normalize_route_key(decoded: &str) -> String {
    let mut key = if decoded.starts_with('/') {
        decoded.to_owned()
    } else {
        format!("/{decoded}")
    };
    if key.len() > 1 && key.ends_with('/') {
        key.pop();
    }
    key
}

/// Splits a decoded path or route key into trie segments: one leading `/` and every trailing `/`
/// are removed, the rest is split on `/`. Empty segments are kept, so `/a//b` does not match
/// `/a/b`, and `//user/foo` (which CHP read as an authority and routed as `/foo`) has an empty
/// first segment and falls through to the root route.
pub fn segments(path: &str) -> impl Iterator<Item = &str> {
    let trimmed = path.strip_prefix('/').unwrap_or(path).trim_end_matches('/');
    let mut it = trimmed.split('/');
    if trimmed.is_empty() {
        // `""` and `/` have no segments at all.
        it.next();
    }
    it
}

/// Applies the WHATWG path clean-up to a request path (no query): `\` becomes `/`, and `.`/`..`
/// segments (also percent-encoded as `%2e`) are resolved. The percent-encoding of everything
/// else is kept. Borrowed when there is nothing to do, which is the common case.
pub fn clean_wire_path(path: &str) -> Cow<'_, str> {
    if !needs_cleaning(path) {
        return Cow::Borrowed(path);
    }
    let unslashed = path.replace('\\', "/");
    let mut out: Vec<&str> = Vec::new();
    let parts: Vec<&str> = unslashed.split('/').skip(1).collect();
    let last = parts.len().saturating_sub(1);
    for (i, part) in parts.iter().enumerate() {
        match dot_segment(part) {
            Some(DotSegment::Single) => {
                if i == last {
                    out.push("");
                }
            }
            Some(DotSegment::Double) => {
                out.pop();
                if i == last {
                    out.push("");
                }
            }
            None => out.push(part),
        }
    }
    let mut cleaned = String::with_capacity(unslashed.len());
    for part in &out {
        cleaned.push('/');
        cleaned.push_str(part);
    }
    if cleaned.is_empty() {
        cleaned.push('/');
    }
    Cow::Owned(cleaned)
}

enum DotSegment {
    Single,
    Double,
}

fn dot_segment(part: &str) -> Option<DotSegment> {
    match part.to_ascii_lowercase().as_str() {
        "." | "%2e" => Some(DotSegment::Single),
        ".." | ".%2e" | "%2e." | "%2e%2e" => Some(DotSegment::Double),
        _ => None,
    }
}

fn needs_cleaning(path: &str) -> bool {
    let b = path.as_bytes();
    b.contains(&b'\\')
        || b.windows(2).any(|w| w == b"/.")
        || b.windows(4)
            .any(|w| w[0] == b'/' && w[1] == b'%' && w[2] == b'2' && (w[3] | 0x20) == b'e')
}

/// Joins a target's path with the request path, merging exactly one `/` at the boundary, and
/// the queries with `&`, the target's first (as CHP joins them).
pub fn join_paths(target_path: &str, target_query: Option<&str>, path: &str, query: Option<&str>) -> String {
    let mut out = String::with_capacity(target_path.len() + path.len() + 16);
    out.push_str(target_path);
    match (target_path.ends_with('/'), path.starts_with('/')) {
        (true, true) => out.push_str(&path[1..]),
        (false, false) if !path.is_empty() => {
            out.push('/');
            out.push_str(path);
        }
        _ => out.push_str(path),
    }
    if out.is_empty() {
        out.push('/');
    }
    let queries: Vec<&str> = [target_query, query]
        .into_iter()
        .flatten()
        .filter(|q| !q.is_empty())
        .collect();
    if !queries.is_empty() {
        out.push('?');
        out.push_str(&queries.join("&"));
    }
    out
}

/// Removes the first `count` segments from a wire path (the `--no-include-prefix` strip), by
/// segments rather than by slicing the raw path at the decoded key's length, as CHP does (a
/// CHP bug: `/b%40r/x` loses `/b%4`).
/// `/bar` minus one segment is `""`, `/bar/` is `/`, `/bar/x` is `/x`.
pub fn strip_segments(path: &str, count: usize) -> &str {
    let mut rest = path;
    for _ in 0..count {
        let Some(after_slash) = rest.strip_prefix('/') else {
            return rest;
        };
        rest = match after_slash.find('/') {
            Some(i) => &after_slash[i..],
            None => "",
        };
    }
    rest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_like_decode_uri_component() {
        let cases = [
            ("/user/foo", Some("/user/foo")),
            ("/user/foo%40bar", Some("/user/foo@bar")),
            ("/user/a%40b%2Fc%20d", Some("/user/a@b/c d")),
            ("/user/a+b", Some("/user/a+b")),
            ("/has/%C3%BC%C3%B1", Some("/has/üñ")),
            ("/%25", Some("/%")),
            ("/%", None),
            ("/%ZZ", None),
            ("/%E0%A4%A", None),
            ("/%FF", None),
        ];
        for (input, want) in cases {
            let got = percent_decode(input).ok().map(|c| c.into_owned());
            assert_eq!(got.as_deref(), want, "decoding {input:?}");
        }
    }

    #[test]
    fn route_keys_are_normalised_like_trim_prefix() {
        let cases = [
            ("/user/foo/", "/user/foo"),
            ("user/foo", "/user/foo"),
            ("/", "/"),
            ("", "/"),
            ("//", "/"),
            ("/a//", "/a/"),
            ("/User/Foo", "/User/Foo"),
        ];
        for (input, want) in cases {
            assert_eq!(normalize_route_key(input), want, "normalising {input:?}");
        }
    }

    #[test]
    fn segments_keep_empty_inner_parts() {
        let cases: [(&str, &[&str]); 6] = [
            ("", &[]),
            ("/", &[]),
            ("/user/foo", &["user", "foo"]),
            ("/user/foo/", &["user", "foo"]),
            ("/user//foo/x", &["user", "", "foo", "x"]),
            ("//user/foo", &["", "user", "foo"]),
        ];
        for (input, want) in cases {
            assert_eq!(segments(input).collect::<Vec<_>>(), want, "segments of {input:?}");
        }
    }

    #[test]
    fn wire_paths_are_cleaned_like_whatwg() {
        let cases = [
            ("/user/foo/x", "/user/foo/x"),
            ("/user/foo/../bar", "/user/bar"),
            ("/user/foo/./x", "/user/foo/x"),
            ("/user/foo/%2e%2E/bar", "/user/bar"),
            ("/user\\foo/x", "/user/foo/x"),
            ("/..", "/"),
            ("/a/..", "/"),
            ("/a/.", "/a/"),
            ("/a/b/..", "/a/"),
            ("/.hidden/x", "/.hidden/x"),
            ("//user/foo", "//user/foo"),
            ("/user/%66oo/x", "/user/%66oo/x"),
        ];
        for (input, want) in cases {
            assert_eq!(clean_wire_path(input), want, "cleaning {input:?}");
        }
    }

    #[test]
    fn joins_merge_one_slash_and_queries() {
        let cases = [
            ("/foo", None, "/bar/rest/of/it", None, "/foo/bar/rest/of/it"),
            ("/foo", None, "/bar", Some("query=foo"), "/foo/bar?query=foo"),
            ("/base/", None, "/pre/fix", None, "/base/pre/fix"),
            ("/", None, "/x", None, "/x"),
            ("/foo", None, "", None, "/foo"),
            ("/foo", None, "/", None, "/foo/"),
            ("/foo", None, "", Some("x=1"), "/foo?x=1"),
            (
                "/sub/path",
                Some("tq=1"),
                "/user/foo/lab/tree",
                Some("q=2"),
                "/sub/path/user/foo/lab/tree?tq=1&q=2",
            ),
            ("", None, "", None, "/"),
        ];
        for (tp, tq, p, q, want) in cases {
            assert_eq!(join_paths(tp, tq, p, q), want, "join {tp:?} {p:?}");
        }
    }

    #[test]
    fn strips_prefix_by_segments() {
        let cases = [
            ("/bar/rest/of/it", 1, "/rest/of/it"),
            ("/bar", 1, ""),
            ("/bar/", 1, "/"),
            ("/b%40r/x", 1, "/x"),
            ("/a/b/c", 0, "/a/b/c"),
            ("/a/b/c", 2, "/c"),
            ("/a", 3, ""),
        ];
        for (path, n, want) in cases {
            assert_eq!(strip_segments(path, n), want, "strip {n} from {path:?}");
        }
    }

    #[test]
    fn encodes_error_target_urls_like_encode_uri_component() {
        assert_eq!(
            encode_uri_component("/nope/x?a=1&b=%2F"),
            "%2Fnope%2Fx%3Fa%3D1%26b%3D%252F"
        );
        assert_eq!(encode_uri_component("/%"), "%2F%25");
    }
}
