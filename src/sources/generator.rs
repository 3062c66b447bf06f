//! The built-in generator as a source partition: synthetic logs or user events, in process,
//! for demos and benchmarks without any input file.

use super::{Origin, PartitionReader, ReadStatus, RecordBatch};
use crate::gen::{GenConfig, Generator};
use crate::Error;

/// Reads `events` generated records (one partition).
pub struct GeneratorReader {
    generator: Generator,
    line: Vec<u8>,
    seq: u64,
}

impl GeneratorReader {
    pub fn new(cfg: GenConfig) -> Self {
        GeneratorReader {
            generator: Generator::new(cfg),
            line: Vec::with_capacity(512),
            seq: 0,
        }
    }
}

impl PartitionReader for GeneratorReader {
    fn read(&mut self, batch: &mut RecordBatch, max: usize) -> Result<ReadStatus, Error> {
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
}
