//! A stock JupyterHub 6 (from the venv `scripts/ensure-pyenv.sh jupyterhub6` makes), to compare
//! the shape of edgehub's REST API with the real thing: the same calls on both, the same status
//! codes and models. It runs `loadtest/tests/journey_hub.py` (DummyAuthenticator, edgeproxy as
//! its proxy) and is stopped when dropped.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

pub struct JupyterHub6 {
    child: Child,
    stdin: Option<ChildStdin>,
    /// `http://127.0.0.1:PORT`, the proxy's public address.
    pub url: String,
    /// An admin API token.
    pub token: String,
}

fn venv_python() -> PathBuf {
    let venv = match std::env::var_os("EDGEHUB_PYENV_JH6") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(std::env::var_os("HOME").expect("HOME or EDGEHUB_PYENV_JH6"))
            .join(".cache/edgehub/pyenv-jupyterhub6"),
    };
    let python = venv.join("bin/python");
    assert!(
        python.exists(),
        "no JupyterHub 6 venv at {}: run `bash scripts/test.sh` (scripts/ensure-pyenv.sh jupyterhub6)",
        venv.display()
    );
    python
}

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// edgeproxy, built if needed: JupyterHub launches it as its proxy.
fn edgeproxy() -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(["build", "-p", "proxy", "--bin", "edgeproxy"])
        .current_dir(workspace_root())
        .output()
        .expect("run cargo build -p proxy");
    assert!(
        out.status.success(),
        "cargo build -p proxy --bin edgeproxy failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    target.join("debug/edgeproxy")
}

/// What the admin token may do beyond the journey hub's own role (users, servers, tokens).
const ADMIN_SCOPES: &str = r#"
c.JupyterHub.load_roles.append({
    'name': 'edgehub-api-comparison',
    'scopes': ['admin:groups', 'groups', 'list:groups', 'read:groups', 'delete:groups',
               'list:users', 'read:users', 'shares', 'read:shares'],
    'services': ['edgehub-compat-test'],
})
"#;

impl JupyterHub6 {
    /// Starts a hub in `dir`, its admin token an admin of users, servers, tokens and groups.
    pub fn start(dir: &std::path::Path) -> JupyterHub6 {
        Self::start_with_edge_auth(dir, None)
    }

    /// As [`JupyterHub6::start`], with edgeproxy's edge auth: `template` is its TOML, where
    /// `{hub_api}` stands for the hub's API URL (known once the ports are chosen). User servers
    /// are then edgehub's built-in one (this venv has no jupyter_server), which trusts the edge.
    pub fn start_with_edge_auth(dir: &std::path::Path, template: Option<&str>) -> JupyterHub6 {
        let script = workspace_root().join("loadtest/tests/journey_hub.py");
        let extra = dir.join("jupyterhub6_extra_config.py");
        std::fs::write(&extra, ADMIN_SCOPES).expect("write the extra JupyterHub config");
        let mut command = Command::new(venv_python());
        command
            .arg(&script)
            .arg("--proxy-command")
            .arg(edgeproxy())
            .arg("--extra-config")
            .arg(&extra);
        if let Some(template) = template {
            let path = dir.join("edge-auth-template.toml");
            std::fs::write(&path, template).expect("write the edge auth template");
            command.arg("--edge-auth").arg(path);
            command
                .arg("--spawner-cmd")
                .arg(env!("CARGO_BIN_EXE_edgehub"))
                .arg("singleuser");
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start journey_hub.py");
        let stdin = child.stdin.take();
        let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        let fields: Vec<&str> = first.split_whitespace().collect();
        if fields.len() != 4 || fields[0] != "ready" {
            let rest: Vec<String> = lines.map_while(Result::ok).collect();
            panic!("JupyterHub 6 did not start:\n{first}\n{}", rest.join("\n"));
        }
        JupyterHub6 {
            url: fields[1].to_owned(),
            token: fields[2].to_owned(),
            child,
            stdin,
        }
    }
}

impl Drop for JupyterHub6 {
    fn drop(&mut self) {
        // Closing stdin tells the script to stop the hub and whatever it started.
        drop(self.stdin.take());
        let end = Instant::now() + Duration::from_secs(40);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
