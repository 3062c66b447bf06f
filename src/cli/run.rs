//! `logflow run SPEC`: run a job.

use std::path::PathBuf;
use std::time::Instant;

use clap::ArgAction;

use crate::metrics::{Identity, ObserveOptions, Observer};
use crate::parse::Format;
use crate::runtime::embedded::Embedded;
use crate::runtime::{self, Cluster};
use crate::spec::plan::{SinkPlan, SourceKind};
use crate::Error;

#[derive(clap::Args, Debug)]
#[command(disable_help_flag = true)]
pub struct RunArgs {
    /// The job spec (TOML).
    spec: PathBuf,
    /// Read this file instead of the spec's source (`-` = stdin); the run ends with the input.
    #[arg(long)]
    input: Option<String>,
    /// Record format of the input (default: the spec's).
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Write one JSONL file per analysis (plus dead-letter and late files) into DIR instead of
    /// the spec's sinks.
    #[arg(long, value_name = "DIR")]
    output_dir: Option<PathBuf>,
    /// Kafka bootstrap servers (overrides the spec's source and sink brokers).
    #[arg(long)]
    brokers: Option<String>,
    /// Kafka topic to read (overrides the spec's).
    #[arg(long)]
    topic: Option<String>,
    /// Read every partition up to its end offset as of start, emit all open windows, exit 0.
    #[arg(long)]
    stop_at_end: bool,
    /// With no brokers configured: how many generated events the embedded demo feeds.
    #[arg(long, default_value_t = 200_000)]
    demo_events: u64,
    /// With no brokers configured: the embedded demo's feed rate (events per second).
    #[arg(long, default_value_t = 50_000.0)]
    demo_rate: f64,
    /// Worker threads per process.
    #[arg(short = 'w', long = "threads", default_value_t = 1)]
    threads: usize,
    /// Number of processes in the cluster.
    #[arg(short = 'n', long = "processes", default_value_t = 1)]
    processes: usize,
    /// Index of this process.
    #[arg(short = 'p', long = "process", default_value_t = 0)]
    process: usize,
    /// File with one `host:port` per process.
    #[arg(short = 'h', long = "hostfile")]
    hostfile: Option<PathBuf>,
    /// Serve Prometheus metrics at http://HOST:PORT/metrics (no listener unless given).
    #[arg(long, value_name = "HOST:PORT")]
    metrics_addr: Option<String>,
    /// After the job ends, keep serving /metrics until one scrape has read the final values,
    /// at most this long (e.g. 30s), so a batch run's last numbers reach Prometheus.
    #[arg(long, value_name = "DURATION", requires = "metrics_addr", value_parser = crate::gen::parse_duration)]
    linger: Option<std::time::Duration>,
    /// No progress line and no summary on stderr (the accounting line is always printed).
    #[arg(short, long)]
    quiet: bool,
    /// Print help.
    #[arg(long, action = ArgAction::Help)]
    help: Option<bool>,
}

pub fn run(args: RunArgs) -> Result<(), Error> {
    let mut plan = crate::spec::load(&args.spec)?;
    let name = plan.name.clone();
    if let Some(input) = &args.input {
        plan.source.kind = SourceKind::File {
            path: input.clone(),
        };
    }
    if let Some(f) = args.format {
        plan.source.format = f;
    }
    let env_brokers = std::env::var(crate::kafka::BROKERS_ENV)
        .ok()
        .filter(|b| !b.is_empty());
    if let SourceKind::Kafka { topic, brokers, .. } = &mut plan.source.kind {
        if let Some(t) = &args.topic {
            *topic = t.clone();
        }
        if let Some(b) = args
            .brokers
            .clone()
            .or_else(|| brokers.clone())
            .or(env_brokers.clone())
        {
            *brokers = Some(b);
        }
    } else if args.topic.is_some() {
        return Err(super::usage(
            "--topic applies to a Kafka source (not with --input)",
        ));
    }
    if let SinkPlan::Kafka { brokers, .. } = &mut plan.sink {
        if let Some(b) = args
            .brokers
            .clone()
            .or_else(|| brokers.clone())
            .or(env_brokers)
        {
            *brokers = Some(b);
        }
    }
    if let Some(dir) = &args.output_dir {
        plan.sink = SinkPlan::Files {
            dir: dir.display().to_string(),
        };
    }
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
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
            let hosts: Vec<String> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(String::from)
                .collect();
            if hosts.len() < args.processes {
                return Err(super::usage(format!(
                    "{} lists {} hosts but -n is {}",
                    path.display(),
                    hosts.len(),
                    args.processes
                )));
            }
            hosts[..args.processes].to_vec()
        }
        None => Vec::new(),
    };
    let cluster = Cluster {
        threads: args.threads,
        processes: args.processes,
        process: args.process,
        addresses,
    };
    let started = Instant::now();
    // A file input with a Kafka sink and no brokers anywhere: print the results.
    if matches!(plan.sink, SinkPlan::Kafka { brokers: None, .. })
        && !matches!(plan.source.kind, SourceKind::Kafka { .. })
    {
        plan.sink = SinkPlan::Console;
    }
    // No brokers anywhere: run against an in-process cluster fed by the generator.
    let embedded = match &plan.source.kind {
        SourceKind::Kafka { brokers: None, .. } => Some(Embedded::start(
            &mut plan,
            args.demo_events,
            args.demo_rate,
        )?),
        _ => None,
    };
    let mut observer = observe(&args, &plan, &cluster)?;
    let opts = runtime::RunOptions {
        stop_at_end: args.stop_at_end,
        end_signal: embedded
            .as_ref()
            .map(|e| std::sync::Arc::clone(&e.end_signal)),
        metrics: Some(observer.metrics()),
    };
    let accounting = runtime::run(plan, &cluster, &opts)?;
    if let Some(e) = embedded {
        e.finish()?;
    }
    observer.job_ended();
    if !args.quiet {
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "logflow: job {name} finished in {secs:.2}s ({:.0} records/s)",
            accounting.read as f64 / secs.max(1e-9)
        );
    }
    // The identity is always printed last: tests and scripts read it.
    eprintln!("{accounting}");
    if !accounting.balanced() {
        return Err(Error::Runtime(format!(
            "records unaccounted for: {accounting}"
        )));
    }
    if let Some(limit) = args.linger {
        observer.linger(limit);
    }
    Ok(())
}

/// Starts the metrics endpoint (`--metrics-addr`) and, on a terminal, the progress line.
fn observe(
    args: &RunArgs,
    plan: &crate::spec::plan::JobPlan,
    cluster: &Cluster,
) -> Result<Observer, Error> {
    use std::io::IsTerminal;
    let identity = Identity::of(plan, cluster);
    let opts = ObserveOptions {
        metrics_addr: args.metrics_addr.clone(),
        progress: !args.quiet && std::io::stderr().is_terminal(),
    };
    let observer = Observer::start(plan, identity, &opts)?;
    if let (Some(addr), false) = (observer.address(), args.quiet) {
        eprintln!("logflow: metrics at http://{addr}/metrics");
    }
    Ok(observer)
}
