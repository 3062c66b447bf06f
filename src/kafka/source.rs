//! Kafka topic partitions as source partitions.
//!
//! Each worker owns a fixed set of partitions (`partition index % workers`); it makes one
//! consumer, splits each of those partitions into its own queue, read without blocking, and
//! `assign`s exactly them (no group rebalancing, so the assignment is deterministic).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaResult;
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::conn::KafkaConn;
use super::queue::BatchQueue;
use crate::record::Origin;
use crate::sources::{OpenArgs, PartitionReader, ReadStatus, RecordBatch, Wake, WorkerReaders};
use crate::{Error, KafkaCause};

/// Where to start reading a partition without a checkpoint position.
pub use crate::spec::StartAt;

impl crate::spec::plan::KafkaSourceConfig {
    /// Finds the topic's partitions and opens, on each local worker, the ones it owns.
    pub fn open(&self, args: &OpenArgs<'_>) -> Result<WorkerReaders, Error> {
        let p = args.placement;
        let topic = &self.topic;
        let conn = KafkaConn::to(&self.endpoint, args.embedded)?;
        let timeout = Duration::from_secs(30);
        let partitions = conn.partitions(topic, timeout)?;
        let end = if let Some(signal) = &args.end.signal {
            EndAt::Offsets(Arc::clone(signal))
        } else if args.end.stop_at_end {
            EndAt::current_end(&conn, topic, &partitions, self.start, timeout)?
        } else {
            EndAt::Never
        };
        // The spec's `group.id` wins over the job's own group.
        let group = conn
            .properties
            .iter()
            .find(|(k, _)| k == "group.id")
            .map_or_else(|| format!("logflow-{}", args.job), |(_, v)| v.clone());
        open_placed(
            &conn,
            &group,
            topic,
            &partitions,
            p,
            self.start,
            &end,
            args.resume,
        )
    }
}

/// Opens, on each local worker of placement `p`, the partitions of `topic` it owns. A
/// partition is found in `resume` (a restored checkpoint's positions, merged from every old
/// worker's part) by its name, so its position goes to whichever worker reads it now, on any
/// layout.
#[allow(clippy::too_many_arguments)]
pub(crate) fn open_placed(
    conn: &KafkaConn,
    group: &str,
    topic: &str,
    partitions: &[i32],
    p: crate::sources::Placement,
    start: StartAt,
    end: &EndAt,
    resume: &std::collections::HashMap<String, u64>,
) -> Result<WorkerReaders, Error> {
    let mut readers = p.empty();
    for (w, list) in readers.iter_mut().enumerate() {
        let owned: Vec<i32> = partitions
            .iter()
            .enumerate()
            .filter(|(i, _)| p.owner(*i) == Some(w))
            .map(|(_, id)| *id)
            .collect();
        tracing::info!(
            "logflow: worker {} (process {}) reads {topic} partitions {owned:?}",
            p.first() + w,
            p.process
        );
        let resume = |id: i32| {
            resume
                .get(&partition_name(topic, id))
                .and_then(|&o| i64::try_from(o).ok())
        };
        *list = open_partitions(conn, group, topic, &owned, start, end.clone(), &resume)?;
    }
    Ok(readers)
}

/// When the partitions end: never (a live stream), or at offsets known now or later.
#[derive(Clone, Debug)]
pub enum EndAt {
    Never,
    /// End offsets per partition (index = partition id), set now or later (e.g. when the
    /// embedded generator has finished producing).
    Offsets(Arc<Mutex<Option<Vec<i64>>>>),
}

impl EndAt {
    /// Ends at each partition's end offset as of now (`--stop-at-end`). A partition with
    /// nothing to read (empty, or read from `latest`) ends at once.
    pub fn current_end(
        conn: &KafkaConn,
        topic: &str,
        partitions: &[i32],
        start: StartAt,
        timeout: Duration,
    ) -> Result<EndAt, Error> {
        let marks = conn.watermarks(topic, partitions, timeout)?;
        let max_id = partitions.iter().copied().max().unwrap_or(0).max(0) as usize;
        let mut ends = vec![0i64; max_id + 1];
        for (&p, &(low, high)) in partitions.iter().zip(&marks) {
            if let Some(end) = usize::try_from(p).ok().and_then(|p| ends.get_mut(p)) {
                *end = if high <= low || start == StartAt::Latest {
                    0
                } else {
                    high
                };
            }
        }
        Ok(EndAt::Offsets(Arc::new(Mutex::new(Some(ends)))))
    }
}

/// How long opening the partitions waits for the topic's metadata.
const METADATA_TIMEOUT: Duration = Duration::from_secs(5);

/// Client properties the source sets unless the spec or the environment sets them.
///
/// librdkafka prefetches up to `queued.max.messages.kbytes` per partition (64 MiB by default,
/// most of a job's memory): small queues keep memory low, and only with a short
/// `fetch.queue.backoff.ms` (1 s by default) do they not starve the reader. Larger fetches mean
/// fewer round trips for the ingest, which is woken as records arrive. The figures are in
/// BENCHMARKS.md (the Kafka benchmark).
pub const CONSUMER_DEFAULTS: [(&str, &str); 3] = [
    ("queued.max.messages.kbytes", "2048"),
    ("fetch.queue.backoff.ms", "10"),
    ("max.partition.fetch.bytes", "4194304"),
];

/// The source's consumer settings: the connection's, [`CONSUMER_DEFAULTS`] where those do
/// not say otherwise, manual offsets and no EOF events. `logflow bench-read` uses the same.
pub fn consumer_config(conn: &KafkaConn, group: &str, start: StartAt) -> ClientConfig {
    let mut cfg = conn.client_config();
    for (k, v) in CONSUMER_DEFAULTS {
        if !conn.properties.iter().any(|(pk, _)| pk == k) {
            cfg.set(k, v);
        }
    }
    cfg.set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set(
            "auto.offset.reset",
            if start == StartAt::Latest {
                "latest"
            } else {
                "earliest"
            },
        )
        .set("enable.partition.eof", "false");
    cfg
}

/// A partition's [`PartitionReader::describe`] (`kafka logs/3`), known before it is opened: its
/// name in checkpoints.
pub fn partition_name(topic: &str, partition: i32) -> String {
    format!("kafka {topic}/{partition}")
}

/// A worker's consumer.
type GroupConsumer = BaseConsumer<GroupContext>;

/// Says what became of the group's offset commits: an asynchronous commit has no caller to
/// tell when it fails.
struct GroupContext {
    topic: String,
    group: String,
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        let (topic, group) = (&self.topic, &self.group);
        let said = |e: &dyn std::fmt::Display| {
            let each: Vec<String> = offsets
                .elements()
                .iter()
                .map(|p| format!("{}@{:?}", p.partition(), p.offset()))
                .collect();
            format!("kafka {topic}: group {group} did not commit {each:?}: {e}")
        };
        if let Err(e) = result {
            tracing::warn!("logflow: {}", said(&e));
            return;
        }
        for p in offsets.elements() {
            if let Err(e) = p.error() {
                tracing::warn!(
                    "logflow: {}",
                    said(&format!("partition {}: {e}", p.partition()))
                );
            }
        }
        tracing::debug!("logflow: kafka {topic}: group {group} committed {offsets:?}");
    }
}

/// Offsets recorded by the readers of one consumer and sent in one commit: two asynchronous
/// commits in a row, one per partition, are two requests the coordinator may answer out of
/// order, and a request it answers with an error is not repeated.
type Pending = Arc<Mutex<BTreeMap<i32, i64>>>;

/// Opens one consumer for a worker's partitions and returns one reader per partition; a
/// partition with an offset in `resume` (a restored checkpoint's) is read from there.
pub fn open_partitions(
    conn: &KafkaConn,
    group: &str,
    topic: &str,
    partitions: &[i32],
    start: StartAt,
    end: EndAt,
    resume: &dyn Fn(i32) -> Option<i64>,
) -> Result<Vec<Box<dyn PartitionReader>>, Error> {
    if partitions.is_empty() {
        return Ok(Vec::new());
    }
    let cfg = consumer_config(conn, group, start);
    let context = GroupContext {
        topic: topic.to_string(),
        group: group.to_string(),
    };
    let consumer: Arc<GroupConsumer> = Arc::new(
        cfg.create_with_context(context)
            .map_err(|e| conn.error("consumer", &e))?,
    );
    let pending = Pending::default();
    // The partitions' leaders first: assigned before librdkafka knows them, a partition waits
    // for its offset lookup's retry timer (500 ms) before its first fetch. Best effort: without
    // metadata now (a broker that is down), the assignment still works, only later.
    let _ = consumer.fetch_metadata(Some(topic), METADATA_TIMEOUT);
    // Each partition's queue is split off before the assignment: a fetch that completes
    // between `assign` and the split would put its messages on the consumer's main queue,
    // where no reader looks for them (since the metadata is known before `assign`, the first
    // fetch follows it within a millisecond). A queue split first stays split when fetching
    // starts (librdkafka keeps an application's forwarding).
    let mut queues = Vec::with_capacity(partitions.len());
    for &p in partitions {
        queues.push(BatchQueue::split(&consumer, topic, p).ok_or_else(|| {
            Error::kafka(
                KafkaCause::Client,
                format!("kafka {topic}/{p}: cannot split the partition queue"),
            )
        })?);
    }
    let stored = if start == StartAt::Stored {
        committed(&consumer, group, topic, partitions)?
    } else {
        Vec::new()
    };
    // Where each partition starts: its checkpoint's offset, else the group's committed one
    // (`stored`), else as `start` says.
    let first = |i: usize, p: i32| resume(p).or_else(|| stored.get(i).copied().flatten());
    let mut tpl = TopicPartitionList::new();
    for (i, &p) in partitions.iter().enumerate() {
        let offset = match (first(i, p), start) {
            (Some(o), _) => Offset::Offset(o),
            (None, StartAt::Earliest | StartAt::Stored) => Offset::Beginning,
            (None, StartAt::Latest) => Offset::End,
        };
        tpl.add_partition_offset(topic, p, offset)
            .map_err(|e| Error::kafka(KafkaCause::Client, format!("kafka {topic}/{p}: {e}")))?;
    }
    consumer.assign(&tpl).map_err(|e| {
        Error::kafka(
            KafkaCause::Client,
            format!("kafka assign {topic} {partitions:?}: {e}"),
        )
    })?;
    let ends: Vec<Arc<AtomicI64>> = partitions
        .iter()
        .map(|_| Arc::new(AtomicI64::new(-1)))
        .collect();
    watch_ends(&consumer, topic, partitions, &ends);
    let mut readers: Vec<Box<dyn PartitionReader>> = Vec::new();
    for (i, ((&p, queue), end_watch)) in partitions.iter().zip(queues).zip(ends).enumerate() {
        readers.push(Box::new(KafkaReader {
            topic: topic.to_string(),
            partition: p,
            queue,
            // One reader per consumer serves the consumer's main queue (callbacks, errors).
            main: (i == 0).then(|| Arc::clone(&consumer)),
            consumer: Arc::clone(&consumer),
            pending: Arc::clone(&pending),
            end_watch,
            end: end.clone(),
            // Known before any read when resumed: a partition read to its end offset is done.
            next_offset: first(i, p),
            errors: 0,
            keep_meta: false,
        }));
    }
    Ok(readers)
}

/// How often the end offsets of the partitions read are asked for (the lag metric).
const END_REFRESH: Duration = Duration::from_secs(1);

/// Keeps `ends[i]` at the end offset (high watermark) of `partitions[i]`, asked of the
/// brokers every [`END_REFRESH`] by a thread of its own, so a worker that is busy or blocked
/// (by a slow sink) still shows its lag growing. The thread ends with the consumer.
fn watch_ends(
    consumer: &Arc<GroupConsumer>,
    topic: &str,
    partitions: &[i32],
    ends: &[Arc<AtomicI64>],
) {
    let consumer = Arc::downgrade(consumer);
    let name = topic.to_string();
    let topic = name.clone();
    let watched: Vec<(i32, std::sync::Weak<AtomicI64>)> = partitions
        .iter()
        .zip(ends)
        .map(|(&p, e)| (p, Arc::downgrade(e)))
        .collect();
    let spawned = std::thread::Builder::new()
        .name("logflow-kafka-ends".into())
        .spawn(move || loop {
            let Some(c) = consumer.upgrade() else { return };
            for (p, end) in &watched {
                // A failed request (a broker restarting) keeps the last value.
                if let (Some(end), Ok((_, high))) = (
                    end.upgrade(),
                    c.fetch_watermarks(&topic, *p, END_REFRESH * 5),
                ) {
                    end.store(high, Ordering::Relaxed);
                }
            }
            drop(c);
            std::thread::sleep(END_REFRESH);
        });
    if let Err(e) = spawned {
        tracing::warn!("logflow: kafka {name}: no lag metric: {e}");
    }
}

/// The group coordinator is moving or loading: asking again soon will do.
fn coordinator_busy(e: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(C::NotCoordinator | C::CoordinatorLoadInProgress | C::CoordinatorNotAvailable)
    )
}

/// The offsets `group` committed for `partitions` of `topic` (`None`: none), each said in a
/// line: where a `start = "stored"` job starts.
fn committed(
    consumer: &GroupConsumer,
    group: &str,
    topic: &str,
    partitions: &[i32],
) -> Result<Vec<Option<i64>>, Error> {
    let mut tpl = TopicPartitionList::new();
    for &p in partitions {
        tpl.add_partition(topic, p);
    }
    // A coordinator that is moving or still loading the offsets (a broker just started) is
    // asked again until the same 30 s are up.
    let until = std::time::Instant::now() + Duration::from_secs(30);
    let got = loop {
        let left = until.saturating_duration_since(std::time::Instant::now());
        match consumer.committed_offsets(tpl.clone(), left) {
            Err(e) if coordinator_busy(&e) && !left.is_zero() => {
                std::thread::sleep(Duration::from_millis(200));
            }
            other => break other,
        }
    }
    .map_err(|e| {
        Error::kafka(
            KafkaCause::Client,
            format!("kafka {topic}: the offsets group {group} committed: {e}"),
        )
    })?;
    Ok(partitions
        .iter()
        .map(|&p| {
            let at = match got.find_partition(topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) if o >= 0 => Some(o),
                _ => None,
            };
            match at {
                Some(o) => tracing::info!(
                    "logflow: kafka {topic}/{p} starts at the offset group {group} committed ({o})"
                ),
                None => tracing::info!(
                    "logflow: kafka {topic}/{p}: no offset committed by group {group}: starts at the earliest"
                ),
            }
            at
        })
        .collect())
}

struct KafkaReader {
    topic: String,
    partition: i32,
    queue: BatchQueue,
    main: Option<Arc<GroupConsumer>>,
    /// For the group's offset commits.
    consumer: Arc<GroupConsumer>,
    /// Shared by the consumer's readers.
    pending: Pending,
    /// The partition's end offset (see [`watch_ends`]).
    end_watch: Arc<AtomicI64>,
    end: EndAt,
    next_offset: Option<i64>,
    errors: u64,
    /// A schema reads record metadata: each record's goes into the batch.
    keep_meta: bool,
}

impl KafkaReader {
    /// This partition at `position`, for a commit.
    fn offsets(&self, position: u64) -> Option<TopicPartitionList> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, self.partition, Offset::Offset(position as i64))
            .ok()?;
        Some(tpl)
    }

    fn end_offset(&self) -> Option<i64> {
        match &self.end {
            EndAt::Never => None,
            EndAt::Offsets(o) => o.lock().ok().and_then(|o| {
                o.as_ref()
                    .and_then(|v| v.get(self.partition as usize).copied())
            }),
        }
    }

    fn finished(&self) -> bool {
        match (self.end_offset(), &self.end) {
            (Some(end), _) => end <= 0 || self.next_offset.is_some_and(|n| n >= end),
            (None, _) => false,
        }
    }

    fn report(&mut self, e: impl std::fmt::Display) {
        // librdkafka retries by itself (a broker restart shows up here); say so, but rarely.
        self.errors += 1;
        if self.errors.is_power_of_two() {
            tracing::warn!(
                "logflow: kafka {}/{}: {e} (retrying; seen {} times)",
                self.topic,
                self.partition,
                self.errors
            );
        }
    }
}

impl PartitionReader for KafkaReader {
    fn read(&mut self, batch: &mut RecordBatch, max: usize) -> Result<ReadStatus, Error> {
        if let Some(main) = &self.main {
            match main.poll(Duration::ZERO) {
                Some(Err(e)) => {
                    let e = e.to_string();
                    self.report(e);
                }
                // Every assigned partition has its own queue: a record here would be lost
                // silently, so the job fails instead (and resumes from its checkpoint).
                Some(Ok(m)) => {
                    return Err(Error::kafka(
                        KafkaCause::Client,
                        format!(
                            "kafka {}/{} offset {}: a record on the consumer's main queue, not on \
                         its partition's",
                            m.topic(),
                            m.partition(),
                            m.offset()
                        ),
                    ))
                }
                None => {}
            }
        }
        if self.finished() {
            return Ok(ReadStatus::Ended);
        }
        let before = batch.len();
        let end = self.end_offset();
        // Messages come in batches of what is queued now; a message at or past the stop offset
        // is not part of this bounded run, and one call may still hand over a few of them.
        let mut past_end = false;
        let mut failed = None;
        while !past_end && failed.is_none() && batch.len() - before < max {
            let next_offset = &mut self.next_offset;
            let (keep_meta, partition) = (self.keep_meta, self.partition);
            let got = self
                .queue
                .consume(max - (batch.len() - before), |m| match m {
                    Ok(msg) => {
                        let (offset, payload) = (msg.offset, msg.payload);
                        if past_end || end.is_some_and(|e| offset >= e) {
                            past_end = true;
                            *next_offset = Some(next_offset.map_or(offset, |n| n.max(offset)));
                            return;
                        }
                        batch.push(payload, offset.max(0) as u64, None);
                        if keep_meta {
                            batch.metas.push(msg.meta(partition));
                        }
                        *next_offset = Some(offset + 1);
                    }
                    Err(e) => {
                        if failed.is_none() {
                            failed = Some(e);
                        }
                    }
                });
            if got == 0 {
                break;
            }
            if end.is_some_and(|e| self.next_offset.is_some_and(|n| n >= e)) {
                break;
            }
        }
        if let Some(e) = failed {
            self.report(e);
        }
        Ok(if batch.len() > before {
            ReadStatus::Data
        } else if self.finished() {
            ReadStatus::Ended
        } else {
            ReadStatus::Pending
        })
    }

    fn keep_meta(&mut self) {
        self.keep_meta = true;
    }

    fn origin(&self, pos: u64) -> Origin {
        Origin::Kafka {
            topic: self.topic.clone(),
            partition: self.partition,
            offset: pos as i64,
        }
    }

    fn describe(&self) -> String {
        partition_name(&self.topic, self.partition)
    }

    fn resume_point(&self) -> Option<u64> {
        self.next_offset.map(|o| o.max(0) as u64)
    }

    fn end_watch(&self) -> Option<Arc<AtomicI64>> {
        Some(Arc::clone(&self.end_watch))
    }

    fn commit(&self, position: u64) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.insert(self.partition, position as i64);
        }
    }

    fn flush_commits(&self) {
        // Asynchronous: a checkpoint never waits for it, and a failed commit is only behind
        // (the next one covers it; `GroupContext` says it failed).
        let Some(pending) = self
            .pending
            .lock()
            .ok()
            .map(|mut p| std::mem::take(&mut *p))
        else {
            return;
        };
        if pending.is_empty() {
            return; // another reader of the consumer sent them
        }
        let mut tpl = TopicPartitionList::new();
        for (&p, &offset) in &pending {
            if tpl
                .add_partition_offset(&self.topic, p, Offset::Offset(offset))
                .is_err()
            {
                return;
            }
        }
        if let Err(e) = self.consumer.commit(&tpl, CommitMode::Async) {
            tracing::warn!(
                "logflow: kafka {}: committing offsets {pending:?}: {e}",
                self.topic
            );
        }
    }

    fn final_commit(&self) -> Option<crate::sources::FinalCommit> {
        let position = self.resume_point()?;
        let tpl = self.offsets(position)?;
        let consumer = Arc::clone(&self.consumer);
        let name = self.describe();
        Some(Box::new(move || {
            consumer.commit(&tpl, CommitMode::Sync).map_err(|e| {
                Error::kafka(
                    KafkaCause::Client,
                    format!("{name}: committing offset {position}: {e}"),
                )
            })
        }))
    }

    fn wake_on_arrival(&mut self, wake: Wake) -> bool {
        self.queue.wake_on_arrival(wake);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::{BaseProducer, BaseRecord, DefaultProducerContext, Producer};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Instant;

    /// An in-process cluster with topic `t` of two partitions, record `i` in partition `i % 2`.
    fn cluster_with(records: usize) -> MockCluster<'static, DefaultProducerContext> {
        let cluster = MockCluster::new(1).unwrap();
        cluster.create_topic("t", 2, 1).unwrap();
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", cluster.bootstrap_servers())
            .create()
            .unwrap();
        for i in 0..records {
            let payload = format!("r{i}");
            let record = BaseRecord::<(), _>::to("t")
                .payload(&payload)
                .partition((i % 2) as i32);
            producer.send(record).map_err(|(e, _)| e).unwrap();
        }
        producer.flush(Duration::from_secs(10)).unwrap();
        cluster
    }

    /// Every record reaches its partition's reader however late the reader first looks, and
    /// none lands on the consumer's main queue (where the first reader would have to fail).
    /// Queues split after `assign` lost the first fetch's records to the main queue whenever
    /// the worker was descheduled between the two calls.
    #[test]
    fn every_record_reaches_its_reader_however_late_it_reads() {
        let cluster = cluster_with(400);
        let conn = KafkaConn::new(&cluster.bootstrap_servers(), &[]);
        let end = EndAt::Offsets(Arc::new(Mutex::new(Some(vec![200, 200]))));
        let mut readers =
            open_partitions(&conn, "g", "t", &[0, 1], StartAt::Earliest, end, &|_| None).unwrap();
        // The fetches complete while nobody reads.
        std::thread::sleep(Duration::from_millis(300));
        for (p, reader) in readers.iter_mut().enumerate() {
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut batch = RecordBatch::default();
            while reader.read(&mut batch, 64).unwrap() != ReadStatus::Ended {
                assert!(
                    Instant::now() < deadline,
                    "partition {p} read {}",
                    batch.len()
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            let got: Vec<(String, u64)> = batch
                .iter()
                .map(|(b, pos, _)| (String::from_utf8_lossy(b).into_owned(), pos))
                .collect();
            let want: Vec<(String, u64)> = (0..200)
                .map(|o| (format!("r{}", o * 2 + p), o as u64))
                .collect();
            assert_eq!(got, want, "partition {p}");
        }
    }

    /// The premise of the above, in librdkafka: a partition queue split before `assign` keeps
    /// its messages when fetching starts (the consumer's queue gets none).
    #[test]
    fn a_queue_split_before_assign_keeps_its_messages() {
        let cluster = cluster_with(100);
        let conn = KafkaConn::new(&cluster.bootstrap_servers(), &[]);
        let consumer: Arc<BaseConsumer> = Arc::new(
            consumer_config(&conn, "g", StartAt::Earliest)
                .create()
                .unwrap(),
        );
        let mut queue = BatchQueue::split(&consumer, "t", 0).unwrap();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("t", 0, Offset::Beginning).unwrap();
        // The first fetch's messages are queued (the wake-up says so) before the main queue
        // is looked at: a fixed sleep might end before, and test nothing.
        let arrived = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&arrived);
        queue.wake_on_arrival(Arc::new(move || flag.store(true, Ordering::SeqCst)));
        consumer.assign(&tpl).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !arrived.load(Ordering::SeqCst) {
            assert!(Instant::now() < deadline, "no fetch arrived");
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(
            consumer.poll(Duration::ZERO).is_none(),
            "a message on the main queue"
        );
        let mut offsets = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while offsets.len() < 50 && Instant::now() < deadline {
            queue.consume(64, |m| offsets.push(m.unwrap().offset));
        }
        assert_eq!(offsets, (0..50).collect::<Vec<i64>>());
    }

    fn conn(properties: &[(&str, &str)]) -> KafkaConn {
        KafkaConn {
            brokers: "b:9092".into(),
            properties: properties
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn prefetch_is_capped_unless_the_spec_sets_it() {
        let cfg = consumer_config(&conn(&[]), "g", StartAt::Earliest);
        assert_eq!(cfg.get("queued.max.messages.kbytes"), Some("2048"));
        assert_eq!(cfg.get("fetch.queue.backoff.ms"), Some("10"));
        assert_eq!(cfg.get("max.partition.fetch.bytes"), Some("4194304"));
        assert_eq!(cfg.get("group.id"), Some("g"));
        assert_eq!(cfg.get("auto.offset.reset"), Some("earliest"));

        let cfg = consumer_config(
            &conn(&[("queued.max.messages.kbytes", "65536")]),
            "g",
            StartAt::Latest,
        );
        assert_eq!(cfg.get("queued.max.messages.kbytes"), Some("65536"));
        assert_eq!(cfg.get("fetch.queue.backoff.ms"), Some("10"));
        assert_eq!(cfg.get("auto.offset.reset"), Some("latest"));
    }
}
