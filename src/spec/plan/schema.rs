//! `[schema]`: resolves a user-defined schema's fields (built-in names keep their fields and
//! types, a new name gets an extra slot) into a [`Schema`] the ingest parses with.

use super::compile::Ctx;
use super::types::JobPlan;
use crate::parse::schema::{FieldType, Path, Schema, SchemaField, TimeFormat};
use crate::parse::Format;
use crate::record::Field;
use crate::spec::JobSpec;
use crate::Error;

/// Compiles `[schema]` (`None` without one); new field names take extra slots of `plan`.
pub(super) fn compile_schema(
    plan: &mut JobPlan,
    spec: &JobSpec,
    cx: &Ctx<'_>,
) -> Result<Option<Schema>, Error> {
    let format = *spec.source.format.get_ref();
    let fspan = spec.source.format.span();
    let Some(s) = &spec.schema else {
        if format == Format::Regex {
            return cx.err(
                fspan,
                "source.format",
                "format `regex` needs a [schema] with a `pattern`",
            );
        }
        if matches!(format, Format::Apache | Format::Nginx) {
            // The request's parts: slots now, read at ingest only if an analysis uses them.
            for name in crate::parse::access_log::FIELDS {
                plan.extra_slot(name)
                    .or_else(|m| cx.err(fspan.clone(), "source.format", m))?;
            }
        }
        return Ok(None);
    };
    let regex = match format {
        Format::Json => false,
        Format::Regex => true,
        other => {
            return cx.err(
                fspan,
                "source.format",
                format!("a [schema] reads formats `json` and `regex`, not `{other}`"),
            )
        }
    };
    match (&s.pattern, regex) {
        (None, true) => {
            return cx.err(
                fspan,
                "schema.pattern",
                "format `regex` needs `pattern` in [schema]",
            )
        }
        (Some(p), false) => {
            return cx.err(
                p.span(),
                "schema.pattern",
                "`pattern` applies to `format = \"regex\"`",
            )
        }
        _ => {}
    }
    if let (Some(n), false) = (&s.null, regex) {
        return cx.err(
            n.span(),
            "schema.null",
            "`null` applies to `format = \"regex\"`",
        );
    }
    let groups = match &s.pattern {
        Some(p) => {
            Schema::group_names(p.get_ref()).or_else(|m| cx.err(p.span(), "schema.pattern", m))?
        }
        None => Vec::new(),
    };

    // The event time.
    let (ts_path, ts_format) = match &s.timestamp {
        None => (Path::Json(vec!["timestamp".into()]), TimeFormat::Default),
        Some(t) => {
            let span = t.span();
            let t = t.get_ref();
            let path_text = t.path.as_deref().unwrap_or("timestamp");
            let path = Path::parse(path_text, regex)
                .or_else(|m| cx.err(span.clone(), "schema.timestamp.path", m))?;
            let format = match &t.format {
                None if t.timezone.is_some() => {
                    return cx.err(
                        span,
                        "schema.timestamp.timezone",
                        "`timezone` applies to a strftime `format`",
                    )
                }
                None if regex || t.path.is_some() => TimeFormat::Rfc3339,
                None => TimeFormat::Default,
                Some(f) => TimeFormat::parse(f, t.timezone.as_deref())
                    .or_else(|m| cx.err(span.clone(), "schema.timestamp.format", m))?,
            };
            (path, format)
        }
    };
    if let Path::Group(g) = &ts_path {
        if !groups.contains(g) {
            let span = s.timestamp.as_ref().map_or(fspan.clone(), |t| t.span());
            return cx.err(
                span,
                "schema.timestamp.path",
                format!(
                    "the pattern has no named group `{g}` (groups: {})",
                    groups.join(", ")
                ),
            );
        }
    }

    // Declared fields.
    let mut fields = Vec::new();
    for (name, spec) in &s.fields {
        let span = spec.span();
        let key = format!("schema.fields.{name}");
        let f = spec.get_ref();
        if !valid_name(name) {
            return cx.err(
                span,
                &key,
                format!(
                    "`{name}` is not a field name (letters, digits and `_`, not first a digit)"
                ),
            );
        }
        if name == "timestamp" {
            return cx.err(span, &key, "the event time is set by `[schema] timestamp`");
        }
        let builtin = Field::from_name(name).filter(|f| *f != Field::Line);
        let ty = match (&f.ty, builtin.and_then(FieldType::of_builtin)) {
            (None, Some(t)) => t,
            (None, None) => FieldType::String,
            (Some(t), b) => {
                let t = FieldType::from_name(t).ok_or_else(|| {
                    cx.src.error(
                        span.clone(),
                        &key,
                        format!("unknown type `{t}` (string, int, float, bool)"),
                    )
                })?;
                if let Some(b) = b.filter(|b| *b != t) {
                    return cx.err(
                        span,
                        &key,
                        format!("`{name}` is a built-in {} field", b.name()),
                    );
                }
                t
            }
        };
        let path_text = f.path.as_deref().unwrap_or(name);
        let path = Path::parse(path_text, regex).or_else(|m| cx.err(span.clone(), &key, m))?;
        if let Path::Group(g) = &path {
            if !groups.contains(g) {
                return cx.err(
                    span,
                    &key,
                    format!(
                        "the pattern has no named group `{g}` (groups: {})",
                        groups.join(", ")
                    ),
                );
            }
        }
        let target = match builtin {
            Some(b) => b,
            None => Field::Extra(
                plan.extra_slot(name)
                    .or_else(|m| cx.err(span.clone(), &key, m))?,
            ),
        };
        fields.push(SchemaField {
            name: name.clone(),
            path,
            ty,
            target,
            declared: true,
        });
    }
    // Regex groups no field reads are fields of their own name.
    for g in &groups {
        let read = fields.iter().any(|f| f.path == Path::Group(g.clone()))
            || ts_path == Path::Group(g.clone());
        if read || fields.iter().any(|f| &f.name == g) {
            continue;
        }
        let span = s.pattern.as_ref().map_or(fspan.clone(), |p| p.span());
        if g == "timestamp" {
            return cx.err(
                span,
                "schema.pattern",
                "group `timestamp` is read as the event time only with `timestamp = { path = \"timestamp\" }`",
            );
        }
        let builtin = Field::from_name(g).filter(|f| *f != Field::Line);
        let target = match builtin {
            Some(b) => b,
            None => Field::Extra(
                plan.extra_slot(g)
                    .or_else(|m| cx.err(span.clone(), "schema.pattern", m))?,
            ),
        };
        fields.push(SchemaField {
            name: g.clone(),
            path: Path::Group(g.clone()),
            ty: builtin
                .and_then(FieldType::of_builtin)
                .unwrap_or(FieldType::String),
            target,
            declared: true,
        });
    }
    let pattern = s.pattern.as_ref().map(|p| p.get_ref().as_str());
    let null = s.null.as_ref().map(|n| n.get_ref().clone());
    let span = s.pattern.as_ref().map_or(fspan, |p| p.span());
    Schema::new(format, ts_path, ts_format, fields, pattern, null)
        .map(Some)
        .or_else(|m| cx.err(span, "schema", m))
}

fn valid_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && c.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
