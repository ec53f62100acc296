//! JupyterHub 6's own proxy test suite, `jupyterhub.tests.test_proxy` (shipped in the wheel),
//! with edgeproxy launched wherever the suite launches configurable-http-proxy: by its MockHub,
//! and by hand in `test_external_proxy`. Run twice: with the default memory table, and with the
//! Redis route store on (a real redis-server per run). The venv is made by
//! `scripts/ensure-pyenv.sh jupyterhub6`, which the test command runs; without it the test
//! fails, it never skips.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::redis::RedisServer;

fn venv() -> PathBuf {
    match std::env::var_os("EDGEHUB_PYENV_JH6") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(std::env::var_os("HOME").expect("HOME or EDGEHUB_PYENV_JH6"))
            .join(".cache/edgehub/pyenv-jupyterhub6"),
    }
}

/// Runs the suite with `env` added, and returns its summary line, asserting it passed.
fn run_test_proxy(name: &str, env: &[(&str, String)]) -> String {
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
    let out = Command::new(&python)
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
        .env("PATH", path)
        .env("EDGEPROXY_BIN", env!("CARGO_BIN_EXE_edgeproxy"))
        .env_remove("CONFIGPROXY_AUTH_TOKEN")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("run pytest");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(
        out.status.success(),
        "JupyterHub 6's test_proxy failed with edgeproxy:\n{text}"
    );
    let _ = std::fs::remove_dir_all(&workdir);
    let summary = text
        .lines()
        .rev()
        .find(|l| l.contains(" passed"))
        .unwrap_or_default()
        .to_owned();
    assert!(!summary.contains("failed") && !summary.contains("error"), "{summary}");
    summary
}

#[test]
fn jupyterhubs_proxy_suite_passes_with_the_memory_table() {
    let summary = run_test_proxy("jh6-memory", &[]);
    // 32 tests run; the 2 subdomain-only cases skip themselves without a subdomain host.
    assert!(summary.contains("32 passed"), "{summary}");
}

#[test]
fn jupyterhubs_proxy_suite_passes_with_the_redis_route_store() {
    let redis = RedisServer::start();
    let env = [
        ("EDGEPROXY_STORAGE_BACKEND", "redis".to_owned()),
        ("EDGEPROXY_STORAGE_URL", redis.url()),
    ];
    let summary = run_test_proxy("jh6-redis", &env);
    assert!(summary.contains("32 passed"), "{summary}");
    // The suite's proxies did keep their routes in Redis.
    let keys = redis.cli(&["--scan", "--pattern", "edgeproxy:*routes"]);
    assert!(keys.contains("edgeproxy:routes"), "no route table in Redis: {keys}");
}
