//! Local pre-aggregation: every batch of events at one timestamp becomes one partial aggregate
//! per (window, key), so only partials cross workers (as a combiner does in MapReduce).

use std::collections::HashMap;
use std::rc::Rc;

use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::StreamVec;

use crate::operators::aggregate::Acc;
use crate::record::{Event, Key};
use crate::spec::plan::AggNode;

/// A partial aggregate of one window and key, as exchanged between workers.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Partial {
    pub start: i64,
    pub key: Key,
    pub accs: Vec<Acc>,
}

/// Groups events by a node's windows and keys, worker-locally.
pub trait PreAggregate<'scope> {
    /// One [`Partial`] per (window, key) per timestamp, for the windows of `node` still open at
    /// that timestamp (an event's time is its partition's event-time progress, see
    /// `runtime::ingest`); events failing the node's filter are dropped.
    ///
    /// ```
    /// use std::rc::Rc;
    /// use timely::dataflow::operators::{ToStream, Capture, capture::Event as Msg};
    /// use logflow::operators::aggregate::{AccSpec, AggFunc};
    /// use logflow::operators::pre_aggregate::PreAggregate;
    /// use logflow::operators::window::Windows;
    /// use logflow::record::{Event, Field, Value};
    /// use logflow::spec::plan::AggNode;
    ///
    /// let out = timely::example(move |scope| {
    ///     let node = Rc::new(AggNode {
    ///         windows: Windows::tumbling(60_000),
    ///         hold_ms: 0,
    ///         filter: None,
    ///         keys: vec![Field::Service],
    ///         accs: vec![AccSpec { func: AggFunc::Count, arg: None }],
    ///         analyses: vec![],
    ///         update: false,
    ///         input: Default::default(),
    ///     });
    ///     let events = (0..3).map(|i| Event { timestamp: 30_000 * i, service: Some("api".into()), ..Event::default() });
    ///     events.to_stream(scope).pre_aggregate(node).capture()
    /// });
    /// let mut counts: Vec<_> = out.try_iter()
    ///     .flat_map(|e| match e { Msg::Messages(_, d) => d, _ => vec![] })
    ///     .map(|p| (p.start, p.accs[0].clone().finish()))
    ///     .collect();
    /// counts.sort();
    /// assert_eq!(counts, vec![(0, Value::Int(2)), (60_000, Value::Int(1))]);
    /// ```
    fn pre_aggregate(self, node: Rc<AggNode>) -> StreamVec<'scope, u64, Partial>;
}

impl<'scope> PreAggregate<'scope> for StreamVec<'scope, u64, Event> {
    fn pre_aggregate(self, node: Rc<AggNode>) -> StreamVec<'scope, u64, Partial> {
        self.unary(Pipeline, "PreAggregate", move |_, _| {
            let mut groups: HashMap<(i64, Key), Vec<Acc>> = HashMap::new();
            move |input, output| {
                input.for_each_stamp(|cap, data| {
                    let progress = crate::operators::time_of(&cap) as i64;
                    for batch in data {
                        for ev in batch.drain(..) {
                            if let Some(f) = &node.filter {
                                if !f.test(&ev) {
                                    continue;
                                }
                            }
                            let key: Key =
                                node.keys.iter().map(|f| ev.get(*f).to_owned()).collect();
                            for start in
                                node.windows
                                    .open_starts(ev.timestamp, node.hold_ms, progress)
                            {
                                let accs =
                                    groups.entry((start, key.clone())).or_insert_with(|| {
                                        node.accs.iter().map(|a| a.new_state()).collect()
                                    });
                                for (spec, acc) in node.accs.iter().zip(accs.iter_mut()) {
                                    spec.update(acc, &ev);
                                }
                            }
                        }
                    }
                    output.session(&cap).give_iterator(
                        groups
                            .drain()
                            .map(|((start, key), accs)| Partial { start, key, accs }),
                    );
                });
            }
        })
    }
}
