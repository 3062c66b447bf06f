//! Analyses over another analysis's rows: detectors and filters.

use std::collections::HashMap;

use toml::Spanned;

use super::compile::{compile_gauges, compile_having, topic_of, Ctx};
use super::types::{Analysis, AnalysisKind, Detector, JobPlan};
use crate::spec::{AnalysisSpec, DetectKind};
use crate::Error;

pub(super) fn compile_derived(
    plan: &JobPlan,
    names: &HashMap<String, usize>,
    a: &AnalysisSpec,
    update: bool,
    cx: &Ctx<'_>,
) -> Result<Analysis, Error> {
    let Some(from) = &a.from else {
        unreachable!("checked by caller")
    };
    if let (true, Some(m)) = (update, &a.mode) {
        return cx.err(
            m.span(),
            "mode",
            "detectors read each window's final row once: an analysis `from` another one is append-only",
        );
    }
    if let Some(i) = &a.input {
        return cx.err(
            i.span(),
            "input",
            "`input` does not apply to an analysis `from` another one",
        );
    }
    for (set, field, span) in [
        (
            a.filter.is_some(),
            "where",
            a.filter.as_ref().map(|f| f.span()),
        ),
        (
            !a.group_by.is_empty(),
            "group_by",
            a.group_by.first().map(|f| f.span()),
        ),
        (
            !a.select.is_empty(),
            "select",
            a.select.first().map(|f| f.span()),
        ),
        (
            a.delay.is_some(),
            "delay",
            a.delay.as_ref().map(|f| f.span()),
        ),
        (
            a.allowed_lateness.is_some(),
            "allowed_lateness",
            a.allowed_lateness.as_ref().map(|f| f.span()),
        ),
        (
            a.max_keys.is_some(),
            "max_keys",
            a.max_keys.as_ref().map(|f| f.span()),
        ),
    ] {
        if set {
            return cx.err(
                span.unwrap_or(0..0),
                field,
                format!("`{field}` does not apply to an analysis `from` another one"),
            );
        }
    }
    let Some(&src_idx) = names.get(from.get_ref()) else {
        return cx.err(
            from.span(),
            "from",
            format!(
                "unknown analysis `{}` (it must be defined above)",
                from.get_ref()
            ),
        );
    };
    let src = &plan.analyses[src_idx];
    if src.update || src.complete {
        return cx.err(
            from.span(),
            "from",
            format!(
                "`{}` is in {} mode; detectors read append-mode rows (one final row per window)",
                from.get_ref(),
                if src.update { "update" } else { "complete" }
            ),
        );
    }
    if src.session {
        return cx.err(
            from.span(),
            "from",
            format!(
                "`{}` has session windows; detectors compare a key's rows window by window on a fixed grid, which sessions (of any length, merged as data arrives) do not have",
                from.get_ref()
            ),
        );
    }
    let key_cols = src.columns[..src.key_len].to_vec();
    let column_of = |f: &Spanned<String>| -> Result<usize, Error> {
        match src.columns.iter().position(|c| c == f.get_ref()) {
            Some(i) if i >= src.key_len => Ok(i),
            _ => cx.err(
                f.span(),
                "detect.field",
                format!(
                    "`{}` is not a metric of `{}` (metrics: {})",
                    f.get_ref(),
                    src.name,
                    src.columns[src.key_len..].join(", ")
                ),
            ),
        }
    };
    let (detector, columns) = match &a.detect {
        None => (Detector::Pass, src.columns.clone()),
        Some(d) => {
            let need_field = || -> Result<&Spanned<String>, Error> {
                d.field.as_ref().ok_or_else(|| {
                    cx.src.error(
                        d.kind.span(),
                        "detect.field",
                        format!("detector `{}` needs `field`", d.kind.get_ref()),
                    )
                })
            };
            match d.kind.get_ref() {
                DetectKind::Zscore => {
                    let f = need_field()?;
                    let column = column_of(f)?;
                    let history = match &d.history {
                        Some(h) if *h.get_ref() < 2 => return cx.err(
                            h.span(),
                            "detect.history",
                            "history must be at least 2 (a standard deviation needs two values)",
                        ),
                        Some(h) => *h.get_ref() as usize,
                        None => 10,
                    };
                    let name = f.get_ref();
                    let mut cols = key_cols.clone();
                    cols.extend([
                        name.clone(),
                        "baseline_mean".into(),
                        "baseline_stddev".into(),
                        "z_score".into(),
                    ]);
                    (Detector::ZScore { column, history }, cols)
                }
                DetectKind::Lag => {
                    let f = need_field()?;
                    let column = column_of(f)?;
                    let history = match &d.history {
                        Some(h) if *h.get_ref() < 1 => {
                            return cx.err(h.span(), "detect.history", "history must be at least 1")
                        }
                        Some(h) => *h.get_ref() as usize,
                        None => 10,
                    };
                    let name = f.get_ref();
                    let mut cols = key_cols.clone();
                    cols.extend([
                        name.clone(),
                        format!("prev_{name}"),
                        format!("{name}_change"),
                    ]);
                    (Detector::Lag { column, history }, cols)
                }
                DetectKind::Intersect => {
                    let Some(w) = &d.with else {
                        return cx.err(
                            d.kind.span(),
                            "detect.with",
                            "`intersect` needs `with` (another analysis)",
                        );
                    };
                    let Some(&with) = names.get(w.get_ref()) else {
                        return cx.err(
                            w.span(),
                            "detect.with",
                            format!("unknown analysis `{}`", w.get_ref()),
                        );
                    };
                    let other = &plan.analyses[with];
                    if other.columns[..other.key_len] != key_cols[..] {
                        return cx.err(
                            w.span(),
                            "detect.with",
                            format!(
                                "`{}` is keyed by ({}) but `{}` by ({})",
                                other.name,
                                other.columns[..other.key_len].join(", "),
                                src.name,
                                key_cols.join(", ")
                            ),
                        );
                    }
                    (Detector::Intersect { with }, src.columns.clone())
                }
            }
        }
    };
    let having = compile_having(a, &columns, cx)?;
    let gauges = compile_gauges(a, &columns, src.key_len, cx)?;
    Ok(Analysis {
        name: a.name.get_ref().clone(),
        topic: topic_of(a),
        description: a.description.clone(),
        gauges,
        alert: None,
        key_len: src.key_len,
        columns,
        kind: AnalysisKind::Derived {
            from: src_idx,
            detector,
        },
        having,
        delay_ms: src.delay_ms,
        lateness_ms: src.lateness_ms,
        update: false,
        complete: false,
        windowless: false,
        max_keys: None,
        session: false,
    })
}
