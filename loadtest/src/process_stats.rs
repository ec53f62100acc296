//! CPU time and memory of a process, read from `/proc` (Linux).
//!
//! The generator reports its own CPU use so that a reader can tell when the client, not the
//! server, was the bottleneck; tests read a child's RSS to check that memory stays flat.

use std::io;
use std::time::Duration;

/// `/proc/<pid>/stat` counts CPU time in clock ticks of `USER_HZ`, which Linux fixes at 100 for
/// user space on every architecture, hence a 10 ms resolution.
const USER_HZ: u64 = 100;

/// User plus system CPU time consumed so far by process `pid` ("self" for this one).
pub fn cpu_time(pid: &str) -> io::Result<Duration> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_cpu_ticks(&text)
        .map(|ticks| Duration::from_millis(ticks * 1000 / USER_HZ))
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unexpected /proc/{pid}/stat format"),
            )
        })
}

/// utime + stime (fields 14 and 15) from a `/proc/<pid>/stat` line. The command name (field 2)
/// may contain spaces and parentheses, so fields are counted from its closing parenthesis.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_comm.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Time the calling thread has spent on a CPU and runnable but waiting for one, from
/// `/proc/thread-self/schedstat` (nanoseconds). `None` where the kernel does not keep it.
pub fn thread_sched() -> Option<ThreadSched> {
    parse_schedstat(&std::fs::read_to_string("/proc/thread-self/schedstat").ok()?)
}

/// The first two fields of a `schedstat` line: time on a CPU and time waiting in a run queue.
pub fn parse_schedstat(text: &str) -> Option<ThreadSched> {
    let mut fields = text.split_whitespace();
    let on_cpu_ns = fields.next()?.parse().ok()?;
    let waiting_ns = fields.next()?.parse().ok()?;
    Some(ThreadSched { on_cpu_ns, waiting_ns })
}

/// What a worker thread did over its life, for the generator's verdict on itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThreadLife {
    /// The kernel's scheduling times (`None` where it does not keep them).
    pub sched: Option<ThreadSched>,
    /// How long the thread's runtime was not parked waiting for sockets or timers.
    pub unparked: Duration,
    pub lived: Duration,
}

impl ThreadLife {
    /// The share of its life the thread was runnable, and the part of that spent waiting for a
    /// CPU. Each source alone undercounts: the kernel leaves the softirq time of loopback TCP
    /// (and a hypervisor's steal) out of a task's CPU time, and the runtime counts a thread woken
    /// by a socket as parked until it gets a CPU. Either is a floor, so the larger is taken.
    fn shares(&self) -> Option<(f64, Option<f64>)> {
        let lived = self.lived.as_nanos() as f64;
        if lived == 0.0 {
            return None;
        }
        let kernel = self.sched.map(|s| (s.on_cpu_ns + s.waiting_ns) as f64 / lived);
        let runtime = self.unparked.as_nanos() as f64 / lived;
        let runnable = kernel.map_or(runtime, |k| k.max(runtime)).min(1.0);
        let waiting = self.sched.map(|s| (s.waiting_ns as f64 / lived).min(runnable));
        Some((runnable, waiting))
    }
}

/// A thread's scheduling times, or their growth over an interval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ThreadSched {
    pub on_cpu_ns: u64,
    /// Runnable but not running: another thread or process had the CPU.
    pub waiting_ns: u64,
}

impl ThreadSched {
    pub fn since(self, earlier: ThreadSched) -> ThreadSched {
        ThreadSched {
            on_cpu_ns: self.on_cpu_ns.saturating_sub(earlier.on_cpu_ns),
            waiting_ns: self.waiting_ns.saturating_sub(earlier.waiting_ns),
        }
    }
}

/// Resident set size and its peak, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    pub rss_bytes: u64,
    pub peak_rss_bytes: u64,
}

/// Memory of process `pid` ("self" for this one).
pub fn memory(pid: &str) -> io::Result<Memory> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_memory(&text)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("no VmRSS in /proc/{pid}/status")))
}

/// `VmRSS` and `VmHWM` from `/proc/<pid>/status` (values in kB).
pub fn parse_memory(status: &str) -> Option<Memory> {
    let kb = |key: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(key))?;
        line[key.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse::<u64>()
            .ok()
    };
    let rss = kb("VmRSS:")?;
    Some(Memory {
        rss_bytes: rss * 1024,
        peak_rss_bytes: kb("VmHWM:").unwrap_or(rss) * 1024,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_survive_odd_command_names() {
        let stat = "4242 (my (weird) prog) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 30 0 0 20 0 3 0 1 2 3";
        assert_eq!(parse_cpu_ticks(stat), Some(280));
        assert_eq!(parse_cpu_ticks("garbage"), None);
    }

    #[test]
    fn memory_fields_are_read_in_kib() {
        let status = "Name:\tedgeload\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(
            parse_memory(status),
            Some(Memory {
                rss_bytes: 10 << 20,
                peak_rss_bytes: 20 << 20
            })
        );
        assert_eq!(parse_memory("Name: x\n"), None);
    }

    #[test]
    fn schedstat_gives_cpu_and_run_queue_time() {
        assert_eq!(
            parse_schedstat("1200 300 7\n"),
            Some(ThreadSched {
                on_cpu_ns: 1200,
                waiting_ns: 300
            })
        );
        assert_eq!(parse_schedstat("x"), None);
    }

    fn life(sched: Option<(u64, u64)>, unparked_ms: u64) -> ThreadLife {
        ThreadLife {
            sched: sched.map(|(on_cpu_ms, waiting_ms)| ThreadSched {
                on_cpu_ns: on_cpu_ms * 1_000_000,
                waiting_ns: waiting_ms * 1_000_000,
            }),
            unparked: Duration::from_millis(unparked_ms),
            lived: Duration::from_millis(1000),
        }
    }

    #[test]
    fn runnable_time_is_the_larger_of_the_kernels_and_the_runtimes_figures() {
        let of = |lives: &[ThreadLife]| {
            let g = CpuMeter::start().finish(lives.len()).with_worker_lives(lives);
            let round = |x: Option<f64>| x.map(|x| (x * 1e6).round() / 1e6);
            (round(g.runnable_fraction), round(g.cpu_wait_fraction))
        };
        // Loopback softirq time is missing from the kernel's figure: the runtime never parked.
        assert_eq!(of(&[life(Some((880, 20)), 990)]), (Some(0.99), Some(0.02)));
        // Woken by its sockets, the thread waited for a CPU the runtime counts as parked.
        assert_eq!(of(&[life(Some((500, 400)), 600)]), (Some(0.9), Some(0.4)));
        // Without schedstat the runtime's figure stands alone, and nothing is said of waits.
        assert_eq!(of(&[life(None, 950)]), (Some(0.95), None));
        // Two threads: means; one without schedstat leaves the waits unknown.
        assert_eq!(
            of(&[life(Some((400, 0)), 200), life(Some((800, 0)), 0)]),
            (Some(0.6), Some(0.0))
        );
        assert_eq!(of(&[life(Some((400, 100)), 0), life(None, 800)]), (Some(0.65), None));
    }

    #[test]
    fn this_process_can_be_measured() {
        assert!(memory("self").unwrap().rss_bytes > 0);
        cpu_time("self").unwrap();
    }
}

/// The generator's own CPU use over a run.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratorUsage {
    /// User + system CPU time of the whole process, in seconds.
    pub cpu_seconds: f64,
    pub wall_seconds: f64,
    /// Worker threads (the cores the load can use at most).
    pub threads: usize,
    /// CPUs this process may run on.
    pub cpus_usable: usize,
    /// `cpu_seconds / wall_seconds / min(threads, cpus_usable)`: 1.0 means every core the
    /// generator could use was busy.
    pub busy_fraction: f64,
    pub peak_rss_bytes: u64,
    /// Over the worker threads, the mean share of their lifetime they were runnable: on a CPU or
    /// waiting for one. Near 1.0 the workers never waited for the target: they had more work
    /// than CPU, whether their own CPU use was high or other processes took the cores.
    /// `None` without `/proc/thread-self/schedstat`.
    pub runnable_fraction: Option<f64>,
    /// The part of `runnable_fraction` spent waiting for a CPU another thread or process had.
    pub cpu_wait_fraction: Option<f64>,
}

/// Above this busy fraction the generator may be what limits the measured throughput.
pub const BUSY_WARNING: f64 = 0.70;

impl GeneratorUsage {
    /// A warning when the generator's cores were busy enough to be the bottleneck.
    pub fn warning(&self) -> Option<String> {
        (self.busy_fraction > BUSY_WARNING).then(|| {
            format!(
                "the load generator used {:.0}% of the {} core(s) it can use (above {:.0}%): it may be the \
                 bottleneck; add --threads, or run it on other cores than the server",
                self.busy_fraction * 100.0,
                self.threads.min(self.cpus_usable),
                BUSY_WARNING * 100.0
            )
        })
    }
}

/// Measures this process's CPU time from `start` to `finish`.
pub struct CpuMeter {
    cpu: Option<Duration>,
    wall: std::time::Instant,
}

impl CpuMeter {
    pub fn start() -> CpuMeter {
        CpuMeter {
            cpu: cpu_time("self").ok(),
            wall: std::time::Instant::now(),
        }
    }

    pub fn finish(self, threads: usize) -> GeneratorUsage {
        let wall_seconds = self.wall.elapsed().as_secs_f64();
        let cpu_seconds = match (self.cpu, cpu_time("self").ok()) {
            (Some(a), Some(b)) => b.saturating_sub(a).as_secs_f64(),
            _ => 0.0,
        };
        let cpus_usable = std::thread::available_parallelism().map_or(1, |n| n.get());
        let cores = threads.min(cpus_usable).max(1) as f64;
        GeneratorUsage {
            cpu_seconds,
            wall_seconds,
            threads,
            cpus_usable,
            busy_fraction: if wall_seconds > 0.0 {
                cpu_seconds / wall_seconds / cores
            } else {
                0.0
            },
            peak_rss_bytes: memory("self").map_or(0, |m| m.peak_rss_bytes),
            runnable_fraction: None,
            cpu_wait_fraction: None,
        }
    }
}

impl GeneratorUsage {
    /// Adds what the worker threads did over their lives: the mean of their runnable shares, and
    /// of their waits for a CPU when every thread has the kernel's figures.
    pub fn with_worker_lives(mut self, workers: &[ThreadLife]) -> GeneratorUsage {
        let shares: Vec<(f64, Option<f64>)> = workers.iter().filter_map(ThreadLife::shares).collect();
        if shares.is_empty() || shares.len() != workers.len() {
            return self;
        }
        let n = shares.len() as f64;
        self.runnable_fraction = Some(shares.iter().map(|s| s.0).sum::<f64>() / n);
        self.cpu_wait_fraction = shares.iter().map(|s| s.1).sum::<Option<f64>>().map(|w| w / n);
        self
    }
}
