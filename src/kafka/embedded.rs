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
/// How far out of order the live demo's event times are: a few seconds, as the clocks and
/// buffers of real shippers make them.
const LIVE_DISORDER_MS: i64 = 3_000;
/// The disorder of a fast-forwarded demo: the generator's default, well below the jobs'
/// watermark delays (a live disorder scaled by the speed could exceed them).
const MAX_DISORDER_MS: i64 = 60_000;

/// Bad lines in a demo stamped from now: a few, so that dead letters stay a small minority of
/// what it shows (the generator's 1% of 200,000 events would be ~2,000 dead letters beside
/// ~10,000 result rows). A fixed `--demo-start` keeps the generator's default, byte for byte
/// the input `logflow gen` writes.
const LIVE_BAD_FRACTION: f64 = 0.001;

/// What the embedded demo feeds and how it shows results.
#[derive(Clone, Debug)]
pub struct Demo {
    /// Generated events in all.
    pub events: u64,
    /// Feed rate, events per second of wall clock.
    pub rate: f64,
    /// The first event time (RFC 3339), or `now`: then event time follows the wall clock,
    /// `speed` times faster, and catches up with it when the feed ends.
    pub start: String,
    /// Event-time seconds per wall-clock second with `start = "now"` (at least 1).
    pub speed: f64,
    /// Print every output record on stdout (`<topic> <json>`).
    pub print: bool,
}

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
    /// Starts the cluster, creates the job's topics and starts feeding `demo.events` generated
    /// records at `demo.rate` per second (wall clock) into its input topic. The plan's
    /// [`Endpoint::Embedded`] source and sink connect to [`Embedded::brokers`]. With
    /// `demo.start = "now"` event time advances `demo.speed` times faster than the wall clock
    /// and ends at about the time the feed does, a few seconds out of order at speed 1: so
    /// windows close and detectors fire within seconds, and the watermark lag ends as in
    /// production.
    ///
    /// [`Endpoint::Embedded`]: crate::spec::plan::Endpoint::Embedded
    pub fn start(plan: &JobPlan, demo: &Demo) -> Result<Embedded, Error> {
        let (events, rate, start) = (demo.events, demo.rate, demo.start.as_str());
        let live = start == "now";
        if !(demo.speed.is_finite() && demo.speed >= 1.0) {
            return Err(Error::Usage(format!(
                "--demo-speed {}: must be a number of at least 1",
                demo.speed
            )));
        }
        if !(rate.is_finite() && rate > 0.0) {
            return Err(Error::Usage(format!(
                "--demo-rate {rate}: must be a positive number"
            )));
        }
        let fixed_start = if live {
            None
        } else {
            Some(
                chrono::DateTime::parse_from_rfc3339(start)
                    .map_err(|e| {
                        Error::Usage(format!(
                            "--demo-start {start}: not an RFC 3339 timestamp (or `now`) ({e})"
                        ))
                    })?
                    .timestamp_millis(),
            )
        };
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
        // Event time covered, and the wall-clock time the feed takes, in ms.
        let event_rate = rate / demo.speed;
        let span_ms = (events as f64 / event_rate * 1000.0) as i64;
        let feed_ms = (events as f64 / rate * 1000.0) as i64;
        let stamped = match (live, demo.speed > 1.0) {
            (false, _) => format!("stamped from {start}"),
            (true, false) => "stamped with the wall clock".to_string(),
            (true, true) => format!(
                "the last {} of event time at {}x the wall clock, catching up with it",
                crate::time::duration::format_ms((span_ms / 1000) * 1000),
                demo.speed
            ),
        };
        tracing::info!(
            "logflow: no brokers configured: started an in-process Kafka cluster at {bootstrap}; \
             feeding {events} generated events into `{input}` ({PARTITIONS} partitions, {stamped})"
        );

        let end_signal = Arc::new(Mutex::new(None));
        let feeder = {
            let (bootstrap, input, end) =
                (bootstrap.clone(), input.clone(), Arc::clone(&end_signal));
            let mut cfg = GenConfig {
                kind,
                events,
                ..GenConfig::default()
            };
            match fixed_start {
                Some(ms) => cfg.start_ms = ms,
                None => {
                    // Event time advances `speed` times as fast as the feed and reaches the
                    // wall clock when the feed ends: line i is stamped about when it would be
                    // sent at speed 1, up to the disorder early.
                    cfg.start_ms = chrono::Utc::now().timestamp_millis() + feed_ms - span_ms;
                    cfg.event_rate = event_rate;
                    cfg.disorder_ms =
                        ((LIVE_DISORDER_MS as f64 * demo.speed) as i64).min(MAX_DISORDER_MS);
                    cfg.bad_fraction = LIVE_BAD_FRACTION;
                }
            }
            cfg.validate()?;
            std::thread::spawn(move || feed(&bootstrap, &input, cfg, rate, &end))
        };
        let stop_printing = Arc::new(AtomicBool::new(false));
        let printer = demo.print.then(|| {
            let (bootstrap, stop) = (bootstrap.clone(), Arc::clone(&stop_printing));
            std::thread::spawn(move || print_outputs(&bootstrap, &outputs, &stop))
        });
        Ok(Embedded {
            feeder: Some(feeder),
            printer,
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
            tracing::error!("logflow: embedded printer: {e}");
            return;
        }
    };
    let mut tpl = TopicPartitionList::new();
    for t in topics {
        let _ = tpl.add_partition_offset(t, 0, Offset::Beginning);
    }
    if let Err(e) = consumer.assign(&tpl) {
        tracing::error!("logflow: embedded printer: {e}");
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
