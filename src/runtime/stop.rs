//! Graceful stop: SIGINT or SIGTERM asks a run to stop reading and end cleanly.
//!
//! - Without checkpoints every ingest ends its partitions where they are, as at the end of a
//!   bounded input: the remaining windows are emitted and the sinks flushed and closed.
//! - With checkpoints the ingests read on to the next barrier; once a checkpoint completed
//!   after the request, every worker drops the job's dataflow. Nothing after that checkpoint
//!   is committed as done (exactly-once sinks commit at checkpoints; files are cut back to it
//!   on restart), so a restarted run goes on from it, repeating and losing nothing. Emitting
//!   the open windows instead would commit results a restart computes again.
//!
//! A second signal ends the process at once (exit 1), and so does `--stop-timeout` passing
//! before the run ended, naming what had not finished. A process has one run, so the request
//! is process-wide.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::Error;

static REQUESTED: AtomicBool = AtomicBool::new(false);
/// The last checkpoint epoch this process saw complete when the stop was requested.
static EPOCH_AT_REQUEST: AtomicU64 = AtomicU64::new(0);
/// Local workers still holding the job's dataflow (for the timeout's message).
static RUNNING_WORKERS: AtomicUsize = AtomicUsize::new(0);
/// The last checkpoint epoch this process saw complete.
static COMPLETED_EPOCH: AtomicU64 = AtomicU64::new(0);
/// Whether the run keeps checkpoints (what the stop waits for).
static CHECKPOINTED: AtomicBool = AtomicBool::new(false);

/// Whether a graceful stop was requested.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// Asks the run to stop gracefully (what the first SIGINT/SIGTERM does).
pub fn request() {
    EPOCH_AT_REQUEST.store(COMPLETED_EPOCH.load(Ordering::SeqCst), Ordering::SeqCst);
    REQUESTED.store(true, Ordering::SeqCst);
}

/// Checkpoint `epoch` completed (as seen by this process).
pub(crate) fn checkpoint_completed(epoch: u64) {
    COMPLETED_EPOCH.fetch_max(epoch, Ordering::SeqCst);
}

/// With checkpoints: a checkpoint completed after the stop was requested, so the workers can
/// drop the dataflow.
pub(crate) fn final_checkpoint_done() -> bool {
    requested() && COMPLETED_EPOCH.load(Ordering::SeqCst) > EPOCH_AT_REQUEST.load(Ordering::SeqCst)
}

/// A local worker started (`true`) or let go of (`false`) the job's dataflow.
pub(crate) fn worker_running(running: bool) {
    if running {
        RUNNING_WORKERS.fetch_add(1, Ordering::SeqCst);
    } else {
        RUNNING_WORKERS.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The run keeps checkpoints: a stop waits for the next one.
pub(crate) fn set_checkpointed(yes: bool) {
    CHECKPOINTED.store(yes, Ordering::SeqCst);
}

/// What had not finished when the stop timed out.
fn unfinished() -> String {
    let workers = RUNNING_WORKERS.load(Ordering::SeqCst);
    if CHECKPOINTED.load(Ordering::SeqCst) && !final_checkpoint_done() {
        format!(
            "no checkpoint completed after the stop request (the last was at epoch {}); \
             {workers} local workers still running",
            EPOCH_AT_REQUEST.load(Ordering::SeqCst)
        )
    } else {
        format!("{workers} local workers had not flushed their windows and sinks")
    }
}

/// Handles SIGINT and SIGTERM for the rest of the process: the first asks for a graceful stop
/// and gives the run `timeout` to end, a second ends the process at once.
pub fn handle_signals(timeout: Duration) -> Result<(), Error> {
    let mut signals = Signals::new([SIGINT, SIGTERM])
        .map_err(|e| Error::Internal(format!("cannot handle signals: {e}")))?;
    std::thread::Builder::new()
        .name("logflow-signals".into())
        .spawn(move || {
            let mut first = true;
            for sig in signals.forever() {
                let name = if sig == SIGINT { "SIGINT" } else { "SIGTERM" };
                if !first {
                    tracing::error!("logflow: {name} again: stopping at once");
                    std::process::exit(1);
                }
                first = false;
                tracing::info!(
                    "logflow: {name}: stopping gracefully within {} (a second signal stops at once)",
                    crate::time::duration::format_ms(timeout.as_millis() as i64)
                );
                request();
                std::thread::spawn(move || {
                    std::thread::sleep(timeout);
                    tracing::error!(
                        "logflow: the graceful stop did not finish within {}: {}",
                        crate::time::duration::format_ms(timeout.as_millis() as i64),
                        unfinished()
                    );
                    std::process::exit(1);
                });
            }
        })
        .map_err(|e| Error::Internal(format!("cannot handle signals: {e}")))?;
    Ok(())
}
