"""Helpers shared by the parts of scripts/bench written in Python: the machine
line every figure carries, timed runs with peak RSS, and BENCHMARKS.md marker sections."""

import os
import re
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "logflow")
WORK = os.path.join(ROOT, "target", "bench")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def machine():
    """`2 cores (AMD EPYC ...), 23 GiB, 2026-12-01, commit abc1234`."""
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                if l.startswith("model name")), "?")
    mem = next((int(l.split()[1]) // 1024 // 1024 for l in open("/proc/meminfo")
                if l.startswith("MemTotal")), 0)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                            ":!BENCHMARKS.md"], cwd=ROOT, capture_output=True,
                           text=True).stdout.strip()
    return (f"{os.cpu_count()} cores ({cpu}), {mem} GiB, "
            f"{time.strftime('%Y-%m-%d', time.gmtime())}, commit {commit}"
            + (" (with uncommitted changes)" if dirty else ""))


def load():
    """The load averages (1, 5, 15 min) as `uptime` prints them."""
    with open("/proc/loadavg") as f:
        return ", ".join(f.read().split()[:3])


def spread(values, fmt="{:,.0f}"):
    """`min / median` of a list, formatted."""
    return f"{fmt.format(min(values))} / {fmt.format(statistics.median(values))}"


class PeakRss:
    """Samples the summed RSS of a process and all its descendants (a JVM started by Python,
    say) every 100 ms; `stop()` gives the largest sum seen. `cpu_s()` is the user + system
    seconds of every process of the tree, as last sampled (a process's last 100 ms may be
    missed: /usr/bin/time cannot see a child its parent never waits for)."""

    def __init__(self, pid):
        self.pid = pid
        self.peak_kb = 0
        self._ticks = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _tree(self):
        children = {}
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    with open(f"/proc/{d}/stat") as f:
                        ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                    children.setdefault(ppid, []).append(int(d))
                except (OSError, IndexError, ValueError):
                    pass
        todo, seen = [self.pid], []
        while todo:
            p = todo.pop()
            seen.append(p)
            todo.extend(children.get(p, []))
        return seen

    def _rss_kb(self, pid):
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return 0

    def _run(self):
        while not self._stop.is_set():
            tree = self._tree()
            self.peak_kb = max(self.peak_kb, sum(self._rss_kb(p) for p in tree))
            for p in tree:
                try:
                    with open(f"/proc/{p}/stat") as f:
                        fields = f.read().rsplit(")", 1)[1].split()
                    self._ticks[p] = int(fields[11]) + int(fields[12])
                except (OSError, IndexError, ValueError):
                    pass
            self._stop.wait(0.1)

    def stop(self):
        self._stop.set()
        self._thread.join()
        return self.peak_kb / 1024

    def cpu_s(self):
        return sum(self._ticks.values()) / os.sysconf("SC_CLK_TCK")


def timed(cmd, env=None, **kw):
    """Runs `cmd` under /usr/bin/time: (wall seconds, peak RSS in MB, CompletedProcess with
    text stdout/stderr). Exits with the command's stderr when it fails."""
    t0 = time.monotonic()
    p = subprocess.run(["/usr/bin/time", "-f", "maxrss_kb=%M cpu_s=%U+%S", *cmd], capture_output=True,
                       text=True, env=env, cwd=ROOT, **kw)
    dt = time.monotonic() - t0
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr[-4000:]}")
    rss = int(re.findall(r"maxrss_kb=(\d+)", p.stderr)[-1]) / 1024
    return dt, rss, p


def cpu_of(stderr):
    """User + system CPU seconds of a command run by `timed`."""
    user, system = re.findall(r"cpu_s=([\d.]+)\+([\d.]+)", stderr)[-1]
    return float(user) + float(system)


def cpu_of_pid(pid):
    """User + system CPU seconds a live process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def accounting_read(stderr):
    """`read=` of the job's last accounting line."""
    return int(re.findall(r"read=(\d+)", stderr)[-1])


def write_section(name, lines):
    """Replaces (or appends) `<!-- bench:NAME -->` ... `<!-- /bench:NAME -->` in BENCHMARKS.md."""
    begin, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    section = "\n".join([begin, *lines, end])
    path = os.path.join(ROOT, "BENCHMARKS.md")
    text = open(path).read() if os.path.exists(path) else (
        "# Benchmarks\n\nWritten by `scripts/bench`; every figure names its command and machine.\n")
    if begin in text:
        text = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: section, text,
                      flags=re.S)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    with open(path, "w") as f:
        f.write(text)
    print(section)


def gen_file(events, kind="logs", bin_=BIN):
    """The generated file of `events` lines of `kind` (`logs`, `user-events`); the log file is
    the one the file-mode part also reads."""
    os.makedirs(WORK, exist_ok=True)
    stem = "logs" if kind == "logs" else kind
    path = os.path.join(WORK, f"{stem}-{events}.jsonl")
    if not os.path.exists(path):
        subprocess.run([bin_, "gen", "--kind", kind, "--events", str(events), "--output",
                        path + ".tmp"], check=True, stderr=subprocess.DEVNULL)
        os.rename(path + ".tmp", path)
    return path
