//! Running a job: timely workers, source partitions assigned to workers, the dataflow, sinks.

pub mod accounting;
pub mod cluster;
pub mod dataflow;
pub mod ingest;
pub mod output;
pub mod stop;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use std::any::Any;

use timely::communication::{AllocatorBuilder, Config as CommConfig};
use timely::WorkerConfig;

use cluster::{Layout, Network, Watchdog};

pub use accounting::{Accounting, Counters};

use std::time::Duration;

use crate::checkpoint::barrier::building;
use crate::checkpoint::process::Checkpoints;
use crate::kafka::sink::KafkaSink;
use crate::kafka::KafkaConn;
use crate::metrics::Readiness;
use crate::sinks::console::ConsoleSink;
use crate::sinks::files::FilesSink;
use crate::sinks::Sink;
use crate::sources::{End, OpenArgs, PartitionReader, Placement, WorkerReaders};
use crate::spec::plan::{JobPlan, SinkConfig};
use crate::Error;

/// How the workers of a run are laid out (timely's cluster options).
#[derive(Clone, Debug)]
pub struct Cluster {
    /// Worker threads per process.
    pub threads: usize,
    pub processes: usize,
    /// This process's index.
    pub process: usize,
    /// `host:port` of every process (empty: `127.0.0.1:2101+i`).
    pub addresses: Vec<String>,
    /// How long to wait for peers at start, and for a silent peer before giving it up.
    pub peer_timeout: Duration,
}

impl Default for Cluster {
    fn default() -> Self {
        Cluster {
            threads: 1,
            processes: 1,
            process: 0,
            addresses: Vec::new(),
            peer_timeout: Duration::from_secs(30),
        }
    }
}

impl Cluster {
    /// This process's identity in a run of `plan`, for its metrics.
    pub fn identity(&self, plan: &JobPlan) -> crate::metrics::Identity {
        crate::metrics::Identity::of(plan, self.process, self.processes, self.threads)
    }

    pub(crate) fn layout(&self) -> Result<Layout, Error> {
        let addresses = if self.addresses.is_empty() {
            (0..self.processes)
                .map(|i| format!("127.0.0.1:{}", 2101 + i))
                .collect()
        } else {
            self.addresses.clone()
        };
        Ok(Layout {
            threads: self.threads,
            process: self.process,
            addresses,
            peer_timeout: self.peer_timeout,
            peer_key: cluster::peer_key_from_env()?,
        })
    }

    /// Connects this process to its peers (when there are several; `label` starts the line
    /// saying so), runs `body` with the network, and tells the peers how it ended: a failure
    /// here stops them at once, naming this process.
    pub(crate) fn with_peers<T>(
        &self,
        label: &str,
        body: impl FnOnce(Option<Network>, Option<Arc<Watchdog>>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let network = if self.processes > 1 {
            let layout = self.layout()?;
            let started = std::time::Instant::now();
            let network = Network::connect(&layout)?;
            tracing::info!(
                "{label}: process {} of {} connected to its peers in {:.1}s ({})",
                self.process,
                self.processes,
                started.elapsed().as_secs_f64(),
                layout.addresses.join(" ")
            );
            Some(network)
        } else {
            None
        };
        let watchdog = network.as_ref().map(|n| Arc::clone(n.watchdog()));
        let result = body(network, watchdog.clone());
        if let Some(w) = &watchdog {
            match &result {
                Ok(_) => w.finish(),
                Err(e) => w.fail(&e.to_string()),
            }
        }
        result
    }

    /// timely's allocators: one process (threads), or the processes connected by `network`.
    pub(crate) fn allocators(
        &self,
        network: Option<Network>,
    ) -> Result<(Vec<AllocatorBuilder>, Box<dyn Any + Send>), Error> {
        match network {
            Some(n) => n.into_timely(),
            None if self.threads > 1 => CommConfig::Process(self.threads)
                .try_build()
                .map_err(Error::Internal),
            None => CommConfig::Thread.try_build().map_err(Error::Internal),
        }
    }
}

/// How long an idle worker parks before it looks for a stop request again.
const STOP_POLL: Duration = Duration::from_millis(100);

/// The sink of each local worker, and whether all outputs are gathered on worker 0.
type WorkerSinks = (Vec<Option<Box<dyn Sink>>>, bool);
/// A per-worker value handed from the main thread to the worker that takes it.
type Handoff<T> = Vec<Mutex<Option<T>>>;

/// How a run ends, for unbounded (Kafka) sources, and where the in-process cluster is.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Read every partition up to its end offset as of start, then emit all windows and stop.
    pub stop_at_end: bool,
    /// End offsets that will be known later (the embedded demo sets them when its generator is
    /// done).
    pub end_signal: Option<Arc<Mutex<Option<Vec<i64>>>>>,
    /// Where the run reports its metrics (a private set when absent).
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
    /// The in-process cluster's address, for the plan's [`Endpoint::Embedded`] source and
    /// sink (see [`crate::kafka::embedded`]).
    ///
    /// [`Endpoint::Embedded`]: crate::spec::plan::Endpoint::Embedded
    pub embedded: Option<String>,
    /// Asks the job to stop gracefully (by default the process's signals do).
    pub stop: stop::JobStop,
}

/// Opens this process's share of the source: one list of partition readers per local worker.
/// A partition named in `resume` (a restored checkpoint's positions, by
/// [`PartitionReader::describe`]) is read on from its position there.
fn open_sources(
    plan: &JobPlan,
    cluster: &Cluster,
    opts: &RunOptions,
    resume: &HashMap<String, u64>,
) -> Result<WorkerReaders, Error> {
    plan.source.kind.open(&OpenArgs {
        placement: Placement {
            threads: cluster.threads,
            processes: cluster.processes,
            process: cluster.process,
        },
        max_record_bytes: plan.source.max_record_bytes,
        format: plan.source.format,
        job: &plan.name,
        checkpointed: plan.checkpoint.is_some(),
        resume,
        end: End {
            stop_at_end: opts.stop_at_end,
            signal: opts.end_signal.clone(),
        },
        embedded: opts.embedded.as_deref(),
    })
}

/// Opens the sinks of this process: one for worker 0 only (files, console; `true` = gather
/// all outputs there) or one per local worker (Kafka). `rescaled`: the workers and key groups
/// of a restored checkpoint taken with another layout.
fn open_sinks(
    plan: &Arc<JobPlan>,
    cluster: &Cluster,
    opts: &RunOptions,
    resuming: bool,
    rescaled: Option<(usize, u32)>,
) -> Result<WorkerSinks, Error> {
    let mut sinks: Vec<Option<Box<dyn Sink>>> = (0..cluster.threads).map(|_| None).collect();
    if let Some(conn) = output_conn(plan, opts.embedded.as_deref(), Duration::from_secs(30))? {
        let workers = cluster.threads * cluster.processes;
        // Every process fences all the old ids before it reads their markers: a marker read
        // while another old transaction is still open could stop short of the final ones.
        let earlier = match rescaled {
            Some((from, groups)) if plan.sink.exactly_once() => {
                Some(crate::kafka::rescale::take_over(&conn, plan, from, groups)?)
            }
            _ => None,
        };
        for (local, s) in sinks.iter_mut().enumerate() {
            let worker = cluster.process * cluster.threads + local;
            *s = Some(Box::new(KafkaSink::create(
                &conn,
                Arc::clone(plan),
                worker,
                workers,
                earlier.clone(),
            )?));
        }
        return Ok((sinks, false));
    }
    if cluster.process == 0 {
        sinks[0] = Some(match &plan.sink {
            SinkConfig::Files { dir } => {
                Box::new(FilesSink::create(dir.as_ref(), Arc::clone(plan), resuming)?)
            }
            _ => Box::new(ConsoleSink::new(Arc::clone(plan))),
        });
    }
    Ok((sinks, true))
}

/// The Kafka connection of a job's sink, once every output topic was found; `None` for other
/// sinks. `embedded`: the in-process cluster's address, when there is one.
pub(crate) fn output_conn(
    plan: &JobPlan,
    embedded: Option<&str>,
    timeout: Duration,
) -> Result<Option<KafkaConn>, Error> {
    let SinkConfig::Kafka(sink) = &plan.sink else {
        return Ok(None);
    };
    let conn = KafkaConn::to(&sink.endpoint, embedded)?;
    let topics = plan.topics();
    let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
    conn.partitions_of(&topics, timeout).map_err(|e| match e {
        Error::Kafka { cause, message } => Error::kafka(cause, format!("output {message}")),
        e => Error::Sink(format!("output {e}")),
    })?;
    Ok(Some(conn))
}

/// Runs a job until its input ends and returns this process's accounting.
///
/// With several processes, the peers are connected first (see [`cluster`]); a failure here is
/// told to them, so that they stop at once and name this process.
pub fn run(plan: JobPlan, cluster: &Cluster, opts: &RunOptions) -> Result<Accounting, Error> {
    cluster.with_peers("logflow", |network, watchdog| {
        run_workers(plan, cluster, opts, network, watchdog)
    })
}

/// A job's sources, sinks and meters, opened on this process for its local workers; each
/// worker takes its own part when it builds the dataflow.
pub(crate) struct Opened {
    readers: Handoff<Vec<Box<dyn PartitionReader>>>,
    sinks: Handoff<Box<dyn Sink>>,
    /// All outputs go to worker 0 (files, console).
    gather: bool,
    pub counters: Arc<Counters>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The job's checkpoints (when it keeps them), with the one restored.
    checkpoints: Option<Arc<Checkpoints>>,
    /// Asks the job to stop gracefully.
    pub stop: stop::JobStop,
    /// The partitions' final commits, made once every result is written.
    pub commits: ingest::FinalCommits,
}

impl Opened {
    /// Opens sinks, lookup tables and sources up front, so a bad path, a missing topic or an
    /// unreachable broker fails with a clear message before any worker builds the dataflow.
    pub(crate) fn open(
        plan: &Arc<JobPlan>,
        cluster: &Cluster,
        opts: &RunOptions,
    ) -> Result<Opened, Error> {
        let mut opened = Opened::empty(plan, cluster, opts);
        let checkpoints = Checkpoints::open(
            plan,
            cluster.processes,
            cluster.threads * cluster.processes,
            cluster.process == 0,
            {
                let metrics = Arc::clone(&opened.metrics);
                Box::new(move |epoch, took| {
                    metrics.checkpoint_completed(took);
                    stop::checkpoint_completed(epoch);
                })
            },
            {
                let stop = opts.stop.clone();
                Box::new(move || stop.requested())
            },
        )?;
        // The checkpoint's layout, when it differs from this run's: an exactly-once Kafka sink
        // takes over from its transactional ids.
        let rescaled = checkpoints
            .as_ref()
            .and_then(|c| Some((c.rescaled_from()?, c.key_groups())));
        let resuming = checkpoints
            .as_ref()
            .is_some_and(|c| c.restored_epoch().is_some());
        // Called once the peers are connected (`Cluster::with_peers`).
        opened.metrics.ready(Readiness::Peers);
        let (sinks, gather) = open_sinks(plan, cluster, opts, resuming, rescaled)?;
        opened.metrics.ready(Readiness::Sinks);
        crate::sources::lookup::Tables::load(&plan.lookups)?;
        let resume = match &checkpoints {
            Some(c) => ingest::resume_points(&c.restored_states(ingest::INGEST_SLOT))?,
            None => HashMap::new(),
        };
        let readers = open_sources(plan, cluster, opts, &resume)?;
        opened.metrics.ready(Readiness::Consumers);
        opened.checkpoints = checkpoints;
        opened.readers = readers.into_iter().map(|r| Mutex::new(Some(r))).collect();
        opened.sinks = sinks.into_iter().map(Mutex::new).collect();
        opened.gather = gather;
        Ok(opened)
    }

    /// No sources and no sinks: the dataflow of a job that could not open its input or output
    /// here, built anyway because every worker of a cluster must build the same dataflows.
    pub(crate) fn empty(plan: &Arc<JobPlan>, cluster: &Cluster, opts: &RunOptions) -> Opened {
        let metrics = opts.metrics.clone().unwrap_or_else(|| {
            let id = cluster.identity(plan);
            Arc::new(crate::metrics::Metrics::new(plan, id))
        });
        Opened {
            readers: (0..cluster.threads).map(|_| Mutex::new(None)).collect(),
            sinks: (0..cluster.threads).map(|_| Mutex::new(None)).collect(),
            gather: false,
            counters: Arc::new(Counters::default()),
            metrics,
            checkpoints: None,
            stop: opts.stop.clone(),
            commits: ingest::FinalCommits::default(),
        }
    }

    /// Makes the commits of the partitions that ended (call once every result is written):
    /// a failed one leaves the group behind, never ahead of the results.
    pub(crate) fn commit_final_positions(&self) {
        let commits = self
            .commits
            .lock()
            .map(|mut c| std::mem::take(&mut *c))
            .unwrap_or_default();
        for commit in commits {
            if let Err(e) = commit() {
                tracing::warn!("logflow: {e}");
            }
        }
    }

    /// The checkpoint the job's graceful stop ends with is to be a savepoint; its directory
    /// (`None`: the job keeps no checkpoints, and no savepoint can be taken).
    pub(crate) fn keep_savepoint(&self) -> Option<String> {
        let c = self.checkpoints.as_ref()?;
        c.keep_savepoint();
        Some(c.dir().display().to_string())
    }

    /// The job's final checkpoint completed (it keeps checkpoints and was asked to stop): its
    /// workers drop the dataflow.
    pub(crate) fn stopped_at_checkpoint(&self) -> bool {
        self.checkpoints.as_ref().is_some_and(|c| c.poll_last())
    }

    /// Builds the job's dataflow on `worker` (local index `local`) with the readers and sink
    /// opened for it, and returns the dataflow's index and where a sink failure is recorded.
    pub(crate) fn install(
        &self,
        worker: &mut timely::worker::Worker,
        local: usize,
        plan: &Arc<JobPlan>,
    ) -> (usize, Rc<RefCell<Option<Error>>>) {
        let my_readers = self.readers[local]
            .lock()
            .ok()
            .and_then(|mut r| r.take())
            .unwrap_or_default();
        let metrics = Arc::clone(&self.metrics);
        let my_sink = self.sinks[local]
            .lock()
            .ok()
            .and_then(|mut s| s.take())
            .map(|s| crate::metrics::MeteredSink::wrap(s, Arc::clone(&metrics)));
        let failed: Rc<RefCell<Option<Error>>> = Rc::new(RefCell::new(None));
        let plan = Arc::clone(plan);
        let acked = plan
            .commit_horizon()
            .filter(|_| plan.commits_acknowledged());
        let acked = acked.map(|horizon| ingest::commits::Acked {
            probe: timely::dataflow::ProbeHandle::new(),
            horizon,
        });
        let probe = acked.as_ref().map(|a| a.probe.clone());
        let shared = ingest::IngestShared {
            counters: Arc::clone(&self.counters),
            stop: self.stop.clone(),
            commits: Arc::clone(&self.commits),
            acked,
        };
        let sink_failed = Rc::clone(&failed);
        let gather = self.gather;
        let index = worker.next_dataflow_index();
        let ck = self
            .checkpoints
            .as_ref()
            .map(|c| c.worker(worker.index(), Rc::clone(&failed)));
        building(ck.as_ref(), || {
            worker.dataflow::<u64, _, _>(move |scope| {
                let (rows, dead, late) =
                    dataflow::build(scope, &plan, my_readers, shared, &metrics);
                let acks = output::write_outputs(
                    rows,
                    dead,
                    late,
                    my_sink,
                    gather,
                    sink_failed,
                    probe.is_some(),
                );
                if let Some(probe) = &probe {
                    use timely::dataflow::operators::Probe;
                    acks.probe_with(probe);
                }
            })
        });
        if let Some(Err(e)) = ck.map(|c| c.built()) {
            failed.borrow_mut().get_or_insert(e);
        }
        (index, failed)
    }
}

fn run_workers(
    plan: JobPlan,
    cluster: &Cluster,
    opts: &RunOptions,
    network: Option<Network>,
    watchdog: Option<Arc<Watchdog>>,
) -> Result<Accounting, Error> {
    let plan = Arc::new(plan);
    let opened = Arc::new(Opened::open(&plan, cluster, opts)?);
    let first_worker = cluster.process * cluster.threads;
    tracing::info!(
        "logflow: process {} runs workers {}..={} of {}",
        cluster.process,
        first_worker,
        first_worker + cluster.threads - 1,
        cluster.threads * cluster.processes
    );
    let counters = Arc::clone(&opened.counters);
    let done = Arc::clone(&opened);
    let failure: Arc<Mutex<Option<Error>>> = Arc::new(Mutex::new(None));
    let worker_failure = Arc::clone(&failure);
    let (allocators, others) = cluster.allocators(network)?;
    let checkpointed = opened.checkpoints.is_some();
    stop::set_checkpointed(checkpointed);
    let guards =
        timely::execute::execute_from(allocators, others, WorkerConfig::default(), move |worker| {
            let local = worker.index() - first_worker;
            let (index, failed) = opened.install(worker, local, &plan);
            stop::worker_running(true);
            while worker.has_dataflows() {
                // Parked at most this long, so a stop request is seen even by a worker with
                // nothing to do.
                worker.step_or_park(Some(STOP_POLL));
                if failed.borrow().is_some() {
                    break;
                }
                // A graceful stop with checkpoints ends here, once the final checkpoint
                // completed: the open windows are dropped, not emitted (a restart goes on
                // from that checkpoint and emits them whole).
                if opened.stopped_at_checkpoint() {
                    stop::final_checkpoint_done();
                    worker.drop_dataflow(index);
                }
            }
            stop::worker_running(false);
            let err = failed.borrow_mut().take();
            if let Some(e) = err {
                // The peers would wait forever for this worker's progress: stop them all.
                if let Some(w) = &watchdog {
                    w.abort(&e.to_string());
                }
                if let Ok(mut f) = worker_failure.lock() {
                    f.get_or_insert(e);
                }
            }
        })
        .map_err(Error::Internal)?;
    for r in guards.join() {
        if let Err(e) = r {
            return Err(Error::Internal(format!("a worker failed: {e}")));
        }
    }
    if let Some(e) = failure.lock().ok().and_then(|mut f| f.take()) {
        return Err(e);
    }
    // Every result is written: the partitions' last positions become the group's committed
    // offsets.
    done.commit_final_positions();
    Ok(counters.snapshot())
}
