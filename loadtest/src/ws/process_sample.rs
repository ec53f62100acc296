//! Memory and open file descriptors of a process, sampled from `/proc` while tunnels are held
//! open, to turn "N tunnels" into "bytes and fds per tunnel".

use std::io;

use crate::process_stats;

/// One reading of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessSample {
    pub rss_bytes: u64,
    /// Entries of `/proc/<pid>/fd`: sockets, files, pipes, epoll instances, ….
    pub fds: u64,
}

/// Reads process `pid` ("self" for this one). Another user's process cannot be read.
pub fn sample(pid: &str) -> io::Result<ProcessSample> {
    let memory = process_stats::memory(pid)?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))?.count() as u64;
    Ok(ProcessSample {
        rss_bytes: memory.rss_bytes,
        fds,
    })
}

/// `(now - baseline) / units`, as a float; 0 when there are no units.
pub fn per_unit(now: u64, baseline: u64, units: u64) -> f64 {
    if units == 0 {
        0.0
    } else {
        (now as f64 - baseline as f64) / units as f64
    }
}

/// The median of `values` (the lower middle for an even count), or `None` when empty.
pub fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    Some(values[(values.len() - 1) / 2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_memory_and_fds() {
        let s = sample("self").unwrap();
        assert!(s.rss_bytes > 0 && s.fds >= 3, "{s:?}");
    }

    #[test]
    fn per_unit_and_median() {
        assert_eq!(per_unit(3000, 1000, 1000), 2.0);
        assert_eq!(per_unit(3000, 1000, 0), 0.0);
        assert_eq!(per_unit(500, 1000, 100), -5.0);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), Some(2.0));
        assert_eq!(median(&mut []), None);
    }
}
