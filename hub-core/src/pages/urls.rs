//! The hub URLs that pages link to and call, built in one place so a page, its script and the
//! hub's router agree. `base` is the hub's base prefix (`/` or `/jhub/`, always ending in `/`).
//! User and server names are percent-encoded as one path segment each; the results are plain
//! URLs, to be HTML-escaped where a page interpolates them.

use crate::model::escape_segment as segment;

pub fn home(base: &str) -> String {
    format!("{base}hub/home")
}

pub fn login(base: &str) -> String {
    format!("{base}hub/login")
}

/// `url` with `?next=` the address to go on to afterwards, when there is one.
pub fn with_next(url: String, next: Option<&str>) -> String {
    match next {
        Some(next) => format!(
            "{url}?next={}",
            form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
        ),
        None => url,
    }
}

pub fn logout(base: &str) -> String {
    format!("{base}hub/logout")
}

/// A file of [`super::assets`], e.g. `static_file("/", "style.css")`.
pub fn static_file(base: &str, name: &str) -> String {
    format!("{base}hub/static/{name}")
}

/// The user model, `GET` to poll it.
pub fn user_api(base: &str, user: &str) -> String {
    format!("{base}hub/api/users/{}", segment(user))
}

/// The admin page.
pub fn admin(base: &str) -> String {
    format!("{base}hub/admin")
}

/// The token page.
pub fn token_page(base: &str) -> String {
    format!("{base}hub/token")
}

/// `/hub/api/users`: `POST` adds users.
pub fn users_api(base: &str) -> String {
    format!("{base}hub/api/users")
}

/// `/hub/api/groups`, or one group's `/hub/api/groups/{name}{tail}` (`tail`: `""` or `/users`).
pub fn group_api(base: &str, group: Option<&str>, tail: &str) -> String {
    match group {
        Some(name) => format!("{base}hub/api/groups/{}{tail}", segment(name)),
        None => format!("{base}hub/api/groups"),
    }
}

/// A user's tokens, `/hub/api/users/{name}/tokens`, or one of them by id.
pub fn tokens_api(base: &str, user: &str, id: Option<&str>) -> String {
    match id {
        Some(id) => format!("{base}hub/api/users/{}/tokens/{}", segment(user), segment(id)),
        None => format!("{base}hub/api/users/{}/tokens", segment(user)),
    }
}

/// `POST` starts the server, `DELETE` stops it. The default server (`""`) has its own path, as in
/// JupyterHub's API.
pub fn server_api(base: &str, user: &str, server_name: &str) -> String {
    if server_name.is_empty() {
        format!("{base}hub/api/users/{}/server", segment(user))
    } else {
        format!("{}{}", named_server_api_prefix(base, user), segment(server_name))
    }
}

/// [`server_api`] of a named server, less the name; the home page's script appends it.
pub fn named_server_api_prefix(base: &str, user: &str) -> String {
    format!("{base}hub/api/users/{}/servers/", segment(user))
}

/// The page that follows a starting server.
pub fn spawn_pending(base: &str, user: &str, server_name: &str) -> String {
    if server_name.is_empty() {
        format!("{base}hub/spawn-pending/{}", segment(user))
    } else {
        format!("{}{}", spawn_pending_prefix(base, user), segment(server_name))
    }
}

/// Starts the server (`GET` or a form `POST`), then goes on to [`spawn_pending`].
pub fn spawn(base: &str, user: &str, server_name: &str) -> String {
    if server_name.is_empty() {
        format!("{base}hub/spawn/{}", segment(user))
    } else {
        format!("{base}hub/spawn/{}/{}", segment(user), segment(server_name))
    }
}

/// [`spawn_pending`] of a named server, less the name; the home page's script appends it.
pub fn spawn_pending_prefix(base: &str, user: &str) -> String {
    format!("{base}hub/spawn-pending/{}/", segment(user))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spawn_urls_escape_names_once() {
        assert_eq!(spawn("/", "alice", ""), "/hub/spawn/alice");
        assert_eq!(spawn("/jhub/", "a b", "lab/2"), "/jhub/hub/spawn/a%20b/lab%2F2");
    }

    #[test]
    fn server_urls() {
        // (base, user, server, server_api, spawn_pending)
        let cases = [
            (
                "/",
                "alice",
                "",
                "/hub/api/users/alice/server",
                "/hub/spawn-pending/alice",
            ),
            (
                "/",
                "alice",
                "lab2",
                "/hub/api/users/alice/servers/lab2",
                "/hub/spawn-pending/alice/lab2",
            ),
            (
                "/jhub/",
                "bob",
                "",
                "/jhub/hub/api/users/bob/server",
                "/jhub/hub/spawn-pending/bob",
            ),
            (
                "/",
                "a.b@example.org",
                "my lab",
                "/hub/api/users/a.b@example.org/servers/my%20lab",
                "/hub/spawn-pending/a.b@example.org/my%20lab",
            ),
            (
                "/",
                "x/../y",
                "<s>",
                "/hub/api/users/x%2F..%2Fy/servers/%3Cs%3E",
                "/hub/spawn-pending/x%2F..%2Fy/%3Cs%3E",
            ),
            (
                "/",
                "zoë",
                "",
                "/hub/api/users/zo%C3%AB/server",
                "/hub/spawn-pending/zo%C3%AB",
            ),
        ];
        for (base, user, server, api, pending) in cases {
            assert_eq!(
                server_api(base, user, server),
                api,
                "server_api({base:?}, {user:?}, {server:?})"
            );
            assert_eq!(
                spawn_pending(base, user, server),
                pending,
                "spawn_pending({base:?}, {user:?}, {server:?})"
            );
        }
    }

    #[test]
    fn hub_urls() {
        assert_eq!(home("/"), "/hub/home");
        assert_eq!(login("/jhub/"), "/jhub/hub/login");
        assert_eq!(logout("/"), "/hub/logout");
        assert_eq!(static_file("/jhub/", "style.css"), "/jhub/hub/static/style.css");
        assert_eq!(user_api("/", "alice"), "/hub/api/users/alice");
        assert_eq!(named_server_api_prefix("/", "a b"), "/hub/api/users/a%20b/servers/");
        assert_eq!(spawn_pending_prefix("/jhub/", "a b"), "/jhub/hub/spawn-pending/a%20b/");
    }
}
