//! Comparing result rows: as sets per analysis, exactly (floats bit for bit).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // test helpers fail loudly

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use super::read_jsonl;

/// Two result rows are equal: same fields in the same order, same values. Floats too, bit for
/// bit: sums, averages and deviations are exact whatever the layout or partitioning.
pub fn same_row(a: &Value, b: &Value) -> bool {
    a == b
}

/// Rows of both sides, matched by window and key, must be [`same_row`].
pub fn assert_same_rows(got: &[Value], want: &[String], what: &str) {
    let id = |v: &Value| {
        let o = v.as_object().unwrap();
        // Window, then the string/null fields (group keys) identify a row.
        let mut k = String::new();
        for (name, val) in o {
            if name == "window_start" || name == "window_end" || val.is_string() || val.is_null() {
                k.push_str(&format!("{name}={val};"));
            }
        }
        k
    };
    let want: Vec<Value> = want
        .iter()
        .map(|s| serde_json::from_str(s).unwrap())
        .collect();
    assert_eq!(got.len(), want.len(), "{what}: row count");
    let mut by_id: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for w in &want {
        by_id.entry(id(w)).or_default().push(w);
    }
    for g in got {
        let candidates = by_id
            .get_mut(&id(g))
            .unwrap_or_else(|| panic!("{what}: unexpected row {g}"));
        let i = candidates
            .iter()
            .position(|w| same_row(g, w))
            .unwrap_or_else(|| {
                panic!("{what}: row {g} differs from the reference: {candidates:?}")
            });
        candidates.swap_remove(i);
    }
}

/// The JSONL files of an output directory: file stem (analysis, `<job>.dead-letter`, ...) ->
/// sorted JSON rows.
pub fn dir_results(dir: &Path) -> BTreeMap<String, Vec<String>> {
    let mut res = BTreeMap::new();
    for entry in std::fs::read_dir(dir).expect("read output dir") {
        let path = entry.expect("dir entry").path();
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("file name")
            .to_string();
        let mut rows: Vec<String> = read_jsonl(&path).iter().map(|v| v.to_string()).collect();
        rows.sort();
        res.insert(name, rows);
    }
    res
}

/// Two output directories hold the same rows per file (see [`same_row`]).
pub fn assert_same_results(
    got: &BTreeMap<String, Vec<String>>,
    want: &BTreeMap<String, Vec<String>>,
    what: &str,
) {
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "{what}: output files"
    );
    for (name, rows) in got {
        let values: Vec<Value> = rows
            .iter()
            .map(|s| serde_json::from_str(s).expect("JSON row"))
            .collect();
        assert_same_rows(&values, &want[name], &format!("{what}: {name}"));
    }
}

/// `got` and `want` hold the same output files (at least `files` of them), each with the same
/// lines as many times.
pub fn assert_same_files(got: &Path, want: &Path, files: usize, what: &str) {
    let listing = |d: &Path| {
        let mut names: Vec<_> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        names
    };
    let names = listing(want);
    assert!(names.len() >= files, "{what}: {names:?}");
    assert_eq!(listing(got), names, "{what}: the output files differ");
    for n in names {
        let lines = |d: &Path| {
            let text = std::fs::read_to_string(d.join(&n)).unwrap();
            let mut l: Vec<String> = text.lines().map(String::from).collect();
            l.sort();
            l
        };
        let (g, w) = (lines(got), lines(want));
        assert!(
            g == w,
            "{what}: {n:?} has {} lines, the uninterrupted run {} ({} of them differ)",
            g.len(),
            w.len(),
            g.iter().filter(|l| w.binary_search(l).is_err()).count()
                + w.iter().filter(|l| g.binary_search(l).is_err()).count()
        );
    }
}
