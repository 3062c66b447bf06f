"""scripts/bench spark: logflow against Spark Structured Streaming on the same file, in the same
run. Run through scripts/bench (which builds logflow); writes the `spark` section of
BENCHMARKS.md.

    scripts/bench spark [--events 1000000] [--runs 3] [--spark-runs 1]
    scripts/bench spark --kafka [--events 1000000] [--runs 3] [--spark-runs 1] [--port P]

`--kafka` (scripts/bench_spark_kafka.py) has both engines read the events from a topic of a
local broker instead, in turns, and writes the `spark-kafka` section.

The file is the generated JSONL file of the file-mode part (target/bench/logs-N.jsonl).
logflow: `run dataflows/log-analysis.toml --input FILE --output-dir DIR -w 2`, all 11 analyses,
results written. Spark: scripts/spark/log_analysis.py in a venv this script makes
(.tools/spark-venv, pyspark 4.0.1; Java 17), local[2], text file source over a directory
holding the same file, trigger availableNow, noop sink, every analysis Spark's streaming engine
accepts; its `error_rate` goes to the memory sink instead and is checked row for row against
logflow's (check_error_rate). Both rates are whole process (JVM start included for Spark;
its queries-only time is reported too). Spark's peak RSS is the sum over its process tree
(Python driver and JVM), sampled every 100 ms.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_report import (BIN, ROOT, WORK, PeakRss, accounting_read, gen_file, load, log,  # noqa: E402
                          machine, spread, timed, write_section)

PYSPARK_VERSION = "4.0.1"
VENV = os.path.join(ROOT, ".tools", "spark-venv")
SPARK_JOB = "scripts/spark/log_analysis.py"
# The analysis whose rows Spark collects and that are checked against logflow's.
CHECKED = "error_rate"


def spark_python():
    """The venv's python, made (once) with pyspark installed."""
    py = os.path.join(VENV, "bin", "python")
    ok = os.path.exists(py) and subprocess.run(
        [py, "-c", f"import pyspark, sys; sys.exit(pyspark.__version__ != '{PYSPARK_VERSION}')"],
        capture_output=True).returncode == 0
    if not ok:
        log(f"installing pyspark {PYSPARK_VERSION} into {VENV} (once)")
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
        subprocess.run([py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        f"pyspark=={PYSPARK_VERSION}"], check=True)
    return py


def spark_input_dir(data, events):
    """The directory the file source reads: it holds (a hard link to) the generated file."""
    inp = os.path.join(WORK, f"spark-input-{events}")
    os.makedirs(inp, exist_ok=True)
    linked = os.path.join(inp, os.path.basename(data))
    if not os.path.exists(linked):
        os.link(data, linked)
    return inp


def run_spark(py, source, events, extra=()):
    """One Spark run of SPARK_JOB over `source` (its first argument): (wall seconds, queries
    seconds, peak RSS MB, CPU seconds of its process tree, its JSON result)."""
    ckpt = os.path.join(WORK, "spark-checkpoints")
    shutil.rmtree(ckpt, ignore_errors=True)
    spark_log = os.path.join(WORK, "spark.log")
    t0 = time.monotonic()
    with open(spark_log, "w") as err:
        p = subprocess.Popen([py, SPARK_JOB, source, ckpt, *extra], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=err, text=True)
        rss = PeakRss(p.pid)
        out, _ = p.communicate()
        peak = rss.stop()
    dt = time.monotonic() - t0
    if p.returncode != 0:
        sys.exit(f"Spark failed ({p.returncode}); see {spark_log}")
    result = json.loads(out.strip().splitlines()[-1])
    for name, rows in result["input_rows"].items():
        assert rows == events, f"Spark query {name} read {rows} rows, expected {events}"
    return dt, result["seconds"], peak, rss.cpu_s(), result


def epoch(s):
    """`2026-12-01T05:27:00Z` (as logflow writes window bounds) -> epoch seconds."""
    return int(datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp())


def check_error_rate(logflow_rows, spark_rows):
    """Compares the two engines' error_rate rows; exits on a difference. Returns a sentence for
    the section."""
    key = ("total_requests", "error_count")
    lf = {(epoch(r["window_start"]), r["service"]): tuple(r[k] for k in key)
          for r in logflow_rows}
    sp = {(r["window_start"], r["service"]): tuple(r[k] for k in key) for r in spark_rows}
    if len(lf) != len(logflow_rows) or len(sp) != len(spark_rows):
        sys.exit(f"{CHECKED}: a (window, service) twice: logflow {len(logflow_rows)} rows, "
                 f"{len(lf)} keys; Spark {len(spark_rows)} rows, {len(sp)} keys")
    if not sp:
        sys.exit(f"{CHECKED}: Spark emitted no rows")
    only_spark = sorted(set(sp) - set(lf), key=str)
    differ = sorted((k for k in set(sp) & set(lf) if sp[k] != lf[k]), key=str)
    last = max(w for w, _ in sp)
    early_missing = sorted((k for k in set(lf) - set(sp) if k[0] <= last), key=str)
    if only_spark or differ or early_missing:
        sys.exit(f"{CHECKED}: the engines disagree: {len(differ)} rows differ (first "
                 f"{[(k, lf[k], sp[k]) for k in differ[:3]]}), {len(only_spark)} only in Spark "
                 f"({only_spark[:3]}), {len(early_missing)} of logflow's windows up to Spark's "
                 f"last missing in Spark ({early_missing[:3]})")
    tail = len(lf) - len(sp)
    tail_minutes = len({w for w, _ in lf if w > last})
    return (f"`{CHECKED}` checked: Spark's {len(sp):,} rows (window, service, total_requests, "
            f"error_count) equal logflow's {len(sp):,} rows of the same windows; logflow has "
            f"{tail:,} more, in the last {tail_minutes} windows of the input, which Spark's "
            f"append mode leaves unemitted until a later event moves its watermark past them.")


def refused_lines(result):
    """What Spark's streaming engine refused, one Markdown item per query."""
    return [f"- `{name}`: " + (f"`` {err} ``" if err else "ran (not refused)")
            for name, err in result["refused"].items()]


def main():
    ap = argparse.ArgumentParser(prog="scripts/bench spark")
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--spark-runs", type=int, default=1)
    ap.add_argument("--kafka", action="store_true",
                    help="both engines read the events from a topic of a local broker")
    ap.add_argument("--port", type=int,
                    default=int(os.environ.get("LOGFLOW_BENCH_KAFKA_PORT", "19592")),
                    help="--kafka: the broker's port")
    a = ap.parse_args()
    if a.kafka:
        import bench_spark_kafka  # needs the venv's confluent-kafka (scripts/bench picks it)
        return bench_spark_kafka.main(a)
    data = gen_file(a.events)
    py = spark_python()
    out_dir = os.path.join(WORK, "out-spark-peer")
    cmd = [BIN, "run", "dataflows/log-analysis.toml", "--input", data, "--output-dir", out_dir,
           "-w", "2", "--quiet"]
    loads = [load()]
    lf_rates, lf_rss = [], []
    for r in range(a.runs):
        shutil.rmtree(out_dir, ignore_errors=True)
        dt, rss, p = timed(cmd)
        assert accounting_read(p.stderr) == a.events
        lf_rates.append(a.events / dt)
        lf_rss.append(rss)
        log(f"logflow run {r + 1}: {a.events / dt:,.0f} events/s, peak RSS {rss:.0f} MB")
    loads.append(load())
    sp_rates, sp_query_rates, sp_rss = [], [], []
    result = None
    with open(os.path.join(out_dir, f"{CHECKED}.jsonl")) as f:
        logflow_rows = [json.loads(line) for line in f]
    inp = spark_input_dir(data, a.events)
    checked = None
    for r in range(a.spark_runs):
        dt, qs, rss, _, result = run_spark(py, inp, a.events, ["--collect", CHECKED])
        if checked is None:
            checked = check_error_rate(logflow_rows, result["collected"][CHECKED])
            log(checked)
        sp_rates.append(a.events / dt)
        sp_query_rates.append(a.events / qs)
        sp_rss.append(rss)
        loads.append(load())
        log(f"Spark run {r + 1}: {a.events / dt:,.0f} events/s whole process "
            f"({a.events / qs:,.0f} events/s queries only), peak RSS {rss:.0f} MB")
    lf, sp = statistics.median(lf_rates), statistics.median(sp_rates)
    queries = ", ".join(f"`{q}`" for q in result["input_rows"])
    refused = refused_lines(result)
    size = os.path.getsize(data) / 2**20
    lines = [
        "### Spark Structured Streaming, same analyses, same file",
        "",
        f"`scripts/bench spark --events {a.events} --runs {a.runs} --spark-runs {a.spark_runs}` "
        f"on {machine()}; load average (1, 5, 15 min) before, between the parts and after: "
        f"{' → '.join(loads)}. Input: `{os.path.relpath(data, ROOT)}` ({a.events:,} generated "
        f"log lines, {size:,.0f} MiB), the file-mode part's file. Whole process, events/s "
        f"min / median:",
        "",
        "| engine | runs | events/s (min / median) | peak RSS (max) |",
        "|---|---:|---:|---:|",
        f"| logflow `-w 2`, all 11 analyses, results written as JSONL | {a.runs} | "
        f"{spread(lf_rates)} | {max(lf_rss):,.0f} MB |",
        f"| Spark {PYSPARK_VERSION} local[2], the {len(result['input_rows'])} analyses it "
        f"accepts, availableNow, noop sink (`{CHECKED}`: memory sink) | {a.spark_runs} | "
        f"{spread(sp_rates)} | "
        f"{max(sp_rss):,.0f} MB |",
        "",
        f"logflow / Spark (medians): **{lf / sp:,.0f}x**. Spark's queries alone (from the first "
        f"query's start to the last one's end, leaving out the JVM and session start): "
        f"{spread(sp_query_rates)} events/s, so {lf / statistics.median(sp_query_rates):,.0f}x.",
        "",
        checked,
        "",
        f"Spark ran {queries} as streaming queries at once, each over the file, with "
        f"`spark.sql.shuffle.partitions=2`; exact distinct counts are `size(collect_set(x))`. "
        f"What its streaming engine refuses (the exact first line of the error, from "
        f"`writeStream.start()`):",
        "",
        *refused,
        "",
        "So the detectors over previous windows (z-score over the previous 10 windows, lag) "
        "need a second, batch job in a Spark deployment; logflow runs them in the same "
        "streaming job.",
        "",
        "Commands:",
        "",
        "```sh",
        " ".join(["target/release/logflow"] + [os.path.relpath(c, ROOT) if c.startswith(ROOT)
                                                 else c for c in cmd[1:]]),
        f".tools/spark-venv/bin/python {SPARK_JOB} target/bench/spark-input-{a.events} "
        f"target/bench/spark-checkpoints --collect {CHECKED}",
        "```",
    ]
    write_section("spark", lines)


if __name__ == "__main__":
    main()
