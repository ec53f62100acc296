//! A stock JupyterHub (pip-installed, pinned in `tests/jupyterhub/requirements.txt`) runs
//! edgeproxy through `c.ConfigurableHTTPProxy.command`, with DummyAuthenticator and
//! SimpleLocalProcessSpawner: the hub starts, a user logs in, a server is spawned, and HTTP and a
//! kernel WebSocket reach it through edgeproxy (the steps are in `tests/jupyterhub/run_hub_test.py`).
//!
//! The Python environment is made by `scripts/ensure-pyenv.sh`, which the test command
//! (`scripts/test.sh`) runs first. Without it this test fails; it never skips.

mod support;

use std::path::PathBuf;
use std::process::Command;

use support::redis::RedisServer;
use support::{Edgeproxy, TOKEN};

fn pyenv() -> PathBuf {
    match std::env::var_os("EDGEHUB_PYENV") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(std::env::var_os("HOME").expect("HOME or EDGEHUB_PYENV")).join(".cache/edgehub/pyenv"),
    }
}

/// Runs `run_hub_test.py` with `args` and returns its output, asserting it passed.
fn run_hub_test(args: &[&str]) -> String {
    let python = pyenv().join("bin/python");
    assert!(
        python.exists(),
        "the JupyterHub test environment is missing at {}: run scripts/test.sh (or scripts/ensure-pyenv.sh) first",
        python.display()
    );
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/jupyterhub/run_hub_test.py");
    let out = Command::new(&python)
        .arg(&script)
        .args(args)
        .args(["--timeout", "150"])
        .output()
        .expect("run the JupyterHub compatibility script");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(out.status.success(), "JupyterHub with edgeproxy failed:\n{text}");
    text
}

#[test]
fn stock_jupyterhub_runs_with_edgeproxy_as_its_proxy() {
    let text = run_hub_test(&["--proxy-command", env!("CARGO_BIN_EXE_edgeproxy")]);
    for step in [
        "ok: hub up",
        "ok: login",
        "ok: spawn",
        "ok: proxy route",
        "ok: kernel websocket",
        "ok: server stopped",
    ] {
        assert!(text.contains(step), "step {step:?} reported:\n{text}");
    }
}

/// A stock JupyterHub launches one edgeproxy and drives it alone, as it drives CHP; two more
/// replicas share that proxy's route store in Redis. The user's server is reached through every
/// replica's public port, and its route leaves all of them when the server stops: the hub wrote
/// each change once.
#[test]
fn stock_jupyterhub_drives_every_replica_through_the_shared_route_store() {
    let redis = RedisServer::start();
    let store = ["--storage-backend", "redis", "--storage-url", &redis.url()];
    let replicas = [Edgeproxy::start(&store), Edgeproxy::start(&store)];
    let launched = format!("{} {}", env!("CARGO_BIN_EXE_edgeproxy"), store.join(" "));
    let mut args = vec!["--proxy-command".to_owned(), launched];
    for r in &replicas {
        args.push("--replica".to_owned());
        args.push(format!("http://127.0.0.1:{}", r.port));
        args.push(format!("http://127.0.0.1:{}", r.api_port));
        args.push(TOKEN.to_owned());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let text = run_hub_test(&args);
    for step in ["ok: spawn", "ok: replicas", "ok: server stopped"] {
        assert!(text.contains(step), "step {step:?} reported:\n{text}");
    }
}
