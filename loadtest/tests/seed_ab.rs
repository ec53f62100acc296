//! `bench/seed-ab.sh --quick`, the seed paper's load test in small (issue 20): 3 users, 300
//! requests, each to the user's own jupyterhub-singleuser server through the front door, on
//! `edgehub up` and on a stock JupyterHub with configurable-http-proxy. Checked as a reader of the
//! report would: both front doors have a row, every request was answered, none was an error, and
//! each row has a throughput.
//!
//! It needs the test venv (EDGEHUB_PYENV, made by scripts/ensure-pyenv.sh) and
//! configurable-http-proxy (EDGEHUB_CHP, installed by scripts/test.sh into
//! ~/.cache/edgehub/chp): without them it fails, naming what is missing; it never skips.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod support;
use support::{pyenv, scratch_dir, workspace_binary, workspace_root};

/// Far above the 30-40 s the quick run takes on a 2-core machine; past it the script is stopped
/// and the test fails, rather than hanging.
const RUN_LIMIT: Duration = Duration::from_secs(240);

fn chp() -> PathBuf {
    std::env::var_os("EDGEHUB_CHP").map_or_else(
        || {
            PathBuf::from(std::env::var_os("HOME").expect("HOME or EDGEHUB_CHP"))
                .join(".cache/edgehub/chp/node_modules/.bin/configurable-http-proxy")
        },
        PathBuf::from,
    )
}

/// The cells of the report's table row for `front_door`.
fn row<'a>(report: &'a str, front_door: &str) -> Vec<&'a str> {
    let line = report
        .lines()
        .find(|l| l.starts_with(&format!("| {front_door} |")))
        .unwrap_or_else(|| panic!("no row for {front_door} in the report:\n{report}"));
    line.trim_matches('|').split('|').map(str::trim).collect()
}

#[test]
fn the_quick_seed_ab_runs_on_both_front_doors() {
    let venv = pyenv();
    assert!(
        venv.join("bin/jupyterhub-singleuser").exists(),
        "no test venv at {}: run scripts/test.sh (or scripts/ensure-pyenv.sh) first",
        venv.display()
    );
    let chp = chp();
    assert!(
        chp.exists(),
        "no configurable-http-proxy at {}: run scripts/test.sh, which installs it (or set EDGEHUB_CHP)",
        chp.display()
    );
    let edgehub = workspace_binary("hub-core", "edgehub");
    let results = scratch_dir("seed-ab");
    let (stdout, stderr) = (results.join("stdout"), results.join("stderr"));
    let mut child = Command::new("bash")
        .arg(workspace_root().join("bench/seed-ab.sh"))
        .args(["--quick", "--results-dir"])
        .arg(&results)
        .env("EDGELOAD_BIN", env!("CARGO_BIN_EXE_edgeload"))
        .env("EDGEHUB_BIN", &edgehub)
        .env("EDGEHUB_PYENV", &venv)
        .env("CHP_BIN", &chp)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .expect("run bash bench/seed-ab.sh");
    let began = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if began.elapsed() > RUN_LIMIT {
            // SIGTERM: the script stops everything it started.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            std::thread::sleep(Duration::from_secs(10));
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let report = std::fs::read_to_string(&stdout).unwrap_or_default();
    let log = std::fs::read_to_string(&stderr).unwrap_or_default();
    let Some(status) = status else {
        panic!("bench/seed-ab.sh --quick did not end within {RUN_LIMIT:?}:\n{report}\n{log}");
    };
    assert!(status.success(), "bench/seed-ab.sh --quick failed:\n{report}\n{log}");

    // | front door | users | requests | completed | errors | req/s | p50 ms | p99 ms | steal % |
    for front_door in ["edgehub", "monolith"] {
        let cells = row(&report, front_door);
        assert_eq!(cells[1], "3", "{front_door}: users\n{report}");
        assert_eq!(cells[2], "300", "{front_door}: requests asked for\n{report}");
        assert_eq!(cells[3], "300", "{front_door}: every request answered\n{report}");
        assert_eq!(cells[4], "0", "{front_door}: no errors\n{report}\n{log}");
        let rps: f64 = cells[5].parse().unwrap_or(0.0);
        assert!(rps > 0.0, "{front_door}: a throughput\n{report}");
        let json = std::fs::read_dir(&results).unwrap().flatten().any(|e| {
            e.file_name()
                .to_string_lossy()
                .ends_with(&format!("-{front_door}.json"))
        });
        assert!(json, "{front_door}: no JSON report in {}", results.display());
    }
    assert!(report.contains("| edgehub ÷ monolith |"), "{report}");
    // The script checked each user's own server answers, and another user's credentials not.
    assert!(
        log.matches("with their own credentials: 200").count() == 2,
        "the per-user checks did not run on both front doors:\n{log}"
    );
    let _ = std::fs::remove_dir_all(&results);
}
