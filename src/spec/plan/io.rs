//! The source and sink of a job.

use super::*;

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
    let forbid =
        |name: &str, v: bool, span: std::ops::Range<usize>, kind: &str| -> Result<(), Error> {
            if v {
                cx.err(
                    span,
                    &format!("source.{name}"),
                    format!("`{name}` does not apply to a {kind} source"),
                )
            } else {
                Ok(())
            }
        };
    let kind = match s.kind.get_ref().as_str() {
        "file" => {
            let Some(path) = &s.path else {
                return cx.err(s.kind.span(), "source.path", "a file source needs `path`");
            };
            if let Some(t) = &s.topic {
                forbid("topic", true, t.span(), "file")?;
            }
            SourceKind::File {
                path: path.get_ref().clone(),
            }
        }
        "generator" => SourceKind::Generator {
            events: s.events.as_ref().map_or(100_000, |v| *v.get_ref()),
            seed: s.seed.as_ref().map_or(42, |v| *v.get_ref()),
        },
        "kafka" => {
            let Some(topic) = &s.topic else {
                return cx.err(
                    s.kind.span(),
                    "source.topic",
                    "a kafka source needs `topic`",
                );
            };
            if let Some(p) = &s.path {
                forbid("path", true, p.span(), "kafka")?;
            }
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
                properties: s
                    .properties
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            }
        }
        other => {
            return cx.err(
                s.kind.span(),
                "source.kind",
                format!("unknown source kind `{other}` (kafka, file, generator)"),
            )
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
            properties: s
                .properties
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
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
