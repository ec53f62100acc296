//! Prometheus metrics with configurable-http-proxy's names (docs/routing.md#metrics) plus edgeproxy's own.
//!
//! Handles are registered once at start-up and kept, so the request path only touches atomics.
//! Without `--metrics-port` every handle is a no-op and nothing is recorded or buffered.
//! The recorder is owned here, not installed globally, so several proxies can share a process.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Label, Level, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

const META: Metadata<'static> = Metadata::new("edgeproxy", Level::INFO, None);

pub struct Metrics {
    recorder: Option<Arc<PrometheusRecorder>>,
    handle: Option<PrometheusHandle>,
    pub requests_web: Counter,
    pub requests_ws: Counter,
    pub api_route_get: Counter,
    pub api_route_add: Counter,
    pub api_route_delete: Counter,
    pub find_target_for_req: Histogram,
    pub last_activity_updating: Histogram,
    pub request_duration: Histogram,
    pub open_connections: Gauge,
    pub open_tunnels: Gauge,
    pub routes: Gauge,
    requests_proxy: StatusCounters,
    requests_api: StatusCounters,
}

/// One counter per status code, registered on first use.
struct StatusCounters {
    name: &'static str,
    by_code: Box<[OnceLock<Counter>]>,
}

impl Metrics {
    /// Metrics that record nothing (no `--metrics-port`).
    pub fn disabled() -> Metrics {
        Metrics::from_recorder(None)
    }

    pub fn enabled() -> Metrics {
        let recorder = PrometheusBuilder::new()
            .set_quantiles(&[0.01, 0.05, 0.5, 0.9, 0.95, 0.99, 0.999])
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full("edgeproxy_request_duration_seconds".to_owned()),
                    &[
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    ],
                )
            })
            .map(|b| b.build_recorder())
            // The quantiles and buckets above are constants that the builder accepts; should
            // that ever change, fall back to the defaults rather than run without metrics.
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
        Metrics::from_recorder(Some(Arc::new(recorder)))
    }

    fn from_recorder(recorder: Option<Arc<PrometheusRecorder>>) -> Metrics {
        let describe = |name: &'static str, unit: Option<Unit>, help: &'static str| {
            if let Some(r) = &recorder {
                r.describe_counter(KeyName::from_const_str(name), unit, SharedString::const_str(help));
            }
        };
        describe("requests_web", None, "HTTP requests proxied (health checks excluded)");
        describe("requests_ws", None, "WebSocket upgrade requests proxied");
        describe("requests_proxy", None, "Responses on the public listener, by status");
        describe("requests_api", None, "Responses on the admin API, by status");
        describe(
            "find_target_for_req",
            Some(Unit::Seconds),
            "Time to find the route of a request",
        );
        describe(
            "last_activity_updating",
            Some(Unit::Seconds),
            "Time to record a route's last activity",
        );
        describe(
            "edgeproxy_request_duration_seconds",
            Some(Unit::Seconds),
            "Time from request to response head",
        );
        let counter = |name: &'static str| {
            recorder.as_ref().map_or(Counter::noop(), |r| {
                r.register_counter(&Key::from_static_name(name), &META)
            })
        };
        let gauge = |name: &'static str| {
            recorder
                .as_ref()
                .map_or(Gauge::noop(), |r| r.register_gauge(&Key::from_static_name(name), &META))
        };
        let histogram = |name: &'static str| {
            recorder.as_ref().map_or(Histogram::noop(), |r| {
                r.register_histogram(&Key::from_static_name(name), &META)
            })
        };
        Metrics {
            handle: recorder.as_ref().map(|r| r.handle()),
            requests_web: counter("requests_web"),
            requests_ws: counter("requests_ws"),
            api_route_get: counter("api_route_get"),
            api_route_add: counter("api_route_add"),
            api_route_delete: counter("api_route_delete"),
            find_target_for_req: histogram("find_target_for_req"),
            last_activity_updating: histogram("last_activity_updating"),
            request_duration: histogram("edgeproxy_request_duration_seconds"),
            open_connections: gauge("edgeproxy_open_connections"),
            open_tunnels: gauge("edgeproxy_open_tunnels"),
            routes: gauge("edgeproxy_routes"),
            requests_proxy: StatusCounters::new("requests_proxy"),
            requests_api: StatusCounters::new("requests_api"),
            recorder,
        }
    }

    /// A counter with one label, for metrics owned by other modules (edge auth).
    pub fn labeled_counter(&self, name: &'static str, label: &'static str, value: &'static str) -> Counter {
        self.recorder.as_ref().map_or(Counter::noop(), |r| {
            r.register_counter(&Key::from_parts(name, vec![Label::new(label, value)]), &META)
        })
    }

    pub fn histogram(&self, name: &'static str, help: &'static str) -> Histogram {
        self.recorder.as_ref().map_or(Histogram::noop(), |r| {
            r.describe_histogram(
                KeyName::from_const_str(name),
                Some(Unit::Seconds),
                SharedString::const_str(help),
            );
            r.register_histogram(&Key::from_static_name(name), &META)
        })
    }

    /// A gauge owned by another module (the route store).
    pub fn gauge(&self, name: &'static str, help: &'static str) -> Gauge {
        self.recorder.as_ref().map_or(Gauge::noop(), |r| {
            r.describe_gauge(KeyName::from_const_str(name), None, SharedString::const_str(help));
            r.register_gauge(&Key::from_static_name(name), &META)
        })
    }

    /// A counter owned by another module (the route store).
    pub fn counter(&self, name: &'static str, help: &'static str) -> Counter {
        self.recorder.as_ref().map_or(Counter::noop(), |r| {
            r.describe_counter(KeyName::from_const_str(name), None, SharedString::const_str(help));
            r.register_counter(&Key::from_static_name(name), &META)
        })
    }

    pub fn is_enabled(&self) -> bool {
        self.recorder.is_some()
    }

    pub fn proxy_status(&self, status: u16) {
        self.requests_proxy.increment(self.recorder.as_deref(), status);
    }

    pub fn api_status(&self, status: u16) {
        self.requests_api.increment(self.recorder.as_deref(), status);
    }

    /// The Prometheus text exposition, with the `process_*` metrics appended.
    pub fn render(&self) -> String {
        let mut text = self.handle.as_ref().map(|h| h.render()).unwrap_or_default();
        text.push_str(&process_metrics());
        text
    }

    /// Folds buffered histogram samples into their summaries; call periodically.
    pub fn run_upkeep(&self) {
        if let Some(h) = &self.handle {
            h.run_upkeep();
        }
    }

    pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);
}

impl StatusCounters {
    fn new(name: &'static str) -> Self {
        StatusCounters {
            name,
            by_code: (0..600).map(|_| OnceLock::new()).collect(),
        }
    }

    fn increment(&self, recorder: Option<&PrometheusRecorder>, status: u16) {
        let (Some(recorder), Some(slot)) = (recorder, self.by_code.get(status as usize)) else {
            return;
        };
        slot.get_or_init(|| {
            let key = Key::from_parts(self.name, vec![Label::new("status", status.to_string())]);
            recorder.register_counter(&key, &META)
        })
        .increment(1);
    }
}

/// `process_*` metrics read from /proc at scrape time (Linux only; empty elsewhere).
fn process_metrics() -> String {
    let mut out = String::new();
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return out;
    };
    // Fields after the parenthesised command name, which may itself contain spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<f64>().ok());
    let ticks = 100.0; // USER_HZ on every Linux we run on.
    let page = 4096.0;
    if let (Some(utime), Some(stime)) = (field(14), field(15)) {
        out.push_str(&format!(
            "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total {}\n",
            (utime + stime) / ticks
        ));
    }
    if let Some(vsize) = field(23) {
        out.push_str(&format!(
            "# TYPE process_virtual_memory_bytes gauge\nprocess_virtual_memory_bytes {vsize}\n"
        ));
    }
    if let Some(rss) = field(24) {
        out.push_str(&format!(
            "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {}\n",
            rss * page
        ));
    }
    if let (Some(start), Ok(uptime)) = (field(22), std::fs::read_to_string("/proc/uptime")) {
        let boot = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0)
            - uptime
                .split_whitespace()
                .next()
                .and_then(|u| u.parse::<f64>().ok())
                .unwrap_or(0.0);
        out.push_str(&format!(
            "# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds {:.0}\n",
            boot + start / ticks
        ));
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        out.push_str(&format!(
            "# TYPE process_open_fds gauge\nprocess_open_fds {}\n",
            fds.count()
        ));
    }
    out
}
