#!/usr/bin/env python3
"""What the issue-28 analytics cost, each measured against the same job without it in one run
(the two configurations in turns, so that load on the machine falls on both alike):

- the log-analysis job with its p50/p95/p99 response-time columns (one DDSketch per service
  and minute, and their gauges) against the job with those three columns removed;
- the user-events job with its `user_sessions` analysis (session windows, 10-minute gap)
  against the job without it.

Whole process over a generated file, JSONL results; events/s (median), CPU seconds (median)
and peak RSS; writes its section of BENCHMARKS.md.

    scripts/bench analytics [--events 1000000] [--runs 3] [--workers 1]
"""
import argparse
import os
import re
import shutil
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_report import (BIN, ROOT, WORK, cpu_of, gen_file, load, log, machine,  # noqa: E402
                          timed, write_section)

PERCENTILES = ("p50_response_time", "p95_response_time", "p99_response_time")


def without_percentiles(text):
    """log-analysis.toml without its three percentile columns and their gauges."""
    lines = [l for l in text.splitlines()
             if not any(f"as {p}" in l for p in PERCENTILES)]
    out = "\n".join(lines) + "\n"
    for p in PERCENTILES:
        out = out.replace(f', "{p}"', "")
    if any(p in out for p in PERCENTILES) or out == text:
        sys.exit("log-analysis.toml changed: the percentile columns were not found as expected")
    return out


def without_sessions(text):
    """user-events.toml without its `user_sessions` analysis."""
    blocks = text.split("[[analysis]]")
    kept = [b for b in blocks if 'name = "user_sessions"' not in b]
    if len(kept) != len(blocks) - 1:
        sys.exit("user-events.toml changed: no single `user_sessions` analysis")
    return "[[analysis]]".join(kept)


def run(spec, data, workers):
    """(wall s, CPU s, peak RSS MB)."""
    out = os.path.join(WORK, "analytics-out")
    shutil.rmtree(out, ignore_errors=True)
    wall, rss, p = timed([BIN, "run", spec, "--input", data, "--output-dir", out,
                          "-w", str(workers)])
    return wall, cpu_of(p.stderr), rss


def compare(name, spec, variant_text, data, events, runs, workers):
    """Runs the spec as shipped and the variant in turns; returns the table rows."""
    variant = os.path.join(WORK, f"analytics-{name}.toml")
    with open(variant, "w") as f:
        f.write(variant_text)
    results = {"with": [], "without": []}
    for r in range(runs):
        for label, s in (("with", spec), ("without", variant)):
            res = run(s, data, workers)
            results[label].append(res)
            log(f"run {r + 1} {name} {label}: {res[0]:.2f} s, {res[1]:.2f} CPU s, {res[2]:.0f} MB")
    med = {k: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v),
               max(x[2] for x in v)) for k, v in results.items()}
    return [
        (label, events / med[label][0], med[label][1], med[label][2],
         med[label][0] / med["without"][0], med[label][1] / med["without"][1])
        for label in ("without", "with")
    ]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workers", type=int, default=1)
    a = ap.parse_args()
    os.makedirs(WORK, exist_ok=True)
    load_at_start = load()
    logs_spec = os.path.join(ROOT, "dataflows", "log-analysis.toml")
    events_spec = os.path.join(ROOT, "dataflows", "user-events.toml")
    parts = [
        ("log-analysis", "p50/p95/p99 response time per service", logs_spec,
         without_percentiles(open(logs_spec).read()), gen_file(a.events)),
        ("user-events", "`user_sessions` (session windows, 10 min gap, per user)", events_spec,
         without_sessions(open(events_spec).read()), gen_file(a.events, "user-events")),
    ]
    lines = [
        "### What percentiles and session windows cost",
        "",
        f"`scripts/bench analytics --events {a.events} --runs {a.runs} --workers {a.workers}` "
        f"on {machine()}; load average at the start {load_at_start}. Each job over {a.events:,} "
        f"generated events (`-w {a.workers}`, JSONL files), as shipped and without the analysis "
        "named, the two in turns within each run; medians of wall and CPU time, the largest "
        "peak RSS.",
        "",
        "| job | analysis | | events/s | CPU | vs. without (wall / CPU) | peak RSS |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for job, what, spec, variant, data in parts:
        for label, rate, cpu_s, rss, rel_wall, rel_cpu in compare(
                job, spec, variant, data, a.events, a.runs, a.workers):
            lines.append(f"| {job} | {what} | {label} | {rate:,.0f} | {cpu_s:.2f} s | "
                         f"{rel_wall:.2f}x / {rel_cpu:.2f}x | {rss:.0f} MB |")
    write_section("analytics", lines)


if __name__ == "__main__":
    main()
