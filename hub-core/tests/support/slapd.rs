//! A real OpenLDAP `slapd` for the LDAP sign-in tests, started by the test in a directory of its
//! own: its own `cn=config` (made with `slapadd -n0`, mdb database in that directory, the
//! core/cosine/nis/inetorgperson schemas), a small directory loaded with `slapadd -n1`, and TLS
//! from a throwaway CA. It listens on `ldap://` (StartTLS offered) and `ldaps://` on free
//! loopback ports, and is killed when dropped. The packaged service is not used; the test
//! command (`scripts/test.sh`) installs `slapd` and `ldap-utils`, and a missing binary fails the
//! test loudly.
//!
//! The directory, under `dc=example,dc=org`:
//! - `ou=people`: alice, bob and carol (inetOrgPerson + posixAccount), passwords
//!   [`password`]`(name)`;
//! - `ou=groups`: groupOfNames `staff` (alice, bob), `proj-42` (alice) and `Domain Users`
//!   (alice, carol; not a valid hub name), posixGroup `hpc` (memberUid bob);
//! - `cn=reader`: the service account ([`READER_DN`], [`READER_PASSWORD`]), which may read
//!   everything but passwords. Signed-in users may read entries too; anonymous binds see
//!   nothing, so a search-then-bind login needs the service account.
//!
//! It takes an unauthenticated bind (a DN with an empty password) as a successful anonymous one
//! (`olcAllows: bind_anon_dn`), as some directories do: a client that sent an empty password
//! would let anyone in, which is what the tests check the hub never does.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub use super::pki::Pki;

pub const SUFFIX: &str = "dc=example,dc=org";
pub const PEOPLE: &str = "ou=people,dc=example,dc=org";
pub const GROUPS: &str = "ou=groups,dc=example,dc=org";
pub const READER_DN: &str = "cn=reader,dc=example,dc=org";
pub const READER_PASSWORD: &str = "reader-secret";

/// Where Debian's slapd package puts its programs (not on every PATH).
const SLAPD: &str = "/usr/sbin/slapd";
const SLAPADD: &str = "/usr/sbin/slapadd";
const SLAPPASSWD: &str = "/usr/sbin/slappasswd";

/// A directory user's password.
pub fn password(user: &str) -> String {
    format!("{user}-correct-horse")
}

pub struct Slapd {
    pub port: u16,
    pub tls_port: u16,
    /// The CA that signed the server's certificate: the `ca_file` that makes TLS work.
    pub pki: Pki,
    dir: PathBuf,
    child: Option<Child>,
}

impl Slapd {
    pub fn start() -> Slapd {
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let dir = super::temp_dir(&format!("slapd-{}", STARTED.fetch_add(1, Ordering::Relaxed)));
        let pki = Pki::new(&dir.join("pki"));
        std::fs::create_dir_all(dir.join("slapd.d")).unwrap();
        std::fs::create_dir_all(dir.join("db")).unwrap();
        // Loaded offline, before the server starts: the configuration (database 0), then the
        // directory (database 1).
        let conf = path(&dir.join("slapd.d"));
        for (db, file, ldif) in [
            ("-n0", "config.ldif", config_ldif(&dir, &pki)),
            ("-n1", "data.ldif", data_ldif()),
        ] {
            std::fs::write(dir.join(file), ldif).unwrap();
            run(SLAPADD, &[db, "-F", &conf, "-l", &path(&dir.join(file))]);
        }
        let mut slapd = Slapd {
            port: 0,
            tls_port: 0,
            pki,
            dir,
            child: None,
        };
        // The ports are picked free and bound by slapd a moment later: another process may
        // take one in between, and slapd then exits; pick again.
        for _ in 0..5 {
            if slapd.spawn() {
                return slapd;
            }
        }
        panic!("slapd did not start; its log: {}", slapd.log());
    }

    /// `ldap://127.0.0.1:PORT` (plain, or StartTLS).
    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    /// `ldaps://127.0.0.1:PORT`.
    pub fn ldaps_url(&self) -> String {
        format!("ldaps://127.0.0.1:{}", self.tls_port)
    }

    /// Stops the server at once (SIGKILL), as a directory that went away.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("slapd.log")).unwrap_or_default()
    }

    /// Starts slapd on two fresh ports and waits until it answers; false if it exited.
    fn spawn(&mut self) -> bool {
        self.port = super::free_port();
        self.tls_port = super::free_port();
        let log = std::fs::File::create(self.dir.join("slapd.log")).unwrap();
        let mut command = Command::new(SLAPD);
        command
            .arg("-h")
            .arg(format!("{} {}", self.url(), self.ldaps_url()))
            .arg("-F")
            .arg(self.dir.join("slapd.d"))
            // In the foreground (no fork), logging nothing but start-up trouble.
            .args(["-d", "none"])
            .stdout(Stdio::null())
            .stderr(log);
        let mut child = super::spawn_tied_to_test(command, libc::SIGKILL)
            .expect("slapd not found: run the test command (scripts/test.sh), which installs slapd and ldap-utils");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return false;
            }
            let answered = Command::new("ldapsearch")
                .args(["-x", "-H", &self.url(), "-b", "", "-s", "base", "-o", "nettimeout=2"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("ldapsearch not found: run the test command (scripts/test.sh), which installs ldap-utils");
            if answered.success() {
                self.child = Some(child);
                return true;
            }
            assert!(
                Instant::now() < deadline,
                "slapd did not answer on {}; its log: {}",
                self.url(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

/// Runs a program to its end; its failure fails the test with what it printed.
fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}: run the test command (scripts/test.sh), which installs slapd"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The server's configuration: TLS from the test PKI, the mdb database in `dir`, and who may
/// read what (passwords: only binds; everything else: the service account and signed-in users).
fn config_ldif(dir: &Path, pki: &Pki) -> String {
    let d = path(dir);
    let (ca, cert, key) = (path(&pki.ca), path(&pki.cert), path(&pki.key));
    format!(
        "dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: {d}/slapd.pid
olcAllows: bind_anon_dn
olcTLSCACertificateFile: {ca}
olcTLSCertificateFile: {cert}
olcTLSCertificateKeyFile: {key}

dn: cn=module{{0}},cn=config
objectClass: olcModuleList
cn: module{{0}}
olcModulePath: /usr/lib/ldap
olcModuleLoad: back_mdb

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

include: file:///etc/ldap/schema/core.ldif
include: file:///etc/ldap/schema/cosine.ldif
include: file:///etc/ldap/schema/nis.ldif
include: file:///etc/ldap/schema/inetorgperson.ldif

dn: olcDatabase={{-1}}frontend,cn=config
objectClass: olcDatabaseConfig
objectClass: olcFrontendConfig
olcDatabase: {{-1}}frontend

dn: olcDatabase={{0}}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {{0}}config
olcAccess: {{0}}to * by * none

dn: olcDatabase={{1}}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {{1}}mdb
olcSuffix: {SUFFIX}
olcDbDirectory: {d}/db
olcDbMaxSize: 16777216
olcAccess: {{0}}to attrs=userPassword by anonymous auth by * none
olcAccess: {{1}}to * by dn.exact=\"{READER_DN}\" read by users read by * none
"
    )
}

fn data_ldif() -> String {
    let hash = |secret: &str| run(SLAPPASSWD, &["-s", secret]);
    let mut ldif = format!(
        "dn: {SUFFIX}
objectClass: dcObject
objectClass: organization
dc: example
o: Example

dn: {PEOPLE}
objectClass: organizationalUnit
ou: people

dn: {GROUPS}
objectClass: organizationalUnit
ou: groups

dn: {READER_DN}
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: reader
userPassword: {}
",
        hash(READER_PASSWORD)
    );
    for (n, user) in ["alice", "bob", "carol"].into_iter().enumerate() {
        ldif += &format!(
            "
dn: uid={user},{PEOPLE}
objectClass: inetOrgPerson
objectClass: posixAccount
uid: {user}
cn: {user}
sn: {user}
uidNumber: {uid}
gidNumber: {uid}
homeDirectory: /home/{user}
userPassword: {}
",
            hash(&password(user)),
            uid = 1001 + n,
        );
    }
    let dn = |user: &str| format!("uid={user},{PEOPLE}");
    for (group, members) in [
        ("staff", &["alice", "bob"][..]),
        ("proj-42", &["alice"][..]),
        ("Domain Users", &["alice", "carol"][..]),
    ] {
        ldif += &format!("\ndn: cn={group},{GROUPS}\nobjectClass: groupOfNames\ncn: {group}\n");
        for m in members {
            ldif += &format!("member: {}\n", dn(m));
        }
    }
    ldif += &format!("\ndn: cn=hpc,{GROUPS}\nobjectClass: posixGroup\ncn: hpc\ngidNumber: 2000\nmemberUid: bob\n");
    ldif
}
