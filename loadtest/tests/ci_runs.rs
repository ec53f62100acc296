//! What a CI job relies on: count mode sends exactly N requests (checked against the server's own
//! count), thresholds pass or fail with their own exit code and lines in every report, and the
//! generator says when it, not the target, was the bottleneck.

mod support;

use std::time::Duration;

use support::*;

/// Count mode in both load models, with N not divisible by the connections nor the threads: the
/// server sees exactly N requests (no warm-up by default) and the report says N were sent.
#[test]
fn count_mode_sends_exactly_n_requests_in_both_models() {
    let runs: [(&str, &[&str]); 3] = [
        ("count-closed", &["-n", "1001", "-c", "7", "-t", "2"]),
        (
            "count-open",
            &["-n", "1001", "--rate", "4000", "-t", "2", "--max-connections", "7"],
        ),
        (
            "count-ramp",
            &["-n", "301", "--rate-from", "500", "--rate-to", "1500", "-t", "2"],
        ),
    ];
    for (name, args) in runs {
        let srv = server(ServeConfig::default());
        let url = srv.url("/");
        let mut all = vec![url.as_str()];
        all.extend_from_slice(args);
        let r = run_http(name, &all);
        let n: u64 = args[1].parse().unwrap();
        assert_eq!(counter(&r, "sent"), n, "{name}: {r:#}");
        assert_eq!(srv.counters.requests(), n, "{name}: the server's count");
        assert_eq!(r["warmup_s"], 0.0, "{name}");
        assert_eq!(r["parameters"]["requests"], n, "{name}");
        assert_eq!(r["errors"]["total"], 0, "{name}: {r:#}");
        let primary = if r["load_model"] == "open" {
            "corrected"
        } else {
            "service_time"
        };
        assert_eq!(r["latency"][primary]["count"], n, "{name}");
        let duration = r["duration_s"].as_f64().unwrap();
        let rps = r["throughput_rps"].as_f64().unwrap();
        assert!(duration > 0.0 && duration < 5.0, "{name}: measured {duration} s");
        assert!(
            (rps * duration - n as f64).abs() < 1.0,
            "{name}: {rps}/s over {duration} s"
        );
        if r["load_model"] == "open" {
            assert_eq!(counter(&r, "missed"), 0, "{name}");
        }
    }
}

/// An explicit warm-up is sent on top of the N measured requests.
#[test]
fn count_mode_with_a_warmup_measures_n_after_it() {
    let srv = server(ServeConfig::default());
    let r = run_http(
        "count-warmup",
        &[&srv.url("/"), "-n", "200", "--rate", "1000", "-w", "0.3s", "-t", "1"],
    );
    assert_eq!(counter(&r, "sent"), 200, "{r:#}");
    assert_eq!(srv.counters.requests(), 500, "300 warm-up slots at 1000/s, then 200");
}

#[test]
fn count_mode_and_duration_exclude_each_other() {
    let out = edgeload()
        .args(["http", "http://127.0.0.1:1/", "-n", "10", "-d", "1s"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("cannot be used with"), "{}", text(&out));
    let out = edgeload()
        .args(["http", "http://127.0.0.1:1/", "-n", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--requests 0"), "{}", text(&out));
}

/// Runs `edgeload <args> --json --html` in `dir` and returns the process output.
fn run_with_reports(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    edgeload()
        .args(args)
        .arg("--json")
        .arg(dir.join("r.json"))
        .arg("--html")
        .arg(dir.join("r.html"))
        .output()
        .expect("run edgeload")
}

#[test]
fn thresholds_that_hold_pass_with_exit_code_0_and_are_reported() {
    let srv = server(ServeConfig::default());
    let dir = scratch_dir("thresholds-pass");
    let url = srv.url("/");
    let out = run_with_reports(
        &dir,
        &[
            "http",
            &url,
            "-n",
            "300",
            "-c",
            "2",
            "-t",
            "1",
            "-q",
            "--threshold",
            "p99<5s",
            "--threshold",
            "service_time.max<=1m",
            "--threshold",
            "errors<1%",
            "--threshold",
            "rps>1",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    for line in [
        "threshold p99<5s: passed, service_time p99 ",
        "threshold service_time.max<=1m: passed, service_time max ",
        "threshold errors<1%: passed, errors 0% (limit < 1%)",
        "threshold rps>1: passed, throughput ",
    ] {
        assert!(stdout.contains(line), "no {line:?} in:\n{stdout}");
    }
    let r = read_json(&dir.join("r.json"));
    let t = r["thresholds"].as_array().unwrap();
    assert_eq!(t.len(), 4);
    assert!(t.iter().all(|t| t["passed"] == true), "{t:#?}");
    assert_eq!(t[0]["metric"], "p99");
    assert_eq!(t[0]["unit"], "us");
    assert_eq!(t[0]["limit"], 5e6);
    assert_eq!(
        t[0]["observed"].as_f64().unwrap() as u64,
        r["latency"]["service_time"]["p99_us"].as_u64().unwrap()
    );
    assert_eq!(t[1]["series"], "service_time");
    assert_eq!(t[2]["observed"], 0.0);
    let html = std::fs::read_to_string(dir.join("r.html")).unwrap();
    assert!(
        html.contains("<h2>Thresholds</h2>") && html.matches("<tr class=\"pass\">").count() == 4,
        "{html}"
    );
}

#[test]
fn a_failing_threshold_exits_99_with_a_line_naming_it_and_still_writes_the_reports() {
    let srv = server(ServeConfig::default());
    let dir = scratch_dir("thresholds-fail");
    let url = srv.url("/status/503");
    let out = run_with_reports(
        &dir,
        &[
            "http",
            &url,
            "-n",
            "50",
            "-c",
            "2",
            "-t",
            "1",
            "-q",
            "--threshold",
            "errors<0.1%",
            "--threshold",
            "p99<5s",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(99), "{}", text(&out));
    assert!(
        stdout.contains("threshold errors<0.1%: FAILED, errors 100% (limit < 0.1%)"),
        "{stdout}"
    );
    assert!(stdout.contains("threshold p99<5s: passed"), "{stdout}");
    assert!(stderr.contains("1 of 2 thresholds failed: errors<0.1%"), "{stderr}");
    let r = read_json(&dir.join("r.json"));
    assert_eq!(r["thresholds"][0]["passed"], false);
    assert_eq!(r["thresholds"][0]["observed"], 100.0);
    assert_eq!(r["thresholds"][1]["passed"], true);
    let html = std::fs::read_to_string(dir.join("r.html")).unwrap();
    assert_eq!(html.matches("<tr class=\"fail\">").count(), 1, "{html}");
}

#[test]
fn a_bad_threshold_stops_the_run_before_it_starts_with_exit_code_2() {
    let srv = server(ServeConfig::default());
    let url = srv.url("/");
    for (threshold, want) in [
        ("p99<50", "a latency limit needs a unit"),
        ("p99>>5ms", "invalid duration"),
        ("latency", "expected a comparison"),
        (
            "corrected.p99<5ms",
            "no series \"corrected\" in this scenario (series: service_time)",
        ),
        ("late<1%", "no counter \"late\""),
    ] {
        let out = edgeload()
            .args(["http", &url, "-n", "10", "-q", "--threshold", threshold])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{threshold}: {}", text(&out));
        assert!(text(&out).contains(want), "{threshold}: {}", text(&out));
    }
    assert_eq!(srv.counters.requests(), 0, "nothing was sent");
}

/// Thresholds judge every scenario's report: here a WebSocket echo run's counter.
#[test]
fn thresholds_apply_to_websocket_runs_too() {
    let srv = server(ServeConfig::default());
    let url = srv.url("/ws").replacen("http://", "ws://", 1);
    let out = edgeload()
        .args([
            "ws", "echo", &url, "-c", "2", "--rate", "20", "-d", "0.5s", "-w", "0s", "-q",
        ])
        .args(["--threshold", "received>=1", "--threshold", "received<1"])
        .output()
        .unwrap();
    assert_one_of_two_received_thresholds_failed(&out);
}

/// The verdict of an echo run judged by `received>=1` (passes) and `received<1` (fails).
fn assert_one_of_two_received_thresholds_failed(out: &std::process::Output) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(99), "{}", text(out));
    assert!(stdout.contains("threshold received>=1: passed"), "{stdout}");
    assert!(stdout.contains("threshold received<1: FAILED, received "), "{stdout}");
}

/// A WebSocket run reads its options and thresholds from a scenario file as an HTTP run does,
/// and a bad value in the file is a usage error naming the file.
#[test]
fn a_websocket_run_takes_its_thresholds_from_a_scenario_file() {
    let srv = server(ServeConfig::default());
    let url = srv.url("/ws").replacen("http://", "ws://", 1);
    let dir = scratch_dir("ws-scenario-file");
    let file = dir.join("ws.toml");
    std::fs::write(
        &file,
        "connections = 2\nrate = 20\nduration = \"0.5s\"\nwarmup = \"0s\"\nquiet = true\n\
         thresholds = [\"received>=1\", \"received<1\"]\n",
    )
    .unwrap();
    let scenario = file.to_str().unwrap();
    let out = edgeload()
        .args(["ws", "echo", &url, "--scenario", scenario])
        .output()
        .unwrap();
    assert_one_of_two_received_thresholds_failed(&out);
    // The command line's thresholds replace the file's.
    let out = edgeload()
        .args(["ws", "echo", &url, "--scenario", scenario, "--threshold", "received>=1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    std::fs::write(&file, "rate = \"fast\"\n").unwrap();
    let out = edgeload()
        .args(["ws", "echo", &url, "--scenario", scenario])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("--scenario {scenario}: invalid value 'fast' for '--rate")),
        "{}",
        text(&out)
    );
}

/// A scenario file holds the options and thresholds; flags on the command line win over it.
#[test]
fn a_scenario_file_sets_the_run_and_flags_override_it() {
    let srv = server(ServeConfig::default());
    let dir = scratch_dir("scenario-file");
    let file = dir.join("run.toml");
    std::fs::write(
        &file,
        format!(
            "urls = [\"{}\"]\nrate = 2000\nrequests = 500\nthreads = 1\nmax-connections = 20\n\
             headers = [\"X-From: scenario\"]\nthresholds = [\"errors<1%\", \"rps>100000000\"]\n",
            srv.url("/")
        ),
    )
    .unwrap();
    let scenario = file.to_str().unwrap();
    let out = run_with_reports(&dir, &["http", "--scenario", scenario, "-q"]);
    assert_eq!(out.status.code(), Some(99), "{}", text(&out));
    let r = read_json(&dir.join("r.json"));
    assert_eq!(r["load_model"], "open");
    assert_eq!(r["parameters"]["requests"], 500);
    assert_eq!(r["parameters"]["max_connections"], 20);
    assert_eq!(counter(&r, "sent"), 500);
    assert_eq!(srv.counters.requests(), 500);
    let passed: Vec<_> = r["thresholds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["passed"].clone())
        .collect();
    assert_eq!(passed, [true, false]);

    // The command line's model, length and thresholds replace the file's.
    let out = run_with_reports(
        &dir,
        &[
            "http",
            "--scenario",
            scenario,
            "-q",
            "-c",
            "3",
            "-n",
            "100",
            "--threshold",
            "errors<1%",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let r = read_json(&dir.join("r.json"));
    assert_eq!(r["load_model"], "closed");
    assert_eq!(r["parameters"]["connections"], 3);
    assert_eq!(counter(&r, "sent"), 100);
    assert_eq!(srv.counters.requests(), 600);
    assert_eq!(r["thresholds"].as_array().unwrap().len(), 1);

    std::fs::write(&file, "rat = 5\n").unwrap();
    let out = edgeload().args(["http", "--scenario", scenario]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("unknown field `rat`"), "{}", text(&out));
}

/// An arrival rate no generator can offer, against a port that refuses at once (the target does
/// no work at all): the generator, busy the whole run, says it was the bottleneck.
#[test]
fn a_generator_that_cannot_keep_up_says_it_is_the_bottleneck() {
    let url = format!("http://127.0.0.1:{}/", refused_port());
    let dir = scratch_dir("bottleneck-cpu");
    let out = run_with_reports(
        &dir,
        &[
            "http", &url, "--rate", "1000000", "-d", "1s", "-w", "0s", "-t", "1", "-q",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let r = read_json(&dir.join("r.json"));
    let g = &r["generator"];
    assert_eq!(g["bottleneck"], "cpu", "{g:#}");
    assert!(g["runnable_fraction"].as_f64().unwrap() >= 0.9, "{g:#}");
    assert!(
        g["bottleneck_reason"]
            .as_str()
            .unwrap()
            .contains("more about the generator than about the target"),
        "{g:#}"
    );
    assert!(
        stdout.contains("BOTTLENECK (cpu): the load generator was the bottleneck"),
        "{stdout}"
    );
    let html = std::fs::read_to_string(dir.join("r.html")).unwrap();
    assert!(html.contains("Bottleneck: the load generator (cpu)."), "{html}");
}

/// A schedule kept more finely than the generator's timer can keep it (tokio's timer has 1 ms
/// ticks, `--late-after 100us`): sends leave late with connections free and the generator idle,
/// and the report says the lateness is the generator's own.
#[test]
fn sends_late_with_connections_free_are_put_on_the_generator() {
    let srv = server(ServeConfig::default());
    let r = run_http(
        "bottleneck-late-sends",
        &[
            &srv.url("/"),
            "--rate",
            "500",
            "-d",
            "1s",
            "-w",
            "0s",
            "-t",
            "1",
            "--late-after",
            "100us",
        ],
    );
    let g = &r["generator"];
    assert_eq!(g["bottleneck"], "late_sends", "{r:#}");
    assert!(counter(&r, "late") >= 25, "{r:#}");
    assert_eq!(counter(&r, "late_pool_full"), 0, "{r:#}");
    assert!(
        g["bottleneck_reason"]
            .as_str()
            .unwrap()
            .contains("although a connection was free"),
        "{g:#}"
    );
}

/// A slow target behind a small pool makes sends late too, but the generator is idle: the
/// report puts that lateness on the target and gives no generator verdict.
#[test]
fn late_sends_behind_a_slow_target_are_not_blamed_on_the_generator() {
    let srv = server(ServeConfig {
        delay: Duration::from_millis(100),
        ..ServeConfig::default()
    });
    let r = run_http(
        "bottleneck-target",
        &[
            &srv.url("/"),
            "--rate",
            "200",
            "-d",
            "1s",
            "-w",
            "0s",
            "-t",
            "1",
            "--max-connections",
            "4",
            "--late-after",
            "20ms",
        ],
    );
    assert_lateness_put_on_the_target(&r);
}
