//! The module floors: every `crate::` path in `src/` must point to a module on a lower floor
//! than the module it is written in. The floors are read from the table in `src/lib.rs`'s crate
//! doc, so the order is written down in one place.
//!
//! The scan works on text: it blanks comments and string literals, then reads every
//! `crate::name` and every name of a `crate::{a, b::c}` group. Names that `lib.rs` re-exports
//! (`crate::Error`) count as the module they come from.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// Floor of each top-level module, from the `| floor | modules | ... |` table of `lib.rs`.
fn floors(lib: &str) -> BTreeMap<String, u32> {
    let mut out = BTreeMap::new();
    for line in lib.lines() {
        let Some(row) = line.strip_prefix("//! |") else {
            continue;
        };
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let Some(Ok(floor)) = cells.first().map(|c| c.parse::<u32>()) else {
            continue;
        };
        let Some(modules) = cells.get(1) else {
            continue;
        };
        for name in modules.split("[`").skip(1) {
            let name = name.split('`').next().unwrap_or_default();
            assert!(
                out.insert(name.to_string(), floor).is_none(),
                "src/lib.rs: `{name}` is on two floors"
            );
        }
    }
    out
}

/// Names re-exported at the crate root (`pub use error::{Error, Result};`) and their modules.
fn root_reexports(lib: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in lib.lines() {
        let Some(rest) = line.trim().strip_prefix("pub use ") else {
            continue;
        };
        let rest = rest.trim_end_matches(';');
        let Some((module, names)) = rest.split_once("::") else {
            continue;
        };
        for name in names.trim_matches(|c| c == '{' || c == '}').split(',') {
            let name = name.trim().rsplit("::").next().unwrap_or_default();
            out.insert(name.to_string(), module.to_string());
        }
    }
    out
}

/// The text with comments and the contents of string and char literals replaced by spaces
/// (newlines kept, so line numbers still hold).
fn blank(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    let keep_lines = |s: &[u8], out: &mut Vec<u8>| {
        out.extend(s.iter().map(|&c| if c == b'\n' { b'\n' } else { b' ' }))
    };
    while i < b.len() {
        let rest = &b[i..];
        let end = if rest.starts_with(b"//") {
            rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len())
        } else if rest.starts_with(b"/*") {
            find(rest, b"*/").map_or(rest.len(), |e| e + 2)
        } else if rest.starts_with(b"r\"") || rest.starts_with(b"r#") {
            let hashes = rest[1..].iter().take_while(|&&c| c == b'#').count();
            if rest.get(1 + hashes) != Some(&b'"') {
                out.push(b[i]);
                i += 1;
                continue;
            }
            let mut close = vec![b'"'];
            close.extend(std::iter::repeat_n(b'#', hashes));
            find(&rest[2 + hashes..], &close).map_or(rest.len(), |e| e + 2 + hashes + close.len())
        } else if rest[0] == b'"' {
            let mut j = 1;
            while j < rest.len() && rest[j] != b'"' {
                j += if rest[j] == b'\\' { 2 } else { 1 };
            }
            (j + 1).min(rest.len())
        } else if rest[0] == b'\'' && rest.len() > 2 && (rest[2] == b'\'' || rest[1] == b'\\') {
            // A char literal ('x', '\n', '\''); a lifetime ('a) has no closing quote here.
            rest.iter()
                .skip(2)
                .position(|&c| c == b'\'')
                .map_or(1, |e| e + 3)
        } else {
            out.push(b[i]);
            i += 1;
            continue;
        };
        keep_lines(&rest[..end], &mut out);
        i += end;
    }
    String::from_utf8(out).expect("blanking keeps UTF-8 (only ASCII bytes are replaced)")
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn ident(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// Every (line, name) where `text` names `crate::name`, including each name of a
/// `crate::{...}` group.
fn crate_paths(text: &str) -> Vec<(usize, String)> {
    let text = blank(text);
    let mut out = Vec::new();
    for (at, _) in text.match_indices("crate::") {
        // `logflow_crate::x` or `foocrate::x` are not `crate::x`.
        let before = text[..at].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &text[at + "crate::".len()..];
        let line_of = |pos: usize| text[..pos].matches('\n').count() + 1;
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut start_of_item = true;
            for (k, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    ',' if depth == 1 => start_of_item = true,
                    c if c.is_whitespace() => {}
                    _ if start_of_item && depth == 1 => {
                        start_of_item = false;
                        let name = ident(&group[k..]);
                        if !name.is_empty() {
                            let pos = at + "crate::{".len() + k;
                            out.push((line_of(pos), name.to_string()));
                        }
                    }
                    _ => start_of_item = false,
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                out.push((line_of(at), name.to_string()));
            }
        }
    }
    out
}

/// The top-level module a file of `src/` belongs to (`None` for `lib.rs` and `main.rs`).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    match first {
        "lib.rs" | "main.rs" => None,
        f => Some(f.trim_end_matches(".rs").to_string()),
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .expect("read src/")
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The back edges of `text` (a file of module `module`): `file:line: a -> b (...)` each.
fn back_edges(
    file: &str,
    module: &str,
    text: &str,
    floors: &BTreeMap<String, u32>,
    reexports: &BTreeMap<String, String>,
) -> Vec<String> {
    let own = floors[module];
    let mut out = Vec::new();
    for (line, name) in crate_paths(text) {
        let target = reexports.get(&name).cloned().unwrap_or(name);
        if target == module {
            continue;
        }
        match floors.get(&target) {
            Some(&f) if f < own => {}
            Some(&f) => out.push(format!(
                "{file}:{line}: `{module}` (floor {own}) uses `crate::{target}` (floor {f}): \
                 a module may use only modules on lower floors"
            )),
            None => out.push(format!(
                "{file}:{line}: `crate::{target}` is not a module of the floor table in src/lib.rs"
            )),
        }
    }
    out
}

#[test]
fn modules_use_only_lower_floors() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = root.join("src");
    let lib = fs::read_to_string(src.join("lib.rs")).expect("read src/lib.rs");
    let floors = floors(&lib);
    let reexports = root_reexports(&lib);
    assert!(
        floors.len() >= 10,
        "the floor table of src/lib.rs was not found: {floors:?}"
    );
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut problems = Vec::new();
    let mut paths = 0;
    for file in &files {
        let Some(module) = module_of(&src, file) else {
            continue;
        };
        let name = file
            .strip_prefix(root)
            .unwrap_or(file)
            .display()
            .to_string();
        if !floors.contains_key(&module) {
            problems.push(format!(
                "{name}: module `{module}` has no floor in src/lib.rs's table"
            ));
            continue;
        }
        let text = fs::read_to_string(file).expect("read a source file");
        paths += crate_paths(&text).len();
        problems.extend(back_edges(&name, &module, &text, &floors, &reexports));
    }
    // The scan must be seeing the crate's paths, or an empty result would prove nothing.
    assert!(paths > 200, "only {paths} `crate::` paths found in src/");
    assert!(
        problems.is_empty(),
        "{} back edge(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn the_scan_finds_paths_groups_and_reexports_and_skips_comments() {
    let lib = "//! | floor | modules |\n//! |---:|---|\n//! | 2 | [`runtime`] |\n\
               //! | 1 | [`record`], [`error`] |\n\npub use error::{Error, Result};\n";
    let floors = floors(lib);
    assert_eq!(floors.get("runtime"), Some(&2));
    assert_eq!(floors.get("error"), Some(&1));
    let reexports = root_reexports(lib);
    let text = "use crate::record::Event;\n\
                // use crate::runtime::x; (a comment)\n\
                const S: &str = \"crate::runtime\";\n\
                use crate::{\n    runtime::ingest::X,\n    Error,\n};\n\
                fn f() { crate::runtime::run(); }\n";
    let edges = back_edges("src/record/x.rs", "record", text, &floors, &reexports);
    assert_eq!(
        edges.len(),
        3,
        "a grouped path, a root re-export on the same floor and a call path: {edges:#?}"
    );
    assert!(edges[0].starts_with("src/record/x.rs:5: `record` (floor 1) uses `crate::runtime`"));
    assert!(edges[1].starts_with("src/record/x.rs:6: `record` (floor 1) uses `crate::error`"));
    assert!(edges[2].starts_with("src/record/x.rs:8: "));
    assert!(back_edges("src/runtime/x.rs", "runtime", text, &floors, &reexports).is_empty());
}
