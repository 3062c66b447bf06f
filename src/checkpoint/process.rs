//! A process's side of a job's checkpoints: the directory (locked for the run), the checkpoint
//! restored at start, the manifest every checkpoint ends with, and where the next barrier goes.
//! The workers' side, the barrier itself, is [`super::barrier`].

use std::cell::RefCell;
use std::hash::BuildHasher;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use super::barrier::{Checkpointer, Start};
use super::codec;
use super::evolve::{self, Changes, StateRecord};
use super::groups::{KeyRoute, DEFAULT_KEY_GROUPS};
use super::store::Store;
use crate::spec::plan::JobPlan;
use crate::Error;

/// What a manifest holds besides the worker count.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The job's dataflow (its plan and the names of its stateful operators): a checkpoint is
    /// restored only into the same dataflow.
    pub fingerprint: u64,
    /// The epoch of the next checkpoint.
    pub next: u64,
    /// The event-time distance chosen for `next`.
    pub step: u64,
    /// Wall clock (ms since the Unix epoch) when this checkpoint completed.
    pub at_ms: u64,
    /// The job was asked to stop: every worker stops after this checkpoint (decided once,
    /// here, so that processes asked at different times stop at the same one).
    pub last: bool,
    /// The job's key groups (`None`: a checkpoint of a logflow before key groups, whose state
    /// was routed by worker and is restored only on the same layout).
    pub key_groups: Option<u32>,
    /// Processes of the run that took it (`0`: not recorded), for listings.
    pub processes: u32,
    /// A savepoint: kept until removed, whatever `keep` says.
    pub savepoint: bool,
    /// What each analysis's state depends on, and each slot's owners (`None`: a checkpoint of
    /// a logflow before spec changes were allowed, restored only into the same plan).
    pub state: Option<StateRecord>,
}

/// A manifest as written before the state's analyses were recorded in it.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct ManifestV3 {
    fingerprint: u64,
    next: u64,
    step: u64,
    at_ms: u64,
    last: bool,
    key_groups: Option<u32>,
    processes: u32,
    savepoint: bool,
}

/// A manifest as written before key groups were recorded in it.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct ManifestV2 {
    fingerprint: u64,
    next: u64,
    step: u64,
    at_ms: u64,
    last: bool,
}

/// A manifest as written before stop requests were recorded in it.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct ManifestV1 {
    fingerprint: u64,
    next: u64,
    step: u64,
    at_ms: u64,
}

impl Manifest {
    /// Decodes a manifest, of this version or of an earlier one (a checkpoint taken by an
    /// older logflow is restored too). Each version's encoding is a prefix of the next one's,
    /// and a decode must use every byte, so a manifest decodes as one version only.
    pub fn decode(bytes: &[u8]) -> Result<Manifest, String> {
        let old = |fingerprint, next, step, at_ms, last| Manifest {
            fingerprint,
            next,
            step,
            at_ms,
            last,
            key_groups: None,
            processes: 0,
            savepoint: false,
            state: None,
        };
        codec::decode(bytes).or_else(|e| {
            if let Ok(m) = codec::decode::<ManifestV3>(bytes) {
                return Ok(Manifest {
                    key_groups: m.key_groups,
                    processes: m.processes,
                    savepoint: m.savepoint,
                    ..old(m.fingerprint, m.next, m.step, m.at_ms, m.last)
                });
            }
            if let Ok(m) = codec::decode::<ManifestV2>(bytes) {
                return Ok(old(m.fingerprint, m.next, m.step, m.at_ms, m.last));
            }
            let m: ManifestV1 = codec::decode(bytes).map_err(|_| e)?;
            Ok(old(m.fingerprint, m.next, m.step, m.at_ms, false))
        })
    }
}

/// One worker's part: the state of each stateful operator, by slot name.
pub type Part = Vec<(String, Vec<u8>)>;

/// A checkpoint as `logflow checkpoints` lists it.
pub struct Summary {
    pub epoch: u64,
    /// Its manifest and every worker's part, or why it is not a good checkpoint.
    pub read: Result<(Manifest, Vec<Part>), String>,
    /// Its files' size on disk.
    pub bytes: u64,
    pub savepoint: bool,
}

/// The checkpoints in `dir`, newest first (nothing is created or removed).
pub fn list(dir: &std::path::Path) -> Result<Vec<Summary>, Error> {
    let store = Store::existing(dir)?;
    Ok(store
        .list()?
        .into_iter()
        .map(|l| Summary {
            epoch: l.epoch,
            read: l.read.and_then(|(manifest, parts)| {
                let m = Manifest::decode(&manifest).map_err(|e| format!("manifest: {e}"))?;
                let parts = parts
                    .iter()
                    .map(|p| codec::decode::<Part>(p))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("part: {e}"))?;
                Ok((m, parts))
            }),
            bytes: l.bytes,
            savepoint: l.savepoint,
        })
        .collect())
}

pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `n` things in words, for the messages and listings that name a layout: `1 worker`,
/// `4 workers`.
pub fn counted(n: usize, one: &str, many: &str) -> String {
    match n {
        1 => format!("1 {one}"),
        n => format!("{n} {many}"),
    }
}

pub(super) fn stable_hash(text: &str) -> u64 {
    // Fixed seed: every process of a job, and every later run, must agree.
    foldhash::fast::FixedState::with_seed(0x636b_7074_6c66_6c77).hash_one(text)
}

/// A dataflow's fingerprint before key groups: its plan, worker count and the names of its
/// slots (restored only on the same layout).
pub(super) fn fingerprint(plan_hash: u64, workers: usize, names: &[String]) -> u64 {
    stable_hash(&format!("{plan_hash}|{workers}|{}", names.join(",")))
}

/// A dataflow's fingerprint: its plan, key groups and the names of its slots (any layout).
pub(super) fn grouped_fingerprint(plan_hash: u64, key_groups: u32, names: &[String]) -> u64 {
    stable_hash(&format!(
        "{plan_hash}|groups {key_groups}|{}",
        names.join(",")
    ))
}

/// The next multiple of `g` at or above `t`.
pub(super) fn round_up(t: u64, g: u64) -> u64 {
    t.div_ceil(g).saturating_mul(g)
}

/// The event-time distance to the next epoch: the last one scaled by how far the last
/// checkpoint interval was from the target (`None`: not measured), changing at most 4x per
/// checkpoint so one burst does not swing it, and never below the granularity.
pub fn next_step(step: u64, elapsed_ms: Option<u64>, interval_ms: u64, g: u64) -> u64 {
    let scaled = match elapsed_ms {
        Some(e) if e > 0 => {
            let want = step as f64 * interval_ms as f64 / e as f64;
            want.clamp(step as f64 / 4.0, step as f64 * 4.0) as u64
        }
        _ => step,
    };
    round_up(scaled.max(g), g)
}

/// Called once per completed checkpoint with its epoch and the time from the first local
/// barrier to the end.
pub type OnCompleted = Box<dyn Fn(u64, Duration) + Send + Sync>;

/// Whether this process's share of the job was asked to stop.
pub type StopAsked = Box<dyn Fn() -> bool + Send + Sync>;

/// How often a worker looks for another process's stop request (a directory listing).
const PEER_STOP_POLL: Duration = Duration::from_millis(200);

/// A process's view of a job's checkpoints: the directory, the checkpoint restored at start,
/// and what its workers share.
pub struct Checkpoints {
    pub(super) store: Store,
    pub(super) workers: usize,
    /// Processes of this run (recorded in manifests, for listings).
    pub(super) processes: usize,
    /// The job's key groups: the restored checkpoint's, else the spec's.
    pub(super) key_groups: u32,
    /// The restored checkpoint predates key groups: keyed state is routed as it was then
    /// (by worker), and the layout is the same (checked when opened).
    pub(super) legacy: bool,
    /// The restored checkpoint was taken with another number of workers: its keyed state is
    /// split by key group on restore.
    pub(super) rescaled: bool,
    pub(super) keep: usize,
    pub(super) interval_ms: u64,
    pub(super) granularity: u64,
    pub(super) plan_hash: u64,
    /// What the job reads, and what each analysis's state depends on (recorded in manifests).
    pub(super) source: String,
    pub(super) analyses: Vec<evolve::AnalysisDef>,
    /// Slots are named by the analyses they hold (`<analyses>:<kind>`); `false` when the
    /// restored checkpoint predates that (its slots are `<index>:<kind>`, the plan the same).
    pub(super) named: bool,
    /// Analyses added and removed since the restored checkpoint.
    pub(super) changes: Changes,
    pub(super) restored: Option<(u64, Manifest, Vec<Part>)>,
    /// Told how long each completed checkpoint took (the runtime records it as a metric).
    on_completed: OnCompleted,
    /// (epoch, when a local ingest first reached it), for the duration metric.
    started: Mutex<(u64, Option<Instant>)>,
    /// Process 0's lock on the directory, held for the run (see [`Checkpoints::open`]).
    _lock: Option<Flock<std::fs::File>>,
    /// The last epoch this process reported complete.
    reported: Mutex<u64>,
    /// Whether this process's share of the job was asked to stop.
    stop_asked: StopAsked,
    /// A checkpoint whose manifest says it is the last completed: the workers stop.
    last_passed: AtomicBool,
    /// The last checkpoint (a stop's) is a savepoint, kept until removed (`--savepoint`, or
    /// a cluster's `logflow savepoint JOB` once the job runs).
    savepoint: AtomicBool,
    /// (epoch, when last looked, found): another process's stop request for the pending
    /// checkpoint, looked for at most every [`PEER_STOP_POLL`].
    peer_stop: Mutex<(u64, Option<Instant>, bool)>,
    /// When this process last looked for a final checkpoint itself ([`Checkpoints::poll_last`]).
    last_polled: Mutex<Option<Instant>>,
}

impl Checkpoints {
    /// Opens the job's checkpoint directory (`None` when the job keeps no checkpoints) and
    /// loads the newest good checkpoint, naming every newer one skipped. `leader` (process 0)
    /// removes those, before any worker can write a part of the same epochs again.
    pub fn open(
        plan: &JobPlan,
        processes: usize,
        workers: usize,
        leader: bool,
        on_completed: OnCompleted,
        stop_asked: StopAsked,
    ) -> Result<Option<Arc<Checkpoints>>, Error> {
        let Some(c) = &plan.checkpoint else {
            return Ok(None);
        };
        let store = Store::open(&c.dir)?;
        // One run of a job per checkpoint directory: a second one (a job started twice, or a
        // process of an earlier run still alive) would write the same epochs and files.
        let lock = if leader {
            let path = store.dir().join("LOCK");
            let f = crate::sandbox::create(&path, false).map_err(|e| Error::io(&path, e))?;
            match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => Some(lock),
                Err((_, Errno::EWOULDBLOCK)) => {
                    return Err(Error::Checkpoint(format!(
                        "another run of this job is using the checkpoint directory {}",
                        c.dir
                    )))
                }
                Err((_, e)) => return Err(Error::io(&path, std::io::Error::from(e))),
            }
        } else {
            None
        };
        let loaded = store.latest()?;
        let mut restored = None;
        let mut kept = None;
        let source = evolve::source_of(plan);
        let analyses = evolve::analyses_of(plan);
        let mut changes = Changes::default();
        let mut named = true;
        if let Some(l) = loaded {
            for s in &l.skipped {
                tracing::warn!("logflow: {s}");
            }
            let manifest = Manifest::decode(&l.manifest).map_err(|e| {
                Error::Checkpoint(format!(
                    "checkpoint {} in {}: manifest: {e}",
                    l.epoch, c.dir
                ))
            })?;
            match (manifest.key_groups, c.key_groups) {
                (Some(have), Some(want)) if have != want => {
                    return Err(Error::Usage(format!(
                        "the checkpoint in {} has {have} key groups, the spec sets \
                         checkpoint.key_groups = {want}: a job's key groups are fixed once it \
                         has checkpoints (set {have} or remove the setting, or use another \
                         checkpoint directory)",
                        c.dir
                    )));
                }
                (None, _) if l.parts.len() != workers => {
                    return Err(Error::Usage(format!(
                        "the checkpoint in {} was taken with {} workers, this run has {workers}, \
                         and it predates key groups (its state is split by worker): run with \
                         the same layout, or use another checkpoint directory",
                        c.dir,
                        l.parts.len()
                    )));
                }
                _ => {}
            }
            match &manifest.state {
                Some(st) => {
                    changes = evolve::compare(&st.source, &st.analyses, &source, &analyses)
                        .map_err(|e| e.context(&format!("checkpoint {} in {}", l.epoch, c.dir)))?;
                }
                None => named = false,
            }
            let parts = l
                .parts
                .iter()
                .map(|p| codec::decode::<Part>(p))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| {
                    Error::Checkpoint(format!("checkpoint {} in {}: part: {e}", l.epoch, c.dir))
                })?;
            tracing::info!(
                "logflow: restoring checkpoint {} from {} (taken {:.1}s ago)",
                l.epoch,
                c.dir,
                now_ms().saturating_sub(manifest.at_ms) as f64 / 1000.0
            );
            if l.parts.len() != workers {
                tracing::info!(
                    "logflow: rescaling checkpoint {} from {} to {}: each worker takes the \
                     state of the key groups it owns now ({} groups)",
                    l.epoch,
                    counted(l.parts.len(), "worker", "workers"),
                    counted(workers, "worker", "workers"),
                    manifest.key_groups.unwrap_or_default()
                );
            }
            if leader {
                for a in &changes.added {
                    tracing::info!("logflow: analysis {a} is new: starts empty");
                }
                for a in &changes.removed {
                    tracing::info!(
                        "logflow: analysis {a} was removed: its state in checkpoint {} is dropped",
                        l.epoch
                    );
                }
            }
            kept = Some(l.epoch);
            restored = Some((l.epoch, manifest, parts));
        } else if c.restore {
            return Err(Error::Usage(format!(
                "--from-checkpoint {}: no checkpoint there to continue from",
                c.dir
            )));
        } else {
            tracing::info!("logflow: no checkpoint in {} yet: starting afresh", c.dir);
        }
        if leader {
            for e in store.discard_after(kept)? {
                tracing::warn!("logflow: removed unfinished or damaged checkpoint {e}");
            }
        }
        let plan_hash = stable_hash(&format!(
            "{}|{:?}|{:?}|{:?}",
            plan.name, plan.nodes, plan.analyses, plan.extras
        ));
        let (key_groups, legacy, rescaled) = match &restored {
            Some((_, m, parts)) => (
                m.key_groups
                    .unwrap_or(c.key_groups.unwrap_or(DEFAULT_KEY_GROUPS)),
                m.key_groups.is_none(),
                parts.len() != workers,
            ),
            None => (c.key_groups.unwrap_or(DEFAULT_KEY_GROUPS), false, false),
        };
        Ok(Some(Arc::new(Checkpoints {
            store,
            workers,
            processes,
            key_groups,
            legacy,
            rescaled,
            keep: c.keep,
            interval_ms: c.interval_ms.max(1) as u64,
            granularity: plan.granularity_ms.max(1) as u64,
            plan_hash,
            source,
            analyses,
            named,
            changes,
            restored,
            on_completed,
            started: Mutex::new((0, None)),
            reported: Mutex::new(0),
            _lock: lock,
            stop_asked,
            last_passed: AtomicBool::new(false),
            savepoint: AtomicBool::new(c.savepoint),
            peer_stop: Mutex::new((0, None, false)),
            last_polled: Mutex::new(None),
        })))
    }

    /// Whether the checkpoint a stop ends with is a savepoint.
    pub(super) fn savepoint(&self) -> bool {
        self.savepoint.load(Ordering::SeqCst)
    }

    /// The checkpoint directory.
    pub fn dir(&self) -> &std::path::Path {
        self.store.dir()
    }

    /// The checkpoint the job's stop ends with is to be a savepoint (asked before the stop).
    pub fn keep_savepoint(&self) {
        self.savepoint.store(true, Ordering::SeqCst);
    }

    /// Whether this process's share of the job was asked to stop.
    pub(super) fn stop_asked(&self) -> bool {
        (self.stop_asked)()
    }

    /// The checkpoint whose manifest says the job stops after it completed.
    pub fn last_passed(&self) -> bool {
        self.last_passed.load(Ordering::SeqCst)
    }

    pub(super) fn set_last_passed(&self) {
        self.last_passed.store(true, Ordering::SeqCst);
    }

    /// Whether the job's final checkpoint completed, looking at the newest manifest in the
    /// directory (at most every [`PEER_STOP_POLL`]). Workers learn it as their operators pass
    /// the barrier; a process whose operators wait on progress from another one that already
    /// dropped the dataflow (one without partitions, as in a file input read by process 0)
    /// would never pass it, so the runners ask here too.
    pub fn poll_last(&self) -> bool {
        if self.last_passed() {
            return true;
        }
        {
            let Ok(mut at) = self.last_polled.lock() else {
                return false;
            };
            if at.is_some_and(|t| t.elapsed() < PEER_STOP_POLL) {
                return false;
            }
            *at = Some(Instant::now());
        }
        // Only a checkpoint of this run: the one restored may be the last of the run before.
        let after = self.restored_epoch().unwrap_or(0);
        let last = match self.store.newest_manifest(after) {
            Ok(Some(bytes)) => Manifest::decode(&bytes).is_ok_and(|m| m.last),
            _ => false,
        };
        if last {
            self.set_last_passed();
        }
        last
    }

    /// Whether some worker (of any process) recorded a stop request for checkpoint `epoch`:
    /// a process not asked itself then takes the barrier as reached once its input is quiet,
    /// as an asked one does.
    pub fn stop_requested_anywhere(&self, epoch: u64) -> bool {
        if self.stop_asked() {
            return true;
        }
        let Ok(mut p) = self.peer_stop.lock() else {
            return false;
        };
        if p.0 != epoch {
            *p = (epoch, None, false);
        }
        if !p.2 && p.1.is_none_or(|t| t.elapsed() >= PEER_STOP_POLL) {
            p.1 = Some(Instant::now());
            p.2 = self.store.stop_requested(epoch);
        }
        p.2
    }

    /// The worker count of a restored checkpoint taken with another number of workers.
    pub fn rescaled_from(&self) -> Option<usize> {
        match &self.restored {
            Some((_, _, parts)) if self.rescaled => Some(parts.len()),
            _ => None,
        }
    }

    /// The slots of the restored checkpoint, with their owners (a checkpoint that records
    /// them).
    pub(super) fn restored_slots(&self) -> &[evolve::SlotDef] {
        match &self.restored {
            Some((_, m, _)) => m.state.as_ref().map_or(&[][..], |s| &s.slots[..]),
            None => &[],
        }
    }

    /// The key groups of the job's checkpoints (the restored one's).
    pub fn key_groups(&self) -> u32 {
        self.key_groups
    }

    /// The epoch restored at start.
    pub fn restored_epoch(&self) -> Option<u64> {
        self.restored.as_ref().map(|(e, _, _)| *e)
    }

    /// How keyed exchanges route over this run's workers.
    pub fn key_route(&self) -> KeyRoute {
        if self.legacy {
            KeyRoute::legacy(self.workers)
        } else {
            KeyRoute::new(self.key_groups, self.workers)
        }
    }

    /// The restored checkpoint's state of slot `name` in every old worker's part, in worker
    /// order (a part without it: none).
    pub(super) fn restored_slot(&self, name: &str) -> Vec<&[u8]> {
        let Some((_, _, parts)) = &self.restored else {
            return Vec::new();
        };
        parts
            .iter()
            .filter_map(|p| p.iter().find(|(n, _)| n == name))
            .map(|(_, b)| &b[..])
            .collect()
    }

    /// The restored states of every worker's slots of operator kind `kind` (the ingests', for
    /// the source positions a process opens its partitions at).
    pub fn restored_states(&self, kind: &str) -> Vec<&[u8]> {
        let Some((_, _, parts)) = &self.restored else {
            return Vec::new();
        };
        let suffix = format!(":{kind}");
        parts
            .iter()
            .flat_map(|p| p.iter().filter(|(n, _)| n.ends_with(&suffix)))
            .map(|(_, b)| &b[..])
            .collect()
    }

    /// The checkpointer of worker `worker`; failures are recorded in `failed` (the run's).
    pub fn worker(
        self: &Arc<Self>,
        worker: usize,
        failed: Rc<RefCell<Option<Error>>>,
    ) -> Rc<Checkpointer> {
        let (epoch, step, last_at, restored) = match &self.restored {
            // Rescaled: the slots' names only; each slot reads its state from every old part.
            Some((_, m, parts)) if self.rescaled => (
                m.next,
                m.step,
                Some(m.at_ms),
                parts
                    .first()
                    .map(|p| p.iter().map(|(n, _)| (n.clone(), Vec::new())).collect())
                    .unwrap_or_default(),
            ),
            Some((_, m, parts)) => (
                m.next,
                m.step,
                Some(m.at_ms),
                parts.get(worker).cloned().unwrap_or_default(),
            ),
            // The first barrier comes at once, before any state: every worker agrees on it
            // without knowing where event time starts, and it fixes the first real epoch.
            None => (self.granularity, self.interval_ms, None, Vec::new()),
        };
        Checkpointer::new(
            Arc::clone(self),
            worker,
            failed,
            Start {
                epoch,
                step,
                last_at,
                restored,
            },
        )
    }

    /// A local ingest reached barrier `epoch`.
    pub(super) fn reached(&self, epoch: u64) {
        if let Ok(mut s) = self.started.lock() {
            if s.0 != epoch {
                *s = (epoch, Some(Instant::now()));
            }
        }
    }

    /// Checkpoint `epoch` completed: reported once per process.
    pub(super) fn completed(&self, epoch: u64) {
        let Ok(mut r) = self.reported.lock() else {
            return;
        };
        if *r >= epoch {
            return;
        }
        *r = epoch;
        let took = match self.started.lock() {
            Ok(s) if s.0 == epoch => s.1.map_or(Duration::ZERO, |t| t.elapsed()),
            _ => Duration::ZERO,
        };
        (self.on_completed)(epoch, took);
    }
}

/// How tests make a checkpoint of another version's dataflow.
#[cfg(test)]
impl Checkpoints {
    /// Writes checkpoint `epoch` of a one-worker job as a dataflow whose slots are named and
    /// hold what `part` says (`"<index>:<kind>"`, state) would have written it.
    pub(crate) fn write_for_test(&self, epoch: u64, part: &[(String, Vec<u8>)]) {
        let names: Vec<String> = part.iter().map(|(n, _)| n.clone()).collect();
        let manifest = Manifest {
            fingerprint: grouped_fingerprint(self.plan_hash, self.key_groups, &names),
            next: epoch + self.granularity,
            step: self.granularity,
            at_ms: now_ms(),
            last: false,
            key_groups: Some(self.key_groups),
            processes: 1,
            savepoint: false,
            state: None,
        };
        let part = codec::encode(&part.to_vec()).expect("part encodes");
        self.store
            .write_part(epoch, 0, &part)
            .expect("part written");
        let manifest = codec::encode(&manifest).expect("manifest encodes");
        self.store
            .commit(epoch, 1, &manifest, self.keep, false)
            .expect("manifest written");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A job with checkpoints in `dir`, with `extra` in its `[checkpoint]` section.
    fn plan(dir: &std::path::Path, extra: &str) -> JobPlan {
        let text = format!(
            "name = \"j\"\n[source]\nkind = \"file\"\npath = \"in.jsonl\"\nformat = \"json\"\n\
             [checkpoint]\ndir = \"{}\"\n{extra}\n\
             [[analysis]]\nname = \"n\"\nwindow = {{ size = \"1m\" }}\nselect = [\"count() as c\"]\n",
            dir.display()
        );
        crate::spec::load_text("j.toml", &text).unwrap()
    }

    fn open(plan: &JobPlan, workers: usize) -> Result<Option<Arc<Checkpoints>>, Error> {
        Checkpoints::open(
            plan,
            1,
            workers,
            true,
            Box::new(|_, _| {}),
            Box::new(|| false),
        )
    }

    /// A manifest of a checkpoint with 128 key groups, taken by one process.
    fn manifest(last: bool) -> Manifest {
        Manifest {
            fingerprint: 1,
            next: 9_000,
            step: 1_000,
            at_ms: 42,
            last,
            key_groups: Some(128),
            processes: 1,
            savepoint: false,
            state: None,
        }
    }

    /// Writes checkpoint 5 of `workers` empty parts with `manifest`.
    fn write(dir: &std::path::Path, workers: usize, manifest: &[u8]) {
        let store = Store::open(dir).unwrap();
        let part = codec::encode(&Part::new()).unwrap();
        for w in 0..workers {
            store.write_part(5, w, &part).unwrap();
        }
        store.commit(5, workers, manifest, 3, false).unwrap();
    }

    #[test]
    fn a_final_checkpoint_of_this_run_is_found_in_the_directory_not_the_one_restored() {
        let dir = std::env::temp_dir().join(format!("logflow-poll-last-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        // Restored: the last checkpoint of the run before says last; it does not stop this one.
        write(&dir, 1, &codec::encode(&manifest(true)).unwrap());
        let c = open(&plan(&dir, ""), 1).unwrap().unwrap();
        assert_eq!(c.restored_epoch(), Some(5));
        assert!(!c.poll_last());
        let store = Store::open(&dir).unwrap();
        let part = codec::encode(&Part::new()).unwrap();
        let complete = |epoch, last: bool| {
            store.write_part(epoch, 0, &part).unwrap();
            let m = codec::encode(&manifest(last)).unwrap();
            store.commit(epoch, 1, &m, 3, false).unwrap();
        };
        complete(9, false);
        std::thread::sleep(PEER_STOP_POLL);
        assert!(!c.poll_last(), "a checkpoint that is not the last");
        // An incomplete newer one (no manifest yet) is passed over.
        store.write_part(13, 0, &part).unwrap();
        complete(11, true);
        assert!(!c.poll_last(), "looked less than {PEER_STOP_POLL:?} ago");
        std::thread::sleep(PEER_STOP_POLL);
        assert!(c.poll_last());
        assert!(c.last_passed());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn checkpoints_with_key_groups_restore_on_any_layout_and_keep_their_groups() {
        let dir = std::env::temp_dir().join(format!("logflow-groups-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let m = Manifest {
            key_groups: Some(64),
            savepoint: true,
            ..manifest(true)
        };
        let p = plan(&dir, "");
        write(&dir, 2, &codec::encode(&m).unwrap());
        let c = open(&p, 3).unwrap().unwrap();
        assert_eq!(c.rescaled_from(), Some(2));
        // The recorded groups, not the default.
        assert_eq!(c.key_route(), KeyRoute::new(64, 3));
        drop(c);
        // The same layout is not a rescale.
        assert_eq!(open(&p, 2).unwrap().unwrap().rescaled_from(), None);
        // A spec that sets other groups is refused with the reason; the same ones are fine.
        let err = open(&plan(&dir, "key_groups = 32"), 3)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("has 64 key groups, the spec sets checkpoint.key_groups = 32"),
            "{err}"
        );
        assert!(open(&plan(&dir, "key_groups = 64"), 3).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn checkpoints_before_key_groups_are_refused_on_another_layout_with_the_reason() {
        let dir = std::env::temp_dir().join(format!("logflow-legacy-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let v2 = codec::encode(&ManifestV2 {
            fingerprint: 1,
            next: 9_000,
            step: 1_000,
            at_ms: 42,
            last: false,
        })
        .unwrap();
        let p = plan(&dir, "");
        write(&dir, 2, &v2);
        let err = open(&p, 1).err().unwrap().to_string();
        assert!(
            err.contains("taken with 2 workers, this run has 1, and it predates key groups"),
            "{err}"
        );
        // The same layout restores it, routing keys as it was routed (by worker).
        let c = open(&p, 2).unwrap().unwrap();
        assert_eq!(c.key_route(), KeyRoute::legacy(2));
        assert_eq!(c.rescaled_from(), None);
        drop(c);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_checkpoint_recording_its_analyses_allows_added_and_removed_ones_only() {
        let dir = std::env::temp_dir().join(format!("logflow-evolve-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let with = |analyses: &str| {
            let text = format!(
                "name = \"j\"\n[source]\nkind = \"file\"\npath = \"in.jsonl\"\n\
                 format = \"json\"\n[checkpoint]\ndir = \"{}\"\n{analyses}",
                dir.display()
            );
            crate::spec::load_text("j.toml", &text).unwrap()
        };
        let analysis = |name: &str, size: &str| {
            format!(
                "[[analysis]]\nname = \"{name}\"\nwindow = {{ size = \"{size}\" }}\n\
                 select = [\"count() as c\"]\n"
            )
        };
        let old = with(&format!("{}{}", analysis("a", "1m"), analysis("b", "1m")));
        let m = Manifest {
            state: Some(StateRecord {
                source: evolve::source_of(&old),
                analyses: evolve::analyses_of(&old),
                slots: Vec::new(),
            }),
            ..manifest(false)
        };
        write(&dir, 1, &codec::encode(&m).unwrap());
        let c = open(
            &with(&format!("{}{}", analysis("c", "5m"), analysis("b", "1m"))),
            2,
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.changes.added, ["c"]);
        assert_eq!(c.changes.removed, ["a"]);
        assert!(c.named);
        drop(c);
        let err = open(&with(&analysis("b", "2m")), 1).err().unwrap();
        assert_eq!(err.exit_code(), 2);
        let err = err.to_string();
        assert!(
            err.starts_with("checkpoint 5 in ") && err.contains("analysis b: window changed"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn manifests_of_the_previous_version_decode_as_not_the_last() {
        let old = codec::encode(&ManifestV1 {
            fingerprint: 7,
            next: 9_000,
            step: 1_000,
            at_ms: 42,
        })
        .unwrap();
        let m = Manifest::decode(&old).unwrap();
        assert_eq!(
            (m.fingerprint, m.next, m.step, m.at_ms, m.last),
            (7, 9_000, 1_000, 42, false)
        );
        assert_eq!(m.key_groups, None, "before key groups");
        // The version with stop requests, before key groups.
        let v2 = codec::encode(&ManifestV2 {
            fingerprint: 7,
            next: 9_000,
            step: 1_000,
            at_ms: 42,
            last: true,
        })
        .unwrap();
        let m2 = Manifest::decode(&v2).unwrap();
        assert_eq!((m2.last, m2.key_groups, m2.savepoint), (true, None, false));
        // The version with key groups, before the analyses' states were recorded.
        let v3 = codec::encode(&ManifestV3 {
            fingerprint: 7,
            next: 9_000,
            step: 1_000,
            at_ms: 42,
            last: true,
            key_groups: Some(64),
            processes: 2,
            savepoint: true,
        })
        .unwrap();
        let m3 = Manifest::decode(&v3).unwrap();
        assert_eq!(
            (m3.key_groups, m3.processes, m3.savepoint, m3.state),
            (Some(64), 2, true, None)
        );
        let new = Manifest {
            last: true,
            key_groups: Some(128),
            processes: 2,
            savepoint: true,
            state: Some(StateRecord {
                source: "file x".into(),
                analyses: Vec::new(),
                slots: Vec::new(),
            }),
            ..m
        };
        assert_eq!(
            Manifest::decode(&codec::encode(&new).unwrap()).unwrap(),
            new
        );
        assert!(
            Manifest::decode(&old[..old.len() - 1]).is_err(),
            "truncated"
        );
    }

    #[test]
    fn steps_follow_the_interval_within_bounds() {
        // Event time moved 10 s in 1 s of wall clock: 10x the step for a 10 s interval, but at
        // most 4x at once.
        assert_eq!(next_step(10_000, Some(1_000), 10_000, 1_000), 40_000);
        // On target: unchanged.
        assert_eq!(next_step(10_000, Some(10_000), 10_000, 1_000), 10_000);
        // Too slow: smaller, at most 4x.
        assert_eq!(next_step(40_000, Some(80_000), 10_000, 1_000), 10_000);
        // Never below the granularity, always a multiple of it.
        assert_eq!(next_step(1_000, Some(1_000_000), 10_000, 1_000), 1_000);
        assert_eq!(next_step(10_000, Some(3_000), 10_000, 7_000), 35_000);
        // Not measured: unchanged.
        assert_eq!(next_step(5_000, None, 10_000, 1_000), 5_000);
    }
}
