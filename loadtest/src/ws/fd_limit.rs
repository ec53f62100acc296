//! Raising this process's open-file limit: 10,000 WebSockets need 10,000 descriptors, and the
//! soft limit is often 1024 while the hard limit allows far more. An unprivileged process may
//! raise its soft limit up to the hard limit, never beyond.

/// Sets the soft `RLIMIT_NOFILE` to the hard limit (capped at 1,048,576, Linux's default
/// `fs.nr_open`, when the hard limit is unlimited). Returns the soft limit now in force.
pub fn raise_open_file_limit() -> std::io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass and touches nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let want = if limit.rlim_max == libc::RLIM_INFINITY {
        1 << 20
    } else {
        limit.rlim_max
    };
    if limit.rlim_cur == libc::RLIM_INFINITY || limit.rlim_cur >= want {
        return Ok(limit.rlim_cur);
    }
    let raised = libc::rlimit {
        rlim_cur: want,
        rlim_max: limit.rlim_max,
    };
    // SAFETY: setrlimit reads the struct we pass; a refusal leaves the limit unchanged.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(want)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_soft_limit_reaches_the_hard_limit() {
        let now = super::raise_open_file_limit().unwrap();
        assert!(now >= 1024, "{now}");
        assert_eq!(super::raise_open_file_limit().unwrap(), now, "idempotent");
    }
}
