//! logflow: real-time log analytics on timely dataflow.
//!
//! The crate is laid out by concern, in floors. A module uses only modules on lower floors,
//! never one on its own floor or above (`tests/layers.rs` checks every `crate::` path in
//! `src/` against this table, which it reads from here):
//!
//! | floor | modules | concern |
//! |---:|---|---|
//! | 14 | [`cli`] | the command line |
//! | 13 | [`control`] | the control plane: jobs submitted to a running cluster |
//! | 12 | [`runtime`] | builds and runs the timely dataflow of a job |
//! | 11 | [`metrics`] | Prometheus metrics, progress line, result gauges |
//! | 10 | [`kafka`] | Kafka: the connection, source, sink and the embedded demo's cluster |
//! | 9 | [`sources`], [`sinks`] | records in (files, sockets, generator, lookup tables) and out |
//! | 8 | [`operators`] | the dataflow operators, each an extension trait on timely streams |
//! | 7 | [`checkpoint`] | checkpoint barriers and the state store |
//! | 6 | [`agg`] | the accumulator kernel: mergeable aggregates, interned keys |
//! | 5 | [`spec`] | job specs and the plan they compile to |
//! | 4 | [`parse`] | bytes to [`record::Event`]s, per input format |
//! | 3 | [`gen`] | the synthetic log and user-event generator |
//! | 2 | [`record`] | the record model: events, values, fields, result rows |
//! | 1 | [`time`] | event time: civil dates, RFC 3339, durations, window assignment |
//! | 0 | [`error`] | the crate's error type |
//!
//! The modules the binary alone uses (the job's engine and I/O) are `pub(crate)`; the public
//! ones (the record model, parsers, specs and plans, the accumulator kernel, the operators and
//! the generator) are what benchmarks, tests and doc examples build on, and are documented.

#![warn(missing_docs)]

pub mod agg;
pub(crate) mod checkpoint;
pub mod cli;
pub(crate) mod control;
pub mod error;
pub mod gen;
pub(crate) mod kafka;
pub(crate) mod metrics;
pub mod operators;
pub mod parse;
pub mod record;
pub(crate) mod runtime;
pub(crate) mod sinks;
pub(crate) mod sources;
pub mod spec;
pub mod time;

pub use error::{Error, KafkaCause, Result};
