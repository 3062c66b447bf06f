//! A cluster that stays up and runs the jobs submitted to it, like a Flink session cluster:
//! `logflow cluster start`, then `submit`, `jobs`, `cancel`, `cluster stop`.
//!
//! - [`protocol`]: requests and replies between the command line and a cluster.
//! - [`auth`]: the token every request carries.
//! - [`tls`]: TLS on the control port (`--tls-cert`, `--tls-key`; clients `--tls-ca`).
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
pub mod tls;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use timely::WorkerConfig;

use crate::runtime::cluster::Network;
use crate::runtime::Cluster;
use crate::Error;

/// A signal this soon after the first is the same request: a terminal's Ctrl-C reaches a
/// process twice, from the terminal and from `cluster start` passing it on.
const SAME_SIGNAL: Duration = Duration::from_secs(1);
/// How long a stopping process waits for the answers to requests it has read.
const REPLY_GRACE: Duration = Duration::from_secs(2);

/// Runs this process of a cluster until `logflow cluster stop` (or a failed peer). Process 0
/// serves the control endpoint at `control`, admitting requests and jobs by `access`. A
/// graceful stop of the cluster may take `stop_timeout`.
pub fn serve(
    cluster: &Cluster,
    control: &str,
    access: &server::Access,
    stop_timeout: Duration,
) -> Result<(), Error> {
    let shared = Arc::new(session::Shared::new(cluster.clone(), stop_timeout));
    // SIGINT/SIGTERM stop the cluster in order: every job stops gracefully (final checkpoint,
    // sinks flushed), then every process exits 0. A later signal cancels what is left.
    let mut signals = Signals::new([SIGINT, SIGTERM])
        .map_err(|e| Error::Internal(format!("cannot handle signals: {e}")))?;
    let (stop, force) = (Arc::clone(&shared.stop), Arc::clone(&shared.force));
    std::thread::Builder::new()
        .name("logflow-signals".into())
        .spawn(move || {
            let mut first: Option<Instant> = None;
            for _ in signals.forever() {
                match first {
                    None => {
                        first = Some(Instant::now());
                        stop.store(true, Ordering::SeqCst);
                    }
                    Some(t) if t.elapsed() >= SAME_SIGNAL => force.store(true, Ordering::SeqCst),
                    Some(_) => {}
                }
            }
        })
        .map_err(|e| Error::Internal(format!("cannot handle signals: {e}")))?;
    // Every process opens its jobs' files only under the allowed directories, checked again
    // at each open (a symlink swapped after the submission's check does not escape).
    crate::sandbox::confine(
        confine::AllowDirs::new(&access.allow_dirs)?
            .roots()
            .to_vec(),
    );
    // The endpoint is bound before the peers connect: a taken port fails at once.
    let endpoint = if cluster.process == 0 {
        Some(server::start(control, access, &shared)?)
    } else {
        None
    };
    cluster.with_peers("logflow cluster", |network, _| {
        if let Some((addr, _)) = &endpoint {
            // Tests and scripts wait for this line: requests are served from now on.
            tracing::info!("logflow cluster: control endpoint at {addr}");
        }
        run(cluster, network, &shared)
    })?;
    // The request that stopped the cluster (and any other in flight) gets its answer.
    shared.wait_for_replies(REPLY_GRACE);
    match shared.cut_short() {
        Some(why) => Err(Error::Stop(why)),
        None => Ok(()),
    }
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
