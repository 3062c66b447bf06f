//! Z-score detector: each row's value against the mean and sample standard deviation of the
//! same key's previous windows (SQL: `avg(x) over (partition by key order by window rows
//! between N preceding and 1 preceding)`).

use std::collections::VecDeque;

use timely::dataflow::StreamVec;

use crate::operators::in_key_order::{keyed_row, span_of, InKeyOrder};
use crate::record::{Row, Value};

/// Adds z-scores to rows.
pub trait ZScore<'scope> {
    /// Replaces each row's metrics by `value, baseline_mean, baseline_stddev, z_score`, where the
    /// baseline is the up-to-`history` previous rows of the same key (rows with a null value
    /// take a slot; nulls are ignored by the statistics). `z_score` is null when the value is
    /// null or the baseline has no spread (stddev null or 0). A key without rows for `history`
    /// windows (`slide_ms` apart) is forgotten: its state is dropped, its next row starts a new
    /// baseline.
    ///
    /// ```
    /// use timely::dataflow::operators::{ToStream, Capture, capture::Event};
    /// use logflow::operators::zscore::ZScore;
    /// use logflow::record::{Row, Value};
    ///
    /// let out = timely::example(|scope| {
    ///     [1.0, 2.0, 3.0, 10.0].into_iter().enumerate().map(|(i, v)| Row {
    ///         analysis: 0, start: i as i64 * 60, end: i as i64 * 60 + 60,
    ///         values: vec![Value::Str("api".into()), Value::Float(v)], retract: false,
    ///     })
    ///     .to_stream(scope).zscore(1, 1, 10, 60, 1).capture()
    /// });
    /// let rows: Vec<Row> = out.try_iter().flat_map(|e| match e { Event::Messages(_, d) => d, _ => vec![] }).collect();
    /// let last = rows.iter().find(|r| r.start == 180).unwrap();
    /// assert_eq!(last.values[2], Value::Float(2.0)); // mean of 1, 2, 3
    /// assert_eq!(last.values[4], Value::Float(8.0)); // (10 - 2) / 1
    /// ```
    fn zscore(
        self,
        key_len: usize,
        column: usize,
        history: usize,
        slide_ms: i64,
        analysis: u32,
    ) -> StreamVec<'scope, u64, Row>;
}

impl<'scope> ZScore<'scope> for StreamVec<'scope, u64, Row> {
    fn zscore(
        self,
        key_len: usize,
        column: usize,
        history: usize,
        slide_ms: i64,
        analysis: u32,
    ) -> StreamVec<'scope, u64, Row> {
        let span = span_of(history, slide_ms);
        self.in_key_order_metered(
            key_len,
            span,
            Some(crate::operators::in_key_order::history_meter::<
                VecDeque<Option<f64>>,
            >(
                analysis,
                key_len,
                history * std::mem::size_of::<Option<f64>>(),
            )),
            move |past: &mut VecDeque<Option<f64>>, row: Row, out| {
                let x = row.values.get(column).and_then(Value::as_f64);
                let (mean, stddev) = baseline(past.iter().copied());
                let z = match (x, mean, stddev) {
                    (Some(x), Some(m), Some(s)) if s > 0.0 => Value::Float((x - m) / s),
                    _ => Value::Null,
                };
                if past.len() == history {
                    past.pop_front();
                }
                past.push_back(x);
                let extra = [
                    row.values.get(column).cloned().unwrap_or(Value::Null),
                    mean.map_or(Value::Null, Value::Float),
                    stddev.map_or(Value::Null, Value::Float),
                    z,
                ];
                out.push(keyed_row(&row, key_len, analysis, extra));
            },
        )
    }
}

/// Mean and sample standard deviation of the non-null values.
fn baseline(past: impl Iterator<Item = Option<f64>>) -> (Option<f64>, Option<f64>) {
    let vals: Vec<f64> = past.flatten().collect();
    if vals.is_empty() {
        return (None, None);
    }
    let n = vals.len() as f64;
    let mean = vals.iter().sum::<f64>() / n;
    if vals.len() < 2 {
        return (Some(mean), None);
    }
    let var = vals.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n - 1.0);
    (Some(mean), Some(var.sqrt()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_keys_history_is_metered_for_its_analysis() {
        use timely::container::CapacityContainerBuilder;
        use timely::dataflow::operators::{Input, Probe};
        use timely::dataflow::{InputHandle, ProbeHandle};
        let of = |a: usize| {
            crate::operators::state::per_analysis()
                .into_iter()
                .find(|(x, _, _)| *x == a)
        };
        // Analysis 9203: no other test meters it.
        timely::execute_directly(move |worker| {
            let mut input = InputHandle::<u64, CapacityContainerBuilder<Vec<Row>>>::new();
            let probe = ProbeHandle::new();
            worker.dataflow::<u64, _, _>(|scope| {
                scope
                    .input_from(&mut input)
                    .zscore(1, 1, 3, 60, 9203)
                    .probe_with(&probe);
            });
            for (start, k) in [(0, "a"), (0, "b"), (60, "a"), (60, "c")] {
                input.send(Row {
                    analysis: 0,
                    start,
                    end: start + 60,
                    values: vec![Value::Str(k.into()), Value::Int(1)],
                    retract: false,
                });
            }
            input.advance_to(1);
            worker.step_while(|| probe.less_than(input.time()));
            let (_, keys, bytes) = of(9203).expect("metered");
            assert_eq!(keys, 3, "one history per key");
            // Each holds up to 3 values besides the key.
            assert!(bytes >= keys * 3 * 16, "{bytes} bytes");
        });
        assert_eq!(of(9203), Some((9203, 0, 0)), "ended: nothing held");
    }

    #[test]
    fn baseline_ignores_nulls() {
        let past = [Some(1.0), None, Some(3.0)];
        assert_eq!(baseline(past.into_iter()), (Some(2.0), Some(2f64.sqrt())));
        let one = [None, Some(3.0)];
        assert_eq!(baseline(one.into_iter()), (Some(3.0), None));
        assert_eq!(baseline(std::iter::empty()), (None, None));
    }
}
