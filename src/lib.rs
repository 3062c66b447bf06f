//! logflow: real-time log analytics on timely dataflow.
//!
//! The crate is laid out by concern: [`parse`] turns bytes into [`record::Event`]s, [`spec`]
//! reads job specs, [`operators`] holds the reusable dataflow operators (windows, aggregates,
//! detectors), [`sources`] and [`sinks`] move records in and out, [`runtime`] builds and runs
//! the timely dataflow, and [`cli`] is the command line.

pub mod error;
pub mod gen;
pub mod kafka;
pub mod metrics;
pub mod parse;
pub mod record;

pub use error::{Error, Result};
pub mod checkpoint;
pub mod cli;
pub mod control;
pub mod operators;
pub mod runtime;
pub mod sinks;
pub mod sources;
pub mod spec;
pub mod time;
