//! Key groups: the unit keyed state is routed and rescaled by.
//!
//! A job has a fixed number `G` of key groups (`[checkpoint] key_groups`, recorded in every
//! checkpoint's manifest). A key's group is `hash(key) % G`, and of `peers` workers the owner of
//! group `g` is `g * peers / G`: each worker owns a contiguous range of groups. Every keyed
//! exchange routes by [`KeyRoute::worker`], so a key's state lives on its group's owner in any
//! layout, and a checkpoint taken with one number of workers is restored on another by handing
//! each new worker the groups it owns now ([`Keyed`]).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::{BuildHasher, Hash};

use crate::record::{key_hash, Key, Value};

/// Key groups of a job whose spec does not set them.
pub const DEFAULT_KEY_GROUPS: u32 = crate::spec::plan::CheckpointPlan::DEFAULT_KEY_GROUPS;

/// Where a keyed record goes: its key's group's owner among `peers` workers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyRoute {
    /// 0: by worker, as before key groups ([`KeyRoute::legacy`]).
    groups: u64,
    peers: u64,
}

impl KeyRoute {
    /// The route over `peers` workers with `groups` key groups (both at least 1).
    pub fn new(groups: u32, peers: usize) -> KeyRoute {
        KeyRoute {
            groups: u64::from(groups.max(1)),
            peers: (peers as u64).max(1),
        }
    }

    /// The route of a checkpoint taken before key groups: the hash modulo the workers (what
    /// timely's exchange made of the hash then), so its state is found where it was saved.
    pub fn legacy(peers: usize) -> KeyRoute {
        KeyRoute {
            groups: 0,
            peers: (peers as u64).max(1),
        }
    }

    /// The worker that owns the key of hash `hash`: a worker index below `peers`, which
    /// timely's exchange (a modulo, or a mask for a power of two) leaves as it is.
    pub fn worker(&self, hash: u64) -> u64 {
        if self.groups == 0 {
            return hash % self.peers;
        }
        // group < groups <= 2^15 and peers < 2^32: no overflow.
        (hash % self.groups) * self.peers / self.groups
    }

    /// The worker that owns `key`.
    pub fn key_worker(&self, key: &[Value]) -> u64 {
        self.worker(key_hash(key))
    }
}

/// The key groups a restoring worker owns: which saved entries it keeps.
pub struct Owned {
    pub(super) route: KeyRoute,
    pub(super) me: u64,
}

impl Owned {
    /// Whether the key of hash `hash` is this worker's now.
    pub fn hash(&self, hash: u64) -> bool {
        self.route.worker(hash) == self.me
    }

    /// Whether `key` is this worker's now.
    pub fn key(&self, key: &[Value]) -> bool {
        self.hash(key_hash(key))
    }
}

/// A keyed operator state that a checkpoint restored on another layout splits and merges:
/// each old worker's state keeps the entries of the groups the new worker owns
/// ([`Keyed::retain_owned`]), and those are merged into one ([`Keyed::absorb`]). Old workers'
/// keys are disjoint (a key had one owner), so merging never combines two entries of one key;
/// what is not keyed (a held time, a set of window starts) is merged conservatively.
pub trait Keyed: Default {
    /// Keeps only the entries of keys `owned` says are this worker's.
    fn retain_owned(&mut self, owned: &Owned);
    /// Adds another old worker's (already retained) state.
    fn absorb(&mut self, other: Self);
    /// Whether nothing is left (a held entry with nothing in it is dropped).
    fn is_empty(&self) -> bool;
}

/// A key a map of keyed state is indexed by: the routed key inside it.
pub trait RoutedKey {
    /// The key the operator's exchange routes by.
    fn routed(&self) -> &[Value];
}

impl RoutedKey for Key {
    fn routed(&self) -> &[Value] {
        self
    }
}

impl RoutedKey for (i64, Key) {
    fn routed(&self) -> &[Value] {
        &self.1
    }
}

impl<K: RoutedKey + Eq + Hash, V, S: BuildHasher + Default> Keyed for HashMap<K, V, S> {
    fn retain_owned(&mut self, owned: &Owned) {
        self.retain(|k, _| owned.key(k.routed()));
    }
    fn absorb(&mut self, other: Self) {
        self.extend(other);
    }
    fn is_empty(&self) -> bool {
        HashMap::is_empty(self)
    }
}

/// A set of key hashes (the keys a capped window overflowed).
impl<S: BuildHasher + Default> Keyed for HashSet<u64, S> {
    fn retain_owned(&mut self, owned: &Owned) {
        self.retain(|h| owned.hash(*h));
    }
    fn absorb(&mut self, other: Self) {
        self.extend(other);
    }
    fn is_empty(&self) -> bool {
        HashSet::is_empty(self)
    }
}

/// Keys to act on at a time (windows to expire at a deadline).
impl<K: RoutedKey> Keyed for Vec<K> {
    fn retain_owned(&mut self, owned: &Owned) {
        self.retain(|k| owned.key(k.routed()));
    }
    fn absorb(&mut self, other: Self) {
        self.extend(other);
    }
    fn is_empty(&self) -> bool {
        Vec::is_empty(self)
    }
}

/// Window starts due at a deadline: not keyed (every worker that held keys of those windows
/// had them), so all of them, which emits nothing for a start without this worker's keys.
impl Keyed for BTreeSet<i64> {
    fn retain_owned(&mut self, _: &Owned) {}
    fn absorb(&mut self, other: Self) {
        self.extend(other);
    }
    fn is_empty(&self) -> bool {
        BTreeSet::is_empty(self)
    }
}

/// Keyed state per time (a deadline): entries left empty are dropped.
impl<T: Keyed> Keyed for BTreeMap<u64, T> {
    fn retain_owned(&mut self, owned: &Owned) {
        self.retain(|_, v| {
            v.retain_owned(owned);
            !v.is_empty()
        });
    }
    fn absorb(&mut self, other: Self) {
        for (t, v) in other {
            self.entry(t).or_default().absorb(v);
        }
    }
    fn is_empty(&self) -> bool {
        BTreeMap::is_empty(self)
    }
}

/// Held state as [`crate::checkpoint`] users save it: `(key, capability time, data)` in key
/// order. Entries of one key from several old workers merge, at the earliest of their times
/// (the hold that lets each of them be sent).
impl<T: Keyed> Keyed for Vec<(u64, u64, T)> {
    fn retain_owned(&mut self, owned: &Owned) {
        self.retain_mut(|(_, _, v)| {
            v.retain_owned(owned);
            !v.is_empty()
        });
    }
    fn absorb(&mut self, other: Self) {
        absorb_held(self, other, T::absorb);
    }
    fn is_empty(&self) -> bool {
        Vec::is_empty(self)
    }
}

/// Merges held state `other` into `held` (both `(key, capability time, data)` in key order):
/// one entry per key, at the earlier time, its data merged by `merge`.
pub fn absorb_held<T>(
    held: &mut Vec<(u64, u64, T)>,
    other: Vec<(u64, u64, T)>,
    mut merge: impl FnMut(&mut T, T),
) {
    let mut merged: BTreeMap<u64, (u64, T)> = std::mem::take(held)
        .into_iter()
        .map(|(k, t, v)| (k, (t, v)))
        .collect();
    for (k, t, v) in other {
        match merged.entry(k) {
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert((t, v));
            }
            std::collections::btree_map::Entry::Occupied(mut e) => {
                let (time, data) = e.get_mut();
                *time = (*time).min(t);
                merge(data, v);
            }
        }
    }
    *held = merged.into_iter().map(|(k, (t, v))| (k, t, v)).collect();
}

impl<A: Keyed, B: Keyed> Keyed for (A, B) {
    fn retain_owned(&mut self, owned: &Owned) {
        self.0.retain_owned(owned);
        self.1.retain_owned(owned);
    }
    fn absorb(&mut self, other: Self) {
        self.0.absorb(other.0);
        self.1.absorb(other.1);
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty() && self.1.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_own_contiguous_ranges_of_groups() {
        for peers in 1..=9 {
            let r = KeyRoute::new(128, peers);
            let owners: Vec<u64> = (0..128).map(|g| r.worker(g)).collect();
            // Non-decreasing from 0 to peers - 1, every worker some groups (peers <= groups).
            assert!(
                owners.windows(2).all(|w| w[0] <= w[1]),
                "{peers}: {owners:?}"
            );
            assert_eq!(owners[0], 0);
            assert_eq!(owners[127], peers as u64 - 1);
            let distinct: BTreeSet<u64> = owners.iter().copied().collect();
            assert_eq!(distinct.len(), peers);
            // A hash's group is its residue: hashes G apart go to the same worker.
            assert_eq!(r.worker(5), r.worker(5 + 128 * 1_000));
        }
        // More workers than groups: some own none, none is out of range.
        let r = KeyRoute::new(4, 10);
        assert!((0..1_000).all(|h| r.worker(h) < 10));
    }

    #[test]
    fn split_states_of_old_workers_merge_into_the_new_owners() {
        type State = (
            Vec<(u64, u64, HashMap<(i64, Key), u32>)>,
            BTreeMap<u64, Vec<(i64, Key)>>,
        );
        let keys: Vec<Key> = (0..200).map(|i| vec![Value::Int(i)]).collect();
        let old = KeyRoute::new(16, 3);
        // Three old workers, each with its keys in two windows (deadlines 10 and 20; a held
        // time per worker), and their expiries.
        let mut parts: Vec<State> = (0..3).map(|_| State::default()).collect();
        for (i, k) in keys.iter().enumerate() {
            let w = old.key_worker(k) as usize;
            let (held, expiry) = &mut parts[w];
            for deadline in [10u64, 20] {
                if !held.iter().any(|(d, _, _)| *d == deadline) {
                    held.push((deadline, deadline - 1 - w as u64, HashMap::new()));
                }
                let e = held.iter_mut().find(|(d, _, _)| *d == deadline).unwrap();
                e.2.insert((0, k.clone()), i as u32);
                expiry.entry(deadline).or_default().push((0, k.clone()));
            }
        }
        for p in parts.iter_mut() {
            p.0.sort_by_key(|e| e.0);
        }
        let new = KeyRoute::new(16, 2);
        let mut seen = 0;
        for me in 0..2 {
            let owned = Owned { route: new, me };
            let mut state = State::default();
            for p in &parts {
                let mut p = (p.0.clone(), p.1.clone());
                p.retain_owned(&owned);
                state.absorb(p);
            }
            // Every key of this worker, and only those, in both windows, at the earliest hold of
            // the old workers that had some of them.
            let from = (0..3u64)
                .filter(|w| {
                    keys.iter()
                        .any(|k| old.key_worker(k) == *w && new.key_worker(k) == me)
                })
                .max()
                .unwrap();
            for (deadline, held, open) in &state.0 {
                assert_eq!(*held, deadline - 1 - from, "the earliest hold");
                for ((_, k), v) in open {
                    assert_eq!(new.key_worker(k), me);
                    assert_eq!(*v as usize, keys.iter().position(|x| x == k).unwrap());
                }
            }
            let mine = keys.iter().filter(|k| new.key_worker(k) == me).count();
            assert_eq!(state.0.iter().map(|e| e.2.len()).sum::<usize>(), 2 * mine);
            assert_eq!(state.1.values().map(Vec::len).sum::<usize>(), 2 * mine);
            seen += mine;
        }
        assert_eq!(seen, keys.len());
    }
}
