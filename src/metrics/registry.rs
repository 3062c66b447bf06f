//! The metrics of one process: plain atomics updated by the worker threads, read and encoded
//! in the Prometheus / OpenMetrics text formats (by `prometheus-client`) on each scrape.
//!
//! Workers never touch a lock on the hot path: each source partition has its own
//! [`PartitionMeter`] (atomics), written once per ingest activation by the worker that reads
//! it. Output metrics are updated once per written batch (one lock per batch of rows).

use std::collections::BTreeSet;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::alerts::AlertMetrics;
use super::latest::LatestWindows;
use super::results::ResultGauges;
use crate::record::Origin;
use crate::record::{Row, Value};
use crate::spec::plan::JobPlan;

/// Who this process is: exported as `logflow_process_info`.
#[derive(Clone, Debug)]
pub struct Identity {
    /// The job's name (`job` is Prometheus's own target label, so the label is `pipeline`).
    pub pipeline: String,
    pub process: usize,
    pub processes: usize,
    /// Worker threads per process.
    pub threads: usize,
}

impl Identity {
    /// The identity of process `process` of `processes` (each of `threads` workers) in a run
    /// of `plan`.
    pub fn of(plan: &JobPlan, process: usize, processes: usize, threads: usize) -> Identity {
        Identity {
            pipeline: plan.name.clone(),
            process,
            processes,
            threads,
        }
    }
}

/// Marks "no event time seen yet" in an `AtomicI64`.
const NO_TIME: i64 = i64::MIN;

/// Windows per analysis remembered to count each emitted window once, even when several
/// workers write rows of the same window in any order.
const RECENT_WINDOWS: usize = 64;

/// Counters and event-time state of one source partition, written by the worker reading it.
#[derive(Debug)]
pub struct PartitionMeter {
    /// Kafka topic, file path, or `generator`.
    pub source: String,
    /// Kafka partition id (`0` for files and the generator).
    pub partition: String,
    /// Global worker index (`process * threads + local`).
    pub worker: usize,
    read: AtomicU64,
    parsed: AtomicU64,
    dead_letter: AtomicU64,
    late: AtomicU64,
    max_event_ms: AtomicI64,
    idle: AtomicBool,
    finished: AtomicBool,
    /// The position of the next record to read (`NO_POSITION`: not known yet).
    position: AtomicI64,
    /// The partition's end offset, kept fresh by its source (Kafka) in the background.
    end: OnceLock<Arc<AtomicI64>>,
}

/// Marks "no position known yet" in an `AtomicI64`.
const NO_POSITION: i64 = -1;

/// A consistent-enough copy of a [`PartitionMeter`] (each field is read once).
#[derive(Clone, Debug, PartialEq)]
pub struct PartitionSnapshot {
    pub source: String,
    pub partition: String,
    pub worker: usize,
    pub read: u64,
    pub parsed: u64,
    pub dead_letter: u64,
    pub late: u64,
    /// Largest event time read (ms since the epoch), once the partition has produced.
    pub max_event_ms: Option<i64>,
    pub idle: bool,
    pub finished: bool,
    /// Records between the position read to and the partition's end offset, once both are
    /// known (Kafka).
    pub lag: Option<i64>,
}

impl PartitionMeter {
    fn new(origin: &Origin, worker: usize) -> Self {
        let (source, partition) = match origin {
            Origin::Kafka {
                topic, partition, ..
            } => (topic.clone(), partition.to_string()),
            Origin::File { path, .. } => (path.clone(), "0".to_string()),
            Origin::Generator { .. } => ("generator".to_string(), "0".to_string()),
        };
        PartitionMeter {
            source,
            partition,
            worker,
            read: AtomicU64::new(0),
            parsed: AtomicU64::new(0),
            dead_letter: AtomicU64::new(0),
            late: AtomicU64::new(0),
            max_event_ms: AtomicI64::new(NO_TIME),
            idle: AtomicBool::new(false),
            finished: AtomicBool::new(false),
            position: AtomicI64::new(NO_POSITION),
            end: OnceLock::new(),
        }
    }

    /// The position of the next record to read (once per activation).
    pub fn set_position(&self, position: Option<u64>) {
        if let Some(p) = position.and_then(|p| i64::try_from(p).ok()) {
            self.position.store(p, Ordering::Relaxed);
        }
    }

    /// Follows the partition's end offset, as its source refreshes it (for the lag).
    pub fn follow_end(&self, end: Arc<AtomicI64>) {
        let _ = self.end.set(end);
    }

    /// Adds one activation's records.
    pub fn add(&self, read: u64, parsed: u64, dead_letter: u64, late: u64) {
        if read == 0 {
            return;
        }
        self.read.fetch_add(read, Ordering::Relaxed);
        self.parsed.fetch_add(parsed, Ordering::Relaxed);
        self.dead_letter.fetch_add(dead_letter, Ordering::Relaxed);
        self.late.fetch_add(late, Ordering::Relaxed);
    }

    /// The partition's progress: its largest event time so far.
    pub fn set_max_event_time(&self, ms: Option<i64>) {
        if let Some(ms) = ms {
            self.max_event_ms.fetch_max(ms, Ordering::Relaxed);
        }
    }

    pub fn set_idle(&self, idle: bool) {
        self.idle.store(idle, Ordering::Relaxed);
    }

    /// A bounded input reached its end: the partition no longer holds the watermark.
    pub fn set_finished(&self) {
        self.idle.store(false, Ordering::Relaxed);
        self.finished.store(true, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> PartitionSnapshot {
        let max = self.max_event_ms.load(Ordering::Relaxed);
        PartitionSnapshot {
            source: self.source.clone(),
            partition: self.partition.clone(),
            worker: self.worker,
            read: self.read.load(Ordering::Relaxed),
            parsed: self.parsed.load(Ordering::Relaxed),
            dead_letter: self.dead_letter.load(Ordering::Relaxed),
            late: self.late.load(Ordering::Relaxed),
            max_event_ms: (max != NO_TIME).then_some(max),
            idle: self.idle.load(Ordering::Relaxed),
            finished: self.finished.load(Ordering::Relaxed),
            lag: self.end.get().and_then(|end| {
                let (end, at) = (
                    end.load(Ordering::Relaxed),
                    self.position.load(Ordering::Relaxed),
                );
                (end >= 0 && at >= 0).then(|| (end - at).max(0))
            }),
        }
    }
}

/// Output counters of one analysis.
#[derive(Debug, Default)]
struct AnalysisOutput {
    rows: u64,
    windows: u64,
    recent: BTreeSet<i64>,
    last_end: Option<i64>,
}

/// What checkpointing reports; nothing is exported before the first checkpoint
/// completes, so dashboards show "no data" rather than an invented age.
#[derive(Clone, Copy, Debug)]
struct CheckpointStats {
    completed: u64,
    last_completed_ms: i64,
    last_duration: Duration,
}

/// Totals over this process's partitions, for the progress line.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Totals {
    pub read: u64,
    pub parsed: u64,
    pub dead_letter: u64,
    pub late: u64,
    /// The job's watermark here: least over partitions that are neither idle nor finished.
    pub watermark_ms: Option<i64>,
    /// How far event time got: the largest event time read, less the delay (`None`: none
    /// read). A finished job's last watermark, when it ended before one was reported.
    pub reached_ms: Option<i64>,
    pub partitions: usize,
    pub idle: usize,
    pub finished: usize,
}

/// All metrics of one process, shared by its worker threads.
#[derive(Debug)]
pub struct Metrics {
    identity: Identity,
    delay_ms: i64,
    /// (name, topic) of every analysis, in plan order.
    analyses: Vec<(String, String)>,
    partitions: Mutex<Vec<Arc<PartitionMeter>>>,
    outputs: Mutex<Vec<AnalysisOutput>>,
    /// The `<job>.overflow` pseudo-analysis, and per analysis with `max_keys` (by index) the
    /// keys written there.
    overflow: Option<u32>,
    overflow_keys: Mutex<Vec<(usize, u64)>>,
    results: ResultGauges,
    alerts: AlertMetrics,
    latest: LatestWindows,
    checkpoints: Mutex<Option<CheckpointStats>>,
    running: AtomicBool,
    final_scrapes: Mutex<u64>,
    scraped: Condvar,
    /// What the process still needs before it is ready (`/ready`).
    unready: Mutex<BTreeSet<Readiness>>,
}

/// What a process needs before it is ready to do its work (`/ready`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Readiness {
    /// Connected to every other process of the job.
    Peers,
    /// Its sinks are open (output topics found, files created).
    Sinks,
    /// Its source partitions are open and assigned to its workers.
    Consumers,
}

impl Readiness {
    pub fn name(self) -> &'static str {
        match self {
            Readiness::Peers => "peers",
            Readiness::Sinks => "sinks",
            Readiness::Consumers => "consumers",
        }
    }
}

/// Locks a mutex even if a panicking worker poisoned it: metrics stay readable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Metrics {
    pub fn new(plan: &JobPlan, identity: Identity) -> Self {
        let several = identity.processes > 1;
        Metrics {
            identity,
            delay_ms: plan.watermark_delay_ms,
            analyses: plan
                .analyses
                .iter()
                .map(|a| (a.name.clone(), a.topic.clone()))
                .collect(),
            partitions: Mutex::new(Vec::new()),
            outputs: Mutex::new(plan.analyses.iter().map(|_| Default::default()).collect()),
            overflow: plan.overflow_analysis().map(|i| i as u32),
            overflow_keys: Mutex::new(
                (0..plan.analyses.len())
                    .filter(|&i| plan.analyses[i].max_keys.is_some())
                    .map(|i| (i, 0))
                    .collect(),
            ),
            results: ResultGauges::new(plan),
            alerts: AlertMetrics::new(plan),
            latest: LatestWindows::new(plan),
            checkpoints: Mutex::new(None),
            running: AtomicBool::new(true),
            final_scrapes: Mutex::new(0),
            scraped: Condvar::new(),
            unready: Mutex::new(
                [Readiness::Peers, Readiness::Sinks, Readiness::Consumers]
                    .into_iter()
                    .filter(|r| *r != Readiness::Peers || several)
                    .collect(),
            ),
        }
    }

    /// `what` is done (see [`Metrics::missing`]).
    pub fn ready(&self, what: Readiness) {
        lock(&self.unready).remove(&what);
    }

    /// What the process still needs before it is ready; empty once it is (and `["running"]`
    /// once the job has ended).
    pub fn missing(&self) -> Vec<&'static str> {
        if !self.is_running() {
            return vec!["running"];
        }
        lock(&self.unready).iter().map(|r| r.name()).collect()
    }

    /// Registers a source partition read by `worker`; the caller keeps the meter.
    pub fn partition(&self, origin: &Origin, worker: usize) -> Arc<PartitionMeter> {
        let meter = Arc::new(PartitionMeter::new(origin, worker));
        lock(&self.partitions).push(Arc::clone(&meter));
        meter
    }

    pub fn partition_snapshots(&self) -> Vec<PartitionSnapshot> {
        let mut v: Vec<PartitionSnapshot> = lock(&self.partitions)
            .iter()
            .map(|p| p.snapshot())
            .collect();
        v.sort_by(|a, b| {
            (&a.source, a.partition.parse::<i64>().ok(), &a.partition).cmp(&(
                &b.source,
                b.partition.parse::<i64>().ok(),
                &b.partition,
            ))
        });
        v
    }

    pub fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for p in self.partition_snapshots() {
            t.read += p.read;
            t.parsed += p.parsed;
            t.dead_letter += p.dead_letter;
            t.late += p.late;
            t.partitions += 1;
            t.idle += usize::from(p.idle);
            t.finished += usize::from(p.finished);
            if let Some(m) = p.max_event_ms {
                let wm = m - self.delay_ms;
                t.reached_ms = Some(t.reached_ms.map_or(wm, |r: i64| r.max(wm)));
                if !p.idle && !p.finished {
                    t.watermark_ms = Some(t.watermark_ms.map_or(wm, |w: i64| w.min(wm)));
                }
            }
        }
        t
    }

    /// Result rows written so far, over all analyses.
    pub fn rows_total(&self) -> u64 {
        lock(&self.outputs).iter().map(|o| o.rows).sum()
    }

    /// Rows a sink has written (called after the write succeeded).
    pub fn rows_written(&self, rows: &[Row]) {
        if rows.is_empty() {
            return;
        }
        {
            let mut outs = lock(&self.outputs);
            for r in rows {
                let Some(o) = outs.get_mut(r.analysis as usize) else {
                    continue;
                };
                o.rows += 1;
                if Some(r.analysis) == self.overflow {
                    self.count_overflow(r);
                }
                o.last_end = Some(o.last_end.map_or(r.end, |e| e.max(r.end)));
                let older = o.recent.len() >= RECENT_WINDOWS
                    && o.recent.first().is_some_and(|&f| r.start < f);
                if !older && o.recent.insert(r.start) {
                    o.windows += 1;
                    if o.recent.len() > RECENT_WINDOWS {
                        o.recent.pop_first();
                    }
                }
            }
        }
        self.results.observe(rows);
        self.alerts.observe(rows);
        self.latest.observe(rows);
    }

    /// One `<job>.overflow` row written: a key of the analysis it names.
    fn count_overflow(&self, row: &Row) {
        let Some(Value::Str(name)) = row.values.first() else {
            return;
        };
        let mut keys = lock(&self.overflow_keys);
        if let Some((_, n)) = keys
            .iter_mut()
            .find(|(i, _)| self.analyses[*i].0 == name.as_str())
        {
            *n += 1;
        }
    }

    /// Keys an analysis with `max_keys` did not keep, written to `<job>.overflow`, per analysis
    /// index.
    pub fn overflow_keys(&self) -> Vec<(usize, u64)> {
        lock(&self.overflow_keys).clone()
    }

    /// The latest window of each analysis as JSON (the `/results` answer, bounded).
    pub fn results_json(&self) -> String {
        self.latest.to_json(self.is_running())
    }

    /// Records a completed checkpoint (see `CheckpointStats`).
    pub fn checkpoint_completed(&self, duration: Duration) {
        let mut c = lock(&self.checkpoints);
        let completed = c.map_or(0, |c| c.completed) + 1;
        *c = Some(CheckpointStats {
            completed,
            last_completed_ms: now_ms(),
            last_duration: duration,
        });
    }

    /// Checkpoints completed so far, and how long the last one took.
    pub fn checkpoints_completed(&self) -> Option<(u64, Duration)> {
        (*lock(&self.checkpoints)).map(|c| (c.completed, c.last_duration))
    }

    /// The job has ended: every metric now holds its final value.
    pub fn finish(&self) {
        self.running.store(false, Ordering::SeqCst);
    }

    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::SeqCst)
    }

    /// A scrape was answered; `started_after_finish` = it read the final values.
    pub(crate) fn scrape_served(&self, started_after_finish: bool) {
        if started_after_finish {
            *lock(&self.final_scrapes) += 1;
            self.scraped.notify_all();
        }
    }

    /// Waits until a scrape has read the final values, at most `timeout`; true if one did.
    pub fn wait_final_scrape(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut n = lock(&self.final_scrapes);
        while *n == 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            n = match self.scraped.wait_timeout(n, left) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
        true
    }

    /// A registry that encodes these metrics on every scrape.
    pub fn registry(self: &Arc<Self>) -> Registry {
        let mut r = Registry::default();
        r.register_collector(Box::new(Collect(Arc::clone(self))));
        r
    }

    /// The metrics in the Prometheus text format (0.0.4), as a scrape without an
    /// OpenMetrics `Accept` header gets them (tests read it; the server encodes the registry itself).
    #[cfg(test)]
    pub fn encode_text(self: &Arc<Self>) -> Result<String, fmt::Error> {
        let mut s = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut s, &self.registry())?;
        Ok(s)
    }

    fn encode(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        let id = &self.identity;
        let info = Info::new(vec![
            ("pipeline", id.pipeline.clone()),
            ("process", id.process.to_string()),
            ("processes", id.processes.to_string()),
            ("threads", id.threads.to_string()),
            ("version", env!("CARGO_PKG_VERSION").to_string()),
        ]);
        info.encode(enc.encode_descriptor(
            "logflow_process",
            "This logflow process: its job, its index among the processes, its worker threads.",
            None,
            MetricType::Info,
        )?)?;
        gauges(
            enc,
            "logflow_job_running",
            "1 while the job runs; 0 once it has ended (every other metric is then final).",
            &[(
                Vec::<(&str, String)>::new(),
                f64::from(u8::from(self.is_running())),
            )],
        )?;

        let now = now_ms();
        let parts = self.partition_snapshots();
        let labels = |p: &PartitionSnapshot| {
            vec![
                ("source", p.source.clone()),
                ("partition", p.partition.clone()),
                ("worker", p.worker.to_string()),
            ]
        };
        type Field = fn(&PartitionSnapshot) -> u64;
        let counts: [(&str, &str, Field); 4] = [
            ("logflow_records_read", "Records read from a source partition.", |p| p.read),
            ("logflow_records_parsed", "Records of a partition parsed into events.", |p| p.parsed),
            ("logflow_records_dead_letter", "Records of a partition sent to the dead-letter output (bad input).", |p| p.dead_letter),
            ("logflow_records_late", "Parsed records of a partition that arrived after all their windows had closed (sent to the late output).", |p| p.late),
        ];
        for (name, help, f) in counts {
            let series: Vec<_> = parts.iter().map(|p| (labels(p), f(p))).collect();
            counters(enc, name, help, &series)?;
        }
        let with_time: Vec<(&PartitionSnapshot, i64)> = parts
            .iter()
            .filter_map(|p| p.max_event_ms.map(|m| (p, m)))
            .collect();
        let secs = |ms: i64| ms as f64 / 1000.0;
        gauges(
            enc,
            "logflow_partition_event_time_seconds",
            "Largest event time read from the partition (its progress), Unix seconds.",
            &with_time
                .iter()
                .map(|(p, m)| (labels(p), secs(*m)))
                .collect::<Vec<_>>(),
        )?;
        gauges(
            enc,
            "logflow_partition_watermark_seconds",
            "The partition's watermark: its largest event time minus the job's watermark delay, Unix seconds.",
            &with_time.iter().map(|(p, m)| (labels(p), secs(*m - self.delay_ms))).collect::<Vec<_>>(),
        )?;
        gauges(
            enc,
            "logflow_partition_watermark_lag_seconds",
            "Wall-clock time minus the partition's watermark, at the scrape.",
            &with_time
                .iter()
                .map(|(p, m)| (labels(p), secs(now - (*m - self.delay_ms))))
                .collect::<Vec<_>>(),
        )?;
        gauges(
            enc,
            "logflow_partition_lag_records",
            "Records of a Kafka partition not read yet: its end offset (refreshed every second) minus the position read to.",
            &parts
                .iter()
                .filter_map(|p| {
                    let labels = vec![("topic", p.source.clone()), ("partition", p.partition.clone())];
                    Some((labels, p.lag? as f64))
                })
                .collect::<Vec<_>>(),
        )?;
        let state = crate::operators::state::per_analysis();
        let analysis = |i: usize| {
            vec![(
                "analysis",
                self.analyses
                    .get(i)
                    .map(|a| a.0.clone())
                    .unwrap_or_default(),
            )]
        };
        gauges(
            enc,
            "logflow_state_keys",
            "(window, key) groups an analysis's window operators hold open in this process.",
            &state
                .iter()
                .filter(|(i, _, _)| *i < self.analyses.len())
                .map(|(i, g, _)| (analysis(*i), *g as f64))
                .collect::<Vec<_>>(),
        )?;
        gauges(
            enc,
            "logflow_state_bytes",
            "Estimated bytes of those groups: entry, key values and accumulators' inline size (not the heap of long strings, distinct sets, top-k lists or sketches).",
            &state.iter().filter(|(i, _, _)| *i < self.analyses.len()).map(|(i, _, b)| (analysis(*i), *b as f64)).collect::<Vec<_>>(),
        )?;
        gauges(
            enc,
            "logflow_partition_idle",
            "1 when the partition has had no data for watermark.idle_timeout and no longer holds the watermark back.",
            &parts.iter().map(|p| (labels(p), f64::from(u8::from(p.idle)))).collect::<Vec<_>>(),
        )?;
        gauges(
            enc,
            "logflow_partition_finished",
            "1 when the partition's bounded input has ended.",
            &parts
                .iter()
                .map(|p| (labels(p), f64::from(u8::from(p.finished))))
                .collect::<Vec<_>>(),
        )?;

        {
            let outs = lock(&self.outputs);
            let label = |i: usize| {
                let (name, topic) = &self.analyses[i];
                vec![("analysis", name.clone()), ("topic", topic.clone())]
            };
            counters(
                enc,
                "logflow_output_records",
                "Result rows written by this process, per analysis and output topic.",
                &outs
                    .iter()
                    .enumerate()
                    .map(|(i, o)| (label(i), o.rows))
                    .collect::<Vec<_>>(),
            )?;
            counters(
                enc,
                "logflow_overflow_keys",
                "Keys of a window beyond its analysis's max_keys, written to <job>.overflow instead of being aggregated (one per window and key).",
                &self
                    .overflow_keys()
                    .into_iter()
                    .map(|(i, n)| (vec![("analysis", self.analyses[i].0.clone())], n))
                    .collect::<Vec<_>>(),
            )?;
            counters(
                enc,
                "logflow_windows_emitted",
                "Windows of an analysis that produced rows (each window once).",
                &outs
                    .iter()
                    .enumerate()
                    .map(|(i, o)| (label(i), o.windows))
                    .collect::<Vec<_>>(),
            )?;
            gauges(
                enc,
                "logflow_last_window_end_seconds",
                "End of the latest window an analysis has emitted rows for, Unix seconds.",
                &outs
                    .iter()
                    .enumerate()
                    .filter_map(|(i, o)| o.last_end.map(|e| (label(i), secs(e))))
                    .collect::<Vec<_>>(),
            )?;
        }
        self.results.encode(enc)?;
        self.alerts.encode(enc)?;

        if let Some(c) = *lock(&self.checkpoints) {
            let none = Vec::<(&str, String)>::new();
            counters(
                enc,
                "logflow_checkpoints_completed",
                "Checkpoints completed by this process.",
                &[(none.clone(), c.completed)],
            )?;
            gauges(
                enc,
                "logflow_checkpoint_age_seconds",
                "Time since the last completed checkpoint, at the scrape.",
                &[(none.clone(), secs(now - c.last_completed_ms))],
            )?;
            gauges(
                enc,
                "logflow_checkpoint_duration_seconds",
                "How long the last checkpoint took.",
                &[(none, c.last_duration.as_secs_f64())],
            )?;
        }
        Ok(())
    }
}

/// Encodes one counter family; nothing when it has no series.
pub(crate) fn counters<S: EncodeLabelSet>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: &[(S, u64)],
) -> fmt::Result {
    if series.is_empty() {
        return Ok(());
    }
    let mut me = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in series {
        ConstCounter::new(*v).encode(me.encode_family(labels)?)?;
    }
    Ok(())
}

/// Encodes one gauge family; nothing when it has no series.
pub(crate) fn gauges<S: EncodeLabelSet>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: &[(S, f64)],
) -> fmt::Result {
    if series.is_empty() {
        return Ok(());
    }
    let mut me = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in series {
        me.encode_family(labels)?.encode_gauge(v)?;
    }
    Ok(())
}

/// The registry's view of [`Metrics`].
#[derive(Debug)]
struct Collect(Arc<Metrics>);

impl Collector for Collect {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        self.0.encode(&mut encoder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_end_minus_position_once_both_are_known() {
        let origin = Origin::Kafka {
            topic: "logs".into(),
            partition: 3,
            offset: 0,
        };
        let m = PartitionMeter::new(&origin, 0);
        assert_eq!(m.snapshot().lag, None, "no end offset followed");
        let end = Arc::new(AtomicI64::new(-1));
        m.follow_end(Arc::clone(&end));
        m.set_position(Some(40));
        assert_eq!(m.snapshot().lag, None, "the end is not known yet");
        end.store(100, Ordering::Relaxed);
        assert_eq!(m.snapshot().lag, Some(60));
        m.set_position(None);
        assert_eq!(
            m.snapshot().lag,
            Some(60),
            "an unknown position keeps the last"
        );
        m.set_position(Some(100));
        assert_eq!(m.snapshot().lag, Some(0));
        // The end is refreshed after the position moved past it: never negative.
        m.set_position(Some(130));
        assert_eq!(m.snapshot().lag, Some(0));
    }
}
