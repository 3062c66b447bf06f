//! Lag detector: each row's value against the same key's previous window present in the
//! output (SQL `lag(x, 1) over (partition by key order by window)`).

use timely::dataflow::StreamVec;

use crate::operators::in_key_order::{keyed_row, span_of, InKeyOrder};
use crate::record::{Row, Value};

/// Adds the previous value and the change to rows.
pub trait Lag<'scope> {
    /// Replaces each row's metrics by `value, prev_value, value_change`, the previous value
    /// being the key's previous row if it is at most `history` windows (`slide_ms` apart) back;
    /// otherwise (the key's first row, or a key back after a gap) both are null. A key without
    /// rows for `history` windows holds no state.
    ///
    /// ```
    /// use timely::dataflow::operators::{ToStream, Capture, capture::Event};
    /// use logflow::operators::lag::Lag;
    /// use logflow::record::{Row, Value};
    ///
    /// let out = timely::example(|scope| {
    ///     [5.0, 20.0].into_iter().enumerate().map(|(i, v)| Row {
    ///         analysis: 0, start: i as i64 * 60, end: i as i64 * 60 + 60,
    ///         values: vec![Value::Str("api".into()), Value::Float(v)], retract: false,
    ///     })
    ///     .to_stream(scope).lag(1, 1, 1, 60, 1).capture()
    /// });
    /// let rows: Vec<Row> = out.try_iter().flat_map(|e| match e { Event::Messages(_, d) => d, _ => vec![] }).collect();
    /// let second = rows.iter().find(|r| r.start == 60).unwrap();
    /// assert_eq!(second.values[2..], [Value::Float(5.0), Value::Float(15.0)]);
    /// ```
    fn lag(
        self,
        key_len: usize,
        column: usize,
        history: usize,
        slide_ms: i64,
        analysis: u32,
    ) -> StreamVec<'scope, u64, Row>;
}

impl<'scope> Lag<'scope> for StreamVec<'scope, u64, Row> {
    fn lag(
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
            Some(
                crate::operators::in_key_order::history_meter::<Option<Value>>(
                    analysis, key_len, 0,
                ),
            ),
            move |prev: &mut Option<Value>, row: Row, out| {
                let x = row.values.get(column).cloned().unwrap_or(Value::Null);
                let before = prev.replace(x.clone()).unwrap_or(Value::Null);
                let change = match (x.as_f64(), before.as_f64()) {
                    (Some(a), Some(b)) => match (&x, &before) {
                        (Value::Int(a), Value::Int(b)) => {
                            a.checked_sub(*b).map_or(Value::Null, Value::Int)
                        }
                        _ => Value::Float(a - b),
                    },
                    _ => Value::Null,
                };
                out.push(keyed_row(&row, key_len, analysis, [x, before, change]));
            },
        )
    }
}
