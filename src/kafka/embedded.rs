//! The embedded default: with no brokers configured anywhere, `logflow run` starts an
//! in-process Kafka cluster (librdkafka's mock cluster), feeds the job's input topic from the
//! generator, runs the job against it and prints results from the output topics as they arrive.
//! A newcomer sees the whole pipeline work with nothing installed.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::conn::{send_waiting, throttle};
use crate::gen::{GenConfig, Generator, Kind};
use crate::parse::Format;
use crate::spec::plan::{JobPlan, SourceConfig};
use crate::{Error, KafkaCause};

/// Partitions of the embedded input topic.
pub const PARTITIONS: i32 = 4;

/// A running in-process cluster with its feeder and printer threads.
pub struct Embedded {
    // Field order matters: threads stop before the cluster goes away.
    feeder: Option<JoinHandle<Result<u64, String>>>,
    printer: Option<JoinHandle<()>>,
    stop_printing: Arc<AtomicBool>,
    _cluster: MockCluster<'static, DefaultProducerContext>,
    pub brokers: String,
    /// End offsets of the input partitions, known once the feeder is done.
    pub end_signal: Arc<Mutex<Option<Vec<i64>>>>,
}

impl Embedded {
    /// Starts the cluster, creates the job's topics and starts feeding `events` generated
    /// records at `rate` per second (wall clock) into its input topic. The plan's
    /// [`Endpoint::Embedded`] source and sink connect to [`Embedded::brokers`].
    ///
    /// [`Endpoint::Embedded`]: crate::spec::plan::Endpoint::Embedded
    pub fn start(plan: &JobPlan, events: u64, rate: f64) -> Result<Embedded, Error> {
        let SourceConfig::Kafka(source) = &plan.source.kind else {
            return Err(Error::Usage(
                "the embedded cluster serves Kafka sources only".into(),
            ));
        };
        let kind = match plan.source.format {
            Format::Json => Kind::Logs,
            Format::UserEvents => Kind::UserEvents,
            f => {
                return Err(Error::Usage(format!(
                    "the embedded demo generates `json` logs or `user-events`, not `{f}`; use --input FILE"
                )))
            }
        };
        let cluster = MockCluster::new(1)
            .map_err(|e| Error::kafka(KafkaCause::Client, format!("embedded Kafka: {e}")))?;
        let bootstrap = cluster.bootstrap_servers();
        let input = source.topic.clone();
        cluster.create_topic(&input, PARTITIONS, 1).map_err(|e| {
            Error::kafka(
                KafkaCause::Client,
                format!("embedded Kafka: topic {input}: {e}"),
            )
        })?;
        let outputs = plan.topics();
        for t in &outputs {
            cluster.create_topic(t, 1, 1).map_err(|e| {
                Error::kafka(
                    KafkaCause::Client,
                    format!("embedded Kafka: topic {t}: {e}"),
                )
            })?;
        }
        eprintln!(
            "logflow: no brokers configured: started an in-process Kafka cluster at {bootstrap}; \
             feeding {events} generated events into `{input}` ({PARTITIONS} partitions)"
        );

        let end_signal = Arc::new(Mutex::new(None));
        let feeder = {
            let (bootstrap, input, end) =
                (bootstrap.clone(), input.clone(), Arc::clone(&end_signal));
            let cfg = GenConfig {
                kind,
                events,
                ..GenConfig::default()
            };
            std::thread::spawn(move || feed(&bootstrap, &input, cfg, rate, &end))
        };
        let stop_printing = Arc::new(AtomicBool::new(false));
        let printer = {
            let (bootstrap, stop) = (bootstrap.clone(), Arc::clone(&stop_printing));
            std::thread::spawn(move || print_outputs(&bootstrap, &outputs, &stop))
        };
        Ok(Embedded {
            feeder: Some(feeder),
            printer: Some(printer),
            stop_printing,
            _cluster: cluster,
            brokers: bootstrap,
            end_signal,
        })
    }

    /// Waits for the feeder, lets the printer drain the output topics, and stops it.
    pub fn finish(mut self) -> Result<(), Error> {
        if let Some(f) = self.feeder.take() {
            match f.join() {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    return Err(Error::kafka(
                        KafkaCause::Client,
                        format!("embedded feeder: {e}"),
                    ))
                }
                Err(_) => return Err(Error::Internal("embedded feeder panicked".into())),
            }
        }
        self.stop_printing.store(true, Ordering::Relaxed);
        if let Some(p) = self.printer.take() {
            let _ = p.join();
        }
        Ok(())
    }
}

/// Produces generated lines round-robin over the partitions, then publishes the end offsets.
fn feed(
    bootstrap: &str,
    topic: &str,
    cfg: GenConfig,
    rate: f64,
    end: &Mutex<Option<Vec<i64>>>,
) -> Result<u64, String> {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .create()
        .map_err(|e| e.to_string())?;
    let mut generator = Generator::new(cfg);
    let mut line = Vec::new();
    let mut counts = vec![0i64; PARTITIONS as usize];
    let started = Instant::now();
    let mut n = 0u64;
    loop {
        line.clear();
        if !generator.next_line(&mut line) {
            break;
        }
        let p = (n % PARTITIONS as u64) as i32;
        let record = BaseRecord::<[u8], [u8]>::to(topic)
            .payload(&line[..])
            .partition(p);
        send_waiting(&producer, record, || Ok(())).map_err(|e| e.to_string())?;
        counts[p as usize] += 1;
        n += 1;
        if n % 1000 == 0 {
            throttle(started, n, rate);
        }
    }
    producer
        .flush(Duration::from_secs(30))
        .map_err(|e| e.to_string())?;
    if let Ok(mut e) = end.lock() {
        *e = Some(counts);
    }
    Ok(n)
}

/// Prints `<topic> <json>` for every output record until told to stop and drained.
fn print_outputs(bootstrap: &str, topics: &[String], stop: &AtomicBool) {
    let consumer: BaseConsumer = match ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "logflow-embedded-printer")
        .set("enable.auto.commit", "false")
        .create()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("logflow: embedded printer: {e}");
            return;
        }
    };
    let mut tpl = TopicPartitionList::new();
    for t in topics {
        let _ = tpl.add_partition_offset(t, 0, Offset::Beginning);
    }
    if let Err(e) = consumer.assign(&tpl) {
        eprintln!("logflow: embedded printer: {e}");
        return;
    }
    let stdout = std::io::stdout();
    let mut quiet_since: Option<Instant> = None;
    loop {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                quiet_since = None;
                let value = String::from_utf8_lossy(m.payload().unwrap_or_default());
                if writeln!(stdout.lock(), "{} {value}", m.topic()).is_err() {
                    return;
                }
            }
            Some(Err(_)) => {}
            None => {
                if stop.load(Ordering::Relaxed) {
                    // Drained once nothing new has come for a moment after the job ended.
                    let since = *quiet_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > Duration::from_millis(500) {
                        return;
                    }
                }
            }
        }
    }
}
