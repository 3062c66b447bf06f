//! Checkpoints for recovery (issue 6): where a job's consistent state is kept so a restarted
//! job continues without losing or repeating results.
//!
//! Built so far: [`store`], the checkpoint directory (one part per worker plus a manifest,
//! atomic writes, checksums, fallback to the previous good checkpoint). Still to come, in this
//! order: operator state and source offsets serialized at watermark epochs (every worker at
//! the same timely time), restore on start, a Kafka transactional sink committing results
//! with the checkpoint, and restarts under `launch --restart` / the cluster.

pub mod store;
