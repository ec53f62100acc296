//! What a session record must hold, judged the same way by every store (Redis, in process).

use crate::headers::secret::constant_time_eq;

/// The outcome of a session check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionVerdict {
    Live,
    /// The key is missing or holds another value.
    Revoked,
    /// Redis cannot be asked and the session was not verified within the grace period.
    Unavailable,
}

impl SessionVerdict {
    pub(super) fn from_live(live: bool) -> Self {
        if live {
            SessionVerdict::Live
        } else {
            SessionVerdict::Revoked
        }
    }
}

/// Whether a stored record (`None`: no such key) passes for a token expecting `expected`
/// (`None`: no `value` template, presence is enough). The comparison is constant-time: the
/// expected value may be a secret such as the token's `jti`.
pub fn satisfies(value: Option<&[u8]>, expected: Option<&str>) -> bool {
    match (value, expected) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(v), Some(want)) => constant_time_eq(v, want.as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_judged_by_presence_then_value() {
        assert!(!satisfies(None, None));
        assert!(!satisfies(None, Some("j1")));
        assert!(satisfies(Some(b""), None));
        assert!(satisfies(Some(b"anything"), None));
        assert!(satisfies(Some(b"j1"), Some("j1")));
        assert!(!satisfies(Some(b"j2"), Some("j1")));
        assert!(!satisfies(Some(b"j1x"), Some("j1")));
        assert!(!satisfies(Some(b""), Some("j1")));
    }
}
