//! Sources: partitioned streams of raw records (lines of a file, Kafka messages, generated
//! events). A source is split into partitions; each partition is read by one worker through a
//! [`PartitionReader`], which never blocks: it returns what is available now.

pub mod directory;
pub mod file;
pub mod generator;
pub mod lookup;
pub mod shared;
pub mod socket;

use crate::record::Origin;
use crate::Error;

/// Records read in one call: their bytes back to back, with boundaries and positions.
#[derive(Default)]
pub struct RecordBatch {
    pub data: Vec<u8>,
    /// (end offset in `data`, position, original length if the record was cut to the limit)
    pub records: Vec<(usize, u64, Option<u64>)>,
    /// Kafka record metadata, one per record, kept only when a schema reads it (empty
    /// otherwise).
    pub metas: Vec<crate::parse::schema::RecordMeta>,
}

impl RecordBatch {
    pub fn clear(&mut self) {
        self.data.clear();
        self.records.clear();
        self.metas.clear();
    }

    /// The metadata of record `i`, when the reader kept it.
    pub fn meta(&self, i: usize) -> Option<&crate::parse::schema::RecordMeta> {
        self.metas.get(i)
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Appends one record.
    pub fn push(&mut self, bytes: &[u8], pos: u64, original_len: Option<u64>) {
        self.data.extend_from_slice(bytes);
        self.records.push((self.data.len(), pos, original_len));
    }

    /// Iterates `(bytes, position, original length if cut)`.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], u64, Option<u64>)> {
        let mut start = 0;
        self.records.iter().map(move |&(end, pos, cut)| {
            let bytes = &self.data[start..end];
            start = end;
            (bytes, pos, cut)
        })
    }
}

/// What a read call found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadStatus {
    /// Records were added; there may be more right away.
    Data,
    /// Nothing available now (an unbounded source waiting for data).
    Pending,
    /// The partition is finished (a bounded input reached its end).
    Ended,
}

/// One partition of a source, read by one worker.
pub trait PartitionReader: Send {
    /// Appends up to `max` records to `batch` without blocking.
    fn read(&mut self, batch: &mut RecordBatch, max: usize) -> Result<ReadStatus, Error>;

    /// The origin of the record at `pos` (as set in [`RecordBatch::push`]).
    fn origin(&self, pos: u64) -> Origin;

    /// A short description for logs (`file app.log`, `kafka logs/3`), also the partition's
    /// name in checkpoints.
    fn describe(&self) -> String;

    /// The position of the next record to read (Kafka: its offset; file: its line number;
    /// generator: its sequence number), which a job restored from a checkpoint opens the
    /// partition at. `None`: nothing was read, or the source cannot be read from a position.
    fn resume_point(&self) -> Option<u64> {
        None
    }

    /// Records `position` (a [`resume_point`](Self::resume_point)) as read and done with: a
    /// Kafka reader commits it for its consumer group at the next
    /// [`flush_commits`](Self::flush_commits), in the background; other readers have nowhere
    /// to record it.
    fn commit(&self, _position: u64) {}

    /// Sends what [`commit`](Self::commit) recorded, of this reader and of the others sharing
    /// its client, as one request; called on every reader after the `commit`s of a round.
    fn flush_commits(&self) {}

    /// Like [`commit`](Self::commit), but waits until the brokers have it; called once the
    /// run's results were all written, so returns the commit to make then (`None`: nothing to
    /// commit).
    fn final_commit(&self) -> Option<FinalCommit> {
        None
    }

    /// The partition's end offset, kept fresh by the source in the background (Kafka), for
    /// the lag metric; `None` when it has none.
    fn end_watch(&self) -> Option<std::sync::Arc<std::sync::atomic::AtomicI64>> {
        None
    }

    /// Set when several workers read this partition in turns (see [`shared::Turns`]).
    fn turns(&self) -> Option<shared::Turns> {
        None
    }

    /// Asks the reader to keep each record's metadata in [`RecordBatch::metas`] (Kafka: key,
    /// timestamp, headers), for a schema that reads it; readers without any ignore it.
    fn keep_meta(&mut self) {}

    /// Asks the reader to call `wake` (from any thread) when records arrive after a read found
    /// none; `false` when it cannot, and the reader must be polled.
    fn wake_on_arrival(&mut self, _wake: Wake) -> bool {
        false
    }
}

/// A commit to make once a run's results are all written (see
/// [`PartitionReader::final_commit`]); returns what failed.
pub type FinalCommit = Box<dyn FnOnce() -> Result<(), Error> + Send>;

/// Wakes a worker that waits for a partition's records (see
/// [`PartitionReader::wake_on_arrival`]).
pub type Wake = std::sync::Arc<dyn Fn() + Send + Sync>;

/// Partition readers of each local worker.
pub type WorkerReaders = Vec<Vec<Box<dyn PartitionReader>>>;

/// Where this process's workers sit among all the job's workers: partition `i` (in
/// partition-id order) belongs to worker `i % workers`.
#[derive(Clone, Copy, Debug)]
pub struct Placement {
    /// Worker threads per process.
    pub threads: usize,
    /// Processes of the job.
    pub processes: usize,
    /// This process's index.
    pub process: usize,
}

impl Placement {
    /// The first worker of this process.
    pub fn first(&self) -> usize {
        self.process * self.threads
    }

    /// The local worker that reads partition `i`, if this process has it.
    pub fn owner(&self, i: usize) -> Option<usize> {
        (i % (self.threads * self.processes))
            .checked_sub(self.first())
            .filter(|w| *w < self.threads)
    }

    /// No readers yet, one list per local worker.
    pub fn empty(&self) -> WorkerReaders {
        (0..self.threads).map(|_| Vec::new()).collect()
    }
}

/// How a run over an unbounded (Kafka) source ends; the other sources end with their input.
#[derive(Clone, Debug, Default)]
pub struct End {
    /// Read every partition up to its end offset as of start (`--stop-at-end`).
    pub stop_at_end: bool,
    /// End offsets known later (the embedded demo's, when its feeder is done).
    pub signal: Option<std::sync::Arc<std::sync::Mutex<Option<Vec<i64>>>>>,
}

/// What opening a source needs besides its config.
pub struct OpenArgs<'a> {
    /// This process's workers.
    pub placement: Placement,
    /// Longer records are cut and go to the dead-letter output.
    pub max_record_bytes: usize,
    /// The record format (the generator writes logs or user events by it).
    pub format: crate::parse::Format,
    /// The job's name (its Kafka consumer group).
    pub job: &'a str,
    /// The job keeps checkpoints: one position per partition.
    pub checkpointed: bool,
    /// Positions to read on from, by [`PartitionReader::describe`] (a restored checkpoint's).
    pub resume: &'a std::collections::HashMap<String, u64>,
    /// How an unbounded (Kafka) source ends.
    pub end: End,
    /// The in-process cluster's address, when `logflow run` started one.
    pub embedded: Option<&'a str>,
}

impl crate::spec::plan::SourceConfig {
    /// Opens this process's share of the source: one list of partition readers per local
    /// worker.
    pub fn open(&self, args: &OpenArgs<'_>) -> Result<WorkerReaders, Error> {
        use crate::spec::plan::SourceConfig;
        match self {
            SourceConfig::File(c) => c.open(args),
            SourceConfig::Generator(c) => c.open(args),
            SourceConfig::Socket(c) => c.open(args),
            SourceConfig::Directory(c) => c.open(args),
            SourceConfig::Kafka(c) => c.open(args),
        }
    }
}
