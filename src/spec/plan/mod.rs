//! From spec to plan: names resolved, expressions bound, aggregates shared.
//!
//! [`types`] is the plan (the IR every layer above reads); [`compile`] and its clause
//! compilers (`io`, `lookup`, `windowed`, `derived`) make it from a spec, and `explain`
//! describes it for `logflow check`.
//!
//! Windowed analyses with the same window, deadline, filter and group keys share one
//! [`AggNode`]: the events are grouped once and every aggregate of those analyses is computed
//! in the same pass (response_time, error_rate, sla and service_popularity all group by
//! (1 min, service)). Each analysis then projects its columns from the node's accumulators.

mod alert;
pub mod compile;
mod derived;
mod explain;
pub mod io;
mod lookup;
mod schema;
pub mod types;
mod windowed;

pub use types::{
    bound_names, AccSpec, AggFunc, AggNode, AlertPlan, Analysis, AnalysisKind, CheckpointPlan,
    Detector, DirectoryConfig, Endpoint, Explode, FileConfig, GeneratorConfig, JobPlan,
    KafkaEndpoint, KafkaSinkConfig, KafkaSourceConfig, LookupPlan, NodeInput, Quantiles,
    SinkConfig, SocketConfig, SourceConfig, SourcePlan, SummaryPart, TableFormat, SESSION_BOUNDS,
};

#[cfg(test)]
mod tests;
