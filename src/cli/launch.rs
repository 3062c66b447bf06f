//! `logflow launch SPEC --processes N --workers W`: the N processes of one job on this host.
//!
//! Each process is `logflow run SPEC -n N -p i -w W -h HOSTFILE` with the same job flags. It
//! logs JSON; the launcher prints its lines in its own log format, messages prefixed with
//! `[process i]` (a `process` field in JSON); SIGINT and SIGTERM are forwarded to
//! every process still running; each exit is reported, and the launcher fails if any process
//! did, unless `--restart N` says to start the whole job again (after a backoff doubling from
//! 1 s to at most 30 s, at most N times; never after SIGINT/SIGTERM). The last stderr line is
//! the accounting of the whole job (the sum over processes).

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use super::run::JobArgs;
use crate::runtime::cluster::read_hostfile;
use crate::runtime::cluster::{new_peer_key, PEER_KEY_ENV};
use crate::runtime::Accounting;
use crate::Error;

#[derive(clap::Args, Debug)]
pub struct LaunchArgs {
    /// The job spec (TOML).
    spec: PathBuf,
    /// Number of processes to start.
    #[arg(short = 'n', long)]
    processes: usize,
    /// Worker threads per process.
    #[arg(short = 'w', long, visible_alias = "threads", default_value_t = 1)]
    workers: usize,
    /// File with one `host:port` per process (default: free ports on 127.0.0.1).
    #[arg(long)]
    hostfile: Option<PathBuf>,
    /// After one process fails, how long the others get to stop by themselves before they
    /// are killed.
    #[arg(long, default_value = "10s", value_parser = super::run::parse_duration)]
    grace: Duration,
    /// When a process fails or dies, stop the others and start the whole job again, at most
    /// this many times (waiting --backoff, then twice as long each time, at most 30 s); not after
    /// SIGINT/SIGTERM. A Kafka job reads again from its start offsets: results are written
    /// at least once, with the same keys.
    #[arg(long, default_value_t = 0, value_name = "N")]
    restart: u32,
    /// The first wait before a restart (it doubles each time, up to 30 s).
    #[arg(long, default_value = "1s", value_parser = super::run::parse_duration)]
    backoff: Duration,
    #[command(flatten)]
    job: JobArgs,
}

/// The longest wait before a restart.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// A hostfile the launcher wrote, removed when the launch ends.
pub(crate) struct TempHostfile(pub(crate) PathBuf);

impl Drop for TempHostfile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// One started process and what its stderr said.
struct Proc {
    child: Child,
    status: Option<ExitStatus>,
    accounting: Kept<Accounting>,
    /// Its last message naming a sink failure's input position.
    sink_failure: Kept<String>,
    forwarder: Option<std::thread::JoinHandle<()>>,
}

pub fn launch(args: LaunchArgs) -> Result<(), Error> {
    let n = args.processes;
    if n == 0 || args.workers == 0 {
        return Err(super::usage("--processes and --workers must be at least 1"));
    }
    let mut backoff = args.backoff.min(MAX_BACKOFF);
    let mut attempt = 0;
    // The sink failure of the last attempt, with its input position.
    let mut last_sink_failure: Option<String> = None;
    let accountings = loop {
        // A hostfile of free ports is picked again for each attempt: a port of the last
        // attempt may have been taken since.
        let (hostfile, _temp) = match &args.hostfile {
            Some(h) => {
                read_hostfile(h, n)?;
                (h.clone(), None)
            }
            None => {
                let path = free_ports_hostfile(n)?;
                (path.clone(), Some(TempHostfile(path)))
            }
        };
        tracing::info!(
            "logflow launch: starting {n} processes of {} workers ({})",
            args.workers,
            hostfile.display()
        );
        let run = supervise("logflow launch", n, args.grace, |i| {
            let mut cmd = Command::new(logflow_exe()?);
            cmd.arg("run")
                .arg(&args.spec)
                .args(["-n", &n.to_string(), "-p", &i.to_string()])
                .args(["-w", &args.workers.to_string()])
                .arg("-h")
                .arg(&hostfile)
                .args(args.job.to_args())
                // Only process 0 reads a file input, so only it may have stdin.
                .stdin(if i == 0 && args.job.reads_stdin() {
                    Stdio::inherit()
                } else {
                    Stdio::null()
                });
            Ok(cmd)
        })?;
        match run.failure {
            None => break run.accountings,
            Some(e) if run.interrupted || attempt >= args.restart || args.job.reads_stdin() => {
                return Err(e)
            }
            Some(e) => {
                // Results are deterministic in their input position: a sink that refused the
                // same output at the same position will refuse it again (a record a topic
                // cannot take), and restarting would loop until the restarts run out.
                let sink_failure = run.sink_failures.iter().flatten().next().cloned();
                if let (Some(now), Some(before)) = (&sink_failure, &last_sink_failure) {
                    if now == before {
                        return Err(Error::Sink(format!(
                            "{now}; the same sink error at the same input position as before \
                             the last restart: not starting the job again"
                        )));
                    }
                }
                last_sink_failure = sink_failure;
                attempt += 1;
                tracing::warn!(
                    "logflow launch: {e}; starting the job again in {backoff:?} (restart {attempt} of {})",
                    args.restart
                );
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    };
    let mut total = Accounting::default();
    for (i, acc) in accountings.iter().enumerate() {
        let acc =
            acc.ok_or_else(|| Error::Peer(format!("process {i} printed no accounting line")))?;
        total = total.plus(&acc);
    }
    // Like `run`, the accounting (of the whole job) is the last line.
    tracing::info!("{total}");
    Ok(())
}

/// This program, to start more of its processes.
pub(crate) fn logflow_exe() -> Result<PathBuf, Error> {
    std::env::current_exe()
        .map_err(|e| Error::Internal(format!("cannot find the logflow binary: {e}")))
}

/// Starts `n` processes (`command(i)`, stderr piped here), passes their stderr on prefixed with
/// `[process i]`, forwards SIGINT and SIGTERM to every process still running, and waits for
/// all of them. After one fails, the others get `grace` to stop by themselves before they are
/// killed. Fails only when a process cannot be started; how the processes ended is in the
/// returned [`Supervised`].
/// Names the supervisor's pid in the environment of the processes it starts.
const SUPERVISOR_ENV: &str = "LOGFLOW_SUPERVISOR_PID";

/// In a process started by [`supervise`]: dies with the supervisor. A supervisor killed
/// outright (SIGKILL cannot be passed on) would otherwise leave its processes running: a job
/// twice, writing the same checkpoints and outputs as the one started next.
pub(crate) fn die_with_supervisor() {
    let Some(parent) = std::env::var(SUPERVISOR_ENV)
        .ok()
        .and_then(|p| p.parse::<i32>().ok())
    else {
        return;
    };
    // Meant for this process only, not for any it starts (still single-threaded here).
    std::env::remove_var(SUPERVISOR_ENV);
    if nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).is_err() {
        return;
    }
    // Gone before the line above took effect: stop now.
    if nix::unistd::getppid() != Pid::from_raw(parent) {
        std::process::exit(1);
    }
}

pub(crate) fn supervise(
    label: &str,
    n: usize,
    grace: Duration,
    command: impl Fn(usize) -> Result<Command, Error>,
) -> Result<Supervised, Error> {
    // Registered before any child starts, so that no signal is missed.
    let mut signals = Signals::new([SIGINT, SIGTERM])
        .map_err(|e| Error::Internal(format!("cannot handle signals: {e}")))?;
    let signal_handle = signals.handle();

    // The processes started here share a fresh peer key (unless the operator gave one), so
    // nothing else on the machine can pose as one of them while they connect.
    let peer_key = match std::env::var(PEER_KEY_ENV) {
        Ok(k) if !k.trim().is_empty() => k,
        _ => new_peer_key()?,
    };
    let mut procs: Vec<Proc> = Vec::with_capacity(n);
    for i in 0..n {
        let spawned = command(i).and_then(|mut cmd| {
            // Children log JSON, whatever this process prints: the launcher reads their
            // lines' levels and messages and prints them in its own format.
            let mut child_log = crate::diagnostics::child_args();
            if let Some(f) = child_log.iter().position(|a| a == "--log-format") {
                child_log.truncate(f);
            }
            cmd.args(child_log)
                .args(["--log-format", "json"])
                .env(SUPERVISOR_ENV, std::process::id().to_string())
                .env(PEER_KEY_ENV, &peer_key)
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| Error::Internal(format!("starting process {i}: {e}")))
        });
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                stop_all(&mut procs, Signal::SIGTERM);
                return Err(e);
            }
        };
        tracing::info!("{label}: process {i} is pid {}", child.id());
        let accounting = Arc::new(Mutex::new(None));
        let sink_failure = Arc::new(Mutex::new(None));
        let forwarder = child.stderr.take().map(|err| {
            let kept = (Arc::clone(&accounting), Arc::clone(&sink_failure));
            std::thread::spawn(move || forward_stderr(i, err, kept))
        });
        procs.push(Proc {
            child,
            status: None,
            accounting,
            sink_failure,
            forwarder,
        });
    }

    let pids: Vec<Pid> = procs
        .iter()
        .map(|p| Pid::from_raw(p.child.id() as i32))
        .collect();
    let running: Arc<Mutex<Vec<bool>>> = Arc::new(Mutex::new(vec![true; n]));
    let interrupted = Arc::new(AtomicBool::new(false));
    let forward = {
        let running = Arc::clone(&running);
        let interrupted = Arc::clone(&interrupted);
        let label = label.to_string();
        std::thread::spawn(move || {
            for sig in signals.forever() {
                let Ok(sig) = Signal::try_from(sig) else {
                    continue;
                };
                interrupted.store(true, Ordering::SeqCst);
                tracing::info!("{label}: {sig}: passing it on to every process");
                if let Ok(r) = running.lock() {
                    for (pid, alive) in pids.iter().zip(r.iter()) {
                        if *alive {
                            let _ = kill(*pid, sig);
                        }
                    }
                }
            }
        })
    };

    let mut first_failure: Option<Instant> = None;
    let mut killed = false;
    while procs.iter().any(|p| p.status.is_none()) {
        for (i, p) in procs.iter_mut().enumerate() {
            if p.status.is_some() {
                continue;
            }
            let status = match p.child.try_wait() {
                Ok(Some(s)) => s,
                Ok(None) => continue,
                Err(e) => {
                    return Err(Error::Peer(format!("waiting for process {i}: {e}")));
                }
            };
            if let Ok(mut r) = running.lock() {
                r[i] = false;
            }
            if let Some(f) = p.forwarder.take() {
                let _ = f.join();
            }
            tracing::info!("{label}: process {i} {}", describe(status));
            if !status.success() && first_failure.is_none() {
                first_failure = Some(Instant::now());
            }
            p.status = Some(status);
        }
        if let Some(t) = first_failure {
            // The processes stop by themselves when a peer fails; this is only a backstop.
            if !killed && t.elapsed() > grace {
                tracing::warn!(
                    "{label}: processes still running {grace:?} after a failure: killing them"
                );
                stop_all(&mut procs, Signal::SIGKILL);
                killed = true;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    signal_handle.close();
    let _ = forward.join();

    let failed: Vec<String> = procs
        .iter()
        .enumerate()
        .filter_map(|(i, p)| {
            let s = p.status?;
            (!s.success()).then(|| format!("process {i} {}", describe(s)))
        })
        .collect();
    let failure = (!failed.is_empty()).then(|| {
        Error::Peer(format!(
            "{} of {n} processes failed: {}",
            failed.len(),
            failed.join(", ")
        ))
    });
    Ok(Supervised {
        accountings: procs
            .iter()
            .map(|p| p.accounting.lock().ok().and_then(|a| *a))
            .collect(),
        sink_failures: procs
            .iter()
            .map(|p| p.sink_failure.lock().ok().and_then(|f| f.clone()))
            .collect(),
        failure,
        interrupted: interrupted.load(Ordering::SeqCst),
    })
}

/// How the supervised processes ended.
pub(crate) struct Supervised {
    /// Each process's last accounting line.
    pub accountings: Vec<Option<Accounting>>,
    /// Each process's last message naming a sink failure at an input position.
    pub sink_failures: Vec<Option<String>>,
    /// Which processes failed, if any did.
    pub failure: Option<Error>,
    /// SIGINT or SIGTERM was passed on to the processes.
    pub interrupted: bool,
}

/// The last of something a process's stderr said.
type Kept<T> = Arc<Mutex<Option<T>>>;

/// Passes a child's stderr on, line by line, and keeps its last accounting line and its last
/// message naming a sink failure's input position.
fn forward_stderr(
    i: usize,
    err: std::process::ChildStderr,
    (acc, sink_failure): (Kept<Accounting>, Kept<String>),
) {
    for line in BufReader::new(err).split(b'\n') {
        let Ok(line) = line else { break };
        let line = String::from_utf8_lossy(&line);
        let message = crate::diagnostics::forward_child_line(i, &line);
        if let Some(a) = Accounting::parse(&message) {
            if let Ok(mut slot) = acc.lock() {
                *slot = Some(a);
            }
        } else if message.contains(crate::sinks::INPUT_POSITION) {
            if let Ok(mut slot) = sink_failure.lock() {
                *slot = Some(message);
            }
        }
    }
}

fn stop_all(procs: &mut [Proc], sig: Signal) {
    for p in procs.iter_mut().filter(|p| p.status.is_none()) {
        let _ = kill(Pid::from_raw(p.child.id() as i32), sig);
    }
}

fn describe(s: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(0), _) => "finished (exit code 0)".into(),
        (Some(c), _) => format!("failed (exit code {c})"),
        (None, Some(sig)) => match Signal::try_from(sig) {
            Ok(sig) => format!("was stopped by {sig}"),
            Err(_) => format!("was stopped by signal {sig}"),
        },
        (None, None) => "ended".into(),
    }
}

/// Picks `n` free ports on 127.0.0.1 and writes them to a temporary hostfile. (A port could be
/// taken between this check and the process binding it; the process then says so.)
pub(crate) fn free_ports_hostfile(n: usize) -> Result<PathBuf, Error> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()
        .map_err(|e| Error::Endpoint(format!("finding free ports on 127.0.0.1: {e}")))?;
    let mut text = String::new();
    for l in &listeners {
        let a = l
            .local_addr()
            .map_err(|e| Error::Endpoint(format!("finding free ports: {e}")))?;
        text.push_str(&format!("{a}\n"));
    }
    drop(listeners);
    let path = std::env::temp_dir().join(format!("logflow-launch-{}.hosts", std::process::id()));
    std::fs::write(&path, text).map_err(|e| Error::io(&path, e))?;
    Ok(path)
}
