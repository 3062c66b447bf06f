#!/usr/bin/env python3
"""Instructions per event: the full log-analysis job under callgrind (valgrind) over a generated
file, once per worker count. Instruction counts do not depend on the machine's load, so they
compare builds where wall-clock figures on a shared machine cannot. Writes its section of
BENCHMARKS.md: the total per run, per event, and the functions with the most instructions
of their own in the first run.

    scripts/bench callgrind [--events 100000] [--workers 1,2] [--top 12] [--bin PATH]

`--bin` measures that binary instead of building this checkout's (the section then names it).
"""
import argparse
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_report import BIN, ROOT, WORK, gen_file, log, machine, write_section  # noqa: E402

SPEC = "dataflows/log-analysis.toml"


def callgrind(bin_, data, workers, out_dir):
    """Runs the job under callgrind: (instructions, accounting `read=`, callgrind output file)."""
    shutil.rmtree(out_dir, ignore_errors=True)
    os.makedirs(out_dir)
    profile = os.path.join(WORK, f"callgrind.out.w{workers}")
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={profile}", bin_, "run", SPEC,
           "--input", data, "--output-dir", out_dir, "-w", str(workers), "--quiet"]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr[-4000:]}")
    m = re.findall(r"Collected : (\d+)", p.stderr)
    if not m:
        sys.exit(f"no instruction count in callgrind's output:\n{p.stderr[-4000:]}")
    read = int(re.findall(r"read=(\d+)", p.stderr)[-1])
    return int(m[-1]), read, profile


def top_functions(profile, n):
    """(instructions, function) of the `n` functions with the most instructions of their own,
    code inlined into a function counted as its own (callgrind_annotate splits it by source
    file)."""
    p = subprocess.run(["callgrind_annotate", "--inclusive=no", "--auto=no", "--threshold=100",
                        profile], capture_output=True, text=True, check=True)
    own = {}
    in_table = False
    for line in p.stdout.splitlines():
        if line.strip().endswith("file:function"):
            in_table = True
            continue
        if not in_table or line.startswith("-"):
            continue
        m = re.match(r"\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(\S.*)$", line)
        if not m:
            continue
        # `file:function [object]` -> the function.
        name = re.sub(r"\s+\[[^\]]*\]$", "", m.group(2))
        name = name.split(":", 1)[1] if ":" in name else name
        own[name] = own.get(name, 0) + int(m.group(1).replace(",", ""))
    return sorted(((v, k) for k, v in own.items()), reverse=True)[:n]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--top", type=int, default=12)
    ap.add_argument("--bin", help="measure this binary (default: build this checkout's)")
    a = ap.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("scripts/bench callgrind needs valgrind (apt-get install valgrind)")
    bin_ = os.path.abspath(a.bin) if a.bin else BIN
    if not a.bin:
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    data = gen_file(a.events, bin_=bin_)
    workers = [int(w) for w in a.workers.split(",")]
    results = []
    for w in workers:
        total, read, profile = callgrind(bin_, data, w, os.path.join(WORK, f"callgrind-out-w{w}"))
        if read != a.events:
            sys.exit(f"-w {w}: read {read} records, not {a.events}")
        log(f"-w {w}: {total:,} instructions, {total / a.events:,.0f} per event")
        results.append((w, total, profile))
    command = f"scripts/bench callgrind --events {a.events} --workers {a.workers} --top {a.top}"
    if a.bin:
        command += f" --bin {os.path.relpath(bin_, ROOT)}"
    base = results[0][1]
    lines = [
        "### Instructions per event (callgrind)",
        "",
        f"`{command}` on {machine()}. The full log-analysis job (all 11 analyses, JSONL "
        f"results) over {a.events:,} generated log lines (`logflow gen --events {a.events}`), "
        "whole process under `valgrind --tool=callgrind`; instruction counts do not depend on "
        "the machine's load.",
        "",
        f"| workers | instructions | per event | vs. `-w {workers[0]}` |",
        "|---:|---:|---:|---:|",
    ]
    for w, total, _ in results:
        lines.append(f"| {w} | {total / 1e6:,.1f} M | {total / a.events:,.0f} | "
                     f"{total / base:.3f}x |")
    w, total, profile = results[0]
    lines += [
        "",
        f"Functions with the most instructions of their own at `-w {w}` "
        "(`callgrind_annotate --inclusive=no`):",
        "",
        "| instructions | share | function |",
        "|---:|---:|---|",
    ]
    for n, name in top_functions(profile, a.top):
        name = name.replace("|", "\\|").replace("`", "'")
        lines.append(f"| {n / 1e6:,.1f} M | {100 * n / total:.1f}% | `{name}` |")
    lines += [
        "",
        "Command per run (`N` = workers):",
        "",
        "```sh",
        f"valgrind --tool=callgrind {os.path.relpath(bin_, ROOT)} run {SPEC} --input "
        f"target/bench/logs-{a.events}.jsonl --output-dir OUT -w N --quiet",
        "```",
    ]
    write_section("callgrind", lines)


if __name__ == "__main__":
    main()
