//! Kafka client properties as a spec gives them: the allow-list a spec's `properties` table
//! passes, whose brokers the operator's `LOGFLOW_KAFKA_*` settings (credentials) may go to,
//! and the redaction of secret values. Plain data and text rules, so the plan can carry them;
//! `kafka::KafkaConn` applies them to connections.

use crate::spec::plan::{Endpoint, JobPlan, SinkConfig, SourceConfig};
use crate::Error;
/// Who chose a job's brokers, which decides whether the operator's `LOGFLOW_KAFKA_*`
/// settings (credentials) go to them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Origin {
    /// The operator's own spec and command line (`run`, `launch`), or a submitted job whose
    /// brokers are the cluster's `LOGFLOW_BROKERS`: the environment's settings apply.
    #[default]
    Operator,
    /// Brokers named by a submitted job, or the in-process cluster: only the spec's settings.
    Foreign,
}

/// A source's or sink's client properties from the spec (checked by [`SpecProperties::check`]),
/// and the origin of the brokers they go to.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SpecProperties {
    /// `(name, value)` pairs as the spec gives them.
    pub list: Vec<(String, String)>,
    /// Who chose the brokers they go to.
    pub origin: Origin,
}

impl std::fmt::Debug for SpecProperties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list: Vec<String> = self
            .list
            .iter()
            .map(|(k, v)| format!("{k}={}", shown(k, v)))
            .collect();
        write!(f, "{:?} {:?}", list, self.origin)
    }
}

/// Spec properties accepted from any spec: connection, batching, SASL and TLS settings given
/// by value. librdkafka's other settings either load code, read or run local files, or change
/// what logflow itself manages; the operator can still set them through `LOGFLOW_KAFKA_*`.
const ALLOWED: &[&str] = &[
    // connection
    "client.id",
    "client.rack",
    "socket.timeout.ms",
    "socket.keepalive.enable",
    "socket.nagle.disable",
    "socket.connection.setup.timeout.ms",
    "socket.send.buffer.bytes",
    "socket.receive.buffer.bytes",
    "connections.max.idle.ms",
    "reconnect.backoff.ms",
    "reconnect.backoff.max.ms",
    "retry.backoff.ms",
    "retry.backoff.max.ms",
    "retries",
    "metadata.max.age.ms",
    "topic.metadata.refresh.interval.ms",
    "request.timeout.ms",
    "broker.address.family",
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "max.poll.interval.ms",
    // the consumer group the source commits its offsets for (default `logflow-<job>`)
    "group.id",
    // batching and fetching
    "linger.ms",
    "queue.buffering.max.ms",
    "queue.buffering.max.messages",
    "queue.buffering.max.kbytes",
    "batch.num.messages",
    "batch.size",
    "compression.type",
    "compression.codec",
    "compression.level",
    "message.max.bytes",
    "message.timeout.ms",
    "delivery.timeout.ms",
    "acks",
    "request.required.acks",
    "max.in.flight",
    "max.in.flight.requests.per.connection",
    "fetch.min.bytes",
    "fetch.max.bytes",
    "fetch.wait.max.ms",
    "fetch.message.max.bytes",
    "fetch.queue.backoff.ms",
    "max.partition.fetch.bytes",
    "queued.min.messages",
    "queued.max.messages.kbytes",
    "receive.message.max.bytes",
    // SASL and TLS by value
    "security.protocol",
    "sasl.mechanism",
    "sasl.mechanisms",
    "sasl.username",
    "sasl.password",
    "ssl.ca.pem",
    "ssl.certificate.pem",
    "ssl.key.pem",
    "ssl.key.password",
    "enable.ssl.certificate.verification",
    "ssl.endpoint.identification.algorithm",
    "ssl.cipher.suites",
    "ssl.curves.list",
    "ssl.sigalgs.list",
];

/// Spec properties that read a local file: the operator's own spec may set them; a submitted
/// job may not (the cluster's files are not the submitter's to read).
const LOCAL_FILES: &[&str] = &[
    "ssl.ca.location",
    "ssl.certificate.location",
    "ssl.key.location",
    "ssl.crl.location",
    "ssl.keystore.location",
    "ssl.keystore.password",
];

/// Why a property that is not on the allow-list is refused, for the error message.
fn refusal(key: &str) -> &'static str {
    let code = [
        "plugin.library.paths",
        "ssl.engine.location",
        "ssl.engine.id",
        "ssl.providers",
        "sasl.kerberos.kinit.cmd",
    ];
    if code.contains(&key) {
        "it makes librdkafka load code or run a command in the job's process"
    } else if key.starts_with("sasl.oauthbearer.") || key.starts_with("sasl.kerberos.") {
        "it makes librdkafka run commands, read local files or call other hosts"
    } else if key.contains("location") || key.contains("path") || key.contains("cmd") {
        "it makes librdkafka read local files or run a command"
    } else {
        "it is not on the allow-list (connection, batching, SASL and TLS settings); \
         the operator may set it with LOGFLOW_KAFKA_*"
    }
}

impl SpecProperties {
    /// The properties of a spec's `properties` table, refused (naming the property, never its
    /// value) unless on the allow-list.
    pub fn check(
        spec: &std::collections::BTreeMap<String, String>,
    ) -> Result<SpecProperties, String> {
        for k in spec.keys() {
            if !ALLOWED.contains(&k.as_str()) && !LOCAL_FILES.contains(&k.as_str()) {
                return Err(format!("`{k}` is refused: {}", refusal(k)));
            }
        }
        Ok(SpecProperties {
            list: spec.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            origin: Origin::Operator,
        })
    }

    /// The same properties for a submitted job: refuses those that read the cluster's local
    /// files; `operator_brokers`: its brokers are the cluster's own.
    fn submitted(&mut self, field: &str, operator_brokers: bool) -> Result<(), Error> {
        if let Some((k, _)) = self
            .list
            .iter()
            .find(|(k, _)| LOCAL_FILES.contains(&k.as_str()))
        {
            return Err(Error::Usage(format!(
                "{field}: `{k}` is refused in a submitted job: it reads a file of the cluster's \
                 hosts (give the certificate by value, e.g. `ssl.ca.pem`, or have the operator \
                 set LOGFLOW_KAFKA_SSL_CA_LOCATION where the cluster runs)"
            )));
        }
        self.origin = if operator_brokers {
            Origin::Operator
        } else {
            Origin::Foreign
        };
        Ok(())
    }
}

/// Applies the rules for a job submitted to a cluster (not the operator's own spec): no spec
/// property may read the cluster's files, and the operator's `LOGFLOW_KAFKA_*` settings go
/// only to the cluster's own brokers (`env_brokers`, its `LOGFLOW_BROKERS`), never to brokers
/// the submitter named.
pub fn confine_submitted(plan: &mut JobPlan, env_brokers: Option<&str>) -> Result<(), Error> {
    let ours = |e: &Endpoint| env_brokers.is_some() && e.brokers() == env_brokers;
    if let SourceConfig::Kafka(k) = &mut plan.source.kind {
        let operator = ours(&k.endpoint);
        k.endpoint
            .properties_mut()
            .submitted("source.properties", operator)?;
    }
    if let SinkConfig::Kafka(k) = &mut plan.sink {
        // Settled by `Overrides::apply`: a sink naming no brokers has its source's by now.
        let operator = ours(&k.endpoint);
        k.endpoint
            .properties_mut()
            .submitted("sink.properties", operator)?;
    }
    Ok(())
}

/// Property names whose values are secrets: any name containing `password`, `secret`,
/// `token`, `key` or `sasl.jaas` (librdkafka's sensitive settings and more: a key's file path
/// is hidden too), and `sasl.oauthbearer.config`, which holds client credentials.
pub fn is_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "password",
        "secret",
        "token",
        "key",
        "sasl.jaas",
        "oauthbearer.config",
        "private",
    ]
    .iter()
    .any(|s| k.contains(s))
}

/// A property's value as it may be shown: `***` for a secret.
pub fn shown<'a>(key: &str, value: &'a str) -> &'a str {
    if is_secret(key) {
        "***"
    } else {
        value
    }
}

/// `text` (a message from librdkafka or about a connection) with every secret value among
/// `properties` replaced by `***`. Every message about a Kafka connection that may hold a
/// setting's value goes through here (see [`KafkaConn::error`]).
pub fn redact(text: &str, properties: &[(String, String)]) -> String {
    let mut secrets: Vec<&str> = properties
        .iter()
        .filter(|(k, v)| is_secret(k) && !v.is_empty())
        .map(|(_, v)| v.as_str())
        .collect();
    // Longest first: a secret containing another is replaced whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut out = text.to_string();
    for s in secrets {
        out = out.replace(s, "***");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names_cover_passwords_keys_tokens_and_jaas() {
        for k in [
            "sasl.password",
            "ssl.key.password",
            "ssl.keystore.password",
            "ssl.key.pem",
            "ssl.key.location",
            "sasl.oauthbearer.client.secret",
            "sasl.oauthbearer.config",
            "sasl.jaas.config",
            "some.token",
            "SASL.PASSWORD",
        ] {
            assert!(is_secret(k), "{k}");
        }
        for k in [
            "sasl.username",
            "security.protocol",
            "ssl.ca.location",
            "linger.ms",
        ] {
            assert!(!is_secret(k), "{k}");
        }
    }

    fn spec(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn spec_properties_pass_an_allow_list() {
        let ok = SpecProperties::check(&spec(&[
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanisms", "SCRAM-SHA-512"),
            ("sasl.username", "u"),
            ("sasl.password", "p"),
            ("ssl.ca.location", "/etc/ssl/ca.pem"),
            ("linger.ms", "5"),
        ]))
        .unwrap();
        assert_eq!(ok.list.len(), 6);
        assert_eq!(ok.origin, Origin::Operator);
        for (k, why) in [
            ("plugin.library.paths", "load code"),
            ("ssl.engine.location", "load code"),
            ("ssl.providers", "load code"),
            ("sasl.kerberos.kinit.cmd", "run a command"),
            ("sasl.oauthbearer.token.endpoint.url", "other hosts"),
            ("sasl.oauthbearer.config", "other hosts"),
            ("ssl.ca.directory.location", "local files"),
            ("debug", "allow-list"),
            ("bootstrap.servers", "allow-list"),
        ] {
            let e = SpecProperties::check(&spec(&[(k, "VALUE-x9")])).unwrap_err();
            assert!(e.contains(&format!("`{k}`")) && e.contains(why), "{k}: {e}");
            assert!(!e.contains("VALUE-x9"), "{e}");
        }
        // Debug output hides secret values.
        let d = format!(
            "{:?}",
            SpecProperties::check(&spec(&[("sasl.password", "pw-x9")]))
        );
        assert!(!d.contains("pw-x9") && d.contains("***"), "{d}");
    }

    fn kafka_plan(source_brokers: Option<&str>, sink_brokers: Option<&str>) -> JobPlan {
        let mut text = String::from(
            "name = \"j\"\n[source]\nkind = \"kafka\"\ntopic = \"logs\"\nformat = \"json\"\n",
        );
        if let Some(b) = source_brokers {
            text.push_str(&format!("brokers = \"{b}\"\n"));
        }
        text.push_str("[source.properties]\n\"linger.ms\" = \"5\"\n[sink]\nkind = \"kafka\"\n");
        if let Some(b) = sink_brokers {
            text.push_str(&format!("brokers = \"{b}\"\n"));
        }
        text.push_str(
            "[[analysis]]\nname = \"n\"\nwindow = { size = \"1m\" }\nselect = [\"count() as c\"]\n",
        );
        crate::spec::load_text("j.toml", &text).unwrap()
    }

    fn origins(plan: &JobPlan) -> (Origin, Origin) {
        let SourceConfig::Kafka(s) = &plan.source.kind else {
            panic!("not kafka")
        };
        let SinkConfig::Kafka(k) = &plan.sink else {
            panic!("not kafka")
        };
        (
            s.endpoint.properties().origin,
            k.endpoint.properties().origin,
        )
    }

    /// The operator's credentials go to the cluster's own brokers only: a submitted job that
    /// names other brokers (in its spec, or for its sink alone) gets none.
    #[test]
    fn submitted_jobs_get_credentials_only_for_the_clusters_brokers() {
        let own = Some("own:9092");
        let mut p = kafka_plan(None, None);
        crate::spec::overrides::Overrides::default()
            .apply(&mut p, own)
            .unwrap();
        assert_eq!(origins(&p), (Origin::Operator, Origin::Operator));
        confine_submitted(&mut p, own).unwrap();
        assert_eq!(origins(&p), (Origin::Operator, Origin::Operator));

        let mut p = kafka_plan(Some("theirs:9092"), Some("own:9092"));
        confine_submitted(&mut p, own).unwrap();
        assert_eq!(origins(&p), (Origin::Foreign, Origin::Operator));

        let mut p = kafka_plan(Some("own:9092"), Some("theirs:9092"));
        confine_submitted(&mut p, own).unwrap();
        assert_eq!(origins(&p), (Origin::Operator, Origin::Foreign));

        // No LOGFLOW_BROKERS on the cluster: no broker is the operator's.
        let mut p = kafka_plan(Some("own:9092"), None);
        confine_submitted(&mut p, None).unwrap();
        assert_eq!(origins(&p), (Origin::Foreign, Origin::Foreign));

        // The operator's own spec keeps them (run, launch).
        let p = kafka_plan(Some("theirs:9092"), None);
        assert_eq!(origins(&p), (Origin::Operator, Origin::Operator));
    }

    #[test]
    fn a_submitted_job_may_not_read_the_clusters_files() {
        let text = "name = \"j\"\n[source]\nkind = \"kafka\"\ntopic = \"logs\"\nformat = \"json\"\n\
                    [source.properties]\n\"ssl.key.location\" = \"/etc/shadow\"\n\
                    [[analysis]]\nname = \"n\"\nwindow = { size = \"1m\" }\nselect = [\"count() as c\"]\n";
        let mut p = crate::spec::load_text("j.toml", text).unwrap();
        let e = confine_submitted(&mut p, Some("own:1")).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let e = e.to_string();
        assert!(
            e.contains("`ssl.key.location`") && !e.contains("/etc/shadow"),
            "{e}"
        );
    }
}
