//! The shape of a stream's records: their keys in order, with the exact bytes from each
//! value's end to the next value's start (`, "level": `), learned from one record.
//!
//! Records of one producer repeat one key order, so before reading a key of its own the walk
//! compares the bytes where it stands with the gap of the key expected next (or the one after
//! it, for a key the record leaves out): two overlapping word comparisons (the gap's first and
//! last bytes) instead of the separator, the key's match and the colon. A gap is a copy of bytes the walk once read as
//! `, "key": ` (whitespace included), so where it matches, they read the same way: the shape
//! only predicts, what the walk accepts does not depend on it.

use super::{act, Act, Kind, Scan};
use crate::record::{Field, FieldSet};

/// The most keys of a shape; keys after them are read the usual way.
const MAX: usize = 24;
/// The longest gap a shape holds.
const W: usize = 32;

/// The shape of the records of a stream (see the module); empty until learned.
pub(super) struct Shape {
    /// The fields kept when it was learned (its actions depend on them).
    keep: FieldSet,
    len: usize,
    entries: [Entry; MAX],
}

/// A key of a shape: its gap and what the walk does with its value.
#[derive(Clone, Copy)]
pub(super) struct Entry {
    /// The gap's first and last 16 bytes (they overlap in a gap shorter than 32 bytes), or
    /// 8 bytes for a gap shorter than 16, or 4 below 8 (a gap has at least `,"":`, 4 bytes).
    first: u128,
    last: u128,
    len: usize,
    field: Option<Field>,
    pub act: Act,
}

impl Entry {
    const NONE: Entry = Entry {
        first: 0,
        last: 0,
        len: 0,
        field: None,
        act: Act::Skip,
    };

    /// `gap` is 4 to `W` bytes.
    fn new(gap: &[u8], field: Option<Field>, act: Act) -> Entry {
        let n = match gap.len() {
            16.. => 16,
            8..=15 => 8,
            _ => 4,
        };
        let word = |b: &[u8]| {
            let mut a = [0u8; 16];
            a[..n].copy_from_slice(b);
            u128::from_le_bytes(a)
        };
        Entry {
            first: word(&gap[..n]),
            last: word(&gap[gap.len() - n..]),
            len: gap.len(),
            field,
            act,
        }
    }

    /// Where the value after this gap starts, if the gap is at `at` in `b`: two compares of
    /// overlapping words cover it, whatever its length.
    #[inline(always)]
    fn at(&self, b: &[u8], at: usize) -> Option<usize> {
        let end = at + self.len;
        let gap = b.get(at..end)?;
        let same = match gap.len() {
            16.. => ends::<16>(gap).is_some_and(|(f, l)| {
                u128::from_le_bytes(*f) == self.first && u128::from_le_bytes(*l) == self.last
            }),
            8..=15 => ends::<8>(gap).is_some_and(|(f, l)| {
                u128::from(u64::from_le_bytes(*f)) == self.first
                    && u128::from(u64::from_le_bytes(*l)) == self.last
            }),
            _ => ends::<4>(gap).is_some_and(|(f, l)| {
                u128::from(u32::from_le_bytes(*f)) == self.first
                    && u128::from(u32::from_le_bytes(*l)) == self.last
            }),
        };
        same.then_some(end)
    }
}

/// The first and last `N` bytes of `b`.
#[inline(always)]
fn ends<const N: usize>(b: &[u8]) -> Option<(&[u8; N], &[u8; N])> {
    Some((b.first_chunk()?, b.last_chunk()?))
}

impl Shape {
    pub(super) const EMPTY: Shape = Shape {
        keep: FieldSet::ALL,
        len: 0,
        entries: [Entry::NONE; MAX],
    };

    /// Its keys, none if it was learned with other fields kept.
    #[inline(always)]
    pub(super) fn entries(&self, keep: FieldSet) -> &[Entry] {
        let len = if self.keep == keep { self.len } else { 0 };
        &self.entries[..len]
    }

    /// Learns the shape of `b`, a record the walk took: its keys up to the first whose gap is
    /// longer than `W` bytes (or the `MAX`th).
    pub(super) fn learn(&mut self, b: &[u8], keep: FieldSet, kind: fn(Field) -> Kind) {
        self.keep = keep;
        self.len = 0;
        let mut s = Scan::<false> {
            b,
            i: 0,
            non_ascii: false,
            escaped: false,
        };
        let mut start = 0;
        let mut next = || -> Option<()> {
            s.ws();
            s.eat(b'{')?;
            s.ws();
            loop {
                let field = s.key()?;
                s.sep(b':')?;
                let gap = b.get(start..s.i).filter(|g| (4..=W).contains(&g.len()))?;
                *self.entries.get_mut(self.len)? = Entry::new(gap, field, act(field, kind, keep));
                self.len += 1;
                s.value(false)?;
                start = s.i;
                s.sep(b',')?;
            }
        };
        next();
    }
}

/// The entry of `entries` whose gap is at `at` in `b`, its index and where its value starts:
/// the first key's (`next` 0, the record's start: the only gap with the `{`), otherwise the
/// one predicted `next` or the one after it (a key left out).
#[inline(always)]
pub(super) fn gap<'e>(
    entries: &'e [Entry],
    b: &[u8],
    at: usize,
    next: usize,
) -> Option<(&'e Entry, usize, usize)> {
    let e = entries.get(next)?;
    if let Some(end) = e.at(b, at) {
        return Some((e, next, end));
    }
    if next == 0 {
        return None;
    }
    let e = entries.get(next + 1)?;
    Some((e, next + 1, e.at(b, at)?))
}

/// The entry to predict after a key read without the shape: the one after the first entry of
/// `field` (past the first key's), or `next` (at least past the first key's).
pub(super) fn after(entries: &[Entry], field: Option<Field>, next: usize) -> usize {
    field
        .and_then(|f| entries.iter().skip(1).position(|e| e.field == Some(f)))
        .map_or(next.max(1), |p| p + 2)
}
