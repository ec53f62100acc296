//! One lookup per key at a time: requests that need the same answer while it is being fetched
//! (a session from Redis, a token's owner from the hub) wait for the first one's lookup instead
//! of each starting their own.

use std::future::Future;
use std::hash::BuildHasher;
use std::sync::Arc;

use dashmap::DashMap;
use foldhash::fast::FixedState;
use tokio::sync::OnceCell;

/// The lookups in progress, by key. Keys may be client-chosen (an unverified token), so they are
/// hashed with a per-process random seed.
pub struct SharedLookups<V> {
    pending: DashMap<Box<str>, Arc<OnceCell<V>>, FixedState>,
}

impl<V: Clone> Default for SharedLookups<V> {
    fn default() -> Self {
        SharedLookups {
            pending: DashMap::with_hasher(unpredictable_hasher()),
        }
    }
}

impl<V: Clone> SharedLookups<V> {
    /// `lookup`'s answer for `key`, or the answer of the lookup for `key` already under way.
    pub async fn run<F, Fut>(&self, key: &str, lookup: F) -> V
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V>,
    {
        let cell = self.pending.entry(key.into()).or_default().clone();
        let answer = cell.get_or_init(lookup).await.clone();
        self.pending.remove_if(key, |_, c| Arc::ptr_eq(c, &cell));
        answer
    }
}

/// A fast hasher with a per-process random seed, for maps keyed by what clients send: the seed
/// keeps collisions unplannable.
pub fn unpredictable_hasher() -> FixedState {
    FixedState::with_seed(std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64))
}
