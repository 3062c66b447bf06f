//! `docs/specs.md` is generated from the doc comments of the spec types in `src/spec/mod.rs`
//! (`JobSpec` and the tables it holds): this test renders the reference again and fails with a
//! diff when the file is stale. `LOGFLOW_BLESS=1 cargo test --release --test docs` rewrites it.
//!
//! The source is read with `syn`, not by matching lines, so reformatting it changes nothing;
//! keys are named as serde reads them (`rename`, `alias`), and a key is required when it has
//! neither `#[serde(default)]` nor an `Option` type.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use syn::{Attribute, Expr, Fields, GenericArgument, Item, Lit, PathArguments, Type};

const SOURCE: &str = "src/spec/mod.rs";
const OUTPUT: &str = "docs/specs.md";

/// One key of a spec table.
struct Key {
    name: String,
    aliases: Vec<String>,
    doc: String,
    ty: Type,
    default: bool,
}

/// A struct of the spec file: its doc comment and keys.
struct Table {
    doc: String,
    keys: Vec<Key>,
}

/// The text of the `///` comments among `attrs`, lines joined by spaces, blank lines as
/// paragraph breaks.
fn doc_of(attrs: &[Attribute]) -> String {
    let mut paragraphs = vec![String::new()];
    for a in attrs.iter().filter(|a| a.path().is_ident("doc")) {
        let syn::Meta::NameValue(nv) = &a.meta else {
            continue;
        };
        let Expr::Lit(lit) = &nv.value else { continue };
        let Lit::Str(s) = &lit.lit else { continue };
        let line = s.value();
        let line = line.trim();
        let last = paragraphs.last_mut().unwrap();
        if line.is_empty() {
            if !last.is_empty() {
                paragraphs.push(String::new());
            }
        } else {
            if !last.is_empty() {
                last.push(' ');
            }
            last.push_str(line);
        }
    }
    paragraphs.retain(|p| !p.is_empty());
    paragraphs.join("\n\n")
}

/// The serde attributes of a field: (rename, aliases, default).
fn serde_of(attrs: &[Attribute]) -> (Option<String>, Vec<String>, bool) {
    let (mut rename, mut aliases, mut default) = (None, Vec::new(), false);
    for a in attrs.iter().filter(|a| a.path().is_ident("serde")) {
        a.parse_nested_meta(|m| {
            let string = |m: &syn::meta::ParseNestedMeta| -> syn::Result<String> {
                Ok(m.value()?.parse::<syn::LitStr>()?.value())
            };
            if m.path.is_ident("rename") {
                rename = Some(string(&m)?);
            } else if m.path.is_ident("alias") {
                aliases.push(string(&m)?);
            } else if m.path.is_ident("default") {
                default = true;
                if m.input.peek(syn::Token![=]) {
                    string(&m)?;
                }
            } else if m.input.peek(syn::Token![=]) {
                m.value()?.parse::<Expr>()?;
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{SOURCE}: a serde attribute syn cannot read: {e}"));
    }
    (rename, aliases, default)
}

/// Every struct of the file with named fields, by name.
fn tables(file: &syn::File) -> HashMap<String, Table> {
    let mut out = HashMap::new();
    for item in &file.items {
        let Item::Struct(s) = item else { continue };
        let Fields::Named(fields) = &s.fields else {
            continue;
        };
        let keys = fields
            .named
            .iter()
            .map(|f| {
                let (rename, aliases, default) = serde_of(&f.attrs);
                let ident = f.ident.as_ref().unwrap().to_string();
                Key {
                    name: rename.unwrap_or(ident),
                    aliases,
                    doc: doc_of(&f.attrs),
                    ty: f.ty.clone(),
                    default,
                }
            })
            .collect();
        out.insert(
            s.ident.to_string(),
            Table {
                doc: doc_of(&s.attrs),
                keys,
            },
        );
    }
    out
}

/// The last segment of a type path and its type arguments (`Option<Spanned<u64>>` gives
/// `Option` and `[Spanned<u64>]`).
fn split(ty: &Type) -> (String, Vec<&Type>) {
    let Type::Path(p) = ty else {
        panic!("{SOURCE}: a spec field type that is not a path");
    };
    let seg = p.path.segments.last().unwrap();
    let args = match &seg.arguments {
        PathArguments::AngleBracketed(a) => a
            .args
            .iter()
            .filter_map(|a| match a {
                GenericArgument::Type(t) => Some(t),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    (seg.ident.to_string(), args)
}

/// What a type holds, stripped of `Option` and `Spanned`: a scalar's TOML type, or the struct
/// of a table; and whether it is a list of them.
enum Shape {
    Scalar(&'static str),
    Table(String),
    List(Box<Shape>),
    Map,
}

fn shape(ty: &Type, tables: &HashMap<String, Table>) -> Shape {
    let (name, args) = split(ty);
    match name.as_str() {
        "Option" | "Spanned" | "Box" => shape(args[0], tables),
        "Vec" => Shape::List(Box::new(shape(args[0], tables))),
        "BTreeMap" | "HashMap" => Shape::Map,
        // Formats and the spec words (`src/spec/words.rs`) are strings in the file.
        "String" | "Format" | "SourceKind" | "SinkKind" | "Delivery" | "StartAt" | "Mode"
        | "Input" | "DetectKind" | "Severity" => Shape::Scalar("string"),
        "bool" => Shape::Scalar("boolean"),
        "f32" | "f64" => Shape::Scalar("number"),
        "u8" | "u16" | "u32" | "u64" | "usize" | "i32" | "i64" => Shape::Scalar("integer"),
        other if tables.contains_key(other) => Shape::Table(other.to_string()),
        other => panic!("{SOURCE}: spec field of unknown type `{other}`: teach tests/docs.rs"),
    }
}

fn is_option(ty: &Type) -> bool {
    split(ty).0 == "Option"
}

/// A table cell: one line, `|` escaped.
fn cell(s: &str) -> String {
    s.replace("\n\n", "<br>")
        .replace('\n', " ")
        .replace('|', "\\|")
}

/// The heading of a nested table, as written in a spec file.
fn heading(path: &[String], list: bool) -> String {
    let name = path.join(".");
    if list {
        format!("[[{name}]]")
    } else {
        format!("[{name}]")
    }
}

/// GitHub's anchor of a heading: lower case, punctuation other than `-` and `_` dropped.
fn anchor(heading: &str) -> String {
    heading
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == ' ')
        .map(|c| {
            if c == ' ' {
                '-'
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect()
}

/// Renders the table `name` at `path` (empty: the top level), then its nested tables.
fn render(
    tables: &HashMap<String, Table>,
    name: &str,
    path: &[String],
    list: bool,
    out: &mut String,
) {
    let table = &tables[name];
    let title = if path.is_empty() {
        "Top level".to_string()
    } else {
        heading(path, list)
    };
    writeln!(out, "## {title}\n").unwrap();
    if !table.doc.is_empty() {
        writeln!(out, "{}\n", table.doc).unwrap();
    }
    writeln!(out, "| key | type | description |").unwrap();
    writeln!(out, "|---|---|---|").unwrap();
    let mut nested = Vec::new();
    for k in &table.keys {
        let required = !k.default && !is_option(&k.ty);
        let mut key = format!("`{}`", k.name);
        for a in &k.aliases {
            write!(key, " (or `{a}`)").unwrap();
        }
        let mut doc = k.doc.clone();
        let ty = match shape(&k.ty, tables) {
            Shape::Scalar(s) => s.to_string(),
            Shape::Map => "table of strings".to_string(),
            Shape::List(inner) => match *inner {
                Shape::Scalar(s) => format!("array of {s}s"),
                Shape::Table(t) => {
                    let h = heading(&[path, std::slice::from_ref(&k.name)].concat(), true);
                    if doc.is_empty() {
                        doc = tables[&t].doc.clone();
                    }
                    nested.push((t, k.name.clone(), true));
                    format!("[`{h}`](#{})", anchor(&h))
                }
                _ => panic!("{SOURCE}: `{}`: a list of lists or maps", k.name),
            },
            Shape::Table(t) => {
                let h = heading(&[path, std::slice::from_ref(&k.name)].concat(), false);
                if doc.is_empty() {
                    doc = tables[&t].doc.clone();
                }
                nested.push((t, k.name.clone(), false));
                format!("[`{h}`](#{})", anchor(&h))
            }
        };
        let ty = if required {
            format!("{ty}, required")
        } else {
            ty
        };
        writeln!(out, "| {} | {} | {} |", key, ty, cell(&doc)).unwrap();
    }
    writeln!(out).unwrap();
    for (t, key, list) in nested {
        render(tables, &t, &[path, &[key]].concat(), list, out);
    }
}

fn generate(root: &Path) -> String {
    let text = std::fs::read_to_string(root.join(SOURCE)).unwrap();
    let file = syn::parse_file(&text).unwrap_or_else(|e| panic!("{SOURCE}: {e}"));
    let tables = tables(&file);
    assert!(tables.contains_key("JobSpec"), "{SOURCE} has no JobSpec");
    let mut out = String::new();
    out.push_str(
        "# Spec reference\n\n\
         <!-- Generated by tests/docs.rs from the doc comments of src/spec/mod.rs; do not edit.\n     \
         LOGFLOW_BLESS=1 cargo test --release --test docs rewrites it. -->\n\n\
         Every key of a job spec file (`dataflows/*.toml`), as `logflow` reads it: unknown keys\n\
         and bad values are refused with the file, line and field (`logflow check SPEC`).\n\
         Durations are strings such as `500ms`, `30s`, `5m`, `1h`. What the results look like,\n\
         and how windows, watermarks and late data behave: [design.md](design.md) sections 3\n\
         and 5; expressions and aggregates: [the README](../README.md#specs).\n\n",
    );
    render(&tables, "JobSpec", &[], false, &mut out);
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}

/// A line diff (longest common subsequence): `-` lines of `old`, `+` lines of `new`.
fn diff(old: &str, new: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (old.lines().collect(), new.lines().collect());
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            writeln!(out, "-{:4} {}", i + 1, a[i]).unwrap();
            i += 1;
        } else {
            writeln!(out, "+{:4} {}", j + 1, b[j]).unwrap();
            j += 1;
        }
    }
    out
}

#[test]
fn specs_md_is_generated_from_the_spec_types() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let want = generate(root);
    let path = root.join(OUTPUT);
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    if have == want {
        return;
    }
    if std::env::var("LOGFLOW_BLESS").is_ok_and(|v| v == "1") {
        std::fs::write(&path, &want).unwrap();
        return;
    }
    panic!(
        "{OUTPUT} is stale (- the file, + generated from {SOURCE}); rewrite it with \
         LOGFLOW_BLESS=1 cargo test --release --test docs\n{}",
        diff(&have, &want)
    );
}

#[test]
fn the_generator_reads_keys_as_serde_does() {
    let file: syn::File = syn::parse_str(
        r#"
        /// The top.
        pub struct JobSpec {
            /// A name,
            /// on two lines.
            pub name: Spanned<String>,
            #[serde(rename = "part", default)]
            pub parts: Vec<Part>,
            #[serde(default, alias = "other")]
            pub one: Option<Spanned<u64>>,
        }
        /// A part.
        pub struct Part { pub on: bool }
        "#,
    )
    .unwrap();
    let tables = tables(&file);
    let mut out = String::new();
    render(&tables, "JobSpec", &[], false, &mut out);
    assert!(
        out.contains("| `name` | string, required | A name, on two lines. |"),
        "{out}"
    );
    assert!(
        out.contains("| `part` | [`[[part]]`](#part) | A part. |"),
        "{out}"
    );
    assert!(out.contains("| `one` (or `other`) | integer |  |"), "{out}");
    assert!(out.contains("## [[part]]\n\nA part.\n"), "{out}");
    assert!(out.contains("| `on` | boolean, required |  |"), "{out}");
}

#[test]
fn the_diff_names_changed_lines() {
    assert_eq!(diff("a\nb\nc\n", "a\nx\nc\n"), "-   2 b\n+   2 x\n");
    assert_eq!(diff("a\n", "a\n"), "");
}
