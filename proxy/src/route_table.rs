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
//! Matching is CHP's (docs/routing.md): exact, case-sensitive, already-decoded segments; the
//! deepest node on the walk that holds a route wins; the root route `/` matches everything.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::{ArcSwap, Guard};
use serde_json::{Map, Value};

use crate::request_path::segments;
use crate::route_policy::RoutePolicy;
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
    /// Access policy from the data (`auth`, `user`, …); `None` for routes that say nothing.
    policy: Option<Box<RoutePolicy>>,
    last_activity_ms: AtomicU64,
    /// Insertion order for `GET /api/routes`; a replaced route keeps its place.
    seq: u64,
}

impl Route {
    pub fn policy(&self) -> Option<&RoutePolicy> {
        self.policy.as_deref()
    }

    pub fn last_activity_ms(&self) -> u64 {
        self.last_activity_ms.load(Ordering::Relaxed)
    }

    /// Records activity at `at_ms` (milliseconds since the epoch) unless newer activity is
    /// already recorded: for activity other replicas saw (the shared route store).
    pub fn note_activity(&self, at_ms: u64) {
        self.last_activity_ms.fetch_max(at_ms, Ordering::Relaxed);
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
    children: Children,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.route.is_none() && self.children.is_empty()
    }
}

/// A node's children: a persistent map from segment to child, copied on write.
///
/// Most nodes have a handful of children, kept in a short vector. A node that fans out to
/// thousands (`/user`) spreads them over hash-map shards: a change copies the shard it touches
/// and the shard list (pointers), not every child. Leaves allocate nothing.
#[derive(Clone, Default)]
struct Children(Option<Arc<ChildSet>>);

type Shard = std::collections::HashMap<Arc<str>, Arc<Node>, foldhash::fast::FixedState>;

#[derive(Clone)]
enum ChildSet {
    Few(Vec<(Arc<str>, Arc<Node>)>),
    Many { len: usize, shards: Vec<Arc<Shard>> },
}

/// Up to this many children are scanned linearly.
const FEW: usize = 16;
/// Children per shard before the shard count doubles.
const PER_SHARD: usize = 512;

fn shard_of(segment: &str, shards: usize) -> usize {
    use std::hash::BuildHasher;
    // The high bits, so the choice is independent of the bucket bits hashbrown uses inside.
    (foldhash::fast::FixedState::with_seed(0x5eed).hash_one(segment) >> 40) as usize & (shards - 1)
}

impl Children {
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn len(&self) -> usize {
        match self.0.as_deref() {
            None => 0,
            Some(ChildSet::Few(v)) => v.len(),
            Some(ChildSet::Many { len, .. }) => *len,
        }
    }

    fn get(&self, segment: &str) -> Option<&Arc<Node>> {
        match self.0.as_deref()? {
            ChildSet::Few(v) => v.iter().find(|(k, _)| &**k == segment).map(|(_, n)| n),
            ChildSet::Many { shards, .. } => shards[shard_of(segment, shards.len())].get(segment),
        }
    }

    fn for_each<'a>(&'a self, mut f: impl FnMut(&'a str, &'a Arc<Node>)) {
        match self.0.as_deref() {
            None => {}
            Some(ChildSet::Few(v)) => v.iter().for_each(|(k, n)| f(k, n)),
            Some(ChildSet::Many { shards, .. }) => shards.iter().flat_map(|s| s.iter()).for_each(|(k, n)| f(k, n)),
        }
    }

    /// The child at `segment`, created empty if absent, ready to be changed in place: the set
    /// and its shard are copied first if an older snapshot still shares them.
    fn entry(&mut self, segment: &str) -> &mut Arc<Node> {
        let set = Arc::make_mut(self.0.get_or_insert_with(|| Arc::new(ChildSet::Few(Vec::new()))));
        let absent = match &*set {
            ChildSet::Few(v) => !v.iter().any(|(k, _)| &**k == segment),
            ChildSet::Many { shards, .. } => !shards[shard_of(segment, shards.len())].contains_key(segment),
        };
        if absent {
            match set {
                ChildSet::Few(v) if v.len() >= FEW => {
                    let entries = std::mem::take(v);
                    *set = ChildSet::Many {
                        len: entries.len(),
                        shards: reshard(entries.into_iter(), 1),
                    };
                }
                ChildSet::Many { len, shards } if *len >= shards.len() * PER_SHARD => {
                    let all: Vec<_> = shards
                        .iter()
                        .flat_map(|s| s.iter().map(|(k, n)| (k.clone(), n.clone())))
                        .collect();
                    *shards = reshard(all.into_iter(), shards.len() * 2);
                }
                _ => {}
            }
        }
        match set {
            ChildSet::Few(v) => {
                let i = match v.iter().position(|(k, _)| &**k == segment) {
                    Some(i) => i,
                    None => {
                        v.push((Arc::from(segment), Arc::default()));
                        v.len() - 1
                    }
                };
                &mut v[i].1
            }
            ChildSet::Many { len, shards } => {
                let i = shard_of(segment, shards.len());
                let shard = Arc::make_mut(&mut shards[i]);
                if absent {
                    shard.insert(Arc::from(segment), Arc::default());
                    *len += 1;
                }
                shard.get_mut(segment).expect("the entry was just ensured")
            }
        }
    }

    fn remove(&mut self, segment: &str) {
        let Some(set) = self.0.as_mut() else { return };
        match Arc::make_mut(set) {
            ChildSet::Few(v) => v.retain(|(k, _)| &**k != segment),
            ChildSet::Many { len, shards } => {
                let i = shard_of(segment, shards.len());
                if Arc::make_mut(&mut shards[i]).remove(segment).is_some() {
                    *len -= 1;
                }
            }
        }
        if self.is_empty() {
            self.0 = None;
        }
    }
}

fn reshard(entries: impl ExactSizeIterator<Item = (Arc<str>, Arc<Node>)>, at_least: usize) -> Vec<Arc<Shard>> {
    let count = (entries.len() / PER_SHARD + 1).next_power_of_two().max(at_least).max(1);
    let mut shards: Vec<Shard> = (0..count).map(|_| Shard::default()).collect();
    for (k, n) in entries {
        shards[shard_of(&k, count)].insert(k, n);
    }
    shards.into_iter().map(Arc::new).collect()
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
        self.for_each_route(|key, route| out.push((key.to_owned(), route.clone())));
        out.sort_unstable_by_key(|(_, r)| r.seq);
        out
    }

    /// Calls `f` with every route and its key, in no particular order, building each key in one
    /// reused buffer (for walks over the whole table that keep few of the keys).
    pub fn for_each_route(&self, mut f: impl FnMut(&str, &Arc<Route>)) {
        fn walk(node: &Node, key: &mut String, f: &mut dyn FnMut(&str, &Arc<Route>)) {
            if let Some(route) = &node.route {
                f(if key.is_empty() { "/" } else { key }, route);
            }
            node.children.for_each(|segment, child| {
                let len = key.len();
                key.push('/');
                key.push_str(segment);
                walk(child, key, f);
                key.truncate(len);
            });
        }
        walk(&self.root, &mut String::new(), &mut f);
    }

    /// Adds or replaces the route at `key` (already normalised). A replaced route keeps its
    /// position in the listing; its data and `last_activity` are reset (as a re-POST to CHP).
    pub fn insert(&mut self, key: &str, data: Map<String, Value>) {
        self.insert_at(key, data, now_ms());
    }

    /// As [`RouteTable::insert`], with `last_activity` set to `at_ms` (the time the change was
    /// made, when it was made elsewhere).
    pub fn insert_at(&mut self, key: &str, data: Map<String, Value>, at_ms: u64) {
        // A map of JSON values always serialises.
        let text = serde_json::to_string(&data).unwrap_or_default();
        self.insert_parsed(key, &data, text, at_ms);
    }

    /// As [`RouteTable::insert_at`], from the data's JSON text as this table stores it (compact,
    /// as written by serde_json, no `last_activity`): kept as it is, not serialised again, which
    /// is most of the time a load of 100,000 routes from the shared store takes. Other text is
    /// parsed and written out again; `None` when it is not a JSON object.
    pub fn insert_json(&mut self, key: &str, text: String, at_ms: u64) -> Option<()> {
        let Ok(Value::Object(mut data)) = serde_json::from_str::<Value>(&text) else {
            return None;
        };
        let compact = (text.starts_with("{\"") || text == "{}") && text.ends_with('}');
        if compact && !data.contains_key("last_activity") {
            self.insert_parsed(key, &data, text, at_ms);
        } else {
            // The listing adds the route's own `last_activity`.
            data.remove("last_activity");
            self.insert_at(key, data, at_ms);
        }
        Some(())
    }

    fn insert_parsed(&mut self, key: &str, data: &Map<String, Value>, text: String, at_ms: u64) {
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
            policy: RoutePolicy::from_data(data),
            data: text.into_boxed_str(),
            target,
            last_activity_ms: AtomicU64::new(at_ms),
            seq,
        });
        let path: Vec<&str> = segments(key).collect();
        set_route(&mut self.root, &path, Some(route));
    }

    /// Removes the route at `key`; children stay routable. Returns whether it existed.
    pub fn remove(&mut self, key: &str) -> bool {
        if self.get(key).is_none() {
            return false;
        }
        let path: Vec<&str> = segments(key).collect();
        set_route(&mut self.root, &path, None);
        self.len -= 1;
        true
    }
}

/// Sets (or clears) the route at `path` below `node`, pruning branches left empty. Nodes still
/// shared with a published snapshot are copied on the way down (`Arc::make_mut`); nodes this
/// table already owns, such as those a batch has touched before, are changed in place.
fn set_route(node: &mut Arc<Node>, path: &[&str], route: Option<Arc<Route>>) {
    let node = Arc::make_mut(node);
    let Some((first, rest)) = path.split_first() else {
        node.route = route;
        return;
    };
    let emptied = {
        let child = node.children.entry(first);
        set_route(child, rest, route);
        child.is_empty()
    };
    if emptied {
        node.children.remove(first);
    }
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
    fn stored_json_is_kept_as_written_and_other_text_normalised() {
        let mut t = RouteTable::default();
        let compact = r#"{"target":"http://a","user":"alice"}"#;
        t.insert_json("/a", compact.to_owned(), 5).unwrap();
        assert_eq!(t.get("/a").unwrap().data(), compact);
        assert_eq!(t.get("/a").unwrap().last_activity_ms(), 5);
        t.insert_json(
            "/b",
            r#" { "target" : "http://b", "last_activity": "x" } "#.to_owned(),
            5,
        )
        .unwrap();
        assert_eq!(t.get("/b").unwrap().data(), r#"{"target":"http://b"}"#);
        assert!(t.insert_json("/c", "[1]".to_owned(), 5).is_none());
        assert!(t.get("/c").is_none());
        let mut out = Vec::new();
        t.get("/a").unwrap().write_json(&mut out);
        let listed: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(listed["user"], "alice");
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
    fn wide_nodes_shard_and_stay_correct_across_snapshots() {
        let mut t = RouteTable::default();
        for i in 0..5_000 {
            t.insert(&format!("/user/u{i}"), data("http://x"));
        }
        let before = t.clone();
        for i in (0..5_000).step_by(2) {
            assert!(t.remove(&format!("/user/u{i}")));
        }
        t.insert("/user/u1/sub", data("http://y"));
        for i in 0..5_000 {
            let path = format!("/user/u{i}/lab");
            assert!(before.lookup(&path).is_some(), "old snapshot keeps {path}");
            assert_eq!(t.lookup(&path).is_some(), i % 2 == 1, "new snapshot at {path}");
        }
        assert_eq!((before.len(), t.len()), (5_000, 2_501));
        assert_eq!(t.routes().len(), 2_501);
        for i in (1..5_000).step_by(2) {
            assert!(t.remove(&format!("/user/u{i}")));
        }
        assert!(t.remove("/user/u1/sub"));
        assert!(t.root.children.is_empty(), "everything pruned");
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
