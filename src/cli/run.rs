//! `logflow run SPEC`: run a job.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::ArgAction;

use crate::kafka::embedded::{Demo, Embedded};
use crate::metrics::{ObserveOptions, Observer};
use crate::runtime::cluster::read_hostfile;
use crate::runtime::{self, Cluster};
use crate::spec::overrides::Overrides;
use crate::Error;

/// How a job reads, writes and ends: the flags `run` takes and `launch` passes on to each of
/// its processes.
#[derive(clap::Args, Debug, Clone)]
pub struct JobArgs {
    #[command(flatten)]
    pub overrides: Overrides,
    /// With several processes: how long to wait for the peers at start, and for a silent
    /// peer before the job stops naming it (e.g. `500ms`, `30s`, `2m`).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    peer_timeout: Duration,
    /// No progress line and no summary on stderr (the accounting line is always printed).
    #[arg(short, long)]
    quiet: bool,
    /// After SIGINT/SIGTERM: how long the graceful stop (final checkpoint, sinks flushed) may
    /// take before the process exits 1 naming what did not finish.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    stop_timeout: Duration,
}

impl JobArgs {
    /// The same flags as command-line arguments (for the processes `launch` starts).
    pub fn to_args(&self) -> Vec<OsString> {
        let mut a = self.overrides.to_args();
        a.push("--peer-timeout".into());
        a.push(format!("{}ms", self.peer_timeout.as_millis()).into());
        if self.quiet {
            a.push("--quiet".into());
        }
        a.push("--stop-timeout".into());
        a.push(format!("{}ms", self.stop_timeout.as_millis()).into());
        a
    }

    /// Reads from stdin (only one process of a cluster can).
    pub fn reads_stdin(&self) -> bool {
        self.overrides.input.as_deref() == Some("-")
    }
}

pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let ms = crate::time::duration::parse_ms(s)?;
    u64::try_from(ms)
        .ok()
        .filter(|ms| *ms > 0)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("`{s}` must be more than zero"))
}

#[derive(clap::Args, Debug)]
#[command(disable_help_flag = true)]
pub struct RunArgs {
    /// The job spec (TOML).
    spec: PathBuf,
    #[command(flatten)]
    job: JobArgs,
    /// With no brokers configured: how many generated events the embedded demo feeds.
    #[arg(long, default_value_t = 200_000)]
    demo_events: u64,
    /// With no brokers configured: the embedded demo's feed rate (events per second).
    #[arg(long, default_value_t = 12_000.0)]
    demo_rate: f64,
    /// With no brokers configured: the embedded demo's first event time, RFC 3339, or `now`
    /// (its events then follow the wall clock, `--demo-speed` times faster, as a replay of the
    /// recent past catching up with live traffic).
    #[arg(long, default_value = "now")]
    demo_start: String,
    /// With `--demo-start now`: event-time seconds per wall-clock second (1: live; the default
    /// 120 replays the last half hour in seconds, so windows close and detectors fire at once).
    #[arg(long, default_value_t = 120.0)]
    demo_speed: f64,
    /// With no brokers configured: `top` draws the live view of the job (as `logflow top`),
    /// `json` prints every output record as `<topic> <json>`; `auto`: the view when stdout is
    /// a terminal, else the records.
    #[arg(long, value_enum, default_value_t = DemoOutput::Auto)]
    output: DemoOutput,
    /// Worker threads per process.
    #[arg(short = 'w', long = "threads", default_value_t = 1)]
    threads: usize,
    /// Number of processes in the cluster.
    #[arg(short = 'n', long = "processes", default_value_t = 1)]
    processes: usize,
    /// Index of this process.
    #[arg(short = 'p', long = "process", default_value_t = 0)]
    process: usize,
    /// File with one `host:port` per process (line i = process i; default 127.0.0.1:2101+i).
    #[arg(short = 'h', long = "hostfile")]
    hostfile: Option<PathBuf>,
    /// Serve Prometheus metrics at http://HOST:PORT/metrics (no listener unless given).
    #[arg(long, value_name = "HOST:PORT")]
    metrics_addr: Option<String>,
    /// After the job ends, keep serving /metrics until one scrape has read the final values,
    /// at most this long (e.g. 30s), so a batch run's last numbers reach Prometheus.
    #[arg(long, value_name = "DURATION", requires = "metrics_addr", value_parser = crate::gen::parse_duration)]
    linger: Option<std::time::Duration>,
    /// Create the spec's missing output, dead-letter and late topics (and an exactly-once
    /// sink's commits topic) first, as `topics create` does (1 partition, replication 1);
    /// existing topics are left alone.
    #[arg(long)]
    create_topics: bool,
    /// Print help.
    #[arg(long, action = ArgAction::Help)]
    help: Option<bool>,
}

/// What the embedded demo shows (`--output`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DemoOutput {
    /// The view on a terminal, the records otherwise.
    Auto,
    /// The live view.
    Top,
    /// Every output record, `<topic> <json>` a line.
    Json,
}

pub fn run(args: RunArgs) -> Result<(), Error> {
    let job = &args.job;
    let mut plan = crate::spec::load(&args.spec)?;
    let name = plan.name.clone();
    let env_brokers = std::env::var(crate::kafka::BROKERS_ENV)
        .ok()
        .filter(|b| !b.is_empty());
    job.overrides.apply(&mut plan, env_brokers.as_deref())?;
    if args.threads == 0 || args.processes == 0 {
        return Err(super::usage("-w and -n must be at least 1"));
    }
    if args.process >= args.processes {
        return Err(super::usage(format!(
            "-p {} is out of range for -n {}",
            args.process, args.processes
        )));
    }
    let addresses = match &args.hostfile {
        Some(path) => read_hostfile(path, args.processes)?,
        None => Vec::new(),
    };
    let cluster = Cluster {
        threads: args.threads,
        processes: args.processes,
        process: args.process,
        addresses,
        peer_timeout: job.peer_timeout,
    };
    // Process 0 only: the processes of a job would otherwise race to create the same topics.
    if args.create_topics && args.process == 0 && !plan.source.kind.is_embedded() {
        super::topics::create(&plan, &args.spec, None, 1, 1)?.complete()?;
    }
    let started = Instant::now();
    let is_embedded = plan.source.kind.is_embedded();
    let view = match args.output {
        DemoOutput::Auto => is_embedded && std::io::IsTerminal::is_terminal(&std::io::stdout()),
        DemoOutput::Top if !is_embedded => {
            return Err(super::usage(
                "--output top draws the embedded demo; for another job give it --metrics-addr \
                 and run `logflow top HOST:PORT`",
            ))
        }
        DemoOutput::Top => true,
        DemoOutput::Json => false,
    };
    // No brokers anywhere: run against an in-process cluster fed by the generator.
    let embedded = if is_embedded {
        if args.processes > 1 {
            return Err(super::usage(
                "several processes need a shared input: --input, or Kafka brokers (--brokers)",
            ));
        }
        let demo = Demo {
            events: args.demo_events,
            rate: args.demo_rate,
            start: args.demo_start.clone(),
            speed: args.demo_speed,
            print: !view,
        };
        Some(Embedded::start(&plan, &demo)?)
    } else {
        None
    };
    let mut observer = observe(&args, &plan, &cluster, view)?;
    runtime::stop::handle_signals(job.stop_timeout)?;
    let opts = runtime::RunOptions {
        stop_at_end: job.overrides.stop_at_end,
        end_signal: embedded
            .as_ref()
            .map(|e| std::sync::Arc::clone(&e.end_signal)),
        metrics: Some(observer.metrics()),
        embedded: embedded.as_ref().map(|e| e.brokers.clone()),
        stop: runtime::stop::JobStop::default(),
    };
    let accounting = if view {
        match run_in_view(plan, cluster, opts, observer.metrics())? {
            Some(a) => a,
            None => {
                // Quit before the job ended: the demo's threads end with the process.
                tracing::info!("logflow: the demo was stopped before its end");
                std::process::exit(0);
            }
        }
    } else {
        runtime::run(plan, &cluster, &opts)?
    };
    if let Some(e) = embedded {
        e.finish()?;
    }
    observer.job_ended();
    if !job.quiet {
        let secs = started.elapsed().as_secs_f64();
        tracing::info!(
            "logflow: job {name} finished in {secs:.2}s ({:.0} records/s)",
            accounting.read as f64 / secs.max(1e-9)
        );
        if let Some((n, last)) = observer.metrics().checkpoints_completed() {
            tracing::info!(
                "logflow: {n} checkpoints completed, the last in {:.1} ms",
                last.as_secs_f64() * 1000.0
            );
        }
    }
    // The identity is always printed last: tests and scripts read it.
    tracing::info!("{accounting}");
    if !accounting.balanced() {
        return Err(Error::Internal(format!(
            "records unaccounted for: {accounting}"
        )));
    }
    runtime::stop::run_ended();
    if let (Some(limit), Some(_)) = (args.linger, observer.address()) {
        // In slices, so a stop signal (or one that stopped the job) ends the wait promptly.
        let deadline = Instant::now() + limit;
        while !runtime::stop::requested() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || observer.linger(left.min(std::time::Duration::from_millis(100))) {
                break;
            }
        }
    }
    Ok(())
}

/// Runs the job on a thread while the live view draws it from its metrics; diagnostics wait
/// until the view is closed. `None`: the view was closed before the job ended.
fn run_in_view(
    plan: crate::spec::plan::JobPlan,
    cluster: Cluster,
    opts: runtime::RunOptions,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
) -> Result<Option<crate::runtime::Accounting>, Error> {
    crate::diagnostics::hold();
    let ended = std::sync::Arc::clone(&metrics);
    let job = std::thread::Builder::new()
        .name("logflow-job".into())
        .spawn(move || {
            let r = runtime::run(plan, &cluster, &opts);
            // The view shows the job finished while it stays on screen.
            ended.finish();
            r
        })
        .map_err(|e| Error::Internal(format!("job thread: {e}")));
    let shown = match &job {
        Ok(_) => super::top::show("embedded demo", super::top::Feed::InProcess(metrics)),
        Err(_) => Ok(()),
    };
    crate::diagnostics::release();
    let job = job?;
    shown?;
    if !job.is_finished() {
        return Ok(None);
    }
    match job.join() {
        Ok(r) => r.map(Some),
        Err(_) => Err(Error::Internal("the job's thread panicked".into())),
    }
}

/// Starts the metrics endpoint (`--metrics-addr`) and, on a terminal, the progress line
/// (not under the live view, which shows the same numbers).
fn observe(
    args: &RunArgs,
    plan: &crate::spec::plan::JobPlan,
    cluster: &Cluster,
    view: bool,
) -> Result<Observer, Error> {
    use std::io::IsTerminal;
    let identity = cluster.identity(plan);
    let opts = ObserveOptions {
        metrics_addr: args.metrics_addr.clone(),
        progress: !args.job.quiet && !view && std::io::stderr().is_terminal(),
    };
    let observer = Observer::start(plan, identity, &opts)?;
    if let (Some(addr), false) = (observer.address(), args.job.quiet) {
        tracing::info!("logflow: metrics at http://{addr}/metrics");
    }
    Ok(observer)
}
