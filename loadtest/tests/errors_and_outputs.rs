//! Errors by kind, output files, comparisons and bad input.

mod support;

use std::time::Duration;

use support::*;

#[test]
fn a_refused_port_is_counted_as_connect_refused() {
    let url = format!("http://127.0.0.1:{}/", refused_port());
    let r = run_http("refused", &[&url, "-c", "2", "-d", "0.5s", "-w", "0s"]);
    assert!(error_count(&r, "connect_refused") > 5, "{r:#}");
    assert_eq!(r["latency"]["service_time"]["count"], 0);
}

#[test]
fn status_errors_are_counted_by_code_and_keep_their_latency() {
    let srv = server(ServeConfig::default());
    let r = run_http(
        "status",
        &[&srv.url("/status/500"), "-c", "2", "-d", "0.5s", "-w", "0s"],
    );
    let n = error_count(&r, "status_500");
    assert!(n > 10, "{r:#}");
    assert_eq!(r["latency"]["service_time"]["count"].as_u64(), Some(n));
    assert_eq!(r["errors"]["total"].as_u64(), Some(n));
}

#[test]
fn slow_responses_are_counted_as_timeouts() {
    let srv = server(ServeConfig {
        delay: Duration::from_millis(300),
        ..ServeConfig::default()
    });
    let r = run_http(
        "timeout",
        &[
            &srv.url("/"),
            "--rate",
            "20",
            "-d",
            "1s",
            "-w",
            "0s",
            "--timeout",
            "50ms",
        ],
    );
    let timeouts = error_count(&r, "timeout");
    assert!((15..=25).contains(&timeouts), "about 20 timeouts expected: {r:#}");
    assert_eq!(r["latency"]["corrected"]["count"], 0);
}

#[test]
fn hdr_and_html_reports_are_written_and_self_contained() {
    let srv = server(ServeConfig::default());
    let dir = scratch_dir("outputs");
    let (hdr, html) = (dir.join("run.hdr"), dir.join("run.html"));
    let out = edgeload()
        .args([
            "http",
            &srv.url("/"),
            "--rate",
            "200",
            "-d",
            "1s",
            "-w",
            "0.2s",
            "--quiet",
            "--hdr",
        ])
        .arg(&hdr)
        .arg("--html")
        .arg(&html)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("open model") && stdout.contains("corrected"),
        "{stdout}"
    );
    let spectrum = std::fs::read_to_string(&hdr).unwrap();
    assert!(
        spectrum.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)"),
        "{spectrum}"
    );
    assert!(spectrum.contains("#[Max     ="), "{spectrum}");
    let service = std::fs::read_to_string(dir.join("run.service_time.hdr")).unwrap();
    assert!(service.contains("Total count"), "{service}");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("open model"));
    assert_eq!(page.matches("<svg").count(), 3, "three charts");
    assert!(
        page.matches("<polyline").count() >= 5,
        "latency lines, throughput and spectrum are drawn"
    );
    assert!(!page.contains("<script") && !page.contains("src=\"http") && !page.contains("href=\"http"));
}

#[test]
fn compare_runs_every_target_each_round_and_prints_ratios() {
    let fast = server(ServeConfig::default());
    let slow = server(ServeConfig {
        delay: Duration::from_millis(5),
        ..ServeConfig::default()
    });
    let dir = scratch_dir("compare");
    let json = dir.join("compare.json");
    let out = edgeload()
        .args(["compare", "--target", &format!("fast={}", fast.url("/")), "--target"])
        .arg(format!("slow={}", slow.url("/")))
        .args([
            "--rounds", "2", "-c", "2", "-t", "1", "-d", "0.4s", "-w", "0s", "--quiet", "--json",
        ])
        .arg(&json)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("fast") && stdout.contains("slow") && stdout.contains("closed model"),
        "{stdout}"
    );
    let c = read_json(&json);
    assert_eq!(c["targets"][0]["throughput_ratio"], 1.0);
    let ratio = c["targets"][1]["throughput_ratio"].as_f64().unwrap();
    assert!(ratio < 0.5, "a 5 ms delay cuts throughput: ratio {ratio}");
    assert_eq!(c["targets"][1]["runs"].as_array().unwrap().len(), 2);
    assert!(fast.counters.requests() > 0 && slow.counters.requests() > 0);
}

#[test]
fn bad_input_exits_2_naming_the_value() {
    let cases: &[(&[&str], &str)] = &[
        (&["http", "http://127.0.0.1:1/", "--rate", "0"], "--rate 0"),
        (&["http", "http://127.0.0.1:1/", "--duration", "soon"], "\"soon\""),
        (&["http", "notaurl"], "\"notaurl\""),
        (&["http", "http://127.0.0.1:1/", "-H", "NoColon"], "\"NoColon\""),
        (&["http"], "no URL"),
        (&["compare", "--target", "justname"], "\"justname\""),
        (&["serve", "--stall-every", "1s", "--stall-for", "2s"], "--stall-for"),
    ];
    for (args, want) in cases {
        let out = edgeload().args(*args).output().unwrap();
        let t = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {t}");
        assert!(t.contains(want), "{args:?}: {t}");
        assert!(!t.contains("panicked"), "{t}");
    }
}
