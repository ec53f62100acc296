//! Several hubs on one PostgreSQL state database, all of them active.
//!
//! The database is the source of truth; each replica holds a copy of it in memory (what pages and
//! the API read) and keeps the copy current by following the change feed, and decides nothing
//! that another replica could decide differently from its copy alone:
//! - a start or a stop is claimed by a compare-and-set on the server's row ([`crate::lifecycle`]);
//!   the replica that claimed it owns the transition, named in the row;
//! - each replica renews a lease `replica:{id}` every second; a server whose owner's lease ran
//!   out is taken over by the replica holding the `background` lease, which also runs the
//!   reconcile, the culler, the expiry sweeps and the exit polls, so they run once;
//! - spawn progress is written to the database by the owner and followed from there by the
//!   others, so any replica serves any user's progress stream.
//!
//! With SQLite there is one hub: it holds both leases and nothing else changes the file.

/// A name for this hub process, unique across restarts: the host name (a pod's name under
/// Kubernetes) and random bytes.
pub fn new_replica_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    let suffix = crate::tokens::hex(&crate::tokens::random_bytes::<4>());
    let host: String = host
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
        .take(40)
        .collect();
    if host.is_empty() {
        suffix
    } else {
        format!("{host}-{suffix}")
    }
}

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use ::postgres::fallible_iterator::FallibleIterator;

use crate::hub::Hub;
use crate::model::Phase;
use crate::store::StateStore;
use crate::store::postgres::CHANNEL;

/// How often a replica renews its leases and looks for orphaned servers.
pub const RENEW_EVERY: Duration = Duration::from_secs(1);
/// How long a lease outlives its last renewal: a dead replica's work is taken over within this
/// plus [`RENEW_EVERY`].
pub const LEASE_TTL: Duration = Duration::from_secs(3);
/// The lease of the replica that runs the background work.
pub const BACKGROUND_LEASE: &str = "background";

/// Whether this replica holds the background lease, and a wake-up for work that should start
/// the moment it does.
pub struct Leadership {
    held: AtomicBool,
    gained: tokio::sync::Notify,
}

impl Leadership {
    pub fn new(held: bool) -> Leadership {
        Leadership {
            held: AtomicBool::new(held),
            gained: tokio::sync::Notify::new(),
        }
    }

    pub fn held(&self) -> bool {
        self.held.load(Ordering::Acquire)
    }

    /// Records the lease's state; true if it was just gained. `wake`: whether work waiting for
    /// the lease starts now (a takeover) or at its next period (a hub that just started, and
    /// has set the proxy up already).
    fn set(&self, held: bool, wake: bool) -> bool {
        let was = self.held.swap(held, Ordering::AcqRel);
        if held && !was && wake {
            self.gained.notify_waiters();
        }
        held && !was
    }

    /// Resolves when this replica gains the lease (not if it holds it already).
    pub async fn gained(&self) {
        self.gained.notified().await;
    }
}

fn replica_lease(hub: &Hub) -> String {
    format!("replica:{}", hub.replica)
}

/// Renews this replica's leases every [`RENEW_EVERY`] and, while it holds the background lease,
/// takes over the servers whose owner died mid-start or mid-stop. `store` is a connection of its
/// own, so renewals do not queue behind a spawn storm's writes.
pub async fn keep_leases(hub: Arc<Hub>, store: Arc<dyn StateStore>) {
    let mut every = tokio::time::interval(RENEW_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    let mut first = true;
    let mut spawner_told = false;
    loop {
        every.tick().await;
        let (me, alive) = (hub.replica.clone(), replica_lease(&hub));
        let renewal = {
            let store = store.clone();
            tokio::task::spawn_blocking(move || -> Result<bool, crate::store::StoreError> {
                store.lease(&alive, &me, LEASE_TTL)?;
                store.lease(BACKGROUND_LEASE, &me, LEASE_TTL)
            })
            .await
        };
        let leader = match renewal {
            Ok(Ok(leader)) => {
                if failing {
                    tracing::info!("state database reachable again; leases renewed");
                }
                failing = false;
                leader
            }
            Ok(Err(e)) => {
                if !failing {
                    tracing::warn!("cannot renew this hub's leases: {e}");
                }
                failing = true;
                false
            }
            Err(_) => false,
        };
        hub.metrics.background_leader.set(if leader { 1.0 } else { 0.0 });
        let was = hub.leader.held();
        if was != leader || !spawner_told {
            hub.spawner.set_background(leader);
            spawner_told = true;
        }
        if hub.leader.set(leader, !std::mem::take(&mut first)) {
            tracing::info!("this hub ({}) now runs the background work", hub.replica);
        } else if was && !leader {
            tracing::warn!("this hub ({}) no longer runs the background work", hub.replica);
        }
        if leader {
            take_over_orphans(&hub).await;
        }
    }
}

/// At a clean stop: the spawns this replica runs are abandoned where they are (a server not
/// yet recorded is killed with its start; a recorded one is left to adopt) and the leases let go,
/// so another replica carries the spawns on and takes the background work at once, not after
/// the leases ran out. In that order: a spawn carried on elsewhere must not still run here.
pub fn hand_over(hub: &Hub) {
    let abandoned: Vec<_> = hub
        .spawn_tasks
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .drain()
        .collect();
    for ((user, server), task) in abandoned {
        task.abort();
        tracing::info!("{user}'s server {server:?}: start handed over to the other hubs");
    }
    release_leases(hub);
}

/// Lets go of this replica's leases.
fn release_leases(hub: &Hub) {
    hub.leader.set(false, false);
    let _ = hub.store.release(&replica_lease(hub), &hub.replica);
    let _ = hub.store.release(BACKGROUND_LEASE, &hub.replica);
}

/// Servers whose start or stop was left by a replica that stopped renewing its lease: each is
/// claimed (compare-and-set on its owner) and carried on here.
async fn take_over_orphans(hub: &Arc<Hub>) {
    let orphans = {
        let store = hub.store.clone();
        let me = hub.replica.clone();
        match tokio::task::spawn_blocking(move || store.orphans(&me)).await {
            Ok(Ok(orphans)) => orphans,
            Ok(Err(e)) => {
                tracing::warn!("looking for orphaned servers: {e}");
                return;
            }
            Err(_) => return,
        }
    };
    for row in orphans {
        let (user, server) = (row.user.clone(), row.name.clone());
        let dead = row.owner.clone().unwrap_or_else(|| "(none)".to_owned());
        // The follower's copy of the dead replica's progress becomes this replica's own log.
        let sink = hub.take_mirror(&user, &server);
        let me = hub.replica.clone();
        let claimed = hub.claim_server(&user, &server, &[row.phase], row.owner.as_deref(), |s| {
            s.record.owner = Some(me);
        });
        match claimed {
            Ok(crate::hub::Claimed::Done(())) => {}
            Ok(crate::hub::Claimed::Refused(_)) => continue,
            Err(e) => {
                tracing::warn!("taking over {user}'s server: {e}");
                continue;
            }
        }
        tracing::warn!(
            "{user}'s server {server:?} was {} by hub {dead}, which stopped answering: this hub carries it on",
            if row.phase == Phase::Pending {
                "starting"
            } else {
                "stopping"
            }
        );
        match row.phase {
            Phase::Pending => crate::lifecycle::resume_spawn(hub, &user, &server, sink),
            _ => {
                tokio::spawn(crate::lifecycle::finish_stop(hub.clone(), user, server));
            }
        }
    }
}

/// One change announced on the feed: `kind`, the replica that made it, then its keys.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Change {
    User(String),
    Session(String),
    Progress(String, String),
}

fn parse(payload: &str, me: &str) -> Option<Change> {
    let mut parts = payload.split('\n');
    let kind = parts.next()?;
    let by = parts.next()?;
    if by == me {
        return None;
    }
    let first = parts.next()?.to_owned();
    match kind {
        "user" => Some(Change::User(first)),
        "session" => Some(Change::Session(first)),
        "progress" => Some(Change::Progress(first, parts.next()?.to_owned())),
        _ => None,
    }
}

/// How long the follower waits for news before checking whether its hub is still there.
const FEED_WAKE: Duration = Duration::from_millis(500);

/// Follows the other replicas' changes (`LISTEN edgehub_state`) on a thread and a connection of
/// its own, until the hub is gone or `stop` is set. After every (re)connection everything is
/// read again, since changes made meanwhile were announced to no one.
pub fn follow_changes(
    hub: Weak<Hub>,
    store: Arc<dyn StateStore>,
    endpoint: crate::store::postgres::Endpoint,
    stop: Arc<AtomicBool>,
) {
    let mut failing = false;
    while !stop.load(Ordering::Acquire) {
        let Some(me) = hub.upgrade().map(|h| h.replica.clone()) else {
            return;
        };
        let mut client = match endpoint.connect() {
            Ok(c) => c,
            Err(e) => {
                if !failing {
                    tracing::warn!(
                        "cannot follow the other hubs' changes: {}; retrying every second",
                        crate::store::postgres::describe(&e)
                    );
                }
                failing = true;
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        if let Err(e) = client.batch_execute(&format!("LISTEN {CHANNEL}")) {
            tracing::warn!("LISTEN {CHANNEL}: {}", crate::store::postgres::describe(&e));
            std::thread::sleep(Duration::from_secs(1));
            continue;
        }
        {
            let Some(hub) = hub.upgrade() else { return };
            if let Err(e) = hub.refresh_all(store.as_ref()) {
                tracing::warn!("reading the state database again: {e}");
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        }
        if failing {
            tracing::info!("following the other hubs' changes again");
        }
        failing = false;
        while !stop.load(Ordering::Acquire) {
            let mut changes = BTreeSet::new();
            let first = client.notifications().timeout_iter(FEED_WAKE).next();
            match first {
                Ok(Some(n)) => changes.extend(parse(n.payload(), &me)),
                Ok(None) if client.is_closed() => break,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(
                        "the change feed broke: {}; reconnecting",
                        crate::store::postgres::describe(&e)
                    );
                    break;
                }
            }
            // Whatever else has arrived, at once: a storm's hundred changes to one user are
            // read as one.
            let mut notes = client.notifications();
            let mut more = notes.iter();
            while let Ok(Some(n)) = more.next() {
                changes.extend(parse(n.payload(), &me));
            }
            let Some(hub) = hub.upgrade() else { return };
            apply(&hub, store.as_ref(), changes);
        }
    }
}

fn apply(hub: &Hub, store: &dyn StateStore, changes: BTreeSet<Change>) {
    for change in changes {
        match change {
            Change::User(name) => {
                if let Err(e) = hub.refresh_user(&name, store) {
                    tracing::warn!("reading {name} from the state database: {e}");
                }
            }
            Change::Session(jti) => {
                if let Err(e) = hub.sessions.refresh(&jti) {
                    tracing::warn!("reading a login session from the state database: {e}");
                }
            }
            Change::Progress(user, server) => hub.progress_published(&user, &server),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_feed_skips_this_replicas_own_changes_and_reads_the_others() {
        assert_eq!(parse("user\nb\nalice", "a"), Some(Change::User("alice".into())));
        assert_eq!(parse("user\na\nalice", "a"), None);
        assert_eq!(
            parse("progress\nb\nalice\nlab", "a"),
            Some(Change::Progress("alice".into(), "lab".into()))
        );
        assert_eq!(
            parse("progress\nb\nalice\n", "a"),
            Some(Change::Progress("alice".into(), String::new()))
        );
        assert_eq!(parse("session\n\nj1", "a"), Some(Change::Session("j1".into())));
        assert_eq!(parse("what\nb\nx", "a"), None);
        assert_eq!(parse("", "a"), None);
    }

    #[test]
    fn replica_ids_differ_between_processes_of_one_host() {
        assert_ne!(new_replica_id(), new_replica_id());
    }
}
