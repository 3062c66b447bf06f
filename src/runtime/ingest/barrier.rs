//! The ingest's side of a checkpoint barrier: once its capability reaches the pending epoch it
//! saves its partitions' positions (once per epoch) and waits until the checkpoint completes,
//! that is until every worker's operators have saved theirs. What it saves is an
//! [`IngestState`]; a restored one gives the positions to read on from ([`resume_points`]).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::checkpoint::barrier::Checkpointer;
use crate::Error;

/// The pending barrier, as the ingest sees it (a [`Checkpointer`]).
pub(super) trait Epochs {
    /// The pending barrier: no record may be stamped at it or later until it completes.
    fn epoch(&self) -> u64;
    /// Whether barrier `epoch` is complete (the next one is then pending).
    fn passed(&self, epoch: u64) -> bool;
}

impl Epochs for Checkpointer {
    fn epoch(&self) -> u64 {
        Checkpointer::epoch(self)
    }

    fn passed(&self, epoch: u64) -> bool {
        Checkpointer::passed(self, epoch)
    }
}

/// What the ingest does in this activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum AtBarrier {
    /// Read on, stamping nothing at this barrier or later.
    Before(u64),
    /// At the barrier, which is not complete: read nothing, look again soon.
    Wait,
}

/// The epoch this worker's state was last saved at.
#[derive(Debug, Default)]
pub(super) struct Barrier {
    saved_at: Option<u64>,
}

impl Barrier {
    /// The barrier step for a capability at `cap`: `save(epoch)` saves this worker's state,
    /// when the capability first reaches `epoch`.
    pub(super) fn step(&mut self, ck: &impl Epochs, cap: u64, save: impl FnOnce(u64)) -> AtBarrier {
        let epoch = ck.epoch();
        if cap >= epoch {
            if self.saved_at != Some(epoch) {
                self.saved_at = Some(epoch);
                save(epoch);
            }
            if !ck.passed(epoch) {
                return AtBarrier::Wait;
            }
        }
        // Passed: the next barrier is pending now.
        AtBarrier::Before(ck.epoch())
    }
}

/// A partition's place in a checkpoint: where to read on, and the progress it had reached.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PartitionState {
    /// [`PartitionReader::describe`](crate::sources::PartitionReader::describe).
    pub name: String,
    /// The position of the next record ([`PartitionReader::resume_point`](crate::sources::PartitionReader::resume_point)).
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
        let state: IngestState = crate::checkpoint::codec::decode(bytes)
            .map_err(|e| Error::Checkpoint(format!("checkpoint: source positions: {e}")))?;
        for p in state {
            if let Some(r) = p.resume {
                points.insert(p.name, r);
            }
        }
    }
    Ok(points)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// A checkpoint whose barriers complete when the test says so.
    struct Fake {
        epoch: Cell<u64>,
        complete: Cell<bool>,
    }

    impl Epochs for Fake {
        fn epoch(&self) -> u64 {
            self.epoch.get()
        }

        fn passed(&self, epoch: u64) -> bool {
            if self.epoch.get() > epoch {
                return true;
            }
            if self.complete.replace(false) {
                self.epoch.set(epoch + 1_000);
                return true;
            }
            false
        }
    }

    #[test]
    fn saves_once_at_the_barrier_waits_for_it_then_reads_up_to_the_next() {
        let ck = Fake {
            epoch: Cell::new(1_000),
            complete: Cell::new(false),
        };
        let mut barrier = Barrier::default();
        let mut saved = Vec::new();

        // Before the barrier: read on, up to it; nothing saved.
        assert_eq!(
            barrier.step(&ck, 900, |e| saved.push(e)),
            AtBarrier::Before(1_000)
        );
        assert!(saved.is_empty());

        // At it: saved once, however often the ingest looks while it waits.
        assert_eq!(barrier.step(&ck, 1_000, |e| saved.push(e)), AtBarrier::Wait);
        assert_eq!(barrier.step(&ck, 1_000, |e| saved.push(e)), AtBarrier::Wait);
        assert_eq!(saved, [1_000]);

        // Complete: read on, up to the next barrier, without saving again.
        ck.complete.set(true);
        assert_eq!(
            barrier.step(&ck, 1_000, |e| saved.push(e)),
            AtBarrier::Before(2_000)
        );
        assert_eq!(
            barrier.step(&ck, 1_500, |e| saved.push(e)),
            AtBarrier::Before(2_000)
        );
        assert_eq!(saved, [1_000]);

        // At the next barrier: saved there.
        assert_eq!(barrier.step(&ck, 2_000, |e| saved.push(e)), AtBarrier::Wait);
        assert_eq!(saved, [1_000, 2_000]);
    }

    #[test]
    fn a_barrier_completed_elsewhere_is_passed_at_once() {
        // Every other worker saved and the manifest was written before this one arrived.
        let ck = Fake {
            epoch: Cell::new(1_000),
            complete: Cell::new(true),
        };
        let mut barrier = Barrier::default();
        let mut saved = Vec::new();
        assert_eq!(
            barrier.step(&ck, 1_000, |e| saved.push(e)),
            AtBarrier::Before(2_000)
        );
        assert_eq!(saved, [1_000]);
    }
}

#[cfg(test)]
mod kafka_layouts {
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use rdkafka::ClientConfig;

    use super::*;
    use crate::kafka::source::{open_placed, partition_name, EndAt, StartAt};
    use crate::kafka::KafkaConn;
    use crate::sources::{Placement, ReadStatus, RecordBatch};

    /// A checkpoint's partition positions reach whichever worker reads each partition on the
    /// layout restoring it: 1 old worker's part read on 2 processes x 2 workers, and 4 old
    /// workers' parts read on 1 x 2. Each new reader starts at its partition's saved offset.
    #[test]
    fn checkpoint_positions_go_to_the_partitions_new_readers_on_any_layout() {
        let cluster = MockCluster::new(1).unwrap();
        cluster.create_topic("t4", 4, 1).unwrap();
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", cluster.bootstrap_servers())
            .create()
            .unwrap();
        for i in 0..40 {
            let payload = format!("r{i}");
            let record = BaseRecord::<(), _>::to("t4")
                .payload(&payload)
                .partition(i % 4);
            producer.send(record).map_err(|(e, _)| e).unwrap();
        }
        producer.flush(Duration::from_secs(10)).unwrap();
        let conn = KafkaConn::new(&cluster.bootstrap_servers(), &[]);
        let saved = [3u64, 5, 7, 9];
        let state = |ids: &[i32]| {
            let s: Vec<PartitionState> = ids
                .iter()
                .map(|&id| PartitionState {
                    name: partition_name("t4", id),
                    resume: Some(saved[id as usize]),
                    max_ts: Some(1_000),
                })
                .collect();
            crate::checkpoint::codec::encode(&s).unwrap()
        };
        let one_worker = vec![state(&[0, 1, 2, 3])];
        let four_workers: Vec<Vec<u8>> = (0..4).map(|id| state(&[id])).collect();
        for (old, threads, processes) in [(&one_worker, 2, 2), (&four_workers, 2, 1)] {
            let parts: Vec<&[u8]> = old.iter().map(Vec::as_slice).collect();
            let resume = resume_points(&parts).unwrap();
            let mut seen = Vec::new();
            for process in 0..processes {
                let p = Placement {
                    threads,
                    processes,
                    process,
                };
                let end = EndAt::Offsets(Arc::new(Mutex::new(Some(vec![10; 4]))));
                let readers = open_placed(
                    &conn,
                    "g",
                    "t4",
                    &[0, 1, 2, 3],
                    p,
                    StartAt::Earliest,
                    &end,
                    &resume,
                )
                .unwrap();
                for (local, list) in readers.into_iter().enumerate() {
                    let worker = p.first() + local;
                    for mut reader in list {
                        let id = (0..4)
                            .find(|&id| reader.describe() == partition_name("t4", id))
                            .unwrap();
                        assert_eq!(id as usize % (threads * processes), worker);
                        assert_eq!(reader.resume_point(), Some(saved[id as usize]));
                        let mut batch = RecordBatch::default();
                        let deadline = Instant::now() + Duration::from_secs(10);
                        while reader.read(&mut batch, 64).unwrap() != ReadStatus::Ended {
                            assert!(Instant::now() < deadline, "partition {id}");
                            std::thread::sleep(Duration::from_millis(5));
                        }
                        let got: Vec<(String, u64)> = batch
                            .iter()
                            .map(|(b, pos, _)| (String::from_utf8_lossy(b).into_owned(), pos))
                            .collect();
                        let want: Vec<(String, u64)> = (saved[id as usize]..10)
                            .map(|o| (format!("r{}", o * 4 + id as u64), o))
                            .collect();
                        assert_eq!(got, want, "partition {id}");
                        seen.push(id);
                    }
                }
            }
            seen.sort();
            assert_eq!(seen, [0, 1, 2, 3], "every partition read once");
        }
    }
}
