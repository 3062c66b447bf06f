//! The command line (docs/design.md section 6). Exit codes: 0 success, 2 bad usage or spec,
//! 1 runtime failure, always with a one-line cause on stderr.

mod bench_read;
mod check;
mod checkpoints;
mod cluster;
mod gen;
mod launch;
mod run;
mod schema;
mod tail;
mod top;
mod topics;

use clap::{Parser, Subcommand};

use crate::diagnostics::LogFormat;
use crate::Error;

/// Real-time log analytics on timely dataflow.
#[derive(Parser, Debug)]
#[command(name = "logflow", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Which diagnostics to print: a RUST_LOG-style filter such as `info`, `warn` or
    /// `warn,logflow::sources=debug` (default: $RUST_LOG, else `warn,logflow=info`).
    #[arg(long, global = true, value_name = "FILTER")]
    log_level: Option<String>,
    /// How diagnostics are printed on stderr: `text` (time, level, target, message) or `json`
    /// (one object a line). Results are never on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a job spec.
    Run(run::RunArgs),
    /// Start the processes of one job on this host (a local cluster).
    Launch(launch::LaunchArgs),
    /// A cluster that stays up and runs submitted jobs: `cluster start`, `cluster stop`.
    #[command(subcommand)]
    Cluster(cluster::ClusterCmd),
    /// Run a job on a running cluster (prints its id).
    Submit(cluster::SubmitArgs),
    /// List a cluster's jobs: id, name, state, watermark, records in and out.
    Jobs(cluster::JobsArgs),
    /// Stop a job on a cluster gracefully: stop reading, take the final checkpoint, flush the
    /// sinks; waits until it is `stopped`.
    Stop(cluster::StopArgs),
    /// Stop a job on a cluster at a savepoint: as `stop`, and its final checkpoint is kept
    /// until removed; prints the savepoint's directory (`submit --from-checkpoint` continues
    /// from it, on a cluster of any size).
    Savepoint(cluster::StopArgs),
    /// Cancel a job on a cluster: its dataflow is dropped on every worker.
    Cancel(cluster::CancelArgs),
    /// List the checkpoints of a checkpoint directory: epoch, layout, key groups, barrier,
    /// input positions, size, latest and savepoints.
    Checkpoints(checkpoints::CheckpointsArgs),
    /// Validate a job spec and explain what it computes.
    Check(check::CheckArgs),
    /// User-defined schemas: `schema infer FILE` prints a `[schema]` that reads FILE.
    #[command(subcommand)]
    Schema(schema::SchemaCmd),
    /// Write synthetic logs or user events (file, stdout or a Kafka topic).
    Gen(gen::GenCmd),
    /// Kafka topics of a spec: `topics create SPEC` creates its output, dead-letter and late
    /// topics.
    #[command(subcommand)]
    Topics(topics::TopicsCmd),
    /// A live view of a running job: throughput, watermark lag, late and dead-letter rates,
    /// and the latest window of each analysis (from its `--metrics-addr`).
    Top(top::TopArgs),
    /// Print the records of a Kafka topic (e.g. an analysis's output).
    Tail(tail::TailArgs),
    /// Read a topic to its end as fast as the job's Kafka client can (for scripts/bench).
    #[command(hide = true)]
    BenchRead(bench_read::BenchReadArgs),
}

/// Parses arguments, runs the command, and returns the process exit code.
pub fn main() -> i32 {
    launch::die_with_supervisor();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    if let Err(e) = crate::diagnostics::install(cli.log_level.as_deref(), cli.log_format) {
        eprintln!("logflow: {e}");
        return 2;
    }
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Launch(args) => launch::launch(args),
        Command::Check(args) => check::check(args),
        Command::Checkpoints(args) => checkpoints::checkpoints(args),
        Command::Cluster(cmd) => cluster::cluster(cmd),
        Command::Submit(args) => cluster::submit(args),
        Command::Jobs(args) => cluster::jobs(args),
        Command::Stop(args) => cluster::stop(args),
        Command::Savepoint(args) => cluster::savepoint(args),
        Command::Cancel(args) => cluster::cancel(args),
        Command::Tail(args) => tail::tail(args),
        Command::Top(args) => top::top(args),
        Command::Topics(cmd) => topics::topics(cmd),
        Command::Gen(args) => gen::gen(args),
        Command::Schema(cmd) => schema::schema(cmd),
        Command::BenchRead(args) => bench_read::bench_read(args),
    };
    match result {
        Ok(()) => 0,
        Err(e) if e.is_closed_stdout() => {
            tracing::info!("logflow: stdout was closed by its reader; stopped");
            0
        }
        Err(e) => {
            tracing::error!("logflow: {e}");
            e.exit_code()
        }
    }
}

/// The outcome of writing a command's output to stdout: a reader that went away (`| head`)
/// is success, as for any Unix filter; other write failures are errors.
pub(crate) fn stdout_result(written: std::io::Result<()>) -> Result<(), Error> {
    match written {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Error::io("stdout", e)),
        _ => Ok(()),
    }
}

/// Wraps a usage problem found after argument parsing.
pub(crate) fn usage(msg: impl Into<String>) -> Error {
    Error::Usage(msg.into())
}
