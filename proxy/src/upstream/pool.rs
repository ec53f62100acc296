//! Idle upstream connections, per worker thread (a `thread_local!`): checking a connection out
//! or in takes no lock and touches no shared cache line. A connection checked out on one thread
//! and released on another simply joins the other thread's pool. Idle connections are bounded
//! per upstream and per thread, and expire after an idle timeout.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::connection::Connection;

/// Connections are boxed once, when opened: taken out of the pool, carried by a response body
/// and put back for every request, they are moved as a pointer instead of 136 bytes.
struct IdleConnection {
    conn: Box<Connection>,
    since: Instant,
}

#[derive(Default)]
struct IdlePool {
    // Keyed by targets the admin API set, not by client input, so a fixed-seed fast hash is safe;
    // SipHash showed up in profiles at two lookups per request.
    by_key: HashMap<Arc<str>, Vec<IdleConnection>, foldhash::fast::FixedState>,
    last_sweep: Option<Instant>,
}

impl IdlePool {
    /// Drops connections expired at `now`, at most once a second.
    fn sweep(&mut self, now: Instant, idle_timeout: Duration) {
        if self
            .last_sweep
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            return;
        }
        self.last_sweep = Some(now);
        self.by_key.retain(|_, conns| {
            conns.retain(|c| now.duration_since(c.since) < idle_timeout);
            !conns.is_empty()
        });
    }
}

thread_local! {
    static IDLE: RefCell<IdlePool> = RefCell::new(IdlePool::default());
}

/// The most recently used live connection to `key`, if any. Connections the upstream closed
/// while they sat idle are dropped on the way.
pub fn take(key: &str, idle_timeout: Duration) -> Option<Box<Connection>> {
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        let conns = idle.by_key.get_mut(key)?;
        // Most recently used first: it is the least likely to have been closed by the upstream.
        while let Some(mut c) = conns.pop() {
            if c.since.elapsed() < idle_timeout && c.conn.is_reusable_idle() {
                return Some(c.conn);
            }
        }
        None
    })
}

/// Returns a connection whose last response was read to its end.
pub fn put(conn: Box<Connection>) {
    let limits = conn.limits;
    // `try_with`: a body dropped while the thread's locals are torn down just closes.
    let _ = IDLE.try_with(|idle| {
        let mut idle = idle.borrow_mut();
        let since = Instant::now();
        idle.sweep(since, limits.idle_timeout);
        match idle.by_key.get_mut(&*conn.key) {
            Some(slot) if slot.len() < limits.idle_per_host => slot.push(IdleConnection { conn, since }),
            Some(_) => {}
            None if limits.idle_per_host > 0 => {
                let key = conn.key.clone();
                idle.by_key.insert(key, vec![IdleConnection { conn, since }]);
            }
            None => {}
        }
    });
}
