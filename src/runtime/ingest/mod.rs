//! The ingest operator: reads this worker's source partitions, parses records, tracks event-time
//! progress per partition, and holds the capability that IS the watermark.
//!
//! Event-time semantics (docs/design.md section 3), made deterministic:
//! - A partition's progress `M_p` is the largest event time read from it so far. An analysis's
//!   watermark on that partition is `M_p - delay`.
//! - Each event is sent at timely time `t = max(floor_g(M_p), cap)`, where `M_p` is taken just
//!   before the event and `cap` is the worker's held capability. `g` divides every window
//!   deadline, so rounding loses nothing.
//! - An event contributes to the windows of an analysis whose deadline `end + delay + allowed
//!   lateness` is after `t`; if there is none, the event is late for that analysis and goes to
//!   the late output with the watermark it missed.
//! - The capability (the watermark) is the minimum progress over the worker's partitions that
//!   are not idle; a finished partition stops counting, and when all are finished the capability
//!   is dropped, which closes every remaining window.
//!
//! Lateness thus depends only on each partition's own order, never on thread timing or on how
//! partitions are spread over workers, and replaying a partition gives the same results.
//!
//! The operator is `Ingest`: each activation (`Ingest::step`) passes a pending checkpoint
//! barrier (`barrier`), reads every partition once (`partition`), moves the capability by the
//! rules of `watermark` (pure functions, with table tests) and sends what it produced.

mod aggregation;
mod barrier;
mod board;
pub mod commits;
mod partition;
mod watermark;

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::Capability;
use timely::dataflow::{Scope, StreamVec};
use timely::scheduling::Activator;

use self::aggregation::Aggregation;
pub use self::barrier::{resume_points, IngestState, PartitionState, INGEST_SLOT};
use self::barrier::{AtBarrier, Barrier};
pub use self::board::ProgressBoard;
use self::partition::{Partition, Routed, Stamp};
use self::watermark::{Advance, Granularity, Seen};
use super::accounting::Counters;
use super::stop::JobStop;
use crate::checkpoint::barrier::Slot;
use crate::metrics::{Metrics, PartitionMeter};
use crate::operators::pre_aggregate::Partial;
use crate::parse::sniff::DeadLetterWatch;
use crate::parse::Format;
use crate::record::Event;
use crate::record::{DeadLetter, LateEvent};
use crate::sources::lookup::Tables;
use crate::sources::{FinalCommit, PartitionReader, ReadStatus, RecordBatch};
use crate::spec::plan::AggNode;
use crate::spec::plan::LookupPlan;
use crate::time::window::Windows;

/// The windows of one aggregation node, for lateness checks at ingest.
#[derive(Clone, Debug)]
pub struct LatenessRule {
    pub windows: Windows,
    pub hold_ms: i64,
    /// (analysis index, its delay) for each analysis computed from these windows.
    pub analyses: Vec<(u32, i64)>,
}

/// Settings of the ingest operator.
#[derive(Clone, Debug)]
pub struct IngestConfig {
    pub format: Format,
    /// A user-defined schema parses records instead of `format`'s built-in parser.
    pub schema: Option<Arc<crate::parse::schema::Schema>>,
    /// Formats `apache` and `nginx`: the slots of the request's parts the analyses read.
    pub access_slots: Option<[Option<u8>; 6]>,
    pub granularity_ms: i64,
    pub idle_timeout: Duration,
    /// Events further than this ahead of the wall clock are dead letters.
    pub max_future_ms: i64,
    pub rules: Vec<LatenessRule>,
    /// Fields the analyses read: other string fields are checked but not copied.
    pub fields: crate::record::FieldSet,
    /// The aggregation nodes that read events, pre-aggregated right here (see [`ingest`]).
    pub nodes: Vec<Rc<AggNode>>,
    /// Records read per activation, across partitions (bounds latency and memory).
    pub batch: usize,
    /// Reference tables joined to every parsed event (their files are checked for changes
    /// at the start of every activation).
    pub lookups: Vec<LookupPlan>,
    /// Records carry the wall clock (format `text`): a partition's progress follows the clock
    /// even without data, and it is never idle.
    pub processing_time: bool,
}

/// How long a worker that is too far ahead ([`watermark::ahead`]) waits at most (the next
/// progress announced wakes it sooner).
const ALIGN_WAIT_MS: u64 = 50;
/// How often an ingest whose partitions have nothing to read looks again; when every reader
/// wakes it as records arrive ([`PartitionReader::wake_on_arrival`]), the longer period.
const PENDING_POLL_MS: u64 = 20;
const WOKEN_POLL_MS: u64 = 100;
/// Stopping with checkpoints, how long partitions must have had no data before the ingest
/// takes the pending barrier as reached (data read on to it keeps the results exactly those of
/// a run that never stopped; a caught-up input would never bring it).
const STOP_QUIET: Duration = Duration::from_secs(1);
/// How often an ingest waiting at a checkpoint barrier looks for its completion.
const BARRIER_POLL_MS: u64 = 1;

/// Streams of partial aggregates (one per node of [`IngestConfig::nodes`]), dead letters, late
/// events, and progress beacons `(worker, progress)`.
pub type Ingested<'scope> = (
    Vec<StreamVec<'scope, u64, Partial>>,
    StreamVec<'scope, u64, DeadLetter>,
    StreamVec<'scope, u64, LateEvent>,
    StreamVec<'scope, u64, (usize, Option<i64>)>,
);

/// Output (and capability) indices of the ingest operator; node `i`'s partials are
/// `PARTIALS + i`.
const DEAD: usize = 0;
const LATE: usize = 1;
const BEACON: usize = 2;
const PARTIALS: usize = 3;

type Out<D> = OutputBuilder<u64, CapacityContainerBuilder<Vec<D>>>;

/// The ingest operator's outputs.
struct Outputs {
    dead: Out<DeadLetter>,
    late: Out<LateEvent>,
    beacon: Out<(usize, Option<i64>)>,
    partials: Vec<Out<Partial>>,
}

/// Builds the ingest operator over this worker's partitions.
///
/// Each on-time event is folded into the worker-local partial aggregates of every node right
/// after it is parsed ([`GroupTable`](crate::operators::pre_aggregate::GroupTable)), so events
/// are never buffered or copied per node; the partials are held (see `Aggregation`) until the
/// capability is about to pass them or `batch` events have been absorbed.
///
/// Idleness across workers: a worker whose partitions are all idle cannot know the job's
/// watermark by itself, and its capability would hold every window back. So each worker
/// announces its progress on a beacon stream (broadcast to all workers, collected into
/// `board`), and an all-idle worker advances its capability to the least progress announced
/// by the active workers (or, when every worker is idle, to the furthest event time it saw).
pub fn ingest<'scope>(
    scope: Scope<'scope, u64>,
    readers: Vec<Box<dyn PartitionReader>>,
    config: IngestConfig,
    shared: IngestShared,
    metrics: &Metrics,
    board: ProgressBoard,
) -> Ingested<'scope> {
    let IngestShared {
        counters,
        stop,
        commits,
        acked,
    } = shared;
    let me = scope.index();
    let meters: Vec<Arc<PartitionMeter>> = readers
        .iter()
        .map(|r| {
            let meter = metrics.partition(&r.origin(0), me);
            if let Some(end) = r.end_watch() {
                meter.follow_end(end);
            }
            meter
        })
        .collect();
    let mut builder = OperatorBuilder::new("Ingest".to_string(), scope);
    let info = builder.operator_info();
    let activator = scope.activator_for(Rc::clone(&info.address));
    // Readers that can say when records arrive wake the operator from their own threads.
    let waker = scope.worker().sync_activator_for(info.address.to_vec());
    let (dead_out, dead) = builder.new_output();
    let (late_out, late) = builder.new_output();
    let (beacon_out, beacons) = builder.new_output();
    let mut partial_outs = Vec::new();
    let mut partials = Vec::new();
    for _ in &config.nodes {
        let (out, stream) = builder.new_output();
        partial_outs.push(OutputBuilder::from(out));
        partials.push(stream);
    }
    let outputs = Outputs {
        dead: OutputBuilder::from(dead_out),
        late: OutputBuilder::from(late_out),
        beacon: OutputBuilder::from(beacon_out),
        partials: partial_outs,
    };
    let slot = Slot::register(INGEST_SLOT);

    builder.build(move |caps| {
        let mut parts: Vec<Partition> = readers
            .into_iter()
            .zip(meters)
            .map(|(mut reader, meter)| {
                if config.schema.as_ref().is_some_and(|s| s.uses_meta()) {
                    reader.keep_meta();
                }
                Partition::new(reader, meter)
            })
            .collect();
        let wake: crate::sources::Wake = Arc::new(move || {
            // Fails only when the worker has gone: nothing is left to wake.
            let _ = waker.activate();
        });
        // Every reader is asked (no short cut): any of them may have nothing to read.
        let mut woken = true;
        for p in parts.iter_mut() {
            woken &= p.reader.wake_on_arrival(Arc::clone(&wake));
        }
        let mut ingest = Ingest {
            me,
            g: Granularity::new(config.granularity_ms),
            agg: Aggregation::new(&config.nodes),
            tables: Tables::load(&config.lookups).unwrap_or_else(|e| panic!("{e}")),
            first: DeadLetterWatch::new(config.format),
            config,
            parts,
            counters,
            board,
            stop,
            commits,
            slot,
            activator,
            outputs,
            woken,
            batch: RecordBatch::default(),
            parsed: Vec::new(),
            barrier: Barrier::default(),
            next_part: 0,
            order: Vec::new(),
            announced: None,
            stride: 0,
            seen: Vec::new(),
            committing: None,
            periodic: acked.map(commits::Commits::new),
        };
        let mut caps = ingest.start(caps);
        move |_frontiers| {
            if let Some(held) = caps.as_mut() {
                if ingest.step(held) == Flow::Finished {
                    caps = None;
                }
            }
        }
    });
    (partials, dead, late, beacons)
}

/// Whether the ingest goes on after an activation, or has finished and drops its capabilities.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    Running,
    Finished,
}

/// What one activation read.
#[derive(Default)]
struct Read {
    out: Routed,
    /// A partition has more to read now.
    more: bool,
    /// A partition has nothing to read yet.
    pending: bool,
}

/// The ingest operator of one worker, activated by [`Ingest::step`].
struct Ingest {
    me: usize,
    config: IngestConfig,
    parts: Vec<Partition>,
    counters: Arc<Counters>,
    board: ProgressBoard,
    /// The job's stop request.
    stop: JobStop,
    /// Where the partitions that end leave their last positions to commit.
    commits: FinalCommits,
    slot: Option<Slot>,
    activator: Activator,
    outputs: Outputs,
    /// Every reader wakes the operator when records arrive.
    woken: bool,
    g: Granularity,
    batch: RecordBatch,
    parsed: Vec<Result<Event, String>>,
    agg: Aggregation,
    tables: Tables,
    barrier: Barrier,
    /// The partition read first in the next activation, among those of equal progress.
    next_part: usize,
    /// The partitions in the order one activation reads them (kept for its allocation).
    order: Vec<usize>,
    /// The progress last announced on the beacon stream.
    announced: Option<Option<i64>>,
    /// How far one read moved a partition's progress in the last activation that read.
    stride: i64,
    /// The live partitions as the watermark rules see them (reused every activation).
    seen: Vec<Seen>,
    /// Whether most of the first records are dead letters (an input in another format).
    first: DeadLetterWatch,
    /// The checkpoint epoch whose barrier this worker saved its positions at, and those
    /// positions (committed to the source once the checkpoint completes).
    committing: Option<(u64, Vec<Option<u64>>)>,
    /// Without checkpoints: positions committed as their results are acknowledged.
    periodic: Option<commits::Commits>,
}

/// Commits of the partitions' last positions, made by whoever runs the job once its results
/// are all written (a `run` once its workers are done, a cluster once every process's are),
/// never for a job that failed or was cancelled.
pub(crate) type FinalCommits = Arc<Mutex<Vec<FinalCommit>>>;

/// What the ingest shares with the run that opened it.
pub struct IngestShared {
    /// The job's record accounting.
    pub counters: Arc<Counters>,
    /// The job's stop request.
    pub stop: JobStop,
    /// Where the partitions that end leave their final commits.
    pub commits: FinalCommits,
    /// Commits positions while the job runs, as their results are acknowledged
    /// ([`commits`]); `None`: at checkpoints and at the end only.
    pub acked: Option<commits::Acked>,
}

/// One warning per process about mostly dead first records, however many workers see them.
static FIRST_RECORDS_WARNED: AtomicBool = AtomicBool::new(false);

fn warn_first_records(warning: Option<String>) {
    if let Some(w) = warning {
        if !FIRST_RECORDS_WARNED.swap(true, Ordering::Relaxed) {
            tracing::warn!("{w}");
        }
    }
}

/// Commits `positions` (one per partition; `None`: nothing read there) for the consumer group,
/// each client's partitions in one request.
fn commit_positions(parts: &[Partition], positions: Vec<Option<u64>>) {
    for (p, pos) in parts.iter().zip(positions) {
        if let Some(pos) = pos {
            p.reader.commit(pos);
        }
    }
    for p in parts {
        p.reader.flush_commits();
    }
}

impl Ingest {
    /// Restores a checkpoint's state, and says which capabilities the ingest holds: none
    /// without partitions (this worker must not hold the watermark back).
    fn start(&mut self, mut caps: Vec<Capability<u64>>) -> Option<Vec<Capability<u64>>> {
        if let Some(slot) = &self.slot {
            // Restored: each partition goes on with the progress it had (its reader was
            // opened at its position), and the capability at the checkpoint's epoch.
            // On another layout: every old worker's partitions, each found here by name.
            let restored = slot.restore_merged::<IngestState>(|mut a, b| {
                a.extend(b);
                a
            });
            if let Some(state) = restored {
                for p in self.parts.iter_mut() {
                    let name = p.reader.describe();
                    p.max_ts = state.iter().find(|s| s.name == name).and_then(|s| s.max_ts);
                }
            }
            if let Some(epoch) = slot.checkpointer().restored_epoch() {
                for c in caps.iter_mut() {
                    c.downgrade(&epoch);
                }
            }
            if self.parts.is_empty() {
                slot.save_standing(&IngestState::new());
            }
        }
        if self.parts.is_empty() {
            return None;
        }
        self.activator.activate();
        Some(caps)
    }

    /// One activation: the checkpoint barrier, the clock, alignment, the read, the watermark,
    /// and what goes out.
    fn step(&mut self, held: &mut [Capability<u64>]) -> Flow {
        let cap = *held[DEAD].time();
        if self.slot.is_none() && self.stop.requested() {
            // A graceful stop without checkpoints: the input ends here, as a bounded one
            // does, so every window is emitted and the sinks flushed (with checkpoints the
            // run stops at the next checkpoint instead: `runtime::stop`).
            for p in self.parts.iter_mut().filter(|p| !p.ended) {
                p.ended = true;
                p.meter.set_finished();
            }
        }
        let barrier = match self.at_barrier(cap) {
            Some(AtBarrier::Wait) => {
                let now = Instant::now();
                for p in self.parts.iter_mut() {
                    p.last_data = now; // waiting, not idle
                }
                self.activator
                    .activate_after(Duration::from_millis(BARRIER_POLL_MS));
                return Flow::Running;
            }
            Some(AtBarrier::Before(epoch)) => Some(epoch),
            None => None,
        };
        if barrier.is_some()
            && self
                .slot
                .as_ref()
                .is_some_and(|s| s.checkpointer().last_passed())
        {
            // Stopping, and the final checkpoint is taken: nothing more is read or sent, and
            // the capabilities stay at its barrier, so no window closes after it before the
            // workers drop the dataflow.
            return Flow::Running;
        }
        self.tables.refresh();
        if self.config.processing_time {
            self.follow_clock();
        }
        // The board changes only between activations (another operator of this worker fills
        // it), so one look serves both alignment and the watermark.
        let slowest = self.board.slowest_other(self.me);
        let shared = self.parts.iter().any(|p| p.turns.is_some());
        let ahead = watermark::ahead(self.announced, shared, slowest, self.g, self.stride);
        let mut read = if ahead {
            // Not read, so not idle.
            let now = Instant::now();
            for p in self.parts.iter_mut() {
                p.last_data = now;
            }
            Read::default()
        } else {
            self.read(cap, barrier)
        };
        self.next_part = (self.next_part + 1) % self.parts.len().max(1);
        self.counters.add(read.out.counts);

        let mut next = self.advance(cap, slowest, barrier);
        if let Some(b) = barrier.filter(|b| next.next < *b && self.quiet_stop()) {
            // Stopping, with nothing left to read: the data will not bring the barrier, so
            // the capability goes to it now (as idleness moves a watermark), and the final
            // checkpoint comes at once.
            next.next = b;
        }
        self.emit(held, cap, next, barrier, &mut read.out);
        self.commit_acknowledged(cap.max(next.next));
        if next.finished {
            self.finish(held);
            return Flow::Finished;
        }
        if self.announced != Some(next.mine) {
            self.outputs
                .beacon
                .activate()
                .session(&held[BEACON])
                .give((self.me, next.mine));
            self.announced = Some(next.mine);
        }
        if next.next > cap {
            for c in held.iter_mut() {
                c.downgrade(&next.next);
            }
        }
        self.reschedule(ahead, &read);
        Flow::Running
    }

    /// Checkpoints: at the barrier, saves the partitions' positions once and waits until the
    /// checkpoint completes (every worker's operators saved theirs). `None`: no checkpoints.
    fn at_barrier(&mut self, cap: u64) -> Option<AtBarrier> {
        let slot = self.slot.as_ref()?;
        let ck = slot.checkpointer();
        let (parts, g) = (&self.parts, self.g);
        let committing = &mut self.committing;
        let at = self.barrier.step(ck.as_ref(), cap, |epoch| {
            let hint = parts
                .iter()
                .filter(|p| !p.ended)
                .filter_map(|p| p.max_ts)
                .map(|m| g.floor(m))
                .min();
            ck.reached(hint);
            let state: IngestState = parts.iter().map(Partition::state).collect();
            *committing = Some((epoch, state.iter().map(|s| s.resume).collect()));
            slot.save(epoch, &state);
        });
        // The checkpoint is complete: the positions it covers are the group's committed
        // offsets (a restart from it, or a `start = "stored"` run, reads on from there).
        if let Some((epoch, positions)) = self.committing.take_if(|(e, _)| ck.epoch() > *e) {
            commit_positions(&self.parts, positions);
            tracing::debug!(
                "logflow: worker {} committed the offsets of checkpoint {epoch}",
                self.me
            );
        }
        Some(at)
    }

    /// Without checkpoints: samples the partitions' positions (every record read before them
    /// has a time at most `progress` or its partition's largest event time), and commits the
    /// latest whose results every sink has acknowledged.
    fn commit_acknowledged(&mut self, progress: u64) {
        let Some(periodic) = self.periodic.as_mut() else {
            return;
        };
        let parts = &self.parts;
        let reach = |p: &Partition| p.max_ts.map_or(progress, |m| progress.max(m.max(0) as u64));
        let furthest = parts.iter().map(reach).fold(progress, u64::max);
        let now = Instant::now();
        let reached = || {
            parts
                .iter()
                .map(|p| {
                    p.resume().map(|position| commits::Reached {
                        position,
                        progress: reach(p),
                    })
                })
                .collect()
        };
        periodic.sample(now, reached, furthest);
        if let Some(positions) = periodic.due(now) {
            commit_positions(&self.parts, positions);
        }
    }

    /// A graceful stop with checkpoints was requested (of this process, or of another one,
    /// which recorded it with the checkpoint) and no live partition has had data for
    /// [`STOP_QUIET`]: the input is caught up.
    fn quiet_stop(&self) -> bool {
        // Quiet first: looking for another process's request may list a directory.
        self.parts
            .iter()
            .filter(|p| !p.ended)
            .all(|p| p.last_data.elapsed() >= STOP_QUIET)
            && self
                .slot
                .as_ref()
                .is_some_and(|s| s.checkpointer().stop_requested())
    }

    /// Records carry the wall clock: the clock moves on whether or not records come.
    fn follow_clock(&mut self) {
        let (now_ms, now) = (crate::parse::text::now_ms(), Instant::now());
        for p in self
            .parts
            .iter_mut()
            .filter(|p| !p.ended && p.turns.is_none())
        {
            p.max_ts = p.max_ts.max(Some(now_ms));
            p.last_data = now;
        }
    }

    /// Reads every partition once (up to its share of the batch), the least progressed first
    /// (ties: a different one first each activation), skipping one too far ahead of those that
    /// had records ([`watermark::partition_ahead`]), and meters what each read.
    fn read(&mut self, cap: u64, barrier: Option<u64>) -> Read {
        let mut read = Read::default();
        // The most event time one partition moved on in this activation.
        let mut span: i64 = 0;
        let n = self.parts.len();
        let per_part = (self.config.batch / n.max(1)).max(1);
        let g = self.g;
        let floor = move |m: i64| g.floor(m);
        let stamp = Stamp {
            config: &self.config,
            floor: &floor,
            cap_time: cap,
            tables: &self.tables,
            barrier,
        };
        let mut order = std::mem::take(&mut self.order);
        order.clear();
        order.extend(0..n);
        let (parts, first) = (&self.parts, self.next_part);
        order.sort_by_key(|&i| (parts[i].progress(), (i + n - first) % n));
        // The least progress of the partitions that read records so far.
        let mut least: Option<i64> = None;
        for &i in &order {
            let Some(p) = self.parts.get_mut(i) else {
                continue;
            };
            if p.ended {
                continue;
            }
            // Waiting for the others, not idle; one held back only by alignment can read as
            // soon as they catch up.
            let held = p.held(&stamp);
            if held || watermark::partition_ahead(p.progress(), least, self.g) {
                p.last_data = Instant::now();
                read.more |= !held;
                continue;
            }
            let before = read.out.counts;
            let dead_before = read.out.dead.len();
            let was = p.max_ts;
            let result = match p.turns.clone() {
                None => p.read_own(
                    &stamp,
                    &mut self.batch,
                    &mut self.parsed,
                    per_part,
                    &mut self.agg,
                    &mut read.out,
                ),
                Some(t) => p.read_shared(&t, &stamp, per_part, &mut self.agg, &mut read.out),
            };
            match result {
                Ok(ReadStatus::Data) => {
                    read.more = true;
                    least = match (least, p.progress()) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                }
                Ok(ReadStatus::Pending) => read.pending = true,
                Ok(ReadStatus::Ended) => {}
                // A broken input is a runtime failure, not a finished partition: dropping
                // the capability would wrongly close every window. (Not a typed error yet:
                // timely drains a worker's dataflows after it stops, so holding the
                // capabilities would hang and dropping them would let the other workers
                // write windows without this partition's data.)
                Err(e) => panic!("reading {}: {e}", p.reader.describe()),
            }
            if let (Some(a), Some(b)) = (was, p.max_ts) {
                span = span.max(b.saturating_sub(a));
            }
            let c = read.out.counts.since(before);
            if !self.first.done() {
                let dead = read.out.dead.get(dead_before..).unwrap_or_default();
                warn_first_records(self.first.observe(
                    c.read,
                    dead.iter().map(|d| (d.reason.as_str(), d.raw.as_slice())),
                ));
            }
            p.meter.add(c.read, c.parsed, c.dead_letter, c.late);
            p.meter.set_max_event_time(p.progress());
            p.meter.set_position(p.reader.resume_point());
            if p.ended {
                p.meter.set_finished();
            }
        }
        self.order = order;
        if read.more {
            self.stride = span;
        }
        read
    }

    /// The new watermark, from the live partitions' progress and idleness (metered here).
    fn advance(&mut self, cap: u64, slowest: Option<i64>, barrier: Option<u64>) -> Advance {
        let now = Instant::now();
        self.seen.clear();
        for p in self.parts.iter().filter(|p| !p.ended) {
            let idle =
                watermark::is_idle(now.duration_since(p.last_data), self.config.idle_timeout);
            p.meter.set_idle(idle);
            self.seen.push(Seen {
                progress: p.progress(),
                idle,
            });
        }
        watermark::advance(&self.seen, cap, slowest, barrier, self.g)
    }

    /// Sends what the activation produced: the held partials when they are due, dead letters,
    /// and late events.
    fn emit(
        &mut self,
        held: &[Capability<u64>],
        cap: u64,
        next: Advance,
        barrier: Option<u64>,
        out: &mut Routed,
    ) {
        // Held partials go out before the capability moves past what they need (a window
        // they feed closes, or their own time) or goes, before a checkpoint barrier (the
        // positions saved there include their records), and when they are many (bounding
        // memory). Otherwise they stay: a read of a Kafka queue is a few thousand records,
        // and each flush sends every (window, key) gathered since the last one.
        let moving =
            next.next > cap && (self.agg.due(next.next) || barrier.is_some_and(|b| next.next >= b));
        if next.finished || moving || self.agg.held >= self.config.batch {
            self.agg.flush(cap);
        }
        let mut partial_hs: Vec<_> = self
            .outputs
            .partials
            .iter_mut()
            .map(|o| o.activate())
            .collect();
        for (time, i, mut list) in self.agg.ready.drain(..) {
            partial_hs[i]
                .session(&held[PARTIALS + i].delayed(&time))
                .give_container(&mut list);
        }
        drop(partial_hs);
        if !out.dead.is_empty() {
            self.outputs
                .dead
                .activate()
                .session(&held[DEAD])
                .give_container(&mut out.dead);
        }
        if !out.late.is_empty() {
            let mut late_h = self.outputs.late.activate();
            for (t, le) in out.late.drain(..) {
                // At the event's own time, like partials: downstream counts of late
                // data (late_alerts) then do not depend on how reads were batched.
                late_h.session(&held[LATE].delayed(&t)).give(le);
            }
        }
    }

    /// Every partition has ended.
    fn finish(&mut self, held: &[Capability<u64>]) {
        // Hold no other worker back (neither its alignment nor, when all its partitions are
        // idle, the progress it follows) with the last progress announced.
        if self.announced != Some(None) {
            self.outputs
                .beacon
                .activate()
                .session(&held[BEACON])
                .give((self.me, None));
        }
        if let Ok(mut c) = self.commits.lock() {
            c.extend(self.parts.iter().filter_map(|p| p.reader.final_commit()));
        }
        if let Some(slot) = &self.slot {
            // Every later checkpoint holds the partitions where they ended.
            let state: IngestState = self.parts.iter().map(Partition::state).collect();
            slot.save_standing(&state);
        }
        // Says when the final flush can begin (the last worker to end starts it); the
        // recovery tests time a broker outage on it.
        warn_first_records(self.first.finish());
        tracing::info!("logflow: worker {} reached the end of its input", self.me);
    }

    /// When to look again.
    fn reschedule(&self, ahead: bool, read: &Read) {
        if ahead {
            // Until the slowest announces progress (or, at the latest, the timer).
            let again = self.activator.clone();
            self.board
                .wake_on_change(Box::new(move || again.activate()));
            self.activator
                .activate_after(Duration::from_millis(ALIGN_WAIT_MS));
        } else if read.more {
            self.activator.activate();
        } else if read.pending {
            // Readers that wake the operator are looked at again anyway now and then: for
            // idleness, the clock, and an end offset set while they wait.
            let wait = if self.woken && !self.config.processing_time {
                WOKEN_POLL_MS
            } else {
                PENDING_POLL_MS
            };
            self.activator.activate_after(Duration::from_millis(wait));
        } else {
            self.activator.activate();
        }
    }
}
