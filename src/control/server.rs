//! The control endpoint of a cluster (process 0): accepts `submit`, `jobs`, `cancel` and
//! `shutdown` requests (see [`protocol`](super::protocol)), one thread per connection within
//! [`crate::metrics::listener`]'s limits: at most [`MAX_PENDING`] connections still sending
//! their request, [`REQUEST_DEADLINE`] for a whole one, [`MAX_REQUEST`] bytes. A request
//! without the cluster's token is answered `unauthorized` (see [`auth`](super::auth)).
//!
//! A submitted job may touch only files under the cluster's allowed directories
//! ([`confine`](super::confine)).
//!
//! A submission is checked here before any worker sees it: the spec compiles, its input and
//! output exist (Kafka topics, input file, lookup tables). So a bad spec is reported to the
//! submitter with its file, line and field, and never reaches the workers.

use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::auth;
use super::confine::AllowDirs;
use super::protocol::{self, Reply, Request, MAX_REQUEST, UNAUTHORIZED};
use super::session::{lock, Command, JobRequest, Proposal, Shared};
use crate::kafka::KafkaConn;
use crate::metrics::listener::{self, ReadError, Slot};
use crate::spec::plan::{FileConfig, JobPlan, SourceConfig};
use crate::Error;

/// A whole request line, from the connection's start; clients send it at once.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(5);
/// Writing a reply.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections still sending their request; one more closes the oldest.
pub const MAX_PENDING: usize = 32;
/// Longest `path` of a submission (it is shown by `jobs` and in the cluster's log).
const MAX_PATH: usize = 4096;
/// How long a request waits for the workers to apply it (opening a job's Kafka input and
/// output happens then).
const APPLY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the checks of a submission may wait for Kafka metadata.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// How the control endpoint admits requests and jobs.
#[derive(Clone, Debug, Default)]
pub struct Access {
    /// The file holding the token; `None`: make one where local clients find it.
    pub token_file: Option<PathBuf>,
    /// Directories submitted jobs may use; empty: the current directory.
    pub allow_dirs: Vec<PathBuf>,
}

/// A token file this process wrote; removed when the endpoint's process ends.
pub struct TokenFile(PathBuf);

impl Drop for TokenFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

struct Endpoint {
    shared: Arc<Shared>,
    token: String,
    allow: AllowDirs,
    to_workers: Mutex<Sender<Proposal>>,
    tickets: AtomicU64,
    env_brokers: Option<String>,
}

/// Binds `addr` and serves requests from a background thread; returns the bound address and
/// the token file it wrote (if it made the token), and gives global worker 0 its receiving end.
pub fn start(
    addr: &str,
    access: &Access,
    shared: &Arc<Shared>,
) -> Result<(SocketAddr, Option<TokenFile>), Error> {
    let allow = AllowDirs::new(&access.allow_dirs)?;
    let (listener, local) = crate::metrics::server::bind_exactly("--control", addr)?;
    let (token, written) = match &access.token_file {
        Some(f) => (auth::read(f)?, None),
        None => {
            let path = auth::default_path(&local).ok_or_else(|| {
                Error::Usage(
                    "no place for the control token (neither XDG_RUNTIME_DIR nor HOME is \
                     set): give --token-file"
                        .into(),
                )
            })?;
            let token = auth::generate()?;
            auth::write(&path, &token)?;
            eprintln!(
                "logflow cluster: control token in {} (clients of this user here find it)",
                path.display()
            );
            (token, Some(TokenFile(path)))
        }
    };
    let (tx, rx) = mpsc::channel();
    *lock(&shared.inbox) = Some(rx);
    let endpoint = Arc::new(Endpoint {
        shared: Arc::clone(shared),
        token,
        allow,
        to_workers: Mutex::new(tx),
        tickets: AtomicU64::new(1),
        env_brokers: std::env::var(crate::kafka::BROKERS_ENV)
            .ok()
            .filter(|b| !b.is_empty()),
    });
    std::thread::Builder::new()
        .name("logflow-control".into())
        .spawn(move || {
            // A thread per connection: a slow submission (Kafka metadata) must not hold up
            // `jobs`.
            listener::serve_bounded(
                listener,
                "logflow-control-conn",
                MAX_PENDING,
                move |s, slot| endpoint.handle(s, slot),
            )
        })
        .map_err(|e| Error::Internal(format!("control listener thread: {e}")))?;
    Ok((local, written))
}

impl Endpoint {
    fn handle(&self, mut stream: TcpStream, slot: &Slot) {
        let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
        let deadline = listener::deadline(REQUEST_DEADLINE);
        let read =
            listener::read_request(&mut stream, deadline, MAX_REQUEST, |b| b.contains(&b'\n'));
        slot.release();
        let unauthorized = || Reply::Error {
            message: UNAUTHORIZED.into(),
            exit_code: 2,
        };
        let reply = match read {
            Ok(line) => match protocol::parse_line(&line) {
                Some((token, req)) if auth::matches(&self.token, &token) => match req {
                    Ok(req) => self.serve(req),
                    Err(e) => Reply::error(&Error::Usage(format!("not a control request: {e}"))),
                },
                _ => unauthorized(),
            },
            Err(ReadError::TooLarge) => Reply::error(&Error::Usage(format!(
                "request larger than {MAX_REQUEST} bytes"
            ))),
            Err(ReadError::Deadline) => Reply::error(&Error::Usage(format!(
                "the request did not arrive within {REQUEST_DEADLINE:?}"
            ))),
            Err(ReadError::Closed | ReadError::Io) => return,
        };
        let mut out = serde_json::to_vec(&reply).unwrap_or_default();
        out.push(b'\n');
        let _ = stream.write_all(&out);
        // Whatever the client still sends (a request over the bound) is read and dropped
        // until the deadline, so that the reply is not lost to a reset.
        let _ = stream.shutdown(Shutdown::Write);
        listener::drain(&mut stream, deadline);
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
                if path.len() > MAX_PATH {
                    return Reply::error(&Error::Usage(format!(
                        "the spec's path is longer than {MAX_PATH} bytes"
                    )));
                }
                let job = JobRequest {
                    spec,
                    path,
                    overrides,
                    env_brokers: self.env_brokers.clone(),
                };
                let checked = job.compile().and_then(|plan| {
                    self.allow.check_plan(&plan)?;
                    preflight(&plan)
                });
                if let Err(e) = checked {
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
            return Reply::error(&Error::Peer("the cluster is stopping".into()));
        }
        rx.recv_timeout(APPLY_TIMEOUT).unwrap_or_else(|_| {
            Reply::error(&Error::Peer(format!(
                "the workers did not apply the request within {APPLY_TIMEOUT:?}"
            )))
        })
    }
}

/// Checks a job's input and output exist before the workers build it, so the submitter gets
/// the error (the same checks every process makes again when it opens them).
fn preflight(plan: &JobPlan) -> Result<(), Error> {
    match &plan.source.kind {
        SourceConfig::File(FileConfig { path }) if path == "-" => {
            return Err(Error::Usage(
                "a cluster job cannot read stdin: give --input a file".into(),
            ))
        }
        SourceConfig::File(FileConfig { path }) => {
            // Not a directory or a device: a worker's read of one fails or never ends.
            let m = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
            if !m.is_file() {
                return Err(Error::Usage(format!("input `{path}`: not a regular file")));
            }
        }
        SourceConfig::Kafka(k) => {
            if k.endpoint.brokers().is_none() {
                return Err(Error::Usage(
                    "a cluster job needs Kafka brokers: --brokers, the spec's `brokers`, or \
                     LOGFLOW_BROKERS where the cluster runs"
                        .into(),
                ));
            }
            KafkaConn::to(&k.endpoint, None)?.partitions(&k.topic, METADATA_TIMEOUT)?;
        }
        _ => {}
    }
    crate::runtime::output_conn(plan, None, METADATA_TIMEOUT)?;
    crate::sources::lookup::Tables::load(&plan.lookups)?;
    Ok(())
}
