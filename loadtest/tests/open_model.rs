//! The open model against the test server: a server stall must show in corrected latency (and
//! only there), the achieved rate must match the requested one, memory must stay flat.

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use support::*;

#[test]
fn a_server_stall_shows_in_corrected_latency_not_in_service_time() {
    // A 300 ms stall every second; two connections at most, so the client cannot hide the stall
    // by sending on fresh connections: overdue slots queue behind the stalled ones.
    let srv = server(ServeConfig {
        stall: Some(Stall {
            every: Duration::from_secs(1),
            length: Duration::from_millis(300),
        }),
        ..ServeConfig::default()
    });
    let r = run_http(
        "stall",
        &[
            &srv.url("/"),
            "--rate",
            "400",
            "--max-connections",
            "2",
            "-t",
            "1",
            "-d",
            "3s",
            "-w",
            "0.5s",
        ],
    );
    assert_eq!(r["load_model"], "open");
    let corrected = latency_ms(&r, "corrected", "p99_us");
    let service = latency_ms(&r, "service_time", "p99_us");
    assert!(
        corrected > 150.0,
        "corrected p99 {corrected} ms must show the 300 ms stalls"
    );
    assert!(
        service < 50.0,
        "service-time p99 {service} ms: only the few requests caught inside a stall are slow"
    );
    assert!(
        counter(&r, "late") > 100,
        "slots queued behind the stall are late: {r:#}"
    );
    assert_eq!(counter(&r, "missed"), 0);
}

#[test]
fn the_achieved_rate_is_within_2_percent_of_the_requested_rate() {
    let srv = server(ServeConfig::default());
    let r = run_http("rate", &[&srv.url("/"), "--rate", "2000", "-d", "4s", "-w", "0.5s"]);
    let sent = r["sent_rps"].as_f64().unwrap();
    let done = r["throughput_rps"].as_f64().unwrap();
    for (what, v) in [("sent", sent), ("completed", done)] {
        assert!((v - 2000.0).abs() / 2000.0 < 0.02, "{what} {v}/s vs 2000/s requested");
    }
    assert_eq!(r["errors"]["total"], 0);
}

#[test]
fn a_ramp_offers_the_mean_of_its_two_rates() {
    let srv = server(ServeConfig::default());
    let r = run_http(
        "ramp",
        &[
            &srv.url("/"),
            "--rate-from",
            "500",
            "--rate-to",
            "1500",
            "-d",
            "4s",
            "-w",
            "0.5s",
        ],
    );
    let sent = r["sent_rps"].as_f64().unwrap();
    assert!(
        (sent - 1000.0).abs() / 1000.0 < 0.02,
        "sent {sent}/s vs a mean of 1000/s"
    );
    // The per-second counts climb from about 500 towards 1500.
    let per_s: Vec<u64> = r["intervals"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["warmup"] == false)
        .map(|i| i["counters"]["sent"].as_u64().unwrap())
        .collect();
    assert!(per_s.len() >= 4, "{per_s:?}");
    assert!(
        per_s[0] < 900 && per_s[per_s.len() - 2] > 1100,
        "the rate ramps: {per_s:?}"
    );
}

#[test]
fn memory_stays_flat_over_a_long_run() {
    let srv = server(ServeConfig::default());
    let dir = scratch_dir("memory");
    let json = dir.join("report.json");
    let run_s = 20.0;
    let child = edgeload()
        .args([
            "http",
            &srv.url("/"),
            "--rate",
            "3000",
            // A fixed connection budget: on a busy machine a slow stretch would otherwise open
            // more connections, and their buffers would pass for growth per request.
            "--max-connections",
            "64",
            "-d",
            "20s",
            "-w",
            "0s",
            "--quiet",
            "--json",
        ])
        .arg(&json)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let started = Instant::now();
    let sample_at = |fraction: f64| {
        let at = Duration::from_secs_f64(run_s * fraction);
        std::thread::sleep(at.saturating_sub(started.elapsed()));
        rss_bytes(pid)
    };
    let early = sample_at(0.25);
    let late = sample_at(0.97);
    let out = wait(child, Duration::from_secs(40));
    assert!(out.status.success(), "{}", text(&out));
    let r = read_json(&json);
    assert!(
        counter(&r, "sent") > 55_000,
        "the run really sent ~60,000 requests: {}",
        counter(&r, "sent")
    );
    let growth = late as f64 - early as f64;
    assert!(
        growth < 4.0 * 1048576.0,
        "RSS grew from {:.1} MiB at 25% to {:.1} MiB at the end of the run",
        early as f64 / 1048576.0,
        late as f64 / 1048576.0
    );
}
