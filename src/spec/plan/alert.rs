//! `alert = { severity, summary }`: the summary template bound to the analysis's columns, so
//! a misspelt `{field}` fails `check` instead of printing a blank in the middle of the night.

use super::compile::Ctx;
use super::types::{AlertPlan, Analysis, SummaryPart};
use crate::spec::AnalysisSpec;
use crate::Error;

/// Labels every `logflow_alert_active` series carries: a group key of that name would clash.
const RESERVED_LABELS: [&str; 3] = ["alert", "severity", "summary"];

/// Compiles `a.alert` against the compiled analysis's output columns.
pub(super) fn compile_alert(
    a: &AnalysisSpec,
    analysis: &Analysis,
    cx: &Ctx<'_>,
) -> Result<Option<AlertPlan>, Error> {
    let Some(spec) = &a.alert else {
        return Ok(None);
    };
    if let Some(k) = analysis.columns[..analysis.key_len]
        .iter()
        .find(|k| RESERVED_LABELS.contains(&k.as_str()))
    {
        return cx.err(
            spec.summary.span(),
            "alert",
            format!("group key `{k}` would clash with the `{k}` label of logflow_alert_active: rename it"),
        );
    }
    let summary = parse_summary(spec.summary.get_ref(), &analysis.columns)
        .or_else(|m| cx.err(spec.summary.span(), "alert.summary", m))?;
    Ok(Some(AlertPlan {
        severity: *spec.severity.get_ref(),
        summary,
    }))
}

/// Most bytes of a summary template: it is rendered into every alert record.
const MAX_SUMMARY_BYTES: usize = 1024;

/// Splits a template into text and `{column}` references (`{{`, `}}`: literal braces).
pub(super) fn parse_summary(text: &str, columns: &[String]) -> Result<Vec<SummaryPart>, String> {
    if text.len() > MAX_SUMMARY_BYTES {
        return Err(format!("longer than {MAX_SUMMARY_BYTES} bytes"));
    }
    if text.trim().is_empty() {
        return Err("empty: say what fired".into());
    }
    let mut parts = Vec::new();
    let mut lit = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                lit.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                lit.push('}');
            }
            '}' => return Err("`}` without `{` (write `}}` for a brace)".into()),
            '{' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some('{') | None => {
                            return Err(format!(
                                "`{{{name}` is not closed (write `{{{{` for a brace)"
                            ))
                        }
                        Some(c) => name.push(c),
                    }
                }
                let name = name.trim();
                let Some(i) = columns.iter().position(|c| c == name) else {
                    return Err(format!(
                        "unknown column `{name}` (columns: {})",
                        columns.join(", ")
                    ));
                };
                if !lit.is_empty() {
                    parts.push(SummaryPart::Text(std::mem::take(&mut lit)));
                }
                parts.push(SummaryPart::Column(i));
            }
            c => lit.push(c),
        }
    }
    if !lit.is_empty() {
        parts.push(SummaryPart::Text(lit));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols() -> Vec<String> {
        ["ip_address", "request_count"].map(String::from).to_vec()
    }

    #[test]
    fn templates_bind_columns_and_keep_escaped_braces() {
        let p = parse_summary("DDoS from {ip_address}: { request_count } {{x}}", &cols()).unwrap();
        assert_eq!(
            p,
            vec![
                SummaryPart::Text("DDoS from ".into()),
                SummaryPart::Column(0),
                SummaryPart::Text(": ".into()),
                SummaryPart::Column(1),
                SummaryPart::Text(" {x}".into()),
            ]
        );
    }

    #[test]
    fn bad_templates_say_why() {
        for (t, why) in [
            (
                "from {ip}",
                "unknown column `ip` (columns: ip_address, request_count)",
            ),
            ("from {ip_address", "`{ip_address` is not closed"),
            ("a } b", "`}` without `{`"),
            ("  ", "empty"),
        ] {
            let e = parse_summary(t, &cols()).unwrap_err();
            assert!(e.starts_with(why), "{t}: {e}");
        }
        assert!(parse_summary(&"x".repeat(2000), &cols()).is_err());
    }
}
