"""An independent Kafka client for logflow's integration tests (confluent-kafka, not logflow's
code). Run with the venv python from scripts/pyenv.

    kafka_client.py produce BOOTSTRAP TOPIC FILE [P]    lines of FILE, round-robin over partitions
                                                        (or all to partition P)
    kafka_client.py produce-records BOOTSTRAP TOPIC FILE
                                                        JSON lines {"key":..,"value":..,
                                                        "timestamp":..,"headers":{..},
                                                        "partition":..}, each one record
    kafka_client.py dump BOOTSTRAP TOPIC OUT            every record (read_committed, up to the end
                                                        offsets as of now) as JSON lines
                                                        {"key":..,"value":..,"partition":..,"offset":..}
    kafka_client.py count BOOTSTRAP TOPIC               records in the topic (end - start, summed)
    kafka_client.py create BOOTSTRAP NAME:PARTITIONS[:KEY=VALUE,..]..
                                                        create topics (existing ones are kept),
                                                        with topic settings if given
    kafka_client.py topics BOOTSTRAP                    every topic but Kafka's own, NAME:PARTITIONS
                                                        a line, sorted
    kafka_client.py offsets BOOTSTRAP GROUP TOPIC       per partition, PARTITION END COMMITTED a line:
                                                        the end offset and GROUP's committed offset
                                                        (-1: none)
Every call is bounded in time and exits non-zero on failure.

KAFKA_CLIENT_PROPERTIES, if set, names a file of librdkafka settings (`key=value` lines, e.g.
the one `scripts/kafka client-properties` names for a sasl_ssl broker) added to every client.
"""

import json
import os
import sys
import time
import uuid

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

TIMEOUT_S = 120.0


def conf(settings):
    """`settings` plus those of the KAFKA_CLIENT_PROPERTIES file, if any."""
    path = os.environ.get("KAFKA_CLIENT_PROPERTIES")
    if path:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line and not line.startswith("#"):
                    k, v = line.split("=", 1)
                    settings[k.strip()] = v.strip()
    return settings


def partitions(bootstrap, topic):
    c = Consumer(conf({"bootstrap.servers": bootstrap, "group.id": "t-" + uuid.uuid4().hex}))
    try:
        md = c.list_topics(topic, timeout=30)
        t = md.topics.get(topic)
        if t is None or t.error is not None:
            sys.exit(f"topic {topic}: {t.error if t else 'missing'}")
        return sorted(t.partitions.keys())
    finally:
        c.close()


def produce(bootstrap, topic, path, only=None):
    parts = partitions(bootstrap, topic) if only is None else [int(only)]
    p = Producer(conf({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 20}))
    n = 0
    with open(path, "rb") as f:
        for line in f:
            line = line.rstrip(b"\n")
            if not line:
                continue
            while True:
                try:
                    p.produce(topic, value=line, partition=parts[n % len(parts)])
                    break
                except BufferError:
                    p.poll(0.05)
            n += 1
            if n % 10000 == 0:
                p.poll(0)
    left = p.flush(TIMEOUT_S)
    if left:
        sys.exit(f"{left} messages not delivered")
    print(n)


def produce_records(bootstrap, topic, path):
    p = Producer(conf({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 20}))
    n = 0
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            r = json.loads(line)
            key = r.get("key")
            p.produce(topic, value=r["value"].encode(),
                      key=None if key is None else key.encode(),
                      partition=r.get("partition", 0), timestamp=r.get("timestamp", 0),
                      headers=[(k, v.encode()) for k, v in r.get("headers", {}).items()])
            n += 1
            p.poll(0)
    left = p.flush(TIMEOUT_S)
    if left:
        sys.exit(f"{left} messages not delivered")
    print(n)


def dump(bootstrap, topic, out):
    parts = partitions(bootstrap, topic)
    c = Consumer(conf({
        "bootstrap.servers": bootstrap,
        "group.id": "t-" + uuid.uuid4().hex,
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
    }))
    ends = {}
    for p in parts:
        lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
        ends[p] = hi
    c.assign([TopicPartition(topic, p, 0) for p in parts])
    done = {p for p in parts if ends[p] == 0}
    n = 0
    deadline = time.time() + TIMEOUT_S
    with open(out, "w") as f:
        while len(done) < len(parts):
            if time.time() > deadline:
                sys.exit(f"timed out reading {topic}: {n} records")
            m = c.poll(0.5)
            if m is None:
                # With transactions the last offsets may be control records: check positions.
                for tp in c.position([TopicPartition(topic, p) for p in parts if p not in done]):
                    if tp.offset >= ends[tp.partition]:
                        done.add(tp.partition)
                continue
            if m.error():
                # A partition's end is no error; anything else could hide a missing or an
                # uncommitted record, so the dump fails (the caller shows this line).
                if m.error().code() == KafkaError._PARTITION_EOF:
                    continue
                sys.exit(f"reading {topic}: {m.error()}")
            key = m.key().decode() if m.key() is not None else None
            value = m.value().decode() if m.value() is not None else None  # None: a tombstone
            f.write(json.dumps({"key": key, "value": value, "partition": m.partition(),
                                "offset": m.offset()}) + "\n")
            n += 1
            if m.offset() + 1 >= ends[m.partition()]:
                done.add(m.partition())
    c.close()
    print(n)


def count(bootstrap, topic):
    c = Consumer(conf({"bootstrap.servers": bootstrap, "group.id": "t-" + uuid.uuid4().hex}))
    total = 0
    for p in partitions(bootstrap, topic):
        lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
        total += hi - lo
    c.close()
    print(total)


def create(bootstrap, *specs):
    admin = AdminClient(conf({"bootstrap.servers": bootstrap}))
    topics = []
    for spec in specs:
        name, parts, *settings = spec.split(":", 2)
        config = dict(kv.split("=", 1) for s in settings for kv in s.split(","))
        topics.append(NewTopic(name, num_partitions=int(parts), replication_factor=1,
                               config=config))
    for name, fut in admin.create_topics(topics, request_timeout=60).items():
        try:
            fut.result(timeout=60)
        except KafkaException as e:
            if e.args[0].name() != "TOPIC_ALREADY_EXISTS":
                sys.exit(f"create {name}: {e}")
    # Created is not yet visible: the broker's metadata follows the controller a moment later,
    # and a job started right away (its output topics checked within milliseconds) could be
    # told a topic is unknown. Wait until every topic is listed with its partitions.
    deadline = time.monotonic() + 60
    for t in topics:
        while True:
            md = admin.list_topics(t.topic, timeout=10).topics.get(t.topic)
            if md is not None and md.error is None and len(md.partitions) == t.num_partitions:
                break
            if time.monotonic() > deadline:
                sys.exit(f"create {t.topic}: not in the broker's metadata after 60 s")
            time.sleep(0.05)
    print(len(topics))


def topics(bootstrap):
    admin = AdminClient(conf({"bootstrap.servers": bootstrap}))
    md = admin.list_topics(timeout=30)
    for name in sorted(md.topics):
        if not name.startswith("__"):
            print(f"{name}:{len(md.topics[name].partitions)}")


def committed_offsets(consumer, parts):
    """The group's committed offsets of parts, asked again while its coordinator moves or
    loads (a broker just started answers NOT_COORDINATOR for a while)."""
    busy = (KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
            KafkaError.COORDINATOR_NOT_AVAILABLE)
    until = time.monotonic() + 30
    while True:
        try:
            return consumer.committed(parts, timeout=30)
        except KafkaException as e:
            if e.args[0].code() not in busy or time.monotonic() > until:
                raise
            time.sleep(0.2)


def offsets(bootstrap, group, topic):
    c = Consumer(conf({"bootstrap.servers": bootstrap, "group.id": group,
                       "enable.auto.commit": False}))
    try:
        parts = [TopicPartition(topic, p) for p in partitions(bootstrap, topic)]
        committed = committed_offsets(c, parts)
        for tp in committed:
            if tp.error is not None:
                sys.exit(f"committed {topic}/{tp.partition}: {tp.error}")
            _, hi = c.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=30)
            print(tp.partition, hi, tp.offset if tp.offset >= 0 else -1)
    finally:
        c.close()


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"produce": produce, "produce-records": produce_records, "dump": dump, "count": count,
     "create": create, "topics": topics, "offsets": offsets}[cmd](*args)
