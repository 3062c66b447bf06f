//! Kafka, in one place: the connection both sides share and its client properties
//! ([`conn`]), the source ([`source`], reading partitions in batches through [`queue`]), the
//! sink ([`sink`], taking over from another layout's in [`rescale`]), and the in-process cluster of the embedded demo ([`embedded`]).
//!
//! It sits above `sources` and `sinks`: its reader and writer implement their traits.

pub mod conn;
pub mod embedded;
mod queue;
pub mod rescale;
pub mod sink;
pub mod source;

pub use conn::*;
