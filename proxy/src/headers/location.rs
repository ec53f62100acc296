//! Rewriting of redirect `Location`s (`--auto-rewrite`, `--protocol-rewrite`, as in CHP):
//! only on 201/301/302/307/308, and only when the location points at the target itself.

use http::StatusCode;

use crate::target::Target;

/// Returns the rewritten location, or `None` to leave it untouched.
pub fn rewrite_location(
    status: StatusCode,
    location: &str,
    target: &Target,
    request_host: Option<&str>,
    auto_rewrite: bool,
    protocol_rewrite: Option<&str>,
) -> Option<String> {
    if !matches!(status.as_u16(), 201 | 301 | 302 | 307 | 308) || (!auto_rewrite && protocol_rewrite.is_none()) {
        return None;
    }
    let (scheme, rest) = location.split_once("://")?;
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    if !same_host_port(authority, scheme, target) {
        return None;
    }
    let authority = match (auto_rewrite, request_host) {
        (true, Some(host)) => host,
        _ => authority,
    };
    let scheme = protocol_rewrite.unwrap_or(scheme);
    Some(format!("{scheme}://{authority}{tail}"))
}

fn same_host_port(authority: &str, scheme: &str, target: &Target) -> bool {
    let default_port = if scheme.eq_ignore_ascii_case("https") { 443 } else { 80 };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !p.contains(']') => (h, p.parse().unwrap_or(0)),
        _ => (authority, default_port),
    };
    host.trim_matches(['[', ']']).eq_ignore_ascii_case(target.host()) && port == target.port
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_only_redirects_to_the_target() {
        let t = Target::parse("http://127.0.0.1:8912").unwrap();
        let s = |c| StatusCode::from_u16(c).unwrap();
        let host = Some("public.example:9999");
        let cases = [
            (
                301,
                "http://127.0.0.1:8912/elsewhere",
                true,
                Some("https"),
                Some("https://public.example:9999/elsewhere"),
            ),
            (
                302,
                "http://127.0.0.1:8912/x?y",
                true,
                None,
                Some("http://public.example:9999/x?y"),
            ),
            (
                308,
                "http://127.0.0.1:8912/e",
                false,
                Some("https"),
                Some("https://127.0.0.1:8912/e"),
            ),
            (
                201,
                "https://127.0.0.1:8912/whatever",
                true,
                Some("https"),
                Some("https://public.example:9999/whatever"),
            ),
            (200, "http://127.0.0.1:8912/e", true, Some("https"), None),
            (303, "http://127.0.0.1:8912/e", true, Some("https"), None),
            (301, "http://foo.com:12345/whatever", true, Some("https"), None),
            (301, "/relative", true, Some("https"), None),
            (301, "http://127.0.0.1:8912/e", false, None, None),
        ];
        for (code, loc, auto, proto, want) in cases {
            assert_eq!(
                rewrite_location(s(code), loc, &t, host, auto, proto).as_deref(),
                want,
                "{code} {loc}"
            );
        }
    }
}
