#!/usr/bin/env python3
"""benches/record.py OUT_BASE RESULT_FILE COMMAND: write one benchmark run as a small markdown file.

benches/run.sh calls this at the end of every run, so that each measurement is checked in as
text anyone can compare: RESULT_FILE (benches/results/<UTC date>-<short commit>.md) gets the
commit, the date, COMMAND (the exact command line, environment included), the machine and tool
versions (the harness's meta.json), and for each harness run under OUT_BASE (one folder per
mode, each with the harness's raw.jsonl) every repetition's raw numbers, then the ratio of each
case to nginx measured in the same repetition (and, for forward-auth, to nginx auth_request).
Nothing here measures anything: it only reads what the harness wrote.
"""
import json
import os
import statistics
import subprocess
import sys

out_base, result_file, command = sys.argv[1:4]
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def git(*args):
    try:
        return subprocess.run(["git", "-C", root, *args], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


modes = sorted(d for d in os.listdir(out_base)
               if os.path.isfile(os.path.join(out_base, d, "raw.jsonl")))
meta = {}
for mode in modes:
    path = os.path.join(out_base, mode, "meta.json")
    if os.path.exists(path):
        with open(path) as f:
            meta = json.load(f)
        break

dirty = git("status", "--porcelain", "--untracked-files=no")
lines = [
    "# Benchmark run %s, commit %s" % (meta.get("date_utc", "?"), git("rev-parse", "--short", "HEAD")),
    "",
    "Written by `benches/run.sh` (through `benches/record.py`) from the harness's raw results;",
    "see `docs/benchmarks.md` for how to read it.",
    "",
    "| | |",
    "|---|---|",
    "| commit | `%s`%s |" % (git("rev-parse", "HEAD"), " (with uncommitted changes)" if dirty not in ("", "?") else ""),
    "| date (UTC) | %s |" % meta.get("date_utc", "?"),
    "| command | `%s` |" % command.replace("|", "\\|"),
    "| machine | %s, %s cores, %s MiB, kernel %s |" % (
        meta.get("cpu_model", "?"), meta.get("host_cores", "?"), meta.get("mem_total_mib", "?"),
        meta.get("kernel", "?")),
    "| tools | %s |" % "; ".join("%s: %s" % kv for kv in sorted(meta.get("versions", {}).items())),
    "| harness | %s |" % ", ".join("%s=%s" % (k, v) for k, v in sorted(meta.get("params", {}).items())
                                    if v and k in ("DURATION", "WARMUP", "REPS", "PIN", "SERVER_CPUS",
                                                   "LOADGEN_CPUS", "WRK_CONNS", "H2_CONNS",
                                                   "H2_STREAMS", "NGINX_WORKERS",
                                                   "UPSTREAM_BODY_BYTES")),
    "",
]

# The references a case is divided by, in the same repetition and protocol.
REFERENCES = {"nginx-proxy": "nginx", "nginx-authreq": "nginx auth_request"}

for mode in modes:
    with open(os.path.join(out_base, mode, "raw.jsonl")) as f:
        runs = [json.loads(line) for line in f if line.strip()]
    lines += ["## %s" % mode, "",
              "| case | protocol | rep | req/s | p50 ms | p99 ms | errors | CPU µs/req | RSS MiB max"
              " | other jobs % | steal % | attempts |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(runs, key=lambda r: (r["proto"], r["case"], r["rep"])):
        errors = sum(r.get(k, 0) for k in ("err_connect", "err_read", "err_write", "err_status",
                                           "err_timeout"))
        lines.append("| %s | %s | %d | %.0f | %.2f | %.2f | %d | %.1f | %.1f | %.0f | %.0f | %d |" % (
            r["case"], r["proto"], r["rep"], r.get("rps", 0), r.get("lat_p50_us", 0) / 1e3,
            r.get("lat_p99_us", 0) / 1e3, errors, r.get("peer_cpu_us_per_req", 0),
            r.get("peer_rss_max_kib", 0) / 1024, r.get("other_cpu_pct", 0), r.get("steal_pct", 0),
            r.get("attempts", 1)))
    rps = {(r["case"], r["proto"], r["rep"]): r.get("rps", 0) for r in runs}
    ratio_lines = []
    for ref, label in REFERENCES.items():
        for (case, proto) in sorted({(c, p) for (c, p, _) in rps}):
            # Against nginx auth_request only what also answers through it (forward-auth).
            if case in (ref, "direct") or (ref == "nginx-authreq" and not case.startswith(ref + "-")):
                continue
            per_rep = [rps[(case, proto, rep)] / rps[(ref, proto, rep)]
                       for (c, p, rep) in sorted(rps)
                       if c == case and p == proto and rps.get((ref, proto, rep))]
            if per_rep:
                ratio_lines.append("| %s | %s | %s | %.2f | %s |" % (
                    case, proto, label, statistics.median(per_rep),
                    ", ".join("%.2f" % x for x in per_rep)))
    # Issue 18's yardstick: the better of nginx and HAProxy as plain proxies, per repetition,
    # and whether the case's p99 is no worse than that proxy's.
    p99 = {(r["case"], r["proto"], r["rep"]): r.get("lat_p99_us", 0) for r in runs}
    for (case, proto) in sorted({(c, p) for (c, p, _) in rps}):
        if case in ("nginx-proxy", "haproxy", "direct") or case.startswith("nginx-authreq"):
            continue
        per_rep, p99_ok = [], []
        for (c, p, rep) in sorted(rps):
            refs = [(rps.get((ref, proto, rep)), ref) for ref in ("nginx-proxy", "haproxy")]
            refs = [(v, ref) for (v, ref) in refs if v]
            if c != case or p != proto or len(refs) < 2:
                continue
            best, ref = max(refs)
            per_rep.append(rps[(case, proto, rep)] / best)
            p99_ok.append(p99[(case, proto, rep)] <= p99[(ref, proto, rep)])
        if per_rep:
            ratio_lines.append("| %s | %s | the better of nginx and HAProxy (p99 no worse: %d of %d reps) | %.2f | %s |" % (
                case, proto, sum(p99_ok), len(p99_ok), statistics.median(per_rep),
                ", ".join("%.2f" % x for x in per_rep)))
    if ratio_lines:
        lines += ["", "Paired ratios (req/s of the case over the reference's in the same repetition):",
                  "", "| case | protocol | × | median | per rep |", "|---|---|---|---|---|"]
        lines += ratio_lines
    lines.append("")

with open(result_file, "w") as f:
    f.write("\n".join(lines))
print(result_file)
