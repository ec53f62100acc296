//! Route activity as one exchange records it: the route's `last_activity` is moved forward and,
//! with metrics on, the update is timed into `last_activity_updating`, the summary
//! configurable-http-proxy exposes for the same step (its updates go to a storage backend, ours
//! are one atomic store, so the numbers are small; dashboards built for CHP still find the name).
//!
//! What counts as activity is decided by the callers: a request body chunk, a response with a
//! status below 300 delivered whole, a chunk from the client through a WebSocket tunnel.

use std::sync::Arc;
use std::time::Instant;

use metrics::Histogram;

use crate::metrics::Metrics;
use crate::route_table::Route;

#[derive(Clone)]
pub struct Activity {
    route: Arc<Route>,
    /// `None` without `--metrics-port`: then no clock is read.
    timing: Option<Histogram>,
}

impl Activity {
    pub fn new(route: Arc<Route>, metrics: &Metrics) -> Activity {
        Activity {
            route,
            timing: metrics.is_enabled().then(|| metrics.last_activity_updating.clone()),
        }
    }

    pub fn mark(&self) {
        match &self.timing {
            Some(histogram) => {
                let began = Instant::now();
                self.route.mark_active();
                histogram.record(began.elapsed().as_secs_f64());
            }
            None => self.route.mark_active(),
        }
    }
}
