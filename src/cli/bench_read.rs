//! `logflow bench-read` (hidden): reads a topic from the beginning to its end offsets as of
//! start, as fast as the job's own Kafka client path can (the same consumer settings, one
//! consumer per worker with the same partition split, the same non-blocking partition
//! readers), and does nothing else. `scripts/bench kafka` runs it next to the job: its rate
//! is what the broker and client deliver on this machine, the ceiling for the job.

use std::io::Write;
use std::time::{Duration, Instant};

use crate::kafka::source::{open_partitions, EndAt, StartAt};
use crate::kafka::{cli_brokers, KafkaConn};
use crate::sources::{ReadStatus, RecordBatch};
use crate::Error;

#[derive(clap::Args, Debug)]
pub struct BenchReadArgs {
    /// The topic to read.
    #[arg(long)]
    topic: String,
    /// Kafka bootstrap servers (default: $LOGFLOW_BROKERS, else 127.0.0.1:9092).
    #[arg(long)]
    brokers: Option<String>,
    /// Reader threads; partition i is read by thread i % N, as the job's workers split them.
    #[arg(short = 'w', long = "threads", default_value_t = 2)]
    threads: usize,
}

/// What one reader thread read.
#[derive(Default)]
struct Read {
    records: u64,
    bytes: u64,
}

pub fn bench_read(args: BenchReadArgs) -> Result<(), Error> {
    if args.threads == 0 {
        return Err(super::usage("-w must be at least 1"));
    }
    let brokers = cli_brokers(args.brokers.as_deref());
    let conn = KafkaConn::new(&brokers, &[]);
    let timeout = Duration::from_secs(30);
    let partitions = conn.partitions(&args.topic, timeout)?;
    let end = EndAt::current_end(&conn, &args.topic, &partitions, StartAt::Earliest, timeout)?;
    let started = Instant::now();
    let threads: Vec<_> = (0..args.threads)
        .map(|t| {
            let owned: Vec<i32> = partitions
                .iter()
                .enumerate()
                .filter(|(i, _)| i % args.threads == t)
                .map(|(_, p)| *p)
                .collect();
            let readers = open_partitions(
                &conn,
                "logflow-bench-read",
                &args.topic,
                &owned,
                StartAt::Earliest,
                end.clone(),
                &|_| None,
            );
            std::thread::spawn(move || read_all(readers?))
        })
        .collect();
    let mut total = Read::default();
    for t in threads {
        let read = t
            .join()
            .map_err(|_| Error::Internal("a reader thread panicked".into()))??;
        total.records += read.records;
        total.bytes += read.bytes;
    }
    let secs = started.elapsed().as_secs_f64();
    let mut out = std::io::stdout().lock();
    let written = writeln!(
        out,
        "{{\"records\":{},\"bytes\":{},\"seconds\":{secs:.3},\"records_per_second\":{:.0}}}",
        total.records,
        total.bytes,
        total.records as f64 / secs.max(1e-9)
    );
    super::stdout_result(written)
}

/// Reads every partition to its end, in turns, in batches of the job's size.
fn read_all(mut readers: Vec<Box<dyn crate::sources::PartitionReader>>) -> Result<Read, Error> {
    let mut read = Read::default();
    let mut batch = RecordBatch::default();
    let per_part = 65_536 / readers.len().max(1);
    while !readers.is_empty() {
        let mut got = false;
        let mut i = 0;
        while i < readers.len() {
            batch.clear();
            match readers[i].read(&mut batch, per_part)? {
                ReadStatus::Ended => {
                    readers.swap_remove(i);
                    continue;
                }
                ReadStatus::Data => got = true,
                ReadStatus::Pending => {}
            }
            read.records += batch.len() as u64;
            read.bytes += batch.data.len() as u64;
            i += 1;
        }
        if !got {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    Ok(read)
}
