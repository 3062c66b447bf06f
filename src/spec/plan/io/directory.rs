//! `kind = "directory"`: files as they appear in a folder.

use std::fmt::Write;
use std::time::Duration;

use super::super::compile::Ctx;
use crate::spec::SourceSpec;
use crate::time::duration::format_ms;
use crate::Error;

/// `[source]` settings of `kind = "directory"`.
#[derive(Clone, Debug, PartialEq)]
pub struct DirectoryConfig {
    /// The folder watched.
    pub path: String,
    /// File names read (`*` and `?` wildcards).
    pub pattern: String,
    /// New files started per read at most.
    pub max_files_per_trigger: usize,
    /// The input ends when no new file has come for this long.
    pub end_after_idle: Option<Duration>,
}

impl DirectoryConfig {
    /// The `[source]` keys this kind takes besides `kind`, `format` and `max_record_bytes`.
    pub(super) const KEYS: &'static [&'static str] =
        &["path", "pattern", "max_files_per_trigger", "end_after_idle"];

    pub(super) fn compile(s: &SourceSpec, cx: &Ctx<'_>) -> Result<DirectoryConfig, Error> {
        Ok(DirectoryConfig {
            path: super::need_path(s, cx, "directory")?,
            pattern: s
                .pattern
                .as_ref()
                .map_or("*".into(), |p| p.get_ref().clone()),
            max_files_per_trigger: match &s.max_files_per_trigger {
                Some(v) if *v.get_ref() == 0 => {
                    return cx.err(
                        v.span(),
                        "source.max_files_per_trigger",
                        "must be at least 1",
                    )
                }
                Some(v) => usize::try_from(*v.get_ref()).unwrap_or(usize::MAX),
                None => usize::MAX,
            },
            end_after_idle: match &s.end_after_idle {
                Some(d) => Some(Duration::from_millis(
                    cx.positive_duration(d, "source.end_after_idle")? as u64,
                )),
                None => None,
            },
        })
    }

    /// What `logflow check` says it reads.
    pub fn describe(&self) -> String {
        let mut d = format!(
            "directory {}: files matching `{}` as they appear",
            self.path, self.pattern
        );
        if self.max_files_per_trigger != usize::MAX {
            let _ = write!(d, ", at most {} new per read", self.max_files_per_trigger);
        }
        if let Some(idle) = self.end_after_idle {
            let _ = write!(
                d,
                ", ends after {} without a new file",
                format_ms(idle.as_millis() as i64)
            );
        }
        d
    }
}
