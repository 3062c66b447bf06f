//! The job builder: the one place that knows how a [`JobPlan`] becomes a timely dataflow.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use timely::dataflow::operators::core::{Concatenate, Filter};
use timely::dataflow::operators::vec::Map;
use timely::dataflow::{Scope, StreamVec};

use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::operators::Inspect;

use super::ingest::{ingest, IngestConfig, IngestShared, LatenessRule, ProgressBoard};
use crate::checkpoint::{barrier, evolve};
use crate::metrics::Metrics;
use crate::operators::complete_aggregate::CompleteAggregate;
use crate::operators::intersect::Intersect;
use crate::operators::key_limit::{Limited, WindowAggregateCapped};
use crate::operators::lag::Lag;
use crate::operators::pre_aggregate::PreAggregate;
use crate::operators::session_aggregate::SessionAggregate;
use crate::operators::update_aggregate::{UpdateAggregate, Upserts};
use crate::operators::window_aggregate::{Closed, WindowAggregate};
use crate::operators::zscore::ZScore;
use crate::parse::Format;
use crate::record::{DeadLetter, LateEvent};
use crate::record::{Row, Value};
use crate::sources::PartitionReader;
use crate::spec::plan::{AggNode, AnalysisKind, Detector, JobPlan, NodeInput};

/// Ingest settings derived from the plan; `nodes` are the plan's aggregation nodes.
pub fn ingest_config(plan: &JobPlan, nodes: &[Rc<AggNode>]) -> IngestConfig {
    IngestConfig {
        format: plan.source.format,
        // `--format` may replace the spec's: its schema reads the format it was written for.
        schema: plan
            .schema
            .clone()
            .filter(|s| s.format == plan.source.format),
        access_slots: plan
            .access_slots()
            .filter(|_| matches!(plan.source.format, Format::Apache | Format::Nginx)),
        granularity_ms: plan.granularity_ms,
        idle_timeout: Duration::from_millis(plan.idle_timeout_ms as u64),
        max_future_ms: plan.max_future_ms,
        rules: plan
            .nodes
            .iter()
            .filter(|n| n.input == NodeInput::Events)
            .map(|n| LatenessRule {
                windows: n.windows,
                hold_ms: n.hold_ms,
                analyses: n
                    .analyses
                    .iter()
                    .map(|&a| (a as u32, plan.analyses[a].delay_ms))
                    .collect(),
            })
            .collect(),
        fields: plan.used_fields(),
        nodes: nodes
            .iter()
            .filter(|n| n.input == NodeInput::Events)
            .cloned()
            .collect(),
        batch: 65_536,
        lookups: plan.lookups.clone(),
        processing_time: plan.source.format.processing_time(),
    }
}

/// Result rows of every analysis, dead letters and late events.
pub type Outputs<'scope> = (
    StreamVec<'scope, u64, Row>,
    StreamVec<'scope, u64, DeadLetter>,
    StreamVec<'scope, u64, LateEvent>,
);

/// Builds the job's operators.
pub fn build<'scope>(
    scope: Scope<'scope, u64>,
    plan: &Arc<JobPlan>,
    readers: Vec<Box<dyn PartitionReader>>,
    shared: IngestShared,
    metrics: &Metrics,
) -> Outputs<'scope> {
    let board = ProgressBoard::default();
    let nodes: Vec<Rc<AggNode>> = plan.nodes.iter().cloned().map(Rc::new).collect();
    let (partials, dead, late, beacons) = ingest(
        scope,
        readers,
        ingest_config(plan, &nodes),
        shared,
        metrics,
        board.clone(),
    );
    // Every worker learns every worker's progress (for idle workers; see `ingest`).
    beacons.broadcast().inspect(move |(w, p)| {
        board.announce(*w, *p);
    });

    // One stream per analysis, in spec order (derived analyses read earlier ones).
    let mut streams: Vec<Option<StreamVec<'scope, u64, Row>>> = vec![None; plan.analyses.len()];
    let mut outputs: Vec<StreamVec<'scope, u64, Row>> = Vec::new();
    let read_by_others: Vec<usize> = plan
        .analyses
        .iter()
        .flat_map(|a| match &a.kind {
            AnalysisKind::Derived {
                from,
                detector: Detector::Intersect { with },
            } => vec![*from, *with],
            AnalysisKind::Derived { from, .. } => vec![*from],
            _ => vec![],
        })
        .collect();
    let key_lens: Rc<Vec<usize>> = Rc::new(plan.analyses.iter().map(|a| a.key_len).collect());
    // The partials of the nodes that read events come from ingest, in node order.
    let mut from_ingest = partials.into_iter();
    for (n, node) in nodes.into_iter().enumerate() {
        // Its operators' checkpoint slots are named by the analyses of the pass.
        let owners: Vec<String> = node
            .analyses
            .iter()
            .map(|&a| plan.analyses[a].name.clone())
            .collect();
        let layout = evolve::node_layout(plan, n);
        let projections: Vec<_> = node
            .analyses
            .iter()
            .map(|&a| {
                let an = &plan.analyses[a];
                let AnalysisKind::Windowed { outputs, .. } = &an.kind else {
                    unreachable!("nodes only hold windowed analyses")
                };
                (a as u32, an.key_len, outputs.clone(), an.having.clone())
            })
            .collect();
        let project = move |w: Closed<'_>, out: &mut Vec<Row>| {
            for (analysis, key_len, exprs, having) in &projections {
                // Scratch row: [keys, outputs, node accumulators] (see `plan`).
                let mut scratch: Vec<Value> =
                    Vec::with_capacity(key_len + exprs.len() + w.values.len());
                scratch.extend(w.key.iter().cloned());
                scratch.resize(key_len + exprs.len(), Value::Null);
                scratch.extend(w.values.iter().cloned());
                for (j, e) in exprs.iter().enumerate() {
                    scratch[key_len + j] = e.eval(&scratch[..]);
                }
                scratch.truncate(key_len + exprs.len());
                if having.as_ref().is_some_and(|h| !h.test(&scratch[..])) {
                    continue;
                }
                out.push(Row {
                    analysis: *analysis,
                    start: w.start,
                    end: w.end,
                    values: scratch,
                    retract: false,
                });
            }
        };
        let input = match node.input {
            NodeInput::Events => match from_ingest.next() {
                Some(p) => p,
                None => unreachable!("ingest pre-aggregates every node that reads events"),
            },
            NodeInput::Late => late
                .clone()
                .map(|l: LateEvent| l.event)
                .pre_aggregate(Rc::clone(&node)),
        };
        // Analyses share a node only with the same `max_keys`.
        let max_keys = node
            .analyses
            .first()
            .and_then(|&a| plan.analyses[a].max_keys);
        let rows = barrier::owned_by(&owners, layout, || {
            if let (Some(max), Some(overflow)) = (max_keys, plan.overflow_analysis()) {
                let names: Vec<String> = node
                    .analyses
                    .iter()
                    .map(|&a| plan.analyses[a].name.clone())
                    .collect();
                let reason = Value::Str(
                    format!("beyond the first {max} keys of the window (max_keys)").into(),
                );
                let overflow = overflow as u32;
                input
                    .window_aggregate_capped(Rc::clone(&node), max)
                    .flat_map(move |l: Limited| {
                        let mut out = Vec::new();
                        match l.values {
                            Some(mut values) => project(
                                Closed {
                                    start: l.start,
                                    end: l.end,
                                    key: l.key,
                                    values: &mut values,
                                },
                                &mut out,
                            ),
                            None => out.extend(names.iter().map(|name| Row {
                                analysis: overflow,
                                start: l.start,
                                end: l.end,
                                values: vec![
                                    Value::Str(name.as_str().into()),
                                    Value::List(l.key.clone()),
                                    reason.clone(),
                                ],
                                retract: false,
                            })),
                        }
                        out
                    })
            } else if let Some(trigger) = node.complete {
                input.complete_aggregate(Rc::clone(&node), trigger.max(1) as u64, project)
            } else if node.windows.session && node.update {
                input
                    .session_updates(Rc::clone(&node), project)
                    .upserts(Rc::clone(&key_lens))
            } else if node.windows.session {
                input.session_aggregate(Rc::clone(&node), project)
            } else if node.update {
                input
                    .update_aggregate(Rc::clone(&node), project)
                    .upserts(Rc::clone(&key_lens))
            } else {
                input.window_aggregate(Rc::clone(&node), project)
            }
        });
        for &a in node.analyses.iter().filter(|a| read_by_others.contains(a)) {
            let id = a as u32;
            streams[a] = Some(rows.clone().filter(move |r: &Row| r.analysis == id));
        }
        outputs.push(rows);
    }
    // What each analysis's state depends on: a derived one's slot layout.
    let defs = evolve::analyses_of(plan);
    for (idx, an) in plan.analyses.iter().enumerate() {
        let AnalysisKind::Derived { from, detector } = &an.kind else {
            continue;
        };
        let Some(input) = streams[*from].clone() else {
            unreachable!("`from` refers to an earlier analysis")
        };
        let id = idx as u32;
        let key_len = an.key_len;
        let owners = [an.name.clone()];
        let layout = defs
            .iter()
            .find(|d| d.name == an.name)
            .map_or(0, evolve::AnalysisDef::layout);
        let derived = barrier::owned_by(&owners, layout, || match detector {
            Detector::Pass => input.map(move |mut r: Row| {
                r.analysis = id;
                r
            }),
            Detector::ZScore { column, history } => {
                input.zscore(key_len, *column, *history, plan.slide_of(*from), id)
            }
            Detector::Lag { column, history } => {
                input.lag(key_len, *column, *history, plan.slide_of(*from), id)
            }
            Detector::Intersect { with } => {
                let Some(other) = streams[*with].clone() else {
                    unreachable!("`with` refers to an earlier analysis")
                };
                input.intersect(
                    other,
                    key_len,
                    id,
                    plan.horizon_of(*with),
                    plan.horizon_of(*from),
                )
            }
        });
        let derived = match an.having.clone() {
            Some(h) => derived.filter(move |r: &Row| h.test(&r.values[..])),
            None => derived,
        };
        if read_by_others.contains(&idx) {
            streams[idx] = Some(derived.clone());
        }
        outputs.push(derived);
    }
    (scope.concatenate(outputs), dead, late)
}
