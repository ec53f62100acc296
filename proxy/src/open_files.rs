//! The process's open-files limit. Each proxied connection holds two descriptors (the client's
//! and the upstream's), and the soft limit a shell or a systemd service starts with is often
//! 1024, while the hard limit allows far more (systemd's default is 1024:524288): left as it is,
//! a proxy would stop accepting at about 500 users. An unprivileged process may raise its soft
//! limit up to the hard limit, never beyond, which is what a server does at start (as Go's
//! runtime does for every program). Child processes (a hub's local notebook servers) inherit it.

use std::io;

/// Linux's default `fs.nr_open`: the most a soft limit may be when the hard one is unlimited.
const NR_OPEN_DEFAULT: u64 = 1 << 20;

/// Connections below which a limit too small for `--max-connections` is worth a warning.
pub const WARN_BELOW: usize = 4096;

/// The soft limit before and after [`raise_to_hard_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFiles {
    pub was: u64,
    pub now: u64,
}

/// Sets the soft `RLIMIT_NOFILE` to the hard limit.
pub fn raise_to_hard_limit() -> io::Result<OpenFiles> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct passed and touches nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let was = limit.rlim_cur;
    let want = match limit.rlim_max {
        libc::RLIM_INFINITY => NR_OPEN_DEFAULT,
        hard => hard,
    };
    if was == libc::RLIM_INFINITY || was >= want {
        return Ok(OpenFiles { was, now: was });
    }
    let raised = libc::rlimit {
        rlim_cur: want,
        rlim_max: limit.rlim_max,
    };
    // SAFETY: setrlimit reads the struct passed; a refusal leaves the limit as it was.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(OpenFiles { was, now: want })
}

/// Raises the limit and says what it means for `max_connections` public connections: a line at
/// start-up when it was raised, and a warning when even the hard limit leaves room for fewer,
/// and for fewer than [`WARN_BELOW`] (the default cap, 50,000, is above many hosts' limits, and
/// a warning at every start would be noise).
pub fn raise_and_report(max_connections: usize) {
    let limits = match raise_to_hard_limit() {
        Ok(limits) => limits,
        Err(e) => {
            tracing::warn!("cannot read or raise the open-files limit: {e}");
            return;
        }
    };
    if limits.now > limits.was {
        tracing::info!("open-files limit raised from {} to {}", limits.was, limits.now);
    }
    // Two descriptors a proxied connection, and some for listeners, logs and the runtime.
    let room = limits.now.saturating_sub(64) / 2;
    if room < max_connections.min(WARN_BELOW) as u64 {
        tracing::warn!(
            "the open-files limit ({}) leaves room for about {room} proxied connections, fewer than --max-connections ({max_connections}); raise the hard limit (ulimit -Hn, systemd's LimitNOFILE, a container's nofile ulimit) or lower --max-connections",
            limits.now
        );
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_soft_limit_reaches_the_hard_limit_and_stays() {
        let first = super::raise_to_hard_limit().unwrap();
        assert!(first.now >= first.was && first.now >= 1024, "{first:?}");
        let again = super::raise_to_hard_limit().unwrap();
        assert_eq!((again.was, again.now), (first.now, first.now), "idempotent");
    }
}
