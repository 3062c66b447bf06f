//! Running the real binary and reading what it wrote.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};

use super::input::{tmp_dir, Input};

/// How long one engine run may take before the test gives up.
const RUN_TIMEOUT: Duration = Duration::from_secs(600);

pub struct Accounting {
    pub read: u64,
    pub parsed: u64,
    pub dead_letter: u64,
    pub on_time: u64,
    pub late: u64,
}

pub struct RunOutput {
    pub dir: PathBuf,
    pub accounting: Accounting,
}

impl Drop for RunOutput {
    fn drop(&mut self) {
        super::remove_unless_failed(&self.dir);
    }
}

pub fn run_engine(
    spec: &str,
    format: &str,
    input: &Input,
    workers: usize,
    name: &str,
) -> RunOutput {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tmp_dir().join(format!("{name}-w{workers}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create output dir");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_logflow"));
    cmd.current_dir(root)
        .arg("run")
        .arg(spec)
        .arg("--input")
        .arg(&input.path)
        .args(["--format", format, "--output-dir"])
        .arg(&dir)
        .args(["-w", &workers.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(dir.join("stderr.txt")).expect("stderr file"),
        ));
    let shown = format!("{cmd:?}");
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{shown}: {e}"));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for logflow") {
            break status;
        }
        if started.elapsed() > RUN_TIMEOUT {
            let _ = child.kill();
            panic!("{shown} did not finish within {RUN_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = std::fs::read_to_string(dir.join("stderr.txt")).unwrap_or_default();
    let tail: Vec<&str> = stderr.lines().rev().take(20).collect::<Vec<_>>();
    let tail = tail.into_iter().rev().collect::<Vec<_>>().join("\n");
    assert!(
        status.success(),
        "{shown} failed ({status}); stderr ends with:\n{tail}"
    );
    let last = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    let accounting = parse_accounting(last)
        .unwrap_or_else(|| panic!("the last stderr line is not the accounting line: {last:?}"));
    RunOutput { dir, accounting }
}

/// Parses the accounting line, bare or as the message of a diagnostic line
/// (`TIME LEVEL target: accounting: ...`, docs/operations.md).
pub fn parse_accounting(line: &str) -> Option<Accounting> {
    let line = line.trim();
    let message = match line.split_once(": ") {
        Some((_, m)) if !line.starts_with("accounting:") => m,
        _ => line,
    };
    let rest = message.strip_prefix("accounting:")?;
    let mut fields = BTreeMap::new();
    for part in rest.split_whitespace() {
        let (k, v) = part.split_once('=')?;
        fields.insert(k, v.parse::<u64>().ok()?);
    }
    Some(Accounting {
        read: *fields.get("read")?,
        parsed: *fields.get("parsed")?,
        dead_letter: *fields.get("dead_letter")?,
        on_time: *fields.get("on_time")?,
        late: *fields.get("late")?,
    })
}

/// The keys of a JSON object, in document order.
pub struct Keys(pub Vec<String>);

impl<'de> serde::Deserialize<'de> for Keys {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Keys, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Keys;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Keys, A::Error> {
                let mut keys = Vec::new();
                while let Some(k) = map.next_key::<String>()? {
                    map.next_value::<IgnoredAny>()?;
                    keys.push(k);
                }
                Ok(Keys(keys))
            }
        }
        d.deserialize_map(V)
    }
}

/// Lines of a JSONL output file; a missing file has none.
pub fn jsonl(path: &Path) -> Vec<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => panic!("{}: {e}", path.display()),
    }
}
