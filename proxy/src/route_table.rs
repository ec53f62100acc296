//! The routing table: an immutable, persistent segment trie swapped whole behind `ArcSwap`.
//!
//! Invariants:
//! - Readers never lock: a lookup loads the current snapshot, walks it, and clones one `Arc`.
//! - A change (one route, or a batch) builds a new snapshot from the old one by path copying
//!   (children live in persistent hash maps, so adding a route at 100,000 routes copies a few
//!   nodes, not the table) and publishes it with one atomic swap: readers see the old table or
//!   the new one, never half.
//! - Writers are serialised by a mutex that readers never touch.
//! - `last_activity` is an atomic inside the route, so recording activity never swaps the table.
//!
//! Matching is CHP's (chp-spec §4.2): exact, case-sensitive, already-decoded segments; the deepest
//! node on the walk that holds a route wins; the root route `/` matches everything.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::{ArcSwap, Guard};
use serde_json::{Map, Value};

use crate::request_path::segments;
use crate::target::{Target, TargetError};
use crate::timestamp::now_ms;

/// One route: what the admin API stored for a key (the key itself is the route's place in the
/// trie, so it is not stored again).
#[derive(Debug)]
pub struct Route {
    /// The data object as stored (target included, `last_activity` excluded), as compact JSON
    /// text: the form it is served in, and a fraction of the memory of a parsed map.
    data: Box<str>,
    /// `data.target`, parsed once; an error is answered with 500 at request time.
    pub target: Result<Target, TargetError>,
    /// How many path segments the key has (for `--no-include-prefix`).
    pub key_segments: usize,
    last_activity_ms: AtomicU64,
    /// Insertion order for `GET /api/routes`; a replaced route keeps its place.
    seq: u64,
}

impl Route {
    pub fn last_activity_ms(&self) -> u64 {
        self.last_activity_ms.load(Ordering::Relaxed)
    }

    /// Records activity now. A load before the store keeps the cache line shared when many
    /// requests hit one route within the same millisecond.
    pub fn mark_active(&self) {
        let now = now_ms();
        if self.last_activity_ms.load(Ordering::Relaxed) < now {
            self.last_activity_ms.store(now, Ordering::Relaxed);
        }
    }

    /// The stored data object, as JSON text.
    pub fn data(&self) -> &str {
        &self.data
    }

    /// Appends the data object as the admin API returns it: the stored fields plus
    /// `last_activity`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        // `data` is a JSON object: its text ends with `}`.
        let body = &self.data.as_bytes()[..self.data.len() - 1];
        out.extend_from_slice(body);
        if body.len() > 1 {
            out.push(b',');
        }
        out.extend_from_slice(b"\"last_activity\":\"");
        crate::timestamp::write_iso(out, self.last_activity_ms());
        out.extend_from_slice(b"\"}");
    }
}

#[derive(Clone, Default)]
struct Node {
    route: Option<Arc<Route>>,
    children: imbl::HashMap<Arc<str>, Arc<Node>>,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.route.is_none() && self.children.is_empty()
    }
}

/// One immutable snapshot of the routing table. Cloning is O(1).
#[derive(Clone, Default)]
pub struct RouteTable {
    root: Arc<Node>,
    len: usize,
    next_seq: u64,
}

impl RouteTable {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Longest segment-prefix match for a decoded request path.
    pub fn lookup(&self, decoded_path: &str) -> Option<&Arc<Route>> {
        let mut node = &self.root;
        let mut best = node.route.as_ref();
        for segment in segments(decoded_path) {
            match node.children.get(segment) {
                Some(child) => {
                    node = child;
                    if let Some(route) = &node.route {
                        best = Some(route);
                    }
                }
                None => break,
            }
        }
        best
    }

    /// Exact lookup of a normalised key (no prefix matching).
    pub fn get(&self, key: &str) -> Option<&Arc<Route>> {
        let mut node = &self.root;
        for segment in segments(key) {
            node = node.children.get(segment)?;
        }
        node.route.as_ref()
    }

    /// Every route with its key, in insertion order.
    pub fn routes(&self) -> Vec<(String, Arc<Route>)> {
        let mut out = Vec::with_capacity(self.len);
        let mut stack: Vec<(String, &Node)> = vec![(String::new(), &self.root)];
        while let Some((key, node)) = stack.pop() {
            for (segment, child) in node.children.iter() {
                stack.push((format!("{key}/{segment}"), child));
            }
            if let Some(route) = &node.route {
                let key = if key.is_empty() { "/".to_owned() } else { key };
                out.push((key, route.clone()));
            }
        }
        out.sort_unstable_by_key(|(_, r)| r.seq);
        out
    }

    /// Adds or replaces the route at `key` (already normalised). A replaced route keeps its
    /// position in the listing; its data and `last_activity` are reset (chp-spec §3.3).
    pub fn insert(&mut self, key: &str, data: Map<String, Value>) {
        let seq = match self.get(key) {
            Some(existing) => existing.seq,
            None => {
                self.len += 1;
                self.next_seq += 1;
                self.next_seq
            }
        };
        let target = match data.get("target") {
            Some(Value::String(t)) => Target::parse(t),
            _ => Err(TargetError::NotAUrl(String::new())),
        };
        let route = Arc::new(Route {
            key_segments: segments(key).count(),
            data: Value::Object(data).to_string().into_boxed_str(),
            target,
            last_activity_ms: AtomicU64::new(now_ms()),
            seq,
        });
        let path: Vec<&str> = segments(key).collect();
        self.root = Arc::new(with_route(&self.root, &path, Some(route)));
    }

    /// Removes the route at `key`; children stay routable. Returns whether it existed.
    pub fn remove(&mut self, key: &str) -> bool {
        if self.get(key).is_none() {
            return false;
        }
        let path: Vec<&str> = segments(key).collect();
        self.root = Arc::new(with_route(&self.root, &path, None));
        self.len -= 1;
        true
    }
}

/// Returns a copy of `node` with the route at `path` set (or cleared), copying only the nodes on
/// the path and pruning branches left empty.
fn with_route(node: &Node, path: &[&str], route: Option<Arc<Route>>) -> Node {
    let mut copy = node.clone();
    match path.split_first() {
        None => copy.route = route,
        Some((first, rest)) => {
            let child = match copy.children.get(*first) {
                Some(child) => with_route(child, rest, route),
                None => with_route(&Node::default(), rest, route),
            };
            if child.is_empty() {
                copy.children.remove(*first);
            } else {
                copy.children.insert(Arc::from(*first), Arc::new(child));
            }
        }
    }
    copy
}

/// The live table: lock-free reads, serialised writes, atomic publication.
#[derive(Default)]
pub struct Routes {
    current: ArcSwap<RouteTable>,
    writer: Mutex<()>,
}

impl Routes {
    /// The current snapshot. Hold it briefly (not across an await): clone the `Arc<Route>` you
    /// need and drop the guard.
    pub fn load(&self) -> Guard<Arc<RouteTable>> {
        self.current.load()
    }

    /// The current snapshot as an owned `Arc`, for work that outlives a guard (listings).
    pub fn load_full(&self) -> Arc<RouteTable> {
        self.current.load_full()
    }

    /// Applies `change` to a private copy of the current table and publishes it in one swap.
    pub fn update<R>(&self, change: impl FnOnce(&mut RouteTable) -> R) -> R {
        // A poisoned lock only means another writer panicked mid-change; the published
        // snapshot is still whole, so carry on from it.
        let _writing = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let mut table = RouteTable::clone(&self.current.load());
        let result = change(&mut table);
        self.current.store(Arc::new(table));
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn data(target: &str) -> Map<String, Value> {
        json!({ "target": target }).as_object().unwrap().clone()
    }

    fn table(keys: &[&str]) -> RouteTable {
        let mut t = RouteTable::default();
        for k in keys {
            t.insert(k, data(&format!("http://127.0.0.1:1{k}")));
        }
        t
    }

    fn matched(t: &RouteTable, path: &str) -> Option<String> {
        let route = t.lookup(path)?;
        t.routes()
            .into_iter()
            .find(|(_, r)| Arc::ptr_eq(r, route))
            .map(|(k, _)| k)
    }

    #[test]
    fn longest_segment_prefix_wins() {
        let t = table(&["/1", "/2", "/a/b/c/d", "/a/b/d", "/a/b/e", "/b", "/b/c", "/b/c/d"]);
        let cases = [
            ("/not/found", None),
            ("/1/etc/etc/", Some("/1")),
            ("/a", None),
            ("/a/b/c", None),
            ("/a/b/c/d/e/f", Some("/a/b/c/d")),
            ("/b/c/d/word", Some("/b/c/d")),
            ("/b/c/dword", Some("/b/c")),
        ];
        for (path, want) in cases {
            assert_eq!(matched(&t, path).as_deref(), want, "lookup {path:?}");
        }
    }

    #[test]
    fn root_route_catches_everything_and_segments_are_exact() {
        let t = table(&["/", "/user/foo"]);
        let cases = [
            ("", "/"),
            ("/", "/"),
            ("/1/etc/etc/", "/"),
            ("/user/foo", "/user/foo"),
            ("/user/foo/", "/user/foo"),
            ("/user/foo/x", "/user/foo"),
            ("/user/foobar", "/"),
            ("/USER/foo", "/"),
            ("/user//foo/x", "/"),
            ("/user/foo;x=1", "/"),
        ];
        for (path, want) in cases {
            assert_eq!(matched(&t, path).as_deref(), Some(want), "lookup {path:?}");
        }
    }

    #[test]
    fn removing_keeps_children_and_prunes_branches() {
        let mut t = table(&["/", "/b", "/b/c", "/a/b/c/d"]);
        assert!(t.remove("/b"));
        assert_eq!(matched(&t, "/b/just-b").as_deref(), Some("/"));
        assert_eq!(matched(&t, "/b/c/sub-still-here").as_deref(), Some("/b/c"));
        assert!(t.remove("/a/b/c/d"));
        assert!(t.root.children.get("a").is_none(), "empty branch pruned");
        assert!(!t.remove("/a/b/c/d"));
        assert!(t.remove("/"));
        assert_eq!(matched(&t, "/"), None);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn intermediate_nodes_hold_no_route() {
        let mut t = table(&["/", "/prefix/sub/tree"]);
        assert_eq!(matched(&t, "/prefix").as_deref(), Some("/"));
        assert_eq!(matched(&t, "/prefix/sub").as_deref(), Some("/"));
        assert_eq!(matched(&t, "/prefix/sub/tree").as_deref(), Some("/prefix/sub/tree"));
        t.insert("/prefix", data("http://x"));
        assert_eq!(matched(&t, "/prefix/sub").as_deref(), Some("/prefix"));
        assert!(t.get("/prefix/sub").is_none());
    }

    #[test]
    fn listing_keeps_insertion_order_across_replacement() {
        let mut t = table(&["/z", "/a", "/m/n"]);
        t.insert("/a", data("http://replaced"));
        let keys: Vec<String> = t.routes().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["/z", "/a", "/m/n"]);
        assert_eq!(t.get("/a").unwrap().data(), r#"{"target":"http://replaced"}"#);
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn snapshots_are_independent() {
        let routes = Routes::default();
        routes.update(|t| t.insert("/user/a", data("http://a")));
        let before = routes.load_full();
        routes.update(|t| {
            t.insert("/user/b", data("http://b"));
            t.remove("/user/a");
        });
        assert!(before.get("/user/a").is_some() && before.get("/user/b").is_none());
        let after = routes.load();
        assert!(after.get("/user/a").is_none() && after.get("/user/b").is_some());
    }

    #[test]
    fn json_splices_last_activity_into_the_stored_object() {
        let mut t = RouteTable::default();
        t.insert(
            "/x",
            json!({"target": "http://a", "user": "ü"}).as_object().unwrap().clone(),
        );
        let mut out = Vec::new();
        t.get("/x").unwrap().write_json(&mut out);
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            (v["target"].as_str(), v["user"].as_str()),
            (Some("http://a"), Some("ü"))
        );
        assert!(v["last_activity"].as_str().unwrap().ends_with('Z'));
        let mut empty = RouteTable::default();
        empty.insert("/e", Map::new());
        let mut out = Vec::new();
        empty.get("/e").unwrap().write_json(&mut out);
        assert!(serde_json::from_slice::<Value>(&out).unwrap()["last_activity"].is_string());
    }

    #[test]
    fn activity_only_moves_forward() {
        let t = table(&["/x"]);
        let r = t.get("/x").unwrap();
        let first = r.last_activity_ms();
        std::thread::sleep(std::time::Duration::from_millis(3));
        r.mark_active();
        assert!(r.last_activity_ms() > first);
    }
}
