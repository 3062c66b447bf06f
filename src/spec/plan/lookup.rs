//! `[[lookup]]` reference tables: names checked, paths resolved against the spec's folder,
//! each column given an extra field slot.

use std::path::Path;

use super::compile::Ctx;
use super::types::{JobPlan, LookupPlan, TableFormat};
use crate::spec::JobSpec;
use crate::Error;

pub(super) fn compile_lookups(
    plan: &mut JobPlan,
    spec: &JobSpec,
    cx: &Ctx<'_>,
) -> Result<(), Error> {
    let folder = Path::new(cx.src.file).parent().unwrap_or(Path::new(""));
    let mut names: Vec<&str> = Vec::new();
    for l in &spec.lookups {
        let name = l.name.get_ref();
        if names.contains(&name.as_str()) {
            return cx.err(
                l.name.span(),
                "lookup.name",
                format!("duplicate lookup `{name}`"),
            );
        }
        names.push(name);
        let path = folder.join(l.path.get_ref());
        let format = match &l.format {
            Some(f) => TableFormat::parse(f.get_ref())
                .map_or_else(|| cx.err(f.span(), "lookup.format", format!("unknown table format `{}` (csv, json)", f.get_ref())), Ok)?,
            None => match path.extension().and_then(|e| e.to_str()).and_then(TableFormat::parse) {
                Some(f) => f,
                None => return cx.err(l.path.span(), "lookup.format", "cannot tell the format from the file name: set `format = \"csv\"` or `\"json\"`"),
            },
        };
        let on_name = l.on.as_ref().unwrap_or(&l.key);
        let Some(on) = plan.field(on_name.get_ref()) else {
            return cx.err(on_name.span(), if l.on.is_some() { "lookup.on" } else { "lookup.key" }, format!("unknown event field `{}`: set `on` to the field matched against the key column", on_name.get_ref()));
        };
        if l.fields.is_empty() {
            return cx.err(
                l.name.span(),
                "lookup.fields",
                "list the table's columns that become event fields",
            );
        }
        let mut fields = Vec::new();
        for f in &l.fields {
            let taken = fields.iter().any(|(n, _)| n == f.get_ref());
            if taken || plan.field(f.get_ref()).is_some() || f.get_ref() == l.key.get_ref() {
                return cx.err(
                    f.span(),
                    "lookup.fields",
                    format!("`{}` is already a field", f.get_ref()),
                );
            }
            let slot = plan
                .extra_slot(f.get_ref())
                .or_else(|m| cx.err(f.span(), "lookup.fields", m))?;
            fields.push((f.get_ref().clone(), slot));
        }
        plan.lookups.push(LookupPlan {
            name: name.clone(),
            path,
            format,
            key: l.key.get_ref().clone(),
            on,
            fields,
        });
    }
    Ok(())
}
