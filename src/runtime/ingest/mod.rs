//! The ingest operator: reads this worker's source partitions, parses records, tracks event-time
//! progress per partition, and holds the capability that IS the watermark.
//!
//! Event-time semantics (DESIGN.md section 3), made deterministic:
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

mod aggregation;
mod board;
mod partition;

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::Capability;
use timely::dataflow::{Scope, StreamVec};

use self::aggregation::Aggregation;
pub use self::board::ProgressBoard;
use self::partition::{Partition, Routed, Stamp};
use super::accounting::Counters;
use crate::checkpoint::barrier::Slot;
use crate::metrics::{Metrics, PartitionMeter};
use crate::operators::lookup::{LookupPlan, Tables};
use crate::operators::pre_aggregate::Partial;
use crate::operators::window::Windows;
use crate::parse::Format;
use crate::record::Event;
use crate::record::{DeadLetter, LateEvent};
use crate::sources::{PartitionReader, ReadStatus, RecordBatch};
use crate::spec::plan::AggNode;
use crate::Error;

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
    pub granularity_ms: i64,
    pub idle_timeout: Duration,
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

/// A partition's place in a checkpoint: where to read on, and the progress it had reached.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PartitionState {
    /// [`PartitionReader::describe`].
    pub name: String,
    /// The position of the next record ([`PartitionReader::resume_point`]).
    pub resume: Option<u64>,
    /// The largest event time read.
    pub max_ts: Option<i64>,
}

/// The ingest operator's state in a checkpoint.
pub type IngestState = Vec<PartitionState>;

/// The slot kind of the ingest operator in checkpoints.
pub const INGEST_SLOT: &str = "Ingest";

/// The positions to open partitions at, from the ingest states of a restored checkpoint.
pub fn resume_points(states: &[&[u8]]) -> Result<HashMap<String, u64>, Error> {
    let mut points = HashMap::new();
    for bytes in states {
        let state: IngestState = bincode::deserialize(bytes)
            .map_err(|e| Error::Runtime(format!("checkpoint: source positions: {e}")))?;
        for p in state {
            if let Some(r) = p.resume {
                points.insert(p.name, r);
            }
        }
    }
    Ok(points)
}

/// How far (in progress steps, the granularity) a worker may read ahead of the slowest active
/// worker, beyond what one of its reads moves a partition on; and how long it then waits at
/// most (the next progress announced wakes it sooner).
const ALIGN_STEPS: i64 = 2;
const ALIGN_WAIT_MS: u64 = 50;
/// How often an ingest whose partitions have nothing to read looks again; when every reader
/// wakes it as records arrive ([`PartitionReader::wake_on_arrival`]), the longer period.
const PENDING_POLL_MS: u64 = 20;
const WOKEN_POLL_MS: u64 = 100;
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
    counters: Arc<Counters>,
    metrics: &Metrics,
    board: ProgressBoard,
) -> Ingested<'scope> {
    let me = scope.index();
    let meters: Vec<Arc<PartitionMeter>> = readers
        .iter()
        .map(|r| metrics.partition(&r.origin(0), me))
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
        partial_outs.push(OutputBuilder::<u64, _>::from(out));
        partials.push(stream);
    }
    let mut dead_out: OutputBuilder<u64, _> = OutputBuilder::from(dead_out);
    let mut late_out: OutputBuilder<u64, _> = OutputBuilder::from(late_out);
    let mut beacon_out: OutputBuilder<u64, _> = OutputBuilder::from(beacon_out);
    let slot = Slot::register(INGEST_SLOT);

    builder.build(move |mut caps| {
        let mut parts: Vec<Partition> = readers
            .into_iter()
            .zip(meters)
            .map(|(reader, meter)| Partition::new(reader, meter))
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
        if let Some(slot) = &slot {
            // Restored: each partition goes on with the progress it had (its reader was
            // opened at its position), and the capability at the checkpoint's epoch.
            if let Some(state) = slot.restore::<IngestState>() {
                for p in parts.iter_mut() {
                    let name = p.reader.describe();
                    p.max_ts = state.iter().find(|s| s.name == name).and_then(|s| s.max_ts);
                }
            }
            if let Some(epoch) = slot.checkpointer().restored_epoch() {
                for c in caps.iter_mut() {
                    c.downgrade(&epoch);
                }
            }
            if parts.is_empty() {
                slot.save_standing(&IngestState::new());
            }
        }
        // No partitions: this worker must not hold the watermark back.
        let mut caps: Option<Vec<Capability<u64>>> =
            if parts.is_empty() { None } else { Some(caps) };
        if caps.is_some() {
            activator.activate();
        }
        let g = config.granularity_ms.max(1);
        let floor = move |m: i64| m - m.rem_euclid(g);
        let mut batch = RecordBatch::default();
        let mut parsed: Vec<Result<Event, String>> = Vec::new();
        let mut agg = Aggregation::new(&config.nodes);
        let mut next_part = 0usize;
        let mut announced: Option<Option<i64>> = None;
        // How far one read moved a partition's progress in the last activation that read.
        let mut stride: i64 = 0;
        let mut tables = Tables::load(&config.lookups).unwrap_or_else(|e| panic!("{e}"));
        // The barrier this worker's state was last saved at.
        let mut saved_at: Option<u64> = None;

        move |_frontiers| {
            let Some(held) = caps.as_mut() else { return };
            let cap_time = *held[DEAD].time();
            // Checkpoints: at the barrier, save the partitions' positions once and wait until
            // the checkpoint completes (every worker's operators saved theirs).
            let barrier = match &slot {
                None => None,
                Some(slot) => {
                    let ck = slot.checkpointer();
                    let epoch = ck.epoch();
                    if cap_time >= epoch {
                        if saved_at != Some(epoch) {
                            saved_at = Some(epoch);
                            let hint = parts
                                .iter()
                                .filter(|p| !p.ended)
                                .filter_map(|p| p.max_ts)
                                .map(floor)
                                .min();
                            ck.reached(hint);
                            let state: IngestState = parts.iter().map(Partition::state).collect();
                            slot.save(epoch, &state);
                        }
                        if !ck.passed(epoch) {
                            let now = Instant::now();
                            for p in parts.iter_mut() {
                                p.last_data = now; // waiting, not idle
                            }
                            activator.activate_after(Duration::from_millis(BARRIER_POLL_MS));
                            return;
                        }
                    }
                    Some(ck.epoch())
                }
            };
            tables.refresh();
            if config.processing_time {
                // The clock moves on whether or not records come.
                let (now_ms, now) = (crate::parse::text::now_ms(), Instant::now());
                for p in parts.iter_mut().filter(|p| !p.ended && p.turns.is_none()) {
                    p.max_ts = p.max_ts.max(Some(now_ms));
                    p.last_data = now;
                }
            }
            // Alignment: a worker more than `ALIGN_STEPS` progress steps ahead of the slowest
            // active worker, plus the stride of one read, reads nothing now. Reading on would
            // not close a window sooner (the job's watermark is the least progress) but would
            // open later windows downstream, whose state then grows with the gap (in a catch-up
            // from Kafka, one worker's partitions can run minutes of event time ahead). The
            // stride (one read of a Kafka backlog covers minutes of event time) lets workers
            // that move alike read at the same time instead of in turns. Shared partitions move
            // together.
            let ahead = match announced {
                Some(Some(mine)) if parts.iter().all(|p| p.turns.is_none()) => {
                    board.slowest_other(me).is_some_and(|slowest| {
                        mine > slowest
                            .saturating_add(ALIGN_STEPS * g)
                            .saturating_add(stride)
                    })
                }
                _ => false,
            };
            if ahead {
                // Not read, so not idle.
                let now = Instant::now();
                for p in parts.iter_mut() {
                    p.last_data = now;
                }
            }
            let mut out = Routed::default();
            let mut more = false;
            let mut pending = false;
            // The most event time one partition moved on in this activation.
            let mut span: i64 = 0;
            let n = if ahead { 0 } else { parts.len() };
            let per_part = (config.batch / n.max(1)).max(1);
            let stamp = Stamp {
                config: &config,
                floor: &floor,
                cap_time,
                tables: &tables,
                barrier,
            };
            for k in 0..n {
                let p = &mut parts[(next_part + k) % n];
                if p.ended {
                    continue;
                }
                if p.held(&stamp) {
                    p.last_data = Instant::now(); // waiting for the others, not idle
                    continue;
                }
                let before = out.counts;
                let was = p.max_ts;
                let result = match p.turns.clone() {
                    None => p.read_own(
                        &stamp,
                        &mut batch,
                        &mut parsed,
                        per_part,
                        &mut agg,
                        &mut out,
                    ),
                    Some(t) => p.read_shared(&t, &stamp, per_part, &mut agg, &mut out),
                };
                match result {
                    Ok(ReadStatus::Data) => more = true,
                    Ok(ReadStatus::Pending) => pending = true,
                    Ok(ReadStatus::Ended) => {}
                    // A broken input is a runtime failure, not a finished partition: dropping
                    // the capability would wrongly close every window.
                    Err(e) => panic!("reading {}: {e}", p.reader.describe()),
                }
                if let (Some(a), Some(b)) = (was, p.max_ts) {
                    span = span.max(b.saturating_sub(a));
                }
                let c = out.counts.since(before);
                p.meter.add(c.read, c.parsed, c.dead_letter, c.late);
                p.meter.set_max_event_time(p.progress());
                if p.ended {
                    p.meter.set_finished();
                }
            }
            if more {
                stride = span;
            }
            next_part = (next_part + 1) % parts.len().max(1);
            counters.add(out.counts);

            // The new watermark: least progress over live partitions that are not idle
            // (`None`: every partition has ended, and the capabilities go).
            let now = Instant::now();
            for p in parts.iter().filter(|p| !p.ended) {
                p.meter
                    .set_idle(now.duration_since(p.last_data) >= config.idle_timeout);
            }
            let live: Vec<&Partition> = parts.iter().filter(|p| !p.ended).collect();
            let active: Vec<&&Partition> = live
                .iter()
                .filter(|p| now.duration_since(p.last_data) < config.idle_timeout)
                .collect();
            let mine: Option<i64> = if active.is_empty() {
                None
            } else if active.iter().any(|p| p.progress().is_none()) {
                Some(cap_time as i64) // a partition that has not produced yet holds the watermark
            } else {
                active.iter().filter_map(|p| p.progress()).min()
            };
            let next = match mine {
                Some(p) => Some(p),
                None => {
                    // All idle: follow the active workers; if there are none, the furthest
                    // event time seen here (nothing else can move the job forward).
                    let others = board.slowest_other(me);
                    others.or_else(|| live.iter().filter_map(|p| p.progress()).max())
                }
            };
            let new_time = next.map_or(cap_time, |m| (floor(m).max(0) as u64).max(cap_time));
            // Not past a pending checkpoint barrier.
            let new_time = barrier.map_or(new_time, |b| new_time.min(b));

            // Held partials go out before the capability moves past what they need (a window
            // they feed closes, or their own time) or goes, before a checkpoint barrier (the
            // positions saved there include their records), and when they are many (bounding
            // memory). Otherwise they stay: a read of a Kafka queue is a few thousand records,
            // and each flush sends every (window, key) gathered since the last one.
            let moving = new_time > cap_time
                && (agg.due(new_time) || barrier.is_some_and(|b| new_time >= b));
            if live.is_empty() || moving || agg.held >= config.batch {
                agg.flush(cap_time);
            }
            let mut partial_hs: Vec<_> = partial_outs.iter_mut().map(|o| o.activate()).collect();
            for (time, i, mut list) in agg.ready.drain(..) {
                partial_hs[i]
                    .session(&held[PARTIALS + i].delayed(&time))
                    .give_container(&mut list);
            }
            drop(partial_hs);
            if !out.dead.is_empty() {
                dead_out
                    .activate()
                    .session(&held[DEAD])
                    .give_container(&mut out.dead);
            }
            if !out.late.is_empty() {
                let mut late_h = late_out.activate();
                for (t, le) in out.late.drain(..) {
                    // At the event's own time, like partials: downstream counts of late
                    // data (late_alerts) then do not depend on how reads were batched.
                    late_h.session(&held[LATE].delayed(&t)).give(le);
                }
            }
            if live.is_empty() {
                // Finished: hold no other worker back (neither its alignment nor, when all its
                // partitions are idle, the progress it follows) with the last progress announced.
                if announced != Some(None) {
                    beacon_out
                        .activate()
                        .session(&held[BEACON])
                        .give((me, None));
                }
                if let Some(slot) = &slot {
                    // Every later checkpoint holds the partitions where they ended.
                    let state: IngestState = parts.iter().map(Partition::state).collect();
                    slot.save_standing(&state);
                }
                // Says when the final flush can begin (the last worker to end starts it); the
                // recovery tests time a broker outage on it.
                eprintln!("logflow: worker {me} reached the end of its input");
                caps = None;
                return;
            }
            if announced != Some(mine) {
                beacon_out
                    .activate()
                    .session(&held[BEACON])
                    .give((me, mine));
                announced = Some(mine);
            }
            if new_time > cap_time {
                for c in held.iter_mut() {
                    c.downgrade(&new_time);
                }
            }
            if ahead {
                // Until the slowest announces progress (or, at the latest, the timer).
                let again = activator.clone();
                board.wake_on_change(Box::new(move || again.activate()));
                activator.activate_after(Duration::from_millis(ALIGN_WAIT_MS));
            } else if more {
                activator.activate();
            } else if pending {
                // Readers that wake the operator are looked at again anyway now and then: for
                // idleness, the clock, and an end offset set while they wait.
                let wait = if woken && !config.processing_time {
                    WOKEN_POLL_MS
                } else {
                    PENDING_POLL_MS
                };
                activator.activate_after(Duration::from_millis(wait));
            } else {
                activator.activate();
            }
        }
    });
    (partials, dead, late, beacons)
}
