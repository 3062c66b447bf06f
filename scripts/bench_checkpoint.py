#!/usr/bin/env python3
"""What checkpoints cost (issue 6): the full log-analysis job over a generated file, -w 1, without
checkpoints and with them at each interval, the configurations in turns within each run so that
load on the machine falls on all of them alike. Reports wall time and CPU seconds (median),
how many checkpoints completed, and the size of one checkpoint; writes its section of
BENCHMARKS.md.

    scripts/bench checkpoint [--events 3000000] [--runs 3] [--intervals 10s,1s]
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "logflow")
WORK = os.path.join(ROOT, "target", "bench")


def dir_size(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def run(data, interval):
    out = os.path.join(WORK, "ckpt-out")
    ckpt = os.path.join(WORK, "ckpt-dir")
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(ckpt, ignore_errors=True)
    spec = os.path.join(ROOT, "dataflows", "log-analysis.toml")
    if interval:
        text = open(spec).read() + f'\n[checkpoint]\ndir = "{ckpt}"\ninterval = "{interval}"\n'
        spec = os.path.join(WORK, "ckpt-job.toml")
        open(spec, "w").write(text)
    t0 = time.monotonic()
    p = subprocess.run(["/usr/bin/time", "-f", "maxrss_kb=%M cpu_s=%U %S", BIN, "run", spec,
                        "--input", data, "--output-dir", out, "-w", "1"],
                       capture_output=True, text=True, cwd=ROOT)
    wall = time.monotonic() - t0
    if p.returncode != 0:
        sys.exit(f"run failed:\n{p.stderr}")
    user, system = re.search(r"cpu_s=([\d.]+) ([\d.]+)", p.stderr).groups()
    rss = int(re.search(r"maxrss_kb=(\d+)", p.stderr).group(1)) / 1024
    m = re.search(r"(\d+) checkpoints completed, the last in ([\d.]+) ms", p.stderr)
    count = int(m.group(1)) if m else 0
    # The largest complete checkpoint kept (the last ones of a run hold little state).
    size = 0
    if interval and os.path.isdir(ckpt):
        size = max((dir_size(os.path.join(ckpt, e)) for e in os.listdir(ckpt)
                    if e.startswith("epoch-")), default=0)
    return wall, float(user) + float(system), rss, count, size


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=3_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--intervals", default="10s,1s")
    a = ap.parse_args()
    os.makedirs(WORK, exist_ok=True)
    data = os.path.join(WORK, f"logs-{a.events}.jsonl")
    if not os.path.exists(data):
        subprocess.run([BIN, "gen", "--events", str(a.events), "--output", data], check=True,
                       stderr=subprocess.DEVNULL)
    configs = [None] + a.intervals.split(",")
    results = {c: [] for c in configs}
    load = " ".join(open("/proc/loadavg").read().split()[:3])
    for r in range(a.runs):
        for c in configs:
            res = run(data, c)
            results[c].append(res)
            print(f"run {r + 1} checkpoints {c or 'off'}: {res[0]:.2f} s, {res[1]:.2f} CPU s, "
                  f"{res[3]} checkpoints, largest {res[4] / 2**20:.1f} MiB", file=sys.stderr)
    base_wall = statistics.median(x[0] for x in results[None])
    base_cpu = statistics.median(x[1] for x in results[None])
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=ROOT).stdout.strip()
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                if l.startswith("model name")), "?")
    lines = [
        "<!-- bench:checkpoint -->",
        "### What checkpoints cost",
        "",
        f"`scripts/bench checkpoint --events {a.events} --runs {a.runs} --intervals {a.intervals}` "
        f"on {os.cpu_count()} cores ({cpu}), {time.strftime('%Y-%m-%d', time.gmtime())}, commit "
        f"{commit}; load average at the start {load}. The full log-analysis job over "
        f"{a.events:,} generated events, `-w 1`, JSONL files; the configurations in turns within "
        "each run. Medians; a checkpoint stops the job at a barrier while every operator "
        "serializes its state and each part is written and fsynced.",
        "",
        "| checkpoints | wall | CPU | vs. none (wall / CPU) | checkpoints taken | largest checkpoint | peak RSS |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for c in configs:
        xs = results[c]
        wall = statistics.median(x[0] for x in xs)
        cpu_s = statistics.median(x[1] for x in xs)
        count = statistics.median(x[3] for x in xs)
        size = max(x[4] for x in xs)
        rss = max(x[2] for x in xs)
        lines.append(
            f"| {('every ' + c) if c else 'none'} | {wall:.2f} s | {cpu_s:.2f} s | "
            f"{wall / base_wall:.2f}x / {cpu_s / base_cpu:.2f}x | {count:.0f} | "
            f"{size / 2**20:.1f} MiB | {rss:.0f} MB |")
    lines.append("<!-- /bench:checkpoint -->")
    section = "\n".join(lines)
    path = os.path.join(ROOT, "BENCHMARKS.md")
    text = open(path).read()
    if "<!-- bench:checkpoint -->" in text:
        text = re.sub(r"<!-- bench:checkpoint -->.*?<!-- /bench:checkpoint -->",
                      lambda _: section, text, flags=re.S)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    open(path, "w").write(text)
    print(section)


if __name__ == "__main__":
    main()
