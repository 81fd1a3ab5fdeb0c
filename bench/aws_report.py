#!/usr/bin/env python3
"""Turns bench/aws.sh's raw results into the markdown report for BENCHMARKS.md.

usage: aws_report.py RESULTS_DIR REFERENCE_VERSION

Prices are AWS list prices for us-east-1 (on-demand, as published in 2025; they are
inputs, change them here): the cost per million pulls is arithmetic on the counted calls,
not a measurement of a bill.
"""
import json
import os
import platform
import statistics
import subprocess
import sys
import time

PRICE = {  # USD per million
    "lambda_request": 0.20,
    "lambda_gb_s": 0.0000133334 * 1e6,  # arm64, per GB-second
    "apigw_http": 1.00,  # HTTP API, first 300 M requests; a function URL costs nothing
    "ddb_read": 0.125,  # on-demand read request unit (≤ 4 KB strongly consistent)
    "ddb_write": 0.625,  # on-demand write request unit (≤ 1 KB)
    "s3_get": 0.40,  # GET, HEAD and other reads
    "s3_put": 5.00,  # PUT, COPY, POST, LIST
}
DDB_READS = {"GetItem", "Query", "BatchGetItem", "Scan"}
S3_GET_CLASS = {"GetObject", "HeadObject", "HeadBucket", "ListParts"}


def load(results):
    rows = []
    with open(os.path.join(results, "calls.tsv")) as f:
        for line in f:
            target, label, reps, reqs, sdk, s3 = line.rstrip("\n").split("\t")
            rows.append({
                "target": target, "label": label, "reps": int(reps), "reqs": int(reqs),
                "sdk": json.loads(sdk) if sdk != "null" else None, "s3": json.loads(s3 or "{}"),
            })
    return rows


def per(n, reps):
    q = n / reps
    return str(int(q)) if q == int(q) else f"{q:.1f}"


def fmt(counts, reps):
    if not counts:
        return "0"
    return ", ".join(f"{k} {per(v, reps)}" for k, v in sorted(counts.items()))


def split_sdk(sdk):
    ddb = {k.split(".", 1)[1]: v for k, v in sdk.items() if k.startswith("DynamoDB.")}
    s3 = {k.split(".", 1)[1]: v for k, v in sdk.items() if k.startswith("S3.")}
    return ddb, s3


def split_proxy(s3):
    server = {k: v for k, v in s3.items() if not k.startswith("presigned:")}
    presigned = {k.split(":", 1)[1]: v for k, v in s3.items() if k.startswith("presigned:")}
    return server, presigned


def read_lines(results, name):
    path = os.path.join(results, name)
    if not os.path.exists(path):
        return []
    return [line.split() for line in open(path) if line.strip()]


def main():
    results, ref_version = sys.argv[1], sys.argv[2]
    rows = load(results)
    out = []
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    out.append(f"Run of {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, tree {rev}, "
               f"{os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}; "
               f"reference: {ref_version or 'docker-registry (version unknown)'}, s3 driver, "
               f"redirects on. wharf's S3 is s3s-fs, Distribution's is moto's (its driver needs "
               f"ListMultipartUploads, which s3s-fs lacks), each behind a counting proxy; "
               f"DynamoDB is moto.")
    out.append("")
    out.append("### AWS calls per operation (per repetition)")
    out.append("")
    out.append("| operation | reps | registry | HTTP requests | DynamoDB calls (SDK) | S3 calls by the registry (SDK / proxy) | S3 GETs by the client (presigned) |")
    out.append("|---|---:|---|---:|---|---|---|")
    for r in rows:
        server, presigned = split_proxy(r["s3"])
        if r["sdk"] is not None:
            ddb, s3_sdk = split_sdk(r["sdk"])
            s3_col = f"{fmt(s3_sdk, r['reps'])} / {fmt(server, r['reps'])}"
            ddb_col = fmt(ddb, r["reps"])
            who = "wharf"
        else:
            s3_col = fmt(server, r["reps"])
            ddb_col = "n/a"
            who = "Distribution"
        out.append(f"| {r['label']} | {r['reps']} | {who} | {per(r['reqs'], r['reps'])} | {ddb_col} | {s3_col} | {fmt(presigned, r['reps'])} |")
    out.append("")

    # Cost per million pulls, from the docker pull rows.
    cold = read_lines(results, "cold.txt")
    warm_ms = [float(c[3]) * 1000 for c in cold if c[0] == "wharf"]
    billed_ms = max(1, round(statistics.median(warm_ms))) if warm_ms else 20
    pulls = {r["target"]: r for r in rows if r["label"].startswith("docker pull")}
    if "wharf" in pulls:
        w = pulls["wharf"]
        ddb, s3_sdk = split_sdk(w["sdk"] or {})
        server, presigned = split_proxy(w["s3"])
        reads = sum(v for k, v in ddb.items() if k in DDB_READS)
        writes = sum(v for k, v in ddb.items() if k not in DDB_READS)
        s3_get = sum(v for k, v in server.items() if k in S3_GET_CLASS) + sum(presigned.values())
        s3_put = sum(v for k, v in server.items() if k not in S3_GET_CLASS)
        lam = w["reqs"]
        gb_s = lam * billed_ms / 1000 * 0.125
        items = [
            ("Lambda requests", lam, PRICE["lambda_request"]),
            (f"Lambda duration, 128 MB arm64, {billed_ms} ms each (GB-s)", gb_s, PRICE["lambda_gb_s"]),
            ("DynamoDB reads (RRU)", reads, PRICE["ddb_read"]),
            ("DynamoDB writes (WRU)", writes, PRICE["ddb_write"]),
            ("S3 GET/HEAD (registry + presigned)", s3_get, PRICE["s3_get"]),
            ("S3 PUT/LIST class", s3_put, PRICE["s3_put"]),
        ]
        out.append(f"### Cost per million pulls ({w['label']}, list prices, us-east-1)")
        out.append("")
        out.append("| item | per pull | USD per million | USD per million pulls |")
        out.append("|---|---:|---:|---:|")
        total = 0.0
        for name, n, price in items:
            cost = n * price
            total += cost
            out.append(f"| {name} | {n:g} | {price:g} | {cost:.2f} |")
        out.append(f"| **wharf on Lambda + function URL** | | | **{total:.2f}** |")
        out.append(f"| wharf on Lambda + API Gateway HTTP API (+{lam} requests) | | {PRICE['apigw_http']:g} | {total + lam * PRICE['apigw_http']:.2f} |")
        if "reference" in pulls:
            rf = pulls["reference"]
            server, presigned = split_proxy(rf["s3"])
            g = sum(v for k, v in server.items() if k in S3_GET_CLASS) + sum(presigned.values())
            p = sum(v for k, v in server.items() if k not in S3_GET_CLASS)
            ref_cost = g * PRICE["s3_get"] + p * PRICE["s3_put"]
            out.append(f"| Distribution on S3: S3 requests alone ({g} GET/HEAD, {p} LIST/PUT class per pull; its servers not counted) | | | {ref_cost:.2f} |")
        out.append("| ECR: no charge per API request or pull | | | 0.00 |")
        out.append("")
        out.append("Not in the table because the same for all: data transfer out (0.09 USD/GB to the "
                   "internet from S3 and from ECR alike; free within a region). Storage differs: "
                   "S3 Standard 0.023 USD/GB-month against ECR's 0.10.")
        out.append("")

    out.append("### The Lambda function")
    out.append("")
    out.append("| measure | wharf | reference (docker-registry process) | goal |")
    out.append("|---|---:|---:|---|")
    for arch, zbytes, bbytes in read_lines(results, "zip.txt"):
        out.append(f"| zipped `bootstrap`, {arch} (unzipped) | {int(zbytes) / 1e6:.2f} MB ({int(bbytes) / 1e6:.2f} MB) | | < 6 MB |")
    measured = read_lines(results, "lambda-bin.txt")
    if measured:
        shipped = measured[0][0].endswith("/bootstrap")
        out.append(f"| function measured below | {'the x86_64 bootstrap from the zip' if shipped else 'target/release/wharf-lambda-api (no zip built)'} | | |")
    ref_cold = [int(c[1]) / 1000 for c in cold if c[0] == "reference"]
    w_cold = [int(c[1]) / 1000 for c in cold if c[0] == "wharf"]
    codes = sorted({c[2] for c in cold if c[0] == "wharf"})
    if w_cold:
        out.append(f"| cold start to first response (manifest GET by tag, with token), median of {len(w_cold)}, min–max | "
                   f"{statistics.median(w_cold):.0f} ms ({min(w_cold):.0f}–{max(w_cold):.0f}); status {'/'.join(codes)} | "
                   f"{statistics.median(ref_cold):.0f} ms ({min(ref_cold):.0f}–{max(ref_cold):.0f}) | |"
                   if ref_cold else "| |")
        out.append(f"| the next (warm) manifest GET, median | {statistics.median(warm_ms):.1f} ms | | |")
    for who, kb, ok in read_lines(results, "mem.txt"):
        label = "wharf" if who.startswith("wharf") else "reference"
        if label == "wharf":
            wharf_mem = f"{int(kb) / 1024:.1f} MB ({ok})"
        else:
            ref_mem = f"{int(kb) / 1024:.1f} MB ({ok})"
    if read_lines(results, "mem.txt"):
        out.append(f"| peak memory (VmHWM) after a 100 MB push in 5 MiB chunks + read-back | {wharf_mem} | {ref_mem} | fits 128 MB |")
    print("\n".join(out))


if __name__ == "__main__":
    main()
