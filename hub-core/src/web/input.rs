//! A request's input, checked before a handler acts on it: the names in its path, its query
//! parameters and its JSON body. Every REST handler takes its input through here, so a bad input
//! gets the same answer wherever it is sent, with JupyterHub's codes:
//!
//! - a path whose percent-escapes do not decode (`%ZZ`, not UTF-8): 400;
//! - a body that is not JSON, or not an object: 400 (`Invalid JSON in body of request`,
//!   `Body must be a JSON object`); a field of the wrong type: 400 naming the field;
//! - `offset`/`limit` that are not integers: 400 ([`crate::web::pagination::Page::of`]);
//! - a user that does not exist: 404 `No such user: NAME`.
//!
//! Invariant: a handler that got a [`Refusal`] has changed nothing. The refusal becomes the
//! response through [`json_error`], which the dispatcher logs once, at INFO.

use std::fmt::Display;

use http::StatusCode;
use serde_json::{Map, Value};

use crate::store::StoreError;
use crate::web::{Body, Req, json_error};

/// An input the hub will not act on: the status and the message the client gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub message: String,
}

impl Refusal {
    /// 400: the input is malformed.
    pub fn bad(message: impl Into<String>) -> Refusal {
        Refusal {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    /// 404 for a user the hub does not know, in JupyterHub's words.
    pub fn no_such_user(name: &str) -> Refusal {
        Refusal {
            status: StatusCode::NOT_FOUND,
            message: format!("No such user: {name}"),
        }
    }

    pub fn response(&self) -> http::Response<Body> {
        json_error(self.status, &self.message)
    }
}

impl From<Refusal> for http::Response<Body> {
    fn from(refusal: Refusal) -> Self {
        refusal.response()
    }
}

/// The path below `/hub/api`, split at `/` and each segment percent-decoded (`%2F` stays inside
/// its segment). An escape that does not decode is a 400, never a name to look up.
pub fn path_segments(path: &str) -> Result<Vec<String>, Refusal> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            proxy::request_path::percent_decode(s)
                .map(|c| c.into_owned())
                .map_err(|_| Refusal::bad(format!("Malformed percent-encoding in the path: {s:?}")))
        })
        .collect()
}

/// A JSON object body. An empty body is the empty object; anything that is not an object is a
/// 400 with JupyterHub's message.
pub fn object(req: &Req) -> Result<Fields, Refusal> {
    match req.json() {
        Ok(Value::Null) => Ok(Fields(Map::new())),
        Ok(Value::Object(map)) => Ok(Fields(map)),
        Ok(_) => Err(Refusal::bad("Body must be a JSON object")),
        Err(_) => Err(Refusal::bad("Invalid JSON in body of request")),
    }
}

/// JupyterHub's user model: the keys a body that creates or changes a user may hold.
pub const USER_MODEL_KEYS: &[&str] = &["name", "admin", "groups", "roles", "auth_state"];

/// The fields of a JSON object body, read by type: absent and `null` are `None`; a value of
/// another type is a 400 that names the field and what it must be.
#[derive(Debug, Clone, Default)]
pub struct Fields(Map<String, Value>);

impl Fields {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key).filter(|v| !v.is_null())
    }

    /// Whether the body names `key`, even as `null`.
    pub fn has(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_value(self) -> Value {
        Value::Object(self.0)
    }

    pub fn string(&self, key: &str) -> Result<Option<&str>, Refusal> {
        self.typed(key, "a string", Value::as_str)
    }

    pub fn boolean(&self, key: &str) -> Result<Option<bool>, Refusal> {
        self.typed(key, "true or false", Value::as_bool)
    }

    /// A whole number of 0 or more (seconds, counts).
    pub fn count(&self, key: &str) -> Result<Option<u64>, Refusal> {
        self.typed(key, "null or a non-negative integer", Value::as_u64)
    }

    pub fn object(&self, key: &str) -> Result<Option<&Map<String, Value>>, Refusal> {
        self.typed(key, "an object", Value::as_object)
    }

    pub fn strings(&self, key: &str) -> Result<Option<Vec<String>>, Refusal> {
        crate::web::optional_strings(&Value::Object(self.0.clone()), key)
            .map_err(|_| must_be(key, "null or a list of strings", &self.0[key]))
    }

    /// Refuses a key outside `allowed`, as JupyterHub's model checks do: a misspelt key
    /// (`admn`) must not be ignored while the call reports success.
    pub fn only(&self, allowed: &[&str]) -> Result<(), Refusal> {
        let unknown: Vec<&str> = self
            .0
            .keys()
            .map(String::as_str)
            .filter(|k| !allowed.contains(k))
            .collect();
        match unknown.is_empty() {
            true => Ok(()),
            false => Err(Refusal::bad(format!("Invalid JSON keys: {}", unknown.join(", ")))),
        }
    }

    fn typed<'a, T>(
        &'a self,
        key: &str,
        what: &str,
        read: impl Fn(&'a Value) -> Option<T>,
    ) -> Result<Option<T>, Refusal> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => read(v).map(Some).ok_or_else(|| must_be(key, what, v)),
        }
    }
}

/// `"expires_in must be null or a non-negative integer, not \"soon\""`: the value is shown
/// cut short, so a huge one does not come back whole.
pub fn must_be(key: &str, what: &str, value: &Value) -> Refusal {
    let mut shown = value.to_string();
    if shown.len() > 40 {
        let cut = (0..=37).rev().find(|i| shown.is_char_boundary(*i)).unwrap_or(0);
        shown.truncate(cut);
        shown.push_str("...");
    }
    Refusal::bad(format!("{key} must be {what}, not {shown}"))
}

/// The answer to a failure of the hub itself (its state database): 500 with a generic message;
/// the details go to the log, never to the client. A database that is full gets 507 and says
/// so, since that is what the operator must act on, and nothing of it is secret.
pub fn internal_error(what: &str, error: impl Display + 'static) -> http::Response<Body> {
    tracing::error!("{what}: {error}");
    if is_storage_full(&error) {
        return storage_full();
    }
    json_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "The hub could not complete the request; its log says why",
    )
}

/// The answer when the state database failed a request: 507 when it is full, else 503.
pub fn store_failed(e: &StoreError) -> http::Response<Body> {
    match e.is_full() {
        true => storage_full(),
        false => json_error(StatusCode::SERVICE_UNAVAILABLE, "The state database cannot be reached"),
    }
}

/// 507: the state database has no room; nothing of the request was written.
pub fn storage_full() -> http::Response<Body> {
    json_error(
        StatusCode::INSUFFICIENT_STORAGE,
        "The hub's state database is full (no space left on its disk); nothing was changed",
    )
}

/// Whether `error` is, or carries, a [`StoreError`] that [`StoreError::is_full`].
fn is_storage_full(error: &dyn std::any::Any) -> bool {
    if let Some(e) = error.downcast_ref::<StoreError>() {
        return e.is_full();
    }
    error
        .downcast_ref::<anyhow::Error>()
        .and_then(|e| e.downcast_ref::<StoreError>())
        .is_some_and(StoreError::is_full)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req(body: &str) -> Req {
        Req {
            method: http::Method::POST,
            path: String::new(),
            query: None,
            headers: Default::default(),
            body: bytes::Bytes::from(body.to_owned()),
        }
    }

    #[test]
    fn bodies() {
        let cases: &[(&str, Result<Value, &str>)] = &[
            ("", Ok(json!({}))),
            ("  \n", Ok(json!({}))),
            ("null", Ok(json!({}))),
            ("{\"a\": 1}", Ok(json!({"a": 1}))),
            ("{not json", Err("Invalid JSON in body of request")),
            ("[1]", Err("Body must be a JSON object")),
            ("\"text\"", Err("Body must be a JSON object")),
            ("17", Err("Body must be a JSON object")),
        ];
        for (body, want) in cases {
            let got = object(&req(body)).map(Fields::into_value).map_err(|r| r.message);
            assert_eq!(got, want.clone().map_err(str::to_owned), "{body:?}");
        }
    }

    #[test]
    fn fields_by_type() {
        let Value::Object(map) = json!({"s": "x", "n": 5, "neg": -1, "b": true, "l": ["a"], "bad": [1], "nul": null, "long": "y".repeat(100)})
        else {
            unreachable!()
        };
        let f = Fields(map);
        assert_eq!(f.string("s"), Ok(Some("x")));
        assert_eq!(f.string("nul"), Ok(None));
        assert_eq!(f.string("absent"), Ok(None));
        assert_eq!(f.string("n").unwrap_err().message, "n must be a string, not 5");
        assert_eq!(f.count("n"), Ok(Some(5)));
        assert_eq!(
            f.count("neg").unwrap_err().message,
            "neg must be null or a non-negative integer, not -1"
        );
        assert_eq!(
            f.count("s").unwrap_err().message,
            "s must be null or a non-negative integer, not \"x\""
        );
        assert_eq!(f.boolean("b"), Ok(Some(true)));
        assert!(f.boolean("s").is_err());
        assert_eq!(f.strings("l"), Ok(Some(vec!["a".to_owned()])));
        assert_eq!(
            f.strings("bad").unwrap_err().message,
            "bad must be null or a list of strings, not [1]"
        );
        let long = f.count("long").unwrap_err().message;
        assert!(long.ends_with("...") && long.len() < 100, "{long}");
    }

    #[test]
    fn path_names() {
        let ok = |p: &str| path_segments(p).unwrap();
        assert_eq!(ok("users/alice/tokens"), ["users", "alice", "tokens"]);
        assert_eq!(ok("users/a%2Fb/"), ["users", "a/b"]);
        assert_eq!(ok("users/%C3%A9"), ["users", "é"]);
        for bad in ["users/%ZZ", "users/%", "users/%E0%A4%A", "users/%FF"] {
            assert_eq!(path_segments(bad).unwrap_err().status, StatusCode::BAD_REQUEST, "{bad}");
        }
    }
}
