//! Consistent checkpoints at barrier epochs, aligned with timely progress.
//!
//! A checkpoint is taken at an epoch `E`, a timely time every worker agrees on in advance:
//! 1. Each ingest operator stops stamping records at `E` or later (the record that would be
//!    the first is kept for after the barrier) and holds its capability at `E`, so no data at
//!    `E` or later exists anywhere, and every message before `E` drains through the dataflow.
//! 2. Each stateful operator, once its input frontier reaches `E` (nothing before `E` can still
//!    arrive; nothing at `E` or later was sent), saves its state into its [`Slot`]; the ingest
//!    saves its partitions' positions when its capability reaches `E`; the output operator
//!    commits what it wrote. Operators keep every capability they hold at `E` or later.
//! 3. When all of a worker's slots are saved, the worker writes its part to the [`Store`](super::store::Store); the
//!    worker that sees the last part land writes the manifest, naming the next epoch.
//! 4. The ingests read the manifest and go on to the next epoch, or stop there when it is
//!    the last: a worker of a job asked to stop (`runtime::stop`) records the request in the
//!    checkpoint's directory before it writes its part, and the manifest, written after every
//!    part, says whether any request is there. One manifest decides for every process, so
//!    processes asked at different moments still stop after the same checkpoint.
//!
//! No message is in flight across the cut and no operator's state includes anything after it,
//! so restoring every slot and reading each partition on from its saved position continues the
//! job as if it had never stopped: the same data at the same timely times, hence the same
//! results (which are deterministic in the data and its times; see `runtime::ingest`).
//!
//! Epochs are event-time progress values (a multiple of the job's granularity). The next one
//! is chosen when a checkpoint completes, at a distance in event time meant to take about the
//! configured wall-clock interval at the rate event time has been moving ([`super::process`]).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use timely::progress::frontier::AntichainRef;

use super::codec;
use super::evolve::{SlotDef, StateRecord};
use super::groups::{KeyRoute, Keyed, Owned, DEFAULT_KEY_GROUPS};
use super::process::{
    fingerprint, grouped_fingerprint, next_step, now_ms, round_up, Checkpoints, Manifest, Part,
};
use crate::Error;

/// One worker's side: the slots of its stateful operators and the barrier they are at.
pub struct Checkpointer {
    shared: Arc<Checkpoints>,
    worker: usize,
    failed: Rc<RefCell<Option<Error>>>,
    inner: RefCell<Inner>,
}

struct Inner {
    /// Slot names, by slot index.
    names: Vec<String>,
    /// The analyses each slot holds state for, and its state's layout, by slot index.
    owners: Vec<(Vec<String>, u64)>,
    /// Restored states not yet taken, by slot name.
    restored: HashMap<String, Vec<u8>>,
    /// The slot names of the restored part.
    restored_names: Vec<String>,
    /// The dataflow is built: every slot is registered, and parts can be written.
    built: bool,
    /// The pending barrier.
    epoch: u64,
    /// The event-time distance that led to `epoch`.
    step: u64,
    /// When the checkpoint before `epoch` completed (ms since the Unix epoch).
    last_at: Option<u64>,
    /// States saved for `epoch`, by slot index.
    saved: Vec<Option<Vec<u8>>>,
    /// States that stand for every later epoch too (an ingest whose input ended).
    standing: Vec<Option<Vec<u8>>>,
    /// This worker's part of `epoch` is written.
    part_done: bool,
    /// The least event-time progress of this worker's partitions at the barrier: the next
    /// epoch is counted from there (the first barrier comes before event time is known).
    hint: Option<u64>,
}

/// Where a worker's checkpointer starts: the pending barrier, the step that led to it, when the
/// checkpoint before it completed, and the worker's restored part.
pub(super) struct Start {
    pub epoch: u64,
    pub step: u64,
    pub last_at: Option<u64>,
    pub restored: Part,
}

impl Checkpointer {
    pub(super) fn new(
        shared: Arc<Checkpoints>,
        worker: usize,
        failed: Rc<RefCell<Option<Error>>>,
        start: Start,
    ) -> Rc<Checkpointer> {
        Rc::new(Checkpointer {
            shared,
            worker,
            failed,
            inner: RefCell::new(Inner {
                names: Vec::new(),
                owners: Vec::new(),
                restored_names: start.restored.iter().map(|(n, _)| n.clone()).collect(),
                restored: start.restored.into_iter().collect(),
                built: false,
                epoch: start.epoch,
                step: start.step,
                last_at: start.last_at,
                saved: Vec::new(),
                standing: Vec::new(),
                part_done: false,
                hint: None,
            }),
        })
    }

    /// A slot for one stateful operator. Every worker builds the same dataflow, so the n-th
    /// slot is the same operator everywhere and in every run. Its name says which analyses it
    /// holds state for (see [`owned_by`]; `job`: the job's own, as the source positions), so
    /// that a spec with analyses added or removed finds the others' states; a restored
    /// checkpoint that predates that names slots by their index (its plan must be the same).
    pub fn slot(self: &Rc<Self>, kind: &str) -> Slot {
        let (owners, layout) = OWNER.with(|o| o.borrow().clone()).unwrap_or_default();
        let mut inner = self.inner.borrow_mut();
        let index = inner.names.len();
        let name = if self.shared.named {
            let label = match owners.is_empty() {
                true => "job".to_string(),
                false => owners.join("+"),
            };
            let name = format!("{label}:{kind}");
            // Two operators of one kind for the same analyses: told apart by their order.
            match inner.names.contains(&name) {
                true => format!("{name}#{index}"),
                false => name,
            }
        } else {
            format!("{index}:{kind}")
        };
        inner.names.push(name);
        inner.owners.push((owners, layout));
        inner.saved.push(None);
        inner.standing.push(None);
        Slot {
            ck: Rc::clone(self),
            index,
        }
    }

    /// The pending barrier: no record may be stamped at it or later until it completes.
    pub fn epoch(&self) -> u64 {
        self.inner.borrow().epoch
    }

    /// The epoch restored at start.
    pub fn restored_epoch(&self) -> Option<u64> {
        self.shared.restored_epoch()
    }

    /// The dataflow is built (every slot registered): from now on a worker's part is written
    /// once all its slots saved. A restored checkpoint must be of this dataflow: with the
    /// same plan (a checkpoint that predates per-analysis states), or with every slot's state
    /// found (the same name and layout), except those of analyses added since (they start
    /// empty) and removed since (their states are dropped).
    pub fn built(&self) -> Result<(), Error> {
        let mut inner = self.inner.borrow_mut();
        inner.built = true;
        let Some((epoch, manifest, _)) = &self.shared.restored else {
            return Ok(());
        };
        let dir = self.shared.store.dir().display();
        if manifest.state.is_none() || !self.shared.named {
            if manifest.fingerprint != self.fingerprint(&inner)
                || !inner.restored.is_empty()
                || inner.restored_names != inner.names
            {
                return Err(Error::Usage(format!(
                    "checkpoint {epoch} in {dir} is of a different job or version (its \
                     analyses or operators differ): remove the directory or use another one"
                )));
            }
            return Ok(());
        }
        let changes = &self.shared.changes;
        let old = self.shared.restored_slots();
        let all_in = |owners: &[String], set: &[String]| {
            !owners.is_empty() && owners.iter().all(|o| set.contains(o))
        };
        let mut refused = Vec::new();
        for (name, (owners, layout)) in inner.names.iter().zip(&inner.owners) {
            match old.iter().find(|s| &s.name == name) {
                Some(s) if s.layout == *layout => {}
                Some(_) => refused.push(format!(
                    "the state of {name} is laid out differently (the aggregates of the pass \
                     its analyses share changed order)"
                )),
                None if all_in(owners, &changes.added) => {}
                None => refused.push(
                    match old.iter().find(|s| {
                        s.name.rsplit_once(':').map(|(_, k)| k)
                            == name.rsplit_once(':').map(|(_, k)| k)
                            && s.owners.iter().any(|o| owners.contains(o))
                    }) {
                        Some(s) => format!(
                            "analyses {} share one aggregation pass, which was saved for {}: a \
                         shared pass is restored with the same analyses only (give an added \
                         analysis another window, group_by or where; keep a removed one until \
                         the pass starts afresh)",
                            owners.join(", "),
                            s.owners.join(", ")
                        ),
                        None => format!("the checkpoint has no state of {name}"),
                    },
                ),
            }
        }
        for s in old {
            if inner.names.contains(&s.name) {
                continue;
            }
            if all_in(&s.owners, &changes.removed) {
                inner.restored.remove(&s.name);
            } else if refused.is_empty() {
                refused.push(format!(
                    "the state of {} has no operator in this job",
                    s.name
                ));
            }
        }
        if !refused.is_empty() {
            return Err(Error::SpecChange(format!(
                "checkpoint {epoch} in {dir}: {} (or use another checkpoint directory)",
                refused.join("; ")
            )));
        }
        // What remains is a state no slot took (a slot that never restored): a bug, not a
        // spec change.
        if let Some(name) = inner.restored.keys().next() {
            return Err(Error::Internal(format!(
                "checkpoint {epoch} in {dir}: the state of {name} was not restored"
            )));
        }
        Ok(())
    }

    /// What this worker's slots hold, for the manifest: the job's source, its analyses and
    /// every slot with its owners.
    fn record(&self, inner: &Inner) -> Option<StateRecord> {
        let sh = &self.shared;
        sh.named.then(|| StateRecord {
            source: sh.source.clone(),
            analyses: sh.analyses.clone(),
            slots: inner
                .names
                .iter()
                .zip(&inner.owners)
                .map(|(name, (owners, layout))| SlotDef {
                    name: name.clone(),
                    owners: owners.clone(),
                    layout: *layout,
                })
                .collect(),
        })
    }

    /// The dataflow's identity: its plan and operators, and (a checkpoint before key groups,
    /// restored only on the same layout) its worker count.
    fn fingerprint(&self, inner: &Inner) -> u64 {
        let sh = &self.shared;
        if sh.legacy {
            return fingerprint(sh.plan_hash, sh.workers, &inner.names);
        }
        grouped_fingerprint(sh.plan_hash, sh.key_groups, &inner.names)
    }

    fn fail(&self, e: Error) {
        self.failed.borrow_mut().get_or_insert(e);
    }

    /// The ingest is at the barrier; `hint` is the least progress of its partitions.
    pub fn reached(&self, hint: Option<i64>) {
        let epoch = {
            let mut inner = self.inner.borrow_mut();
            inner.hint = hint.map(|h| h.max(0) as u64);
            inner.epoch
        };
        self.shared.reached(epoch);
    }

    /// Whether barrier `epoch` is complete; if so the next one is now pending (idempotent).
    pub fn passed(&self, epoch: u64) -> bool {
        if self.inner.borrow().epoch > epoch {
            return true;
        }
        let bytes = match self.shared.store.manifest(epoch) {
            Ok(Some(b)) => b,
            Ok(None) => return false,
            Err(e) => {
                self.fail(e);
                return false;
            }
        };
        let m = match Manifest::decode(&bytes) {
            Ok(m) => m,
            Err(e) => {
                self.fail(Error::Checkpoint(format!(
                    "checkpoint {epoch}: manifest: {e}"
                )));
                return false;
            }
        };
        let mut inner = self.inner.borrow_mut();
        inner.epoch = m.next.max(epoch + 1);
        inner.step = m.step;
        inner.last_at = Some(m.at_ms);
        inner.part_done = false;
        inner.hint = None;
        for s in inner.saved.iter_mut() {
            *s = None;
        }
        drop(inner);
        if m.last {
            self.shared.set_last_passed();
        }
        self.shared.completed(epoch);
        true
    }

    /// The checkpoint the job stops after completed: nothing more is read or sent.
    pub fn last_passed(&self) -> bool {
        self.shared.last_passed()
    }

    /// Whether a stop was requested for the pending barrier, here or on another process.
    pub fn stop_requested(&self) -> bool {
        self.shared.stop_requested_anywhere(self.epoch())
    }

    /// Records slot `index`'s state for `epoch`; the last one writes the worker's part.
    fn save(&self, index: usize, epoch: u64, state: Vec<u8>, standing: bool) {
        let mut inner = self.inner.borrow_mut();
        if standing {
            inner.standing[index] = Some(state.clone());
        }
        if inner.epoch != epoch || inner.part_done {
            return;
        }
        inner.saved[index] = Some(state);
        // Not before every slot is registered: an operator that saves as it is built (an
        // ingest without partitions) must not complete a part the others are missing from.
        let complete = inner.built
            && inner
                .saved
                .iter()
                .zip(&inner.standing)
                .all(|(s, st)| s.is_some() || st.is_some());
        if !complete {
            return;
        }
        let part: Part = inner
            .names
            .iter()
            .zip(inner.saved.iter().zip(&inner.standing))
            .map(|(n, (s, st))| {
                (
                    n.clone(),
                    s.clone().or_else(|| st.clone()).unwrap_or_default(),
                )
            })
            .collect();
        inner.part_done = true;
        let fingerprint = self.fingerprint(&inner);
        let record = self.record(&inner);
        let (step, last_at, hint) = (inner.step, inner.last_at, inner.hint);
        drop(inner);
        let at = Barrier {
            epoch,
            fingerprint,
            step,
            last_at,
            hint,
        };
        if let Err(e) = self.write(&at, &part, record) {
            self.fail(e);
        }
    }

    fn write(&self, at: &Barrier, part: &Part, state: Option<StateRecord>) -> Result<(), Error> {
        let Barrier {
            epoch,
            fingerprint,
            step,
            last_at,
            hint,
        } = *at;
        let sh = &self.shared;
        let bytes = codec::encode(part)
            .map_err(|e| Error::Checkpoint(format!("checkpoint {epoch}: {e}")))?;
        // Before the part: whichever worker writes the manifest (after the last part) sees the
        // request, so the checkpoint is the last, for every process alike.
        if sh.stop_asked() {
            sh.store.request_stop(epoch, self.worker, sh.savepoint())?;
        }
        sh.store.write_part(epoch, self.worker, &bytes)?;
        if !sh.store.has_parts(epoch, sh.workers) {
            return Ok(()); // the worker writing the last part completes it
        }
        let at_ms = now_ms();
        let step = next_step(
            step,
            last_at.map(|l| at_ms.saturating_sub(l)),
            sh.interval_ms,
            sh.granularity,
        );
        let from = round_up(hint.unwrap_or(epoch).max(epoch), sh.granularity);
        let last = sh.store.stop_requested(epoch);
        let manifest = Manifest {
            fingerprint,
            next: from.saturating_add(step),
            step,
            at_ms,
            last,
            // A legacy checkpoint's successors keep its routing, so they stay legacy.
            key_groups: (!sh.legacy).then_some(sh.key_groups),
            processes: sh.processes as u32,
            // Asked of one process (a cluster's `savepoint`): its stop request says so.
            savepoint: last && (sh.savepoint() || sh.store.savepoint_requested(epoch)),
            state,
        };
        let bytes = codec::encode(&manifest)
            .map_err(|e| Error::Checkpoint(format!("checkpoint {epoch}: {e}")))?;
        sh.store
            .commit(epoch, sh.workers, &bytes, sh.keep, manifest.savepoint)?;
        Ok(())
    }
}

/// Where a worker's part is being written: the barrier and what its manifest carries.
struct Barrier {
    epoch: u64,
    fingerprint: u64,
    step: u64,
    last_at: Option<u64>,
    hint: Option<u64>,
}

thread_local! {
    /// The checkpointer of the dataflow being built on this thread (see [`building`]).
    static BUILDING: RefCell<Option<Rc<Checkpointer>>> = const { RefCell::new(None) };
    /// The analyses whose operators are being built, and their state's layout (see
    /// [`owned_by`]).
    static OWNER: RefCell<Option<(Vec<String>, u64)>> = const { RefCell::new(None) };
}

/// Runs `build` (the operators of analyses `owners`) so that the slots they take are named
/// by those analyses, with `layout` the hash of how their state is laid out: a restore finds
/// each analysis's state by its name, whatever analyses come before it.
pub fn owned_by<R>(owners: &[String], layout: u64, build: impl FnOnce() -> R) -> R {
    let previous = OWNER.with(|o| o.replace(Some((owners.to_vec(), layout))));
    let result = build();
    OWNER.with(|o| *o.borrow_mut() = previous);
    result
}

/// Runs `build` (a dataflow's construction) so that its stateful operators take their slots
/// in `ck` ([`Slot::register`]): the operators' own signatures stay free of checkpointing.
pub fn building<R>(ck: Option<&Rc<Checkpointer>>, build: impl FnOnce() -> R) -> R {
    let previous = BUILDING.with(|b| b.replace(ck.cloned()));
    let result = build();
    BUILDING.with(|b| *b.borrow_mut() = previous);
    result
}

/// How a keyed exchange of the dataflow being built routes over `peers` workers: by the key
/// groups of its checkpoints (restored or configured), or the default ones without checkpoints.
/// Every keyed exchange routes through this, so a key's state is where its records go.
pub fn key_route(peers: usize) -> KeyRoute {
    BUILDING.with(|b| match b.borrow().as_ref() {
        Some(ck) => ck.shared.key_route(),
        None => KeyRoute::new(DEFAULT_KEY_GROUPS, peers),
    })
}

/// The slot (if any) and the epoch an operator must save its state for now (see
/// [`Slot::due`]).
pub fn due<'a>(slot: &'a Option<Slot>, frontier: AntichainRef<'_, u64>) -> Option<(&'a Slot, u64)> {
    let s = slot.as_ref()?;
    Some((s, s.due(frontier)?))
}

/// [`due`] for an operator with several inputs, given the least time of their frontiers
/// (`None`: every input is done); no frontier is built.
pub fn due_at(slot: &Option<Slot>, least: Option<u64>) -> Option<(&Slot, u64)> {
    let one = least.map(|t| [t]);
    due(
        slot,
        AntichainRef::new(one.as_ref().map_or(&[][..], |t| &t[..])),
    )
}

/// A stateful operator's place in the worker's checkpoints.
pub struct Slot {
    ck: Rc<Checkpointer>,
    index: usize,
}

impl Slot {
    /// A slot for a stateful operator of kind `kind` being built, when its dataflow keeps
    /// checkpoints (it is built inside [`building`]); operators call this once, as they are
    /// built, in the same order on every worker.
    pub fn register(kind: &str) -> Option<Slot> {
        BUILDING.with(|b| b.borrow().as_ref().map(|ck| ck.slot(kind)))
    }

    fn name(&self) -> String {
        self.ck.inner.borrow().names[self.index].clone()
    }

    /// Whether the restored checkpoint has a state of slot `name` (taken: every restored
    /// state must find its operator, see [`Checkpointer::built`]).
    fn take_name(&self, name: &str) -> bool {
        self.ck.inner.borrow_mut().restored.remove(name).is_some()
    }

    /// This worker's own state at the restored checkpoint (`None`: starting afresh, or a state
    /// that does not decode, which fails the run). Every restore says how its state moves to
    /// another number of workers: there is no restore without it.
    fn own_state<T: DeserializeOwned>(&self, name: &str) -> Option<T> {
        let bytes = self.ck.inner.borrow_mut().restored.remove(name)?;
        self.decode(name, &bytes)
    }

    fn decode<T: DeserializeOwned>(&self, name: &str, bytes: &[u8]) -> Option<T> {
        match codec::decode(bytes) {
            Ok(t) => Some(t),
            Err(e) => {
                self.ck.fail(Error::Usage(format!(
                    "checkpoint: the saved state of operator {name} does not fit this job ({e}): \
                     remove the checkpoint directory or use another one"
                )));
                None
            }
        }
    }

    /// Every old worker's state of this slot, decoded (rescaled restores only).
    fn old_states<T: DeserializeOwned>(&self, name: &str) -> Option<Vec<T>> {
        if !self.take_name(name) {
            return None;
        }
        self.ck
            .shared
            .restored_slot(name)
            .into_iter()
            .map(|b| self.decode(name, b))
            .collect()
    }

    /// A keyed operator's state at the restored checkpoint: its own on the same layout; taken
    /// with another number of workers, the entries of the key groups this worker owns now,
    /// from every old worker's state.
    pub fn restore_keyed<T: Keyed + DeserializeOwned>(&self) -> Option<T> {
        self.restore_split(T::retain_owned, T::absorb)
    }

    /// [`Slot::restore_keyed`] for a state whose keys only the operator can tell (rows keyed
    /// by their first columns): `retain` keeps an old worker's entries that `Owned` says are
    /// this worker's, `absorb` merges them in.
    pub fn restore_split<T: Default + DeserializeOwned>(
        &self,
        retain: impl Fn(&mut T, &Owned),
        mut absorb: impl FnMut(&mut T, T),
    ) -> Option<T> {
        let name = self.name();
        if !self.ck.shared.rescaled {
            return self.own_state(&name);
        }
        let owned = Owned {
            route: self.ck.shared.key_route(),
            me: self.ck.worker as u64,
        };
        let mut state = T::default();
        for mut old in self.old_states::<T>(&name)? {
            retain(&mut old, &owned);
            absorb(&mut state, old);
        }
        Some(state)
    }

    /// The state of an operator that runs on worker 0 alone in every layout (one whole table,
    /// a gathered sink): on another layout, worker 0 takes the old worker 0's state.
    pub fn restore_gathered<T: DeserializeOwned>(&self) -> Option<T> {
        let name = self.name();
        if !self.ck.shared.rescaled {
            return self.own_state(&name);
        }
        let first = self.old_states::<T>(&name)?.into_iter().next();
        if self.ck.worker == 0 {
            first
        } else {
            None
        }
    }

    /// A state that is not keyed but merges (source positions by partition name): its own on
    /// the same layout; on another, every old worker's merged with `merge`.
    pub fn restore_merged<T: DeserializeOwned>(&self, merge: impl FnMut(T, T) -> T) -> Option<T> {
        let name = self.name();
        if !self.ck.shared.rescaled {
            return self.own_state(&name);
        }
        self.old_states::<T>(&name)?.into_iter().reduce(merge)
    }

    /// The epoch this operator must save its state for now, if any: its input `frontier` has
    /// reached the pending barrier and it has not saved for it. A frontier past a barrier whose
    /// part is written means that checkpoint completed (the ingests wait for it): the next one
    /// is then taken up here too, on workers whose ingest does not ask (no partitions).
    pub fn due(&self, frontier: AntichainRef<'_, u64>) -> Option<u64> {
        let (epoch, done) = {
            let inner = self.ck.inner.borrow();
            (
                inner.epoch,
                inner.part_done || inner.saved[self.index].is_some(),
            )
        };
        if frontier.less_than(&epoch) {
            return None;
        }
        if !done {
            // Past the barrier without stopping at it: the inputs ended (the ingests dropped
            // their capabilities with the barrier pending), and data after the barrier may
            // still be on its way here. A state saved now would miss it while the ingests'
            // say it was read; once every input is done (an empty frontier) the state is the
            // finished job's, the same cut for every operator.
            if !frontier.is_empty() && !frontier.less_equal(&epoch) {
                return None;
            }
            return Some(epoch);
        }
        if frontier.less_equal(&epoch) || !self.ck.passed(epoch) {
            return None;
        }
        self.due(frontier)
    }

    /// Saves the operator's state for `epoch`.
    pub fn save<T: Serialize>(&self, epoch: u64, state: &T) {
        match codec::encode(state) {
            Ok(bytes) => self.ck.save(self.index, epoch, bytes, false),
            Err(e) => self.ck.fail(Error::Checkpoint(format!(
                "checkpoint {epoch}: state of {}: {e}",
                self.name()
            ))),
        }
    }

    /// Saves a state that also stands for every later epoch (an operator that has finished).
    pub fn save_standing<T: Serialize>(&self, state: &T) {
        let epoch = self.ck.epoch();
        match codec::encode(state) {
            Ok(bytes) => self.ck.save(self.index, epoch, bytes, true),
            Err(e) => self.ck.fail(Error::Checkpoint(format!(
                "checkpoint: state of {}: {e}",
                self.name()
            ))),
        }
    }

    /// The worker's checkpointer.
    pub fn checkpointer(&self) -> &Rc<Checkpointer> {
        &self.ck
    }
}
