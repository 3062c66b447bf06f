"""scripts/bench spark --kafka: logflow against Spark Structured Streaming, both reading the same
Kafka topic, in turns within one run. Run through scripts/bench (which builds logflow and
supplies the venv python with confluent-kafka); writes the `spark-kafka` section of
BENCHMARKS.md.

    scripts/bench spark --kafka [--events 1000000] [--runs 3] [--spark-runs 1] [--port 19592]

A broker of this script's own (`scripts/kafka`, state in target/bench-spark-kafka, wiped at
start and stopped at the end) gets topic `bench` (4 partitions) and `--events` generated log
lines (`logflow gen --brokers`, as scripts/bench_kafka.py produces them). Turn i then runs
logflow if i <= --runs and Spark if i <= --spark-runs (one Spark run is minutes):

- logflow: `run dataflows/log-analysis.toml --brokers A --topic bench --stop-at-end -w 2`, all
  11 analyses, results produced to Kafka;
- Spark: scripts/spark/log_analysis.py over `kafka://A/bench` (Spark's Kafka source,
  startingOffsets earliest, trigger availableNow, local[2]), the same queries as in file mode;
  the jars of spark-sql-kafka come from Maven Central once (scripts/spark/kafka-pom.xml, cached
  in .tools/spark-kafka) and go to Spark as `spark.jars`.

Both rates are whole process (for Spark, JVM and session start included; its queries-only time
is reported too). CPU: logflow's from /usr/bin/time; Spark's is the sum over its process tree
(Python driver and JVM) and its peak RSS the largest summed RSS, both sampled every 100 ms.
Broker CPU is the broker JVM's over each engine's run.

Equal work: Spark writes `error_rate` to its memory sink instead of noop, and its rows are
checked against the ones logflow produced to topic `error_rate` in the first turn. Spark's
append mode emits a window only once the watermark passed it, so the last windows of the topic
(within the 5-minute delay of its newest event) exist only on logflow's side; every other row
must be equal (window, service, total_requests, error_count), else the script fails.
"""

import fcntl
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_kafka import broker, broker_pid, create_topics  # noqa: E402
from bench_report import (BIN, ROOT, accounting_read, cpu_of, cpu_of_pid, load, log,  # noqa: E402
                          machine, spread, timed, write_section)
from bench_spark import (CHECKED, PYSPARK_VERSION, SPARK_JOB, check_error_rate,  # noqa: E402
                         refused_lines, run_spark, spark_python)

from confluent_kafka import Consumer, TopicPartition  # noqa: E402

POM = os.path.join(ROOT, "scripts", "spark", "kafka-pom.xml")
JARS = os.path.join(ROOT, ".tools", "spark-kafka", PYSPARK_VERSION, "lib")
TOPIC = "bench"
JOB = "dataflows/log-analysis.toml"


def spark_kafka_jars():
    """The jars of Spark's Kafka source, resolved once with Maven into JARS (as scripts/kafka
    caches the broker's); a `.complete` marker says the set is whole."""
    done = os.path.join(JARS, ".complete")
    if not os.path.exists(done):
        os.makedirs(os.path.dirname(JARS), exist_ok=True)
        with open(os.path.join(os.path.dirname(JARS), ".install.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not os.path.exists(done):
                if shutil.which("mvn") is None:
                    sys.exit("mvn not found: it is needed once to fetch spark-sql-kafka's jars")
                log(f"installing spark-sql-kafka {PYSPARK_VERSION} jars into {JARS} "
                    "(Maven Central, once)")
                tmp = f"{JARS}.tmp.{os.getpid()}"
                shutil.rmtree(tmp, ignore_errors=True)
                p = subprocess.run(["mvn", "-B", "--no-transfer-progress", "-Dstyle.color=never",
                                    "-f", POM, f"-Dspark.version={PYSPARK_VERSION}",
                                    "dependency:copy-dependencies", f"-DoutputDirectory={tmp}",
                                    "-DincludeScope=runtime"], capture_output=True, text=True)
                want = f"spark-sql-kafka-0-10_2.13-{PYSPARK_VERSION}.jar"
                if p.returncode != 0 or not os.path.exists(os.path.join(tmp, want)):
                    shutil.rmtree(tmp, ignore_errors=True)
                    errors = [l for l in p.stdout.splitlines() if "ERROR" in l] or \
                        p.stdout.splitlines()
                    sys.exit("mvn could not resolve spark-sql-kafka:\n" + "\n".join(errors[-30:]))
                shutil.rmtree(JARS, ignore_errors=True)
                os.rename(tmp, JARS)
                open(done, "w").close()
    jars = sorted(os.path.join(JARS, j) for j in os.listdir(JARS) if j.endswith(".jar"))
    return jars


def end_offset(address, topic):
    c = Consumer({"bootstrap.servers": address, "group.id": "bench-spark-kafka-offsets"})
    try:
        return c.get_watermark_offsets(TopicPartition(topic, 0), timeout=30)[1]
    finally:
        c.close()


def read_results(address, topic, lo, hi):
    """The JSON records of partition 0 of `topic` at offsets [lo, hi) (read_committed, so
    transaction markers in that range are skipped)."""
    c = Consumer({"bootstrap.servers": address, "group.id": "bench-spark-kafka-check",
                  "enable.auto.commit": False, "isolation.level": "read_committed"})
    rows = []
    try:
        c.assign([TopicPartition(topic, 0, lo)])
        deadline = time.monotonic() + 60
        while c.position([TopicPartition(topic, 0)])[0].offset < hi:
            if time.monotonic() > deadline:
                sys.exit(f"reading {topic} [{lo}, {hi}) took over 60 s ({len(rows)} records)")
            m = c.poll(0.5)
            if m is None or m.error():
                continue
            if m.offset() < hi:
                rows.append(json.loads(m.value()))
    finally:
        c.close()
    return rows


def main(a):
    runs = a.runs
    spark_runs = a.spark_runs
    if runs < 1 or spark_runs < 1:
        sys.exit("--runs and --spark-runs must both be at least 1")
    py = spark_python()
    jars = spark_kafka_jars()
    state = os.path.join(ROOT, "target", "bench-spark-kafka")
    broker(state, "down", "--wipe")
    address = broker(state, "up", "--port", str(a.port))
    log(f"broker at {address}")
    try:
        create_topics(address, [(TOPIC, 4)])
        # The job's own list of its output, alert, dead-letter and late topics.
        timed([BIN, "topics", "create", JOB, "--brokers", address])
        lines = turns(a, runs, spark_runs, py, jars, address, state)
    finally:
        broker(state, "down", "--wipe")
    write_section("spark-kafka", lines)


def turns(a, runs, spark_runs, py, jars, address, state):
    events = a.events
    gen_cmd = [BIN, "gen", "--brokers", address, "--topic", TOPIC, "--events", str(events)]
    log(f"producing {events:,} events into {TOPIC} (4 partitions)")
    dt, _, _ = timed(gen_cmd)
    log(f"  produced in {dt:.1f} s ({events / dt:,.0f} events/s)")
    job_cmd = [BIN, "run", JOB, "--brokers", address, "--topic", TOPIC,
               "--stop-at-end", "-w", "2", "--quiet"]
    source = f"kafka://{address}/{TOPIC}"
    spark_args = ["--jars", ",".join(jars), "--collect", CHECKED]
    pid = broker_pid(state)
    lf = {"rate": [], "rss": [], "cpu": [], "broker": []}
    sp = {"rate": [], "query_rate": [], "rss": [], "cpu": [], "broker": []}
    loads = [load()]
    checked = result = None
    for r in range(max(runs, spark_runs)):
        if r < runs:
            lo = end_offset(address, CHECKED)
            b0 = cpu_of_pid(pid)
            dt, rss, p = timed(job_cmd)
            lf["broker"].append(cpu_of_pid(pid) - b0)
            got = accounting_read(p.stderr)
            assert got == events, f"logflow read {got} records, expected {events}"
            lf["rate"].append(events / dt)
            lf["rss"].append(rss)
            lf["cpu"].append(cpu_of(p.stderr))
            log(f"turn {r + 1}: logflow {events / dt:,.0f} events/s, CPU {lf['cpu'][-1]:.1f} s, "
                f"peak RSS {rss:.0f} MB, broker CPU {lf['broker'][-1]:.1f} s, wall {dt:.1f} s")
            if r == 0:
                logflow_rows = read_results(address, CHECKED, lo, end_offset(address, CHECKED))
        if r < spark_runs:
            b0 = cpu_of_pid(pid)
            dt, qs, rss, cpu, result = run_spark(py, source, events, spark_args)
            sp["broker"].append(cpu_of_pid(pid) - b0)
            sp["rate"].append(events / dt)
            sp["query_rate"].append(events / qs)
            sp["rss"].append(rss)
            sp["cpu"].append(cpu)
            log(f"turn {r + 1}: Spark {events / dt:,.0f} events/s whole process "
                f"({events / qs:,.0f} queries only), CPU {cpu:.1f} s, peak RSS {rss:.0f} MB, "
                f"broker CPU {sp['broker'][-1]:.1f} s, wall {dt:.1f} s")
            if checked is None:
                checked = check_error_rate(logflow_rows, result["collected"][CHECKED])
                log(checked)
        loads.append(load())
    med_lf = {k: statistics.median(v) for k, v in lf.items()}
    med_sp = {k: statistics.median(v) for k, v in sp.items()}
    queries = ", ".join(f"`{q}`" for q in result["input_rows"])
    spark_cmd = [".tools/spark-venv/bin/python", SPARK_JOB, "kafka://$A/bench",
                 "target/bench/spark-checkpoints", "--jars", "JARS", "--collect", CHECKED]
    return [
        "### Spark Structured Streaming from Kafka, same analyses, same topic",
        "",
        f"`scripts/bench spark --kafka --events {events} --runs {runs} --spark-runs "
        f"{spark_runs}` on {machine()}; load average (1, 5, 15 min) before and after each "
        f"turn: {' → '.join(loads)} (the machine is shared; the load includes other work). "
        f"Apache Kafka 4.4 single node (`scripts/kafka`) on the same machine, topic `bench` "
        f"with 4 partitions holding {events:,} generated log lines (`$B gen --brokers $A "
        f"--topic bench --events {events}`, 1% bad lines), read in full by each engine in "
        f"turns. Whole process, events/s min / median, the other columns medians (CPU = user "
        f"+ system seconds of the engine's processes; broker CPU = the broker JVM's over the "
        f"same interval):",
        "",
        "| engine | runs | events/s (min / median) | CPU | peak RSS (max) | broker CPU |",
        "|---|---:|---:|---:|---:|---:|",
        f"| logflow `-w 2`, all 11 analyses, `--stop-at-end`, results produced to Kafka | "
        f"{runs} | {spread(lf['rate'])} | {med_lf['cpu']:.1f} s | {max(lf['rss']):,.0f} MB | "
        f"{med_lf['broker']:.1f} s |",
        f"| Spark {PYSPARK_VERSION} local[2], Kafka source, the {len(result['input_rows'])} "
        f"analyses it accepts, availableNow, noop sink (`{CHECKED}`: memory sink) | "
        f"{spark_runs} | {spread(sp['rate'])} | {med_sp['cpu']:.1f} s | "
        f"{max(sp['rss']):,.0f} MB | {med_sp['broker']:.1f} s |",
        "",
        f"logflow / Spark (medians): **{med_lf['rate'] / med_sp['rate']:,.0f}x** the events/s, "
        f"{med_sp['cpu'] / med_lf['cpu']:,.0f}x less CPU, "
        f"{max(sp['rss']) / max(lf['rss']):,.0f}x less memory. Spark's queries alone (from the "
        f"first query's start to the last one's end, leaving out the JVM and session start): "
        f"{spread(sp['query_rate'])} events/s, so "
        f"{med_lf['rate'] / med_sp['query_rate']:,.0f}x.",
        "",
        checked,
        "",
        f"Spark ran {queries} as streaming queries at once, each with its own Kafka consumer "
        f"reading the whole topic (so the broker serves it {len(result['input_rows'])} times), "
        f"with `spark.sql.shuffle.partitions=2`; logflow reads it once and computes every "
        f"analysis in one pass. Spark's Kafka source: spark-sql-kafka-0-10 {PYSPARK_VERSION} "
        f"(with kafka-clients and commons-pool2, from Maven Central by "
        f"`scripts/spark/kafka-pom.xml`, as `spark.jars`); each record's value is a line, "
        f"parsed and checked as the file mode's lines (`parse` in `{SPARK_JOB}`: what logflow "
        f"dead-letters, Spark drops), and from there the queries are the file mode's code. "
        f"Refused, as in file mode:",
        "",
        *refused_lines(result),
        "",
        "Commands (`B=target/release/logflow`, broker at `$A`, `JARS` the four jars in "
        f"`.tools/spark-kafka/{PYSPARK_VERSION}/lib`, comma-separated):",
        "",
        "```sh",
        " ".join(["$B"] + [("$A" if c == address else c) for c in job_cmd[1:]]),
        " ".join(spark_cmd),
        "```",
    ]
