//! Checkpoints for recovery: a job's consistent state, kept so that a restarted job continues
//! without losing or repeating results.
//!
//! - [`store`]: the checkpoint directory (one part per worker plus a manifest, atomic writes,
//!   checksums, fallback to the previous good checkpoint).
//! - [`barrier`]: checkpoints at barrier epochs every worker agrees on: operators save their
//!   state into slots once their frontier reaches the barrier, sources their positions.
//! - [`groups`]: key groups, how keyed records are routed and keyed state is split when a
//!   checkpoint is restored on another number of workers.
//! - [`process`]: a process's side: the directory and its lock, the checkpoint restored at
//!   start, the manifest, and where the next barrier goes.

pub mod barrier;
pub mod codec;
pub mod evolve;
pub mod groups;
pub mod process;
pub mod store;
