"""scripts/bench kafka: the log-analysis job end to end on a real Apache Kafka broker, next to
the broker's limit, and the latency of results. Run through scripts/bench (which builds logflow
and supplies the venv python with confluent-kafka); writes the `kafka` section of BENCHMARKS.md.

    scripts/bench kafka [--events 2000000] [--runs 3] [--rate 20000] [--seconds 30]
                        [--port 19592]

Throughput: `--events` generated log lines are produced once into topic `bench` (4 partitions).
Each run then reads them twice, in turns: with `logflow bench-read -w 2` (the job's own consumer
settings and partition split, doing nothing with the records: the rate the broker and client
deliver here, the job's ceiling) and with the full job (`dataflows/log-analysis.toml`, all 11
analyses, results produced to Kafka, `--stop-at-end -w 2`). Both rates are whole-process:
start, connect, read everything, (job: compute, produce results, flush), exit.

Latency: `dataflows/bench/kafka-latency.toml` (1 s windows, watermark delay 0) runs live with
`-w 2` while `logflow gen --start now --rate R --event-rate R --disorder 0s` produces for
`--seconds` seconds, so every event's timestamp is the wall-clock time it was produced and a
window's end is the moment its last event could have been produced. An independent consumer
(confluent-kafka) notes when each result record becomes readable on the output topics; the
latency of a result is that time minus its window's end. The first 3 s of windows (start-up)
and the last second are not counted.

The broker is this script's own (`scripts/kafka` with state in target/bench-kafka, wiped at
start and stopped at the end).
"""

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_report import (BIN, ROOT, WORK, accounting_read, cpu_of, cpu_of_pid,  # noqa: E402
                          gen_file, load, log, machine, spread, timed, write_section)

from confluent_kafka import Consumer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

LATENCY_SPEC = "dataflows/bench/kafka-latency.toml"
LATENCY_TOPICS = [f"bench-latency.{a}" for a in ["response_time", "error_rate", "system_health"]]
WARMUP_S = 3.0


def broker(state, *args):
    env = dict(os.environ, KAFKA_STATE_DIR=state)
    p = subprocess.run([os.path.join(ROOT, "scripts", "kafka"), *args], env=env, cwd=ROOT,
                       capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"scripts/kafka {' '.join(args)} failed:\n{p.stderr}")
    return p.stdout.strip().splitlines()[-1] if p.stdout.strip() else ""


def create_topics(address, topics):
    admin = AdminClient({"bootstrap.servers": address})
    futures = admin.create_topics([NewTopic(t, p, 1) for t, p in topics], operation_timeout=60)
    for t, f in futures.items():
        f.result(timeout=120)


def broker_pid(state):
    """The broker's pid, from `scripts/kafka status` (`running A (pid N, state S)`)."""
    return int(re.search(r"pid (\d+)", broker(state, "status")).group(1))


def throughput(address, state, events, runs, args_line):
    gen_cmd = [BIN, "gen", "--brokers", address, "--topic", "bench", "--events", str(events)]
    read_cmd = [BIN, "bench-read", "--brokers", address, "--topic", "bench", "-w", "2"]
    job_cmd = [BIN, "run", "dataflows/log-analysis.toml", "--brokers", address, "--topic",
               "bench", "--stop-at-end", "-w", "2", "--quiet"]
    log(f"producing {events:,} events into bench (4 partitions)")
    dt, _, _ = timed(gen_cmd)
    log(f"  produced in {dt:.1f} s ({events / dt:,.0f} events/s)")
    # The same lines from a file (the generator is deterministic): the job without Kafka.
    data = gen_file(events)
    out_dir = os.path.join(WORK, "out-kafka-peer")
    file_cmd = [BIN, "run", "dataflows/log-analysis.toml", "--input", data, "--output-dir",
                out_dir, "-w", "2", "--quiet"]
    pid = broker_pid(state)
    rows = {k: {"rate": [], "rss": [], "cpu": [], "broker": []}
            for k in ["read", "job", "big", "file"]}

    def measure(key, cmd, env=None):
        b0 = cpu_of_pid(pid)
        dt, rss, p = timed(cmd, env=env)
        broker_cpu = cpu_of_pid(pid) - b0
        got = (json.loads(p.stdout.strip().splitlines()[-1])["records"] if key == "read"
               else accounting_read(p.stderr))
        assert got == events, f"{key}: read {got} records, expected {events}"
        row = rows[key]
        row["rate"].append(events / dt)
        row["rss"].append(rss)
        row["cpu"].append(cpu_of(p.stderr))
        row["broker"].append(broker_cpu)
        log(f"run {r + 1}: {key} {events / dt:,.0f} events/s, peak RSS {rss:.0f} MB, "
            f"CPU {row['cpu'][-1]:.1f} s, broker CPU {broker_cpu:.1f} s, wall {dt:.1f} s")

    # The same job with librdkafka's own prefetch settings.
    big_env = dict(os.environ, LOGFLOW_KAFKA_QUEUED_MAX_MESSAGES_KBYTES="65536",
                   LOGFLOW_KAFKA_FETCH_QUEUE_BACKOFF_MS="1000")
    loads = [load()]
    for r in range(runs):
        measure("read", read_cmd)
        measure("job", job_cmd)
        measure("big", job_cmd, env=big_env)
        shutil.rmtree(out_dir, ignore_errors=True)
        measure("file", file_cmd)
        loads.append(load())
    med = {k: {m: statistics.median(v) for m, v in row.items()} for k, row in rows.items()}
    ratio = med["job"]["rate"] / med["read"]["rate"]
    # What the machine allows: the job from Kafka does the file job's work plus a consumer's,
    # and the broker runs on the same cores; with every core busy all the time it could not
    # finish sooner than their CPU seconds over the cores (nor sooner than the file job).
    cores = os.cpu_count() or 1
    need = med["file"]["cpu"] + med["read"]["cpu"] + med["job"]["broker"]
    floor_s = max(need / cores, events / med["file"]["rate"])
    bound = (events / floor_s) / med["file"]["rate"]
    job_wall = events / med["job"]["rate"]
    busy = (med["job"]["cpu"] + med["job"]["broker"]) / (cores * job_wall)

    def line(label, key):
        row = rows[key]
        return (f"| {label} | {spread(row['rate'])} | {max(row['rss']):,.0f} MB | "
                f"{events / med[key]['rate']:.1f} s | {med[key]['cpu']:.1f} s | "
                f"{med[key]['broker']:.1f} s |")
    return [
        "### Kafka end to end: the full job against the broker's limit",
        "",
        f"`{args_line}` on {machine()}; load average (1, 5, 15 min) before and after each run: "
        f"{' → '.join(loads)}. Apache Kafka 4.4 single node (`scripts/kafka`) on the same "
        f"machine, topic `bench` with 4 partitions holding {events:,} generated log lines "
        f"(`{' '.join(['$B'] + [('$A' if c == address else c) for c in gen_cmd[1:]])}`, "
        f"1% bad lines). Whole process, {runs} run(s), the readers in turns within each; "
        f"events/s min / median, the other columns medians (CPU = user + system seconds of "
        f"the process; broker CPU = the broker JVM's over the same interval):",
        "",
        "| reader | events/s (min / median) | peak RSS (max) | wall | CPU | broker CPU |",
        "|---|---:|---:|---:|---:|---:|",
        line("plain consumer, `logflow bench-read -w 2` (the broker's limit)", "read"),
        line("full log-analysis job, `-w 2`, results to Kafka", "job"),
        line("the same job with librdkafka's default prefetch (64 MiB per partition, 1 s "
             "backoff)", "big"),
        line("the same job over the same lines from a file (`--input`, no Kafka)", "file"),
        "",
        f"Job / plain consumer (medians): **{ratio:.0%}**; job from Kafka / job from the file: "
        f"{med['job']['rate'] / med['file']['rate']:.0%}.",
        "",
        f"What this machine allows: the job from Kafka does the file job's work "
        f"({med['file']['cpu']:.1f} s CPU) and a consumer's ({med['read']['cpu']:.1f} s), while the "
        f"broker takes {med['job']['broker']:.1f} s CPU on the same {cores} cores: with every core "
        f"busy all the time it cannot take less than {floor_s:.1f} s, **{bound:.0%}** of the file "
        f"rate. It took {job_wall:.1f} s and {med['job']['cpu']:.1f} s CPU "
        f"({med['job']['cpu'] - med['file']['cpu'] - med['read']['cpu']:+.1f} s beyond its two "
        f"parts); with the broker, its cores were busy {busy:.0%} of that time.",
        "",
        "Prefetch: librdkafka queues up to `queued.max.messages.kbytes` per partition ahead of "
        "the reader (64 MiB by default) and postpones a full partition's next fetch by "
        "`fetch.queue.backoff.ms` (1 s). The Kafka source, and so `bench-read`, sets 2 MiB and "
        "10 ms unless the spec or `LOGFLOW_KAFKA_*` variables say otherwise "
        "(`kafka::source::CONSUMER_DEFAULTS`); the third row is the job with "
        "`LOGFLOW_KAFKA_QUEUED_MAX_MESSAGES_KBYTES=65536 LOGFLOW_KAFKA_FETCH_QUEUE_BACKOFF_MS=1000`, "
        "in the same runs.",
        "",
        "Commands (`B=target/release/logflow`, broker at `$A`):",
        "",
        "```sh",
        " ".join(["$B"] + [("$A" if c == address else c) for c in read_cmd[1:]]),
        " ".join(["$B"] + [("$A" if c == address else c) for c in job_cmd[1:]]),
        " ".join(["$B"] + [os.path.relpath(c, ROOT) if c.startswith(ROOT) else c
                           for c in file_cmd[1:]]),
        "```",
    ]


class ResultTimes:
    """Consumes the latency job's output topics from their current end, noting for every
    record the wall-clock time it was read and its window's end."""

    def __init__(self, address):
        self.c = Consumer({"bootstrap.servers": address, "group.id": "bench-latency-probe",
                           "enable.auto.commit": False, "fetch.wait.max.ms": 10,
                           "isolation.level": "read_uncommitted"})
        ends = []
        for t in LATENCY_TOPICS:
            _, high = self.c.get_watermark_offsets(TopicPartition(t, 0), timeout=30)
            ends.append(TopicPartition(t, 0, high))
        self.c.assign(ends)
        self.rows = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            m = self.c.poll(0.05)
            if m is None or m.error():
                continue
            seen = time.time()
            v = json.loads(m.value())
            self.rows.append((m.topic(), iso_seconds(v["window_end"]), seen))

    def stop(self):
        self._stop.set()
        self._thread.join()
        self.c.close()
        return self.rows


def iso_seconds(s):
    """`2026-12-01T05:27:20Z` (as logflow writes window bounds) -> epoch seconds."""
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def percentile(values, q):
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def latency_run(address, rate, seconds):
    probe = ResultTimes(address)
    job = subprocess.Popen([BIN, "run", LATENCY_SPEC, "--brokers", address, "-w", "2", "--quiet"],
                           cwd=ROOT, stderr=subprocess.PIPE, text=True)
    # Wait until both workers have their partitions assigned (start = latest).
    assigned = 0
    while assigned < 2:
        line = job.stderr.readline()
        if not line:
            sys.exit(f"the latency job exited early (status {job.wait()})")
        assigned += "reads bench-latency partitions" in line
    threading.Thread(target=job.stderr.read, daemon=True).start()
    time.sleep(2)
    t0 = time.time()
    gen = subprocess.run([BIN, "gen", "--brokers", address, "--topic", "bench-latency",
                          "--events", str(int(rate * seconds)), "--rate", str(rate),
                          "--event-rate", str(rate), "--start", "now", "--disorder", "0s",
                          "--no-incidents", "--bad-fraction", "0"],
                         cwd=ROOT, capture_output=True, text=True)
    if gen.returncode != 0:
        sys.exit(f"gen failed: {gen.stderr}")
    t1 = time.time()
    achieved = gen.stderr.strip().splitlines()[-1]
    time.sleep(3)
    job.send_signal(signal.SIGTERM)
    try:
        job.wait(timeout=30)
    except subprocess.TimeoutExpired:
        job.kill()
        job.wait()
    rows = probe.stop()
    lat = [seen - end for _, end, seen in rows if t0 + WARMUP_S <= end <= t1 - 1.0]
    if not lat:
        sys.exit(f"no results read in the measured interval ({len(rows)} in all)")
    windows = {end for _, end, _ in rows if t0 + WARMUP_S <= end <= t1 - 1.0}
    return lat, len(windows), achieved


def latency(address, rate, seconds, runs):
    p50s, p99s, maxes = [], [], []
    loads = [load()]
    table = []
    for r in range(runs):
        lat, windows, achieved = latency_run(address, rate, seconds)
        p50, p99, mx = percentile(lat, 0.5), percentile(lat, 0.99), max(lat)
        p50s.append(p50)
        p99s.append(p99)
        maxes.append(mx)
        loads.append(load())
        m = re.search(r"\(([\d.]+)/s\)", achieved)
        produced = f"producer kept {float(m.group(1)):,.0f} events/s" if m else achieved
        log(f"latency run {r + 1}: {len(lat)} results over {windows} windows: "
            f"p50 {p50:.3f} s, p99 {p99:.3f} s, max {mx:.3f} s ({produced})")
        table.append(f"| {r + 1} | {len(lat):,} | {windows} | {p50 * 1000:,.0f} ms | "
                     f"{p99 * 1000:,.0f} ms | {mx * 1000:,.0f} ms | {produced} |")
    return [
        "",
        "#### Latency: from a window's end to its results being readable",
        "",
        f"At a fixed {rate:,.0f} events/s (below saturation), {seconds} s per run, `-w 2`: "
        f"`{LATENCY_SPEC}` (response_time, error_rate and system_health on 1 s windows, "
        f"watermark delay 0) reads topic `bench-latency` (4 partitions) from the end; "
        f"`logflow gen --start now --rate {rate:g} --event-rate {rate:g} --disorder 0s` "
        f"stamps each event with the wall-clock time it is produced, so a window's end is when "
        f"its last event could have been produced and the window closes then. A consumer "
        f"that is not logflow (confluent-kafka) notes when each result record is readable on "
        f"the output topics; latency = that time - window end (so it includes the job's "
        f"consumer fetch, the watermark step, the window emission, the producer's "
        f"`linger.ms` = 20 and the reader's fetch). The first {WARMUP_S:g} s and the last "
        f"second are left out. Load before and after each run: {' → '.join(loads)}.",
        "",
        "| run | results | windows | p50 | p99 | max | producer |",
        "|---:|---:|---:|---:|---:|---:|---|",
        *table,
        "",
        f"Median over runs: p50 **{statistics.median(p50s) * 1000:,.0f} ms**, "
        f"p99 **{statistics.median(p99s) * 1000:,.0f} ms** after the window closes.",
    ]


def main():
    ap = argparse.ArgumentParser(prog="scripts/bench kafka")
    ap.add_argument("--events", type=int, default=2_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rate", type=float, default=20_000)
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--port", type=int,
                    default=int(os.environ.get("LOGFLOW_BENCH_KAFKA_PORT", "19592")))
    a = ap.parse_args()
    args_line = (f"scripts/bench kafka --events {a.events} --runs {a.runs} --rate {a.rate:g} "
                 f"--seconds {a.seconds}")
    state = os.path.join(ROOT, "target", "bench-kafka")
    broker(state, "down", "--wipe")
    address = broker(state, "up", "--port", str(a.port))
    log(f"broker at {address}")
    try:
        create_topics(address, [("bench", 4), ("bench-latency", 4)])
        # Every output, dead-letter, late and alerts topic the two specs write, as a user
        # creates them.
        for spec in ["dataflows/log-analysis.toml", LATENCY_SPEC]:
            subprocess.run([BIN, "topics", "create", spec, "--brokers", address], cwd=ROOT,
                           check=True, capture_output=True)
        lines = throughput(address, state, a.events, a.runs, args_line)
        lines += latency(address, a.rate, a.seconds, a.runs)
    finally:
        broker(state, "down", "--wipe")
    write_section("kafka", lines)


if __name__ == "__main__":
    main()
