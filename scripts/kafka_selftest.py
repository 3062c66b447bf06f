"""Checks a running Kafka broker with an independent client (confluent-kafka / librdkafka).

Run by scripts/kafka-selftest with the venv's python:
    python kafka_selftest.py BOOTSTRAP run STATEFILE      produce/consume/idempotence/transactions
    python kafka_selftest.py BOOTSTRAP verify STATEFILE   after a broker restart: data and offsets survived

Every check is bounded in time; the process exits 1 if any check failed.
"""

import json
import sys
import time
import uuid

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

N_MESSAGES = 10_000
LOGS_TOPIC = "logs"
LOGS_PARTITIONS = 4
TXN_TOPIC = "selftest-txn"
TXN_PARTITIONS = 2
TIMEOUT_S = 60.0

results = []  # (name, ok, detail)


def check(name, ok, detail=""):
    results.append((name, bool(ok), detail))
    print(f"{'ok  ' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}", flush=True)
    return ok


def base_conf(bootstrap):
    return {"bootstrap.servers": bootstrap, "client.id": "logflow-selftest", "socket.timeout.ms": 10_000}


def watermarks(bootstrap, topic, partitions):
    c = Consumer({**base_conf(bootstrap), "group.id": "selftest-wm-" + uuid.uuid4().hex})
    try:
        return [c.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in range(partitions)]
    finally:
        c.close()


def consume_range(bootstrap, topic, stop_at, group, isolation="read_committed", start=None, commit=False):
    """Consume until every partition's position reaches stop_at[p]. With start=None the
    consumer subscribes (a consumer group, auto.offset.reset=earliest); otherwise it is
    assigned start[p] explicitly. Returns the list of messages (partition, offset, key, value)."""
    conf = {
        **base_conf(bootstrap),
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "isolation.level": isolation,
        "session.timeout.ms": 10_000,
    }
    c = Consumer(conf)
    out = []
    try:
        if start is None:
            c.subscribe([topic])
        else:
            c.assign([TopicPartition(topic, p, o) for p, o in enumerate(start)])
        pos = {p: (start[p] if start else 0) for p in range(len(stop_at))}
        done = lambda: all(pos[p] >= stop_at[p] for p in pos)  # noqa: E731
        deadline = time.monotonic() + TIMEOUT_S
        while not done() and time.monotonic() < deadline:
            for m in c.consume(num_messages=1000, timeout=0.5):
                if m.error():
                    if m.error().code() != KafkaError._PARTITION_EOF:
                        raise KafkaException(m.error())
                    continue
                out.append((m.partition(), m.offset(), m.key(), m.value()))
                pos[m.partition()] = m.offset() + 1
            if not done():
                # Transaction markers / aborted records take offsets but are not delivered:
                # ask the client where it is.
                for tp in c.position([TopicPartition(topic, p) for p in pos]):
                    if tp.offset >= 0:
                        pos[tp.partition] = max(pos[tp.partition], tp.offset)
        if commit:
            c.commit(offsets=[TopicPartition(topic, p, o) for p, o in pos.items()], asynchronous=False)
        return out, done()
    finally:
        c.close()


def committed(bootstrap, group, topic, partitions):
    c = Consumer({**base_conf(bootstrap), "group.id": group})
    try:
        tps = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return [tp.offset for tp in tps]
    finally:
        c.close()


def run(bootstrap, statefile):
    run_id = uuid.uuid4().hex[:12]
    print(f"selftest run {run_id} against {bootstrap}", flush=True)

    # --- idempotent producer, 10,000 messages over 4 partitions -------------------------
    before = watermarks(bootstrap, LOGS_TOPIC, LOGS_PARTITIONS)
    p = Producer({**base_conf(bootstrap), "enable.idempotence": True, "acks": "all",
                  "linger.ms": 5, "compression.type": "lz4"})
    errors = []

    def on_delivery(err, _msg):
        if err is not None:
            errors.append(err)

    t0 = time.monotonic()
    for i in range(N_MESSAGES):
        value = json.dumps({"run": run_id, "seq": i, "level": "INFO",
                            "msg": f"GET /api/items/{i % 97} 200 {i % 1000}ms"}).encode()
        while True:
            try:
                p.produce(LOGS_TOPIC, value=value, key=f"host-{i % 16}".encode(), on_delivery=on_delivery)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    left = p.flush(TIMEOUT_S)
    produce_s = time.monotonic() - t0
    check("idempotent produce 10000", left == 0 and not errors,
          f"{N_MESSAGES / produce_s:,.0f} msg/s ({produce_s:.2f} s), undelivered={left}, errors={errors[:3]}")
    after = watermarks(bootstrap, LOGS_TOPIC, LOGS_PARTITIONS)
    added = sum(a[1] - b[1] for a, b in zip(after, before))
    check("high watermarks grew by exactly 10000 (no duplicates)", added == N_MESSAGES, f"grew by {added}")
    check("all 4 partitions used", all(a[1] > b[1] for a, b in zip(after, before)),
          str([a[1] - b[1] for a, b in zip(after, before)]))

    # --- consume all back: fresh group, earliest -----------------------------------------
    group = f"selftest-{run_id}"
    stop_at = [hw for _lo, hw in after]
    t0 = time.monotonic()
    msgs, complete = consume_range(bootstrap, LOGS_TOPIC, stop_at, group, commit=True)
    consume_s = time.monotonic() - t0
    mine = [json.loads(v)["seq"] for (_p, _o, _k, v) in msgs if json.loads(v).get("run") == run_id]
    check("consume back all 10000 (fresh group, earliest)",
          complete and sorted(mine) == list(range(N_MESSAGES)),
          f"{len(msgs):,} read incl. older runs, {len(mine)} of this run, "
          f"{len(msgs) / consume_s:,.0f} msg/s ({consume_s:.2f} s incl. group join)")
    # per key, sequence numbers arrive in produce order (same key -> same partition)
    order_ok = True
    last = {}
    for (_p, _o, k, v) in msgs:
        d = json.loads(v)
        if d.get("run") != run_id:
            continue
        if last.get(k, -1) >= d["seq"]:
            order_ok = False
        last[k] = d["seq"]
    check("per-key order kept", order_ok)
    got = committed(bootstrap, group, LOGS_TOPIC, LOGS_PARTITIONS)
    check("consumer group committed offsets", got == stop_at, f"committed {got}, end {stop_at}")

    # --- transactions -------------------------------------------------------------------
    txn_before = [hw for _lo, hw in watermarks(bootstrap, TXN_TOPIC, TXN_PARTITIONS)]
    tp = Producer({**base_conf(bootstrap), "transactional.id": f"selftest-txn-{run_id}",
                   "transaction.timeout.ms": 30_000})
    t0 = time.monotonic()
    tp.init_transactions(TIMEOUT_S)
    check("init_transactions", True, f"{time.monotonic() - t0:.2f} s")

    def txn(kind, n, commit):
        tp.begin_transaction()
        for i in range(n):
            tp.produce(TXN_TOPIC, key=f"k{i % 4}".encode(),
                       value=json.dumps({"run": run_id, "kind": kind, "i": i}).encode())
        if commit:
            tp.commit_transaction(TIMEOUT_S)
        else:
            tp.flush(TIMEOUT_S)  # make sure the aborted records really reach the log
            tp.abort_transaction(TIMEOUT_S)

    try:
        txn("committed-1", 100, True)
        txn("aborted", 50, False)
        txn("committed-2", 10, True)
        check("transactional produce: commit, abort, commit", True)
    except KafkaException as e:
        check("transactional produce: commit, abort, commit", False, str(e))
    txn_after = [hw for _lo, hw in watermarks(bootstrap, TXN_TOPIC, TXN_PARTITIONS)]

    def kinds(isolation):
        ms, ok = consume_range(bootstrap, TXN_TOPIC, txn_after, f"selftest-txn-{isolation}-{run_id}",
                               isolation=isolation, start=txn_before)
        count = {}
        for (_p, _o, _k, v) in ms:
            d = json.loads(v)
            if d.get("run") == run_id:
                count[d["kind"]] = count.get(d["kind"], 0) + 1
        return count, ok

    rc, ok = kinds("read_committed")
    check("read_committed sees the 110 committed and none of the 50 aborted",
          ok and rc == {"committed-1": 100, "committed-2": 10}, str(rc))
    ru, ok = kinds("read_uncommitted")
    check("read_uncommitted also sees the aborted records (they were written)",
          ok and ru == {"committed-1": 100, "aborted": 50, "committed-2": 10}, str(ru))

    # consume-transform-produce: offsets committed inside a transaction (exactly-once)
    eos_group = f"selftest-eos-{run_id}"
    c = Consumer({**base_conf(bootstrap), "group.id": eos_group, "enable.auto.commit": False,
                  "auto.offset.reset": "earliest", "isolation.level": "read_committed"})
    try:
        c.subscribe([LOGS_TOPIC])
        got_n, deadline = 0, time.monotonic() + TIMEOUT_S
        while got_n < 100 and time.monotonic() < deadline:
            got_n += sum(1 for m in c.consume(num_messages=100, timeout=0.5) if not m.error())
        positions = [t for t in c.position(c.assignment()) if t.offset >= 0]
        tp.begin_transaction()
        tp.produce(TXN_TOPIC, value=json.dumps({"run": run_id, "kind": "eos"}).encode())
        tp.send_offsets_to_transaction(positions, c.consumer_group_metadata(), TIMEOUT_S)
        tp.commit_transaction(TIMEOUT_S)
        want = {t.partition: t.offset for t in positions}
    finally:
        c.close()
    got = committed(bootstrap, eos_group, LOGS_TOPIC, LOGS_PARTITIONS)
    check("send_offsets_to_transaction commits the group's offsets",
          got_n >= 100 and want and all(got[p] == o for p, o in want.items()),
          f"want {want}, committed {got}")

    with open(statefile, "w") as f:
        json.dump({"run_id": run_id, "group": group, "stop_at": stop_at,
                   "produce_msg_s": N_MESSAGES / produce_s, "consume_msg_s": len(msgs) / consume_s}, f)


def verify(bootstrap, statefile):
    with open(statefile) as f:
        st = json.load(f)
    run_id, stop_at = st["run_id"], st["stop_at"]
    print(f"selftest verify run {run_id} against {bootstrap} (after restart)", flush=True)
    msgs, complete = consume_range(bootstrap, LOGS_TOPIC, stop_at, f"selftest-verify-{run_id}-{uuid.uuid4().hex[:6]}")
    mine = sorted(json.loads(v)["seq"] for (_p, _o, _k, v) in msgs if json.loads(v).get("run") == run_id)
    check("after restart: the 10000 messages are still there", complete and mine == list(range(N_MESSAGES)),
          f"{len(mine)} of this run")
    got = committed(bootstrap, st["group"], LOGS_TOPIC, LOGS_PARTITIONS)
    check("after restart: the group's committed offsets survived", got == stop_at, f"{got} vs {stop_at}")


def main():
    if len(sys.argv) != 4 or sys.argv[2] not in ("run", "verify"):
        print(__doc__, file=sys.stderr)
        return 2
    bootstrap, mode, statefile = sys.argv[1:]
    try:
        (run if mode == "run" else verify)(bootstrap, statefile)
    except Exception as e:  # a crash is a failed check, with its reason
        check(f"{mode} finished without an exception", False, f"{type(e).__name__}: {e}")
    failed = sum(1 for r in results if not r[1])
    print(f"selftest {mode}: {len(results) - failed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
