//! Kafka output: one topic per analysis (key = `window_start|key values`, value = the JSON row),
//! plus `<job>.dead-letter` and `<job>.late`. Every worker produces its own results through an
//! idempotent producer. When the broker is slow, the producer's bounded queue fills and `send`
//! waits for room: backpressure instead of unbounded memory.
//!
//! With `delivery = "exactly_once"` each worker writes in Kafka transactions (transactional id
//! `logflow-<job>-<worker>of<workers>`, so a restarted worker fences its dead predecessor and
//! aborts its open transaction) and commits about once a second, together with a marker in
//! `<job>.commits`: "worker w's results below progress time t are committed". A restarted job
//! reads those markers (read_committed) and does not write those results again; results are
//! deterministic in their progress time, so read_committed consumers see each result once.
//! A run restored on another layout fences the old layout's ids and skips what their markers
//! cover ([`super::rescale`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;

use super::conn::{send_waiting, KafkaConn};
use super::rescale::EarlierLayout;
use crate::record::Row;
use crate::record::{DeadLetter, LateEvent};
use crate::sinks::render::{
    alert_json, alert_key, dead_letter_json_within, late_json, row_json, row_key,
};
use crate::sinks::Sink;
use crate::spec::plan::JobPlan;
use crate::{Error, KafkaCause};

/// The largest dead-letter message: within librdkafka's default `message.max.bytes` (1,000,000)
/// and a broker's default `max.message.bytes`, with room for the record's framing. A record
/// up to the 1 MiB record limit would not fit whole.
const DEAD_LETTER_MAX_BYTES: usize = 990_000;

/// What a message needs besides its value under a topic's `max.message.bytes`, which bounds
/// a whole record batch: the batch header (61 bytes) and the record's own framing (a dead
/// letter has no key and no headers), with room to spare.
const MESSAGE_FRAMING: usize = 512;

/// librdkafka's default `batch.size`: a produce batch (all messages to one partition sent
/// together) up to this many bytes.
const DEFAULT_BATCH_BYTES: usize = 1_000_000;

/// The largest dead letter `topic` accepts: its own `max.message.bytes` (a topic setting the
/// broker reports) less the framing, within [`DEAD_LETTER_MAX_BYTES`], which is also the
/// bound when the broker cannot say (a client without the right to describe configs, the
/// embedded demo's mock cluster); and the topic's `max.message.bytes` when it is below the
/// producer's batch size. The broker applies that limit to a whole batch, and librdkafka
/// fails every message of a batch it refuses instead of splitting it: the producer's batches
/// must then be no larger.
fn dead_letter_limit(conn: &KafkaConn, topic: &str) -> (usize, Option<usize>) {
    use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
    use rdkafka::client::DefaultClientContext;
    let asked = (|| -> Result<Option<usize>, String> {
        let admin: AdminClient<DefaultClientContext> = conn
            .create(&conn.client_config(), "admin")
            .map_err(|e| e.to_string())?;
        let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
        let resources = [ResourceSpecifier::Topic(topic)];
        let results = super::block_on(admin.describe_configs(&resources, &opts))
            .map_err(|e| e.to_string())?;
        let resource = results
            .into_iter()
            .next()
            .ok_or("no answer")?
            .map_err(|code| code.to_string())?;
        Ok(resource
            .get("max.message.bytes")
            .and_then(|e| e.value.as_deref())
            .and_then(|v| v.trim().parse::<usize>().ok()))
    })();
    match asked {
        Ok(Some(max)) => {
            let limit = max
                .saturating_sub(MESSAGE_FRAMING)
                .min(DEAD_LETTER_MAX_BYTES);
            if limit < DEAD_LETTER_MAX_BYTES {
                tracing::info!(
                    "logflow: dead letters to `{topic}` are cut to {limit} bytes (its \
                     max.message.bytes is {max})"
                );
            }
            (limit, (max < DEFAULT_BATCH_BYTES).then_some(max.max(1)))
        }
        Ok(None) => (DEAD_LETTER_MAX_BYTES, None),
        Err(e) => {
            tracing::debug!(
                "logflow: max.message.bytes of `{topic}` unknown ({e}): dead letters are cut \
                 to {DEAD_LETTER_MAX_BYTES} bytes"
            );
            (DEAD_LETTER_MAX_BYTES, None)
        }
    }
}

/// Delivery reports: failures are kept so the job fails loudly instead of losing results.
#[derive(Default)]
pub struct Deliveries {
    delivered: AtomicU64,
    failed: Mutex<Option<String>>,
    /// Messages sent and not yet acknowledged, by the progress of their batch; kept only when
    /// the job commits its input as results are acknowledged (`Sink::acknowledged`).
    outstanding: Option<Mutex<BTreeMap<u64, u64>>>,
}

impl Deliveries {
    fn sent(&self, at: u64) {
        if let Some(Ok(mut o)) = self.outstanding.as_ref().map(Mutex::lock) {
            *o.entry(at).or_insert(0) += 1;
        }
    }

    /// A message of the batch at `at` was acknowledged, or failed (which fails the job).
    fn done(&self, at: u64) {
        if let Some(Ok(mut o)) = self.outstanding.as_ref().map(Mutex::lock) {
            if let Some(n) = o.get_mut(&at) {
                *n -= 1;
                if *n == 0 {
                    o.remove(&at);
                }
            }
        }
    }

    /// The least progress with a message in flight.
    fn least_outstanding(&self) -> Option<u64> {
        let o = self.outstanding.as_ref()?.lock().ok()?;
        o.keys().next().copied()
    }
}

/// The producer's context: shares [`Deliveries`] with the sink, and says when the client
/// loses its brokers.
pub struct DeliveryContext {
    deliveries: Arc<Deliveries>,
    worker: usize,
    errors: Mutex<ErrorReports>,
}

/// Client errors seen, and when one was last printed.
#[derive(Default)]
struct ErrorReports {
    seen: u64,
    printed: Option<Instant>,
}

/// At most one client-error line per producer this often: during an outage librdkafka
/// reports every failed reconnect.
const ERROR_REPORT_EVERY: Duration = Duration::from_secs(1);

impl ErrorReports {
    /// Counts an error seen at `now`; the count so far if a line is due.
    fn note(&mut self, now: Instant) -> Option<u64> {
        self.seen += 1;
        let due = self
            .printed
            .is_none_or(|t| now.saturating_duration_since(t) >= ERROR_REPORT_EVERY);
        due.then(|| {
            self.printed = Some(now);
            self.seen
        })
    }
}

impl ClientContext for DeliveryContext {
    /// librdkafka reconnects and retries by itself, so these errors (a broker down, a
    /// connection refused) are not fatal: a failed delivery or transaction is what fails the
    /// job. Printed anyway so that an outage the job rode out shows in its log.
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        let Some(seen) = self
            .errors
            .lock()
            .ok()
            .and_then(|mut r| r.note(Instant::now()))
        else {
            return;
        };
        tracing::warn!(
            "logflow: kafka producer of worker {}: {error}: {reason} (librdkafka retries; \
             {seen} client errors so far)",
            self.worker
        );
    }
}

impl ProducerContext for DeliveryContext {
    /// The event-time progress of the batch the message was written in (its input position;
    /// a `usize` travels in librdkafka's opaque pointer without an allocation per message).
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, at: usize) {
        self.deliveries.done(at as u64);
        match result {
            Ok(_) => {
                self.deliveries.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, msg)) => {
                use rdkafka::message::Message;
                if let Ok(mut f) = self.deliveries.failed.lock() {
                    f.get_or_insert_with(|| {
                        format!(
                            "delivery to topic `{}` failed: {e} ({})",
                            msg.topic(),
                            crate::sinks::input_position(at as u64)
                        )
                    });
                }
            }
        }
    }
}

/// Produces every output to Kafka.
pub struct KafkaSink {
    plan: Arc<JobPlan>,
    producer: ThreadedProducer<DeliveryContext>,
    deliveries: Arc<Deliveries>,
    dead_topic: String,
    /// The largest dead letter the dead-letter topic accepts ([`dead_letter_limit`]).
    dead_max: usize,
    late_topic: String,
    alerts_topic: String,
    buf: String,
    /// The event-time progress of the batch being written ([`Sink::at`]).
    at: u64,
    /// Exactly-once: this worker's transactions.
    txn: Option<Transactions>,
}

/// How long a transaction stays open before it is committed (with the progress reached).
const COMMIT_EVERY: Duration = Duration::from_secs(1);
pub(crate) const TXN_TIMEOUT: Duration = Duration::from_secs(60);

/// The transactional id of worker `worker` of `workers`: a restarted worker fences its
/// predecessor, and a run on another layout fences each of the old ones ([`super::rescale`]).
pub(crate) fn transactional_id(job: &str, worker: usize, workers: usize) -> String {
    format!("logflow-{job}-{worker}of{workers}")
}

/// The key of worker `worker` of `workers`'s markers in the commits topic.
pub(crate) fn marker_key(worker: usize, workers: usize) -> String {
    format!("{worker}/{workers}")
}

/// One worker's transactional writing.
struct Transactions {
    /// Marker key: `<worker>/<workers>` (a different layout does not resume another's).
    key: String,
    topic: String,
    opened: Instant,
    /// Progress reached by the results written in the open transaction.
    upto: Option<u64>,
    /// Something was sent in the open transaction.
    dirty: bool,
    /// What an earlier run of this worker committed.
    resume_after: Option<u64>,
    /// What the workers of earlier layouts committed, while a restore could still recompute
    /// it: their results are skipped ([`super::rescale`]).
    earlier: Vec<EarlierLayout>,
    /// The progress the last transaction this run committed reached.
    committed: Option<u64>,
}

impl Transactions {
    /// Everything below progress `upto` is written. A restarted run replays from its start:
    /// its progress begins below what an earlier run committed, and a marker must never go
    /// back (a later restart would then write the earlier run's results again).
    fn reached(&mut self, upto: u64) {
        self.upto = Some(upto.max(self.resume_after.unwrap_or(0)));
    }
}

fn txn_err(what: &str, e: rdkafka::error::KafkaError) -> Error {
    Error::kafka(
        KafkaCause::Client,
        format!("kafka transaction: {what}: {e}"),
    )
}

/// The last committed marker of each of `keys` in the commits topic (read_committed, to its
/// end); a key without one is absent.
pub(crate) fn committed_markers(
    conn: &KafkaConn,
    topic: &str,
    keys: &[String],
) -> Result<HashMap<String, u64>, Error> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    use rdkafka::{Offset, TopicPartitionList};
    let consumer: BaseConsumer = conn
        .client_config()
        .set(
            "group.id",
            format!(
                "logflow-commits-{}",
                keys.first().map_or("", String::as_str)
            ),
        )
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .create()
        .map_err(|e| conn.error(&format!("consumer for `{topic}`"), &e))?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .map_err(|e| Error::kafka(KafkaCause::Client, format!("`{topic}`: {e}")))?;
    consumer
        .assign(&tpl)
        .map_err(|e| Error::kafka(KafkaCause::Client, format!("`{topic}`: {e}")))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = HashMap::new();
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                let Some(key) = m
                    .key()
                    .and_then(|k| keys.iter().find(|w| w.as_bytes() == k))
                else {
                    continue;
                };
                match m
                    .payload()
                    .and_then(|p| std::str::from_utf8(p).ok())
                    .and_then(|p| p.trim().parse::<u64>().ok())
                {
                    Some(upto) => last.insert(key.clone(), upto),
                    None => last.remove(key),
                };
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => return Ok(last),
            Some(Err(e)) => {
                return Err(Error::kafka(
                    KafkaCause::Client,
                    format!("reading `{topic}`: {e}"),
                ))
            }
            None => {}
        }
    }
    Err(Error::kafka(
        KafkaCause::Client,
        format!("reading `{topic}`: no end within 60 s (a transaction still open?)"),
    ))
}

impl KafkaSink {
    /// Connects as worker `worker` of `workers`; fails if an output topic is missing (topics
    /// are never auto-created). `earlier`: what the layout of the checkpoint restored had
    /// committed, when it had another ([`super::rescale::take_over`]).
    pub fn create(
        conn: &KafkaConn,
        plan: Arc<JobPlan>,
        worker: usize,
        workers: usize,
        earlier: Option<EarlierLayout>,
    ) -> Result<Self, Error> {
        let exactly_once = plan.sink.exactly_once();
        let deliveries = Arc::new(Deliveries {
            outstanding: (plan.commits_acknowledged() && !exactly_once).then(Mutex::default),
            ..Deliveries::default()
        });
        let mut config = conn.client_config();
        let dead_topic = plan.dead_letter_topic();
        // The embedded demo's mock cluster answers no DescribeConfigs: asking would wait out
        // the request timeout on every worker before the job starts.
        let embedded = matches!(
            &plan.sink,
            crate::spec::plan::SinkConfig::Kafka(k)
                if matches!(k.endpoint, crate::spec::plan::Endpoint::Embedded(_))
        );
        let (dead_max, batch_max) = match embedded {
            true => (DEAD_LETTER_MAX_BYTES, None),
            false => dead_letter_limit(conn, &dead_topic),
        };
        if let Some(b) = batch_max {
            config.set("batch.size", b.to_string());
        }
        if exactly_once {
            config
                .set(
                    "transactional.id",
                    transactional_id(&plan.name, worker, workers),
                )
                .set(
                    "transaction.timeout.ms",
                    TXN_TIMEOUT.as_millis().to_string(),
                );
        }
        let producer: ThreadedProducer<DeliveryContext> = config
            .set("enable.idempotence", "true")
            .set("linger.ms", "20")
            .set("queue.buffering.max.messages", "100000")
            .set("queue.buffering.max.kbytes", "65536")
            .set("allow.auto.create.topics", "false")
            .create_with_context(DeliveryContext {
                deliveries: Arc::clone(&deliveries),
                worker,
                errors: Mutex::default(),
            })
            .map_err(|e| conn.error("producer", &e))?;
        let txn = if exactly_once {
            // Fences an earlier producer of this worker and aborts its open transaction, so
            // the markers read next are final.
            producer
                .init_transactions(TXN_TIMEOUT)
                .map_err(|e| txn_err("init", e))?;
            let key = marker_key(worker, workers);
            let topic = plan.commits_topic();
            let resume_after =
                committed_markers(conn, &topic, std::slice::from_ref(&key))?.remove(&key);
            if let Some(t) = resume_after {
                tracing::info!(
                    "logflow: worker {worker} resumes exactly once: its results below progress \
                     {t} were committed by an earlier run (`{topic}`)"
                );
            }
            producer
                .begin_transaction()
                .map_err(|e| txn_err("begin", e))?;
            Some(Transactions {
                key,
                topic,
                opened: Instant::now(),
                upto: None,
                dirty: false,
                resume_after,
                earlier: earlier.into_iter().collect(),
                committed: None,
            })
        } else {
            None
        };
        Ok(KafkaSink {
            txn,
            dead_max,
            dead_topic,
            late_topic: plan.late_topic(),
            alerts_topic: plan.alerts_topic(),
            plan,
            producer,
            deliveries,
            buf: String::new(),
            at: 0,
        })
    }

    fn mark_dirty(&mut self, n: usize) {
        if let (Some(t), true) = (self.txn.as_mut(), n > 0) {
            t.dirty = true;
        }
    }

    /// Commits the open transaction with its marker and opens the next one.
    fn commit(&mut self) -> Result<(), Error> {
        let Some(txn) = self.txn.as_mut() else {
            return Ok(());
        };
        if let Some(upto) = txn.upto {
            let (topic, key, value) = (txn.topic.clone(), txn.key.clone(), upto.to_string());
            self.send(&topic, Some(&key), Some(&value))?;
        }
        self.producer
            .commit_transaction(TXN_TIMEOUT)
            .map_err(|e| txn_err("commit", e))?;
        self.check()?;
        self.producer
            .begin_transaction()
            .map_err(|e| txn_err("begin", e))?;
        if let Some(txn) = self.txn.as_mut() {
            txn.opened = Instant::now();
            txn.dirty = false;
            txn.committed = txn.upto.or(txn.committed);
        }
        Ok(())
    }

    fn check(&self) -> Result<(), Error> {
        match self.deliveries.failed.lock().ok().and_then(|f| f.clone()) {
            Some(e) => Err(Error::Sink(e)),
            None => Ok(()),
        }
    }

    fn send(&self, topic: &str, key: Option<&str>, value: Option<&str>) -> Result<(), Error> {
        let mut record = BaseRecord::<[u8], [u8], usize>::with_opaque_to(topic, self.at as usize);
        if let Some(v) = value {
            record = record.payload(v.as_bytes());
        }
        if let Some(k) = key {
            record = record.key(k.as_bytes());
        }
        // Counted before it is sent: its delivery report may come first.
        self.deliveries.sent(self.at);
        // Backpressure: while the queue is full, deliveries free room (or report a failure).
        let sent = send_waiting(&self.producer, record, || self.check());
        if sent.is_err() {
            self.deliveries.done(self.at);
        }
        sent
    }
}

impl Sink for KafkaSink {
    fn at(&mut self, progress: u64) {
        self.at = progress;
    }

    fn rows(&mut self, rows: &[Row]) -> Result<(), Error> {
        self.check()?;
        self.mark_dirty(rows.len());
        let plan = Arc::clone(&self.plan);
        let at = self.at;
        for r in rows {
            if let Some(t) = &self.txn {
                if t.earlier.iter().any(|e| e.committed(&plan, r, at)) {
                    continue;
                }
            }
            self.buf.clear();
            let key = row_key(&plan, r);
            let topic = &plan.analyses[r.analysis as usize].topic;
            if r.retract {
                // A tombstone: compaction then drops the key and window.
                self.send(topic, Some(&key), None)?;
            } else {
                row_json(&plan, r, &mut self.buf);
                self.send(topic, Some(&key), Some(&self.buf))?;
            }
            // In the same transaction as the row: alerts are exactly once when rows are.
            self.buf.clear();
            if alert_json(&plan, r, &mut self.buf) {
                let key = alert_key(&plan, r);
                self.send(&self.alerts_topic, Some(&key), Some(&self.buf))?;
            }
        }
        Ok(())
    }

    fn dead_letters(&mut self, records: &[DeadLetter]) -> Result<(), Error> {
        self.mark_dirty(records.len());
        for d in records {
            self.buf.clear();
            dead_letter_json_within(d, self.dead_max, &mut self.buf);
            self.send(&self.dead_topic, None, Some(&self.buf))?;
        }
        Ok(())
    }

    fn late_events(&mut self, records: &[LateEvent]) -> Result<(), Error> {
        self.mark_dirty(records.len());
        let plan = Arc::clone(&self.plan);
        for l in records {
            self.buf.clear();
            late_json(&plan, l, &mut self.buf);
            self.send(&self.late_topic, None, Some(&self.buf))?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Error> {
        // Called when a batch of windows is written: the results become visible promptly.
        self.producer.poll(Duration::ZERO);
        self.check()
    }

    fn progress(&mut self, upto: u64) -> Result<(), Error> {
        let Some(txn) = self.txn.as_mut() else {
            return self.flush();
        };
        txn.reached(upto);
        if txn.dirty && txn.opened.elapsed() >= COMMIT_EVERY {
            self.commit()
        } else {
            self.flush()
        }
    }

    fn checkpoint(&mut self, upto: u64) -> Result<Vec<u8>, Error> {
        match self.txn.as_mut() {
            // Committed before the checkpoint completes: a run restored from it skips what
            // the marker covers, and never misses what the checkpoint's state has consumed.
            Some(txn) => {
                txn.reached(upto);
                txn.earlier.retain(|e| e.needed_after(upto));
                let earlier = match txn.earlier.is_empty() {
                    true => Vec::new(),
                    false => crate::checkpoint::codec::encode(&txn.earlier)
                        .map_err(|e| Error::Checkpoint(format!("kafka sink state: {e}")))?,
                };
                self.commit()?;
                self.check()?;
                return Ok(earlier);
            }
            // At least once: everything before the checkpoint is acknowledged by the broker.
            None => self
                .producer
                .flush(Duration::from_secs(60))
                .map_err(|e| Error::kafka(KafkaCause::Client, format!("kafka flush: {e}")))?,
        }
        self.check()?;
        Ok(Vec::new())
    }

    fn pending(&self) -> Option<Duration> {
        let txn = self.txn.as_ref().filter(|t| t.dirty)?;
        Some(COMMIT_EVERY.saturating_sub(txn.opened.elapsed()))
    }

    fn resume_after(&self) -> Option<u64> {
        self.txn.as_ref().and_then(|t| t.resume_after)
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), Error> {
        let earlier = super::rescale::decode(state)?;
        if let Some(t) = self.txn.as_mut() {
            for e in earlier {
                if !t.earlier.contains(&e) {
                    t.earlier.push(e);
                }
            }
        }
        Ok(())
    }

    fn acknowledged(&self, written: u64) -> u64 {
        match &self.txn {
            Some(t) => written.min(t.committed.unwrap_or(0)),
            None => self
                .deliveries
                .least_outstanding()
                .map_or(written, |t| t.min(written)),
        }
    }

    fn close(&mut self) -> Result<(), Error> {
        if let Some(txn) = self.txn.take() {
            // The input ended: every result is written.
            self.send(&txn.topic, Some(&txn.key), Some(&u64::MAX.to_string()))?;
            self.producer
                .commit_transaction(TXN_TIMEOUT)
                .map_err(|e| txn_err("commit", e))?;
        }
        self.producer
            .flush(Duration::from_secs(60))
            .map_err(|e| Error::kafka(KafkaCause::Client, format!("kafka flush: {e}")))?;
        self.check()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first error is said at once, a burst after it only counted, and the next one a
    /// second later said with the count.
    #[test]
    fn client_errors_are_said_at_most_once_a_second() {
        let mut r = ErrorReports::default();
        let t0 = Instant::now();
        assert_eq!(r.note(t0), Some(1));
        assert_eq!(r.note(t0 + Duration::from_millis(10)), None);
        assert_eq!(r.note(t0 + Duration::from_millis(999)), None);
        assert_eq!(r.note(t0 + ERROR_REPORT_EVERY), Some(4));
        assert_eq!(r.note(t0 + ERROR_REPORT_EVERY), None);
    }
}
