//! Spec changes between a checkpoint and its restore: what each analysis's state depends on,
//! recorded in the manifest, and how a restore compares it with the spec it runs.
//!
//! An analysis's state is described by named parts, each a hash of the compiled plan's
//! pieces that shape it (docs/design.md, "Spec changes on restore"):
//!
//! | part | windowed analysis | derived analysis (`from` + `detect`) |
//! |---|---|---|
//! | `window` | size, slide or session gap, `delay` + `allowed_lateness` | |
//! | `where` | the filter | |
//! | `group_by` | the key fields | |
//! | `aggregates` | the aggregates its `select` reads | |
//! | `mode` | output mode, `input` (events or late), complete trigger | |
//! | `max_keys`, `explode` | as set | |
//! | `select` | update mode only: its saved rows are its outputs, numbered by position | |
//! | `detector` | | the detector and its settings (`intersect`: the other analysis's name) |
//! | `input` | | every part of the analyses it reads, and their `select` and `having` (the rows it keeps) |
//!
//! Outputs, `having`, topics, alerts and gauges of an append-mode analysis are computed when a
//! window closes, from its aggregates: changing them keeps its state. The job's source (kind,
//! what it reads, format) must not change: the positions saved are in that input.

use serde::{Deserialize, Serialize};

use super::process::stable_hash;
use crate::spec::expr::Expr;
use crate::spec::plan::{AnalysisKind, Detector, JobPlan, SourceConfig};
use crate::Error;

/// What the state of one analysis depends on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnalysisDef {
    /// Its name.
    pub name: String,
    /// (part, hash of what the part covers), in a fixed order.
    pub parts: Vec<(String, u64)>,
}

impl AnalysisDef {
    /// One hash of every part: the layout of a derived analysis's own slot.
    pub fn layout(&self) -> u64 {
        hash(&self.parts)
    }
}

/// A stateful operator's slot in a checkpoint: its name, the analyses whose state it holds
/// (none: the job's own, as the source positions), and a hash of the state's layout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotDef {
    /// The slot's name (`<analyses>:<operator kind>`).
    pub name: String,
    /// The analyses it holds state for.
    pub owners: Vec<String>,
    /// The layout of its state (e.g. a shared pass's aggregates, in their order).
    pub layout: u64,
}

/// What a manifest records about the job's state, to tell which spec changes a restore allows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateRecord {
    /// The source: kind, what it reads, format.
    pub source: String,
    /// Every analysis, in spec order.
    pub analyses: Vec<AnalysisDef>,
    /// Every slot of a worker's part.
    pub slots: Vec<SlotDef>,
}

/// What a restore found changed, and allows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Analyses of the spec the checkpoint does not have: they start empty.
    pub added: Vec<String>,
    /// Analyses of the checkpoint the spec no longer has: their state is dropped.
    pub removed: Vec<String>,
}

/// What the job reads: a checkpoint's positions are only valid in the same input.
pub fn source_of(plan: &JobPlan) -> String {
    let what = match &plan.source.kind {
        SourceConfig::File(c) => format!("file {}", c.path),
        SourceConfig::Kafka(c) => format!("kafka topic `{}`", c.topic),
        SourceConfig::Directory(c) => format!("directory {} ({})", c.path, c.pattern),
        SourceConfig::Socket(c) => format!("socket {}:{}", c.host, c.port),
        SourceConfig::Generator(c) => c.describe(),
    };
    format!("{what}, format {:?}", plan.source.format)
}

fn hash(text: impl std::fmt::Debug) -> u64 {
    stable_hash(&format!("{text:?}"))
}

/// The columns an expression reads.
fn columns(e: &Expr, out: &mut Vec<usize>) {
    match e {
        Expr::Column(i) => out.push(*i),
        Expr::Lit(_) | Expr::Field(_) => {}
        Expr::Call(_, args) => args.iter().for_each(|a| columns(a, out)),
        Expr::Unary(_, e) | Expr::IsNull(e, _) => columns(e, out),
        Expr::Binary(_, a, b) => {
            columns(a, out);
            columns(b, out);
        }
        Expr::Case(arms, d) => {
            for (c, t) in arms {
                columns(c, out);
                columns(t, out);
            }
            if let Some(d) = d {
                columns(d, out);
            }
        }
    }
}

/// The parts of analysis `a`'s state (see the module's table).
fn parts_of(plan: &JobPlan, a: usize) -> Vec<(String, u64)> {
    let an = &plan.analyses[a];
    let part = |name: &str, h: u64| (name.to_string(), h);
    match &an.kind {
        AnalysisKind::Windowed { node, outputs } => {
            let n = &plan.nodes[*node];
            // Aggregates sit after the keys and outputs in the scratch row (see `plan`).
            let first_acc = an.key_len + outputs.len();
            let mut read = Vec::new();
            outputs.iter().for_each(|e| columns(e, &mut read));
            let mut accs: Vec<usize> = read
                .into_iter()
                .filter_map(|c| c.checked_sub(first_acc))
                .collect();
            accs.sort_unstable();
            accs.dedup();
            let accs: Vec<_> = accs.iter().filter_map(|&i| n.accs.get(i)).collect();
            let mut parts = vec![
                part("window", hash((&n.windows, n.hold_ms))),
                part("where", hash(&n.filter)),
                part("group_by", hash(&n.keys)),
                part("aggregates", hash(&accs)),
                part("mode", hash((n.update, n.complete, n.input))),
                part("max_keys", hash(an.max_keys)),
                part("explode", hash(&n.explode)),
            ];
            if n.update {
                parts.push(part("select", hash((a, outputs, &an.having))));
            }
            parts
        }
        AnalysisKind::Derived { from, detector } => {
            let detector = match detector {
                Detector::Intersect { with } => format!("intersect {}", plan.analyses[*with].name),
                d => format!("{d:?}"),
            };
            let mut inputs = vec![*from];
            if let Some(Detector::Intersect { with }) = an.kind_detector() {
                inputs.push(*with);
            }
            let input: Vec<_> = inputs.into_iter().map(|i| rows_of(plan, i)).collect();
            vec![part("detector", hash(detector)), part("input", hash(input))]
        }
        AnalysisKind::Overflow => Vec::new(),
    }
}

/// What the rows of analysis `a` are: its state's parts, its columns and `having`, and for a
/// windowed one its outputs (a derived analysis's outputs are its detector's).
fn rows_of(plan: &JobPlan, a: usize) -> u64 {
    let an = &plan.analyses[a];
    let outputs = match &an.kind {
        AnalysisKind::Windowed { outputs, .. } => Some(outputs),
        _ => None,
    };
    hash((parts_of(plan, a), &an.columns, &an.having, outputs))
}

/// What every analysis's state depends on, in spec order (the overflow output holds none).
pub fn analyses_of(plan: &JobPlan) -> Vec<AnalysisDef> {
    plan.analyses
        .iter()
        .enumerate()
        .filter(|(_, a)| !matches!(a.kind, AnalysisKind::Overflow))
        .map(|(i, a)| AnalysisDef {
            name: a.name.clone(),
            parts: parts_of(plan, i),
        })
        .collect()
}

/// The layout of node `node`'s state: every aggregate of its shared pass in order, and what
/// decides how it is kept.
pub fn node_layout(plan: &JobPlan, node: usize) -> u64 {
    let n = &plan.nodes[node];
    hash((
        &n.windows, n.hold_ms, &n.filter, &n.keys, &n.accs, n.update, n.input, &n.explode,
        n.complete,
    ))
}

/// Compares the state a checkpoint recorded with the job about to restore it: the analyses
/// added and removed, or why the checkpoint does not fit (the source changed, or an analysis
/// kept its name but not what its state depends on; each named with the parts that changed).
pub fn compare(
    old_source: &str,
    old: &[AnalysisDef],
    source: &str,
    new: &[AnalysisDef],
) -> Result<Changes, Error> {
    if old_source != source {
        return Err(Error::SpecChange(format!(
            "the checkpoint was taken reading {old_source}, this job reads {source}: its \
             positions are in the other input (use another checkpoint directory)"
        )));
    }
    let mut changed = Vec::new();
    let mut changes = Changes::default();
    for a in new {
        match old.iter().find(|o| o.name == a.name) {
            None => changes.added.push(a.name.clone()),
            Some(o) => {
                let what: Vec<&str> = a
                    .parts
                    .iter()
                    .filter(|(p, h)| !o.parts.iter().any(|(q, g)| q == p && g == h))
                    .map(|(p, _)| p.as_str())
                    .chain(
                        o.parts
                            .iter()
                            .filter(|(p, _)| !a.parts.iter().any(|(q, _)| q == p))
                            .map(|(p, _)| p.as_str()),
                    )
                    .collect();
                if !what.is_empty() {
                    changed.push(format!("analysis {}: {} changed", a.name, what.join(", ")));
                }
            }
        }
    }
    changes.removed = old
        .iter()
        .filter(|o| !new.iter().any(|a| a.name == o.name))
        .map(|o| o.name.clone())
        .collect();
    if !changed.is_empty() {
        return Err(Error::SpecChange(format!(
            "{} since the checkpoint: its saved state does not fit (rename the analysis to \
             start it empty, or use another checkpoint directory)",
            changed.join("; ")
        )));
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str =
        "name = \"j\"\n[source]\nkind = \"file\"\npath = \"in.jsonl\"\nformat = \"json\"\n";

    fn plan(analyses: &str) -> JobPlan {
        crate::spec::load_text("j.toml", &format!("{HEAD}{analyses}")).unwrap()
    }

    const ERRORS: &str = "[[analysis]]\nname = \"errors\"\nwindow = { size = \"1m\" }\n\
        group_by = [\"service\"]\nselect = [\"count() as n\", \"count_if(status_code >= 500) as e\"]\n";
    const IPS: &str = "[[analysis]]\nname = \"ips\"\nwindow = { size = \"5m\" }\n\
        group_by = [\"ip_address\"]\nselect = [\"count() as n\"]\n";
    const SPIKES: &str = "[[analysis]]\nname = \"spikes\"\nfrom = \"errors\"\n\
        detect = { kind = \"lag\", field = \"e\" }\n";

    fn compared(old: &str, new: &str) -> Result<Changes, Error> {
        let (o, n) = (plan(old), plan(new));
        compare(
            &source_of(&o),
            &analyses_of(&o),
            &source_of(&n),
            &analyses_of(&n),
        )
    }

    fn refusal(old: &str, new: &str) -> String {
        let e = compared(old, new).unwrap_err();
        assert_eq!(e.exit_code(), 2, "{e}");
        e.to_string()
    }

    #[test]
    fn an_identical_spec_changes_nothing() {
        let spec = format!("{ERRORS}{IPS}{SPIKES}");
        assert_eq!(compared(&spec, &spec).unwrap(), Changes::default());
    }

    #[test]
    fn analyses_added_and_removed_are_named_whatever_their_position() {
        let c = compared(&format!("{ERRORS}{IPS}{SPIKES}"), &format!("{IPS}{ERRORS}")).unwrap();
        assert_eq!(c.added, Vec::<String>::new());
        assert_eq!(c.removed, ["spikes"]);
        let c = compared(&format!("{ERRORS}{IPS}"), &format!("{IPS}{ERRORS}{SPIKES}")).unwrap();
        assert_eq!((c.added, c.removed), (vec!["spikes".into()], vec![]));
    }

    #[test]
    fn outputs_having_and_topics_of_an_append_analysis_may_change() {
        let new = ERRORS.replace("as e\"]", "as e\", \"e * 100.0 / n as rate\"]")
            + "having = \"n > 3\"\ntopic = \"other\"\n";
        assert_eq!(compared(ERRORS, &new).unwrap(), Changes::default());
    }

    #[test]
    fn a_changed_window_grouping_filter_or_aggregate_is_refused_naming_it() {
        let cases = [
            (
                ERRORS.replace("\"1m\"", "\"2m\""),
                "analysis errors: window changed",
            ),
            (
                ERRORS.replace("\"1m\" }", "\"1m\", slide = \"30s\" }"),
                "window changed",
            ),
            (
                ERRORS.replace("[\"service\"]", "[\"service\", \"level\"]"),
                "analysis errors: group_by changed",
            ),
            (
                ERRORS.replace(">= 500", ">= 400"),
                "analysis errors: aggregates changed",
            ),
            (
                ERRORS.to_string() + "where = \"status_code > 0\"\n",
                "where changed",
            ),
            (ERRORS.to_string() + "delay = \"1m\"\n", "window changed"),
            (
                ERRORS.to_string() + "mode = \"update\"\n",
                "mode, select changed",
            ),
            (ERRORS.to_string() + "max_keys = 10\n", "max_keys changed"),
        ];
        for (new, want) in cases {
            let e = refusal(ERRORS, &new);
            assert!(e.contains(want), "{want}: {e}");
            assert!(e.contains("rename the analysis"), "{e}");
        }
    }

    #[test]
    fn a_detector_is_refused_when_it_or_the_rows_it_reads_change() {
        let old = format!("{ERRORS}{SPIKES}");
        let e = refusal(
            &old,
            &format!("{ERRORS}{}", SPIKES.replace("lag", "zscore")),
        );
        assert!(e.contains("analysis spikes: detector changed"), "{e}");
        // Its input's rows: another formula for the column it watches.
        let e = refusal(
            &old,
            &format!("{}{SPIKES}", ERRORS.replace(">= 500", ">= 400")),
        );
        assert!(e.contains("analysis spikes: input changed"), "{e}");
        assert!(e.contains("analysis errors: aggregates changed"), "{e}");
        let e = refusal(&old, &format!("{}having = \"n > 1\"\n{SPIKES}", ERRORS));
        assert!(e.contains("analysis spikes: input changed"), "{e}");
        assert!(!e.contains("analysis errors"), "{e}");
    }

    #[test]
    fn another_input_is_refused() {
        let o = plan(ERRORS);
        let n = crate::spec::load_text(
            "j.toml",
            &format!("{}{ERRORS}", HEAD.replace("in.jsonl", "other.jsonl")),
        )
        .unwrap();
        let e = compare(
            &source_of(&o),
            &analyses_of(&o),
            &source_of(&n),
            &analyses_of(&n),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("taken reading file in.jsonl") && e.contains("reads file other.jsonl"),
            "{e}"
        );
    }

    #[test]
    fn a_shared_pass_layout_follows_its_aggregates() {
        let two = format!(
            "{ERRORS}{}",
            ERRORS.replace("errors", "more").replace(">= 500", ">= 400")
        );
        let (one, two) = (plan(ERRORS), plan(&two));
        assert_eq!(two.nodes.len(), 1, "the two analyses share one pass");
        assert_ne!(node_layout(&one, 0), node_layout(&two, 0));
        assert_eq!(node_layout(&one, 0), node_layout(&plan(ERRORS), 0));
    }
}
