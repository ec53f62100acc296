//! The command line (clap derive): `edgeload http`, `edgeload compare`, `edgeload serve`, and the
//! validation that turns flags into a [`LoadPlan`]. Every rejected value is named in its message.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use clap::{Args, Parser, Subcommand};

use crate::duration_arg::parse_duration;
use crate::http_load::{LoadModel, LoadPlan};
use crate::report::{OutputFiles, Report};
use crate::request_plan::{HttpVersion, PlanError, RequestPlan, RequestSpec};
use crate::schedule::ArrivalRate;
use crate::serve::{ServeConfig, Stall};
use crate::threshold::{Threshold, ThresholdError};

#[derive(Parser, Debug)]
#[command(
    name = "edgeload",
    version,
    about = "Load generator with open (arrival-rate, coordinated-omission-corrected) and closed models, \
             HdrHistogram statistics and self-contained reports."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// HTTP load against one or more URLs (round-robin)
    Http(HttpArgs),
    /// The same load against several targets in turn (A B A B …), with medians and ratios
    Compare(CompareArgs),
    /// A test server with injected delays and stalls, for tests and benchmarks
    Serve(ServeArgs),
    /// Notebook users through JupyterHub's REST API: login, spawn, kernel, executes, stop
    Journey(crate::journey::JourneyArgs),
    /// WebSocket scenarios: handshake storm, idle tunnels (memory per tunnel), echo, large, churn
    Ws(crate::ws::args::WsArgs),
    /// Load on the configurable-http-proxy REST API: route add/get-all/delete latency, churn
    Admin(crate::admin::AdminArgs),
}

#[derive(Args, Debug)]
pub struct HttpArgs {
    /// URLs to load (http:// or https://); several are sent round-robin
    #[arg(value_name = "URL")]
    pub urls: Vec<String>,
    /// Read more URLs from FILE, one per line (blank lines and lines starting with # skipped); a
    /// line may add headers for its URL alone after it, tab-separated: URL<TAB>Name: value<TAB>…
    #[arg(long, value_name = "FILE")]
    pub urls_file: Option<PathBuf>,
    #[command(flatten)]
    pub scenario_file: crate::scenario::ScenarioArg,
    #[command(flatten)]
    pub load: LoadArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// How much load, of which model, with what requests. Shared by `http` and `compare`.
#[derive(Args, Debug, Clone)]
pub struct LoadArgs {
    /// Closed model: connections sending back to back [default: 10]
    #[arg(short, long, value_name = "N", conflicts_with_all = ["rate", "rate_from", "rate_to"])]
    pub connections: Option<usize>,
    /// Worker threads, each with its own event loop [default: CPUs usable, at most the connections]
    #[arg(short, long, value_name = "N")]
    pub threads: Option<usize>,
    /// Open model: constant arrival rate in requests per second
    #[arg(
        short,
        long,
        value_name = "REQ/S",
        conflicts_with_all = ["rate_from", "rate_to"],
        allow_negative_numbers = true
    )]
    pub rate: Option<f64>,
    /// Open model, ramp: rate during warm-up and at the start of the measured window (req/s)
    #[arg(long, value_name = "REQ/S", requires = "rate_to", allow_negative_numbers = true)]
    pub rate_from: Option<f64>,
    /// Open model, ramp: rate at the end of the measured window (req/s)
    #[arg(long, value_name = "REQ/S", requires = "rate_from", allow_negative_numbers = true)]
    pub rate_to: Option<f64>,
    /// Open model: most connections open at once, all threads together; slots beyond wait and
    /// count as late
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub max_connections: usize,
    /// Open model: a request sent later than this after its intended time counts as late
    #[arg(long, value_name = "DURATION", default_value = "2ms", value_parser = parse_duration)]
    pub late_after: Duration,
    /// Measured window
    #[arg(short, long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Count mode (ab's -n): send exactly N measured requests instead of running for --duration
    /// (closed: the connections share the N; open: the schedule has N slots, about N/rate seconds)
    #[arg(short = 'n', long, value_name = "N", conflicts_with = "duration")]
    pub requests: Option<u64>,
    /// Warm-up before the measured window; its requests are sent but not counted [default: 1s;
    /// 0s with --requests]
    #[arg(short, long, value_name = "DURATION", value_parser = parse_duration)]
    pub warmup: Option<Duration>,
    /// Per-request timeout, connect included
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Closed model: connection i sends only URL i mod N (with -c equal to the URLs, one client
    /// per URL, e.g. per user), instead of each taking the next URL of the round-robin
    #[arg(long, conflicts_with_all = ["rate", "rate_from", "rate_to"])]
    pub pin_urls: bool,
    /// Open a new connection for every request (and ask the server to close it)
    #[arg(long)]
    pub no_keepalive: bool,
    /// Speak HTTP/2 instead of HTTP/1.1: prior knowledge (h2c) on http://, ALPN h2 on https://
    #[arg(long)]
    pub http2: bool,
    #[command(flatten)]
    pub tls: crate::tls::TlsOptions,
    /// Request method
    #[arg(short, long, default_value = "GET")]
    pub method: String,
    /// Request header "Name: value" (repeatable)
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// Request body
    #[arg(long, value_name = "TEXT", conflicts_with = "body_file")]
    pub body: Option<String>,
    /// Request body from a file
    #[arg(long, value_name = "FILE")]
    pub body_file: Option<PathBuf>,
    /// No live progress on stderr
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Args, Debug, Clone)]
pub struct OutputArgs {
    /// Write the JSON summary (schema edgeload-report/1, docs/edgeload.md) to FILE
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write the HdrHistogram percentile spectrum (hdrplot format, ms) to FILE; other series go
    /// beside it as FILE-stem.<series>.ext
    #[arg(long, value_name = "FILE")]
    pub hdr: Option<PathBuf>,
    /// Write a self-contained HTML report with inline SVG charts to FILE
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Pass/fail condition on the run, e.g. 'p99<50ms', 'errors<0.1%', 'rps>1000' (repeatable);
    /// when one fails, edgeload exits with code 99
    #[arg(long = "threshold", value_name = "EXPR", value_parser = Threshold::parse)]
    pub thresholds: Vec<Threshold>,
}

impl OutputArgs {
    pub fn files(&self) -> OutputFiles {
        OutputFiles {
            json: self.json.clone(),
            hdr: self.hdr.clone(),
            html: self.html.clone(),
        }
    }

    /// Refuses, before a run that has no HTTP load beside it, a threshold written `http.…`.
    pub fn refuse_http_load_thresholds(&self) -> Result<(), ThresholdError> {
        self.thresholds.iter().try_for_each(Threshold::refuse_on_http_load)
    }

    /// Judges the thresholds on `report` (before it is printed and written).
    pub fn check(&self, report: &mut Report) {
        crate::threshold::check(report, &self.thresholds);
    }
}

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// A target as NAME=URL (at least two); ratios are against the first
    #[arg(long = "target", value_name = "NAME=URL", required = true, num_args = 1)]
    pub targets: Vec<String>,
    /// Rounds; each round runs every target once, in the order given
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub rounds: usize,
    #[command(flatten)]
    pub load: LoadArgs,
    /// Write every run's figures and the medians as JSON to FILE
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port (0 picks a free one; the address is printed on stdout)
    #[arg(short, long, default_value_t = 8080)]
    pub port: u16,
    /// Added to every response
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_duration)]
    pub delay: Duration,
    /// Stall every DURATION (no response leaves during a stall)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "stall_for")]
    pub stall_every: Option<Duration>,
    /// Length of each stall
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "stall_every")]
    pub stall_for: Option<Duration>,
    /// Size of the 200 response body in bytes [default: 2, "ok"]
    #[arg(long, value_name = "BYTES")]
    pub body_size: Option<usize>,
    /// Worker threads
    #[arg(short, long, value_name = "N", default_value_t = 1)]
    pub threads: usize,
    /// Serve HTTPS (and WSS) with this PEM certificate chain (ALPN h2 and http/1.1)
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's PEM private key
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

/// A flag value that is well formed but not acceptable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Endpoint(#[from] crate::endpoint::EndpointError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("{flag} {value}: {expected}")]
    Invalid {
        flag: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("cannot read {flag} {path}: {error}")]
    Read {
        flag: &'static str,
        path: String,
        error: std::io::Error,
    },
    #[error("--target {0:?}: expected NAME=URL, e.g. nginx=http://127.0.0.1:8080/")]
    Target(String),
}

fn invalid(flag: &'static str, value: impl ToString, expected: &'static str) -> ConfigError {
    ConfigError::Invalid {
        flag,
        value: value.to_string(),
        expected,
    }
}

fn read_file(flag: &'static str, path: &PathBuf) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|error| ConfigError::Read {
        flag,
        path: path.display().to_string(),
        error,
    })
}

/// Reads a URL list: one per line, `#` comments and blank lines skipped. A line may carry headers
/// after its URL, tab-separated (`request_plan::split_url_line`).
pub fn read_urls_file(path: &PathBuf) -> Result<Vec<String>, ConfigError> {
    let bytes = read_file("--urls-file", path)?;
    Ok(String::from_utf8_lossy(&bytes)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect())
}

impl HttpArgs {
    /// All URLs: the positional ones, then the file's.
    pub fn all_urls(&self) -> Result<Vec<String>, ConfigError> {
        let mut urls = self.urls.clone();
        if let Some(p) = &self.urls_file {
            urls.extend(read_urls_file(p)?);
        }
        Ok(urls)
    }
}

/// Default connections of the closed model (wrk's default).
pub const DEFAULT_CONNECTIONS: usize = 10;
/// Default warm-up of a timed run (`--duration`); a counted run (`--requests`) has none.
pub const DEFAULT_WARMUP: Duration = Duration::from_secs(1);

impl LoadArgs {
    /// Validates the flags and prepares the requests to `urls`.
    pub fn to_plan(&self, urls: Vec<String>) -> Result<LoadPlan, ConfigError> {
        let rate_ok = |flag, r: f64| {
            if r.is_finite() && r >= 0.0 {
                Ok(r)
            } else {
                Err(invalid(flag, r, "expected a finite rate >= 0 in requests per second"))
            }
        };
        let model = match (self.rate, self.rate_from, self.rate_to) {
            (Some(r), _, _) => {
                if !(r.is_finite() && r > 0.0) {
                    return Err(invalid("--rate", r, "expected a rate > 0 in requests per second"));
                }
                Some(ArrivalRate::Constant(r))
            }
            (None, Some(from), Some(to)) => {
                let (from, to) = (rate_ok("--rate-from", from)?, rate_ok("--rate-to", to)?);
                if from == 0.0 && to == 0.0 {
                    return Err(invalid(
                        "--rate-to",
                        to,
                        "a ramp needs --rate-from or --rate-to above 0",
                    ));
                }
                Some(ArrivalRate::Ramp { from, to })
            }
            _ => None,
        };
        if self.max_connections == 0 {
            return Err(invalid("--max-connections", 0, "expected at least 1"));
        }
        let model = match model {
            Some(rate) => LoadModel::Open {
                rate,
                max_connections: self.max_connections,
                late_after: self.late_after,
            },
            None => {
                let connections = self.connections.unwrap_or(DEFAULT_CONNECTIONS);
                if connections == 0 {
                    return Err(invalid("--connections", 0, "expected at least 1"));
                }
                LoadModel::Closed { connections }
            }
        };
        if self.duration.is_zero() {
            return Err(invalid("--duration", "0s", "expected a duration above zero"));
        }
        if self.requests == Some(0) {
            return Err(invalid("--requests", 0, "expected at least 1"));
        }
        if self.timeout.is_zero() {
            return Err(invalid("--timeout", "0s", "expected a duration above zero"));
        }
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = match self.threads {
            Some(0) => return Err(invalid("--threads", 0, "expected at least 1")),
            Some(t) => t,
            None => match model {
                LoadModel::Closed { connections } => cpus.min(connections),
                LoadModel::Open { max_connections, .. } => cpus.min(max_connections),
            },
        };
        if let LoadModel::Closed { connections } = model
            && threads > connections
        {
            return Err(invalid(
                "--threads",
                threads,
                "expected at most --connections (each thread needs a connection)",
            ));
        }
        if let LoadModel::Closed { connections } = model
            && self.pin_urls
            && connections < urls.len()
        {
            return Err(invalid(
                "--pin-urls",
                format!("{connections} connections for {} URLs", urls.len()),
                "expected at least as many --connections as URLs (each URL needs a connection)",
            ));
        }
        let body = match (&self.body, &self.body_file) {
            (Some(text), _) => Bytes::from(text.clone().into_bytes()),
            (None, Some(path)) => Bytes::from(read_file("--body-file", path)?),
            (None, None) => Bytes::new(),
        };
        let spec = RequestSpec {
            urls,
            method: self.method.clone(),
            headers: self.headers.clone(),
            body,
            version: if self.http2 {
                HttpVersion::Http2
            } else {
                HttpVersion::Http1
            },
            keep_alive: !self.no_keepalive,
            tls: self.tls.clone(),
        };
        Ok(LoadPlan {
            requests: Arc::new(RequestPlan::new(&spec)?),
            model,
            threads,
            warmup: self.warmup.unwrap_or(match self.requests {
                Some(_) => Duration::ZERO,
                None => DEFAULT_WARMUP,
            }),
            duration: self.duration,
            count: self.requests,
            timeout: self.timeout,
            pin_urls: self.pin_urls,
        })
    }
}

/// Splits `NAME=URL`.
pub fn parse_target(text: &str) -> Result<(String, String), ConfigError> {
    match text.split_once('=') {
        Some((name, url)) if !name.trim().is_empty() && !url.trim().is_empty() => {
            Ok((name.trim().to_owned(), url.trim().to_owned()))
        }
        _ => Err(ConfigError::Target(text.to_owned())),
    }
}

impl ServeArgs {
    pub fn config(&self) -> Result<ServeConfig, ConfigError> {
        let stall = match (self.stall_every, self.stall_for) {
            (Some(every), Some(length)) => {
                if every.is_zero() || length >= every {
                    return Err(invalid(
                        "--stall-for",
                        format!("{length:?} (with --stall-every {every:?})"),
                        "expected a stall shorter than the period between stalls",
                    ));
                }
                Some(Stall { every, length })
            }
            _ => None,
        };
        if self.threads == 0 {
            return Err(invalid("--threads", 0, "expected at least 1"));
        }
        let body = match self.body_size {
            Some(n) => Bytes::from(vec![b'x'; n]),
            None => Bytes::from_static(b"ok"),
        };
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(crate::tls::server_config(cert, key)?),
            _ => None,
        };
        Ok(ServeConfig {
            delay: self.delay,
            stall,
            body,
            tls,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<LoadPlan, String> {
        let mut full = vec!["edgeload", "http"];
        full.extend_from_slice(args);
        let cli = Cli::try_parse_from(full).map_err(|e| e.to_string())?;
        let Command::Http(h) = cli.command else { unreachable!() };
        let urls = h.all_urls().map_err(|e| e.to_string())?;
        h.load.to_plan(urls).map_err(|e| e.to_string())
    }

    #[test]
    fn closed_is_the_default_model() {
        let plan = parse(&["http://127.0.0.1:1/", "-c", "4", "-t", "2"]).unwrap();
        assert_eq!(plan.model, LoadModel::Closed { connections: 4 });
        assert_eq!(plan.threads, 2);
        assert_eq!(plan.duration, Duration::from_secs(10));
    }

    #[test]
    fn rate_flags_select_the_open_model() {
        let plan = parse(&["http://127.0.0.1:1/", "--rate", "500", "--max-connections", "8"]).unwrap();
        assert!(matches!(
            plan.model,
            LoadModel::Open {
                rate: ArrivalRate::Constant(500.0),
                max_connections: 8,
                ..
            }
        ));
        let plan = parse(&["http://127.0.0.1:1/", "--rate-from", "0", "--rate-to", "100"]).unwrap();
        assert!(matches!(
            plan.model,
            LoadModel::Open {
                rate: ArrivalRate::Ramp { from: 0.0, to: 100.0 },
                ..
            }
        ));
    }

    #[test]
    fn bad_values_are_named() {
        let cases: &[(&[&str], &str)] = &[
            (&["http://127.0.0.1:1/", "--rate", "0"], "--rate 0"),
            (&["http://127.0.0.1:1/", "--rate", "-5"], "--rate -5"),
            (
                &["http://127.0.0.1:1/", "--rate-from", "0", "--rate-to", "0"],
                "--rate-to 0",
            ),
            (&["http://127.0.0.1:1/", "-c", "0"], "--connections 0"),
            (&["http://127.0.0.1:1/", "-c", "2", "-t", "3"], "--threads 3"),
            (&["http://127.0.0.1:1/", "-d", "0s"], "--duration 0s"),
            (&["http://127.0.0.1:1/", "-d", "ten"], "\"ten\""),
            (
                &["http://127.0.0.1:1/", "--rate", "5", "-c", "3"],
                "cannot be used with",
            ),
            (&["http://127.0.0.1:1/", "--rate-from", "5"], "--rate-to"),
            (&["ftp://x/"], "only http://"),
            (
                &["http://127.0.0.1:1/", "--body-file", "/nonexistent/body"],
                "/nonexistent/body",
            ),
        ];
        for (args, want) in cases {
            let e = parse(args).unwrap_err();
            assert!(e.contains(want), "{args:?}: {e}");
        }
    }

    #[test]
    fn targets_split_on_the_first_equals_sign() {
        assert_eq!(
            parse_target("a=http://h/?x=1").unwrap(),
            ("a".into(), "http://h/?x=1".into())
        );
        assert!(parse_target("nourl").unwrap_err().to_string().contains("\"nourl\""));
        assert!(parse_target("=http://h/").is_err());
    }
}
