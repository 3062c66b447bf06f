//! Graceful stop: SIGINT or SIGTERM asks a run to stop reading and end cleanly.
//!
//! - Without checkpoints every ingest ends its partitions where they are, as at the end of a
//!   bounded input: the remaining windows are emitted and the sinks flushed and closed.
//! - With checkpoints the ingests read on to the next barrier, and the checkpoint's manifest
//!   says it is the final one: every worker of every process reads that one manifest, so all
//!   of them stop after the same checkpoint, however far apart their requests came (see
//!   [`crate::checkpoint::barrier`]). Every worker then drops the job's dataflow. Nothing
//!   after that checkpoint is committed as done (exactly-once sinks commit at checkpoints;
//!   files are cut back to it on restart), so a restarted run goes on from it, repeating and
//!   losing nothing. Emitting the open windows instead would commit results a restart
//!   computes again.
//!
//! A second signal ends the process at once (exit 1), and so does `--stop-timeout` passing
//! before the run ended, naming what had not finished. A process of `run` or `launch` has one
//! run, so a signal's request is process-wide; a cluster's jobs are stopped one by one
//! (`logflow stop JOB`), each with its own [`JobStop`].

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::Error;

static REQUESTED: AtomicBool = AtomicBool::new(false);
/// The run has ended (the process only lingers for a last scrape): a signal ends it.
static ENDED: AtomicBool = AtomicBool::new(false);
/// The last checkpoint epoch this process saw complete when the stop was requested.
static EPOCH_AT_REQUEST: AtomicU64 = AtomicU64::new(0);
/// Local workers still holding the job's dataflow (for the timeout's message).
static RUNNING_WORKERS: AtomicUsize = AtomicUsize::new(0);
/// The last checkpoint epoch this process saw complete.
static COMPLETED_EPOCH: AtomicU64 = AtomicU64::new(0);
/// Whether the run keeps checkpoints (what the stop waits for).
static CHECKPOINTED: AtomicBool = AtomicBool::new(false);
/// The run's final checkpoint completed (the workers drop the dataflow).
static FINAL_DONE: AtomicBool = AtomicBool::new(false);

/// One job's stop request, shared by what the job opened on a process and its workers.
#[derive(Clone, Debug)]
pub(crate) struct JobStop {
    asked: Arc<AtomicBool>,
    /// The job is the process's run (`run`, `launch`): SIGINT/SIGTERM ask it too.
    follows_signals: bool,
}

impl Default for JobStop {
    /// The process's run: stopped by a signal.
    fn default() -> JobStop {
        JobStop {
            asked: Arc::new(AtomicBool::new(false)),
            follows_signals: true,
        }
    }
}

impl JobStop {
    /// A cluster's job: stopped by its own request only (a signal stops the whole cluster).
    pub(crate) fn own() -> JobStop {
        JobStop {
            follows_signals: false,
            ..JobStop::default()
        }
    }

    /// Asks the job to stop gracefully.
    pub(crate) fn request(&self) {
        self.asked.store(true, Ordering::SeqCst);
    }

    /// Whether the job was asked to stop.
    pub(crate) fn requested(&self) -> bool {
        self.asked.load(Ordering::SeqCst) || (self.follows_signals && requested())
    }
}

/// Whether a graceful stop was requested.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// Asks the run to stop gracefully (what the first SIGINT/SIGTERM does).
pub fn request() {
    EPOCH_AT_REQUEST.store(COMPLETED_EPOCH.load(Ordering::SeqCst), Ordering::SeqCst);
    REQUESTED.store(true, Ordering::SeqCst);
}

/// The run has ended: a signal from now on ends the linger that follows, with no timeout.
pub fn run_ended() {
    ENDED.store(true, Ordering::SeqCst);
}

/// Checkpoint `epoch` completed (as seen by this process).
pub(crate) fn checkpoint_completed(epoch: u64) {
    COMPLETED_EPOCH.fetch_max(epoch, Ordering::SeqCst);
}

/// With checkpoints: the run's final checkpoint completed (for the timeout's message).
pub(crate) fn final_checkpoint_done() {
    FINAL_DONE.store(true, Ordering::SeqCst);
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
    if CHECKPOINTED.load(Ordering::SeqCst) && !FINAL_DONE.load(Ordering::SeqCst) {
        format!(
            "no checkpoint completed as the final one (the last was at epoch {}, the stop was \
             requested after epoch {}); {workers} local workers still running",
            COMPLETED_EPOCH.load(Ordering::SeqCst),
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
                if ENDED.load(Ordering::SeqCst) {
                    tracing::info!("logflow: {name}: the job has ended: no longer lingering");
                    request();
                    continue;
                }
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
