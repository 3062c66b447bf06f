#!/usr/bin/env python3
"""Soak benchmark: RSS of a long run, to show state is released as the watermark
passes it and memory stays flat.

`logflow gen` streams N generated events (default 20M) into the full log-analysis job
(`run --input -`, results written as JSONL); every few seconds the script samples the job's
resident memory (/proc/PID/status VmRSS) and how many records it has read (its own
/metrics endpoint). Written to BENCHMARKS.md between markers.

    scripts/bench soak [--events 20000000] [--workers 2] [--event-rate 1000] [--every 2]
                       [--port 19899] [--random-ips 1000000] [--max-keys 1000]

`--random-ips N` injects N more events, spread evenly over the input, each a copy of the event
before it from a new random IP (a hostile producer's flood of distinct keys); `--max-keys M`
runs the job with `max_keys = M` on its per-IP and per-user analyses (a copy of the spec under
target/bench), so the keys beyond go to `<job>.overflow` instead of state.
"""
import argparse
import os
import re
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_report import ROOT, load, machine, write_section  # noqa: E402


def rss_mb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def records_read(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return None
    return sum(float(m.group(1)) for m in
               re.finditer(r"^logflow_records_read_total\{[^}]*\} (\S+)", text, re.M))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=20_000_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--event-rate", type=float, default=1000.0)
    ap.add_argument("--every", type=float, default=2.0)
    ap.add_argument("--port", type=int, default=19899)
    ap.add_argument("--random-ips", type=int, default=0)
    ap.add_argument("--max-keys", type=int, default=0)
    a = ap.parse_args()
    bin_ = os.path.join(ROOT, "target/release/logflow")
    out = os.path.join(ROOT, "target/bench/soak-out")
    subprocess.run(["rm", "-rf", out], check=True)
    load_at_start = load()
    gen = subprocess.Popen([bin_, "gen", "--events", str(a.events), "--event-rate",
                            str(a.event_rate), "--output", "-"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    if a.random_ips:
        gen = subprocess.Popen([sys.executable, "-c", INJECT, str(a.events), str(a.random_ips)],
                               stdin=gen.stdout, stdout=subprocess.PIPE)
    spec = "dataflows/log-analysis.toml"
    if a.max_keys:
        spec = with_max_keys(spec, a.max_keys)
    job = subprocess.Popen([bin_, "run", spec, "--input", "-",
                            "--output-dir", out, "-w", str(a.workers), "--quiet",
                            "--metrics-addr", f"127.0.0.1:{a.port}"],
                           stdin=gen.stdout, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    gen.stdout.close()
    t0 = time.monotonic()
    samples = []  # (seconds, records read, RSS MB)
    while job.poll() is None:
        time.sleep(a.every)
        r, n = rss_mb(job.pid), records_read(a.port)
        if r is not None and n is not None:
            samples.append((time.monotonic() - t0, int(n), r))
            print(f"{samples[-1][0]:7.1f}s {int(n):>12,} records  RSS {r:7.1f} MB",
                  file=sys.stderr)
    err = job.stderr.read()
    dt = time.monotonic() - t0
    if job.returncode != 0:
        sys.exit(f"job failed:\n{err}")
    read = int(re.search(r"read=(\d+)", err).group(1))
    assert read == a.events + a.random_ips, (read, a.events, a.random_ips)
    total = a.events + a.random_ips
    if len(samples) < 4:
        sys.exit("too few samples: run longer or sample more often")

    # RSS after each tenth of the input: flat means the last tenths are no higher than the first.
    tenths = []
    for k in range(1, 11):
        target = total * k / 10
        s = next((s for s in samples if s[1] >= target), samples[-1])
        tenths.append(s)
    warm = max(s[2] for s in samples if s[1] >= total * 0.2) if any(
        s[1] >= total * 0.2 for s in samples) else samples[-1][2]
    first_half = max(s[2] for s in samples if s[1] <= total * 0.5)
    second_half = max(s[2] for s in samples if s[1] > total * 0.5)

    flags = (f" --random-ips {a.random_ips}" if a.random_ips else "") + (
        f" --max-keys {a.max_keys}" if a.max_keys else "")
    injected = ""
    if a.random_ips:
        injected = (f", with {a.random_ips:,} more events from distinct random IPs spread "
                    f"over the input")
    if a.max_keys:
        injected += (f", `max_keys = {a.max_keys}` on `ip_patterns` and `user_activity` "
                     f"({overflow(out):,} keys written to the overflow output)")
    lines = [
        ("### Soak with a flood of random IPs" + (", max_keys" if a.max_keys else "")
         if a.random_ips else "### Soak: memory over a long run"),
        "",
        f"`scripts/bench soak --events {a.events} --workers {a.workers} --event-rate "
        f"{a.event_rate:g}{flags}` on {machine()}, load at start {load_at_start}. "
        f"`logflow gen` streams {a.events:,} events ({a.event_rate:g} per event-time second, so "
        f"{a.events / a.event_rate / 3600:,.1f} hours of event time) into the full log-analysis "
        f"job (`run --input -`, -w {a.workers}, JSONL results){injected}; RSS (VmRSS) and "
        f"records read (the job's /metrics) sampled every {a.every:g} s. Whole run {dt:,.0f} s, "
        f"{total / dt:,.0f} events/s.",
        "",
        "| input read | records | at | RSS |",
        "|---:|---:|---:|---:|",
    ]
    for k, (sec, n, r) in enumerate(tenths, 1):
        lines.append(f"| {k * 10}% | {n:,} | {sec:,.0f} s | {r:,.0f} MB |")
    lines += [
        "",
        f"Peak RSS over the first half of the input {first_half:,.0f} MB, over the second half "
        f"{second_half:,.0f} MB (after the first 20%: {warm:,.0f} MB); {len(samples)} samples.",
    ]
    # The flood has a section of its own: the plain soak's figures stay beside it.
    name = "soak-flood" if a.random_ips else "soak"
    write_section(name + ("-max-keys" if a.max_keys else ""), lines)


# Copies stdin to stdout and, evenly over EVENTS lines, INJECT more lines: each the line before
# it with a new random ip_address (a fixed seed).
INJECT = r"""
import json, random, sys
events, inject = int(sys.argv[1]), int(sys.argv[2])
rng = random.Random(24)
every = max(1, events // inject)
out = sys.stdout.buffer
done, last = 0, None
def copy(e):
    e["ip_address"] = "%d.%d.%d.%d" % tuple(rng.randrange(256) for _ in range(4))
    out.write(json.dumps(e).encode() + b"\n")
for i, line in enumerate(sys.stdin.buffer, 1):
    out.write(line)
    if i % every == 0 and done < inject:
        try:
            e = json.loads(line)
        except ValueError:
            continue  # a damaged line of the generator's
        if not isinstance(e, dict):
            continue  # damaged too, but still JSON
        last = e
        copy(last)
        done += 1
while last is not None and done < inject:  # the rest at the end (damaged lines skipped)
    copy(last)
    done += 1
"""


def with_max_keys(spec, m):
    """A copy of `spec` with `max_keys = m` on its per-IP and per-user analyses."""
    text = open(os.path.join(ROOT, spec)).read()
    for name in ("ip_patterns", "user_activity"):
        text = text.replace(f'name = "{name}"\n', f'name = "{name}"\nmax_keys = {m}\n', 1)
    path = os.path.join(ROOT, "target/bench/soak-max-keys.toml")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    return path


def overflow(out):
    path = os.path.join(out, "log-analysis.overflow.jsonl")
    if not os.path.exists(path):
        return 0
    with open(path, "rb") as f:
        return sum(1 for _ in f)


if __name__ == "__main__":
    main()
