#!/usr/bin/env python3
"""The markdown report of bench/login_burst.sh, from its JSON lines (one per run).

usage: login_burst_report.py RESULTS.jsonl   (context in the environment, set by the script)
"""
import json, os, sys, time

runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
env = os.environ
conns, clk = int(env["CONNS"]), int(env["CLK"])
cols = ["before", "after"]


def cell(binary, logins, fmt):
    vals = [fmt(r) for r in runs if r["binary"] == binary and r["logins"] == logins]
    return "; ".join(vals) if vals else "–"


def lat(part):
    def f(r):
        l = r["run"][part]["latency_ms"]
        return f"{l['p50']:.2f} / {l['p99']:.2f} / {l['max']:.1f}"
    return f


def gets(r):
    g = r["run"]["get"]
    return f"{g['requests']:,} ({g['non_2xx']}, {g['errors']})"


def logins(r):
    l = r["run"]["login"]
    return f"{l['per_s']:.1f} ({l['latency_ms']['p50']:.0f} / {l['latency_ms']['p99']:.0f} ms; {l['non_2xx']}, {l['errors']})"


def cpu(r):
    return f"{100 * r['server_cpu_ticks'] / clk / (r['run']['duration_s'] + 1):.0f} %"


rows = [
    ("manifest GET, no logins: p50 / p99 / max, ms", 0, lat("get")),
    (f"manifest GET during {conns} concurrent logins: p50 / p99 / max, ms", conns, lat("get")),
    ("… GETs answered, no logins (non-200, socket errors)", 0, gets),
    (f"… GETs answered during the logins (non-200, socket errors)", conns, gets),
    (f"logins answered per s (p50 / p99 latency; non-200, socket errors)", conns, logins),
    ("server CPU during the logins (user + sys over the run, % of one core)", conns, cpu),
    ("server threads at the end of the logins", conns, lambda r: str(r["threads_after"])),
]

print(f"Run of {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {env['MACHINE']}; "
      f"load average before the run {env['LOADAVG']}.  ")
print(f"before: `{env['BEFORE_BIN']}` (tree 727e058: Argon2 inline on tokio's async workers); "
      f"after: the current tree (at the run: {env['TREE']}; binary built {env['AFTER_BUILT']}): Argon2 on the blocking pool, "
      f"at most max(cores − 1, 1) at once).  ")
print(f"Logins: {conns} keep-alive connections in a closed loop of `GET /token` with Basic auth "
      f"(a user of its own per connection: one Argon2id verification each). Manifest GETs: {env['GET_CONNS']} keep-alive "
      f"connections, one `GET` by tag with a bearer token every {env['GET_INTERVAL']} ms each, timed "
      f"from send to the last byte. {env['DURATION']} s counted per run after 1 s of warm-up; "
      f"each cell lists the rounds in order.")
print()
print("| measure | before | after |")
print("|---|---|---|")
for label, n, fmt in rows:
    print(f"| {label} | {cell('before', n, fmt)} | {cell('after', n, fmt)} |")
