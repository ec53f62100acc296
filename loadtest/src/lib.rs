//! edgeload: a load generator that tells the truth about latency.
//!
//! Two load models, always labelled: **closed** (N connections back to back, to find capacity)
//! and **open** (an arrival schedule of intended send times, constant or ramped, with latency
//! measured from the intended time so that a stalled server cannot hide behind a stalled client;
//! see [`schedule`] and [`open_loop`]). Statistics live in HdrHistograms, never in per-request
//! samples ([`recorder`], [`timeline`]); [`report`] renders any set of named latency series to the
//! terminal, JSON, an HDR percentile spectrum and a self-contained HTML page.
//!
//! Scenario wiring: [`http_load`] runs an HTTP load from a [`http_load::LoadPlan`] built by
//! [`cli`]; [`compare`] runs it against several targets in turn; [`serve`] is the test server
//! with injected delays and stalls that the tests and benchmarks load.
//!
//! For CI: [`threshold`] judges a finished run (`--threshold 'p99<50ms'`, exit code 99),
//! [`scenario`] reads a run's options from a TOML file, and [`bottleneck`] says when the
//! generator, not the target, limited the run.

pub mod admin;
pub mod bottleneck;
pub mod cli;
pub mod closed_loop;
pub mod compare;
pub mod duration_arg;
pub mod endpoint;
pub mod environment;
pub mod error_kind;
pub mod h1_wire;
pub mod http_conn;
pub mod http_load;
pub mod journey;
pub mod open_loop;
pub mod process_stats;
pub mod progress;
pub mod recorder;
pub mod report;
pub mod request_plan;
pub mod scenario;
pub mod schedule;
pub mod serve;
pub mod threshold;
pub mod timeline;
pub mod tls;
pub mod workers;
pub mod ws;
