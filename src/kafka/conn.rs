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

use crate::spec::plan::Endpoint;
pub use crate::spec::properties::{confine_submitted, redact, shown, Origin, SpecProperties};
use crate::Error;
use crate::KafkaCause;

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

/// Why a request failed, for the retry hint: no broker reached (a timeout or a transport,
/// TLS or login failure), a topic the brokers do not have, or anything else.
fn cause_of(e: &KafkaError) -> KafkaCause {
    use RDKafkaErrorCode as C;
    match e.rdkafka_error_code() {
        Some(
            C::AllBrokersDown
            | C::BrokerTransportFailure
            | C::OperationTimedOut
            | C::RequestTimedOut
            | C::NetworkException
            | C::BrokerNotAvailable
            | C::Resolve
            | C::Authentication
            | C::SaslAuthenticationFailed
            | C::SSL,
        ) => KafkaCause::Unreachable,
        Some(C::UnknownTopicOrPartition | C::UnknownTopic | C::UnknownPartition) => {
            KafkaCause::MissingTopic
        }
        _ => KafkaCause::Client,
    }
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

    /// The connection to a job's source or sink `endpoint`; `embedded` is the in-process
    /// cluster's address when `logflow run` started one.
    pub fn to(endpoint: &Endpoint, embedded: Option<&str>) -> Result<Self, Error> {
        match (endpoint, embedded) {
            (Endpoint::Brokers(e), _) => Ok(Self::for_job(&e.brokers, &e.properties)),
            // The in-process cluster is no broker of the operator's: no LOGFLOW_KAFKA_* settings.
            (Endpoint::Embedded(p), Some(bootstrap)) => Ok(Self::with(bootstrap, &p.list, false)),
            (Endpoint::Embedded(_), None) => Err(Error::Usage(
                "no Kafka brokers: set `brokers` in the spec, --brokers or LOGFLOW_BROKERS".into(),
            )),
        }
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
        Error::kafka(cause_of(e), self.error_message(what, e))
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
        self.partitions_of(&[topic], timeout)?.pop().ok_or_else(|| {
            Error::kafka(
                KafkaCause::MissingTopic,
                format!("kafka topic `{topic}`: no metadata"),
            )
        })
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
                    return Err(Error::kafka(
                        KafkaCause::MissingTopic,
                        format!(
                            "kafka topic `{topic}` on {brokers}: {missing} (does it exist? \
                         auto-create is off)"
                        ),
                    ));
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
                let cause = cause_of(&e);
                match client.context().take() {
                    Some(why) => Error::kafka(
                        cause,
                        format!("{msg} (broker errors: {})", self.redact(&why)),
                    ),
                    None => Error::kafka(cause, msg),
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
                return Err(Error::kafka(
                    KafkaCause::Client,
                    format!("kafka produce to `{}`: {e}", r.topic),
                ))
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

/// Runs a future to completion on this thread. The admin client's futures are completed by
/// its own background thread, so parking until woken is all an executor has to do here
/// (an async runtime crate for one call would cost more build time than these lines).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::sync::Arc::new(Unpark(std::thread::current())).into();
    let mut cx = std::task::Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Ready once another thread, started at the first poll, has stored a value and woken it.
    struct Later(std::sync::Arc<AtomicU32>, bool);

    impl std::future::Future for Later {
        type Output = u32;
        fn poll(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<u32> {
            match self.0.load(Ordering::SeqCst) {
                0 if !self.1 => {
                    self.1 = true;
                    let (value, waker) = (std::sync::Arc::clone(&self.0), cx.waker().clone());
                    std::thread::spawn(move || {
                        std::thread::sleep(Duration::from_millis(20));
                        value.store(7, Ordering::SeqCst);
                        waker.wake();
                    });
                    std::task::Poll::Pending
                }
                0 => std::task::Poll::Pending,
                v => std::task::Poll::Ready(v),
            }
        }
    }

    #[test]
    fn block_on_waits_for_a_future_completed_by_another_thread() {
        assert_eq!(
            block_on(Later(std::sync::Arc::new(AtomicU32::new(0)), false)),
            7
        );
    }
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
}
