//! Prometheus metrics under JupyterHub's names (`jupyterhub_…`), so existing dashboards and
//! alerts work. The recorder is owned, not installed globally: the embedded proxy has its own.
//! Label values are created at zero up front, as JupyterHub does, so alerts work before the
//! first event.

use std::sync::Arc;

use metrics::{Counter, Gauge, Histogram, Key, Label, Level, Metadata, Recorder};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

const META: Metadata<'static> = Metadata::new("edgehub", Level::INFO, None);

pub struct HubMetrics {
    recorder: Arc<PrometheusRecorder>,
    handle: PrometheusHandle,
    pub running_servers: Gauge,
    pub total_users: Gauge,
    pub check_routes_duration: Histogram,
    pub hub_startup_duration: Histogram,
    pub init_spawners_duration: Histogram,
    pub proxy_poll_duration: Histogram,
    pub logout_duration: Histogram,
    /// 1 while this replica holds the background lease (reconcile, culling, takeovers).
    pub background_leader: Gauge,
    /// `jupyterhub_active_users{period}`: each period's length and its gauge.
    pub active_users: Vec<(std::time::Duration, Gauge)>,
}

/// The periods of `jupyterhub_active_users`, as JupyterHub's `ActiveUserPeriods`.
const ACTIVE_USER_PERIODS: [(&str, u64); 3] = [("24h", 86_400), ("7d", 7 * 86_400), ("30d", 30 * 86_400)];

/// Outcome labels of a spawn, as JupyterHub's `server_spawn_duration_seconds{status}`.
#[derive(Debug, Clone, Copy)]
pub enum SpawnStatus {
    Success,
    Failure,
    Throttled,
    TooManyUsers,
}

impl SpawnStatus {
    fn labels(self) -> [(&'static str, &'static str); 2] {
        match self {
            SpawnStatus::Success => [("status", "success"), ("reason", "")],
            SpawnStatus::Failure => [("status", "failure"), ("reason", "error")],
            SpawnStatus::Throttled => [("status", "throttled"), ("reason", "throttled")],
            SpawnStatus::TooManyUsers => [("status", "too-many-users"), ("reason", "too-many-users")],
        }
    }
}

const SPAWN_BUCKETS: &[f64] = &[0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 180.0, 300.0, 600.0];
const REQUEST_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

impl HubMetrics {
    pub fn new() -> HubMetrics {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("jupyterhub_server_spawn_duration_seconds".into()),
                SPAWN_BUCKETS,
            )
            .and_then(|b| b.set_buckets(REQUEST_BUCKETS))
            .map(|b| b.build_recorder())
            // Constant buckets the builder accepts; fall back rather than run without metrics.
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
        let handle = recorder.handle();
        let recorder = Arc::new(recorder);
        let gauge = |name: &'static str| recorder.register_gauge(&Key::from_static_name(name), &META);
        let histogram = |name: &'static str| recorder.register_histogram(&Key::from_static_name(name), &META);
        let metrics = HubMetrics {
            running_servers: gauge("jupyterhub_running_servers"),
            total_users: gauge("jupyterhub_total_users"),
            check_routes_duration: histogram("jupyterhub_check_routes_duration_seconds"),
            hub_startup_duration: histogram("jupyterhub_hub_startup_duration_seconds"),
            init_spawners_duration: histogram("jupyterhub_init_spawners_duration_seconds"),
            proxy_poll_duration: histogram("jupyterhub_proxy_poll_duration_seconds"),
            logout_duration: histogram("jupyterhub_logout_duration_seconds"),
            background_leader: gauge("edgehub_background_leader"),
            active_users: ACTIVE_USER_PERIODS
                .iter()
                .map(|(label, secs)| {
                    let key = Key::from_parts(
                        "jupyterhub_active_users",
                        vec![Label::from_static_parts("period", label)],
                    );
                    (
                        std::time::Duration::from_secs(*secs),
                        recorder.register_gauge(&key, &META),
                    )
                })
                .collect(),
            recorder,
            handle,
        };
        for status in [
            SpawnStatus::Success,
            SpawnStatus::Failure,
            SpawnStatus::Throttled,
            SpawnStatus::TooManyUsers,
        ] {
            let _ = metrics.spawn(status);
        }
        for ok in [true, false] {
            let _ = metrics.proxy_add(ok);
            let _ = metrics.proxy_delete(ok);
            let _ = metrics.server_stop(ok);
            let _ = metrics.login(ok);
        }
        metrics
    }

    fn labeled_histogram(&self, name: &'static str, labels: &[(&'static str, &'static str)]) -> Histogram {
        let labels: Vec<Label> = labels.iter().map(|(k, v)| Label::from_static_parts(k, v)).collect();
        self.recorder.register_histogram(&Key::from_parts(name, labels), &META)
    }

    fn status(ok: bool) -> [(&'static str, &'static str); 1] {
        [("status", if ok { "success" } else { "failure" })]
    }

    pub fn spawn(&self, status: SpawnStatus) -> Histogram {
        self.labeled_histogram("jupyterhub_server_spawn_duration_seconds", &status.labels())
    }

    pub fn proxy_add(&self, ok: bool) -> Histogram {
        self.labeled_histogram("jupyterhub_proxy_add_duration_seconds", &Self::status(ok))
    }

    pub fn proxy_delete(&self, ok: bool) -> Histogram {
        self.labeled_histogram("jupyterhub_proxy_delete_duration_seconds", &Self::status(ok))
    }

    pub fn server_stop(&self, ok: bool) -> Histogram {
        self.labeled_histogram("jupyterhub_server_stop_seconds", &Self::status(ok))
    }

    pub fn server_poll(&self, ok: bool) -> Histogram {
        self.labeled_histogram("jupyterhub_server_poll_duration_seconds", &Self::status(ok))
    }

    pub fn login(&self, ok: bool) -> Histogram {
        self.labeled_histogram("jupyterhub_login_duration_seconds", &Self::status(ok))
    }

    /// `jupyterhub_request_duration_seconds{method,handler,code}`; `handler` is the route's
    /// pattern (`/hub/api/users/{name}`), never the raw path, so the label set stays bounded.
    pub fn request(&self, method: &str, handler: &'static str, code: u16) -> Histogram {
        let labels = vec![
            Label::new("method", method.to_owned()),
            Label::from_static_parts("handler", handler),
            Label::new("code", code.to_string()),
        ];
        self.recorder
            .register_histogram(&Key::from_parts("jupyterhub_request_duration_seconds", labels), &META)
    }

    pub fn counter(&self, name: &'static str) -> Counter {
        self.recorder.register_counter(&Key::from_static_name(name), &META)
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        self.handle.render()
    }
}

impl Default for HubMetrics {
    fn default() -> Self {
        HubMetrics::new()
    }
}
