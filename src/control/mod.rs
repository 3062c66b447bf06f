//! A cluster that stays up and runs the jobs submitted to it, like a Flink session cluster:
//! `logflow cluster start`, then `submit`, `jobs`, `cancel`, `cluster stop`.
//!
//! - [`protocol`]: requests and replies between the command line and a cluster.
//! - [`server`]: process 0's control endpoint; checks submissions before any worker sees them.
//! - [`session`]: the loop of every worker; commands are ordered by timely's `Sequencer`, so
//!   every worker builds and drops the same dataflows in the same order.
//! - [`table`]: the jobs and their states.

pub mod protocol;
pub mod server;
pub mod session;
pub mod table;

use std::sync::Arc;

use timely::WorkerConfig;

use crate::runtime::cluster::Network;
use crate::runtime::Cluster;
use crate::Error;

/// Runs this process of a cluster until `logflow cluster stop` (or a failed peer). Process 0
/// serves the control endpoint at `control`.
pub fn serve(cluster: &Cluster, control: &str) -> Result<(), Error> {
    let network = if cluster.processes > 1 {
        let layout = cluster.layout();
        let network = Network::connect(&layout)?;
        eprintln!(
            "logflow cluster: process {} of {} connected to its peers ({})",
            cluster.process,
            cluster.processes,
            layout.addresses.join(" ")
        );
        Some(network)
    } else {
        None
    };
    let watchdog = network.as_ref().map(|n| Arc::clone(n.watchdog()));
    let shared = Arc::new(session::Shared::new(cluster.clone(), None));
    if cluster.process == 0 {
        let addr = server::start(control, &shared)?;
        // Tests and scripts wait for this line.
        eprintln!("logflow cluster: control endpoint at {addr}");
    }
    let result = run(cluster, network, &shared);
    if let Some(w) = &watchdog {
        match &result {
            Ok(()) => w.finish(),
            Err(e) => w.fail(&e.to_string()),
        }
    }
    result
}

fn run(
    cluster: &Cluster,
    network: Option<Network>,
    shared: &Arc<session::Shared>,
) -> Result<(), Error> {
    let (allocators, others) = cluster.allocators(network)?;
    let shared = Arc::clone(shared);
    let guards =
        timely::execute::execute_from(allocators, others, WorkerConfig::default(), move |worker| {
            session::serve(worker, &shared)
        })
        .map_err(Error::Runtime)?;
    for r in guards.join() {
        if let Err(e) = r {
            return Err(Error::Runtime(format!("a worker failed: {e}")));
        }
    }
    Ok(())
}
