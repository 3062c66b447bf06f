//! `kind = "kafka"` sources and sinks, and where they connect.

use super::super::compile::Ctx;
use crate::spec::properties::{Origin, SpecProperties};
use crate::spec::{Delivery, JobSpec, Mode, SourceSpec, StartAt};
use crate::Error;

/// Where a Kafka source or sink connects.
///
/// Compiled from a spec, `Embedded` means the spec names no brokers; [`Overrides::apply`]
/// settles it (a flag's brokers, `LOGFLOW_BROKERS`, a sink's fallback to its source's), and
/// what is `Embedded` after that is the in-process cluster `logflow run` starts.
///
/// [`Overrides::apply`]: crate::spec::overrides::Overrides::apply
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// Named bootstrap servers.
    Brokers(KafkaEndpoint),
    /// No brokers named: the in-process cluster, with the spec's client properties (which
    /// apply to the brokers a flag or the environment names instead).
    Embedded(SpecProperties),
}

/// Bootstrap servers and the client properties that go to them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaEndpoint {
    /// `host:port,...`.
    pub brokers: String,
    /// The spec's client properties, with the origin of the brokers.
    pub properties: SpecProperties,
}

impl Endpoint {
    /// From the spec's `brokers` (if any) and `properties`.
    fn from_spec(brokers: Option<String>, properties: SpecProperties) -> Endpoint {
        match brokers {
            Some(brokers) => Endpoint::Brokers(KafkaEndpoint {
                brokers,
                properties,
            }),
            None => Endpoint::Embedded(properties),
        }
    }

    /// The in-process cluster with no client properties (how the embedded demo writes).
    pub fn embedded() -> Endpoint {
        Endpoint::Embedded(SpecProperties {
            list: Vec::new(),
            origin: Origin::Foreign,
        })
    }

    /// The named brokers; `None` for the in-process cluster.
    pub fn brokers(&self) -> Option<&str> {
        match self {
            Endpoint::Brokers(e) => Some(&e.brokers),
            Endpoint::Embedded(_) => None,
        }
    }

    /// The client properties that go with the connection.
    pub fn properties(&self) -> &SpecProperties {
        match self {
            Endpoint::Brokers(e) => &e.properties,
            Endpoint::Embedded(p) => p,
        }
    }

    /// The same, to change their origin.
    pub fn properties_mut(&mut self) -> &mut SpecProperties {
        match self {
            Endpoint::Brokers(e) => &mut e.properties,
            Endpoint::Embedded(p) => p,
        }
    }

    /// Connects to `brokers` with these properties.
    pub fn to_brokers(&self, brokers: String) -> Endpoint {
        Endpoint::Brokers(KafkaEndpoint {
            brokers,
            properties: self.properties().clone(),
        })
    }
}

/// `[source]` settings of `kind = "kafka"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaSourceConfig {
    /// The topic read.
    pub topic: String,
    /// Where a partition without a checkpoint position starts.
    pub start: StartAt,
    /// Where the topic is.
    pub endpoint: Endpoint,
}

impl KafkaSourceConfig {
    /// The `[source]` keys this kind takes besides `kind`, `format` and `max_record_bytes`.
    pub(super) const KEYS: &'static [&'static str] = &["topic", "brokers", "start", "properties"];

    pub(super) fn compile(s: &SourceSpec, cx: &Ctx<'_>) -> Result<KafkaSourceConfig, Error> {
        let Some(topic) = &s.topic else {
            return cx.err(
                s.kind.span(),
                "source.topic",
                "a kafka source needs `topic`",
            );
        };
        let properties = SpecProperties::check(&s.properties)
            .or_else(|m| cx.err(s.kind.span(), "source.properties", m))?;
        Ok(KafkaSourceConfig {
            topic: topic.get_ref().clone(),
            start: s.start.as_ref().map_or(StartAt::Earliest, |v| *v.get_ref()),
            endpoint: Endpoint::from_spec(
                s.brokers.as_ref().map(|b| b.get_ref().clone()),
                properties,
            ),
        })
    }

    /// What `logflow check` says it reads.
    pub fn describe(&self) -> String {
        format!(
            "kafka topic `{}` on {} (start: {})",
            self.topic,
            self.endpoint.brokers().unwrap_or("the in-process cluster"),
            self.start
        )
    }
}

/// `[sink]` settings of `kind = "kafka"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaSinkConfig {
    /// Where the output topics are.
    pub endpoint: Endpoint,
    /// Results in transactions committed with the output progress (`<job>.commits`).
    pub exactly_once: bool,
}

impl KafkaSinkConfig {
    pub(super) fn compile(spec: &JobSpec, cx: &Ctx<'_>) -> Result<KafkaSinkConfig, Error> {
        let s = &spec.sink;
        let kind_span = s.kind.as_ref().map_or(0..0, |k| k.span());
        let properties = SpecProperties::check(&s.properties)
            .or_else(|m| cx.err(kind_span, "sink.properties", m))?;
        let exactly_once = match &s.delivery {
            None => false,
            Some(d) if *d.get_ref() == Delivery::AtLeastOnce => false,
            Some(d) => {
                // Replayed results must come at the same progress times: only append-mode
                // windows are emitted at a time that depends on the window alone.
                if let Some(a) = spec.analyses.iter().find(|a| {
                    a.mode
                        .as_ref()
                        .is_some_and(|m| *m.get_ref() != Mode::Append)
                }) {
                    return cx.err(
                        d.span(),
                        "sink.delivery",
                        format!(
                            "exactly_once needs every analysis in append mode; `{}` is not",
                            a.name.get_ref()
                        ),
                    );
                }
                true
            }
        };
        Ok(KafkaSinkConfig {
            endpoint: Endpoint::from_spec(
                s.brokers.as_ref().map(|b| b.get_ref().clone()),
                properties,
            ),
            exactly_once,
        })
    }

    /// What `logflow check` says it writes to.
    pub fn describe(&self) -> String {
        format!(
            "kafka ({})",
            self.endpoint.brokers().unwrap_or("the source's brokers")
        )
    }
}
