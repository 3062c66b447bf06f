//! The built-in generator as a source partition: synthetic logs or user events, in process,
//! for demos and benchmarks without any input file. With a `rate` it is Spark's rate source:
//! that many events per second of wall-clock time, with event times starting now.

use std::time::Instant;

use super::{PartitionReader, ReadStatus, RecordBatch};
use crate::gen::{GenConfig, Generator};
use crate::record::Origin;
use crate::Error;

/// Reads `events` generated records (one partition).
pub struct GeneratorReader {
    generator: Generator,
    line: Vec<u8>,
    seq: u64,
    /// (events per second, start)
    pace: Option<(f64, Instant)>,
}

impl GeneratorReader {
    pub fn new(cfg: GenConfig) -> Self {
        GeneratorReader {
            generator: Generator::new(cfg),
            line: Vec::with_capacity(512),
            seq: 0,
            pace: None,
        }
    }

    /// Moves past the first `events` events without returning them (a job restored from a
    /// checkpoint reads on from there; the generator is deterministic in its seed).
    pub fn skip(&mut self, events: u64) {
        while self.seq < events {
            self.line.clear();
            if !self.generator.next_line(&mut self.line) {
                return;
            }
            self.seq += 1;
        }
    }

    /// `rate` events per wall-clock second, with event times from now at that rate.
    pub fn paced(mut cfg: GenConfig, rate: f64) -> Self {
        cfg.start_ms = crate::parse::text::now_ms();
        cfg.event_rate = rate;
        let mut r = GeneratorReader::new(cfg);
        r.pace = Some((rate, Instant::now()));
        r
    }
}

impl PartitionReader for GeneratorReader {
    fn read(&mut self, batch: &mut RecordBatch, max: usize) -> Result<ReadStatus, Error> {
        let mut max = max;
        if let Some((rate, start)) = self.pace {
            let due = (start.elapsed().as_secs_f64() * rate) as u64;
            max = max.min(due.saturating_sub(self.seq) as usize);
            if max == 0 {
                return Ok(ReadStatus::Pending);
            }
        }
        for _ in 0..max {
            self.line.clear();
            if !self.generator.next_line(&mut self.line) {
                return Ok(if batch.is_empty() {
                    ReadStatus::Ended
                } else {
                    ReadStatus::Data
                });
            }
            self.seq += 1;
            batch.push(&self.line, self.seq, None);
        }
        Ok(ReadStatus::Data)
    }

    fn origin(&self, pos: u64) -> Origin {
        Origin::Generator { seq: pos }
    }

    fn describe(&self) -> String {
        "generator".into()
    }

    fn resume_point(&self) -> Option<u64> {
        Some(self.seq + 1)
    }
}

impl crate::spec::plan::GeneratorConfig {
    /// Starts the generator on the worker that owns the one partition, where a restored
    /// checkpoint left it.
    pub fn open(&self, args: &super::OpenArgs<'_>) -> Result<super::WorkerReaders, Error> {
        let mut readers = args.placement.empty();
        if let Some(w) = args.placement.owner(0) {
            let cfg = GenConfig {
                kind: match args.format {
                    crate::parse::Format::UserEvents => crate::gen::Kind::UserEvents,
                    _ => crate::gen::Kind::Logs,
                },
                events: self.events,
                seed: self.seed,
                ..GenConfig::default()
            };
            let mut reader = match self.rate {
                Some(r) => GeneratorReader::paced(cfg, r),
                None => GeneratorReader::new(cfg),
            };
            if let Some(&point) = args.resume.get(&reader.describe()) {
                reader.skip(point.saturating_sub(1));
            }
            readers[w].push(Box::new(reader));
        }
        Ok(readers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gen::Kind;

    #[test]
    fn a_paced_generator_keeps_to_its_rate() {
        let cfg = GenConfig {
            kind: Kind::UserEvents,
            events: 30,
            ..GenConfig::default()
        };
        let mut r = GeneratorReader::paced(cfg, 100.0);
        let started = Instant::now();
        let mut n = 0;
        loop {
            let mut batch = RecordBatch::default();
            match r.read(&mut batch, 1000).unwrap() {
                ReadStatus::Ended => break,
                _ => n += batch.len(),
            }
            assert!(n as f64 <= started.elapsed().as_secs_f64() * 100.0 + 1.0);
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(n, 30);
        assert!(started.elapsed().as_millis() >= 290);
    }
}
