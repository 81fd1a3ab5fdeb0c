#!/usr/bin/env python3
"""The report of bench/gc.sh: markdown from the JSON lines wharf-gc-bench and the
Distribution runs wrote.

usage: gc_report.py RESULTS.jsonl MANIFESTS DELETED AWS_MANIFESTS AWS_DELETED
"""
import datetime
import json
import os
import platform
import subprocess
import sys

path, n, deleted, aws_n, aws_del = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
rows = [json.loads(line) for line in open(path) if line.strip()]
embedded = [r for r in rows if "sdk_calls" in r and r["sdk_calls"] is None]
aws = [r for r in rows if "sdk_calls" in r and r["sdk_calls"] is not None]
gen = {r.get("store"): r for r in rows if r.get("case") == "generate"}
sizes = next((r for r in rows if r.get("case") == "sizes"), {})
dist = {r["case"]: r for r in rows if r.get("case", "").startswith("dist_")}

def cases(deleted):
    return {
        "nothing": "(a) nothing to collect",
        "after_delete": f"(b) after deleting {deleted:,} manifests",
        "verify": "(c) `--verify` (full mark-and-sweep)",
    }


CASES = cases(deleted)


def mib(kib):
    return f"{kib / 1024:.0f} MiB"


def secs(s):
    return f"{s * 1000:.1f} ms" if s < 1 else f"{s:.1f} s"


def collected(r):
    if r["case"] == "verify":
        return f"{r['checked']:,} checked, {r['differences']} differences"
    return f"{r['links']:,} links, {r['blobs']:,} blobs ({r['bytes']:,} bytes)"


cpu = ""
try:
    cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
except (OSError, StopIteration):
    pass
rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
out = []
p = out.append
p(f"Run of {now}, tree {rev}; {os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}.")
p("")
p(f"**Embedded store** (redb and files, as `wharf serve`): {n:,} manifests in {n // 100:,} repositories, "
  f"{3 * n:,} blobs, generated through the registry's API in {gen.get('embedded', {}).get('seconds', 0):.0f} s "
  f"(on /dev/shm), measured on disk; metadata {sizes.get('metadata_bytes', 0) / 2**20:.0f} MiB. "
  f"Distribution 2.8 (`docker-registry garbage-collect`, the registry stopped) on the same content in its own layout.")
p("")
p("| run | wall time | peak memory | metadata calls | blob-store calls | result |")
p("|---|---:|---:|---:|---:|---|")
for r in embedded:
    p(f"| wharf {CASES[r['case']]} | {secs(r['seconds'])} | {mib(r['peak_rss_kib'])} | "
      f"{r['metadata_calls']:,} | {r['blob_calls']:,} | {collected(r)} |")
for case, label in [("dist_nothing", "(a) nothing to collect"), ("dist_after_delete", f"(b) after deleting {deleted:,} manifests")]:
    d = dist.get(case)
    if d:
        p(f"| Distribution {label} | {secs(d['seconds'])} | {mib(d['peak_rss_kib'])} | reads every link and manifest | "
          f"— | {d['objects_before'] - d['objects_after']:,} blobs deleted (manifests included), {d['objects_after']:,} left |")
p("")
p("wharf's peak memory is the whole process's peak during the run (the benchmark process, with its store open), "
  "reset before each run; Distribution's is its process's maximum resident size.")

if aws:
    p("")
    p(f"**AWS stand-ins** (S3 on s3s-fs, DynamoDB on moto, one request at a time): {aws_n:,} manifests, "
      f"{3 * aws_n:,} blobs, generated in {gen.get('aws', {}).get('seconds', 0):.0f} s. Every call the SDKs made, by operation "
      "(moto's clock says nothing of DynamoDB's; the counts do).")
    p("")
    CASES = cases(aws_del)
    p("| run | wall time (moto) | GC's count: metadata / blob store | DynamoDB calls | S3 calls | result |")
    p("|---|---:|---:|---|---|---|")
    for r in aws:
        fmt = lambda d: ", ".join(f"{k} {v:,}" for k, v in sorted(d.items())) or "none"
        p(f"| wharf {CASES[r['case']]} | {secs(r['seconds'])} | {r['metadata_calls']:,} / {r['blob_calls']:,} | "
          f"{fmt(r['sdk_calls']['dynamodb'])} | {fmt(r['sdk_calls']['s3'])} | {collected(r)} |")

    # List prices, us-east-1, on-demand: DynamoDB $0.125 per million read request units and
    # $0.625 per million write request units (a transactional write costs 2 units per item);
    # S3 LIST $0.005 per 1,000, GET/HEAD $0.0004 per 1,000, DELETE free; Lambda arm64
    # $0.0000133334 per GB-second and $0.20 per million requests.
    READS = {"GetItem", "Query", "BatchGetItem", "Scan"}
    def cost(r, ms_per_call=10, items_per_transaction=3):
        short = lambda d: {k.split(".")[-1]: v for k, v in d.items()}
        ddb, s3 = short(r["sdk_calls"]["dynamodb"]), short(r["sdk_calls"]["s3"])
        rru = sum(v for k, v in ddb.items() if k in READS)
        wru = sum(v for k, v in ddb.items() if k not in READS and k != "TransactWriteItems")
        wru += 2 * items_per_transaction * ddb.get("TransactWriteItems", 0)
        usd = rru * 0.125e-6 + wru * 0.625e-6
        usd += s3.get("ListObjectsV2", 0) * 0.005e-3
        usd += (s3.get("GetObject", 0) + s3.get("HeadObject", 0)) * 0.0004e-3
        calls = sum(ddb.values()) + sum(s3.values())
        lambda_s = calls * ms_per_call / 1000
        usd += lambda_s * 0.5 * 0.0000133334 + 0.20e-6 * max(1, lambda_s / 840)
        return usd, lambda_s
    p("")
    p("Cost of a daily collection at list prices (us-east-1, on-demand; every call taken as one item of ≤1 KB, "
      "a transaction as 3 items; the jobs Lambda at 512 MB arm64, 10 ms per call):")
    p("")
    for r in aws:
        if r["case"] == "verify":
            continue
        usd, s = cost(r)
        p(f"- {CASES[r['case']]}: **${usd:.6f}** a run (Lambda ≈ {s:.1f} s), ${usd * 30:.4f} a month.")
    v = next((r for r in aws if r["case"] == "verify"), None)
    if v:
        usd, s = cost(v)
        per = usd / max(1, aws_n) * n
        p(f"- {CASES['verify']}: ${usd:.4f} on {aws_n:,} manifests, so about ${per:.2f} a run at {n:,} "
          "(it reads everything: an occasional check, not a schedule).")
print("\n".join(out))
