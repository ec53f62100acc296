//! JupyterHub 6's own proxy test suite, `jupyterhub.tests.test_proxy` (shipped in the wheel),
//! with edgeproxy launched wherever the suite launches configurable-http-proxy: by its MockHub,
//! and by hand in `test_external_proxy`. Run with the default memory table and with the Redis
//! route store on (a real redis-server per run), each both ways JupyterHub's own CI runs it: path
//! routing, and host routing (`JUPYTERHUB_TEST_SUBDOMAIN_HOST` set: edgeproxy gets
//! `--host-routing` and the routespecs carry a host). The venv is made by
//! `scripts/ensure-pyenv.sh jupyterhub6`, which the test command runs; without it the test
//! fails, it never skips.

mod support;

use std::fs::File;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::redis::RedisServer;

/// One run of the suite takes about 25 s on a 2-core host; this bound only catches a hang.
const TIMEOUT: Duration = Duration::from_secs(300);

fn venv() -> PathBuf {
    match std::env::var_os("EDGEHUB_PYENV_JH6") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(std::env::var_os("HOME").expect("HOME or EDGEHUB_PYENV_JH6"))
            .join(".cache/edgehub/pyenv-jupyterhub6"),
    }
}

/// The subdomain host of a host-routing run: `localhost` (the users' hosts, `zoe.localhost`,
/// are only routespecs; nothing in the suite resolves them) with the public port the MockHub
/// binds its proxy to. JupyterHub must be given that port before it starts, so it is picked
/// here, as the suite itself picks every other port of the run (`jupyterhub.utils.random_port`);
/// a run in which one of them was taken in between is made again ([`run_test_proxy`]).
fn subdomain_host() -> String {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    format!("http://localhost:{port}")
}

/// How many times a run is made when a port it was given turned out taken.
const ATTEMPTS: usize = 3;

/// Runs the suite with the variables `env` gives added, and returns its summary line, asserting
/// it passed. Every port of a run is picked before anything binds it (by the suite, and by
/// [`subdomain_host`]), and another process may take one in between: a run that failed with
/// "Address already in use" is made again, with a fresh `env()`, up to [`ATTEMPTS`] times.
fn run_test_proxy(name: &str, env: impl Fn() -> Vec<(&'static str, String)>) -> String {
    for attempt in 1..=ATTEMPTS {
        let (status, text, workdir) = run_once(name, &env());
        println!("{text}");
        let Some(status) = status else {
            panic!("JupyterHub 6's test_proxy ({name}) did not finish within {TIMEOUT:?}; killed:\n{text}");
        };
        if !status.success() && text.contains("Address already in use") && attempt < ATTEMPTS {
            println!("({name}: a port it was given was taken meanwhile; running it again)");
            continue;
        }
        assert!(
            status.success(),
            "JupyterHub 6's test_proxy ({name}) failed with edgeproxy ({status}):\n{text}"
        );
        let summary = text
            .lines()
            .rev()
            .find(|l| l.contains(" passed"))
            .unwrap_or_default()
            .to_owned();
        assert!(!summary.contains("failed") && !summary.contains("error"), "{summary}");
        let _ = std::fs::remove_dir_all(&workdir);
        return summary;
    }
    unreachable!("the last attempt returns or fails")
}

/// One run of the suite: how pytest ended (`None`: killed after [`TIMEOUT`]), what it printed,
/// and its working directory (kept for a look when the run failed).
fn run_once(name: &str, env: &[(&str, String)]) -> (Option<std::process::ExitStatus>, String, PathBuf) {
    let venv = venv();
    let python = venv.join("bin/python");
    assert!(
        python.exists(),
        "the JupyterHub 6 test environment is missing at {}: run scripts/test.sh (or scripts/ensure-pyenv.sh jupyterhub6) first",
        venv.display()
    );
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/jupyterhub6");
    // The wrapper named configurable-http-proxy comes first on PATH.
    let path = format!(
        "{}:{}:{}",
        here.display(),
        venv.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let workdir = support::scratch_dir(name);
    // Output to a file (no pipe to drain while waiting); stdout and stderr interleaved as written.
    let log_path = workdir.join("pytest.log");
    let log = File::create(&log_path).unwrap();
    let mut child = Command::new(&python)
        .current_dir(&workdir)
        .args(["-m", "pytest", "-c"])
        .arg(here.join("pytest.ini"))
        .args(["--rootdir", "."])
        .args([
            "--pyargs",
            "jupyterhub.tests.test_proxy",
            "-q",
            "-rs",
            "-p",
            "no:cacheprovider",
        ])
        // Ends what the suite leaves running (tests/jupyterhub6/edgehub_reap.py says what).
        .args(["-p", "edgehub_reap"])
        .env("PYTHONPATH", &here)
        .env("PATH", path)
        .env("EDGEPROXY_BIN", env!("CARGO_BIN_EXE_edgeproxy"))
        .env_remove("CONFIGPROXY_AUTH_TOKEN")
        .env_remove("JUPYTERHUB_TEST_SUBDOMAIN_HOST")
        .env_remove("EDGEPROXY_STORAGE_BACKEND")
        .env_remove("EDGEPROXY_STORAGE_URL")
        .env_remove("EDGEPROXY_STORAGE_PREFIX")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        // Its own process group, to be killed whole: pytest, and the edgeproxy processes that
        // test_external_proxy starts itself (the hub starts its own in sessions of their own).
        .process_group(0)
        .spawn()
        .expect("run pytest");
    let wait_until = |child: &mut std::process::Child, deadline: Instant| loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let kill = |signal: &str, target: String| {
        let _ = Command::new("kill")
            .args([signal, "--", &target])
            .stderr(Stdio::null())
            .status();
    };
    let status = wait_until(&mut child, Instant::now() + TIMEOUT);
    if status.is_none() {
        // A hang: Ctrl-C first, so that pytest ends its session and edgehub_reap ends the
        // servers and proxies it started in sessions of their own.
        kill("-INT", child.id().to_string());
        wait_until(&mut child, Instant::now() + Duration::from_secs(20));
    }
    // Whatever is left of pytest's group (an edgeproxy that test_external_proxy started itself,
    // pytest after a Ctrl-C that did not end it) is killed, so nothing outlives the test.
    kill("-KILL", format!("-{}", child.id()));
    let _ = child.wait();
    let text = std::fs::read_to_string(&log_path).unwrap_or_default();
    (status, text, workdir)
}

/// The Redis store's variables, for a run on an empty store (one that failed before left its
/// routes behind).
fn redis_env(redis: &RedisServer) -> Vec<(&'static str, String)> {
    redis.cli(&["FLUSHALL"]);
    vec![
        ("EDGEPROXY_STORAGE_BACKEND", "redis".to_owned()),
        ("EDGEPROXY_STORAGE_URL", redis.url()),
    ]
}

/// The suite's proxies did keep their routes in Redis.
fn assert_routes_were_stored(redis: &RedisServer) {
    let keys = redis.cli(&["--scan", "--pattern", "edgeproxy:*routes"]);
    assert!(keys.contains("edgeproxy:routes"), "no route table in Redis: {keys}");
}

// With the Redis store on, `test_external_proxy` is not deselected: it restarts its proxy and
// asserts that the new one starts with no routes, as configurable-http-proxy forgets them, while
// a shared store keeps them on purpose. The wrapper (tests/jupyterhub6/configurable-http-proxy)
// gives each launch of that one test a store of its own (a fresh key prefix), so the rest of it
// (the hub refilling an empty proxy, moving to a new API URL and token) runs as written.

#[test]
fn jupyterhubs_proxy_suite_passes_with_the_memory_table() {
    let summary = run_test_proxy("jh6-memory", Vec::new);
    // 32 tests run; the 2 host-routespec cases of test_extra_routes skip themselves without a
    // subdomain host (the host-routing runs below have them).
    assert!(summary.contains("32 passed, 2 skipped"), "{summary}");
}

#[test]
fn jupyterhubs_proxy_suite_passes_with_the_memory_table_and_host_routing() {
    let summary = run_test_proxy("jh6-memory-hosts", || {
        vec![("JUPYTERHUB_TEST_SUBDOMAIN_HOST", subdomain_host())]
    });
    assert!(summary.starts_with("34 passed in"), "{summary}");
}

#[test]
fn jupyterhubs_proxy_suite_passes_with_the_redis_route_store() {
    let redis = RedisServer::start();
    let summary = run_test_proxy("jh6-redis", || redis_env(&redis));
    assert!(summary.contains("32 passed, 2 skipped"), "{summary}");
    assert_routes_were_stored(&redis);
}

#[test]
fn jupyterhubs_proxy_suite_passes_with_the_redis_route_store_and_host_routing() {
    let redis = RedisServer::start();
    let summary = run_test_proxy("jh6-redis-hosts", || {
        let mut env = redis_env(&redis);
        env.push(("JUPYTERHUB_TEST_SUBDOMAIN_HOST", subdomain_host()));
        env
    });
    assert!(summary.starts_with("34 passed in"), "{summary}");
    assert_routes_were_stored(&redis);
}
