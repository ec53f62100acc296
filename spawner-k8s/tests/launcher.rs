//! The warm-pool launcher (`launcher/edgehub-launcher`), run locally against a fake downward-API
//! annotations file: it waits for the claim, takes on the user's environment (with Kubernetes'
//! `$(VAR)` expansion) and execs the server command in the same process.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn launcher() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("launcher/edgehub-launcher")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("edgehub-launcher-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Go's strconv.Quote of `s` for the characters these tests use.
fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[test]
fn waits_for_the_claim_then_execs_with_the_users_env() {
    let dir = scratch("claim");
    let podinfo = dir.join("annotations");
    let out = dir.join("env.json");
    // Unclaimed at first: only the pool's own annotation.
    std::fs::write(&podinfo, "edgehub.io/pool-spec=\"abc\"\n").unwrap();
    let script = format!(
        "import json, os; json.dump({{'pid': os.getpid(), 'env': dict(os.environ)}}, open({:?}, 'w'))",
        out.display().to_string()
    );
    let mut child = Command::new(launcher())
        .args(["--podinfo", podinfo.to_str().unwrap(), "--", "python3", "-c", &script])
        .env("POD_IP", "127.0.0.9")
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the launcher must wait while unclaimed"
    );
    assert!(!out.exists());

    let env = serde_json::json!({
        "JUPYTERHUB_USER": "Zoë \"the\" admin",
        "JUPYTERHUB_API_TOKEN": "t$(NOT_EXPANDED)",
        "JUPYTERHUB_SERVICE_URL": "http://$(POD_IP):8888/user/zo%C3%AB/",
        "WEIRD": "line1\nline2\ttab\\",
        "DOLLARS": "a$$(POD_IP)b",
    })
    .to_string();
    let claimed = format!(
        "edgehub.io/pool-spec=\"abc\"\nedgehub.io/env={}\nhub.jupyter.org/username={}\n",
        go_quote(&env),
        go_quote("Zoë \"the\" admin")
    );
    // Kubelet swaps the file atomically; so do we.
    std::fs::write(dir.join("tmp"), claimed).unwrap();
    std::fs::rename(dir.join("tmp"), &podinfo).unwrap();
    let started = Instant::now();
    let status = child.wait().unwrap();
    assert!(status.success());
    assert!(started.elapsed() < Duration::from_secs(5));

    let got: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(
        got["pid"],
        child.id(),
        "the server replaced the launcher (exec), no new process"
    );
    let env = &got["env"];
    assert_eq!(env["JUPYTERHUB_USER"], "Zoë \"the\" admin");
    assert_eq!(env["JUPYTERHUB_SERVICE_URL"], "http://127.0.0.9:8888/user/zo%C3%AB/");
    assert_eq!(
        env["JUPYTERHUB_API_TOKEN"], "t$(NOT_EXPANDED)",
        "unknown references stay as written"
    );
    assert_eq!(env["DOLLARS"], "a$(POD_IP)b", "$$ is a literal $");
    assert_eq!(env["WEIRD"], "line1\nline2\ttab\\");
    assert_eq!(env["POD_IP"], "127.0.0.9", "the pod's own environment is kept");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn gives_up_after_its_timeout() {
    let dir = scratch("timeout");
    let status = Command::new(launcher())
        .args([
            "--podinfo",
            dir.join("missing").to_str().unwrap(),
            "--timeout",
            "0.3",
            "--",
            "true",
        ])
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(75));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn go_quoted_values_are_read_as_go_writes_them() {
    // The parser is checked directly on strconv.Quote outputs, escapes included.
    let check = r#"
import importlib.machinery, importlib.util, sys
loader = importlib.machinery.SourceFileLoader("launcher", sys.argv[1])
spec = importlib.util.spec_from_loader("launcher", loader)
m = importlib.util.module_from_spec(spec); loader.exec_module(m)
cases = [
    ('"plain"', 'plain'),
    ('"a\\"b"', 'a"b'),
    ('"tab\\tnl\\n"', 'tab\tnl\n'),
    ('"\\x1b[0m"', '\x1b[0m'),
    ('"caf\u00e9"', 'caf\u00e9'),
    ('"\\u2028"', '\u2028'),
    ('"\\U0001f600"', '\U0001f600'),
    ('"\\xc3\\xa9"', '\u00e9'),
    ('""', ''),
]
for quoted, want in cases:
    got = m.go_unquote(quoted)
    assert got == want, (quoted, got, want)
ann = m.parse_annotations('a="1"\nbroken\nb="x=y"\n')
assert ann == {"a": "1", "b": "x=y"}, ann
assert m.expand("$(A)-$(B)-$$(A)-$", {"A": "1"}) == "1-$(B)-$(A)-$"
print("ok")
"#;
    let out = Command::new("python3")
        .args(["-c", check, launcher().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn sees_the_kubelets_symlink_swap_without_polling() {
    // The kubelet's layout: `annotations -> ..data/annotations`, `..data -> ..<timestamp>`; an
    // update writes a new timestamped directory and renames a fresh `..data` symlink over the old
    // one. With re-reads only every 60 s, the claim can only be seen this fast through inotify.
    use std::os::unix::fs::symlink;
    let dir = scratch("symlink");
    let out = dir.join("claimed");
    std::fs::create_dir(dir.join("..2026_11_21_00_00_00.1")).unwrap();
    std::fs::write(
        dir.join("..2026_11_21_00_00_00.1/annotations"),
        "edgehub.io/pool-spec=\"abc\"\n",
    )
    .unwrap();
    symlink("..2026_11_21_00_00_00.1", dir.join("..data")).unwrap();
    symlink("..data/annotations", dir.join("annotations")).unwrap();
    let mut child = Command::new(launcher())
        .args([
            "--podinfo",
            dir.join("annotations").to_str().unwrap(),
            "--poll",
            "60",
            "--",
            "python3",
            "-c",
            &format!("open({:?}, 'w').write('yes')", out.display().to_string()),
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(child.try_wait().unwrap().is_none(), "unclaimed: still waiting");

    let env = serde_json::json!({"JUPYTERHUB_USER": "alice"}).to_string();
    std::fs::create_dir(dir.join("..2026_11_21_00_00_01.2")).unwrap();
    std::fs::write(
        dir.join("..2026_11_21_00_00_01.2/annotations"),
        format!("edgehub.io/env={}\n", go_quote(&env)),
    )
    .unwrap();
    symlink("..2026_11_21_00_00_01.2", dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("the claim was not seen within 20 s, though the poll interval is 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success());
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "yes");
    let _ = std::fs::remove_dir_all(&dir);
}
