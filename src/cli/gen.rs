//! `logflow gen`: synthetic logs or user events to a file, stdout, or a Kafka topic.

use std::time::{Duration, Instant};

use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

use crate::gen::{GenArgs, Generator};
use crate::kafka::{cli_brokers, send_waiting, throttle, KafkaConn};
use crate::{Error, KafkaCause};

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
    let mut cfg = cmd.args.config()?;
    let brokers = cli_brokers(cmd.brokers.as_deref());
    let conn = KafkaConn::new(&brokers, &[]);
    let partitions = conn.partitions(topic, Duration::from_secs(30))?;
    let producer: ThreadedProducer<DefaultProducerContext> = conn
        .client_config()
        .set("enable.idempotence", "true")
        .set("linger.ms", "10")
        .create()
        .map_err(|e| conn.error("producer", &e))?;
    if cmd.args.starts_now() {
        // Connecting took a while: the first timestamp is when producing starts.
        cfg.start_ms = chrono::Utc::now().timestamp_millis();
    }
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
        let record = BaseRecord::<[u8], [u8]>::to(topic)
            .payload(&line[..])
            .partition(p);
        send_waiting(&producer, record, || Ok(()))?;
        n += 1;
        if let (Some(rate), 0) = (cmd.args.rate, n % 100) {
            throttle(started, n, rate);
        }
    }
    producer
        .flush(Duration::from_secs(60))
        .map_err(|e| Error::kafka(KafkaCause::Client, format!("kafka flush: {e}")))?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "logflow gen: {n} records to {topic} ({} partitions) in {secs:.2}s ({:.0}/s); {:?}",
        partitions.len(),
        n as f64 / secs.max(1e-9),
        generator.stats()
    );
    Ok(())
}
