//! One partition read by several workers of a process in turns, so a single large file is
//! parsed on every core.
//!
//! Each worker takes the next block of records ([`Turns::take`], numbered in file order),
//! parses it while the others parse theirs, and publishes the block's largest event time
//! ([`Turns::publish`]). Event-time progress is a running maximum over the partition in file
//! order, so a block's events can be stamped once the maximum of every earlier block is known
//! ([`Turns::before`]): exactly the times a single reader would give them. Results therefore do
//! not depend on how many workers share the partition (see `runtime::ingest`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{PartitionReader, ReadStatus, RecordBatch};
use crate::record::Origin;
use crate::Error;

/// A partition shared by the local workers; every worker holds a clone.
#[derive(Clone)]
pub struct Turns {
    inner: Arc<Inner>,
}

struct Inner {
    reader: Mutex<Reader>,
    board: Mutex<Board>,
    describe: String,
}

struct Reader {
    reader: Box<dyn PartitionReader>,
    next_seq: u64,
    ended: bool,
}

/// What is known about the blocks' event times.
#[derive(Default)]
struct Board {
    /// Published maxima of blocks at or after `contiguous` (`None`: no parsed event).
    published: HashMap<u64, Option<i64>>,
    /// Every block before this one has published.
    contiguous: u64,
    /// The largest event time of the blocks before `contiguous`.
    prefix: Option<i64>,
    /// The largest event time before each block that passed `contiguous` and whose taker has
    /// not asked for it yet.
    before: HashMap<u64, Option<i64>>,
}

/// A block taken by [`Turns::take`].
pub struct Taken {
    /// The block's number, when records were taken.
    pub seq: Option<u64>,
    pub status: ReadStatus,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A worker that panicked while holding the lock fails the job anyway: read on.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Turns {
    pub fn new(reader: Box<dyn PartitionReader>) -> Self {
        let describe = reader.describe();
        Turns {
            inner: Arc::new(Inner {
                reader: Mutex::new(Reader {
                    reader,
                    next_seq: 0,
                    ended: false,
                }),
                board: Mutex::new(Board::default()),
                describe,
            }),
        }
    }

    /// Reads the next block of up to `max` records into `batch`.
    pub fn take(&self, batch: &mut RecordBatch, max: usize) -> Result<Taken, Error> {
        let mut r = lock(&self.inner.reader);
        if r.ended {
            return Ok(Taken {
                seq: None,
                status: ReadStatus::Ended,
            });
        }
        let before = batch.len();
        let status = r.reader.read(batch, max)?;
        r.ended = status == ReadStatus::Ended;
        let seq = (batch.len() > before).then(|| {
            r.next_seq += 1;
            r.next_seq - 1
        });
        Ok(Taken { seq, status })
    }

    /// Publishes the largest event time of block `seq` (`None` when it parsed no event).
    pub fn publish(&self, seq: u64, max: Option<i64>) {
        let mut b = lock(&self.inner.board);
        b.published.insert(seq, max);
        loop {
            let next = b.contiguous;
            let Some(m) = b.published.remove(&next) else {
                break;
            };
            let prefix = b.prefix;
            b.before.insert(next, prefix);
            b.prefix = prefix.max(m);
            b.contiguous += 1;
        }
    }

    /// The largest event time of the blocks before `seq` (`Some(None)`: none had events), once
    /// every one of them has published; asked once per block.
    pub fn before(&self, seq: u64) -> Option<Option<i64>> {
        lock(&self.inner.board).before.remove(&seq)
    }

    /// The largest event time of the blocks whose maxima are all known: no block still to be
    /// stamped starts below it.
    pub fn progress(&self) -> Option<i64> {
        lock(&self.inner.board).prefix
    }
}

impl PartitionReader for Turns {
    fn read(&mut self, batch: &mut RecordBatch, max: usize) -> Result<ReadStatus, Error> {
        self.take(batch, max).map(|t| t.status)
    }

    fn origin(&self, pos: u64) -> Origin {
        lock(&self.inner.reader).reader.origin(pos)
    }

    fn describe(&self) -> String {
        self.inner.describe.clone()
    }

    fn turns(&self) -> Option<Turns> {
        Some(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::file::FileReader;

    #[test]
    fn blocks_are_numbered_in_order_and_maxima_fold_in_order() {
        let input: Vec<u8> = (0..10)
            .flat_map(|i| format!("{i}\n").into_bytes())
            .collect();
        let t = Turns::new(Box::new(FileReader::from_reader(
            "t",
            Box::new(std::io::Cursor::new(input)),
            100,
        )));
        let mut batch = RecordBatch::default();
        let mut seqs = Vec::new();
        loop {
            batch.clear();
            let taken = t.take(&mut batch, 4).unwrap();
            if let Some(s) = taken.seq {
                seqs.push((s, batch.len()));
            }
            if taken.status == ReadStatus::Ended {
                break;
            }
        }
        assert_eq!(seqs, vec![(0, 4), (1, 4), (2, 2)]);
        // Published out of order: a block's "before" is known only once all earlier are.
        t.publish(2, Some(5));
        assert_eq!((t.before(2), t.progress()), (None, None));
        t.publish(1, None);
        assert_eq!(t.before(1), None);
        t.publish(0, Some(9));
        assert_eq!(t.before(0), Some(None));
        assert_eq!(t.before(1), Some(Some(9)));
        assert_eq!(t.before(2), Some(Some(9)));
        assert_eq!(t.before(2), None, "asked once");
        assert_eq!(t.progress(), Some(9));
    }
}
