//! Kafka connection settings shared by sources, sinks and the CLI: bootstrap servers plus
//! librdkafka client properties from the spec (on an allow-list) and from the operator's
//! environment (SASL, TLS, ...). Secrets are never printed: see [`redact`].
//!
//! Trust: `LOGFLOW_KAFKA_*` (the operator's credentials) are added only to connections to
//! brokers the operator chose. A spec run by the operator (`run`, `launch`, `check`) is the
//! operator's; a job submitted to a cluster is not, so its connections get them only when its
//! brokers are the cluster's own `LOGFLOW_BROKERS` ([`confine_submitted`]).

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, ClientContext};

use crate::spec::plan::{JobPlan, SinkPlan, SourceKind};
use crate::Error;

/// Environment variable naming the brokers when neither the spec nor `--brokers` does.
pub const BROKERS_ENV: &str = "LOGFLOW_BROKERS";
/// How long a topic the brokers do not list is waited for before it counts as missing.
const TOPIC_APPEAR: Duration = Duration::from_secs(2);
/// Pause between metadata requests for such a topic.
const TOPIC_RETRY: Duration = Duration::from_millis(50);
/// Prefix of environment variables that become client properties:
/// `LOGFLOW_KAFKA_SASL_PASSWORD=x` sets `sasl.password=x`.
pub const PROPERTY_ENV_PREFIX: &str = "LOGFLOW_KAFKA_";

/// The brokers a command-line tool (`gen`, `tail`, ...) talks to: `--brokers`, else
/// `$LOGFLOW_BROKERS`, else a broker on this host's default port.
pub fn cli_brokers(flag: Option<&str>) -> String {
    flag.map(str::to_string)
        .or_else(|| std::env::var(BROKERS_ENV).ok())
        .unwrap_or_else(|| "127.0.0.1:9092".to_string())
}

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
    pub list: Vec<(String, String)>,
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
    let ours = |b: &Option<String>| env_brokers.is_some() && b.as_deref() == env_brokers;
    let mut source_brokers = None;
    if let SourceKind::Kafka {
        brokers,
        properties,
        ..
    } = &mut plan.source.kind
    {
        properties.submitted("source.properties", ours(brokers))?;
        source_brokers = brokers.clone();
    }
    if let SinkPlan::Kafka {
        brokers,
        properties,
        ..
    } = &mut plan.sink
    {
        // A sink without brokers writes to the source's (see `runtime::output_conn`).
        let effective = brokers.clone().or(source_brokers);
        properties.submitted("sink.properties", ours(&effective))?;
    }
    Ok(())
}

/// A client context that keeps the first errors librdkafka reported (authentication, TLS,
/// connection), so that a failed request can say why. A producer's poll hands error events to
/// the context with their text (a consumer's poll returns only their code).
#[derive(Default)]
pub struct LastError(std::sync::Mutex<Vec<String>>);

impl LastError {
    /// The first few distinct errors: the cause (a failed login) comes before its
    /// consequences (all brokers down).
    fn take(&self) -> Option<String> {
        let e = std::mem::take(&mut *self.0.lock().ok()?);
        (!e.is_empty()).then(|| e.join("; "))
    }
}

impl ClientContext for LastError {
    fn error(&self, error: KafkaError, reason: &str) {
        let text = format!("{error}: {reason}");
        if let Ok(mut e) = self.0.lock() {
            if e.len() < 3 && !e.contains(&text) {
                e.push(text);
            }
        }
    }
}

impl ProducerContext for LastError {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: ()) {}
}

/// Where a Kafka cluster is and how to talk to it.
#[derive(Clone)]
pub struct KafkaConn {
    pub brokers: String,
    /// librdkafka properties: spec first, then environment (which wins).
    pub properties: Vec<(String, String)>,
}

impl std::fmt::Debug for KafkaConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
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
fn shown<'a>(key: &str, value: &'a str) -> &'a str {
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

/// An rdkafka error as text without any setting's value: a rejected setting is named, not
/// quoted (librdkafka's description can still quote it, so the text is redacted as well).
fn error_text(e: &KafkaError, properties: &[(String, String)]) -> String {
    let text = match e {
        KafkaError::ClientConfig(_, desc, key, _) => {
            format!("Client config error: {desc} (property `{key}`)")
        }
        other => other.to_string(),
    };
    redact(&text, properties)
}

/// The operator's `LOGFLOW_KAFKA_*` settings as client properties.
fn env_properties() -> Vec<(String, String)> {
    std::env::vars()
        .filter_map(|(k, v)| {
            let rest = k.strip_prefix(PROPERTY_ENV_PREFIX)?;
            Some((rest.to_ascii_lowercase().replace('_', "."), v))
        })
        .collect()
}

impl KafkaConn {
    /// The operator's connection (command-line tools' `--brokers`, tests): `brokers` plus
    /// `properties`, overridden by `LOGFLOW_KAFKA_*`.
    pub fn new(brokers: &str, properties: &[(String, String)]) -> Self {
        Self::with(brokers, properties, true)
    }

    /// A job's connection: the spec's properties, plus `LOGFLOW_KAFKA_*` (which win) only when
    /// the operator chose the brokers ([`Origin::Operator`]).
    pub fn for_job(brokers: &str, spec: &SpecProperties) -> Self {
        Self::with(brokers, &spec.list, spec.origin == Origin::Operator)
    }

    fn with(brokers: &str, properties: &[(String, String)], operator: bool) -> Self {
        let mut properties = properties.to_vec();
        if operator {
            for (key, v) in env_properties() {
                properties.retain(|(pk, _)| *pk != key);
                properties.push((key, v));
            }
        }
        KafkaConn {
            brokers: brokers.to_string(),
            properties,
        }
    }

    /// `text` with this connection's secret values replaced ([`redact`]).
    pub fn redact(&self, text: &str) -> String {
        redact(text, &self.properties)
    }

    /// The error for a failed step (`what`: "consumer", "producer", ...) of this connection,
    /// with no secret in it.
    pub fn error(&self, what: &str, e: &KafkaError) -> Error {
        Error::Runtime(self.error_message(what, e))
    }

    fn error_message(&self, what: &str, e: &KafkaError) -> String {
        format!(
            "kafka {what} on {}: {}",
            self.describe(),
            error_text(e, &self.properties)
        )
    }

    /// Creates a client from `config` (made from [`KafkaConn::client_config`]), failing with
    /// [`KafkaConn::error`].
    pub fn create<T: rdkafka::config::FromClientConfig>(
        &self,
        config: &ClientConfig,
        what: &str,
    ) -> Result<T, Error> {
        config.create().map_err(|e| self.error(what, &e))
    }

    /// A client config with the connection settings applied.
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }

    /// For logs: brokers and property names, secret values redacted.
    pub fn describe(&self) -> String {
        let props: Vec<String> = self
            .properties
            .iter()
            .map(|(k, v)| format!("{k}={}", shown(k, v)))
            .collect();
        // A secret can also be inside another setting's value (a mistyped name, a JAAS line).
        self.redact(&if props.is_empty() {
            self.brokers.clone()
        } else {
            format!("{} ({})", self.brokers, props.join(", "))
        })
    }

    /// The partitions of `topic`; an error naming the topic when it does not exist.
    pub fn partitions(&self, topic: &str, timeout: Duration) -> Result<Vec<i32>, Error> {
        self.partitions_of(&[topic], timeout)?
            .pop()
            .ok_or_else(|| Error::Runtime(format!("kafka topic `{topic}`: no metadata")))
    }

    /// The partitions of each of `topics`, asked through one client (a client per topic costs
    /// a connection each: ~10 ms apiece at the start of a job with a dozen output topics).
    pub fn partitions_of(
        &self,
        topics: &[&str],
        timeout: Duration,
    ) -> Result<Vec<Vec<i32>>, Error> {
        // A producer (never sending) for its error events: see LastError. Its metadata
        // requests must not create the topics they ask about (a producer's default).
        let client: BaseProducer<LastError> = self
            .client_config()
            .set("allow.auto.create.topics", "false")
            .create_with_context(LastError::default())
            .map_err(|e| self.error("client", &e))?;
        topics
            .iter()
            .map(|t| self.partitions_with(&client, t, timeout))
            .collect()
    }

    /// `topic`'s partitions; a topic the brokers do not list yet (just created: metadata
    /// follows CreateTopics by a moment) is asked again for up to [`TOPIC_APPEAR`], so a job
    /// started right after its topics were made does not fail, and a missing one still fails
    /// fast.
    fn partitions_with(
        &self,
        client: &BaseProducer<LastError>,
        topic: &str,
        timeout: Duration,
    ) -> Result<Vec<i32>, Error> {
        let give_up = Instant::now() + TOPIC_APPEAR.min(timeout);
        loop {
            match self.partitions_once(client, topic, timeout)? {
                Ok(parts) => return Ok(parts),
                Err(missing) if Instant::now() >= give_up => {
                    let brokers = &self.brokers;
                    return Err(Error::Runtime(format!(
                        "kafka topic `{topic}` on {brokers}: {missing} (does it exist? \
                         auto-create is off)"
                    )));
                }
                Err(_) => std::thread::sleep(TOPIC_RETRY),
            }
        }
    }

    /// One metadata request: the sorted partitions, or why the topic is not usable yet.
    fn partitions_once(
        &self,
        client: &BaseProducer<LastError>,
        topic: &str,
        timeout: Duration,
    ) -> Result<Result<Vec<i32>, String>, Error> {
        let md = client
            .client()
            .fetch_metadata(Some(topic), timeout)
            .map_err(|e| {
                let msg = self.error_message(&format!("metadata for topic `{topic}`"), &e);
                // A timeout alone does not say why: the brokers' last error (a failed login, an
                // unverified certificate, a refused connection) does.
                // Error events wait on the client's queue until polled.
                client.poll(Duration::from_millis(100));
                match client.context().take() {
                    Some(why) => {
                        Error::Runtime(format!("{msg} (broker errors: {})", self.redact(&why)))
                    }
                    None => Error::Runtime(msg),
                }
            })?;
        let Some(t) = md.topics().iter().find(|t| t.name() == topic) else {
            return Ok(Err("not in the brokers' metadata".into()));
        };
        if let Some(err) = t.error() {
            return Ok(Err(RDKafkaErrorCode::from(err).to_string()));
        }
        let mut parts: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
        if parts.is_empty() {
            return Ok(Err("no partitions".into()));
        }
        parts.sort_unstable();
        Ok(Ok(parts))
    }

    /// Low and high watermarks (first offset kept, next offset to be written) per partition.
    pub fn watermarks(
        &self,
        topic: &str,
        partitions: &[i32],
        timeout: Duration,
    ) -> Result<Vec<(i64, i64)>, Error> {
        let consumer: BaseConsumer = self.create(&self.client_config(), "client")?;
        partitions
            .iter()
            .map(|&p| {
                consumer
                    .fetch_watermarks(topic, p, timeout)
                    .map_err(|e| self.error(&format!("offsets of {topic}/{p}"), &e))
            })
            .collect()
    }
}

/// Sends a record, waiting while the producer's bounded queue is full (backpressure rather
/// than unbounded memory); other errors are returned.
pub fn send_waiting<C: ProducerContext + 'static>(
    producer: &ThreadedProducer<C>,
    mut record: BaseRecord<'_, [u8], [u8], C::DeliveryOpaque>,
    mut while_waiting: impl FnMut() -> Result<(), Error>,
) -> Result<(), Error> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                while_waiting()?;
                std::thread::sleep(Duration::from_millis(2));
                record = r;
            }
            Err((e, r)) => {
                return Err(Error::Runtime(format!(
                    "kafka produce to `{}`: {e}",
                    r.topic
                )))
            }
        }
    }
}

/// Sleeps as needed so that `n` records sent since `started` do not exceed `rate` per second.
pub fn throttle(started: std::time::Instant, n: u64, rate: f64) {
    if rate > 0.0 {
        let due = Duration::from_secs_f64(n as f64 / rate);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::mocking::MockCluster;
    use rdkafka::producer::{BaseProducer, Producer};

    /// A topic created a moment after the job asked for it is found; one never created is
    /// reported missing, by name.
    #[test]
    fn a_topic_created_a_moment_late_is_waited_for() {
        let cluster = MockCluster::new(1).unwrap();
        let conn = KafkaConn::new(&cluster.bootstrap_servers(), &[]);
        // The mock cluster creates a topic (4 partitions) when a producer's metadata request
        // names it (producers may auto-create; the job's clients may not).
        let producer: BaseProducer = conn.client_config().create().unwrap();
        // Connected first, so that its ask below is quick even on a loaded machine.
        producer
            .client()
            .fetch_metadata(None, Duration::from_secs(10))
            .unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(300));
                let md = producer
                    .client()
                    .fetch_metadata(Some("late"), Duration::from_secs(10));
                assert_eq!(md.unwrap().topics()[0].partitions().len(), 4);
            });
            let got = conn.partitions_of(&["late"], Duration::from_secs(10));
            assert_eq!(got.unwrap(), vec![vec![0, 1, 2, 3]]);
        });
        let e = conn
            .partitions("never", Duration::from_secs(10))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`never`") && e.contains("does it exist"), "{e}");
    }

    #[test]
    fn secrets_are_redacted() {
        let c = KafkaConn {
            brokers: "b:9092".into(),
            properties: vec![
                ("sasl.password".into(), "hunter2".into()),
                ("security.protocol".into(), "SASL_SSL".into()),
            ],
        };
        let d = c.describe();
        assert!(!d.contains("hunter2"), "{d}");
        assert!(
            d.contains("sasl.password=***") && d.contains("security.protocol=SASL_SSL"),
            "{d}"
        );
        assert!(!format!("{c:?}").contains("hunter2"));
    }

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

    /// The one redaction function: every secret value in a message becomes `***`, the
    /// longest first; other values stay.
    #[test]
    fn redact_replaces_every_secret_value() {
        let props = vec![
            ("sasl.password".to_string(), "pw".to_string()),
            ("ssl.key.password".to_string(), "pw-longer".to_string()),
            ("sasl.username".to_string(), "svc".to_string()),
            ("sasl.jaas.config".to_string(), String::new()),
        ];
        assert_eq!(
            redact("svc: pw-longer and pw, pw", &props),
            "svc: *** and ***, ***"
        );
        let c = KafkaConn {
            brokers: "b:1".into(),
            properties: props,
        };
        assert_eq!(c.redact("x pw"), "x ***");
    }

    /// An rdkafka config error quotes the rejected value: the message names the property and
    /// shows no value (E12 of the security review printed `ssl.key.password hunter2-FAKE`).
    #[test]
    fn config_errors_name_the_property_not_its_value() {
        let c = KafkaConn {
            brokers: "127.0.0.1:1".into(),
            properties: vec![
                ("ssl.key.password".into(), "hunter2-FAKE".into()),
                (
                    "security.protocol".into(),
                    "NOT-A-PROTOCOL-hunter2-FAKE".into(),
                ),
            ],
        };
        let e = c
            .create::<BaseConsumer>(&c.client_config(), "consumer")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("security.protocol"), "{e}");
        assert!(!e.contains("hunter2-FAKE"), "{e}");
        // Also when the value is in librdkafka's description, and for a non-secret name.
        let raw = KafkaError::ClientConfig(
            rdkafka::types::RDKafkaConfRes::RD_KAFKA_CONF_INVALID,
            "Invalid value \"hunter2-FAKE\" for \"ssl.key.password\"".into(),
            "ssl.key.password".into(),
            "hunter2-FAKE".into(),
        );
        let e = c.error("producer", &raw).to_string();
        assert!(
            e.contains("ssl.key.password") && !e.contains("hunter2-FAKE"),
            "{e}"
        );
        let raw = KafkaError::ClientConfig(
            rdkafka::types::RDKafkaConfRes::RD_KAFKA_CONF_UNKNOWN,
            "No such configuration property".into(),
            "sasl.passwrod".into(),
            "typo-secret".into(),
        );
        let e = c.error("producer", &raw).to_string();
        assert!(
            e.contains("sasl.passwrod") && !e.contains("typo-secret"),
            "{e}"
        );
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
        let SourceKind::Kafka { properties: s, .. } = &plan.source.kind else {
            panic!("not kafka")
        };
        let SinkPlan::Kafka { properties: k, .. } = &plan.sink else {
            panic!("not kafka")
        };
        (s.origin, k.origin)
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
    fn a_foreign_connection_gets_no_environment_settings() {
        // Any LOGFLOW_KAFKA_* of the test's environment: none may reach a foreign connection.
        let spec = SpecProperties {
            list: vec![("linger.ms".into(), "5".into())],
            origin: Origin::Foreign,
        };
        let c = KafkaConn::for_job("b:1", &spec);
        assert_eq!(c.properties, spec.list);
        let with_env = KafkaConn::for_job(
            "b:1",
            &SpecProperties {
                origin: Origin::Operator,
                ..spec.clone()
            },
        );
        assert_eq!(with_env.properties.len(), 1 + env_properties().len());
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
