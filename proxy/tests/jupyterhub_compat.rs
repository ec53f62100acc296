//! A stock JupyterHub (pip-installed, pinned in `tests/jupyterhub/requirements.txt`) runs
//! edgeproxy through `c.ConfigurableHTTPProxy.command`, with DummyAuthenticator and
//! SimpleLocalProcessSpawner: the hub starts, a user logs in, a server is spawned, and HTTP and a
//! kernel WebSocket reach it through edgeproxy (the steps are in `tests/jupyterhub/run_hub_test.py`).
//!
//! The Python environment is made by `scripts/ensure-pyenv.sh`, which the test command
//! (`scripts/test.sh`) runs first. Without it this test fails; it never skips.

use std::path::PathBuf;
use std::process::Command;

fn pyenv() -> PathBuf {
    match std::env::var_os("EDGEHUB_PYENV") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(std::env::var_os("HOME").expect("HOME or EDGEHUB_PYENV")).join(".cache/edgehub/pyenv"),
    }
}

#[test]
fn stock_jupyterhub_runs_with_edgeproxy_as_its_proxy() {
    let python = pyenv().join("bin/python");
    assert!(
        python.exists(),
        "the JupyterHub test environment is missing at {}: run scripts/test.sh (or scripts/ensure-pyenv.sh) first",
        python.display()
    );
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/jupyterhub/run_hub_test.py");
    let out = Command::new(&python)
        .arg(&script)
        .args(["--proxy-command", env!("CARGO_BIN_EXE_edgeproxy"), "--timeout", "150"])
        .output()
        .expect("run the JupyterHub compatibility script");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(out.status.success(), "JupyterHub with edgeproxy failed:\n{text}");
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
