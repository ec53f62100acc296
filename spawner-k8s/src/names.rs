//! Names of Kubernetes objects and label values made from user and server names.
//!
//! Invariants:
//! - Every result is a valid RFC 1123 label (lowercase letters, digits, `-`; starts with a
//!   letter or digit, ends with one) of at most 63 characters, so it is usable as an object name
//!   and as a label value.
//! - Distinct inputs give distinct results. A name that is already safe is kept as it is; any
//!   other gets its safe characters followed by `--` and a hash of the whole raw name. Safe names
//!   never contain `--`, so a kept name cannot equal a hashed one, and two hashed names differ by
//!   their hashes (SHA-256, 8 hex digits; names that also share their safe prefix would need a
//!   32-bit collision).
//! - Pure and stable: the same input gives the same name in every hub version that keeps these
//!   rules, so pods and claims are found again after a restart.

use sha2::{Digest, Sha256};

/// Longest object name or label value Kubernetes accepts here.
pub const MAX_NAME: usize = 63;
const HASH_LEN: usize = 8;

/// The safe form of a user or server name, at most `max` characters (`max` ≥ 12).
pub fn safe_slug(raw: &str, max: usize) -> String {
    if is_safe(raw) && raw.len() <= max {
        return raw.to_owned();
    }
    let hash = short_hash(raw);
    let keep = max.saturating_sub(HASH_LEN + 2);
    let mut prefix = String::with_capacity(keep);
    for c in raw.chars() {
        if prefix.len() >= keep {
            break;
        }
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            prefix.push(c);
        } else if !prefix.is_empty() && !prefix.ends_with('-') {
            prefix.push('-');
        }
    }
    let prefix = prefix.trim_end_matches('-');
    if prefix.is_empty() {
        // Only a digit or letter may start a label; the hash is hex, so it qualifies.
        hash
    } else {
        format!("{prefix}--{hash}")
    }
}

/// Kept as is by [`safe_slug`]: a lowercase name that starts with a letter, of letters, digits
/// and single dashes, not ending with a dash.
fn is_safe(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.ends_with('-')
        && !s.contains("--")
}

/// A label value for a user or server name (`""` stays `""`, the default server).
pub fn label_value(raw: &str) -> String {
    if raw.is_empty() {
        String::new()
    } else {
        safe_slug(raw, MAX_NAME)
    }
}

/// Fills a name template (`{user}`, `{server}`, `{-server}`: `--` and the server, or nothing for
/// the default server) with safe names and fits the result
/// into [`MAX_NAME`]: a result that is too long, or not a valid label because of the template's own
/// characters, is cut and ends in `-` and a hash of the whole filled template.
pub fn object_name(template: &str, user: &str, server: &str) -> String {
    let user = safe_slug(user, MAX_NAME);
    let server_slug = if server.is_empty() {
        String::new()
    } else {
        safe_slug(server, MAX_NAME)
    };
    // `--` before the server: safe user names never contain it, so ("alice", "lab") and
    // ("alice-lab", "") stay apart.
    let dash_server = if server.is_empty() {
        String::new()
    } else {
        format!("--{server_slug}")
    };
    let filled = template
        .replace("{user}", &user)
        .replace("{-server}", &dash_server)
        .replace("{server}", &server_slug);
    fit_label(&filled)
}

/// `s` if it is a valid label of at most 63 characters; otherwise its valid characters, cut, then
/// `-` and a hash of `s`.
pub fn fit_label(s: &str) -> String {
    let valid = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-';
    if !s.is_empty() && s.len() <= MAX_NAME && s.bytes().all(valid) && !s.starts_with('-') && !s.ends_with('-') {
        return s.to_owned();
    }
    let keep = MAX_NAME - HASH_LEN - 1;
    let cut: String = s
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .filter(|c| c.is_ascii() && valid(*c as u8))
        .take(keep)
        .collect();
    let cut = cut.trim_matches('-');
    if cut.is_empty() {
        short_hash(s)
    } else {
        format!("{cut}-{}", short_hash(s))
    }
}

/// 8 hex digits of SHA-256.
pub fn short_hash(s: &str) -> String {
    let digest = Sha256::digest(s.as_bytes());
    digest[..HASH_LEN / 2].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid_label(s: &str) -> bool {
        !s.is_empty()
            && s.len() <= MAX_NAME
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-')
            && !s.ends_with('-')
    }

    #[test]
    fn slugs() {
        let long = "a".repeat(70);
        let cases: &[(&str, &str)] = &[
            ("alice", "alice"),
            ("bob-smith", "bob-smith"),
            ("a1", "a1"),
            ("Alice", "alice--"),
            ("alice@example.com", "alice-example-com--"),
            ("élodie", "lodie--"),
            ("1abc", "1abc--"),
            ("a--b", "a-b--"),
            ("trailing-", "trailing--"),
            ("ünï", ""),
            ("--", ""),
            (&long, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa--"),
        ];
        for (raw, prefix) in cases {
            let slug = safe_slug(raw, MAX_NAME);
            assert!(valid_label(&slug), "{raw:?} gave invalid {slug:?}");
            assert!(
                slug.starts_with(prefix),
                "{raw:?} gave {slug:?}, wanted prefix {prefix:?}"
            );
            if is_safe(raw) && raw.len() <= MAX_NAME {
                assert_eq!(&slug, raw);
            } else {
                assert!(slug.ends_with(&short_hash(raw)), "{raw:?} gave {slug:?}");
            }
        }
    }

    #[test]
    fn distinct_users_never_share_a_slug() {
        let users = [
            "alice", "Alice", "ALICE", "alice-", "alice--", "alice.", "alice_", "alice-2d", "alice@x", "alice-x", "x",
            "X", "-", "--", "", "a--b", "a-b", "a_b",
        ];
        let mut seen = std::collections::HashMap::new();
        for user in users {
            let slug = safe_slug(user, MAX_NAME);
            if let Some(other) = seen.insert(slug.clone(), user) {
                panic!("{user:?} and {other:?} both gave {slug:?}");
            }
        }
    }

    #[test]
    fn object_names() {
        let long = "u".repeat(80);
        let cases: &[(&str, &str, &str, &str)] = &[
            ("jupyter-{user}{-server}", "alice", "", "jupyter-alice"),
            ("jupyter-{user}{-server}", "alice", "lab2", "jupyter-alice--lab2"),
            ("claim-{user}{-server}", "Bob", "", "claim-bob--"),
            ("jupyter-{user}-{server}", "alice", "", "jupyter-alice-"),
            ("Jupyter_{user}", "alice", "", "jupyteralice-"),
            (
                "jupyter-{user}{-server}",
                &long,
                "",
                "jupyter-uuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuu-",
            ),
        ];
        for (template, user, server, prefix) in cases {
            let name = object_name(template, user, server);
            assert!(
                valid_label(&name),
                "{template} {user:?} {server:?} gave invalid {name:?}"
            );
            assert!(name.starts_with(prefix), "{template} {user:?} {server:?} gave {name:?}");
        }
        // Long names differing only at the end stay distinct.
        let a = object_name("jupyter-{user}{-server}", &format!("{long}a"), "");
        let b = object_name("jupyter-{user}{-server}", &format!("{long}b"), "");
        assert_ne!(a, b);
        // The default server and a server named "" share nothing with a named one.
        assert_ne!(
            object_name("jupyter-{user}{-server}", "alice", "lab"),
            object_name("jupyter-{user}{-server}", "alice-lab", "")
        );
    }

    #[test]
    fn label_values() {
        assert_eq!(label_value(""), "");
        assert_eq!(label_value("alice"), "alice");
        assert!(valid_label(&label_value("Someone@Example.COM")));
        assert_eq!(label_value(&"x".repeat(100)).len(), MAX_NAME);
    }
}
