//! Scenario files: `edgeload http --scenario FILE` reads a run's load options and thresholds
//! from TOML, so that a CI job keeps them beside its code. Keys are the long flag names
//! (`max-connections`, `late-after`), lists are `urls`, `headers` and `thresholds`:
//!
//! ```toml
//! urls = ["http://127.0.0.1:8080/"]
//! rate = 2000
//! requests = 20000
//! thresholds = ["p99<50ms", "errors<0.1%"]
//! ```
//!
//! A flag given on the command line wins over the file. Flags that choose between alternatives
//! win as a group, so that a file's `rate` cannot turn `-c 50` into an open run: any of
//! `-c/--rate/--rate-from/--rate-to` on the command line sets the load model (the file's model
//! keys are ignored), `-d` or `-n` sets the run's length, `--body` or `--body-file` the body,
//! URLs (positional or `--urls-file`) the URLs, and any `--threshold` the thresholds.

use std::path::{Path, PathBuf};

use clap::ArgMatches;
use clap::parser::ValueSource;
use serde::Deserialize;

use crate::cli::HttpArgs;
use crate::duration_arg::parse_duration;
use crate::threshold::Threshold;

/// The keys a scenario file may hold; any other is an error (a misspelt key must not be
/// silently ignored by a CI gate).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ScenarioFile {
    #[serde(default)]
    pub urls: Vec<String>,
    pub connections: Option<usize>,
    pub threads: Option<usize>,
    pub rate: Option<f64>,
    pub rate_from: Option<f64>,
    pub rate_to: Option<f64>,
    pub max_connections: Option<usize>,
    pub late_after: Option<String>,
    pub duration: Option<String>,
    pub requests: Option<u64>,
    pub warmup: Option<String>,
    pub timeout: Option<String>,
    pub no_keepalive: Option<bool>,
    pub http2: Option<bool>,
    pub method: Option<String>,
    #[serde(default)]
    pub headers: Vec<String>,
    pub body: Option<String>,
    pub body_file: Option<PathBuf>,
    #[serde(default)]
    pub thresholds: Vec<String>,
}

/// A scenario file that cannot be used; the message names the file and the key.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read --scenario {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("--scenario {path}: {error}")]
    Parse { path: String, error: String },
    #[error("--scenario {path}: {key} = {value:?}: {problem}")]
    Value {
        path: String,
        key: &'static str,
        value: String,
        problem: String,
    },
    #[error("--scenario {path}: {problem}")]
    Conflict { path: String, problem: &'static str },
}

impl ScenarioFile {
    pub fn read(path: &Path) -> Result<ScenarioFile, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|error| ScenarioError::Read {
            path: path.display().to_string(),
            error,
        })?;
        toml::from_str(&text).map_err(|e| ScenarioError::Parse {
            path: path.display().to_string(),
            error: e.to_string(),
        })
    }
}

/// Reads `args.scenario`, if any, and fills every option that the command line (`matches`, the
/// `http` subcommand's) did not set.
pub fn apply(args: &mut HttpArgs, matches: &ArgMatches) -> Result<(), ScenarioError> {
    let Some(path) = args.scenario.clone() else {
        return Ok(());
    };
    let file = ScenarioFile::read(&path)?;
    let shown = path.display().to_string();
    let on_cli = |id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);
    let conflict = |problem| ScenarioError::Conflict {
        path: shown.clone(),
        problem,
    };
    let duration = |key: &'static str, text: &Option<String>| {
        text.as_deref()
            .map(|t| {
                parse_duration(t).map_err(|e| ScenarioError::Value {
                    path: shown.clone(),
                    key,
                    value: t.to_owned(),
                    problem: e.to_string(),
                })
            })
            .transpose()
    };

    if file.connections.is_some() && (file.rate.is_some() || file.rate_from.is_some()) {
        return Err(conflict("connections and rate/rate-from cannot be used together"));
    }
    if file.rate.is_some() && (file.rate_from.is_some() || file.rate_to.is_some()) {
        return Err(conflict("rate and rate-from/rate-to cannot be used together"));
    }
    if file.rate_from.is_some() != file.rate_to.is_some() {
        return Err(conflict("rate-from and rate-to go together (a ramp)"));
    }
    if file.duration.is_some() && file.requests.is_some() {
        return Err(conflict("duration and requests cannot be used together"));
    }
    if file.body.is_some() && file.body_file.is_some() {
        return Err(conflict("body and body-file cannot be used together"));
    }

    let load = &mut args.load;
    if !["connections", "rate", "rate_from", "rate_to"].into_iter().any(on_cli) {
        load.connections = file.connections;
        load.rate = file.rate;
        load.rate_from = file.rate_from;
        load.rate_to = file.rate_to;
    }
    if !on_cli("duration") && !on_cli("requests") {
        if let Some(d) = duration("duration", &file.duration)? {
            load.duration = d;
        }
        load.requests = file.requests;
    }
    if !on_cli("body") && !on_cli("body_file") && (file.body.is_some() || file.body_file.is_some()) {
        load.body = file.body.clone();
        load.body_file = file.body_file.clone();
    }
    if !on_cli("threads") && file.threads.is_some() {
        load.threads = file.threads;
    }
    if !on_cli("max_connections")
        && let Some(n) = file.max_connections
    {
        load.max_connections = n;
    }
    if !on_cli("late_after")
        && let Some(d) = duration("late-after", &file.late_after)?
    {
        load.late_after = d;
    }
    if !on_cli("warmup")
        && let Some(d) = duration("warmup", &file.warmup)?
    {
        load.warmup = Some(d);
    }
    if !on_cli("timeout")
        && let Some(d) = duration("timeout", &file.timeout)?
    {
        load.timeout = d;
    }
    if !on_cli("no_keepalive") {
        load.no_keepalive = file.no_keepalive.unwrap_or(false);
    }
    if !on_cli("http2") {
        load.http2 = file.http2.unwrap_or(false);
    }
    if !on_cli("method")
        && let Some(m) = &file.method
    {
        load.method = m.clone();
    }
    if !on_cli("headers") {
        load.headers = file.headers.clone();
    }
    if !on_cli("urls") && !on_cli("urls_file") {
        args.urls = file.urls.clone();
    }
    if !on_cli("thresholds") {
        args.output.thresholds = file
            .thresholds
            .iter()
            .map(|t| {
                Threshold::parse(t).map_err(|e| ScenarioError::Value {
                    path: shown.clone(),
                    key: "thresholds",
                    value: t.clone(),
                    problem: e.to_string(),
                })
            })
            .collect::<Result<_, _>>()?;
    }
    Ok(())
}
