//! Reading the `Cookie` header and writing `Set-Cookie` lines (RFC 6265).

use http::HeaderMap;

/// The value of cookie `name`, from any `Cookie` header; quotes around the value are removed.
pub fn get<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|line| line.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

/// A `Set-Cookie` value: HttpOnly and SameSite=Lax unless `script_readable`.
pub fn set(
    name: &str,
    value: &str,
    path: &str,
    max_age_secs: Option<u64>,
    secure: bool,
    script_readable: bool,
) -> String {
    let mut c = format!("{name}={value}; Path={path}; SameSite=Lax");
    if let Some(age) = max_age_secs {
        c.push_str(&format!("; Max-Age={age}"));
    }
    if !script_readable {
        c.push_str("; HttpOnly");
    }
    if secure {
        c.push_str("; Secure");
    }
    c
}

/// A `Set-Cookie` value that deletes the cookie.
pub fn clear(name: &str, path: &str) -> String {
    format!("{name}=; Path={path}; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.append(http::header::COOKIE, "a=1; edgehub-token=\"tok\"".parse().unwrap());
        h.append(http::header::COOKIE, "_xsrf=x".parse().unwrap());
        assert_eq!(get(&h, "edgehub-token"), Some("tok"));
        assert_eq!(get(&h, "_xsrf"), Some("x"));
        assert_eq!(get(&h, "edgehub"), None);
        let s = set("t", "v", "/", Some(10), true, false);
        assert_eq!(s, "t=v; Path=/; SameSite=Lax; Max-Age=10; HttpOnly; Secure");
    }
}
