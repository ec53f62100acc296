//! A watch-backed cache of one kind of object (pods, events): kube-runtime's `watcher` feeding a
//! reflector `Store`, with a change signal for waiters and a watchdog.
//!
//! Invariants:
//! - Reads never reach the API server: everything is answered from the store, which the watch
//!   keeps current (list once, then watch; relist only when the watch says it must, or when the
//!   watchdog restarts it).
//! - A relist replaces the store atomically (the reflector buffers `InitApply` until `InitDone`),
//!   so readers see the old state or the new one.
//! - Waiters are woken on every change (a generation counter in a `tokio::sync::watch`), so no one
//!   polls. Waiters interested in single objects (a spawn in its pod's events) follow
//!   [`Cache::applied`] instead of rescanning the store on every change: the cost per change is
//!   then one look per waiter, not a scan of everything.
//! - Watchdog: a watch whose client received nothing for `stale` (no event, no bookmark, no
//!   response: see [`crate::liveness`]) is dropped and started again (a relist, served from the
//!   API server's cache). A frozen cache is never handed out for longer than `stale`; a quiet
//!   one, whose bookmarks still arrive, is left alone.

use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::{Mutex, Notify, broadcast, watch};

use crate::liveness::Liveness;

/// The cache of one kind of object. Cheap to clone.
#[derive(Clone)]
pub struct Cache<K: Resource<DynamicType = ()> + Clone + 'static> {
    store: Store<K>,
    generation: watch::Receiver<u64>,
    shared: Arc<Shared>,
    applied: broadcast::Sender<Applied<K>>,
    _task: Arc<TaskGuard>,
}

/// What [`Cache::applied`] carries: an object added or changed, or word that the cache was
/// relisted (objects may have changed without an `Object` each: look at the store again).
#[derive(Debug, Clone)]
pub enum Applied<K> {
    Object(Arc<K>),
    Relisted,
}

/// How many changes a slow follower of [`Cache::applied`] may fall behind before it is told to
/// look at the store again.
const APPLIED_BACKLOG: usize = 4096;

/// Ends the watch task when the last clone of the cache goes.
struct TaskGuard(tokio::task::JoinHandle<()>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct Shared {
    what: &'static str,
    /// When the watch's client last received something (items from the watcher count too).
    liveness: Arc<Liveness>,
    /// Watch (re)starts, the first included.
    starts: AtomicU64,
    /// Asks the task to drop its watch and start again.
    restart: Notify,
    last_error: Mutex<Option<String>>,
}

impl<K> Cache<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    /// Starts watching `api` with `config`; the cache fills in the background (see
    /// [`Cache::synced`]). `liveness` is touched by `api`'s client (a [`crate::liveness`] layer),
    /// or only by the watch's items when the client has no such layer.
    pub fn start(
        what: &'static str,
        api: Api<K>,
        config: watcher::Config,
        stale: Duration,
        liveness: Arc<Liveness>,
    ) -> Cache<K> {
        let (store, writer) = reflector::store::<K>();
        let (tx, generation) = watch::channel(0u64);
        let shared = Arc::new(Shared {
            what,
            liveness,
            starts: AtomicU64::new(0),
            restart: Notify::new(),
            last_error: Mutex::new(None),
        });
        let (applied, _) = broadcast::channel(APPLIED_BACKLOG);
        let task = tokio::spawn(run(shared.clone(), api, config, stale, writer, tx, applied.clone()));
        Cache {
            store,
            generation,
            shared,
            applied,
            _task: Arc::new(TaskGuard(task)),
        }
    }

    /// Waits for the first complete list, at most `limit`.
    pub async fn synced(&self, limit: Duration) -> Result<(), String> {
        match tokio::time::timeout(limit, self.store.wait_until_ready()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(format!("the {} watch stopped", self.shared.what)),
            Err(_) => {
                let last = self.shared.last_error.lock().await.clone();
                Err(format!(
                    "the {} watch did not list within {} s{}",
                    self.shared.what,
                    limit.as_secs(),
                    last.map(|e| format!(": {e}")).unwrap_or_default()
                ))
            }
        }
    }

    pub fn store(&self) -> &Store<K> {
        &self.store
    }

    /// Every object added or changed from now on (and relists). A receiver that lags gets
    /// `RecvError::Lagged` and should look at the store again.
    pub fn applied(&self) -> broadcast::Receiver<Applied<K>> {
        self.applied.subscribe()
    }

    /// A receiver that changes on every change of the cache.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.generation.clone()
    }

    /// Asks for the watch to be started again (a relist), e.g. when an object we created does
    /// not show up.
    pub fn restart(&self) {
        self.shared.restart.notify_one();
    }

    /// How many times the watch was started (1 after start-up; more after watchdog restarts).
    pub fn watch_starts(&self) -> u64 {
        self.shared.starts.load(Ordering::Relaxed)
    }

    /// Time since the watch last delivered something (an event or a bookmark).
    pub fn age(&self) -> Duration {
        self.shared.liveness.quiet_for()
    }
}

async fn run<K>(
    s: Arc<Shared>,
    api: Api<K>,
    config: watcher::Config,
    stale: Duration,
    mut writer: reflector::store::Writer<K>,
    tx: watch::Sender<u64>,
    applied: broadcast::Sender<Applied<K>>,
) where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    loop {
        s.starts.fetch_add(1, Ordering::Relaxed);
        s.liveness.touch();
        let mut stream = watcher::watcher(api.clone(), config.clone()).default_backoff().boxed();
        loop {
            // Bookmarks touch the liveness without an item, so the time left is re-read on
            // every turn, and a timer that fires only restarts a watch still quiet.
            let left = stale.saturating_sub(s.liveness.quiet_for());
            tokio::select! {
                item = stream.next() => match item {
                    Some(Ok(event)) => {
                        s.liveness.touch();
                        writer.apply_watcher_event(&event);
                        // Init and InitApply change nothing readers see (the relist is buffered).
                        if matches!(event, Event::Apply(_) | Event::Delete(_) | Event::InitDone) {
                            tx.send_modify(|g| *g += 1);
                        }
                        // Only cloned for followers; a send without receivers is an error to ignore.
                        if applied.receiver_count() > 0 {
                            match &event {
                                Event::Apply(obj) => drop(applied.send(Applied::Object(Arc::new(obj.clone())))),
                                Event::InitDone => drop(applied.send(Applied::Relisted)),
                                _ => {}
                            }
                        }
                    }
                    Some(Err(e)) => {
                        tracing::debug!("{} watch: {e}", s.what);
                        *s.last_error.lock().await = Some(e.to_string());
                    }
                    None => break,
                },
                _ = tokio::time::sleep(left) => {
                    if s.liveness.quiet_for() >= stale {
                        tracing::warn!("the {} watch received nothing for {} s; restarting it", s.what, stale.as_secs());
                        break;
                    }
                }
                _ = s.restart.notified() => {
                    tracing::info!("restarting the {} watch on request", s.what);
                    break;
                }
            }
        }
    }
}

/// The watcher configuration of the pod cache: our pods only, lists served from the API server's
/// cache. Each watch call lasts at most [`call_timeout`]; kube-runtime then resumes it from the
/// last resourceVersion (no relist).
pub fn pod_watch(stale: Duration) -> watcher::Config {
    watcher::Config::default()
        .labels(crate::render::MANAGED_SELECTOR)
        .any_semantic()
        .timeout(call_timeout(stale))
}

/// The watcher configuration of the event cache: events about pods.
pub fn event_watch(stale: Duration) -> watcher::Config {
    watcher::Config::default()
        .fields("involvedObject.kind=Pod")
        .any_semantic()
        .timeout(call_timeout(stale))
}

/// Twice the watchdog's limit, so the watchdog, not the end of the call, notices a silent
/// stream; at most kube-runtime's default of 290 s.
fn call_timeout(stale: Duration) -> u32 {
    u32::try_from(stale.as_secs().saturating_mul(2).clamp(1, 290)).unwrap_or(290)
}
