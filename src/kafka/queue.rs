//! A Kafka partition's message queue read in batches: one of the crate's two uses of `unsafe`
//! (the other is [`crate::parse::json_fast`]'s scanner).
//!
//! rdkafka's safe API returns one message per `poll`, and each call reads the clock twice,
//! wraps the message in a reference-counted event and takes the queue's lock: about 1,000
//! instructions per message, 6% of the whole job's in the callgrind profile of BENCHMARKS.md.
//! librdkafka's `rd_kafka_consume_batch_queue` hands over every message queued, up to a limit,
//! in one call. rdkafka does not wrap it, so this module does, with the invariants below kept
//! in one place:
//! - the queue handle is only used while the consumer that owns it is alive (`consumer` is
//!   dropped after the queue is destroyed);
//! - every message librdkafka returns is destroyed exactly once, also when the callback panics;
//! - a payload is lent to the callback only for the duration of its call (the callback's
//!   higher-ranked signature keeps it from escaping) and is never written;
//! - the wake-up handed to librdkafka ([`BatchQueue::wake_on_arrival`]) outlives its
//!   registration: it is unregistered (under the queue's lock, which librdkafka also holds
//!   while it calls it) before it is replaced or dropped.
#![allow(unsafe_code)]

use std::ffi::{c_void, CString};
use std::ptr::NonNull;
use std::sync::Arc;

use rdkafka::bindings as rd;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use crate::parse::schema::RecordMeta;
use crate::sources::Wake;

/// Messages asked for per librdkafka call (the array lives in the reader).
const CHUNK: usize = 1024;

/// One partition's queue, split off the consumer's queue, read without blocking.
pub struct BatchQueue {
    queue: NonNull<rd::rd_kafka_queue_t>,
    /// Slots for the messages of one call.
    slots: Vec<*mut rd::rd_kafka_message_t>,
    /// The registered wake-up (boxed: librdkafka holds a pointer to it).
    wake: Option<Box<Wake>>,
    /// Keeps the client alive while the queue exists (dropped after `Drop::drop`).
    _consumer: Arc<dyn Send + Sync>,
}

// SAFETY: librdkafka's queue handles may be used from any thread (its queues are locked), and
// the raw message pointers in `slots` never outlive one `consume` call.
unsafe impl Send for BatchQueue {}

impl BatchQueue {
    /// Splits `topic`/`partition`'s queue off the consumer's own queue, like rdkafka's
    /// `BaseConsumer::split_partition_queue`. Call it before the partition is assigned: a
    /// queue split later may already have handed messages to the consumer's queue. `None` if
    /// librdkafka cannot make the partition's queue.
    pub fn split<C: ConsumerContext + 'static>(
        consumer: &Arc<BaseConsumer<C>>,
        topic: &str,
        partition: i32,
    ) -> Option<Self> {
        let topic = CString::new(topic).ok()?;
        // SAFETY: the client pointer is valid while `consumer` lives; the topic is a valid C
        // string for the duration of the call. A null return means no such partition.
        let queue = NonNull::new(unsafe {
            rd::rd_kafka_queue_get_partition(
                consumer.client().native_ptr(),
                topic.as_ptr(),
                partition,
            )
        })?;
        // SAFETY: `queue` is a live handle; forwarding to null stops the partition's messages
        // from going to the consumer's main queue.
        unsafe { rd::rd_kafka_queue_forward(queue.as_ptr(), std::ptr::null_mut()) };
        Some(BatchQueue {
            queue,
            slots: Vec::with_capacity(CHUNK),
            wake: None,
            _consumer: Arc::clone(consumer) as Arc<dyn Send + Sync>,
        })
    }

    /// Has librdkafka call `wake` whenever a message (or an error) is queued while the queue
    /// is empty, so a reader that found it empty can sleep until then instead of polling.
    /// `wake` runs on librdkafka's fetcher thread with the queue locked: it must be quick.
    pub fn wake_on_arrival(&mut self, wake: Wake) {
        let boxed = Box::new(wake);
        let opaque = &*boxed as *const Wake as *mut c_void;
        // SAFETY: `opaque` points into the box, which is kept in `self.wake` until the callback
        // is replaced (this call, under the queue's lock: the previous one is no longer called
        // once it returns) or unregistered in `Drop::drop`.
        unsafe {
            rd::rd_kafka_queue_cb_event_enable(self.queue.as_ptr(), Some(on_arrival), opaque)
        };
        self.wake = Some(boxed);
    }

    /// Hands up to `max` queued messages, in order, to `each` as `Ok(message)` or as the
    /// error librdkafka reports in their place; returns how many it handed over (0: the queue
    /// is empty now). Never blocks.
    pub fn consume<F>(&mut self, max: usize, mut each: F) -> usize
    where
        F: for<'m> FnMut(Result<Msg<'m>, KafkaError>),
    {
        let want = max.min(CHUNK);
        if want == 0 {
            return 0;
        }
        self.slots.clear();
        // SAFETY: `slots` has room for `want` pointers; librdkafka writes at most `want` and
        // returns how many (or -1 on a bad queue, taken as none).
        let n = unsafe {
            rd::rd_kafka_consume_batch_queue(self.queue.as_ptr(), 0, self.slots.as_mut_ptr(), want)
        };
        let n = usize::try_from(n).unwrap_or(0).min(want);
        // SAFETY: the first `n` slots were just written with valid message pointers.
        unsafe { self.slots.set_len(n) };
        // Destroys the messages when this call ends, even if `each` panics.
        let taken = Taken(&mut self.slots);
        for &m in taken.0.iter() {
            // SAFETY: `m` is a valid message until `taken` is dropped.
            let msg = unsafe { &*m };
            if msg.err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                each(Err(KafkaError::MessageConsumption(RDKafkaErrorCode::from(
                    msg.err,
                ))));
                continue;
            }
            let payload: &[u8] = if msg.payload.is_null() || msg.len == 0 {
                &[]
            } else {
                // SAFETY: librdkafka's payload is `len` readable bytes owned by the message,
                // which lives until `taken` is dropped; the slice does not outlive `each`.
                unsafe { std::slice::from_raw_parts(msg.payload as *const u8, msg.len) }
            };
            each(Ok(Msg {
                offset: msg.offset,
                payload,
                raw: msg,
            }));
        }
        n
    }
}

/// A message lent to [`BatchQueue::consume`]'s callback.
pub struct Msg<'m> {
    pub offset: i64,
    pub payload: &'m [u8],
    raw: &'m rd::rd_kafka_message_t,
}

impl Msg<'_> {
    /// The record's key, timestamp and headers (copied: only schemas with `@` paths ask).
    pub fn meta(&self, partition: i32) -> RecordMeta {
        let m = self.raw;
        let key = (!m.key.is_null()).then(|| {
            // SAFETY: librdkafka's key is `key_len` readable bytes owned by the message, alive
            // for `'m`; copied out here.
            unsafe { std::slice::from_raw_parts(m.key as *const u8, m.key_len) }.to_vec()
        });
        let mut tstype = rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
        // SAFETY: `m` is a live message; `tstype` is a valid out pointer.
        let ts = unsafe { rd::rd_kafka_message_timestamp(m, &mut tstype) };
        let timestamp = (tstype != rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE
            && ts >= 0)
            .then_some(ts);
        let mut headers = Vec::new();
        let mut hdrs: *mut rd::rd_kafka_headers_t = std::ptr::null_mut();
        // SAFETY: `m` is live; librdkafka parses the headers into storage the message owns
        // and writes their handle to `hdrs` (valid while the message is), or returns an error.
        let err = unsafe { rd::rd_kafka_message_headers(m, &mut hdrs) };
        if err == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && !hdrs.is_null() {
            // SAFETY: `hdrs` is the message's live header list.
            let n = unsafe { rd::rd_kafka_header_cnt(hdrs) };
            for i in 0..n {
                let mut name: *const std::ffi::c_char = std::ptr::null();
                let mut value: *const c_void = std::ptr::null();
                let mut size = 0usize;
                // SAFETY: `i` is below the count; the out pointers are valid. The name is a
                // NUL-terminated string and the value `size` bytes (or null), both owned by
                // the header list; they are copied before the message is destroyed.
                let e = unsafe {
                    rd::rd_kafka_header_get_all(hdrs, i, &mut name, &mut value, &mut size)
                };
                if e != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
                    continue;
                }
                // SAFETY: as above.
                let name = unsafe { std::ffi::CStr::from_ptr(name) }
                    .to_string_lossy()
                    .into_owned();
                let value = (!value.is_null())
                    // SAFETY: as above.
                    .then(|| {
                        unsafe { std::slice::from_raw_parts(value as *const u8, size) }.to_vec()
                    });
                headers.push((name, value));
            }
        }
        RecordMeta {
            key,
            timestamp,
            partition,
            offset: self.offset,
            headers,
        }
    }
}

/// The messages of one call, destroyed on drop.
struct Taken<'a>(&'a mut Vec<*mut rd::rd_kafka_message_t>);

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        for m in self.0.drain(..) {
            // SAFETY: each pointer came from `rd_kafka_consume_batch_queue` and is destroyed
            // once: `drain` removes it from the slots.
            unsafe { rd::rd_kafka_message_destroy(m) };
        }
    }
}

/// librdkafka's queue event callback: calls the [`Wake`] registered as `opaque`.
unsafe extern "C" fn on_arrival(_rk: *mut rd::rd_kafka_t, opaque: *mut c_void) {
    // SAFETY: `opaque` is the boxed `Wake` of a live registration (see `wake_on_arrival`).
    let wake = unsafe { &*(opaque as *const Wake) };
    // A panic must not unwind into C; a lost wake-up only delays the reader until its timer.
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| wake()));
}

impl Drop for BatchQueue {
    fn drop(&mut self) {
        // SAFETY: the handle is live (the consumer is still held). The callback is unregistered
        // before its `Wake` is dropped (after this body) and the queue destroyed once.
        unsafe {
            if self.wake.is_some() {
                rd::rd_kafka_queue_cb_event_enable(self.queue.as_ptr(), None, std::ptr::null_mut());
            }
            rd::rd_kafka_queue_destroy(self.queue.as_ptr());
        }
    }
}
