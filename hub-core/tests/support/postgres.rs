//! A real PostgreSQL server (Debian's `postgresql` package) for the state-store tests: a fresh
//! cluster in its own temp directory, on a free loopback port, run as an unprivileged user when
//! the tests run as root (the server refuses root). The test command (`scripts/test.sh`)
//! installs the package; a missing one fails the test loudly.
//!
//! The server dies with the test process (`PR_SET_PDEATHSIG`, from a thread that lives as long
//! as the process), so a test killed by a timeout leaves no server behind.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub struct Postgres {
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
    child: Mutex<Option<Child>>,
    /// The unprivileged user the server runs as, when the tests run as root.
    run_as: Option<(u32, u32)>,
    /// While killed: the port, held so no other test's server takes it before `start_again`.
    held: Mutex<Option<PortHold>>,
    /// Settings given to the server at each start (`-c name=value`).
    settings: Vec<String>,
}

/// A port kept while its server is down: each connection is closed at once, as a stopped
/// server's port refuses it, and no other process can bind the port meanwhile (another test's
/// server there would answer in its place).
struct PortHold {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl PortHold {
    fn take(port: u16) -> PortHold {
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("hold the killed server's port");
        listener.set_nonblocking(true).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((refused, _)) => drop(refused),
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        PortHold { stop, thread }
    }

    /// Lets the port go (the listener closes with the thread).
    fn release(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

/// Where Debian puts the server's programs (`/usr/lib/postgresql/15/bin`), newest version first.
fn bin_dir() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.flatten()
                .map(|e| e.path().join("bin"))
                .filter(|p| p.join("initdb").exists())
                .collect()
        })
        .unwrap_or_default();
    versions.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versions
        .pop()
        .expect("PostgreSQL not found in /usr/lib/postgresql: run the test command (scripts/test.sh), which installs Debian's postgresql")
}

/// The `postgres` system user's ids (made by the Debian package), or `nobody`'s.
fn unprivileged_ids() -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    for name in ["postgres", "nobody"] {
        for line in passwd.lines() {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() > 3
                && f[0] == name
                && let (Ok(uid), Ok(gid)) = (f[2].parse(), f[3].parse())
            {
                return (uid, gid);
            }
        }
    }
    panic!("no unprivileged user (postgres or nobody) to run PostgreSQL as");
}

/// Deletes the clusters (60 MiB each) that test processes which have ended left behind. nextest
/// runs every test in a process of its own, each starts its own cluster, and the shared one is a
/// static, never dropped: without this a PostgreSQL run of the suite leaves gigabytes in /tmp.
fn remove_clusters_of_ended_tests() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some((pid, rest)) = name
            .to_str()
            .and_then(|n| n.strip_prefix("edgehub-test-"))
            .and_then(|n| n.split_once('-'))
        else {
            continue;
        };
        let ended = pid
            .parse::<i64>()
            .is_ok_and(|pid| pid != i64::from(std::process::id()) && !super::pid_alive(pid));
        if ended && rest.starts_with("postgres-") {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn chown_tree(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown the PostgreSQL directory");
}

/// The password of `scrammer`, of the clusters [`Postgres::start_with_tls`] makes.
pub const SCRAM_PASSWORD: &str = "a-password-for-scram";

impl Postgres {
    /// A new cluster, started and accepting connections.
    pub fn start() -> Postgres {
        Postgres::start_with(|_| Vec::new())
    }

    /// A new cluster that takes TCP connections over TLS only, with `pki`'s certificate: a
    /// plain-text connection is refused by its `pg_hba.conf`. The database `certdb` (made here)
    /// also wants a client certificate from `pki`'s CA naming the user, and `scramdb` a password
    /// login (SCRAM) of its owner `scrammer`, whose password is [`SCRAM_PASSWORD`].
    pub fn start_with_tls(pki: &super::pki::Pki) -> Postgres {
        let pg = Postgres::start_with(|pg| {
            for (from, to) in [(&pki.cert, "server.crt"), (&pki.key, "server.key"), (&pki.ca, "ca.pem")] {
                let to = pg.data().join(to);
                std::fs::copy(from, &to).expect("copy the server's certificate");
                // The server refuses a key others can read.
                std::fs::set_permissions(&to, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
                if let Some((uid, gid)) = pg.run_as {
                    chown_tree(&to, uid, gid);
                }
            }
            let hba = "local all all trust\n\
                       hostssl certdb all 127.0.0.1/32 cert\n\
                       hostssl scramdb all 127.0.0.1/32 scram-sha-256\n\
                       hostssl all all 127.0.0.1/32 trust\n\
                       host all all 127.0.0.1/32 reject\n";
            std::fs::write(pg.data().join("pg_hba.conf"), hba).expect("write pg_hba.conf");
            [
                "ssl=on",
                "ssl_cert_file=server.crt",
                "ssl_key_file=server.key",
                "ssl_ca_file=ca.pem",
            ]
            .map(str::to_owned)
            .to_vec()
        });
        pg.psql("postgres", "CREATE DATABASE certdb").expect("create certdb");
        pg.psql(
            "postgres",
            &format!("CREATE ROLE scrammer LOGIN PASSWORD '{SCRAM_PASSWORD}'"),
        )
        .expect("create the password user");
        pg.psql("postgres", "CREATE DATABASE scramdb OWNER scrammer")
            .expect("create scramdb");
        pg
    }

    /// A new cluster; `prepare` runs after `initdb` and returns settings for the server.
    fn start_with(prepare: impl FnOnce(&Postgres) -> Vec<String>) -> Postgres {
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        remove_clusters_of_ended_tests();
        let dir = super::scratch_dir(&format!("postgres-{}", STARTED.fetch_add(1, Ordering::Relaxed)));
        // SAFETY: geteuid has no preconditions.
        let run_as = (unsafe { libc::geteuid() } == 0).then(unprivileged_ids);
        if let Some((uid, gid)) = run_as {
            // The scratch directory's parents must be reachable by that user too.
            let mut p = dir.as_path();
            while let Some(parent) = p.parent() {
                if parent == Path::new("/") || parent == Path::new("/tmp") {
                    break;
                }
                let _ = std::fs::set_permissions(parent, std::os::unix::fs::PermissionsExt::from_mode(0o755));
                p = parent;
            }
            chown_tree(&dir, uid, gid);
        }
        let pg = Postgres {
            port: 0,
            bin: bin_dir(),
            dir,
            child: Mutex::new(None),
            run_as,
            held: Mutex::new(None),
            settings: Vec::new(),
        };
        let status = pg
            .command("initdb")
            .args(["-D"])
            .arg(pg.data())
            .args(["-A", "trust", "-U", "edgehub", "-E", "UTF8", "--locale=C", "--no-sync"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .expect("run initdb");
        assert!(
            status.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&status.stderr)
        );
        let mut pg = pg;
        pg.settings = prepare(&pg);
        for _ in 0..5 {
            pg.port = super::free_port();
            if pg.spawn() {
                return pg;
            }
        }
        panic!("PostgreSQL did not start in {}", pg.dir.display());
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(self.bin.join(program));
        if let Some((uid, gid)) = self.run_as {
            std::os::unix::process::CommandExt::uid(&mut c, uid);
            std::os::unix::process::CommandExt::gid(&mut c, gid);
        }
        c
    }

    /// Starts the server on `self.port`; false if it could not bind it.
    fn spawn(&mut self) -> bool {
        let mut command = self.command("postgres");
        // Its own process group, so that `kill` takes its backends too, as a crash would.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        command
            .arg("-D")
            .arg(self.data())
            .args(["-p", &self.port.to_string(), "-c", "listen_addresses=127.0.0.1", "-k"])
            .arg(&self.dir)
            // fsync off: a killed server still has what it acknowledged (the kernel has it), only
            // a machine crash would lose it, and the tests do not crash machines.
            .args(["-c", "fsync=off", "-c", "max_connections=200"])
            .args(self.settings.iter().flat_map(|s| ["-c", s.as_str()]))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.join("server.log")).map_or(Stdio::null(), Stdio::from));
        let child =
            super::spawn_tied_to_test(command, libc::SIGQUIT).expect("PostgreSQL's postgres program did not start");
        *self.child.lock().unwrap() = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && self.psql("postgres", "SELECT 1").is_ok()
            {
                return true;
            }
            if let Some(Ok(Some(_))) = self.child.lock().unwrap().as_mut().map(Child::try_wait) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(30));
        }
        false
    }

    /// Runs one statement with `psql`, as the cluster's superuser.
    pub fn psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "edgehub",
                "-d",
                db,
            ])
            .args(["-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// A new, empty database and its URL.
    pub fn database(&self) -> String {
        static MADE: AtomicUsize = AtomicUsize::new(0);
        let name = format!("hub{}", MADE.fetch_add(1, Ordering::Relaxed));
        self.psql("postgres", &format!("CREATE DATABASE {name}"))
            .expect("create a test database");
        self.url(&name)
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgres://edgehub@127.0.0.1:{}/{db}", self.port)
    }

    /// Stops the server and its backends at once (SIGKILL to its group): every connection drops.
    pub fn kill(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            // Each backend calls setsid(), so it is not in the postmaster's group: kill them by
            // name, or one could still answer a query on a connection opened before (it exits
            // only when it notices the postmaster gone).
            let backends = children_of(child.id());
            // SAFETY: the group this server leads (`process_group(0)` at spawn), and its
            // children, read from /proc just above.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            for pid in &backends {
                unsafe { libc::kill(*pid, libc::SIGKILL) };
            }
            let _ = child.wait();
            let deadline = Instant::now() + Duration::from_secs(10);
            while backends.iter().any(|pid| alive(*pid)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            *self.held.lock().unwrap() = Some(PortHold::take(self.port));
        }
    }

    /// Starts it again on the same port after [`Postgres::kill`], with its data.
    pub fn start_again(&mut self) {
        if let Some(hold) = self.held.lock().unwrap().take() {
            hold.release();
        }
        let _ = std::fs::remove_file(self.data().join("postmaster.pid"));
        assert!(self.spawn(), "PostgreSQL did not start again");
    }
}

/// The processes whose parent is `pid` (from `/proc/*/stat`).
fn children_of(pid: u32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|child| {
            std::fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                // `pid (comm) state ppid …`: the name may hold spaces, so read after the last ')'.
                .and_then(|stat| stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse::<u32>().ok())
                == Some(pid)
        })
        .collect()
}

/// Whether `pid` still runs (a zombie, dead and not yet reaped, does not).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .is_some_and(|zombie| !zombie)
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            // SIGQUIT: immediate shutdown, the children go with it.
            // SAFETY: signalling a child this value owns.
            unsafe { libc::kill(child.id() as i32, libc::SIGQUIT) };
            let _ = child.wait();
        }
    }
}

/// One cluster per test process, made on first use, for tests that only need a database.
pub fn shared() -> &'static Postgres {
    static SHARED: OnceLock<Postgres> = OnceLock::new();
    SHARED.get_or_init(Postgres::start)
}
