#!/usr/bin/env python3
"""Sliding windows against tumbling ones (issue 30): one analysis (count, avg and
count_distinct per service) over the same generated log file with tumbling 1m, 1m/10s,
10m/10s, 1h/10s and 1h/1m windows, in turns within each run so that load on the machine falls
on all alike; whole process, JSONL results; events/s (median), CPU seconds (median) and peak
RSS (largest), each against tumbling 1m. With `--before BIN`, the same runs with another build
too (e.g. one without stream slicing), so before and after come from one run.

    scripts/bench sliding [--events 1000000] [--runs 3] [--workers 2] [--before BIN]
"""
import argparse
import os
import shutil
import statistics

import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_report import (BIN, WORK, cpu_of, gen_file, load, log, machine,  # noqa: E402
                          timed, write_section)

WINDOWS = [
    ("tumbling 1m", 'size = "1m"'),
    ("1m sliding 10s", 'size = "1m", slide = "10s"'),
    ("10m sliding 10s", 'size = "10m", slide = "10s"'),
    ("1h sliding 10s", 'size = "1h", slide = "10s"'),
    ("1h sliding 1m", 'size = "1h", slide = "1m"'),
]


def spec(window):
    return f"""name = "bench-sliding"
[source]
kind = "file"
path = "logs.jsonl"
format = "json"

[watermark]
delay = "5m"

[[analysis]]
name = "per_service"
window = {{ {window} }}
group_by = ["service"]
select = [
  "count() as requests",
  "avg(response_time) as avg_response_time",
  "count_distinct(user_id) as users",
]
"""


def run(bin_, spec_path, data, workers):
    """(wall s, CPU s, peak RSS MB)."""
    out = os.path.join(WORK, "sliding-out")
    shutil.rmtree(out, ignore_errors=True)
    wall, rss, p = timed([bin_, "run", spec_path, "--input", data, "--output-dir", out,
                          "-w", str(workers), "--quiet"])
    return wall, cpu_of(p.stderr), rss


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--before", help="another build to run alike (before the change)")
    a = ap.parse_args()
    os.makedirs(WORK, exist_ok=True)
    load_at_start = load()
    data = gen_file(a.events)
    builds = [("this", BIN)] + ([("before", a.before)] if a.before else [])
    specs = []
    for i, (name, window) in enumerate(WINDOWS):
        path = os.path.join(WORK, f"sliding-{i}.toml")
        with open(path, "w") as f:
            f.write(spec(window))
        specs.append((name, path))
    results = {(b, n): [] for b, _ in builds for n, _ in specs}
    for r in range(a.runs):
        for name, path in specs:
            for build, bin_ in builds:
                res = run(bin_, path, data, a.workers)
                results[(build, name)].append(res)
                log(f"run {r + 1} {build} {name}: {a.events / res[0]:,.0f} events/s, "
                    f"{res[1]:.2f} CPU s, {res[2]:.0f} MB")
    med = {k: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v),
               max(x[2] for x in v)) for k, v in results.items()}
    lines = [
        "### Sliding windows from slices",
        "",
        f"`scripts/bench sliding --events {a.events} --runs {a.runs} --workers {a.workers}"
        + (f" --before {a.before}" if a.before else "")
        + f"` on {machine()}; load average at the start {load_at_start}. "
        f"One analysis (`count()`, `avg(response_time)`, `count_distinct(user_id)` per service) "
        f"over {a.events:,} generated log events (`logflow gen`), `-w {a.workers}`, JSONL "
        "results, whole process; every configuration in turns within each run; medians of wall "
        "and CPU time, the largest peak RSS; ratios against tumbling 1m of the same build.",
        "",
        "| build | window | events/s | CPU | vs. tumbling (events/s) | peak RSS | vs. tumbling (RSS) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for build, _ in builds:
        base = med[(build, WINDOWS[0][0])]
        for name, _ in specs:
            wall, cpu_s, rss = med[(build, name)]
            lines.append(f"| {build} | {name} | {a.events / wall:,.0f} | {cpu_s:.2f} s | "
                         f"{base[0] / wall:.2f}x | {rss:.0f} MB | {rss / base[2]:.2f}x |")
    write_section("sliding", lines)


if __name__ == "__main__":
    main()
