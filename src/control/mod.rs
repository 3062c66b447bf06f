//! A cluster that stays up and runs the jobs submitted to it, like a Flink session cluster:
//! `logflow cluster start`, then `submit`, `jobs`, `cancel`, `cluster stop`.
//!
//! - [`protocol`]: requests and replies between the command line and a cluster.
//! - [`auth`]: the token every request carries.
//! - [`server`]: process 0's control endpoint; checks submissions before any worker sees them.
//! - [`confine`]: the directories a submitted job may read and write.
//! - [`session`]: the loop of every worker; commands are ordered by timely's `Sequencer`, so
//!   every worker builds and drops the same dataflows in the same order.
//! - [`table`]: the jobs and their states.

pub mod auth;
pub mod confine;
pub mod protocol;
pub mod server;
pub mod session;
pub mod table;

use std::sync::Arc;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::flag;
use timely::WorkerConfig;

use crate::runtime::cluster::Network;
use crate::runtime::Cluster;
use crate::Error;

/// Runs this process of a cluster until `logflow cluster stop` (or a failed peer). Process 0
/// serves the control endpoint at `control`, admitting requests and jobs by `access`.
pub fn serve(cluster: &Cluster, control: &str, access: &server::Access) -> Result<(), Error> {
    let shared = Arc::new(session::Shared::new(cluster.clone()));
    // SIGINT/SIGTERM stop the cluster in order: every job cancelled, every process exits 0.
    // (A terminal's Ctrl-C reaches a process twice, from the terminal and from `cluster start`
    // passing it on, so a second signal must not mean "now".)
    for sig in [SIGINT, SIGTERM] {
        flag::register(sig, Arc::clone(&shared.stop))
            .map_err(|e| Error::Internal(format!("cannot handle signals: {e}")))?;
    }
    // The endpoint is bound before the peers connect: a taken port fails at once.
    let endpoint = if cluster.process == 0 {
        Some(server::start(control, access, &shared)?)
    } else {
        None
    };
    cluster.with_peers("logflow cluster", |network, _| {
        if let Some((addr, _)) = &endpoint {
            // Tests and scripts wait for this line: requests are served from now on.
            eprintln!("logflow cluster: control endpoint at {addr}");
        }
        run(cluster, network, &shared)
    })
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
        .map_err(Error::Internal)?;
    for r in guards.join() {
        if let Err(e) = r {
            return Err(Error::Internal(format!("a worker failed: {e}")));
        }
    }
    Ok(())
}
