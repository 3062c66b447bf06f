//! Microbenchmarks of the hot paths of a job (issue 7): parsing JSON and Apache records,
//! window aggregation (every aggregation node of the log-analysis job in one pass, as ingest
//! does it), and the exchange of partial aggregates between workers.
//!
//! `cargo bench --bench hot_paths` (or `scripts/bench micro`, which records the results in
//! BENCHMARKS.md). Throughput is in input events (parse, aggregate) or partials (exchange).

use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use logflow::agg::intern::{Interner, Rows};
use logflow::gen::{GenConfig, Generator, Kind};
use logflow::operators::pre_aggregate::{Batch, GroupTable, Partial};
use logflow::parse::Format;
use logflow::record::{key_hash, Event, FieldSet};
use logflow::spec::plan::JobPlan;

const EVENTS: u64 = 50_000;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn generated(kind: Kind) -> Vec<Vec<u8>> {
    Generator::new(GenConfig {
        kind,
        events: EVENTS,
        ..GenConfig::default()
    })
    .collect()
}

/// The generated log lines that parse, with the job's fields.
fn events(plan: &JobPlan) -> Vec<Event> {
    generated(Kind::Logs)
        .iter()
        .filter_map(|l| Format::Json.parse_fields(l, plan.used_fields()).ok())
        .collect()
}

fn job() -> JobPlan {
    logflow::spec::load(&root().join("dataflows/log-analysis.toml")).expect("log-analysis spec")
}

/// Parses every line, counting good records (so the work cannot be optimised away).
fn parse_all(format: Format, lines: &[Vec<u8>], keep: FieldSet) -> usize {
    lines
        .iter()
        .filter(|l| format.parse_fields(l, keep).is_ok())
        .count()
}

fn parsing(c: &mut Criterion) {
    let logs = generated(Kind::Logs);
    let users = generated(Kind::UserEvents);
    let job_fields = job().used_fields();
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Elements(logs.len() as u64));
    g.bench_function("json/all fields", |b| {
        b.iter(|| parse_all(Format::Json, &logs, FieldSet::ALL))
    });
    g.bench_function("json/log-analysis fields", |b| {
        b.iter(|| parse_all(Format::Json, &logs, job_fields))
    });
    g.throughput(Throughput::Elements(users.len() as u64));
    g.bench_function("user-events", |b| {
        b.iter(|| parse_all(Format::UserEvents, &users, FieldSet::ALL))
    });
    // The real Apache log the tests read (10,000 combined-format lines).
    let apache = root().join("tests/data/apache_logs");
    let text = std::fs::read(&apache).unwrap_or_else(|e| panic!("{}: {e}", apache.display()));
    let lines: Vec<Vec<u8>> = text.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
    g.throughput(Throughput::Elements(lines.len() as u64));
    g.bench_function("apache (tests/data/apache_logs)", |b| {
        b.iter(|| parse_all(Format::Apache, &lines, FieldSet::ALL))
    });
    g.finish();
}

/// Every aggregation node of the log-analysis job over one batch of events, as ingest
/// pre-aggregates it (one pass per event over all nodes, drained once per batch).
fn aggregation(c: &mut Criterion) {
    let plan = job();
    let events = events(&plan);
    let nodes: Vec<_> = plan.nodes.iter().cloned().map(Rc::new).collect();
    let progress = events.iter().map(|e| e.timestamp).min().unwrap_or(0);
    let mut g = c.benchmark_group("aggregate");
    g.throughput(Throughput::Elements(events.len() as u64));
    g.bench_function(format!("log-analysis ({} nodes)", nodes.len()), |b| {
        b.iter_batched_ref(
            || {
                let mut interner = Interner::default();
                let tables: Vec<_> = nodes
                    .iter()
                    .map(|n| GroupTable::new(Rc::clone(n), &mut interner))
                    .collect();
                (interner, tables)
            },
            |(interner, tables)| {
                // In blocks of 1,024 events, as the ingest folds them.
                let mut rows = Rows::default();
                let times = vec![progress; 1024];
                for block in events.chunks(1024) {
                    let refs: Vec<&Event> = block.iter().collect();
                    rows.clear();
                    for ev in &refs {
                        interner.read(ev, &mut rows);
                    }
                    let batch = Batch {
                        events: &refs,
                        progress: &times[..refs.len()],
                        rows: &rows,
                    };
                    for t in tables.iter_mut() {
                        t.absorb(&batch, 0..refs.len(), interner);
                    }
                }
                let n = tables
                    .iter_mut()
                    .map(|t| t.drain(interner).count())
                    .sum::<usize>();
                interner.clear();
                n
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

/// Partials of the log-analysis job moved between 2 worker threads by key, as the window merge
/// receives them (timely's in-process exchange: a `-w 2` run).
fn exchange(c: &mut Criterion) {
    use timely::dataflow::operators::vec::Input;
    use timely::dataflow::operators::{Exchange, Probe};

    let plan = job();
    let events = events(&plan);
    let mut partials: Vec<Partial> = Vec::new();
    for node in plan.nodes.iter().cloned().map(Rc::new) {
        let mut interner = Interner::default();
        let mut t = GroupTable::new(node, &mut interner);
        let refs: Vec<&Event> = events.iter().collect();
        let mut rows = Rows::default();
        for ev in &refs {
            interner.read(ev, &mut rows);
        }
        let times = vec![0; refs.len()];
        let batch = Batch {
            events: &refs,
            progress: &times,
            rows: &rows,
        };
        t.absorb(&batch, 0..refs.len(), &mut interner);
        partials.extend(t.drain(&interner));
    }
    let partials = std::sync::Arc::new(partials);
    let mut g = c.benchmark_group("exchange");
    g.throughput(Throughput::Elements(2 * partials.len() as u64));
    g.sample_size(10);
    g.bench_function("partials, 2 workers", |b| {
        b.iter_custom(|iters| {
            let partials = std::sync::Arc::clone(&partials);
            let elapsed = timely::execute(timely::Config::process(2), move |worker| {
                let (mut input, probe) = worker.dataflow::<u64, _, _>(|scope| {
                    let (input, stream) = scope.new_input::<Partial>();
                    let (probe, _) = stream.exchange(|p: &Partial| key_hash(&p.key)).probe();
                    (input, probe)
                });
                let start = Instant::now();
                for round in 0..iters {
                    input.send_batch(&mut partials.to_vec());
                    input.advance_to(round + 1);
                    while probe.less_than(input.time()) {
                        worker.step();
                    }
                }
                start.elapsed()
            })
            .expect("timely")
            .join()
            .into_iter()
            .map(|r| r.expect("worker"))
            .max()
            .unwrap_or(Duration::ZERO);
            elapsed
        })
    });
    g.finish();
}

criterion_group!(benches, parsing, aggregation, exchange);
criterion_main!(benches);
