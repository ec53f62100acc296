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
    if host.is_empty() { suffix } else { format!("{host}-{suffix}") }
}
