//! Watching a running job: Prometheus metrics (`--metrics-addr`), the business gauges of its
//! analyses, and the progress line on a terminal.
//!
//! - [`registry`]: the process's metrics, shared by its worker threads (`Arc` + atomics),
//!   encoded on each scrape;
//! - [`results`]: `logflow_result`, the latest window's value of an analysis's `gauges`;
//! - [`server`]: the `/metrics` HTTP listener;
//! - [`progress`]: the progress line;
//! - [`Observer`]: all of them around one run, for `logflow run`.

pub mod listener;
pub mod progress;
pub mod registry;
pub mod results;
pub mod server;
mod sink;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use registry::{Identity, Metrics, PartitionMeter, Readiness};
pub use sink::MeteredSink;

use crate::spec::plan::JobPlan;
use crate::Error;

/// What to show while a job runs.
#[derive(Clone, Debug, Default)]
pub struct ObserveOptions {
    /// Serve `/metrics` on this `HOST:PORT` (no listener when absent).
    pub metrics_addr: Option<String>,
    /// Draw the progress line on stderr.
    pub progress: bool,
}

/// The metrics, endpoint and progress line of one run.
pub struct Observer {
    metrics: Arc<Metrics>,
    address: Option<SocketAddr>,
    progress: Option<progress::Progress>,
}

impl Observer {
    /// Creates the metrics and starts the endpoint and progress line as asked.
    pub fn start(
        plan: &JobPlan,
        identity: Identity,
        opts: &ObserveOptions,
    ) -> Result<Observer, Error> {
        let metrics = Arc::new(Metrics::new(plan, identity));
        let address = match &opts.metrics_addr {
            Some(addr) => Some(server::serve(addr, Arc::clone(&metrics))?),
            None => None,
        };
        let progress = opts
            .progress
            .then(|| progress::Progress::start(Arc::clone(&metrics)));
        Ok(Observer {
            metrics,
            address,
            progress,
        })
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.metrics)
    }

    /// The address the endpoint listens on.
    pub fn address(&self) -> Option<SocketAddr> {
        self.address
    }

    /// The job has ended: erase the progress line, mark every metric final.
    pub fn job_ended(&mut self) {
        if let Some(p) = self.progress.take() {
            p.stop();
        }
        self.metrics.finish();
    }

    /// Keeps the endpoint up until a scrape has read the final values, at most `timeout`
    /// (so a batch run's last numbers reach Prometheus). True if a scrape came.
    pub fn linger(&self, timeout: Duration) -> bool {
        self.address.is_some() && self.metrics.wait_final_scrape(timeout)
    }
}
