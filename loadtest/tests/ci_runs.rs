//! What a CI job relies on: count mode sends exactly N requests (checked against the server's own
//! count), thresholds pass or fail with their own exit code and lines in every report, and the
//! generator says when it, not the target, was the bottleneck.

mod support;

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
