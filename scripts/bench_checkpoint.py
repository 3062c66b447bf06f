#!/usr/bin/env python3
"""What checkpoints cost: the full log-analysis job over a generated file, -w 1, without
checkpoints and with them at each `interval` setting, the configurations in turns within each
run so that load on the machine falls on all of them alike. Reports wall time and CPU seconds
(median), how many checkpoints completed and the effective interval (wall time / checkpoints),
and the size of one checkpoint; writes its section of BENCHMARKS.md.

Barriers are placed in event time, `interval` apart at the rate event time has been moving, so
over a file read much faster than real time the effective interval is not the setting: the
table reports both.

    scripts/bench checkpoint [--events 3000000] [--runs 3] [--intervals 10s,1s] [--bin PATH]
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


def dir_size(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def run(bin_, data, interval):
    """(wall s, CPU s, peak RSS MB, checkpoints completed, largest checkpoint in bytes)."""
    out = os.path.join(WORK, "ckpt-out")
    ckpt = os.path.join(WORK, "ckpt-dir")
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(ckpt, ignore_errors=True)
    spec = os.path.join(ROOT, "dataflows", "log-analysis.toml")
    if interval:
        text = open(spec).read() + f'\n[checkpoint]\ndir = "{ckpt}"\ninterval = "{interval}"\n'
        spec = os.path.join(WORK, "ckpt-job.toml")
        open(spec, "w").write(text)
    wall, rss, p = timed([bin_, "run", spec, "--input", data, "--output-dir", out, "-w", "1"])
    m = re.search(r"(\d+) checkpoints completed, the last in ([\d.]+) ms", p.stderr)
    count = int(m.group(1)) if m else 0
    # The largest complete checkpoint kept (the last ones of a run hold little state).
    size = 0
    if interval and os.path.isdir(ckpt):
        size = max((dir_size(os.path.join(ckpt, e)) for e in os.listdir(ckpt)
                    if e.startswith("epoch-")), default=0)
    return wall, cpu_of(p.stderr), rss, count, size


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=3_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--intervals", default="10s,1s")
    ap.add_argument("--bin", help="measure this binary (default: this checkout's build)")
    a = ap.parse_args()
    bin_ = os.path.abspath(a.bin) if a.bin else BIN
    data = gen_file(a.events, bin_=bin_)
    configs = [None] + a.intervals.split(",")
    results = {c: [] for c in configs}
    load_at_start = load()
    for r in range(a.runs):
        for c in configs:
            res = run(bin_, data, c)
            results[c].append(res)
            log(f"run {r + 1} checkpoints {c or 'off'}: {res[0]:.2f} s, {res[1]:.2f} CPU s, "
                f"{res[3]} checkpoints, largest {res[4] / 2**20:.1f} MiB")
    base_wall = statistics.median(x[0] for x in results[None])
    base_cpu = statistics.median(x[1] for x in results[None])
    command = f"scripts/bench checkpoint --events {a.events} --runs {a.runs} --intervals {a.intervals}"
    if a.bin:
        command += f" --bin {os.path.relpath(bin_, ROOT)}"
    lines = [
        "### What checkpoints cost",
        "",
        f"`{command}` "
        f"on {machine()}; load average at the start {load_at_start}. The full log-analysis job "
        f"over {a.events:,} generated events, `-w 1`, JSONL files; the configurations in turns "
        "within each run. Medians; a checkpoint stops the job at a barrier while every operator "
        "serializes its state and each part is written and fsynced. Barriers are placed in event "
        "time (`interval` apart at the rate event time has been moving), so over a file read far "
        "faster than real time the effective interval (wall / checkpoints taken) is not the "
        "setting.",
        "",
        "| `interval` setting | wall | CPU | vs. none (wall / CPU) | checkpoints taken | effective interval | largest checkpoint | peak RSS |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in configs:
        xs = results[c]
        wall = statistics.median(x[0] for x in xs)
        cpu_s = statistics.median(x[1] for x in xs)
        count = statistics.median(x[3] for x in xs)
        size = max(x[4] for x in xs)
        rss = max(x[2] for x in xs)
        effective = f"{wall / count:.2f} s" if count else "–"
        lines.append(
            f"| {c or 'no checkpoints'} | {wall:.2f} s | {cpu_s:.2f} s | "
            f"{wall / base_wall:.2f}x / {cpu_s / base_cpu:.2f}x | {count:.0f} | {effective} | "
            f"{size / 2**20:.1f} MiB | {rss:.0f} MB |")
    write_section("checkpoint", lines)


if __name__ == "__main__":
    main()
