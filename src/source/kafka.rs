//! The Kafka consumer: librdkafka (bundled, via rdkafka) in a consumer group,
//! with offsets stored and committed only by the service, never by the client.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::{ClientConfig, ClientContext, TopicPartitionList};

use crate::config::KafkaConfig;

/// A partition assignment change, seen by the service after the poll in
/// which librdkafka made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Assigned(Vec<(String, i32)>),
    Revoked(Vec<(String, i32)>),
}

#[derive(Default)]
pub struct GroupContext {
    changes: Mutex<Vec<Change>>,
    assignment: Arc<Assignment>,
}

impl GroupContext {
    pub fn take_changes(&self) -> Vec<Change> {
        std::mem::take(&mut *self.changes.lock().expect("not poisoned"))
    }

    /// The partitions assigned to this consumer, kept by the rebalance
    /// callbacks themselves.
    pub fn assignment(&self) -> Arc<Assignment> {
        Arc::clone(&self.assignment)
    }
}

/// The partitions librdkafka has assigned to this consumer, as of its
/// latest rebalance callback. [`Change`]s reach the service after the poll;
/// this is updated inside the callback, so a revocation is visible to other
/// threads before the group can hand the partition to another worker.
#[derive(Debug, Default)]
pub struct Assignment(Mutex<HashSet<(String, i32)>>);

impl Assignment {
    pub fn contains(&self, tp: &(String, i32)) -> bool {
        self.0.lock().expect("not poisoned").contains(tp)
    }

    pub fn add(&self, tps: &[(String, i32)]) {
        self.0.lock().expect("not poisoned").extend(tps.iter().cloned());
    }

    pub fn remove(&self, tps: &[(String, i32)]) {
        let mut set = self.0.lock().expect("not poisoned");
        for tp in tps {
            set.remove(tp);
        }
    }
}

fn partitions(tpl: &TopicPartitionList) -> Vec<(String, i32)> {
    tpl.elements().iter().map(|e| (e.topic().to_owned(), e.partition())).collect()
}

/// librdkafka's logs, as tracing events under the target `librdkafka`.
fn forward_log(level: RDKafkaLogLevel, fac: &str, log_message: &str) {
    use RDKafkaLogLevel::*;
    match level {
        Emerg | Alert | Critical | Error => tracing::error!(target: "librdkafka", fac, "{log_message}"),
        Warning => tracing::warn!(target: "librdkafka", fac, "{log_message}"),
        Notice | Info => tracing::info!(target: "librdkafka", fac, "{log_message}"),
        Debug => tracing::debug!(target: "librdkafka", fac, "{log_message}"),
    }
}

/// librdkafka filters its own logs before they reach [`forward_log`]: pass
/// through what the tracing filter would keep.
fn log_level() -> RDKafkaLogLevel {
    if tracing::enabled!(target: "librdkafka", tracing::Level::DEBUG) {
        RDKafkaLogLevel::Debug
    } else if tracing::enabled!(target: "librdkafka", tracing::Level::INFO) {
        RDKafkaLogLevel::Info
    } else {
        RDKafkaLogLevel::Warning
    }
}

impl ClientContext for GroupContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        forward_log(level, fac, log_message)
    }
}

impl ConsumerContext for GroupContext {
    // Revocations are acted on after the poll that reported them: the
    // service drops the revoked partitions' open batches, uncommitted, so
    // whoever is assigned them next reads those messages again. Only the
    // [`Assignment`] changes here, for the uploader, which must stop
    // sealing before the group moves on.
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let list = partitions(tpl);
            self.assignment.remove(&list);
            self.changes.lock().expect("not poisoned").push(Change::Revoked(list));
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let list = partitions(tpl);
                self.assignment.add(&list);
                self.changes.lock().expect("not poisoned").push(Change::Assigned(list))
            }
            Rebalance::Error(e) => tracing::error!(error = %e, "rebalance failed"),
            Rebalance::Revoke(_) => {}
        }
    }
}

pub type GroupConsumer = BaseConsumer<GroupContext>;

/// Counts deliveries that failed, so a flush can tell whether every dead
/// letter reached the topic.
#[derive(Default)]
pub struct DeliveryContext {
    pub failed: std::sync::atomic::AtomicU64,
}

impl ClientContext for DeliveryContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        forward_log(level, fac, log_message)
    }
}

impl rdkafka::producer::ProducerContext for DeliveryContext {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &rdkafka::message::DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = r {
            tracing::warn!(error = %e, "dead letter not delivered");
            self.failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

pub type DeadLetterProducer = rdkafka::producer::BaseProducer<DeliveryContext>;

/// An idempotent producer (acks=all) with the consumer's connection settings.
pub fn dead_letter_producer(cfg: &KafkaConfig) -> Result<DeadLetterProducer, KafkaSetupError> {
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", &cfg.brokers);
    for (k, v) in &cfg.properties {
        // Consumer-only properties would make librdkafka warn on a producer.
        if !k.starts_with("session.")
            && !k.starts_with("heartbeat.")
            && !k.starts_with("auto.")
            && !k.starts_with("fetch.")
        {
            cc.set(k, v);
        }
    }
    cc.set("acks", "all").set("enable.idempotence", "true").set("linger.ms", "5");
    cc.set_log_level(log_level());
    Ok(cc.create_with_context(DeliveryContext::default())?)
}

#[derive(Debug, thiserror::Error)]
pub enum KafkaSetupError {
    #[error("[kafka] properties: {0} is set by trailship and cannot be overridden")]
    Reserved(String),
    #[error("cannot create the Kafka consumer: {0}")]
    Client(#[from] rdkafka::error::KafkaError),
}

/// Properties the delivery guarantee depends on.
const RESERVED: [&str; 3] = ["enable.auto.commit", "enable.auto.offset.store", "group.id"];

/// How long librdkafka waits before fetching again for a partition once
/// the prefetch queue is over its thresholds. A group consumer's partition
/// queues feed one queue, so every partition sees the whole of it: past
/// 64 MiB (`queued.max.messages.kbytes`) they all wait this long, and one
/// worker drains 64 MiB in well under a second. At librdkafka's default,
/// 1 s, the queue ran dry before the fetcher woke: a third of the worker's
/// time idle on `poll`, ~30,000 events/s with 4 partitions. A re-check
/// while the queue is still full is a few microseconds and sends nothing.
/// Measured, one worker (benches/README.md, "Kafka → S3"): at 4 partitions
/// 10 ms gave 48-56k events/s and 50 ms 53-56k; at 8, 10 ms 55,300 (median
/// of 4) against 40,000 for 50 ms (of 5) and 29,800 for 1 s (of 3). The
/// operator's `[kafka] properties` win.
const FETCH_QUEUE_BACKOFF_MS: &str = "10";

/// The consumer's librdkafka settings: trailship's defaults, then the
/// operator's properties, then what the delivery guarantee depends on.
fn consumer_config(cfg: &KafkaConfig) -> Result<ClientConfig, KafkaSetupError> {
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", &cfg.brokers)
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "30000")
        .set("enable.partition.eof", "false")
        .set("fetch.queue.backoff.ms", FETCH_QUEUE_BACKOFF_MS);
    for (k, v) in &cfg.properties {
        if RESERVED.contains(&k.as_str()) || k == "bootstrap.servers" {
            return Err(KafkaSetupError::Reserved(k.clone()));
        }
        cc.set(k, v);
    }
    cc.set("group.id", &cfg.group_id).set("enable.auto.commit", "false").set("enable.auto.offset.store", "false");
    cc.set_log_level(log_level());
    Ok(cc)
}

/// A consumer in `cfg.group_id`, subscribed to every configured topic.
pub fn subscribe(cfg: &KafkaConfig) -> Result<GroupConsumer, KafkaSetupError> {
    let consumer: GroupConsumer = consumer_config(cfg)?.create_with_context(GroupContext::default())?;
    let topics: Vec<&str> = cfg.topics.iter().map(|t| t.name.as_str()).collect();
    consumer.subscribe(&topics)?;
    Ok(consumer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kafka(properties: &[(&str, &str)]) -> KafkaConfig {
        KafkaConfig {
            brokers: "127.0.0.1:9092".into(),
            group_id: "g".into(),
            topics: Vec::new(),
            properties: properties.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            dead_letter_topic: None,
        }
    }

    #[test]
    fn the_fetch_backoff_is_short_unless_the_operator_sets_it() {
        let cc = consumer_config(&kafka(&[])).unwrap();
        assert_eq!(cc.get("fetch.queue.backoff.ms"), Some(FETCH_QUEUE_BACKOFF_MS));
        assert_eq!(cc.get("enable.auto.commit"), Some("false"));
        let cc = consumer_config(&kafka(&[("fetch.queue.backoff.ms", "500"), ("security.protocol", "ssl")])).unwrap();
        assert_eq!(cc.get("fetch.queue.backoff.ms"), Some("500"));
        assert_eq!(cc.get("security.protocol"), Some("ssl"));
        // What delivery depends on is not the operator's to change.
        let e = consumer_config(&kafka(&[("enable.auto.commit", "true")])).err().unwrap();
        assert!(matches!(e, KafkaSetupError::Reserved(k) if k == "enable.auto.commit"));
    }
}
