//! `logflow tail TOPIC`: print records of an output topic (`key<TAB>value` per line).

use std::io::Write;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::kafka::{cli_brokers, KafkaConn};
use crate::{Error, KafkaCause};

#[derive(clap::Args, Debug)]
pub struct TailArgs {
    /// The topic to print.
    topic: String,
    /// Kafka bootstrap servers (default: $LOGFLOW_BROKERS, else 127.0.0.1:9092).
    #[arg(long)]
    brokers: Option<String>,
    /// Start from the oldest record (default: only new records).
    #[arg(long)]
    from_beginning: bool,
    /// Stop after this many records.
    #[arg(long)]
    max: Option<u64>,
    /// Stop after this long without a new record (e.g. `5s`); default: follow forever.
    #[arg(long)]
    idle_exit: Option<String>,
    /// Print only values (no keys).
    #[arg(long)]
    values_only: bool,
}

pub fn tail(args: TailArgs) -> Result<(), Error> {
    let brokers = cli_brokers(args.brokers.as_deref());
    let idle = match &args.idle_exit {
        Some(d) => Some(Duration::from_millis(
            crate::time::duration::parse_ms(d)
                .map_err(|e| Error::Usage(format!("--idle-exit: {e}")))? as u64,
        )),
        None => None,
    };
    let conn = KafkaConn::new(&brokers, &[]);
    let partitions = conn.partitions(&args.topic, Duration::from_secs(30))?;
    let consumer: BaseConsumer = conn
        .client_config()
        .set("group.id", "logflow-tail")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .map_err(|e| conn.error("consumer", &e))?;
    let mut tpl = TopicPartitionList::new();
    let start = if args.from_beginning {
        Offset::Beginning
    } else {
        Offset::End
    };
    for p in partitions {
        tpl.add_partition_offset(&args.topic, p, start)
            .map_err(|e| Error::kafka(KafkaCause::Client, e.to_string()))?;
    }
    consumer
        .assign(&tpl)
        .map_err(|e| Error::kafka(KafkaCause::Client, e.to_string()))?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut n = 0u64;
    let mut last = Instant::now();
    while args.max.is_none_or(|m| n < m) {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(msg)) => {
                let value = String::from_utf8_lossy(msg.payload().unwrap_or_default());
                let line = if args.values_only {
                    format!("{value}\n")
                } else {
                    let key = String::from_utf8_lossy(msg.key().unwrap_or_default());
                    format!("{key}\t{value}\n")
                };
                if out.write_all(line.as_bytes()).is_err() {
                    return Ok(()); // reader went away (e.g. `| head`)
                }
                n += 1;
                last = Instant::now();
            }
            Some(Err(e)) => eprintln!("logflow: tail {}: {e}", args.topic),
            None => {
                let _ = out.flush();
                if idle.is_some_and(|d| last.elapsed() >= d) {
                    break;
                }
            }
        }
    }
    let _ = out.flush();
    Ok(())
}
