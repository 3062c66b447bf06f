#!/usr/bin/env python3
"""Do two builds write the same results? Runs both binaries on the same generated inputs for
every spec under dataflows/ (`run SPEC --input FILE --output-dir DIR`, with 1 and 2 workers)
and compares the output directories file by file. Exits 1 on any difference, naming the spec,
the worker count and the file.

    scripts/bench identical BIN_A BIN_B [--events 100000] [--workers 1,2]

Every file is compared byte for byte, except that with several workers the dead-letter and
late files are compared as sets of lines: each worker writes its own in turn, so their order
varies between runs of one binary. Specs whose records are stamped with the wall clock
(format `text`) cannot give the same results twice and are skipped, with a note.
"""
import argparse
import glob
import os
import shutil
import subprocess
import sys
import tomllib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_report import ROOT, WORK, gen_file, log  # noqa: E402


def inputs(format_, events, bin_):
    """The input file for a spec's record format, or None when results depend on the clock."""
    if format_ == "json":
        return gen_file(events, "logs", bin_)
    if format_ == "user-events":
        return gen_file(events, "user-events", bin_)
    if format_ in ("apache", "nginx"):
        return os.path.join(ROOT, "tests", "data", "apache_logs")
    return None


def run(bin_, spec, data, workers, out):
    shutil.rmtree(out, ignore_errors=True)
    cmd = [bin_, "run", spec, "--input", data, "--output-dir", out, "-w", str(workers), "--quiet"]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True)
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {' '.join(cmd)}\n"
                 f"{p.stderr.decode(errors='replace')[-4000:]}")
    last = p.stderr.decode(errors="replace").strip().splitlines()[-1]
    # The accounting message, without the diagnostic line's time, level and target.
    return last[last.find("accounting:"):] if "accounting:" in last else last


def differences(a, b, workers):
    """The files of output directories `a` and `b` that differ (or exist in one only)."""
    names = sorted(set(os.listdir(a)) | set(os.listdir(b)))
    out = []
    for name in names:
        pa, pb = os.path.join(a, name), os.path.join(b, name)
        if not (os.path.exists(pa) and os.path.exists(pb)):
            out.append(f"{name}: only in {'A' if os.path.exists(pa) else 'B'}")
            continue
        da, db = open(pa, "rb").read(), open(pb, "rb").read()
        if workers > 1 and (name.endswith(".dead-letter.jsonl") or name.endswith(".late.jsonl")):
            da, db = sorted(da.splitlines()), sorted(db.splitlines())
        if da != db:
            out.append(f"{name}: differs")
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bin_a")
    ap.add_argument("bin_b")
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--workers", default="1,2")
    a = ap.parse_args()
    bins = [os.path.abspath(a.bin_a), os.path.abspath(a.bin_b)]
    for b in bins:
        if not os.access(b, os.X_OK):
            sys.exit(f"not an executable: {b}")
    specs = sorted(glob.glob(os.path.join(ROOT, "dataflows", "**", "*.toml"), recursive=True))
    failed, compared = [], 0
    for spec in specs:
        rel = os.path.relpath(spec, ROOT)
        with open(spec, "rb") as f:
            format_ = tomllib.load(f).get("source", {}).get("format", "json")
        data = inputs(format_, a.events, bins[0])
        if data is None:
            log(f"skipped {rel}: format `{format_}` stamps records with the wall clock")
            continue
        for w in [int(x) for x in a.workers.split(",")]:
            outs = [os.path.join(WORK, "identical", x) for x in ("a", "b")]
            acc = [run(b, spec, data, w, o) for b, o in zip(bins, outs)]
            diff = differences(*outs, w)
            if acc[0] != acc[1]:
                diff.append(f"accounting: {acc[0]} / {acc[1]}")
            n = len(os.listdir(outs[0]))
            compared += 1
            if diff:
                failed.append((rel, w, diff))
                log(f"DIFFERENT {rel} -w {w}: " + "; ".join(diff))
            else:
                log(f"identical {rel} -w {w}: {n} files, {acc[0]}")
    if failed:
        sys.exit(f"{len(failed)} of {compared} runs differ between {bins[0]} and {bins[1]}")
    log(f"all {compared} runs identical ({a.events:,} events per generated input)")


if __name__ == "__main__":
    main()
