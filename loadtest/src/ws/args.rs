//! `edgeload ws <scenario> URL …`: the flags, their per-scenario defaults, and their validation
//! into a [`WsPlan`]. Every rejected value is named in its message.

use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::cli::{ConfigError, OutputArgs};
use crate::duration_arg::parse_duration;
use crate::ws::connect::{TargetError, WsTarget, client_config};
use crate::ws::echo::MIN_MESSAGE;

/// A WebSocket scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WsScenario {
    /// Connect, upgrade, close: closed (-c N back to back) or open (--rate new connections/s)
    Handshake,
    /// Hold N tunnels open; sample edgeload's and --pid's memory and fds per tunnel
    Idle,
    /// Small messages at --rate per socket, latency of each echo (open model)
    Echo,
    /// Large messages (1 MiB by default), one at a time per socket: throughput and latency
    Large,
    /// New connections at --rate, each held for --hold, then closed (open model)
    Churn,
}

impl WsScenario {
    pub fn label(self) -> &'static str {
        match self {
            WsScenario::Handshake => "handshake",
            WsScenario::Idle => "idle",
            WsScenario::Echo => "echo",
            WsScenario::Large => "large",
            WsScenario::Churn => "churn",
        }
    }
}

#[derive(Args, Debug)]
pub struct WsArgs {
    #[arg(value_enum)]
    pub scenario: WsScenario,
    /// ws:// or wss:// URL (http://, https:// mean the same); `edgeload serve` echoes on any path
    #[arg(value_name = "URL")]
    pub url: String,
    #[command(flatten)]
    pub tls: crate::tls::TlsOptions,
    /// Sockets: idle tunnels [1000], echo/large sockets [10/1], handshake closed-model
    /// connections [10]
    #[arg(short, long, value_name = "N")]
    pub connections: Option<usize>,
    /// handshake/churn: new connections per second (churn: required); echo/large: messages per
    /// second per socket [echo: 10; large: none, one at a time]
    #[arg(short, long, value_name = "PER_S", allow_negative_numbers = true)]
    pub rate: Option<f64>,
    /// Open handshake/churn: connections in progress at once (held ones included); slots
    /// beyond wait and count as late
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub max_connections: usize,
    /// Open model: a slot started later than this after its intended time counts as late
    #[arg(long, value_name = "DURATION", default_value = "2ms", value_parser = parse_duration)]
    pub late_after: Duration,
    /// churn: how long each connection stays open before it is closed
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    pub hold: Duration,
    /// echo/large: message size in bytes (at least 8, at most 16 MiB) [echo: 32; large: 1048576]
    #[arg(long, value_name = "BYTES")]
    pub message_size: Option<usize>,
    /// Read buffer per socket in bytes (tungstenite's default is 128 KiB)
    /// [idle/handshake/churn: 512; echo: 4096; large: 65536]
    #[arg(long, value_name = "BYTES")]
    pub read_buffer: Option<usize>,
    /// idle: also sample this process's memory and open fds (e.g. the proxy's pid)
    #[arg(long, value_name = "PID")]
    pub pid: Option<u32>,
    /// Measured window; idle: how long the tunnels are held (opening included)
    #[arg(short, long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Warm-up before the measured window [1s; idle: 0s]
    #[arg(short, long, value_name = "DURATION", value_parser = parse_duration)]
    pub warmup: Option<Duration>,
    /// Per upgrade (connect included), per closing handshake and per echo
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Worker threads [default: CPUs usable, at most the sockets]
    #[arg(short, long, value_name = "N")]
    pub threads: Option<usize>,
    /// Extra upgrade request header "Name: value" (repeatable), e.g. a cookie or Authorization
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// No live progress on stderr
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub scenario_file: crate::scenario::ScenarioArg,
}

/// Largest message: tungstenite's default frame limit on the receiving side (16 MiB); every
/// message is sent as one frame.
pub const MAX_MESSAGE: usize = 16 << 20;

/// A validated WebSocket run.
#[derive(Debug, Clone)]
pub struct WsPlan {
    pub scenario: WsScenario,
    pub target: WsTarget,
    pub connections: usize,
    pub rate: Option<f64>,
    pub max_connections: usize,
    pub late_after: Duration,
    pub hold: Duration,
    pub message_size: usize,
    pub read_buffer: usize,
    pub pid: Option<u32>,
    pub threads: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub timeout: Duration,
}

fn invalid(flag: &'static str, value: impl ToString, expected: &'static str) -> ConfigError {
    ConfigError::Invalid {
        flag,
        value: value.to_string(),
        expected,
    }
}

impl WsArgs {
    pub fn to_plan(&self) -> Result<WsPlan, ConfigError> {
        use WsScenario::*;
        let s = self.scenario;
        let connections = self.connections.unwrap_or(match s {
            Idle => 1000,
            Large => 1,
            Handshake | Echo | Churn => 10,
        });
        if connections == 0 {
            return Err(invalid("--connections", 0, "expected at least 1"));
        }
        let rate = match (s, self.rate) {
            (Idle, Some(_)) => {
                return Err(invalid(
                    "--rate",
                    self.rate.unwrap_or_default(),
                    "idle opens its tunnels as fast as it can; leave --rate out",
                ));
            }
            (Churn, None) => {
                return Err(invalid(
                    "--rate",
                    "(none)",
                    "churn needs --rate, new connections per second",
                ));
            }
            (Echo, None) => Some(10.0),
            (_, r) => r,
        };
        if let Some(r) = rate
            && !(r.is_finite() && r > 0.0)
        {
            return Err(invalid("--rate", r, "expected a rate > 0 per second"));
        }
        let message_size = self.message_size.unwrap_or(if s == Large { 1 << 20 } else { 32 });
        if !(MIN_MESSAGE..=MAX_MESSAGE).contains(&message_size) {
            return Err(invalid(
                "--message-size",
                message_size,
                "expected 8 to 16777216 bytes (8 carry the sequence number; 16 MiB is the usual frame limit)",
            ));
        }
        let read_buffer = self.read_buffer.unwrap_or(match s {
            Idle | Handshake | Churn => 512,
            Echo => 4096,
            Large => 64 * 1024,
        });
        if read_buffer < 64 {
            return Err(invalid("--read-buffer", read_buffer, "expected at least 64 bytes"));
        }
        if self.max_connections == 0 {
            return Err(invalid("--max-connections", 0, "expected at least 1"));
        }
        if self.duration.is_zero() {
            return Err(invalid("--duration", "0s", "expected a duration above zero"));
        }
        if self.timeout.is_zero() {
            return Err(invalid("--timeout", "0s", "expected a duration above zero"));
        }
        if self.pid.is_some() && s != Idle {
            return Err(invalid(
                "--pid",
                self.pid.unwrap_or(0),
                "only the idle scenario samples a process",
            ));
        }
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = match self.threads {
            Some(0) => return Err(invalid("--threads", 0, "expected at least 1")),
            Some(t) => t,
            None if rate.is_some() && s != Echo && s != Large => cpus,
            None => cpus.min(connections),
        };
        let config = client_config(read_buffer, message_size.max(1 << 20));
        let target = WsTarget::new(&self.url, &self.headers, config, &self.tls).map_err(|e| match e {
            TargetError::Header(h) => invalid("--header", h, "expected \"Name: value\""),
            TargetError::Tls(e) => ConfigError::Tls(e),
            TargetError::Url(e) => ConfigError::Endpoint(e),
        })?;
        Ok(WsPlan {
            scenario: s,
            target,
            connections,
            rate,
            max_connections: self.max_connections,
            late_after: self.late_after,
            hold: self.hold,
            message_size,
            read_buffer,
            pid: self.pid,
            threads,
            warmup: self.warmup.unwrap_or(if s == Idle {
                Duration::ZERO
            } else {
                Duration::from_secs(1)
            }),
            duration: self.duration,
            timeout: self.timeout,
        })
    }
}
