//! Kafka output: one topic per analysis (key = `window_start|key values`, value = the JSON row),
//! plus `<job>.dead-letter` and `<job>.late`. Every worker produces its own results through an
//! idempotent producer. When the broker is slow, the producer's bounded queue fills and `send`
//! waits for room: backpressure instead of unbounded memory.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;

use super::render::{dead_letter_json, late_json, row_json, row_key};
use super::Sink;
use crate::kafka::{send_waiting, KafkaConn};
use crate::record::Row;
use crate::runtime::ingest::{DeadLetter, LateEvent};
use crate::spec::plan::JobPlan;
use crate::Error;

/// Delivery reports: failures are kept so the job fails loudly instead of losing results.
#[derive(Default)]
pub struct Deliveries {
    delivered: AtomicU64,
    failed: Mutex<Option<String>>,
}

/// The producer's context: shares [`Deliveries`] with the sink.
pub struct DeliveryContext(Arc<Deliveries>);

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.0.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, msg)) => {
                use rdkafka::message::Message;
                if let Ok(mut f) = self.0.failed.lock() {
                    f.get_or_insert_with(|| {
                        format!("delivery to topic `{}` failed: {e}", msg.topic())
                    });
                }
            }
        }
    }
}

/// Produces every output to Kafka.
pub struct KafkaSink {
    plan: Arc<JobPlan>,
    producer: ThreadedProducer<DeliveryContext>,
    deliveries: Arc<Deliveries>,
    dead_topic: String,
    late_topic: String,
    buf: String,
}

impl KafkaSink {
    /// Connects; fails if an output topic is missing (topics are never auto-created).
    pub fn create(conn: &KafkaConn, plan: Arc<JobPlan>) -> Result<Self, Error> {
        let deliveries = Arc::new(Deliveries::default());
        let producer: ThreadedProducer<DeliveryContext> = conn
            .client_config()
            .set("enable.idempotence", "true")
            .set("linger.ms", "20")
            .set("queue.buffering.max.messages", "100000")
            .set("queue.buffering.max.kbytes", "65536")
            .set("allow.auto.create.topics", "false")
            .create_with_context(DeliveryContext(Arc::clone(&deliveries)))
            .map_err(|e| Error::Runtime(format!("kafka producer on {}: {e}", conn.describe())))?;
        Ok(KafkaSink {
            dead_topic: plan.dead_letter_topic(),
            late_topic: plan.late_topic(),
            plan,
            producer,
            deliveries,
            buf: String::new(),
        })
    }

    /// Every topic this sink writes to.
    pub fn topics(plan: &JobPlan) -> Vec<String> {
        let mut t: Vec<String> = plan.analyses.iter().map(|a| a.topic.clone()).collect();
        t.push(plan.dead_letter_topic());
        t.push(plan.late_topic());
        t
    }

    fn check(&self) -> Result<(), Error> {
        match self.deliveries.failed.lock().ok().and_then(|f| f.clone()) {
            Some(e) => Err(Error::Runtime(e)),
            None => Ok(()),
        }
    }

    fn send(&self, topic: &str, key: Option<&str>, value: Option<&str>) -> Result<(), Error> {
        let mut record = BaseRecord::<[u8], [u8]>::to(topic);
        if let Some(v) = value {
            record = record.payload(v.as_bytes());
        }
        if let Some(k) = key {
            record = record.key(k.as_bytes());
        }
        // Backpressure: while the queue is full, deliveries free room (or report a failure).
        send_waiting(&self.producer, record, || self.check())
    }
}

impl Sink for KafkaSink {
    fn rows(&mut self, rows: &[Row]) -> Result<(), Error> {
        self.check()?;
        let plan = Arc::clone(&self.plan);
        for r in rows {
            self.buf.clear();
            let key = row_key(&plan, r);
            let topic = &plan.analyses[r.analysis as usize].topic;
            if r.retract {
                // A tombstone: compaction then drops the key and window.
                self.send(topic, Some(&key), None)?;
            } else {
                row_json(&plan, r, &mut self.buf);
                self.send(topic, Some(&key), Some(&self.buf))?;
            }
        }
        Ok(())
    }

    fn dead_letters(&mut self, records: &[DeadLetter]) -> Result<(), Error> {
        for d in records {
            self.buf.clear();
            dead_letter_json(d, &mut self.buf);
            self.send(&self.dead_topic, None, Some(&self.buf))?;
        }
        Ok(())
    }

    fn late_events(&mut self, records: &[LateEvent]) -> Result<(), Error> {
        let plan = Arc::clone(&self.plan);
        for l in records {
            self.buf.clear();
            late_json(&plan, l, &mut self.buf);
            self.send(&self.late_topic, None, Some(&self.buf))?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Error> {
        // Called when a batch of windows is written: the results become visible promptly.
        self.producer.poll(Duration::ZERO);
        self.check()
    }

    fn close(&mut self) -> Result<(), Error> {
        self.producer
            .flush(Duration::from_secs(60))
            .map_err(|e| Error::Runtime(format!("kafka flush: {e}")))?;
        self.check()
    }
}
