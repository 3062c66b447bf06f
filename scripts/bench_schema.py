"""scripts/bench schema: the log-analysis job on the same generated events in the built-in
`json` format and in a nested-JSON shape read by a `[schema]` (epoch-second fractions, fields
two levels down, as tests/schema.rs writes them); events/s of each and their ratio, written to
BENCHMARKS.md (section bench:schema). The issue's bar: the schema'd shape at >= 80% of json.

    scripts/bench schema [--events 1000000] [--runs 3] [--workers 1]
"""
import argparse, datetime, json, os, re, statistics, subprocess, sys, time

SCHEMA = """
[schema]
timestamp = { path = "ts", format = "epoch_seconds" }

[schema.fields]
level = "log.level"
message = "log.message"
service = "request.service"
request_id = "request.request_id"
response_time = { path = "request.duration", type = "float" }
status_code = { path = "request.status", type = "int" }
ip_address = "client.ip"
user_id = "client.user_id"
"""


def nested(line):
    try:
        v = json.loads(line)
    except ValueError:
        return None
    if not isinstance(v, dict) or not isinstance(v.get("timestamp"), str) or len(v) != 10:
        return None
    # The generator's other time shapes and wrong-type lines are left out of both files.
    try:
        t = datetime.datetime.strptime(v["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ")
    except ValueError:
        return None
    if not (isinstance(v["status_code"], (int, type(None)))
            and isinstance(v["response_time"], (int, float, type(None)))
            and all(isinstance(v[k], (str, type(None))) for k in
                    ("level", "service", "message", "ip_address", "user_id", "request_id",
                     "error_code"))):
        return None
    ms = round(t.replace(tzinfo=datetime.timezone.utc).timestamp() * 1000)
    body = json.dumps({
        "log": {"level": v["level"], "message": v["message"]},
        "request": {"service": v["service"], "request_id": v["request_id"],
                    "duration": v["response_time"], "status": v["status_code"]},
        "client": {"ip": v["ip_address"], "user_id": v["user_id"]},
        "error_code": v["error_code"]}, separators=(",", ":"))
    return line, '{"ts":%d.%03d,%s' % (ms // 1000, ms % 1000, body[1:])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workers", default="1")
    a = ap.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    os.chdir(root)
    bin_ = os.path.join(root, "target/release/logflow")
    work = os.path.join(root, "target/bench")
    os.makedirs(work, exist_ok=True)
    gen = os.path.join(work, f"logs-{a.events}.jsonl")
    if not os.path.exists(gen):
        subprocess.run([bin_, "gen", "--events", str(a.events), "--output", gen], check=True,
                       stderr=subprocess.DEVNULL)
    flat, deep = os.path.join(work, "schema-flat.jsonl"), os.path.join(work, "schema-nested.jsonl")
    n = 0
    with open(gen, errors="replace") as f, open(flat, "w") as fo, open(deep, "w") as do:
        for line in f:
            r = nested(line.rstrip("\n"))
            if r:
                fo.write(r[0] + "\n")
                do.write(r[1] + "\n")
                n += 1
    base = open("dataflows/log-analysis.toml").read()
    spec = os.path.join(work, "schema-nested.toml")
    open(spec, "w").write(base + SCHEMA)
    rows = []
    inputs = [("json (built-in)", "dataflows/log-analysis.toml", flat),
              ("nested JSON + [schema]", spec, deep)]
    for w in [int(x) for x in a.workers.split(",")]:
        rates = {name: [] for name, _, _ in inputs}
        # Interleaved, so both inputs see the same machine load.
        for _ in range(a.runs):
            for name, s, data in inputs:
                out = os.path.join(work, "schema-out")
                subprocess.run(["rm", "-rf", out], check=True)
                t0 = time.monotonic()
                p = subprocess.run([bin_, "run", s, "--input", data, "--output-dir", out,
                                    "-w", str(w), "--quiet"], capture_output=True, text=True)
                dt = time.monotonic() - t0
                if p.returncode != 0:
                    sys.exit(f"run failed:\n{p.stderr}")
                parsed = int(re.search(r"parsed=(\d+)", p.stderr).group(1))
                assert parsed == n, (parsed, n)
                rates[name].append(n / dt)
                print(f"{name} -w {w}: {n / dt:,.0f} events/s", file=sys.stderr)
        for name, _, data in inputs:
            rows.append((name, w, statistics.median(rates[name]), os.path.getsize(data)))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    lines = ["<!-- bench:schema -->", "### User-defined schema: nested JSON against the built-in format", "",
             f"`scripts/bench schema --events {a.events} --runs {a.runs} --workers {a.workers}`, "
             f"{time.strftime('%Y-%m-%d', time.gmtime())}, commit {commit}: the log-analysis job on "
             f"the same {n:,} events, median events/s of the whole process.", "",
             "| input | workers | file | median events/s |", "|---|---:|---:|---:|"]
    for name, w, med, size in rows:
        lines.append(f"| {name} | {w} | {size / 2**20:,.0f} MiB | {med:,.0f} |")
    for w in sorted({r[1] for r in rows}):
        by = {r[0]: r[2] for r in rows if r[1] == w}
        lines.append("")
        lines.append(f"`-w {w}`: nested + schema at {by['nested JSON + [schema]'] / by['json (built-in)']:.0%} of json")
    lines.append("<!-- /bench:schema -->")
    section = "\n".join(lines)
    text = open("BENCHMARKS.md").read()
    if "<!-- bench:schema -->" in text:
        text = re.sub(r"<!-- bench:schema -->.*?<!-- /bench:schema -->", lambda _: section, text, flags=re.S)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    open("BENCHMARKS.md", "w").write(text)
    print(section)


if __name__ == "__main__":
    main()
