//! `logflow topics create SPEC`: the Kafka topics a job writes (every analysis's output topic,
//! the dead-letter and the late topic), created when missing; existing topics are left alone,
//! so running it twice changes nothing. A run creates them only when told (`--create-topics`
//! on `run` and `submit`, with this code).

use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::task::{Context, Poll, Wake};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

use crate::kafka::{cli_brokers, KafkaConn};
use crate::spec::plan::{JobPlan, SinkConfig, SourceConfig};
use crate::Error;

#[derive(clap::Subcommand, Debug)]
pub enum TopicsCmd {
    /// Create the output, dead-letter and late topics of a spec (existing ones are kept).
    Create(CreateArgs),
}

#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    /// The job spec (TOML).
    spec: PathBuf,
    /// Partitions of each topic created.
    #[arg(long, default_value_t = 1)]
    partitions: i32,
    /// Replication factor of each topic created.
    #[arg(long, default_value_t = 1)]
    replication: i32,
    /// Kafka bootstrap servers (default: the spec's sink brokers, else $LOGFLOW_BROKERS, else
    /// 127.0.0.1:9092).
    #[arg(long)]
    brokers: Option<String>,
}

/// How long the brokers get to answer.
const TIMEOUT: Duration = Duration::from_secs(30);

pub fn topics(cmd: TopicsCmd) -> Result<(), Error> {
    let TopicsCmd::Create(a) = cmd;
    let plan = crate::spec::load(&a.spec)?;
    let created = create(
        &plan,
        &a.spec,
        a.brokers.as_deref(),
        a.partitions,
        a.replication,
    )?;
    // One line per topic on stdout, for scripts: `created NAME` or `exists NAME`.
    let mut out = std::io::stdout().lock();
    let written = created
        .created
        .iter()
        .try_for_each(|t| writeln!(out, "created {t}"))
        .and_then(|()| {
            created
                .kept
                .iter()
                .try_for_each(|t| writeln!(out, "exists {t}"))
        })
        .and_then(|()| out.flush());
    super::stdout_result(written)?;
    created.complete()
}

/// The topics [`create`] created, those that were there already, and those it could not
/// create (`NAME: why`), on `brokers`.
pub(crate) struct Created {
    pub created: Vec<String>,
    pub kept: Vec<String>,
    failed: Vec<String>,
    brokers: String,
}

impl Created {
    /// An error naming every topic that could not be created.
    pub(crate) fn complete(&self) -> Result<(), Error> {
        if self.failed.is_empty() {
            return Ok(());
        }
        Err(Error::kafka(
            crate::error::KafkaCause::Client,
            format!(
                "kafka admin on {}: {}",
                self.brokers,
                self.failed.join(", ")
            ),
        ))
    }
}

/// Creates the Kafka topics `plan` writes (every output topic, the dead-letter and late
/// topics, and the commits topic of an exactly-once sink) that its brokers do not have yet,
/// with `partitions` partitions and replication `replication`; `brokers` (a flag) wins over
/// the spec's. `topics create`, and `run`/`submit` with `--create-topics`.
pub(crate) fn create(
    plan: &JobPlan,
    spec: &Path,
    brokers: Option<&str>,
    partitions: i32,
    replication: i32,
) -> Result<Created, Error> {
    if partitions < 1 || replication < 1 {
        return Err(super::usage(
            "--partitions and --replication must be at least 1",
        ));
    }
    let SinkConfig::Kafka(sink) = &plan.sink else {
        return Err(super::usage(format!(
            "{}: the job writes no Kafka topics (its sink is not kafka)",
            spec.display()
        )));
    };
    // A sink naming no brokers writes to its source's.
    let spec_brokers = sink.endpoint.brokers().or(match &plan.source.kind {
        SourceConfig::Kafka(k) => k.endpoint.brokers(),
        _ => None,
    });
    let properties = sink.endpoint.properties();
    let conn = match (brokers, spec_brokers) {
        (None, Some(b)) => KafkaConn::for_job(b, properties),
        (flag, _) => KafkaConn::new(&cli_brokers(flag), &properties.list),
    };
    let mut names = plan.topics();
    // Two analyses may share a topic: one request per name.
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.clone()));

    let admin: AdminClient<DefaultClientContext> = conn.create(&conn.client_config(), "admin")?;
    let new: Vec<NewTopic<'_>> = names
        .iter()
        .map(|n| NewTopic::new(n, partitions, TopicReplication::Fixed(replication)))
        .collect();
    let opts = AdminOptions::new()
        .operation_timeout(Some(TIMEOUT))
        .request_timeout(Some(TIMEOUT));
    let results =
        block_on(admin.create_topics(&new, &opts)).map_err(|e| conn.error("admin", &e))?;
    let (mut created, mut kept, mut failed) = (Vec::new(), Vec::new(), Vec::new());
    for r in results {
        match r {
            Ok(t) => created.push(t),
            Err((t, RDKafkaErrorCode::TopicAlreadyExists)) => kept.push(t),
            Err((t, code)) => failed.push(format!("{t}: {code}")),
        }
    }
    tracing::info!(
        "logflow topics: {} created, {} already there, on {}",
        created.len(),
        kept.len(),
        conn.describe()
    );
    Ok(Created {
        created,
        kept,
        failed,
        brokers: conn.describe(),
    })
}

/// Runs a future to completion on this thread. The admin client's futures are completed by
/// its own background thread, so parking until woken is all an executor has to do here
/// (an async runtime crate for one call would cost more build time than these lines).
fn block_on<F: Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Arc::new(Unpark(std::thread::current())).into();
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Ready once another thread, started at the first poll, has stored a value and woken it.
    struct Later(Arc<AtomicU32>, bool);

    impl Future for Later {
        type Output = u32;
        fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u32> {
            match self.0.load(Ordering::SeqCst) {
                0 if !self.1 => {
                    self.1 = true;
                    let (value, waker) = (Arc::clone(&self.0), cx.waker().clone());
                    std::thread::spawn(move || {
                        std::thread::sleep(Duration::from_millis(20));
                        value.store(7, Ordering::SeqCst);
                        waker.wake();
                    });
                    Poll::Pending
                }
                0 => Poll::Pending,
                v => Poll::Ready(v),
            }
        }
    }

    #[test]
    fn block_on_waits_for_a_future_completed_by_another_thread() {
        assert_eq!(block_on(Later(Arc::new(AtomicU32::new(0)), false)), 7);
    }
}
