//! An exactly-once Kafka sink restored from a checkpoint of another layout.
//!
//! Each worker of a layout commits its results in transactions under its own transactional id
//! (`logflow-<job>-<w>of<n>`) with a marker "worker w's results below progress t are committed"
//! ([`super::sink`]). On another layout those ids are nobody's: the new run fences each of them
//! (`init_transactions`, which aborts a transaction a killed worker left open) before reading
//! their markers, so the markers are final. A result is then skipped when the old worker that
//! would have written it had committed its progress time: results are deterministic in their
//! progress time and the worker that writes a result is its key group's owner (or the window's,
//! or worker 0), so which old worker wrote it follows from the old layout alone.
//!
//! Those markers stay needed until the new layout's progress passes them: each new worker keeps
//! them in its checkpoint part ([`EarlierLayout`]), so a restart of the new layout, or the next
//! rescale, before then still skips what the old layout committed.

use serde::{Deserialize, Serialize};

use super::conn::KafkaConn;
use super::sink::{committed_markers, marker_key, transactional_id, TXN_TIMEOUT};
use crate::checkpoint::groups::KeyRoute;
use crate::record::{Row, Value};
use crate::spec::plan::{AnalysisKind, Detector, JobPlan};
use crate::{Error, KafkaCause};

/// What the workers of an earlier layout committed: its key groups, and per old worker the
/// progress below which its results are in the output topics (its last marker; 0 without one).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EarlierLayout {
    pub key_groups: u32,
    pub markers: Vec<u64>,
}

impl EarlierLayout {
    /// Whether this layout committed `row`, which is written at progress `t`.
    pub fn committed(&self, plan: &JobPlan, row: &Row, t: u64) -> bool {
        let route = KeyRoute::new(self.key_groups, self.markers.len());
        let writer = writer(plan, row, &route);
        self.markers.get(writer).is_some_and(|&upto| t < upto)
    }

    /// Whether a checkpoint at `upto` still needs it: a restore from there recomputes only
    /// results at `upto` and later.
    pub fn needed_after(&self, upto: u64) -> bool {
        self.markers.iter().any(|&m| m > upto)
    }
}

/// The worker of `route` that writes `row` to a per-worker sink: the one its last keyed
/// exchange sent it to (mirrors the operators' routing: the window merges and detectors route
/// by the row's key, a `max_keys` cut and its overflow by the window start, a complete-mode
/// table lives on worker 0; a plain filter of another analysis stays where that one's rows are).
pub fn writer(plan: &JobPlan, row: &Row, route: &KeyRoute) -> usize {
    let mut a = row.analysis as usize;
    // `from` is always an earlier analysis: at most one step per analysis.
    for _ in 0..=plan.analyses.len() {
        let Some(an) = plan.analyses.get(a) else {
            return 0;
        };
        let by_key = || route.key_worker(row.key(an.key_len)) as usize;
        let by_start = || route.key_worker(&[Value::Int(row.start)]) as usize;
        match &an.kind {
            AnalysisKind::Derived {
                from,
                detector: Detector::Pass,
            } => a = *from,
            AnalysisKind::Derived { .. } => return by_key(),
            AnalysisKind::Overflow => return by_start(),
            AnalysisKind::Windowed { .. } if an.complete => return 0,
            AnalysisKind::Windowed { .. } if an.max_keys.is_some() => return by_start(),
            AnalysisKind::Windowed { .. } => return by_key(),
        }
    }
    0
}

/// Takes over from the `workers` workers of a checkpoint's layout (with `key_groups` key
/// groups): fences each of their transactional ids, then reads what each had committed.
pub fn take_over(
    conn: &KafkaConn,
    plan: &JobPlan,
    workers: usize,
    key_groups: u32,
) -> Result<EarlierLayout, Error> {
    use rdkafka::producer::{BaseProducer, Producer};
    for w in 0..workers {
        let id = transactional_id(&plan.name, w, workers);
        let producer: BaseProducer = conn
            .client_config()
            .set("transactional.id", &id)
            .set(
                "transaction.timeout.ms",
                TXN_TIMEOUT.as_millis().to_string(),
            )
            .create()
            .map_err(|e| conn.error("producer", &e))?;
        producer.init_transactions(TXN_TIMEOUT).map_err(|e| {
            Error::kafka(
                KafkaCause::Client,
                format!("fencing the checkpoint layout's transactional id `{id}`: {e}"),
            )
        })?;
    }
    let keys: Vec<String> = (0..workers).map(|w| marker_key(w, workers)).collect();
    let topic = plan.commits_topic();
    let found = committed_markers(conn, &topic, &keys)?;
    let markers: Vec<u64> = keys
        .iter()
        .map(|k| found.get(k).copied().unwrap_or(0))
        .collect();
    tracing::info!(
        "logflow: taking over from the checkpoint's {workers} workers: their transactional ids \
         are fenced (open transactions aborted); results they committed (progress below \
         {markers:?} in `{topic}`) are not written again"
    );
    Ok(EarlierLayout {
        key_groups,
        markers,
    })
}

/// The earlier layouts a restored checkpoint part carries ([`crate::sinks::Sink::restore`]):
/// none in an empty one (an at-least-once sink's, or a part written before rescaling).
pub fn decode(state: &[u8]) -> Result<Vec<EarlierLayout>, Error> {
    if state.is_empty() {
        return Ok(Vec::new());
    }
    crate::checkpoint::codec::decode(state)
        .map_err(|e| Error::Checkpoint(format!("checkpoint: kafka sink's earlier layouts: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::groups::DEFAULT_KEY_GROUPS;

    fn plan() -> JobPlan {
        let text = "name = \"t\"\n[source]\nkind = \"file\"\npath = \"x\"\nformat = \"json\"\n\
             [[analysis]]\nname = \"per_service\"\nwindow = { size = \"1m\" }\n\
             group_by = [\"service\"]\nselect = [\"count() as n\"]\n\
             [[analysis]]\nname = \"busy\"\nfrom = \"per_service\"\nhaving = \"n > 1\"\n\
             [[analysis]]\nname = \"capped\"\nwindow = { size = \"1m\" }\nmax_keys = 2\n\
             group_by = [\"ip_address\"]\nselect = [\"count() as n\"]\n\
             [[analysis]]\nname = \"total\"\nwindow = { size = \"1m\" }\n\
             select = [\"count() as n\"]\n";
        crate::spec::load_text("t.toml", text).expect("spec")
    }

    fn row(plan: &JobPlan, analysis: &str, start: i64, key: &str) -> Row {
        let analysis = plan
            .analyses
            .iter()
            .position(|a| a.name == analysis)
            .expect("analysis") as u32;
        Row {
            analysis,
            start,
            end: start + 60_000,
            values: vec![Value::Str(key.into()), Value::Int(3)],
            retract: false,
        }
    }

    /// The writer is the worker the operators route the row to on that layout: by key for a
    /// window merge and for a filter of it, by window start for a capped analysis and its
    /// overflow rows.
    #[test]
    fn the_writer_of_a_row_is_the_worker_its_last_exchange_chose() {
        let plan = plan();
        for workers in [1, 2, 3, 4, 7] {
            let route = KeyRoute::new(DEFAULT_KEY_GROUPS, workers);
            for (i, key) in ["api", "auth", "web", "db", "cache", "search"]
                .iter()
                .enumerate()
            {
                let start = i as i64 * 60_000;
                let r = row(&plan, "per_service", start, key);
                let owner = route.key_worker(&[Value::Str((*key).into())]) as usize;
                assert_eq!(writer(&plan, &r, &route), owner);
                assert_eq!(
                    writer(&plan, &row(&plan, "busy", start, key), &route),
                    owner
                );
                let by_start = route.key_worker(&[Value::Int(start)]) as usize;
                let capped = row(&plan, "capped", start, key);
                assert_eq!(writer(&plan, &capped, &route), by_start);
                let overflow = plan.overflow_analysis().expect("overflow") as u32;
                let spilled = Row {
                    analysis: overflow,
                    ..capped
                };
                assert_eq!(writer(&plan, &spilled, &route), by_start);
                let mut total = row(&plan, "total", start, key);
                total.values.remove(0);
                assert_eq!(
                    writer(&plan, &total, &route),
                    route.key_worker(&[]) as usize
                );
            }
        }
        // A row naming no analysis (a damaged one) goes nowhere it could be taken for.
        let mut r = row(&plan, "per_service", 0, "api");
        r.analysis = 99;
        assert_eq!(writer(&plan, &r, &KeyRoute::new(128, 4)), 0);
    }

    /// A row counts as committed exactly when its old writer's marker is past its time; two
    /// old workers with different markers decide their own rows.
    #[test]
    fn a_row_is_committed_when_its_old_writers_marker_passed_it() {
        let plan = plan();
        let route = KeyRoute::new(16, 2);
        let keys = ["api", "auth", "web", "db", "cache", "search", "mail", "pay"];
        let owner = |k: &str| route.key_worker(&[Value::Str(k.into())]) as usize;
        assert!(keys.iter().any(|k| owner(k) == 0) && keys.iter().any(|k| owner(k) == 1));
        let earlier = EarlierLayout {
            key_groups: 16,
            markers: vec![1_000, 5_000],
        };
        for k in keys {
            let r = row(&plan, "per_service", 0, k);
            let upto = earlier.markers[owner(k)];
            assert!(earlier.committed(&plan, &r, upto - 1), "{k}");
            assert!(!earlier.committed(&plan, &r, upto), "{k}");
            assert_eq!(earlier.committed(&plan, &r, 3_000), owner(k) == 1, "{k}");
        }
        assert!(earlier.needed_after(4_999) && !earlier.needed_after(5_000));
        // Hostile state: no markers at all commits nothing, damaged bytes are an error.
        let none = EarlierLayout {
            key_groups: 0,
            markers: Vec::new(),
        };
        assert!(!none.committed(&plan, &row(&plan, "per_service", 0, "api"), 0));
        assert_eq!(decode(&[]).expect("empty"), Vec::new());
        let bytes = crate::checkpoint::codec::encode(&vec![earlier.clone()]).expect("encode");
        assert_eq!(decode(&bytes).expect("decode"), vec![earlier]);
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(decode(&[0xff; 12]).is_err());
    }
}
