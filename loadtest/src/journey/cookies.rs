//! A cookie jar for one simulated user talking to one origin (the hub's public URL: the hub and
//! every single-user server sit behind the same proxy). Enough of RFC 6265 for JupyterHub and
//! jupyter_server: `Path` scoping (§5.1.4), replacement by name and path, deletion by `Max-Age`
//! ≤ 0 or an `Expires` in the past. `Domain`, `Secure` and `SameSite` are irrelevant with one
//! plain-HTTP origin and are ignored.

use super::dates::{parse_http_date, unix_now};

#[derive(Debug, Clone, PartialEq, Eq)]
struct Cookie {
    name: String,
    value: String,
    path: String,
}

#[derive(Debug, Clone, Default)]
pub struct CookieJar {
    cookies: Vec<Cookie>,
}

/// The default path of a cookie set by a response to `request_path` (RFC 6265 §5.1.4): the
/// request path up to, not including, its last `/`; `/` when that leaves nothing.
fn default_path(request_path: &str) -> &str {
    match request_path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &request_path[..i],
    }
}

/// Whether a cookie with `cookie_path` goes with a request to `request_path` (§5.1.4).
fn path_matches(cookie_path: &str, request_path: &str) -> bool {
    request_path == cookie_path
        || (request_path.starts_with(cookie_path)
            && (cookie_path.ends_with('/') || request_path.as_bytes().get(cookie_path.len()) == Some(&b'/')))
}

impl CookieJar {
    /// Applies one `Set-Cookie` header value received for a request to `request_path` (path
    /// only, no query).
    pub fn store(&mut self, request_path: &str, set_cookie: &str) {
        let mut attrs = set_cookie.split(';');
        let Some((name, value)) = attrs.next().and_then(|nv| nv.split_once('=')) else {
            return;
        };
        let (name, value) = (name.trim(), value.trim().trim_matches('"'));
        if name.is_empty() {
            return;
        }
        let mut path = None;
        let mut delete = false;
        let mut max_age_seen = false;
        for attr in attrs {
            let (key, val) = attr.split_once('=').unwrap_or((attr, ""));
            let (key, val) = (key.trim(), val.trim());
            if key.eq_ignore_ascii_case("path") && val.starts_with('/') {
                path = Some(val.to_owned());
            } else if key.eq_ignore_ascii_case("max-age") {
                // Max-Age wins over Expires (§5.3 step 3).
                max_age_seen = true;
                delete = val.parse::<i64>().is_ok_and(|s| s <= 0);
            } else if key.eq_ignore_ascii_case("expires") && !max_age_seen {
                delete = parse_http_date(val).is_some_and(|t| t <= unix_now());
            }
        }
        let path = path.unwrap_or_else(|| default_path(request_path).to_owned());
        self.cookies.retain(|c| !(c.name == name && c.path == path));
        if !delete {
            self.cookies.push(Cookie {
                name: name.to_owned(),
                value: value.to_owned(),
                path,
            });
        }
    }

    /// The `Cookie` header for a request to `request_path`, longest paths first (§5.4), or
    /// `None` when no cookie applies.
    pub fn header_for(&self, request_path: &str) -> Option<String> {
        let mut matching: Vec<&Cookie> = self
            .cookies
            .iter()
            .filter(|c| path_matches(&c.path, request_path))
            .collect();
        if matching.is_empty() {
            return None;
        }
        matching.sort_by_key(|c| std::cmp::Reverse(c.path.len()));
        let parts: Vec<String> = matching.iter().map(|c| format!("{}={}", c.name, c.value)).collect();
        Some(parts.join("; "))
    }

    /// The value of cookie `name` that a request to `request_path` would carry (the one with
    /// the longest path).
    pub fn get(&self, name: &str, request_path: &str) -> Option<&str> {
        self.cookies
            .iter()
            .filter(|c| c.name == name && path_matches(&c.path, request_path))
            .max_by_key(|c| c.path.len())
            .map(|c| c.value.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_scope_cookies() {
        let cases = [
            ("/", "/hub/login", true),
            ("/hub/", "/hub/login", true),
            ("/hub", "/hub/login", true),
            ("/hub", "/hubble", false),
            ("/user/a/", "/user/a/api/kernels", true),
            ("/user/a/", "/user/ab/api", false),
            ("/user/a", "/user/a", true),
        ];
        for (cookie, request, want) in cases {
            assert_eq!(path_matches(cookie, request), want, "{cookie} {request}");
        }
        assert_eq!(default_path("/hub/login"), "/hub");
        assert_eq!(default_path("/login"), "/");
        assert_eq!(default_path(""), "/");
    }

    #[test]
    fn stores_replaces_and_deletes() {
        let mut jar = CookieJar::default();
        jar.store(
            "/hub/login",
            "_xsrf=2|abc|def|1; Path=/hub/; expires=Fri, 01 Jan 2100 00:00:00 GMT",
        );
        jar.store("/hub/login", "jupyterhub-hub-login=\"tok\"; HttpOnly; Path=/hub/");
        jar.store("/user/a/oauth_callback", "jupyterhub-user-a=x; Path=/user/a/");
        jar.store("/hub/login", "jupyterhub-session-id=s1; Path=/");
        assert_eq!(jar.get("_xsrf", "/hub/api/users"), Some("2|abc|def|1"));
        assert_eq!(
            jar.header_for("/hub/api/users/a/server").as_deref(),
            Some("_xsrf=2|abc|def|1; jupyterhub-hub-login=tok; jupyterhub-session-id=s1")
        );
        assert_eq!(
            jar.header_for("/user/a/api/kernels").as_deref(),
            Some("jupyterhub-user-a=x; jupyterhub-session-id=s1")
        );
        assert_eq!(jar.get("jupyterhub-user-a", "/user/a/api"), Some("x"));
        assert_eq!(jar.get("jupyterhub-user-a", "/user/ab/"), None);
        jar.store("/hub/login", "jupyterhub-session-id=s2; Path=/");
        assert_eq!(jar.get("jupyterhub-session-id", "/"), Some("s2"));
        // Tornado's clear_cookie: an empty value that expired a year ago.
        jar.store(
            "/hub/logout",
            "jupyterhub-hub-login=; expires=Thu, 01 Jan 2015 00:00:00 GMT; Path=/hub/",
        );
        assert_eq!(jar.get("jupyterhub-hub-login", "/hub/"), None);
        jar.store("/", "jupyterhub-session-id=; Max-Age=0; Path=/");
        assert_eq!(jar.header_for("/"), None);
        jar.store("/", "novalue");
        jar.store("/", "=x");
        assert_eq!(jar.header_for("/"), None);
    }
}
