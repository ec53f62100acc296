//! Label selectors (`a=b,c!=d,e in (x,y),f notin (z),g,!h`) and field selectors
//! (`metadata.name=x,spec.nodeName!=`), parsed once per request and matched per object.
//!
//! Invariants, as in the API server: a missing label never equals a value (so `a!=b` and
//! `a notin (b)` match objects without `a`); a missing field reads as the empty string (so
//! `spec.nodeName=` selects unscheduled pods). Which fields are selectable is the registry's
//! decision; this module only parses and compares.

use serde_json::Value;

/// A parsed label selector: every requirement must hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSelector {
    requirements: Vec<LabelRequirement>,
}

#[derive(Debug, Clone, PartialEq)]
struct LabelRequirement {
    key: String,
    op: LabelOp,
}

#[derive(Debug, Clone, PartialEq)]
enum LabelOp {
    Equals(String),
    NotEquals(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
}

impl LabelSelector {
    /// Parses the `labelSelector` query parameter; the error says which part is malformed.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut requirements = Vec::new();
        for part in split_top_level(text) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            requirements.push(parse_requirement(part)?);
        }
        Ok(Self { requirements })
    }

    /// Whether an object (its `metadata.labels`) satisfies every requirement.
    pub fn matches(&self, object: &Value) -> bool {
        let labels = object.pointer("/metadata/labels");
        self.requirements.iter().all(|r| {
            let value = labels.and_then(|l| l.get(&r.key)).and_then(Value::as_str);
            match (&r.op, value) {
                (LabelOp::Equals(want), Some(v)) => v == want,
                (LabelOp::Equals(_), None) => false,
                (LabelOp::NotEquals(want), v) => v != Some(want.as_str()),
                (LabelOp::In(set), Some(v)) => set.iter().any(|s| s == v),
                (LabelOp::In(_), None) => false,
                (LabelOp::NotIn(set), v) => v.is_none_or(|v| !set.iter().any(|s| s == v)),
                (LabelOp::Exists, v) => v.is_some(),
                (LabelOp::DoesNotExist, v) => v.is_none(),
            }
        })
    }
}

/// Splits at commas that are not inside a `( … )` value set.
fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn parse_requirement(part: &str) -> Result<LabelRequirement, String> {
    if let Some(key) = part.strip_prefix('!') {
        return Ok(LabelRequirement {
            key: checked_key(key.trim())?,
            op: LabelOp::DoesNotExist,
        });
    }
    if let Some(open) = part.find('(') {
        let close = part
            .rfind(')')
            .filter(|&c| c > open && part[c + 1..].trim().is_empty())
            .ok_or_else(|| format!("unbalanced parentheses in {part:?}"))?;
        let mut head = part[..open].split_whitespace();
        let (Some(key), Some(op), None) = (head.next(), head.next(), head.next()) else {
            return Err(format!("expected `key in (…)` or `key notin (…)`, found {part:?}"));
        };
        let values: Vec<String> = part[open + 1..close]
            .split(',')
            .map(|v| v.trim().to_string())
            .collect::<Vec<_>>();
        for v in &values {
            checked_value(v)?;
        }
        let op = match op {
            "in" => LabelOp::In(values),
            "notin" => LabelOp::NotIn(values),
            other => return Err(format!("unknown set operator {other:?} in {part:?}")),
        };
        return Ok(LabelRequirement {
            key: checked_key(key)?,
            op,
        });
    }
    let (key, op) = if let Some((k, v)) = part.split_once("!=") {
        (k, LabelOp::NotEquals(checked_value(v.trim())?))
    } else if let Some((k, v)) = part.split_once("==") {
        (k, LabelOp::Equals(checked_value(v.trim())?))
    } else if let Some((k, v)) = part.split_once('=') {
        (k, LabelOp::Equals(checked_value(v.trim())?))
    } else {
        (part, LabelOp::Exists)
    };
    Ok(LabelRequirement {
        key: checked_key(key.trim())?,
        op,
    })
}

fn checked_key(key: &str) -> Result<String, String> {
    let valid =
        !key.is_empty() && key.len() <= 317 && key.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
    if valid {
        Ok(key.to_string())
    } else {
        Err(format!("invalid label key {key:?}"))
    }
}

fn checked_value(value: &str) -> Result<String, String> {
    let valid = value.len() <= 63 && value.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if valid {
        Ok(value.to_string())
    } else {
        Err(format!("invalid label value {value:?}"))
    }
}

/// A parsed field selector: every `field=value` / `field!=value` must hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

#[derive(Debug, Clone, PartialEq)]
struct FieldRequirement {
    field: String,
    equal: bool,
    value: String,
}

impl FieldSelector {
    /// Parses the `fieldSelector` query parameter; `selectable` says which field names the
    /// resource supports (the API server answers 400 "field label not supported" otherwise).
    pub fn parse(text: &str, selectable: impl Fn(&str) -> bool) -> Result<Self, String> {
        let mut requirements = Vec::new();
        for part in split_unescaped_commas(text) {
            if part.trim().is_empty() {
                continue;
            }
            let (field, equal, value) = if let Some((f, v)) = part.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = part.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, true, v)
            } else {
                return Err(format!("invalid field selector requirement {part:?}"));
            };
            let field = field.trim();
            if !selectable(field) {
                return Err(format!("field label not supported: {field}"));
            }
            requirements.push(FieldRequirement {
                field: field.to_string(),
                equal,
                value: value.trim().to_string(),
            });
        }
        Ok(Self { requirements })
    }

    /// Whether the object satisfies every requirement; `field_value` reads a field (missing
    /// fields read as "").
    pub fn matches(&self, object: &Value, field_value: impl Fn(&Value, &str) -> String) -> bool {
        self.requirements
            .iter()
            .all(|r| (field_value(object, &r.field) == r.value) == r.equal)
    }
}

/// Splits at commas not escaped with a backslash, and removes the escapes (`a=x\,y` is one
/// requirement with the value `x,y`).
fn split_unescaped_commas(text: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let (Some(next), Some(last)) = (chars.next(), parts.last_mut()) {
                    last.push(next);
                }
            }
            ',' => parts.push(String::new()),
            c => {
                if let Some(last) = parts.last_mut() {
                    last.push(c);
                }
            }
        }
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(labels: Value) -> Value {
        json!({"metadata": {"name": "p", "labels": labels}, "spec": {"nodeName": "n1"}})
    }

    #[test]
    fn label_selectors_match_like_the_api_server() {
        let labelled = pod(json!({"app": "web", "tier": "front", "gpu": ""}));
        let bare = pod(json!({}));
        let cases: &[(&str, bool, bool)] = &[
            ("", true, true),
            ("app=web", true, false),
            ("app==web", true, false),
            ("app!=web", false, true),
            ("app!=db", true, true),
            ("app in (web, db)", true, false),
            ("app notin (db)", true, true),
            ("app notin (web)", false, true),
            ("tier", true, false),
            ("!tier", false, true),
            ("app=web,tier=front", true, false),
            ("app=web,tier in (back)", false, false),
            ("gpu=", true, false),
        ];
        for (selector, on_labelled, on_bare) in cases {
            let s = LabelSelector::parse(selector).unwrap_or_else(|e| panic!("{selector}: {e}"));
            assert_eq!(s.matches(&labelled), *on_labelled, "{selector:?} on labelled pod");
            assert_eq!(s.matches(&bare), *on_bare, "{selector:?} on bare pod");
        }
    }

    #[test]
    fn malformed_label_selectors_are_errors() {
        for selector in ["app in (a", "app is (a)", "=x", "a=b c", "!"] {
            assert!(
                LabelSelector::parse(selector).is_err(),
                "{selector:?} should be rejected"
            );
        }
    }

    #[test]
    fn field_selectors_read_missing_fields_as_empty() {
        let read = |o: &Value, f: &str| {
            match f {
                "metadata.name" => o.pointer("/metadata/name"),
                "spec.nodeName" => o.pointer("/spec/nodeName"),
                _ => None,
            }
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
        };
        let supported = |f: &str| matches!(f, "metadata.name" | "spec.nodeName");
        let bound = pod(json!({}));
        let unbound = json!({"metadata": {"name": "q"}});
        let cases: &[(&str, bool, bool)] = &[
            ("metadata.name=p", true, false),
            ("metadata.name!=p", false, true),
            ("spec.nodeName=", false, true),
            ("spec.nodeName!=,metadata.name==p", true, false),
        ];
        for (selector, on_bound, on_unbound) in cases {
            let s = FieldSelector::parse(selector, supported).unwrap();
            assert_eq!(s.matches(&bound, read), *on_bound, "{selector:?} on bound pod");
            assert_eq!(s.matches(&unbound, read), *on_unbound, "{selector:?} on unbound pod");
        }
        let err = FieldSelector::parse("status.hostIP=x", supported).unwrap_err();
        assert_eq!(err, "field label not supported: status.hostIP");
    }
}
