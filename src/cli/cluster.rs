//! `logflow cluster start|stop`, `logflow submit`, `logflow jobs`, `logflow stop`,
//! `logflow cancel`: a cluster that stays up and runs the jobs submitted to it (see
//! [`crate::control`]).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::control::protocol::{self, Reply, Request};
use crate::control::table::{render, JobState};
use crate::control::tls;
use crate::runtime::cluster::read_hostfile;
use crate::runtime::Cluster;
use crate::spec::overrides::Overrides;
use crate::Error;

/// How long a command waits for the cluster's answer (a submission opens Kafka input and output).
const REPLY_TIMEOUT: Duration = Duration::from_secs(180);

#[derive(clap::Subcommand, Debug)]
pub enum ClusterCmd {
    /// Start the processes of a cluster with no job (all on this host, or one with --process).
    Start(StartArgs),
    /// Stop the cluster: every job stops gracefully (as `logflow stop` stops one: final
    /// checkpoint, sinks flushed), then every process exits; waits until it has.
    Stop(ClusterStopArgs),
}

#[derive(clap::Args, Debug)]
pub struct ClusterStopArgs {
    #[command(flatten)]
    addr: AddrArgs,
    /// Cancel every job at once instead of stopping them gracefully.
    #[arg(long)]
    now: bool,
    /// How long to wait for the cluster to exit before this command exits 1 (the cluster's
    /// own `--stop-timeout` cancels the jobs still stopping when it passes).
    #[arg(long, default_value = "60s", value_parser = super::run::parse_duration)]
    wait: Duration,
}

#[derive(clap::Args, Debug)]
pub struct StartArgs {
    /// Number of processes in the cluster.
    #[arg(short = 'n', long, default_value_t = 1)]
    processes: usize,
    /// Worker threads per process.
    #[arg(short = 'w', long, visible_alias = "threads", default_value_t = 1)]
    workers: usize,
    /// File with one `host:port` per process (line i = process i; default: free ports on
    /// 127.0.0.1, all processes started here).
    #[arg(long)]
    hostfile: Option<PathBuf>,
    /// Run only this process of the cluster (one per host, with --hostfile); without it every
    /// process is started on this host.
    #[arg(short = 'p', long)]
    process: Option<usize>,
    /// Where process 0 accepts `submit`, `jobs`, `cancel` (HOST:PORT; give 0.0.0.0:PORT to
    /// accept other hosts).
    #[arg(long, default_value = protocol::DEFAULT_ADDR)]
    control: String,
    /// How long to wait for the peers at start, and for a silent peer before the cluster
    /// stops naming it.
    #[arg(long, default_value = "30s", value_parser = super::run::parse_duration)]
    peer_timeout: Duration,
    /// After one process fails, how long the others get to stop by themselves before they
    /// are killed.
    #[arg(long, default_value = "10s", value_parser = super::run::parse_duration)]
    grace: Duration,
    /// The file holding the token every control request must carry (default: a random token
    /// written to a file only this user can read, where local clients find it).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// A directory submitted jobs may read and write under (repeatable; default: the
    /// directory the cluster was started in).
    #[arg(long = "allow-dir", value_name = "DIR")]
    allow_dirs: Vec<PathBuf>,
    /// Serve the control port over TLS (1.2 or 1.3) with this certificate (PEM, the chain
    /// from the cluster's own certificate up); needs --tls-key. Clients give --tls-ca.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// How long a graceful stop of the cluster (`cluster stop`, SIGINT/SIGTERM) may take:
    /// then the jobs still stopping are cancelled and the processes exit 1 naming them.
    #[arg(long, default_value = "30s", value_parser = super::run::parse_duration)]
    stop_timeout: Duration,
}

#[derive(clap::Args, Debug)]
pub struct AddrArgs {
    /// The cluster's control endpoint (default: $LOGFLOW_CLUSTER, else 127.0.0.1:7979).
    #[arg(long, value_name = "HOST:PORT")]
    cluster: Option<String>,
    /// The file holding the cluster's token (default: $LOGFLOW_CLUSTER_TOKEN, else the file a
    /// cluster of this user on this host wrote for the address).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Talk TLS to the cluster and trust only the certificates in FILE (PEM: the CA that
    /// signed the cluster's certificate; default: $LOGFLOW_CLUSTER_TLS_CA, else plain TCP).
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<PathBuf>,
    /// Send the token without TLS to a cluster whose address is not loopback (refused
    /// otherwise: anyone on the path could read it). Only on a network you trust.
    #[arg(long)]
    insecure_plaintext: bool,
}

impl AddrArgs {
    /// Whether any of these flags was given.
    pub(crate) fn given(&self) -> bool {
        self.cluster.is_some()
            || self.token_file.is_some()
            || self.tls_ca.is_some()
            || self.insecure_plaintext
    }

    /// The cluster's address and its token.
    pub(crate) fn target(&self) -> Result<(String, Option<String>), Error> {
        let addr = protocol::address(self.cluster.as_deref());
        let token = crate::control::auth::client_token(&addr, self.token_file.as_deref())?;
        Ok((addr, token))
    }

    /// Sends `req` to the cluster with its token.
    pub(crate) fn call(&self, req: &Request) -> Result<(String, Reply), Error> {
        let (addr, token) = self.target()?;
        let ca = self.tls_ca.clone().or_else(|| {
            std::env::var_os(tls::CA_ENV)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        });
        let to = protocol::Target {
            addr: addr.clone(),
            token,
            tls: ca.as_deref().map(tls::client).transpose()?,
            insecure_plaintext: self.insecure_plaintext,
        };
        let reply = protocol::call(&to, req, REPLY_TIMEOUT)?;
        Ok((addr, reply))
    }
}

#[derive(clap::Args, Debug)]
pub struct SubmitArgs {
    /// The job spec (TOML); its text is sent to the cluster.
    spec: PathBuf,
    #[command(flatten)]
    addr: AddrArgs,
    #[command(flatten)]
    overrides: Overrides,
    /// Create the spec's missing output, dead-letter and late topics before submitting, as
    /// `topics create` does (1 partition, replication 1); existing topics are left alone.
    #[arg(long)]
    create_topics: bool,
}

#[derive(clap::Args, Debug)]
pub struct JobsArgs {
    #[command(flatten)]
    addr: AddrArgs,
    /// One JSON object per job instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
pub struct CancelArgs {
    /// The job's id (from `submit` or `jobs`).
    job: u64,
    #[command(flatten)]
    addr: AddrArgs,
}

#[derive(clap::Args, Debug)]
pub struct StopArgs {
    /// The job's id (from `submit` or `jobs`).
    job: u64,
    #[command(flatten)]
    addr: AddrArgs,
    /// How long the graceful stop (final checkpoint, sinks flushed) may take before this
    /// command exits 1 naming what did not finish (the job goes on stopping; `cancel` drops
    /// it at once).
    #[arg(long, default_value = "30s", value_parser = super::run::parse_duration)]
    stop_timeout: Duration,
}

/// How often `stop` looks at the job's state while it stops.
const STOP_POLL: Duration = Duration::from_millis(200);

pub fn cluster(cmd: ClusterCmd) -> Result<(), Error> {
    match cmd {
        ClusterCmd::Start(a) => start(a),
        ClusterCmd::Stop(a) => stop_cluster(a),
    }
}

/// Asks the cluster to stop and waits until its endpoint is gone.
fn stop_cluster(a: ClusterStopArgs) -> Result<(), Error> {
    let (addr, _) = a.addr.call(&Request::Shutdown { now: a.now })?;
    tracing::info!(
        "logflow: the cluster at {addr} is stopping{}",
        if a.now {
            ": its jobs are cancelled"
        } else {
            ": its jobs stop gracefully"
        }
    );
    let started = std::time::Instant::now();
    loop {
        // The endpoint goes with the processes: a failed request means they exited.
        let jobs = match a.addr.call(&Request::Jobs) {
            Ok((_, Reply::Jobs { jobs })) => jobs,
            _ => {
                tracing::info!("logflow: the cluster at {addr} has stopped");
                return Ok(());
            }
        };
        if started.elapsed() >= a.wait {
            let live: Vec<String> = jobs
                .iter()
                .filter(|j| j.state.live())
                .map(|j| format!("{} ({}, {})", j.id, j.name, j.state.name()))
                .collect();
            return Err(Error::Stop(format!(
                "the cluster at {addr} is still stopping after {}; live jobs: {} \
                 (`logflow cluster stop --now` cancels them)",
                crate::time::duration::format_ms(a.wait.as_millis() as i64),
                if live.is_empty() {
                    "none".to_string()
                } else {
                    live.join(", ")
                }
            )));
        }
        std::thread::sleep(STOP_POLL);
    }
}

fn start(a: StartArgs) -> Result<(), Error> {
    let n = a.processes;
    if n == 0 || a.workers == 0 {
        return Err(super::usage("--processes and --workers must be at least 1"));
    }
    // Absolute, so that every process (and the error messages) agree on them.
    let allow_dirs = a
        .allow_dirs
        .iter()
        .map(|d| std::path::absolute(d).map_err(|e| Error::io(d, e)))
        .collect::<Result<Vec<_>, _>>()?;
    let access = crate::control::server::Access {
        token_file: a.token_file.clone(),
        allow_dirs: allow_dirs.clone(),
        tls: a.tls_cert.clone().zip(a.tls_key.clone()),
    };
    if let Some(p) = a.process {
        if p >= n {
            return Err(super::usage(format!(
                "--process {p} is out of range for -n {n}"
            )));
        }
        let addresses = match &a.hostfile {
            Some(h) => read_hostfile(h, n)?,
            None if n == 1 => Vec::new(),
            None => return Err(super::usage("--process needs --hostfile with -n above 1")),
        };
        let cluster = Cluster {
            threads: a.workers,
            processes: n,
            process: p,
            addresses,
            peer_timeout: a.peer_timeout,
        };
        return crate::control::serve(&cluster, &a.control, &access, a.stop_timeout);
    }
    // Every process here: each is this command with --process i.
    let (hostfile, _temp) = match &a.hostfile {
        Some(h) => {
            read_hostfile(h, n)?;
            (h.clone(), None)
        }
        None => {
            let path = super::launch::free_ports_hostfile(n)?;
            (path.clone(), Some(super::launch::TempHostfile(path)))
        }
    };
    tracing::info!(
        "logflow cluster: starting {n} processes of {} workers ({}); control at {}",
        a.workers,
        hostfile.display(),
        a.control
    );
    let run = super::launch::supervise("logflow cluster", n, a.grace, |i| {
        let mut cmd = Command::new(super::launch::logflow_exe()?);
        cmd.args(["cluster", "start", "-n", &n.to_string()])
            .args(["-w", &a.workers.to_string(), "-p", &i.to_string()])
            .arg("--hostfile")
            .arg(&hostfile)
            .args(["--control", &a.control])
            .arg("--peer-timeout")
            .arg(format!("{}ms", a.peer_timeout.as_millis()))
            .arg("--stop-timeout")
            .arg(format!("{}ms", a.stop_timeout.as_millis()))
            .stdin(Stdio::null());
        if let Some(f) = &a.token_file {
            cmd.arg("--token-file").arg(f);
        }
        for d in &allow_dirs {
            cmd.arg("--allow-dir").arg(d);
        }
        if let Some((cert, key)) = &access.tls {
            cmd.arg("--tls-cert").arg(cert).arg("--tls-key").arg(key);
        }
        Ok(cmd)
    })?;
    match run.failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

pub fn submit(a: SubmitArgs) -> Result<(), Error> {
    if a.create_topics {
        // Here, with the submitter's brokers and Kafka settings: the cluster never creates
        // topics for a job.
        let mut plan = crate::spec::load(&a.spec)?;
        let env_brokers = std::env::var(crate::kafka::BROKERS_ENV)
            .ok()
            .filter(|b| !b.is_empty());
        a.overrides.apply(&mut plan, env_brokers.as_deref())?;
        super::topics::create(&plan, &a.spec, None, 1, 1)?.complete()?;
    }
    let spec = std::fs::read_to_string(&a.spec).map_err(|e| Error::io(&a.spec, e))?;
    let path = std::path::absolute(&a.spec).map_err(|e| Error::io(&a.spec, e))?;
    let req = Request::Submit {
        spec,
        path: path.display().to_string(),
        overrides: a.overrides.absolute()?,
    };
    match a.addr.call(&req)? {
        (addr, Reply::Submitted { job, name }) => {
            tracing::info!("logflow: job {job} ({name}) submitted to the cluster at {addr}");
            // The id alone on stdout, for scripts: `job=$(logflow submit ...)`.
            super::stdout_result(writeln!(std::io::stdout(), "{job}"))
        }
        (_, other) => Err(unexpected(&other)),
    }
}

pub fn jobs(a: JobsArgs) -> Result<(), Error> {
    let (addr, reply) = a.addr.call(&Request::Jobs)?;
    let Reply::Jobs { jobs } = reply else {
        return Err(Error::Peer(format!(
            "the cluster at {addr} did not answer with its jobs"
        )));
    };
    let mut text = String::new();
    if a.json {
        for j in &jobs {
            text.push_str(&serde_json::to_string(j).map_err(|e| Error::Internal(e.to_string()))?);
            text.push('\n');
        }
    } else {
        text = render(&jobs);
    }
    super::stdout_result(std::io::stdout().write_all(text.as_bytes()))
}

pub fn cancel(a: CancelArgs) -> Result<(), Error> {
    match a.addr.call(&Request::Cancel { job: a.job })?.1 {
        Reply::Cancelled { job } => {
            tracing::info!("logflow: job {job} cancelled");
            Ok(())
        }
        other => Err(unexpected(&other)),
    }
}

/// Stops a job gracefully and waits until it has stopped (or `--stop-timeout` passed).
pub fn stop(a: StopArgs) -> Result<(), Error> {
    stop_job(&a, false).map(|_| ())
}

/// Stops a job at a savepoint, waits until it has stopped, and prints the savepoint's
/// directory.
pub fn savepoint(a: StopArgs) -> Result<(), Error> {
    let Some(dir) = stop_job(&a, true)? else {
        return Err(Error::Peer(format!(
            "the cluster did not say where job {}'s checkpoints are",
            a.job
        )));
    };
    // The newest savepoint there is the job's: one run of a job uses its directory at a time.
    let found = crate::checkpoint::process::list(std::path::Path::new(&dir))?
        .into_iter()
        .find(|s| s.savepoint && s.read.is_ok());
    let Some(s) = found else {
        return Err(Error::Checkpoint(format!(
            "job {} stopped, but {dir} holds no savepoint (is the directory shared with this \
             host?)",
            a.job
        )));
    };
    let path = crate::checkpoint::store::epoch_path(std::path::Path::new(&dir), s.epoch);
    tracing::info!(
        "logflow: job {} stopped at savepoint {} ({}): `logflow submit SPEC --from-checkpoint {dir}` \
         continues from it",
        a.job,
        s.epoch,
        path.display()
    );
    super::stdout_result(writeln!(std::io::stdout(), "{}", path.display()))
}

/// Stops a job gracefully (at a savepoint: `savepoint`) and waits until it has stopped;
/// returns the job's checkpoint directory when the cluster named it.
fn stop_job(a: &StopArgs, savepoint: bool) -> Result<Option<String>, Error> {
    let (addr, reply) = a.addr.call(&Request::Stop {
        job: a.job,
        savepoint,
    })?;
    let Reply::StopRequested {
        job,
        checkpoint_dir,
    } = reply
    else {
        return Err(unexpected(&reply));
    };
    tracing::info!(
        "logflow: job {job} on the cluster at {addr} is stopping (within {})",
        crate::time::duration::format_ms(a.stop_timeout.as_millis() as i64)
    );
    let started = std::time::Instant::now();
    loop {
        let Reply::Jobs { jobs } = a.addr.call(&Request::Jobs)?.1 else {
            return Err(Error::Peer(format!(
                "the cluster at {addr} did not answer with its jobs"
            )));
        };
        let Some(s) = jobs.into_iter().find(|j| j.id == job) else {
            return Err(Error::Peer(format!(
                "the cluster at {addr} no longer lists job {job}"
            )));
        };
        match s.state {
            JobState::Stopped => {
                tracing::info!(
                    "logflow: job {job} stopped: {} records in, {} results out",
                    s.records_in,
                    s.records_out
                );
                return Ok(checkpoint_dir);
            }
            JobState::Stopping => {}
            other => {
                let why = s.reason.map_or(String::new(), |r| format!(": {r}"));
                return Err(Error::Peer(format!(
                    "job {job} did not stop: it {}{why}",
                    other.name()
                )));
            }
        }
        if started.elapsed() >= a.stop_timeout {
            return Err(Error::Peer(format!(
                "job {job} did not stop within {}: {} of its workers still hold its dataflow \
                 (with checkpoints, the final one has not completed; without, the windows \
                 and sinks are not flushed yet); it goes on stopping, `logflow cancel {job}` \
                 drops it at once",
                crate::time::duration::format_ms(a.stop_timeout.as_millis() as i64),
                s.workers_running
            )));
        }
        std::thread::sleep(STOP_POLL);
    }
}

fn unexpected(r: &Reply) -> Error {
    Error::Peer(format!("unexpected answer from the cluster: {r:?}"))
}
