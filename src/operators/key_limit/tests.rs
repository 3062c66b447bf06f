use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use timely::dataflow::operators::vec::Input;
use timely::dataflow::operators::{Inspect, Probe};

use super::*;
use crate::gen::rng::Rng;
use crate::operators::window_aggregate::{Admit, Bound};
use crate::record::Field;
use crate::time::window::Windows;

/// `count()` per user over `windows`, capped at `max_keys`, on `workers` workers fed the
/// events round robin in batches of `batch` (each batch at its own time): every output item.
fn run(
    events: &[(i64, String)],
    windows: Windows,
    max_keys: usize,
    workers: usize,
    batch: usize,
) -> Vec<Limited> {
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&got);
    let events = events.to_vec();
    timely::execute(timely::Config::process(workers), move |worker| {
        let node = Rc::new(AggNode {
            keys: vec![Field::UserId],
            ..AggNode::count_by_service(windows, 0)
        });
        let sink = Arc::clone(&sink);
        let (mut input, probe) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, events) = scope.new_input::<Event>();
            let (probe, _) = events
                .window_aggregate_capped(node, max_keys)
                .inspect(move |l: &Limited| sink.lock().expect("sink").push(l.clone()))
                .probe();
            (input, probe)
        });
        let (me, peers) = (worker.index(), worker.peers());
        for (i, chunk) in events.chunks(batch).enumerate() {
            if i % peers == me {
                for (ts, user) in chunk {
                    input.send(Event {
                        timestamp: *ts,
                        user_id: Some(user.as_str().into()),
                        ..Event::default()
                    });
                }
            }
            input.advance_to(i as u64 + 1);
            worker.step();
        }
        input.advance_to(u64::MAX);
        drop(input);
        worker.step_while(|| !probe.done());
    })
    .expect("timely");
    let mut got = std::mem::take(&mut *got.lock().expect("got"));
    got.sort_by(|a, b| (a.start, &a.key).cmp(&(b.start, &b.key)));
    got
}

/// The expected output, computed without the operators: per window start, the count of each
/// key; the first `max_keys` keys kept with their count, the others overflowed.
fn oracle(events: &[(i64, String)], size: i64, slide: i64, max_keys: usize) -> Vec<Limited> {
    let mut counts: BTreeMap<(i64, String), i64> = BTreeMap::new();
    for (ts, user) in events {
        // Window starts covering ts: multiples of slide in (ts - size, ts].
        let last = ts.div_euclid(slide) * slide;
        let mut start = last;
        while start > ts - size {
            *counts.entry((start, user.clone())).or_default() += 1;
            start -= slide;
        }
    }
    let mut rank: BTreeMap<i64, usize> = BTreeMap::new();
    counts
        .into_iter()
        .map(|((start, user), n)| {
            let r = rank.entry(start).or_default();
            *r += 1;
            Limited {
                start,
                end: start + size,
                key: vec![Value::Str(user.as_str().into())],
                values: (*r <= max_keys).then(|| vec![Value::Int(n)]),
            }
        })
        .collect()
}

/// A flood of random keys over a few windows, some keys repeated (so kept keys have counts
/// above one and overflowed keys come back after they overflowed).
fn flood(n: usize, seed: u64) -> Vec<(i64, String)> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|i| {
            let ts = (i as i64) * 180_000 / n as i64; // three minutes of event time, in order
            let user = format!("u{:05}", rng.next_u64() % 3_000);
            (ts, user)
        })
        .collect()
}

#[test]
fn random_key_flood_keeps_the_first_keys_exactly_for_any_layout() {
    let events = flood(20_000, 7);
    for (size, slide) in [(60_000, 60_000), (60_000, 30_000)] {
        let windows = Windows::sliding(size, slide);
        let expected = oracle(&events, size, slide, 100);
        let overflowed = expected.iter().filter(|l| l.values.is_none()).count();
        assert!(overflowed > 5_000, "the flood overflows: {overflowed}");
        for (workers, batch) in [(1, 20_000), (1, 97), (3, 97), (4, 1_000)] {
            let got = run(&events, windows, 100, workers, batch);
            assert_eq!(
                got.len(),
                expected.len(),
                "one item per window and key ({workers} workers, batches of {batch})"
            );
            assert!(
                got == expected,
                "{workers} workers, batches of {batch}, slide {slide}: kept keys and counts"
            );
        }
    }
}

#[test]
fn admit_holds_the_first_keys_and_evicts_the_largest() {
    let k = |s: &str| vec![Value::Str(s.into())];
    let mut b = Bound::default();
    assert_eq!(b.admit(2, &k("m")), Admit::Kept);
    assert_eq!(b.admit(2, &k("z")), Admit::Kept);
    assert_eq!(b.admit(2, &k("m")), Admit::Kept);
    assert_eq!(b.admit(2, &k("a")), Admit::Evicts(k("z")));
    assert_eq!(b.admit(2, &k("z")), Admit::Overflow);
    assert_eq!(b.admit(2, &k("n")), Admit::Overflow);
    assert_eq!(b.admit(2, &k("b")), Admit::Evicts(k("m")));
    assert_eq!(
        b.kept,
        [k("a"), k("b")].into_iter().collect::<BTreeSet<_>>()
    );
}

#[test]
fn cut_ranks_keys_within_each_window() {
    let l = |start: i64, key: &str| Limited {
        start,
        end: start + 60,
        key: vec![Value::Str(key.into())],
        values: Some(vec![]),
    };
    let mut rows = vec![l(60, "b"), l(0, "c"), l(0, "a"), l(60, "a"), l(0, "b")];
    cut(&mut rows, 2);
    let kept: Vec<_> = rows
        .iter()
        .map(|r| (r.start, r.key[0].clone(), r.values.is_some()))
        .collect();
    let s = |x: &str| Value::Str(x.into());
    assert_eq!(
        kept,
        vec![
            (0, s("a"), true),
            (0, s("b"), true),
            (0, s("c"), false),
            (60, s("a"), true),
            (60, s("b"), true),
        ]
    );
}
