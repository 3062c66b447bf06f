//! Settings given when a job is started (`run` flags, `submit` flags) that replace the spec's
//! source, sink or end. `run` applies them directly; `submit` sends them with the spec text to a
//! cluster, which applies the same rules, so a job behaves the same started either way.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::plan::{
    CheckpointPlan, Endpoint, FileConfig, JobPlan, KafkaSinkConfig, SinkConfig, SourceConfig,
};
use crate::parse::{sniff, Format};
use crate::Error;

/// `--format`: a record format, or `auto`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum InputFormat {
    /// Decide from the input's first records.
    Auto,
    /// One JSON log object per line.
    Json,
    /// Apache common or combined log format.
    Apache,
    /// Nginx access log (same layouts as `apache`).
    Nginx,
    /// One JSON user event per line.
    UserEvents,
    /// Any text (processing time).
    Text,
}

impl InputFormat {
    /// The format itself; `None` for `auto`.
    pub fn fixed(self) -> Option<Format> {
        match self {
            InputFormat::Auto => None,
            InputFormat::Json => Some(Format::Json),
            InputFormat::Apache => Some(Format::Apache),
            InputFormat::Nginx => Some(Format::Nginx),
            InputFormat::UserEvents => Some(Format::UserEvents),
            InputFormat::Text => Some(Format::Text),
        }
    }
}

impl std::fmt::Display for InputFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.fixed() {
            Some(format) => format.fmt(f),
            None => f.write_str("auto"),
        }
    }
}

/// The format of `--input` from its first records, announced; `preferred` (the spec's) wins a
/// tie, and is kept for stdin (not read twice) and for a file that cannot be read here (the
/// source reports that).
fn sniff_input(input: &str, preferred: Format) -> Format {
    use std::io::Read;
    if input == "-" {
        tracing::info!(
            "logflow: --format auto: stdin is not sniffed; reading it as `{preferred}` (the spec's format; --format chooses another)"
        );
        return preferred;
    }
    let mut data = Vec::new();
    let read =
        std::fs::File::open(input).and_then(|f| f.take(sniff::BYTES as u64).read_to_end(&mut data));
    let Ok(n) = read else {
        return preferred;
    };
    let records = sniff::first_records(&data, n < sniff::BYTES);
    let chosen = sniff::sniff(&records, preferred);
    tracing::info!("logflow: --format auto: {input} is {chosen}");
    chosen.format
}

/// How a job reads, writes and ends, replacing the spec's settings.
#[derive(clap::Args, Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Overrides {
    /// Read this file instead of the spec's source (`-` = stdin); the run ends with the input.
    #[arg(long)]
    pub input: Option<String>,
    /// Record format of the input. With --input the default is `auto`: the first records
    /// decide (JSON logs, user events, Apache/Nginx access logs, else text) and the choice is
    /// printed; otherwise the spec's.
    #[arg(long, value_enum)]
    pub format: Option<InputFormat>,
    /// Write one JSONL file per analysis (plus dead-letter and late files) into DIR instead of
    /// the spec's sinks.
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
    /// Kafka bootstrap servers (overrides the spec's source and sink brokers).
    #[arg(long)]
    pub brokers: Option<String>,
    /// Kafka topic to read (overrides the spec's).
    #[arg(long)]
    pub topic: Option<String>,
    /// Read every partition up to its end offset as of start, emit all open windows, exit 0.
    #[arg(long)]
    pub stop_at_end: bool,
    /// Keep checkpoints in DIR (replacing the spec's `checkpoint.dir`): a job started again
    /// with the same DIR continues from its last checkpoint.
    #[arg(long, value_name = "DIR")]
    #[serde(default)]
    pub checkpoint_dir: Option<PathBuf>,
    /// The checkpoint a graceful stop (SIGTERM, SIGINT) ends with is a savepoint: kept until
    /// removed, whatever `checkpoint.keep` says (a point to restore, or to rescale, from).
    #[arg(long)]
    #[serde(default)]
    pub savepoint: bool,
    /// Continue from the newest checkpoint or savepoint in DIR, taken with any number of
    /// processes and workers, and keep checkpoints there (as --checkpoint-dir DIR, but a DIR
    /// without a checkpoint is an error rather than a fresh start).
    #[arg(long, value_name = "DIR")]
    #[serde(default)]
    pub from_checkpoint: Option<PathBuf>,
}

impl Overrides {
    /// Paths made absolute against the current directory, for a job that runs elsewhere (a
    /// cluster's processes do not share the submitter's working directory).
    pub fn absolute(mut self) -> Result<Overrides, Error> {
        let cwd = std::env::current_dir().map_err(|e| Error::io(".", e))?;
        if let Some(i) = self.input.as_mut().filter(|i| i.as_str() != "-") {
            *i = cwd.join(&*i).display().to_string();
        }
        if let Some(d) = self.output_dir.as_mut() {
            *d = cwd.join(&*d);
        }
        if let Some(d) = self.checkpoint_dir.as_mut() {
            *d = cwd.join(&*d);
        }
        if let Some(d) = self.from_checkpoint.as_mut() {
            *d = cwd.join(&*d);
        }
        Ok(self)
    }

    /// Applies the overrides to `plan` and settles where its Kafka source and sink connect,
    /// once: brokers come from the flags, then the spec, then `env_brokers`
    /// (`LOGFLOW_BROKERS`); a Kafka sink naming none of its own writes to its source's
    /// brokers. What names no brokers then is the in-process cluster (see
    /// [`Endpoint::Embedded`]): a Kafka source there writes its results there too, and a file
    /// input with a Kafka sink and no brokers anywhere prints the results instead.
    pub fn apply(&self, plan: &mut JobPlan, env_brokers: Option<&str>) -> Result<(), Error> {
        if let Some(input) = &self.input {
            plan.source.kind = SourceConfig::File(FileConfig {
                path: input.clone(),
            });
        }
        match (self.format, &self.input) {
            // A `[schema]` says how the spec's records read: its format is not a guess.
            (Some(InputFormat::Auto) | None, Some(input)) if plan.schema.is_some() => {
                tracing::info!(
                    "logflow: --format auto: {input} is read as `{}` with the spec's [schema]",
                    plan.source.format
                );
            }
            (Some(InputFormat::Auto) | None, Some(input)) => {
                plan.source.format = sniff_input(input, plan.source.format);
            }
            (Some(InputFormat::Auto), None) => {
                return Err(Error::Usage(
                    "--format auto reads the first records of --input FILE".into(),
                ))
            }
            (Some(f), _) => plan.source.format = f.fixed().unwrap_or(plan.source.format),
            (None, None) => {}
        }
        let settle = |e: &mut Endpoint| {
            let named = match e {
                Endpoint::Brokers(_) => self.brokers.clone(),
                Endpoint::Embedded(_) => self
                    .brokers
                    .clone()
                    .or_else(|| env_brokers.map(String::from)),
            };
            if let Some(b) = named {
                *e = e.to_brokers(b);
            }
        };
        if let SourceConfig::Kafka(k) = &mut plan.source.kind {
            if let Some(t) = &self.topic {
                k.topic = t.clone();
            }
            settle(&mut k.endpoint);
        } else if self.topic.is_some() {
            return Err(Error::Usage(
                "--topic applies to a Kafka source (not with --input)".into(),
            ));
        }
        if let SinkConfig::Kafka(k) = &mut plan.sink {
            settle(&mut k.endpoint);
        }
        if let Some(dir) = &self.output_dir {
            plan.sink = SinkConfig::Files {
                dir: dir.display().to_string(),
            };
        }
        match (&plan.source.kind, &mut plan.sink) {
            // The embedded demo reads the in-process cluster and writes to it, whatever the
            // spec's sink: its printer shows the output topics.
            (SourceConfig::Kafka(s), sink) if matches!(s.endpoint, Endpoint::Embedded(_)) => {
                *sink = SinkConfig::Kafka(KafkaSinkConfig {
                    endpoint: Endpoint::embedded(),
                    exactly_once: false,
                });
            }
            (SourceConfig::Kafka(s), SinkConfig::Kafka(k)) => {
                if let (Endpoint::Embedded(_), Some(b)) = (&k.endpoint, s.endpoint.brokers()) {
                    k.endpoint = k.endpoint.to_brokers(b.to_string());
                }
            }
            (
                _,
                sink @ SinkConfig::Kafka(KafkaSinkConfig {
                    endpoint: Endpoint::Embedded(_),
                    ..
                }),
            ) => *sink = SinkConfig::Console,
            _ => {}
        }
        let dir = match (&self.checkpoint_dir, &self.from_checkpoint) {
            (Some(c), Some(f)) if c != f => {
                return Err(Error::Usage(format!(
                    "--from-checkpoint {} keeps the job's checkpoints there: leave out \
                     --checkpoint-dir {} (or give the same directory)",
                    f.display(),
                    c.display()
                )))
            }
            (c, f) => f.as_ref().or(c.as_ref()),
        };
        if let Some(dir) = dir {
            let dir = dir.display().to_string();
            match plan.checkpoint.as_mut() {
                Some(c) => c.dir = dir,
                None => plan.checkpoint = Some(CheckpointPlan::in_dir(dir)),
            }
        }
        if let Some(c) = plan.checkpoint.as_mut() {
            c.restore = self.from_checkpoint.is_some();
        }
        if self.savepoint {
            match plan.checkpoint.as_mut() {
                Some(c) => c.savepoint = true,
                None => {
                    return Err(Error::Usage(
                        "--savepoint: the job keeps no checkpoints: add a [checkpoint] section \
                         or pass --checkpoint-dir DIR"
                            .into(),
                    ))
                }
            }
        }
        if plan.checkpoint.as_ref().is_some_and(|c| c.dir.is_empty()) {
            return Err(Error::Usage(
                "checkpoint: no directory: set `dir` in the spec's [checkpoint] section or pass \
                 --checkpoint-dir DIR"
                    .into(),
            ));
        }
        if plan.checkpoint.is_some() {
            if let Some(why) = plan.source.kind.checkpoint_refusal() {
                return Err(Error::Usage(why.into()));
            }
        }
        Ok(())
    }

    /// What these settings change in `plan` (before [`Overrides::apply`]), one sentence each,
    /// for `logflow check`.
    pub fn describe(&self, plan: &JobPlan, env_brokers: Option<&str>) -> Vec<String> {
        let mut d = Vec::new();
        if let Some(i) = &self.input {
            d.push(format!(
                "--input {i}: reads this file instead of the spec's source"
            ));
        }
        match (self.format, &self.input) {
            (Some(InputFormat::Auto) | None, Some(_)) => {
                d.push("--format auto: the input's first records choose the format".into())
            }
            (Some(f), _) => d.push(format!("--format {f}: parses records as {f}")),
            (None, None) => {}
        }
        if let Some(t) = &self.topic {
            d.push(format!("--topic {t}: reads this Kafka topic"));
        }
        if let Some(o) = &self.output_dir {
            d.push(format!(
                "--output-dir {}: JSONL files instead of the spec's sinks",
                o.display()
            ));
        }
        let spec_brokers = matches!(&plan.source.kind, SourceConfig::Kafka(k) if k.endpoint.brokers().is_some())
            || matches!(&plan.sink, SinkConfig::Kafka(k) if k.endpoint.brokers().is_some());
        match (&self.brokers, env_brokers) {
            (Some(b), _) => d.push(format!(
                "--brokers {b}: the Kafka source and sinks use these brokers{}",
                if spec_brokers { " (replacing the spec's)" } else { "" }
            )),
            (None, Some(b)) if !spec_brokers => d.push(format!(
                "LOGFLOW_BROKERS={b}: the Kafka source and sinks use these brokers (the spec names none)"
            )),
            _ => {}
        }
        if let Some(c) = &self.checkpoint_dir {
            let what = match &plan.checkpoint {
                Some(p) if p.dir.is_empty() => "the [checkpoint] section's directory",
                Some(_) => "replacing the spec's checkpoint.dir",
                None => "checkpoints every 10s, keeping 3 (the spec has no [checkpoint])",
            };
            d.push(format!("--checkpoint-dir {}: {what}", c.display()));
        }
        if let Some(f) = &self.from_checkpoint {
            d.push(format!(
                "--from-checkpoint {}: continues from its newest checkpoint (on any layout) \
                 and keeps checkpoints there",
                f.display()
            ));
        }
        if self.stop_at_end {
            d.push("--stop-at-end: reads to the end offsets as of start, then exits".into());
        }
        d
    }

    /// The same settings as command-line flags.
    pub fn to_args(&self) -> Vec<std::ffi::OsString> {
        use clap::ValueEnum;
        let mut a: Vec<std::ffi::OsString> = Vec::new();
        let mut flag = |name: &str, value: Option<std::ffi::OsString>| {
            if let Some(v) = value {
                a.push(name.into());
                a.push(v);
            }
        };
        flag("--input", self.input.clone().map(Into::into));
        flag(
            "--format",
            self.format
                .and_then(|f| f.to_possible_value())
                .map(|v| v.get_name().into()),
        );
        flag("--output-dir", self.output_dir.clone().map(Into::into));
        flag("--brokers", self.brokers.clone().map(Into::into));
        flag("--topic", self.topic.clone().map(Into::into));
        flag(
            "--checkpoint-dir",
            self.checkpoint_dir.clone().map(Into::into),
        );
        flag(
            "--from-checkpoint",
            self.from_checkpoint.clone().map(Into::into),
        );
        if self.stop_at_end {
            a.push("--stop-at-end".into());
        }
        if self.savepoint {
            a.push("--savepoint".into());
        }
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> JobPlan {
        let text = "name = \"j\"\n[source]\nkind = \"kafka\"\ntopic = \"logs\"\nformat = \"json\"\n\
                    [[analysis]]\nname = \"n\"\nwindow = { size = \"1m\" }\nselect = [\"count() as c\"]\n";
        crate::spec::load_text("j.toml", text).unwrap()
    }

    #[test]
    fn brokers_come_from_flags_then_spec_then_environment() {
        let mut p = plan();
        Overrides::default()
            .apply(&mut p, Some("env:9092"))
            .unwrap();
        assert!(
            matches!(&p.source.kind, SourceConfig::Kafka(k) if k.endpoint.brokers() == Some("env:9092"))
        );
        assert!(
            matches!(&p.sink, SinkConfig::Kafka(k) if k.endpoint.brokers() == Some("env:9092"))
        );
        let mut p = plan();
        let o = Overrides {
            brokers: Some("flag:9092".into()),
            topic: Some("other".into()),
            ..Overrides::default()
        };
        o.apply(&mut p, Some("env:9092")).unwrap();
        assert!(
            matches!(&p.source.kind, SourceConfig::Kafka(k) if k.endpoint.brokers() == Some("flag:9092") && k.topic == "other")
        );
        assert!(
            matches!(&p.sink, SinkConfig::Kafka(k) if k.endpoint.brokers() == Some("flag:9092"))
        );
    }

    /// Where the source and sink connect is settled here once: a sink naming no brokers
    /// writes to its source's (with its own properties), and with no brokers anywhere both
    /// are the in-process cluster, whatever sink the spec or flags chose.
    #[test]
    fn endpoints_are_settled_once() {
        let with = |source: &str, sink: &str| {
            let text = format!(
                "name = \"j\"\n[source]\nkind = \"kafka\"\ntopic = \"logs\"\nformat = \"json\"\n{source}\
                 [sink]\nkind = \"kafka\"\n{sink}[sink.properties]\n\"linger.ms\" = \"7\"\n\
                 [[analysis]]\nname = \"n\"\nwindow = {{ size = \"1m\" }}\nselect = [\"count() as c\"]\n"
            );
            crate::spec::load_text("j.toml", &text).unwrap()
        };
        let mut p = with("brokers = \"src:1\"\n", "");
        Overrides::default().apply(&mut p, None).unwrap();
        let SinkConfig::Kafka(k) = &p.sink else {
            panic!("{:?}", p.sink)
        };
        assert_eq!(k.endpoint.brokers(), Some("src:1"));
        assert_eq!(
            k.endpoint.properties().list,
            [("linger.ms".into(), "7".into())]
        );

        let mut p = with("brokers = \"src:1\"\n", "brokers = \"out:1\"\n");
        Overrides::default().apply(&mut p, Some("env:1")).unwrap();
        assert!(matches!(&p.sink, SinkConfig::Kafka(k) if k.endpoint.brokers() == Some("out:1")));

        let mut p = with("", "");
        let o = Overrides {
            output_dir: Some("out".into()),
            ..Overrides::default()
        };
        o.apply(&mut p, None).unwrap();
        assert!(p.source.kind.is_embedded());
        let SinkConfig::Kafka(k) = &p.sink else {
            panic!("{:?}", p.sink)
        };
        assert!(k.endpoint.brokers().is_none() && !k.exactly_once);
        assert!(k.endpoint.properties().list.is_empty());
    }

    #[test]
    fn file_input_without_brokers_prints_and_topic_is_refused() {
        let mut p = plan();
        let o = Overrides {
            input: Some("x.jsonl".into()),
            ..Overrides::default()
        };
        o.apply(&mut p, None).unwrap();
        assert!(matches!(p.sink, SinkConfig::Console));
        let o = Overrides {
            input: Some("x.jsonl".into()),
            topic: Some("t".into()),
            ..Overrides::default()
        };
        assert!(o.apply(&mut plan(), None).is_err());
    }

    #[test]
    fn checkpoint_dir_flag_completes_a_checkpoint_section_without_dir() {
        let text = "name = \"j\"\n[source]\nkind = \"kafka\"\ntopic = \"logs\"\nformat = \"json\"\n\
                    [checkpoint]\ninterval = \"2s\"\n\
                    [[analysis]]\nname = \"n\"\nwindow = { size = \"1m\" }\nselect = [\"count() as c\"]\n";
        let load = || crate::spec::load_text("j.toml", text).unwrap();
        let err = Overrides::default().apply(&mut load(), None).unwrap_err();
        assert!(err.to_string().contains("--checkpoint-dir"), "{err}");
        let mut p = load();
        let o = Overrides {
            checkpoint_dir: Some("/tmp/ck".into()),
            ..Overrides::default()
        };
        o.apply(&mut p, None).unwrap();
        let c = p.checkpoint.expect("checkpoints");
        assert_eq!((c.dir.as_str(), c.interval_ms), ("/tmp/ck", 2000));
        assert!(!c.restore);
        // `--from-checkpoint DIR`: the same directory, and a checkpoint must be there.
        let mut p = load();
        let o = Overrides {
            from_checkpoint: Some("/tmp/sp".into()),
            ..Overrides::default()
        };
        o.apply(&mut p, None).unwrap();
        let c = p.checkpoint.expect("checkpoints");
        assert_eq!((c.dir.as_str(), c.restore), ("/tmp/sp", true));
        let o = Overrides {
            checkpoint_dir: Some("/tmp/ck".into()),
            from_checkpoint: Some("/tmp/sp".into()),
            ..Overrides::default()
        };
        let err = o.apply(&mut load(), None).unwrap_err().to_string();
        assert!(err.contains("leave out --checkpoint-dir /tmp/ck"), "{err}");
    }

    #[test]
    fn round_trips_through_flags_and_json() {
        let o = Overrides {
            input: Some("/tmp/in".into()),
            format: Some(InputFormat::Apache),
            output_dir: Some("/tmp/out".into()),
            brokers: Some("b:1".into()),
            topic: None,
            stop_at_end: true,
            checkpoint_dir: Some("/tmp/ck".into()),
            savepoint: true,
            from_checkpoint: Some("/tmp/ck".into()),
        };
        #[derive(clap::Parser)]
        struct P {
            #[command(flatten)]
            o: Overrides,
        }
        let mut argv = vec![std::ffi::OsString::from("p")];
        argv.extend(o.to_args());
        let parsed = <P as clap::Parser>::try_parse_from(argv).unwrap();
        assert_eq!(parsed.o, o);
        let json = serde_json::to_string(&o).unwrap();
        assert_eq!(serde_json::from_str::<Overrides>(&json).unwrap(), o);
    }
}
