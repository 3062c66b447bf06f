//! `kind = "file"`: one file (or stdin), one partition.

use super::super::compile::Ctx;
use crate::spec::SourceSpec;
use crate::Error;

/// `[source]` settings of `kind = "file"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileConfig {
    /// The file to read; `-` is stdin.
    pub path: String,
}

impl FileConfig {
    /// The `[source]` keys this kind takes besides `kind`, `format` and `max_record_bytes`.
    pub(super) const KEYS: &'static [&'static str] = &["path"];

    pub(super) fn compile(s: &SourceSpec, cx: &Ctx<'_>) -> Result<FileConfig, Error> {
        Ok(FileConfig {
            path: super::need_path(s, cx, "file")?,
        })
    }

    /// What `logflow check` says it reads.
    pub fn describe(&self) -> String {
        format!("file {}", self.path)
    }

    /// Why checkpoints cannot cover it, if they cannot (stdin cannot be read again).
    pub fn checkpoint_refusal(&self) -> Option<&'static str> {
        (self.path == "-").then_some("checkpoints need a source that can be read again: not stdin")
    }
}
