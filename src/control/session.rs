//! The loop every worker of a cluster runs: commands ordered by timely's [`Sequencer`] (every
//! worker sees the same commands in the same order), so every worker builds and drops the same
//! dataflows in the same order, as timely requires.
//!
//! Process 0's control endpoint hands requests to global worker 0, which proposes them to the
//! sequencer and answers the endpoint once they come back in order. Workers themselves propose
//! what they see: a job that failed here (its input could not be opened, a sink failed) and, on
//! each process's first worker, the job's statistics every half second.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use timely::synchronization::Sequencer;
use timely::worker::Worker;

use super::protocol::Reply;
use super::table::{JobState, JobTable, ProcessStats};
use crate::runtime::stop::JobStop;
use crate::runtime::{Cluster, Opened, RunOptions};
use crate::spec::overrides::Overrides;
use crate::spec::plan::JobPlan;
use crate::Error;

/// How often each process reports the statistics of its jobs.
const STATS_EVERY: Duration = Duration::from_millis(500);
/// Longest a worker parks: how long a request from the control endpoint may wait.
const PARK: Duration = Duration::from_millis(20);

/// A job as submitted: everything a worker needs to compile the same plan as every other.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobRequest {
    pub spec: String,
    pub path: String,
    pub overrides: Overrides,
    /// `LOGFLOW_BROKERS` where the request was accepted, so every host resolves the same brokers.
    pub env_brokers: Option<String>,
}

impl JobRequest {
    /// The plan every worker builds (deterministic: same text, same overrides).
    pub fn compile(&self) -> Result<JobPlan, Error> {
        let mut plan = crate::spec::load_text(&self.path, &self.spec)?;
        self.overrides
            .apply(&mut plan, self.env_brokers.as_deref())?;
        crate::kafka::confine_submitted(&mut plan, self.env_brokers.as_deref())?;
        Ok(plan)
    }
}

/// The commands every worker applies in the same order. `ticket` identifies the control
/// request waiting for the command (0: none).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Command {
    Submit {
        ticket: u64,
        job: JobRequest,
        at_ms: i64,
    },
    /// Cancel a job (`reason` set: it failed).
    Cancel {
        ticket: u64,
        job: u64,
        reason: Option<String>,
    },
    /// Stop a job gracefully (each process's workers stop it as `run` stops on SIGTERM); with
    /// `savepoint`, its final checkpoint is kept until removed.
    Stop {
        ticket: u64,
        job: u64,
        savepoint: bool,
    },
    Stats {
        job: u64,
        process: usize,
        stats: ProcessStats,
    },
    /// Stop the cluster: every live job stops gracefully and the workers exit once none is
    /// left; with `now`, every job is cancelled at once. `reason` says why a stop was cut
    /// short (its timeout, a second signal): the processes then exit 1 with it.
    Shutdown {
        ticket: u64,
        now: bool,
        reason: Option<String>,
    },
}

impl Command {
    fn ticket(&self) -> u64 {
        match self {
            Command::Submit { ticket, .. }
            | Command::Cancel { ticket, .. }
            | Command::Stop { ticket, .. }
            | Command::Shutdown { ticket, .. } => *ticket,
            Command::Stats { .. } => 0,
        }
    }
}

/// A command from the control endpoint and where its reply goes.
pub struct Proposal {
    pub command: Command,
    pub reply: Sender<Reply>,
}

/// A job on this process: what it opened for its workers, and how many of them still hold
/// its dataflow (the last to let go sends the final statistics).
struct ProcJob {
    plan: Arc<JobPlan>,
    opened: Opened,
    /// Why its input or output could not be opened here.
    error: Option<String>,
    installed: AtomicUsize,
}

impl ProcJob {
    fn stats(&self) -> ProcessStats {
        let totals = self.opened.metrics.totals();
        let acc = self.opened.counters.snapshot();
        ProcessStats {
            read: acc.read,
            dead_letter: acc.dead_letter,
            late: acc.late,
            written: self.opened.metrics.rows_total(),
            // A job read to its end between two reports never showed a watermark: its last
            // is how far its event time got.
            watermark_ms: totals.watermark_ms.or(totals
                .reached_ms
                .filter(|_| totals.partitions > 0 && totals.finished == totals.partitions)),
            installed: self.installed.load(Ordering::SeqCst),
        }
    }
}

/// What the workers of one process share.
pub struct Shared {
    pub cluster: Cluster,
    /// Worker 0's table, read by the control endpoint (process 0).
    pub table: Mutex<JobTable>,
    /// Requests from the control endpoint, taken by global worker 0.
    pub inbox: Mutex<Option<Receiver<Proposal>>>,
    jobs: Mutex<HashMap<u64, Arc<ProcJob>>>,
    /// Jobs no local worker holds any more, until the cluster learns how they ended: finished
    /// or stopped, their partitions' final positions are committed (every process's results
    /// are written by then); cancelled or failed, nothing is.
    ended: Mutex<HashMap<u64, Arc<ProcJob>>>,
    /// One clock for the sequencer of every local worker.
    epoch: Instant,
    /// Set by SIGINT or SIGTERM: this process's first worker proposes stopping the cluster.
    pub stop: Arc<AtomicBool>,
    /// Set by a second signal: this process's first worker proposes cancelling every job.
    pub force: Arc<AtomicBool>,
    /// How long a graceful stop of the cluster may take before its jobs are cancelled.
    stop_timeout: Duration,
    /// Why the stop was cut short (the processes exit 1 with it).
    cut_short: Mutex<Option<String>>,
    /// Requests read by the endpoint and not yet answered: the process waits for them before
    /// it exits (the `cluster stop` that ended it wants its answer).
    replying: AtomicUsize,
}

/// A request being answered (see [`Shared::replying`]); done when dropped.
pub(crate) struct Replying<'a>(&'a AtomicUsize);

impl Drop for Replying<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Locks a mutex even if a panicking worker poisoned it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Shared {
    /// The endpoint (process 0) sets `inbox` when it starts.
    pub fn new(cluster: Cluster, stop_timeout: Duration) -> Shared {
        Shared {
            table: Mutex::new(JobTable::new(cluster.processes)),
            cluster,
            inbox: Mutex::new(None),
            jobs: Mutex::new(HashMap::new()),
            ended: Mutex::new(HashMap::new()),
            epoch: Instant::now(),
            stop: Arc::new(AtomicBool::new(false)),
            force: Arc::new(AtomicBool::new(false)),
            stop_timeout,
            cut_short: Mutex::new(None),
            replying: AtomicUsize::new(0),
        }
    }

    /// Counts a request as being answered until the guard is dropped.
    pub(crate) fn replying(&self) -> Replying<'_> {
        self.replying.fetch_add(1, Ordering::SeqCst);
        Replying(&self.replying)
    }

    /// Waits (at most `limit`) until every request read has been answered.
    pub(crate) fn wait_for_replies(&self, limit: Duration) {
        let until = Instant::now() + limit;
        while self.replying.load(Ordering::SeqCst) > 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Why the cluster's graceful stop was cut short, once its workers have exited.
    pub fn cut_short(&self) -> Option<String> {
        lock(&self.cut_short).clone()
    }

    /// This process's share of job `id`: the first local worker to apply the submission opens
    /// the sources and sinks of all local workers; the others find them opened.
    fn open(&self, id: u64, plan: JobPlan, stop_at_end: bool) -> Arc<ProcJob> {
        let mut jobs = lock(&self.jobs);
        let job = jobs.entry(id).or_insert_with(|| {
            let plan = Arc::new(plan);
            let opts = RunOptions {
                stop_at_end,
                // Stopped by `logflow stop`; a signal to the process stops the cluster.
                stop: JobStop::own(),
                ..RunOptions::default()
            };
            let (opened, error) = match Opened::open(&plan, &self.cluster, &opts) {
                Ok(o) => (o, None),
                Err(e) => (
                    Opened::empty(&plan, &self.cluster, &opts),
                    Some(format!("process {}: {e}", self.cluster.process)),
                ),
            };
            Arc::new(ProcJob {
                plan,
                opened,
                error,
                installed: AtomicUsize::new(self.cluster.threads),
            })
        });
        Arc::clone(job)
    }
}

/// How long after its graceful stop's timeout a process exits regardless: the timeout's
/// cancel is a command the workers apply, and a worker stuck in a sink's write never would.
const BACKSTOP: Duration = Duration::from_secs(10);

fn backstop(timeout: Duration) {
    let spawned = std::thread::Builder::new()
        .name("logflow-stop-backstop".into())
        .spawn(move || {
            std::thread::sleep(timeout + BACKSTOP);
            tracing::error!(
                "logflow cluster: the graceful stop did not finish within {} and its jobs \
                 could not be cancelled: exiting",
                crate::time::duration::format_ms((timeout + BACKSTOP).as_millis() as i64)
            );
            std::process::exit(1);
        });
    if let Err(e) = spawned {
        tracing::warn!("logflow cluster: no backstop for the graceful stop: {e}");
    }
}

/// A job's dataflow on this worker.
struct LocalJob {
    dataflow: usize,
    failed: Rc<RefCell<Option<Error>>>,
    failure_told: bool,
    proc: Arc<ProcJob>,
}

/// One worker's side of the cluster: applies the ordered commands until the cluster stops.
pub fn serve(worker: &mut Worker, shared: &Shared) {
    let mut s = Session {
        local: worker.index() - shared.cluster.process * shared.cluster.threads,
        sequencer: Sequencer::new(worker, shared.epoch),
        inbox: if worker.index() == 0 {
            lock(&shared.inbox).take()
        } else {
            None
        },
        waiting: HashMap::new(),
        jobs: BTreeMap::new(),
        table: JobTable::new(shared.cluster.processes),
        next_job: 1,
        sequencer_applied: 0,
        stop_proposed: false,
        force_proposed: false,
        shutting: None,
        last_stats: Instant::now(),
        shared,
    };
    loop {
        s.take_requests();
        s.watch_jobs(worker);
        let applied = s.sequencer_applied;
        if s.apply_commands(worker) {
            break;
        }
        if worker.index() == 0 && s.sequencer_applied != applied {
            s.publish();
        }
        worker.step_or_park(Some(PARK));
    }
}

struct Session<'a> {
    /// Index among this process's workers.
    local: usize,
    sequencer: Sequencer<Command>,
    inbox: Option<Receiver<Proposal>>,
    /// Control requests waiting for their command to come back in order (worker 0).
    waiting: HashMap<u64, Sender<Reply>>,
    jobs: BTreeMap<u64, LocalJob>,
    table: JobTable,
    next_job: u64,
    /// Commands applied so far (worker 0 publishes its table when this moves).
    sequencer_applied: u64,
    stop_proposed: bool,
    force_proposed: bool,
    /// Since when the cluster is stopping gracefully: it takes no new job, and its workers
    /// exit once no job is live (global worker 0 cancels what is left at the timeout).
    shutting: Option<Instant>,
    last_stats: Instant,
    shared: &'a Shared,
}

impl Session<'_> {
    fn take_requests(&mut self) {
        if self.local == 0 && !self.stop_proposed && self.shared.stop.load(Ordering::SeqCst) {
            tracing::info!(
                "logflow cluster: process {} was asked to stop: stopping the cluster",
                self.shared.cluster.process
            );
            self.sequencer.push(Command::Shutdown {
                ticket: 0,
                now: false,
                reason: None,
            });
            self.stop_proposed = true;
        }
        if self.local == 0 && !self.force_proposed && self.shared.force.load(Ordering::SeqCst) {
            self.force_proposed = true;
            self.sequencer.push(Command::Shutdown {
                ticket: 0,
                now: true,
                reason: Some(format!(
                    "process {} was asked again to stop",
                    self.shared.cluster.process
                )),
            });
        }
        let timed_out = self
            .shutting
            .is_some_and(|t| t.elapsed() >= self.shared.stop_timeout);
        if self.is_first() && !self.force_proposed && timed_out {
            self.force_proposed = true;
            let live: Vec<String> = self
                .table
                .running()
                .iter()
                .map(|id| id.to_string())
                .collect();
            self.sequencer.push(Command::Shutdown {
                ticket: 0,
                now: true,
                reason: Some(format!(
                    "the graceful stop did not finish within {}: job(s) {} still stopping \
                     (with checkpoints, the final one had not completed; without, windows and \
                     sinks were not flushed)",
                    crate::time::duration::format_ms(self.shared.stop_timeout.as_millis() as i64),
                    live.join(", ")
                )),
            });
        }
        let Some(inbox) = &self.inbox else {
            return;
        };
        while let Ok(p) = inbox.try_recv() {
            self.waiting.insert(p.command.ticket(), p.reply);
            self.sequencer.push(p.command);
        }
    }

    /// Global worker 0: the one that times the cluster's graceful stop.
    fn is_first(&self) -> bool {
        self.local == 0 && self.shared.cluster.process == 0
    }

    fn answer(&mut self, ticket: u64, reply: Reply) {
        if let Some(tx) = self.waiting.remove(&ticket) {
            // The client's next request (`stop` polls `jobs`) must see what this one did.
            self.publish();
            let _ = tx.send(reply);
        }
    }

    /// Tells the cluster about jobs that failed here, lets go of dataflows that completed,
    /// and (first worker of each process) reports statistics.
    fn watch_jobs(&mut self, worker: &mut Worker) {
        for (id, j) in self.jobs.iter_mut() {
            if j.failure_told {
                continue;
            }
            if let Some(e) = j.failed.borrow().as_ref() {
                self.sequencer.push(Command::Cancel {
                    ticket: 0,
                    job: *id,
                    reason: Some(format!("worker {}: {e}", worker.index())),
                });
                j.failure_told = true;
            }
        }
        // A job stopped with checkpoints ends after its final one: its open windows are
        // dropped, not emitted (a resubmission goes on from that checkpoint), as `run` does.
        for j in self.jobs.values() {
            if j.proc.opened.stopped_at_checkpoint() {
                worker.drop_dataflow(j.dataflow);
            }
        }
        let installed = worker.installed_dataflows();
        let done: Vec<u64> = self
            .jobs
            .iter()
            .filter(|(_, j)| !installed.contains(&j.dataflow))
            .map(|(id, _)| *id)
            .collect();
        for id in done {
            if let Some(j) = self.jobs.remove(&id) {
                self.leave(id, j);
            }
        }
        if self.local == 0 && self.last_stats.elapsed() >= STATS_EVERY {
            self.last_stats = Instant::now();
            let jobs: Vec<(u64, Arc<ProcJob>)> = lock(&self.shared.jobs)
                .iter()
                .map(|(id, j)| (*id, Arc::clone(j)))
                .collect();
            for (id, j) in jobs {
                self.sequencer.push(Command::Stats {
                    job: id,
                    process: self.shared.cluster.process,
                    stats: j.stats(),
                });
            }
        }
    }

    /// This worker no longer holds the job's dataflow; the process's last worker to let go
    /// sends the final statistics and frees what the process opened for it.
    fn leave(&mut self, id: u64, j: LocalJob) {
        if j.proc.installed.fetch_sub(1, Ordering::SeqCst) == 1 {
            if self.table.get(id).is_some_and(|s| s.state.live()) {
                lock(&self.shared.ended).insert(id, Arc::clone(&j.proc));
            }
            self.sequencer.push(Command::Stats {
                job: id,
                process: self.shared.cluster.process,
                stats: j.proc.stats(),
            });
            lock(&self.shared.jobs).remove(&id);
        }
    }

    /// Applies the commands that came back in order; true once the cluster stops.
    fn apply_commands(&mut self, worker: &mut Worker) -> bool {
        while let Some(cmd) = self.sequencer.next() {
            self.sequencer_applied += 1;
            match cmd {
                Command::Submit { ticket, .. } if self.shutting.is_some() => {
                    let e = Error::Usage("the cluster is stopping: it takes no new job".into());
                    self.answer(ticket, Reply::error(&e));
                }
                Command::Submit { ticket, job, at_ms } => self.submit(worker, ticket, job, at_ms),
                Command::Cancel {
                    ticket,
                    job,
                    reason,
                } => {
                    let state = if reason.is_some() {
                        JobState::Failed
                    } else {
                        JobState::Cancelled
                    };
                    let ended = self.table.end(job, state, reason.clone(), now_ms());
                    if ended && self.local == 0 {
                        lock(&self.shared.ended).remove(&job);
                    }
                    if ended && worker.index() == 0 {
                        let why = reason.map_or(String::new(), |r| format!(": {r}"));
                        tracing::info!("logflow cluster: job {job} {}{why}", state.name());
                    }
                    if let Some(j) = self.jobs.remove(&job) {
                        worker.drop_dataflow(j.dataflow);
                        self.leave(job, j);
                    }
                    let reply = match self.table.get(job) {
                        _ if ended => Reply::Cancelled { job },
                        None => Reply::error(&Error::Usage(format!("no job {job}"))),
                        Some(s) => Reply::error(&Error::Usage(format!(
                            "job {job} is not running (it {})",
                            s.state.name()
                        ))),
                    };
                    self.answer(ticket, reply);
                }
                Command::Stop {
                    ticket,
                    job,
                    savepoint,
                } => {
                    // Every worker decides alike: the plan is the same everywhere.
                    let keeps = self
                        .jobs
                        .get(&job)
                        .is_some_and(|j| j.proc.plan.checkpoint.is_some());
                    if savepoint && !keeps && self.table.get(job).is_some_and(|s| s.state.live()) {
                        let e = Error::Usage(format!(
                            "job {job} keeps no checkpoints, so it has no savepoint: submit it \
                             with --checkpoint-dir DIR (or a [checkpoint] section); `logflow \
                             stop {job}` stops it"
                        ));
                        self.answer(ticket, Reply::error(&e));
                        continue;
                    }
                    let asked = self.table.stopping(job);
                    if asked && worker.index() == 0 {
                        let at = if savepoint { " at a savepoint" } else { "" };
                        tracing::info!("logflow cluster: job {job} stopping{at}");
                    }
                    let mut checkpoint_dir = None;
                    if let Some(j) = self.jobs.get(&job) {
                        if savepoint {
                            checkpoint_dir = j.proc.opened.keep_savepoint();
                        }
                        j.proc.opened.stop.request();
                    }
                    let reply = match self.table.get(job) {
                        _ if asked => Reply::StopRequested {
                            job,
                            checkpoint_dir,
                        },
                        None => Reply::error(&Error::Usage(format!("no job {job}"))),
                        Some(s) => Reply::error(&Error::Usage(format!(
                            "job {job} is not running (it {})",
                            s.state.name()
                        ))),
                    };
                    self.answer(ticket, reply);
                }
                Command::Stats {
                    job,
                    process,
                    stats,
                } => {
                    let was = self.table.get(job).map(|s| s.state);
                    self.table.report(job, process, stats, now_ms());
                    let now = self.table.get(job).map(|s| s.state);
                    let ended = matches!(now, Some(JobState::Finished | JobState::Stopped));
                    if self.local == 0 && was != now && ended {
                        if let Some(j) = lock(&self.shared.ended).remove(&job) {
                            j.opened.commit_final_positions();
                        }
                    }
                    if worker.index() == 0 && was != now && ended {
                        if let Some(s) = self.table.get(job) {
                            tracing::info!(
                                "logflow cluster: job {job} ({}) {}: {} records in, {} results out",
                                s.name,
                                s.state.name(),
                                s.records_in,
                                s.records_out
                            );
                        }
                    }
                }
                Command::Shutdown {
                    ticket, now: false, ..
                } => {
                    if self.shutting.is_none() {
                        self.shutting = Some(Instant::now());
                        if self.local == 0 {
                            backstop(self.shared.stop_timeout);
                        }
                        if worker.index() == 0 {
                            tracing::info!(
                                "logflow cluster: stopping: {} job(s) stop gracefully within {}",
                                self.table.running().len(),
                                crate::time::duration::format_ms(
                                    self.shared.stop_timeout.as_millis() as i64
                                )
                            );
                        }
                    }
                    for id in self.table.running() {
                        self.table.stopping(id);
                        if let Some(j) = self.jobs.get(&id) {
                            j.proc.opened.stop.request();
                        }
                    }
                    self.answer(ticket, Reply::Stopping);
                }
                Command::Shutdown {
                    ticket,
                    now: true,
                    reason,
                } => {
                    let live = self.table.running();
                    for id in &live {
                        let why = reason.as_deref().unwrap_or("the cluster stopped");
                        self.table
                            .end(*id, JobState::Cancelled, Some(why.into()), now_ms());
                    }
                    if let Some(r) = reason {
                        if worker.index() == 0 && !live.is_empty() {
                            tracing::error!("logflow cluster: {r}: cancelling them");
                        }
                        lock(&self.shared.cut_short).get_or_insert(r);
                    }
                    self.answer(ticket, Reply::Stopping);
                    self.drop_all(worker);
                    return true;
                }
            }
            // Every worker applies the same commands, so all of them see the last live job
            // end at the same command and leave together.
            if self.shutting.is_some() && self.table.running().is_empty() {
                self.drop_all(worker);
                return true;
            }
        }
        false
    }

    fn drop_all(&mut self, worker: &mut Worker) {
        let jobs = std::mem::take(&mut self.jobs);
        for (id, j) in jobs {
            worker.drop_dataflow(j.dataflow);
            self.leave(id, j);
        }
    }

    fn submit(&mut self, worker: &mut Worker, ticket: u64, job: JobRequest, at_ms: i64) {
        // Compiling is deterministic, so a spec that fails here fails on every worker and no
        // worker builds anything (the endpoint checked it before proposing it).
        let plan = match job.compile() {
            Ok(p) => p,
            Err(e) => {
                self.answer(ticket, Reply::error(&e));
                return;
            }
        };
        let id = self.next_job;
        self.next_job += 1;
        let name = plan.name.clone();
        let proc = self.shared.open(id, plan, job.overrides.stop_at_end);
        let (dataflow, failed) = proc.opened.install(worker, self.local, &proc.plan);
        let workers = self.shared.cluster.threads * self.shared.cluster.processes;
        self.table.submitted(id, &name, &job.path, at_ms, workers);
        if worker.index() == 0 {
            // Escaped: the path is the submitter's string, and a newline in it would forge
            // a line of this log.
            tracing::info!(
                "logflow cluster: job {id} ({name}) started from {}",
                job.path.escape_debug()
            );
        }
        // A process that could not open the job's input or output fails it everywhere; its
        // dataflow was still built (empty), as every worker builds the same dataflows.
        if self.local == 0 {
            if let Some(e) = &proc.error {
                self.sequencer.push(Command::Cancel {
                    ticket: 0,
                    job: id,
                    reason: Some(e.clone()),
                });
            }
        }
        self.jobs.insert(
            id,
            LocalJob {
                dataflow,
                failed,
                failure_told: false,
                proc,
            },
        );
        self.answer(ticket, Reply::Submitted { job: id, name });
    }

    fn publish(&self) {
        let mut t = lock(&self.shared.table);
        *t = self.table.clone();
    }
}
