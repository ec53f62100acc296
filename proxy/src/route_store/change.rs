//! A change to the route table, as the admin API makes it and as the Redis store's stream
//! carries it to every replica. Applying one is a single table swap, so a batch is never seen
//! half done.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::route_table::RouteTable;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Change {
    /// Adds or replaces the route at `key` (normalised) with `data` as stored.
    Set { key: String, data: Map<String, Value> },
    /// Removes the route at `key`.
    Delete { key: String },
    /// `replace` empties the table first; then `remove`, then `add`, in order.
    Batch {
        replace: bool,
        remove: Vec<String>,
        add: Vec<(String, Map<String, Value>)>,
    },
    /// The store changed in a way only a full reload shows (routes put back after Redis lost
    /// its data): followers reload the whole table.
    Reload,
}

/// What applying a change did to a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Applied {
    /// Routes removed (`Delete`: 0 or 1; `Batch`: by `remove`, not by `replace`).
    pub removed: usize,
    /// Routes in the table afterwards.
    pub len: usize,
}

impl Change {
    /// Applies the change; routes it adds record `at_ms` as their last activity.
    pub fn apply(self, table: &mut RouteTable, at_ms: u64) -> Applied {
        let removed = match self {
            Change::Set { key, data } => {
                table.insert_at(&key, data, at_ms);
                0
            }
            Change::Delete { key } => usize::from(table.remove(&key)),
            Change::Batch { replace, remove, add } => {
                if replace {
                    *table = RouteTable::default();
                }
                let removed = remove.iter().filter(|k| table.remove(k)).count();
                for (key, data) in add {
                    table.insert_at(&key, data, at_ms);
                }
                removed
            }
            Change::Reload => 0,
        };
        Applied {
            removed,
            len: table.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn data(target: &str) -> Map<String, Value> {
        json!({ "target": target }).as_object().unwrap().clone()
    }

    #[test]
    fn changes_round_trip_through_json_and_apply_in_order() {
        let batch = Change::Batch {
            replace: false,
            remove: vec!["/a".into(), "/gone".into()],
            add: vec![("/b".into(), data("http://b")), ("/a".into(), data("http://a2"))],
        };
        let text = serde_json::to_string(&batch).unwrap();
        assert_eq!(serde_json::from_str::<Change>(&text).unwrap(), batch);

        let mut t = RouteTable::default();
        Change::Set {
            key: "/a".into(),
            data: data("http://a"),
        }
        .apply(&mut t, 7);
        assert_eq!(t.get("/a").unwrap().last_activity_ms(), 7);
        let applied = batch.clone().apply(&mut t, 9);
        assert_eq!(applied, Applied { removed: 1, len: 2 });
        assert_eq!(t.get("/a").unwrap().data(), r#"{"target":"http://a2"}"#);
        let replace = Change::Batch {
            replace: true,
            remove: vec![],
            add: vec![("/c".into(), data("http://c"))],
        };
        assert_eq!(replace.apply(&mut t, 10), Applied { removed: 0, len: 1 });
        assert_eq!(Change::Delete { key: "/c".into() }.apply(&mut t, 11).removed, 1);
        assert!(t.is_empty());
    }
}
