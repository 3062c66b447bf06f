//! Kafka connection settings shared by sources, sinks and the CLI: bootstrap servers plus
//! librdkafka client properties passed through from the spec and the environment (SASL, TLS,
//! ...). Secrets are never printed.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;

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

/// Property names whose values are secrets.
fn is_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["password", "secret", "token", "key.pem", "private"]
        .iter()
        .any(|s| k.contains(s))
}

impl KafkaConn {
    /// Connection settings: `brokers` plus spec properties, overridden by `LOGFLOW_KAFKA_*`.
    pub fn new(brokers: &str, spec_properties: &[(String, String)]) -> Self {
        let mut properties: Vec<(String, String)> = spec_properties.to_vec();
        for (k, v) in std::env::vars() {
            if let Some(rest) = k.strip_prefix(PROPERTY_ENV_PREFIX) {
                let key = rest.to_ascii_lowercase().replace('_', ".");
                properties.retain(|(pk, _)| *pk != key);
                properties.push((key, v));
            }
        }
        KafkaConn {
            brokers: brokers.to_string(),
            properties,
        }
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
            .map(|(k, v)| {
                if is_secret(k) {
                    format!("{k}=***")
                } else {
                    format!("{k}={v}")
                }
            })
            .collect();
        if props.is_empty() {
            self.brokers.clone()
        } else {
            format!("{} ({})", self.brokers, props.join(", "))
        }
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
        let consumer: BaseConsumer = self
            .client_config()
            .create()
            .map_err(|e| Error::Runtime(format!("kafka {}: {e}", self.describe())))?;
        topics
            .iter()
            .map(|t| self.partitions_with(&consumer, t, timeout))
            .collect()
    }

    /// `topic`'s partitions; a topic the brokers do not list yet (just created: metadata
    /// follows CreateTopics by a moment) is asked again for up to [`TOPIC_APPEAR`], so a job
    /// started right after its topics were made does not fail, and a missing one still fails
    /// fast.
    fn partitions_with(
        &self,
        consumer: &BaseConsumer,
        topic: &str,
        timeout: Duration,
    ) -> Result<Vec<i32>, Error> {
        let give_up = Instant::now() + TOPIC_APPEAR.min(timeout);
        loop {
            match self.partitions_once(consumer, topic, timeout)? {
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
        consumer: &BaseConsumer,
        topic: &str,
        timeout: Duration,
    ) -> Result<Result<Vec<i32>, String>, Error> {
        let md = consumer.fetch_metadata(Some(topic), timeout).map_err(|e| {
            Error::Runtime(format!(
                "kafka {}: metadata for topic `{topic}`: {e}",
                self.describe()
            ))
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
        let consumer: BaseConsumer = self
            .client_config()
            .create()
            .map_err(|e| Error::Runtime(format!("kafka {}: {e}", self.describe())))?;
        partitions
            .iter()
            .map(|&p| {
                consumer
                    .fetch_watermarks(topic, p, timeout)
                    .map_err(|e| Error::Runtime(format!("kafka {topic}/{p}: offsets: {e}")))
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
}
