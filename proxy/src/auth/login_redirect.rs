//! Where an unauthenticated browser is sent: the login URL with a `next` that can only bring it
//! back to this site. Only relative paths are kept: not `//host` or `/\host` (which browsers read
//! as another host), nothing with control characters or backslashes.

/// `login?next=<path>` (or `&next=` when the login URL has a query); the `next` is dropped when
/// it is not a safe relative path.
pub fn location(login_url: &str, next: Option<&str>) -> String {
    match next.filter(|n| is_safe_next(n)) {
        Some(next) => {
            let sep = if login_url.contains('?') { '&' } else { '?' };
            format!("{login_url}{sep}next={}", encode(next))
        }
        None => login_url.to_owned(),
    }
}

pub fn is_safe_next(next: &str) -> bool {
    let b = next.as_bytes();
    b.first() == Some(&b'/')
        && !matches!(b.get(1), Some(b'/' | b'\\'))
        && !next.bytes().any(|c| c.is_ascii_control() || c == b'\\' || c == b' ')
}

/// Percent-encodes everything but unreserved characters and `/`.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(
            location("/hub/login", Some("/user/alice/lab?x=1")),
            "/hub/login?next=/user/alice/lab%3Fx%3D1"
        );
        assert_eq!(
            location("https://login.example/?app=nb", Some("/user/a/")),
            "https://login.example/?app=nb&next=/user/a/"
        );
        for bad in [
            "//evil.example/",
            "/\\evil.example",
            "https://evil.example",
            "/a\\b",
            "/a\tb",
            "",
            "evil",
        ] {
            assert!(!is_safe_next(bad), "{bad:?}");
            assert_eq!(location("/hub/login", Some(bad)), "/hub/login");
        }
    }
}
