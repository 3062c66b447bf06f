//! The control endpoint of a cluster (process 0): accepts `submit`, `jobs`, `cancel` and
//! `shutdown` requests (see [`protocol`](super::protocol)), one thread per connection.
//!
//! A submission is checked here before any worker sees it: the spec compiles, its input and
//! output exist (Kafka topics, input file, lookup tables). So a bad spec is reported to the
//! submitter with its file, line and field, and never reaches the workers.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::protocol::{Reply, Request, MAX_LINE};
use super::session::{lock, Command, JobRequest, Proposal, Shared};
use crate::kafka::KafkaConn;
use crate::spec::plan::{JobPlan, SourceKind};
use crate::Error;

const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request waits for the workers to apply it (opening a job's Kafka input and
/// output happens then).
const APPLY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the checks of a submission may wait for Kafka metadata.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

struct Endpoint {
    shared: Arc<Shared>,
    to_workers: Mutex<Sender<Proposal>>,
    tickets: AtomicU64,
    env_brokers: Option<String>,
}

/// Binds `addr` and serves requests from a background thread; returns the bound address and
/// the receiving end for global worker 0.
pub fn start(addr: &str, shared: &Arc<Shared>) -> Result<SocketAddr, Error> {
    let (listener, local) = crate::metrics::server::bind_exactly("--control", addr)?;
    let (tx, rx) = mpsc::channel();
    *lock(&shared.inbox) = Some(rx);
    let endpoint = Arc::new(Endpoint {
        shared: Arc::clone(shared),
        to_workers: Mutex::new(tx),
        tickets: AtomicU64::new(1),
        env_brokers: std::env::var(crate::kafka::BROKERS_ENV)
            .ok()
            .filter(|b| !b.is_empty()),
    });
    std::thread::Builder::new()
        .name("logflow-control".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                let e = Arc::clone(&endpoint);
                // A slow submission (Kafka metadata) must not hold up `jobs`.
                let _ = std::thread::Builder::new()
                    .name("logflow-control-conn".into())
                    .spawn(move || e.handle(stream));
            }
        })
        .map_err(|e| Error::Runtime(format!("control listener thread: {e}")))?;
    Ok(local)
}

impl Endpoint {
    fn handle(&self, stream: TcpStream) {
        let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
        let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
        let mut line = String::new();
        let read = match stream.try_clone() {
            Ok(s) => BufReader::new(s.take(MAX_LINE)).read_line(&mut line),
            Err(e) => Err(e),
        };
        let reply = match read {
            Err(e) => Reply::error(&Error::Runtime(format!("reading the request: {e}"))),
            Ok(_) => match serde_json::from_str::<Request>(line.trim()) {
                Err(e) => Reply::error(&Error::Usage(format!("not a control request: {e}"))),
                Ok(req) => self.serve(req),
            },
        };
        let mut out = serde_json::to_vec(&reply).unwrap_or_default();
        out.push(b'\n');
        let mut stream = stream;
        let _ = stream.write_all(&out);
    }

    fn serve(&self, req: Request) -> Reply {
        let ticket = self.tickets.fetch_add(1, Ordering::Relaxed);
        let command = match req {
            Request::Jobs => {
                return Reply::Jobs {
                    jobs: lock(&self.shared.table).list(),
                }
            }
            Request::Submit {
                spec,
                path,
                overrides,
            } => {
                let job = JobRequest {
                    spec,
                    path,
                    overrides,
                    env_brokers: self.env_brokers.clone(),
                };
                if let Err(e) = job.compile().and_then(|plan| preflight(&plan)) {
                    return Reply::error(&e);
                }
                Command::Submit {
                    ticket,
                    job,
                    at_ms: chrono::Utc::now().timestamp_millis(),
                }
            }
            Request::Cancel { job } => Command::Cancel {
                ticket,
                job,
                reason: None,
            },
            Request::Shutdown => Command::Shutdown { ticket },
        };
        let (tx, rx) = mpsc::channel();
        let sent = lock(&self.to_workers).send(Proposal { command, reply: tx });
        if sent.is_err() {
            return Reply::error(&Error::Runtime("the cluster is stopping".into()));
        }
        rx.recv_timeout(APPLY_TIMEOUT).unwrap_or_else(|_| {
            Reply::error(&Error::Runtime(format!(
                "the workers did not apply the request within {APPLY_TIMEOUT:?}"
            )))
        })
    }
}

/// Checks a job's input and output exist before the workers build it, so the submitter gets
/// the error (the same checks every process makes again when it opens them).
fn preflight(plan: &JobPlan) -> Result<(), Error> {
    match &plan.source.kind {
        SourceKind::File { path } if path == "-" => {
            return Err(Error::Usage(
                "a cluster job cannot read stdin: give --input a file".into(),
            ))
        }
        SourceKind::File { path } => {
            std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        }
        SourceKind::Kafka {
            topic,
            brokers,
            properties,
            ..
        } => {
            let brokers = brokers.as_deref().ok_or_else(|| {
                Error::Usage(
                    "a cluster job needs Kafka brokers: --brokers, the spec's `brokers`, or \
                     LOGFLOW_BROKERS where the cluster runs"
                        .into(),
                )
            })?;
            KafkaConn::for_job(brokers, properties).partitions(topic, METADATA_TIMEOUT)?;
        }
        _ => {}
    }
    crate::runtime::output_conn(plan, METADATA_TIMEOUT)?;
    crate::sources::lookup::Tables::load(&plan.lookups)?;
    Ok(())
}
