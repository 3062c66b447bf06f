//! The control endpoint of a cluster (process 0): accepts `submit`, `jobs`, `cancel` and
//! `shutdown` requests (see [`protocol`](super::protocol)), one thread per connection within
//! [`crate::metrics::listener`]'s limits: at most [`MAX_PENDING`] connections still sending
//! their request, [`REQUEST_DEADLINE`] for a whole one, [`MAX_REQUEST`] bytes. A request
//! without the cluster's token is answered `unauthorized` (see [`auth`](super::auth)); with
//! `--tls-cert`, requests come over TLS only ([`tls`](super::tls)). A peer (an IP address)
//! has at most [`MAX_IN_SERVICE_PER_PEER`] authenticated requests in service at once, so a
//! client holding the token cannot tie up the endpoint's threads with slow submissions.
//!
//! A submitted job may touch only files under the cluster's allowed directories
//! ([`confine`](super::confine)).
//!
//! A submission is checked here before any worker sees it: the spec compiles, its input and
//! output exist (Kafka topics, input file, lookup tables). So a bad spec is reported to the
//! submitter with its file, line and field, and never reaches the workers.

use std::collections::HashMap;
use std::io::Write;
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::auth;
use super::confine::AllowDirs;
use super::protocol::{self, Reply, Request, MAX_REQUEST, UNAUTHORIZED};
use super::session::{lock, Command, JobRequest, Proposal, Shared};
use super::tls::{self, Conn};
use crate::kafka::KafkaConn;
use crate::metrics::listener::{self, ReadError, Slot, Socket};
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

/// Authenticated requests of one peer (IP address) in service at once: a submission waits
/// for Kafka metadata and for the workers, so each one holds a thread for a while.
pub const MAX_IN_SERVICE_PER_PEER: usize = 8;
/// Authenticated requests in service at once, all peers together.
pub const MAX_IN_SERVICE: usize = 64;

/// How the control endpoint admits requests and jobs.
#[derive(Clone, Debug, Default)]
pub struct Access {
    /// The file holding the token; `None`: make one where local clients find it.
    pub token_file: Option<PathBuf>,
    /// Directories submitted jobs may use; empty: the current directory.
    pub allow_dirs: Vec<PathBuf>,
    /// The certificate (chain) and private key files of the port's TLS; `None`: plain TCP.
    pub tls: Option<(PathBuf, PathBuf)>,
}

/// A token file this process wrote; removed when the endpoint's process ends.
pub struct TokenFile(PathBuf);

impl Drop for TokenFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Counts the requests in service, per peer and in all.
#[derive(Default)]
struct InService {
    per_peer: Mutex<HashMap<IpAddr, usize>>,
    limit_per_peer: usize,
    limit: usize,
}

/// A request's place in service; given back when dropped.
struct Serving<'a> {
    of: &'a InService,
    peer: IpAddr,
}

impl InService {
    fn new(limit_per_peer: usize, limit: usize) -> InService {
        InService {
            per_peer: Mutex::default(),
            limit_per_peer,
            limit,
        }
    }

    /// A place for one more request of `peer`, or the reason there is none.
    fn enter(&self, peer: IpAddr) -> Result<Serving<'_>, Error> {
        let mut m = lock(&self.per_peer);
        let total: usize = m.values().sum();
        let mine = m.get(&peer).copied().unwrap_or(0);
        if mine >= self.limit_per_peer {
            return Err(Error::Peer(format!(
                "too many requests in service from {peer} (at most {}): retry when one has \
                 been answered",
                self.limit_per_peer
            )));
        }
        if total >= self.limit {
            return Err(Error::Peer(format!(
                "too many requests in service (at most {}): retry later",
                self.limit
            )));
        }
        m.insert(peer, mine + 1);
        Ok(Serving { of: self, peer })
    }
}

impl Drop for Serving<'_> {
    fn drop(&mut self) {
        let mut m = lock(&self.of.per_peer);
        if let Some(n) = m.get_mut(&self.peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.peer);
            }
        }
    }
}

struct Endpoint {
    shared: Arc<Shared>,
    token: String,
    allow: AllowDirs,
    tls: Option<Arc<rustls::ServerConfig>>,
    in_service: InService,
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
    let tls = match &access.tls {
        Some((cert, key)) => Some(tls::server(cert, key)?),
        None => None,
    };
    let (listener, local) = crate::metrics::server::bind_exactly("--control", addr)?;
    if tls.is_none() && !local.ip().is_loopback() {
        tracing::warn!(
            "logflow cluster: the control port {local} is not on a loopback address \
             and has no TLS: requests and the token cross the network in clear (--tls-cert, \
             --tls-key)"
        );
    }
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
            tracing::info!(
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
        tls,
        in_service: InService::new(MAX_IN_SERVICE_PER_PEER, MAX_IN_SERVICE),
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
    fn handle(&self, stream: TcpStream, slot: &Slot) {
        let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
        let deadline = listener::deadline(REQUEST_DEADLINE);
        let Some(mut conn) = self.accept(stream, deadline) else {
            return;
        };
        let read = listener::read_request(&mut conn, deadline, MAX_REQUEST, |b| b.contains(&b'\n'));
        slot.release();
        let unauthorized = || Reply::Error {
            message: UNAUTHORIZED.into(),
            exit_code: 2,
        };
        // Answered before the process exits, even when the request ends the cluster.
        let _replying = read.is_ok().then(|| self.shared.replying());
        let reply = match read {
            Ok(line) => match protocol::parse_line(&line) {
                Some((token, req)) if auth::matches(&self.token, &token) => match req {
                    Ok(req) => match conn.socket().peer_addr() {
                        Ok(peer) => match self.in_service.enter(peer.ip()) {
                            Ok(_serving) => self.serve(req),
                            Err(e) => Reply::error(&e),
                        },
                        Err(_) => return,
                    },
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
        reply_and_close(&mut conn, &reply, deadline);
    }

    /// The connection as this port speaks it: TLS if it has a certificate. A client speaking
    /// the other way is answered in its own terms (a plain error line) or closed, at once.
    fn accept(&self, stream: TcpStream, deadline: std::time::Instant) -> Option<Conn> {
        let first = first_byte(&stream, deadline);
        match (&self.tls, first) {
            (Some(config), Some(tls::HANDSHAKE)) => {
                let conn = rustls::ServerConnection::new(Arc::clone(config)).ok()?;
                Some(Conn::Tls(Box::new(rustls::StreamOwned::new(conn, stream))))
            }
            (Some(_), Some(_)) => {
                let reply = Reply::error(&Error::Usage(
                    "this control port takes TLS only: give the client --tls-ca FILE (the CA \
                     of the cluster's certificate)"
                        .into(),
                ));
                reply_and_close(&mut Conn::Plain(stream), &reply, deadline);
                None
            }
            // A TLS client on a plain port: nothing it could read; closing tells it at once.
            (None, Some(tls::HANDSHAKE)) => None,
            (None, _) => Some(Conn::Plain(stream)),
            (Some(_), None) => None,
        }
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
            Request::Stop { job, savepoint } => Command::Stop {
                ticket,
                job,
                savepoint,
            },
            Request::Shutdown { now } => Command::Shutdown {
                ticket,
                now,
                reason: None,
            },
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

/// The first byte the client sent, waiting until `deadline` at most.
fn first_byte(stream: &TcpStream, deadline: std::time::Instant) -> Option<u8> {
    let mut b = [0u8; 1];
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return None;
        }
        match stream.peek(&mut b) {
            Ok(1) => return Some(b[0]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            _ => return None,
        }
    }
}

/// Writes `reply` and closes the connection.
fn reply_and_close(conn: &mut Conn, reply: &Reply, deadline: std::time::Instant) {
    let mut out = serde_json::to_vec(reply).unwrap_or_default();
    out.push(b'\n');
    let _ = conn.write_all(&out);
    conn.finish();
    // Whatever the client still sends (a request over the bound) is read and dropped
    // until the deadline, so that the reply is not lost to a reset.
    let _ = conn.socket().shutdown(Shutdown::Write);
    listener::drain(conn.socket(), deadline);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_in_service_are_capped_per_peer_and_in_all() {
        let limits = InService::new(2, 3);
        let (a, b): (IpAddr, IpAddr) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into());
        let a1 = limits.enter(a).unwrap();
        let a2 = limits.enter(a).unwrap();
        let e = limits.enter(a).err().unwrap();
        assert!(e.to_string().contains("from 10.0.0.1 (at most 2)"), "{e}");
        let b1 = limits.enter(b).unwrap();
        // Three in service: the total is reached, for any peer.
        let e = limits.enter(b).err().unwrap();
        assert!(e.to_string().contains("(at most 3)"), "{e}");
        drop(a1);
        let _b2 = limits.enter(b).unwrap();
        drop((a2, b1));
        let _a = limits.enter(a).unwrap();
        let _a = limits.enter(a).unwrap();
    }
}
