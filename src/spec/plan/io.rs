//! The source and sink of a job.

use toml::Spanned;

use super::compile::Ctx;
use super::types::{
    CheckpointPlan, DirectoryConfig, SinkPlan, SocketConfig, SourceKind, SourcePlan,
};
use crate::parse::Format;
use crate::spec::JobSpec;
use crate::Error;

pub(super) fn compile_source(spec: &JobSpec, cx: &Ctx<'_>) -> Result<SourcePlan, Error> {
    let s = &spec.source;
    let format = *s.format.get_ref();
    let max_record_bytes = match &s.max_record_bytes {
        Some(v) if *v.get_ref() < 64 => {
            return cx.err(v.span(), "source.max_record_bytes", "must be at least 64")
        }
        Some(v) => *v.get_ref() as usize,
        None => 1 << 20,
    };
    // Which settings each kind takes: any other one set is an error naming it.
    let kind_name = s.kind.get_ref().as_str();
    let allowed: &[&str] = match kind_name {
        "file" => &["path"],
        "directory" => &["path", "pattern", "max_files_per_trigger", "end_after_idle"],
        "socket" => &["host", "port", "reconnect"],
        "generator" => &["events", "seed", "rate"],
        "kafka" => &["topic", "brokers", "start", "properties"],
        other => {
            return cx.err(
                s.kind.span(),
                "source.kind",
                format!(
                    "unknown source kind `{other}` (kafka, file, directory, socket, generator)"
                ),
            )
        }
    };
    let span = |v: &Option<Spanned<String>>| v.as_ref().map(|v| v.span());
    let set: [(&str, Option<std::ops::Range<usize>>); 13] = [
        ("path", span(&s.path)),
        ("topic", span(&s.topic)),
        ("brokers", span(&s.brokers)),
        ("start", span(&s.start)),
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
    ];
    let idle = ("end_after_idle", span(&s.end_after_idle));
    for (name, at) in set.into_iter().chain([idle]) {
        if let (Some(at), false) = (at, allowed.contains(&name)) {
            return cx.err(
                at,
                &format!("source.{name}"),
                format!("`{name}` does not apply to a {kind_name} source"),
            );
        }
    }
    let need_path = |what: &str| match &s.path {
        Some(p) => Ok(p.get_ref().clone()),
        None => cx.err(
            s.kind.span(),
            "source.path",
            format!("a {what} source needs `path`"),
        ),
    };
    let kind = match kind_name {
        "file" => SourceKind::File {
            path: need_path("file")?,
        },
        "directory" => SourceKind::Directory(DirectoryConfig {
            path: need_path("directory")?,
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
                Some(v) => *v.get_ref() as usize,
                None => usize::MAX,
            },
            end_after_idle: match &s.end_after_idle {
                Some(d) => Some(std::time::Duration::from_millis(
                    cx.positive_duration(d, "source.end_after_idle")? as u64,
                )),
                None => None,
            },
        }),
        "socket" => {
            let Some(port) = &s.port else {
                return cx.err(s.kind.span(), "source.port", "a socket source needs `port`");
            };
            SourceKind::Socket(SocketConfig {
                host: s
                    .host
                    .as_ref()
                    .map_or("127.0.0.1".into(), |h| h.get_ref().clone()),
                port: *port.get_ref(),
                reconnect: s.reconnect.as_ref().is_some_and(|r| *r.get_ref()),
            })
        }
        "generator" => {
            if !matches!(format, Format::Json | Format::UserEvents) {
                return cx.err(
                    s.format.span(),
                    "source.format",
                    "the generator writes `json` logs or `user-events`",
                );
            }
            let rate = match &s.rate {
                Some(r) if !(r.get_ref().is_finite() && *r.get_ref() > 0.0) => {
                    return cx.err(
                        r.span(),
                        "source.rate",
                        "must be a positive number of events per second",
                    )
                }
                r => r.as_ref().map(|r| *r.get_ref()),
            };
            SourceKind::Generator {
                events: s.events.as_ref().map_or(100_000, |v| *v.get_ref()),
                seed: s.seed.as_ref().map_or(42, |v| *v.get_ref()),
                rate,
            }
        }
        _ => {
            let Some(topic) = &s.topic else {
                return cx.err(
                    s.kind.span(),
                    "source.topic",
                    "a kafka source needs `topic`",
                );
            };
            let start = match &s.start {
                None => "earliest".to_string(),
                Some(v) => match v.get_ref().as_str() {
                    "earliest" | "latest" | "stored" => v.get_ref().clone(),
                    other => {
                        return cx.err(
                            v.span(),
                            "source.start",
                            format!("unknown start `{other}` (earliest, latest, stored)"),
                        )
                    }
                },
            };
            SourceKind::Kafka {
                topic: topic.get_ref().clone(),
                brokers: s.brokers.as_ref().map(|b| b.get_ref().clone()),
                start,
                properties: crate::spec::properties::SpecProperties::check(&s.properties)
                    .or_else(|m| cx.err(s.kind.span(), "source.properties", m))?,
            }
        }
    };
    Ok(SourcePlan {
        kind,
        format,
        max_record_bytes,
    })
}

pub(super) fn compile_sink(spec: &JobSpec, cx: &Ctx<'_>) -> Result<SinkPlan, Error> {
    let s = &spec.sink;
    let default_kind = if spec.source.kind.get_ref() == "kafka" {
        "kafka"
    } else {
        "console"
    };
    let kind = s
        .kind
        .as_ref()
        .map_or(default_kind, |k| k.get_ref().as_str());
    if let (Some(d), false) = (&s.delivery, kind == "kafka") {
        return cx.err(
            d.span(),
            "sink.delivery",
            "`delivery` applies to a kafka sink",
        );
    }
    Ok(match kind {
        "console" => SinkPlan::Console,
        "files" => match &s.dir {
            Some(d) => SinkPlan::Files {
                dir: d.get_ref().clone(),
            },
            None => {
                let span = s.kind.as_ref().map_or(0..0, |k| k.span());
                return cx.err(span, "sink.dir", "a files sink needs `dir`");
            }
        },
        "kafka" => SinkPlan::Kafka {
            brokers: s.brokers.as_ref().map(|b| b.get_ref().clone()),
            properties: crate::spec::properties::SpecProperties::check(&s.properties).or_else(
                |m| {
                    cx.err(
                        s.kind.as_ref().map_or(0..0, |k| k.span()),
                        "sink.properties",
                        m,
                    )
                },
            )?,
            exactly_once: match s
                .delivery
                .as_ref()
                .map(|d| (d.get_ref().as_str(), d.span()))
            {
                None | Some(("at_least_once", _)) => false,
                Some(("exactly_once", span)) => {
                    // Replayed results must come at the same progress times: only append-mode
                    // windows are emitted at a time that depends on the window alone.
                    if let Some(a) = spec.analyses.iter().find(|a| {
                        a.mode
                            .as_ref()
                            .is_some_and(|m| m.get_ref().as_str() != "append")
                    }) {
                        return cx.err(
                            span,
                            "sink.delivery",
                            format!(
                                "exactly_once needs every analysis in append mode; `{}` is not",
                                a.name.get_ref()
                            ),
                        );
                    }
                    true
                }
                Some((other, span)) => {
                    return cx.err(
                        span,
                        "sink.delivery",
                        format!("unknown delivery `{other}` (at_least_once, exactly_once)"),
                    )
                }
            },
        },
        other => {
            let span = s.kind.as_ref().map_or(0..0, |k| k.span());
            return cx.err(
                span,
                "sink.kind",
                format!("unknown sink kind `{other}` (kafka, console, files)"),
            );
        }
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
        if let Some(why) = CheckpointPlan::unsupported(&source.kind) {
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
    Ok(Some(CheckpointPlan {
        // Empty: `--checkpoint-dir` must give it (checked when the flags are applied).
        dir: c
            .dir
            .as_ref()
            .map(|d| d.get_ref().clone())
            .unwrap_or_default(),
        interval_ms,
        keep,
    }))
}
