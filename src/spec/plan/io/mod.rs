//! The source and sink of a job: one file per kind with its typed config, how a spec's
//! `[source]` or `[sink]` compiles to it, and what `logflow check` says of it. How each
//! source is opened is next to its reader (`sources::<kind>`).

mod directory;
mod file;
mod generator;
mod kafka;
mod socket;

use toml::Spanned;

pub use directory::DirectoryConfig;
pub use file::FileConfig;
pub use generator::GeneratorConfig;
pub use kafka::{Endpoint, KafkaEndpoint, KafkaSinkConfig, KafkaSourceConfig};
pub use socket::SocketConfig;

use super::compile::Ctx;
use super::types::CheckpointPlan;
use crate::parse::Format;
use crate::spec::{JobSpec, SinkKind, SourceKind, SourceSpec};
use crate::Error;

/// Where records come from, and how they are cut and parsed.
#[derive(Clone, Debug)]
pub struct SourcePlan {
    /// The kind and its settings.
    pub kind: SourceConfig,
    /// How records are parsed.
    pub format: Format,
    /// Longer records go to the dead-letter output.
    pub max_record_bytes: usize,
}

/// A source kind with its settings.
#[derive(Clone, Debug)]
pub enum SourceConfig {
    /// `kind = "file"`.
    File(FileConfig),
    /// `kind = "generator"`.
    Generator(GeneratorConfig),
    /// `kind = "socket"`.
    Socket(SocketConfig),
    /// `kind = "directory"`.
    Directory(DirectoryConfig),
    /// `kind = "kafka"`.
    Kafka(KafkaSourceConfig),
}

impl SourceConfig {
    /// What `logflow check` says the job reads.
    pub fn describe(&self) -> String {
        match self {
            SourceConfig::File(c) => c.describe(),
            SourceConfig::Generator(c) => c.describe(),
            SourceConfig::Socket(c) => c.describe(),
            SourceConfig::Directory(c) => c.describe(),
            SourceConfig::Kafka(c) => c.describe(),
        }
    }

    /// Why the source cannot be checkpointed, if it cannot: a restored job reads on from the
    /// positions in its checkpoint, so the source must replay the same records from there.
    pub fn checkpoint_refusal(&self) -> Option<&'static str> {
        match self {
            SourceConfig::Kafka(_) => None,
            SourceConfig::File(c) => c.checkpoint_refusal(),
            SourceConfig::Generator(c) => c.checkpoint_refusal(),
            SourceConfig::Socket(_) | SourceConfig::Directory(_) => Some(
                "checkpoints need a source that can be read again from a position: kafka, \
                 file or generator",
            ),
        }
    }

    /// The Kafka source read from the in-process cluster (no brokers named anywhere).
    pub fn is_embedded(&self) -> bool {
        matches!(
            self,
            SourceConfig::Kafka(KafkaSourceConfig {
                endpoint: Endpoint::Embedded(_),
                ..
            })
        )
    }
}

/// Where results go.
#[derive(Clone, Debug)]
pub enum SinkConfig {
    /// `kind = "console"`: `<analysis> <json>` lines on stdout.
    Console,
    /// `kind = "files"`: one JSONL file per output in `dir`.
    Files {
        /// The output directory.
        dir: String,
    },
    /// `kind = "kafka"`: one topic per output.
    Kafka(KafkaSinkConfig),
}

impl SinkConfig {
    /// A Kafka sink with `delivery = "exactly_once"`.
    pub fn exactly_once(&self) -> bool {
        matches!(
            self,
            SinkConfig::Kafka(KafkaSinkConfig {
                exactly_once: true,
                ..
            })
        )
    }

    /// What `logflow check` says the job writes to.
    pub fn describe(&self) -> String {
        match self {
            SinkConfig::Console => "console".to_string(),
            SinkConfig::Files { dir } => format!("JSONL files in {dir}"),
            SinkConfig::Kafka(k) => k.describe(),
        }
    }
}

/// The `[source]` keys a kind takes besides `kind`, `format` and `max_record_bytes`.
fn keys_of(kind: SourceKind) -> &'static [&'static str] {
    match kind {
        SourceKind::File => FileConfig::KEYS,
        SourceKind::Directory => DirectoryConfig::KEYS,
        SourceKind::Socket => SocketConfig::KEYS,
        SourceKind::Generator => GeneratorConfig::KEYS,
        SourceKind::Kafka => KafkaSourceConfig::KEYS,
    }
}

/// Where each kind-specific `[source]` key is set in the file, if it is. The spec keeps one
/// flat `[source]` table so that every key has its own span for errors (toml's spans do not
/// survive serde's buffering of internally tagged enums).
fn set_keys(s: &SourceSpec) -> [(&'static str, Option<std::ops::Range<usize>>); 14] {
    let span = |v: &Option<Spanned<String>>| v.as_ref().map(|v| v.span());
    [
        ("path", span(&s.path)),
        ("topic", span(&s.topic)),
        ("brokers", span(&s.brokers)),
        ("start", s.start.as_ref().map(|v| v.span())),
        (
            "properties",
            (!s.properties.is_empty()).then(|| s.kind.span()),
        ),
        ("events", s.events.as_ref().map(|v| v.span())),
        ("seed", s.seed.as_ref().map(|v| v.span())),
        ("rate", s.rate.as_ref().map(|v| v.span())),
        ("host", span(&s.host)),
        ("port", s.port.as_ref().map(|v| v.span())),
        ("reconnect", s.reconnect.as_ref().map(|v| v.span())),
        ("pattern", span(&s.pattern)),
        (
            "max_files_per_trigger",
            s.max_files_per_trigger.as_ref().map(|v| v.span()),
        ),
        ("end_after_idle", span(&s.end_after_idle)),
    ]
}

/// `path`, which file and directory sources need.
fn need_path(s: &SourceSpec, cx: &Ctx<'_>, what: &str) -> Result<String, Error> {
    match &s.path {
        Some(p) => Ok(p.get_ref().clone()),
        None => cx.err(
            s.kind.span(),
            "source.path",
            format!("a {what} source needs `path`"),
        ),
    }
}

pub(super) fn compile_source(spec: &JobSpec, cx: &Ctx<'_>) -> Result<SourcePlan, Error> {
    let s = &spec.source;
    let max_record_bytes = match &s.max_record_bytes {
        Some(v) if *v.get_ref() < 64 => {
            return cx.err(v.span(), "source.max_record_bytes", "must be at least 64")
        }
        Some(v) => usize::try_from(*v.get_ref()).unwrap_or(usize::MAX),
        None => 1 << 20,
    };
    let kind = *s.kind.get_ref();
    let allowed = keys_of(kind);
    for (name, at) in set_keys(s) {
        if let (Some(at), false) = (at, allowed.contains(&name)) {
            return cx.err(
                at,
                &format!("source.{name}"),
                format!("`{name}` does not apply to a {kind} source"),
            );
        }
    }
    let config = match kind {
        SourceKind::File => SourceConfig::File(FileConfig::compile(s, cx)?),
        SourceKind::Directory => SourceConfig::Directory(DirectoryConfig::compile(s, cx)?),
        SourceKind::Socket => SourceConfig::Socket(SocketConfig::compile(s, cx)?),
        SourceKind::Generator => SourceConfig::Generator(GeneratorConfig::compile(s, cx)?),
        SourceKind::Kafka => SourceConfig::Kafka(KafkaSourceConfig::compile(s, cx)?),
    };
    Ok(SourcePlan {
        kind: config,
        format: *s.format.get_ref(),
        max_record_bytes,
    })
}

pub(super) fn compile_sink(spec: &JobSpec, cx: &Ctx<'_>) -> Result<SinkConfig, Error> {
    let s = &spec.sink;
    let default_kind = if *spec.source.kind.get_ref() == SourceKind::Kafka {
        SinkKind::Kafka
    } else {
        SinkKind::Console
    };
    let kind = s.kind.as_ref().map_or(default_kind, |k| *k.get_ref());
    if let (Some(d), false) = (&s.delivery, kind == SinkKind::Kafka) {
        return cx.err(
            d.span(),
            "sink.delivery",
            "`delivery` applies to a kafka sink",
        );
    }
    Ok(match kind {
        SinkKind::Console => SinkConfig::Console,
        SinkKind::Files => match &s.dir {
            Some(d) => SinkConfig::Files {
                dir: d.get_ref().clone(),
            },
            None => {
                let span = s.kind.as_ref().map_or(0..0, |k| k.span());
                return cx.err(span, "sink.dir", "a files sink needs `dir`");
            }
        },
        SinkKind::Kafka => SinkConfig::Kafka(KafkaSinkConfig::compile(spec, cx)?),
    })
}

pub(super) fn compile_checkpoint(
    spec: &JobSpec,
    source: &SourcePlan,
    cx: &Ctx<'_>,
) -> Result<Option<CheckpointPlan>, Error> {
    let Some(c) = &spec.checkpoint else {
        return Ok(None);
    };
    if let Some(dir) = &c.dir {
        if dir.get_ref().trim().is_empty() {
            return cx.err(dir.span(), "checkpoint.dir", "must not be empty");
        }
        if let Some(why) = source.kind.checkpoint_refusal() {
            return cx.err(dir.span(), "checkpoint.dir", why);
        }
    }
    let interval_ms = match &c.interval {
        Some(d) => cx.positive_duration(d, "checkpoint.interval")?,
        None => CheckpointPlan::DEFAULT_INTERVAL_MS,
    };
    let keep = match &c.keep {
        Some(k) if *k.get_ref() == 0 => {
            return cx.err(k.span(), "checkpoint.keep", "must be at least 1")
        }
        Some(k) => *k.get_ref() as usize,
        None => CheckpointPlan::DEFAULT_KEEP,
    };
    let key_groups = match &c.key_groups {
        Some(g)
            if *g.get_ref() == 0 || *g.get_ref() > u64::from(CheckpointPlan::MAX_KEY_GROUPS) =>
        {
            return cx.err(
                g.span(),
                "checkpoint.key_groups",
                format!("must be between 1 and {}", CheckpointPlan::MAX_KEY_GROUPS),
            )
        }
        Some(g) => Some(*g.get_ref() as u32),
        None => None,
    };
    Ok(Some(CheckpointPlan {
        // Empty: `--checkpoint-dir` must give it (checked when the flags are applied).
        dir: c
            .dir
            .as_ref()
            .map(|d| d.get_ref().clone())
            .unwrap_or_default(),
        interval_ms,
        keep,
        key_groups,
        savepoint: false,
        restore: false,
    }))
}
