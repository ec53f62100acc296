//! A real `redis-server` for the edge-auth tests, on a UNIX socket in its own directory (no TCP
//! port: `--port 0`), so it needs no free port and restarts on the same path with nothing able
//! to take it in between. The test command (`scripts/test.sh`) installs it; a missing binary
//! fails the test loudly.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub struct RedisServer {
    /// The socket redis-server listens on.
    pub socket: PathBuf,
    child: Option<Child>,
    dir: PathBuf,
    /// Every write is in the append-only file before Redis answers, so a killed server started
    /// again has all it acknowledged.
    persistent: bool,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        Self::start_with(false)
    }

    /// A server that keeps its data across [`RedisServer::kill`] and [`RedisServer::start_again`]
    /// (`appendonly yes`, `appendfsync always`).
    pub fn start_persistent() -> RedisServer {
        Self::start_with(true)
    }

    fn start_with(persistent: bool) -> RedisServer {
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let dir = super::scratch_dir(&format!("redis-{}", STARTED.fetch_add(1, Ordering::Relaxed)));
        let mut r = RedisServer {
            socket: dir.join("redis.sock"),
            child: None,
            dir,
            persistent,
        };
        r.spawn();
        r
    }

    /// Starts again on the same socket after [`RedisServer::kill`], with the data a persistent
    /// server had.
    pub fn start_again(&mut self) {
        self.spawn();
    }

    fn spawn(&mut self) {
        let persistence: &[&str] = match self.persistent {
            true => &["--appendonly", "yes", "--appendfsync", "always"],
            false => &["--appendonly", "no"],
        };
        let child = Command::new("redis-server")
            .args(["--port", "0", "--save", ""])
            .args(persistence)
            .arg("--unixsocket")
            .arg(&self.socket)
            .args(["--unixsocketperm", "700"])
            // Keyspace events for deletions and expiries: how revocations reach the proxy.
            .args(["--notify-keyspace-events", "Egx"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server not found: run the test command (scripts/test.sh), which installs it");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.cli(&["PING"]) != "PONG" {
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on {}",
                self.socket.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The URL the proxy and the hub take (`unix://` + the socket's path).
    pub fn url(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// Runs one command through `redis-cli` and returns its trimmed output.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .arg("-s")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("redis-cli not found: run the test command (scripts/test.sh), which installs it");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A copy of a persistent server's data as it is now (its append-only files), to put back
    /// later with [`RedisServer::roll_back_to`]. Call it between `kill` and `start_again`.
    pub fn copy_data(&self, name: &str) -> PathBuf {
        assert!(
            self.persistent && self.child.is_none(),
            "copy the data of a stopped persistent server"
        );
        let copy = self.dir.join(name);
        copy_dir(&self.dir.join("appendonlydir"), &copy);
        copy
    }

    /// Replaces the data of a stopped persistent server with an older copy: started again, it is
    /// the server as it was then (a restore from an old backup, a failover to a lagging replica).
    pub fn roll_back_to(&self, copy: &std::path::Path) {
        assert!(
            self.persistent && self.child.is_none(),
            "roll back a stopped persistent server"
        );
        let data = self.dir.join("appendonlydir");
        std::fs::remove_dir_all(&data).unwrap();
        copy_dir(copy, &data);
    }

    /// Freezes the server (SIGSTOP): connections stay open and nothing answers, as with a hung
    /// Redis or a network that drops packets. [`RedisServer::resume`] thaws it.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, name: &str) {
        let pid = self.child.as_ref().expect("redis-server running").id();
        let ok = Command::new("kill")
            .args([&format!("-{name}"), &pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{name} {pid}");
    }

    /// Starts again on the same socket (after `kill`), empty: whatever it had is lost.
    pub fn restart(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(self.dir.join("appendonlydir"));
        self.spawn();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}
