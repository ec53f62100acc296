//! The object store: what etcd is to the API server. Objects as JSON, one global
//! resourceVersion counter, and a bounded history of changes that watches replay.
//!
//! Invariants:
//! - every write takes the next resourceVersion and records exactly one [`Change`], so the
//!   history's versions are contiguous and a watch can find its place by arithmetic;
//! - a read-modify-write ([`Store::update`]) runs under the one lock, so internal writers
//!   (scheduler, kubelet) never conflict; only API clients see 409s, from their own stale
//!   `resourceVersion`;
//! - the lock is never held across an `.await`: every method here is synchronous.
//!
//! Objects are `Arc<Value>` so lists, watches and history share one copy of each version.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;
use tokio::sync::watch;

use super::api_error::ApiError;
use super::object;

/// What happened to an object, as a watch reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Added,
    Modified,
    Deleted,
}

/// One write: the object after it (for a delete, the last state, stamped with the delete's
/// version) and the object before it, which watches need to tell an object leaving a selector.
#[derive(Debug)]
pub struct Change {
    pub resource_version: u64,
    pub resource: &'static str,
    pub kind: ChangeKind,
    pub object: Arc<Value>,
    pub previous: Option<Arc<Value>>,
}

/// A watch asked for versions the history no longer holds (HTTP 410 Expired).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expired {
    pub oldest_available: u64,
}

type Key = (String, String);

struct State {
    resource_version: u64,
    objects: HashMap<&'static str, BTreeMap<Key, Arc<Value>>>,
    history: VecDeque<Arc<Change>>,
    /// Every version up to and including this one has left the history.
    compacted_through: u64,
    history_limit: usize,
}

pub struct Store {
    state: Mutex<State>,
    /// Carries the latest resourceVersion; every write bumps it so waiters wake.
    latest: watch::Sender<u64>,
}

impl Store {
    pub fn new(history_limit: usize) -> Self {
        Self {
            state: Mutex::new(State {
                resource_version: 0,
                objects: HashMap::new(),
                history: VecDeque::new(),
                compacted_through: 0,
                history_limit: history_limit.max(1),
            }),
            latest: watch::Sender::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere must not take the API server down with it; the state is only
        // mutated in small steps that leave it consistent.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn current_resource_version(&self) -> u64 {
        self.lock().resource_version
    }

    /// Wakes whenever the store changes (the value is the latest resourceVersion).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.latest.subscribe()
    }

    pub fn get(&self, resource: &str, namespace: &str, name: &str) -> Option<Arc<Value>> {
        let state = self.lock();
        state
            .objects
            .get(resource)?
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }

    /// Every object of a resource (in one namespace, or all), in key order, and the version the
    /// list is consistent with.
    pub fn list(&self, resource: &str, namespace: Option<&str>) -> (Vec<Arc<Value>>, u64) {
        let state = self.lock();
        let items = match state.objects.get(resource) {
            None => Vec::new(),
            Some(map) => match namespace {
                None => map.values().cloned().collect(),
                Some(ns) => map
                    .range((ns.to_string(), String::new())..)
                    .take_while(|((n, _), _)| n == ns)
                    .map(|(_, v)| v.clone())
                    .collect(),
            },
        };
        (items, state.resource_version)
    }

    /// Stores a new object; 409 AlreadyExists if the name is taken.
    pub fn create(&self, resource: &'static str, mut object: Value) -> Result<Arc<Value>, ApiError> {
        let key = object::key(&object);
        let mut state = self.lock();
        if state.objects.get(resource).is_some_and(|m| m.contains_key(&key)) {
            return Err(ApiError::already_exists(resource, &key.1));
        }
        let rv = state.resource_version + 1;
        object::set_resource_version(&mut object, rv);
        let object = Arc::new(object);
        state.objects.entry(resource).or_default().insert(key, object.clone());
        self.record(&mut state, resource, ChangeKind::Added, object.clone(), None);
        Ok(object)
    }

    /// Read-modify-write of one object under the lock. `change` gets the current object and
    /// returns the new one, or `None` to leave it as it is (no write, no event).
    pub fn update(
        &self,
        resource: &'static str,
        namespace: &str,
        name: &str,
        change: impl FnOnce(&Value) -> Result<Option<Value>, ApiError>,
    ) -> Result<Arc<Value>, ApiError> {
        let key = (namespace.to_string(), name.to_string());
        let mut state = self.lock();
        let current = state
            .objects
            .get(resource)
            .and_then(|m| m.get(&key))
            .cloned()
            .ok_or_else(|| ApiError::not_found(resource, name))?;
        let Some(mut next) = change(&current)? else {
            return Ok(current);
        };
        // Compare with the version number carried over, so an update that changes nothing is
        // no write at all (and no MODIFIED event).
        object::set_resource_version(&mut next, object::resource_version(&current));
        if next == *current {
            return Ok(current);
        }
        object::set_resource_version(&mut next, state.resource_version + 1);
        let next = Arc::new(next);
        state.objects.entry(resource).or_default().insert(key, next.clone());
        self.record(&mut state, resource, ChangeKind::Modified, next.clone(), Some(current));
        Ok(next)
    }

    /// Removes an object (if `uid` is given, only that incarnation of the name) and records
    /// the DELETED change. `None` if there was nothing to remove.
    pub fn remove(&self, resource: &'static str, namespace: &str, name: &str, uid: Option<&str>) -> Option<Arc<Value>> {
        let key = (namespace.to_string(), name.to_string());
        let mut state = self.lock();
        let map = state.objects.get_mut(resource)?;
        let current = map.get(&key)?;
        if uid.is_some_and(|uid| object::uid(current) != uid) {
            return None;
        }
        let current = map.remove(&key)?;
        let mut last = (*current).clone();
        object::set_resource_version(&mut last, state.resource_version + 1);
        let last = Arc::new(last);
        self.record(&mut state, resource, ChangeKind::Deleted, last.clone(), Some(current));
        Some(last)
    }

    fn record(
        &self,
        state: &mut State,
        resource: &'static str,
        kind: ChangeKind,
        object: Arc<Value>,
        previous: Option<Arc<Value>>,
    ) {
        state.resource_version += 1;
        let resource_version = state.resource_version;
        state.history.push_back(Arc::new(Change {
            resource_version,
            resource,
            kind,
            object,
            previous,
        }));
        while state.history.len() > state.history_limit {
            if let Some(dropped) = state.history.pop_front() {
                state.compacted_through = dropped.resource_version;
            }
        }
        self.latest.send_replace(resource_version);
    }

    /// Changes after `since`, oldest first; `Err(Expired)` if some of them were compacted away.
    pub fn changes_since(&self, since: u64) -> Result<Vec<Arc<Change>>, Expired> {
        let state = self.lock();
        if since < state.compacted_through {
            return Err(Expired {
                oldest_available: state.compacted_through,
            });
        }
        let first = state
            .history
            .front()
            .map_or(state.resource_version + 1, |c| c.resource_version);
        let skip = usize::try_from((since + 1).saturating_sub(first)).unwrap_or(usize::MAX);
        Ok(state.history.iter().skip(skip).cloned().collect())
    }

    /// Drops the whole history, as an etcd compaction does: every watch or list version older
    /// than now is expired.
    pub fn compact(&self) {
        let mut state = self.lock();
        state.history.clear();
        state.compacted_through = state.resource_version;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cm(name: &str) -> Value {
        json!({"metadata": {"name": name, "namespace": "ns"}})
    }

    #[test]
    fn versions_are_contiguous_and_history_replays_from_any_retained_version() {
        let store = Store::new(3);
        store.create("configmaps", cm("a")).unwrap();
        store.create("configmaps", cm("b")).unwrap();
        store
            .update("configmaps", "ns", "a", |o| {
                let mut o = o.clone();
                o["data"] = json!({"k": "v"});
                Ok(Some(o))
            })
            .unwrap();
        store.remove("configmaps", "ns", "b", None).unwrap();
        assert_eq!(store.current_resource_version(), 4);
        // history holds versions 2..=4; 1 was compacted.
        let versions = |since| {
            store
                .changes_since(since)
                .map(|c| c.iter().map(|c| c.resource_version).collect::<Vec<_>>())
        };
        assert_eq!(versions(1), Ok(vec![2, 3, 4]));
        assert_eq!(versions(3), Ok(vec![4]));
        assert_eq!(versions(4), Ok(vec![]));
        assert_eq!(versions(0), Err(Expired { oldest_available: 1 }));
        store.compact();
        assert_eq!(versions(3), Err(Expired { oldest_available: 4 }));
        assert_eq!(versions(4), Ok(vec![]));
    }

    #[test]
    fn create_twice_is_already_exists_and_unchanged_update_writes_nothing() {
        let store = Store::new(10);
        store.create("configmaps", cm("a")).unwrap();
        let err = store.create("configmaps", cm("a")).unwrap_err();
        assert_eq!((err.code, err.reason), (409, "AlreadyExists"));
        store.update("configmaps", "ns", "a", |o| Ok(Some(o.clone()))).unwrap();
        assert_eq!(store.current_resource_version(), 1);
    }
}
