//! `logflow gen`: synthetic logs or user events to a file, stdout, or a Kafka topic.

use std::time::{Duration, Instant};

use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

use crate::gen::{GenArgs, Generator};
use crate::kafka::{KafkaConn, BROKERS_ENV};
use crate::Error;

#[derive(clap::Args, Debug)]
pub struct GenCmd {
    #[command(flatten)]
    args: GenArgs,
    /// Produce to this Kafka topic instead of writing to `--output`.
    #[arg(long)]
    topic: Option<String>,
    /// Kafka bootstrap servers (default: $LOGFLOW_BROKERS, else 127.0.0.1:9092).
    #[arg(long)]
    brokers: Option<String>,
}

pub fn gen(cmd: GenCmd) -> Result<(), Error> {
    let Some(topic) = &cmd.topic else {
        if cmd.brokers.is_some() {
            return Err(Error::Usage("--brokers needs --topic".into()));
        }
        let stats = crate::gen::run(&cmd.args)?;
        eprintln!("logflow gen: {stats:?}");
        return Ok(());
    };
    let cfg = cmd.args.config()?;
    let brokers = cmd
        .brokers
        .clone()
        .or_else(|| std::env::var(BROKERS_ENV).ok())
        .unwrap_or_else(|| "127.0.0.1:9092".into());
    let conn = KafkaConn::new(&brokers, &[]);
    let partitions = conn.partitions(topic, Duration::from_secs(30))?;
    let producer: ThreadedProducer<DefaultProducerContext> = conn
        .client_config()
        .set("enable.idempotence", "true")
        .set("linger.ms", "10")
        .create()
        .map_err(|e| Error::Runtime(format!("kafka producer on {}: {e}", conn.describe())))?;
    let mut generator = Generator::new(cfg);
    let mut line = Vec::new();
    let started = Instant::now();
    let mut n: u64 = 0;
    loop {
        line.clear();
        if !generator.next_line(&mut line) {
            break;
        }
        // Round-robin over partitions: each partition keeps the generator's bounded disorder.
        let p = partitions[(n % partitions.len() as u64) as usize];
        let mut record = BaseRecord::<(), [u8]>::to(topic)
            .payload(&line[..])
            .partition(p);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull,
                    ),
                    r,
                )) => {
                    std::thread::sleep(Duration::from_millis(2));
                    record = r;
                }
                Err((e, _)) => {
                    return Err(Error::Runtime(format!("kafka produce to `{topic}`: {e}")))
                }
            }
        }
        n += 1;
        if let Some(rate) = cmd.args.rate {
            if n % 100 == 0 {
                let due = Duration::from_secs_f64(n as f64 / rate);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
        }
    }
    producer
        .flush(Duration::from_secs(60))
        .map_err(|e| Error::Runtime(format!("kafka flush: {e}")))?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "logflow gen: {n} records to {topic} ({} partitions) in {secs:.2}s ({:.0}/s); {:?}",
        partitions.len(),
        n as f64 / secs.max(1e-9),
        generator.stats()
    );
    Ok(())
}
