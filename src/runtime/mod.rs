//! Running a job: timely workers, source partitions assigned to workers, the dataflow, sinks.

pub mod accounting;
pub mod dataflow;
pub mod ingest;
pub mod output;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use timely::communication::Config as CommConfig;
use timely::WorkerConfig;

pub use accounting::{Accounting, Counters};

use crate::sinks::console::ConsoleSink;
use crate::sinks::files::FilesSink;
use crate::sinks::Sink;
use crate::sources::file::FileReader;
use crate::sources::PartitionReader;
use crate::spec::plan::{JobPlan, SinkPlan, SourceKind};
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
}

impl Default for Cluster {
    fn default() -> Self {
        Cluster {
            threads: 1,
            processes: 1,
            process: 0,
            addresses: Vec::new(),
        }
    }
}

impl Cluster {
    fn timely_config(&self) -> timely::Config {
        let communication = if self.processes > 1 {
            let addresses = if self.addresses.is_empty() {
                (0..self.processes).map(|i| format!("127.0.0.1:{}", 2101 + i)).collect()
            } else {
                self.addresses.clone()
            };
            CommConfig::Cluster {
                threads: self.threads,
                process: self.process,
                addresses,
                report: false,
                zerocopy: false,
            }
        } else if self.threads > 1 {
            CommConfig::Process(self.threads)
        } else {
            CommConfig::Thread
        };
        timely::Config {
            communication,
            worker: WorkerConfig::default(),
        }
    }
}

/// Source partitions of a job, for assigning them to workers.
fn partition_count(plan: &JobPlan) -> Result<usize, Error> {
    match &plan.source.kind {
        SourceKind::File { .. } | SourceKind::Generator { .. } => Ok(1),
        SourceKind::Kafka { .. } => Err(Error::Usage(
            "Kafka sources are not wired into `run` yet; use `--input FILE` (or `-` for stdin)".into(),
        )),
    }
}

/// Opens partition `p` of the job's source.
fn open_partition(plan: &JobPlan, _p: usize) -> Result<Box<dyn PartitionReader>, Error> {
    match &plan.source.kind {
        SourceKind::File { path } => Ok(Box::new(FileReader::open(path, plan.source.max_record_bytes)?)),
        SourceKind::Generator { .. } => Err(Error::Usage("generator sources are not available yet".into())),
        SourceKind::Kafka { .. } => Err(Error::Usage("Kafka sources are not available yet".into())),
    }
}

fn open_sink(plan: &Arc<JobPlan>) -> Result<Box<dyn Sink>, Error> {
    Ok(match &plan.sink {
        SinkPlan::Console => Box::new(ConsoleSink::new(Arc::clone(plan))),
        SinkPlan::Files { dir } => Box::new(FilesSink::create(dir.as_ref(), Arc::clone(plan))?),
        SinkPlan::Kafka { .. } => {
            // Until the Kafka sink lands, results of Kafka-sink specs are printed instead.
            eprintln!("logflow: the Kafka sink is not available in this build; printing results to the console");
            Box::new(ConsoleSink::new(Arc::clone(plan)))
        }
    })
}

/// Runs a job to completion (a bounded input) and returns this process's accounting.
pub fn run(plan: JobPlan, cluster: &Cluster) -> Result<Accounting, Error> {
    let plan = Arc::new(plan);
    let partitions = partition_count(&plan)?;
    // Open the sink and sources up front on the main thread so bad paths fail with a clear
    // message and exit code before any worker starts.
    let sink = if cluster.process == 0 { Some(open_sink(&plan)?) } else { None };
    let peers = cluster.threads * cluster.processes;
    let first_worker = cluster.process * cluster.threads;
    let mut readers: Vec<Vec<Box<dyn PartitionReader>>> = (0..cluster.threads).map(|_| Vec::new()).collect();
    for p in 0..partitions {
        let w = p % peers;
        if w >= first_worker && w < first_worker + cluster.threads {
            readers[w - first_worker].push(open_partition(&plan, p)?);
        }
    }
    let readers: Vec<Mutex<Option<Vec<Box<dyn PartitionReader>>>>> =
        readers.into_iter().map(|r| Mutex::new(Some(r))).collect();
    let sink = Mutex::new(sink);
    let counters = Arc::new(Counters::default());
    let failure: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));

    let worker_counters = Arc::clone(&counters);
    let worker_failure = Arc::clone(&failure);
    let guards = timely::execute(cluster.timely_config(), move |worker| {
        let local = worker.index() - first_worker;
        let my_readers = readers[local].lock().ok().and_then(|mut r| r.take()).unwrap_or_default();
        let my_sink = if worker.index() == 0 {
            sink.lock().ok().and_then(|mut s| s.take())
        } else {
            None
        };
        let failed: Rc<RefCell<Option<Error>>> = Rc::new(RefCell::new(None));
        let plan = Arc::clone(&plan);
        let counters = Arc::clone(&worker_counters);
        let sink_failed = Rc::clone(&failed);
        worker.dataflow::<u64, _, _>(move |scope| {
            let (rows, dead, late) = dataflow::build(scope, &plan, my_readers, counters);
            output::write_outputs(rows, dead, late, my_sink, sink_failed);
        });
        while worker.has_dataflows() {
            worker.step_or_park(None);
            if failed.borrow().is_some() {
                break;
            }
        }
        let err = failed.borrow_mut().take();
        if let Some(e) = err {
            if let Ok(mut f) = worker_failure.lock() {
                f.get_or_insert(e.to_string());
            }
        }
    })
    .map_err(Error::Runtime)?;
    for r in guards.join() {
        if let Err(e) = r {
            return Err(Error::Runtime(format!("a worker failed: {e}")));
        }
    }
    if let Some(e) = failure.lock().ok().and_then(|mut f| f.take()) {
        return Err(Error::Runtime(e));
    }
    Ok(counters.snapshot())
}

