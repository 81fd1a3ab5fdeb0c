#!/usr/bin/env python3
"""The Worker measured: wasm size, cold start under workerd, manifest GET req/s next to
`wharf serve` and CNCF Distribution (Debian's docker-registry) in the same run.

Driven by bench/worker.sh (which builds the shipped Worker, build/, without the test routes).
Prints a markdown report on stdout, progress on stderr; raw numbers in
target/bench-worker.json. A report: nothing passes or fails on a number.

  * size: index_bg.wasm after wasm-opt, raw and gzip -9, and the bundle Cloudflare counts
    against the plan's limit (index.js + wasm, gzipped);
  * cold start, BENCH_COLD rounds on a populated state: exec of workerd (Miniflare) to the
    first answer of an authenticated manifest GET (module compile, isolate, the registry's
    first D1 reads), and that first request's own latency against a warm one;
  * push of a BENCH_PUSH_MB (90) MiB layer as docker sends it (one chunked PATCH) to the
    Worker and to wharf serve: MB/s, server CPU, peak RSS and RSS over the PATCH (flat =
    streamed: an isolate has 128 MB);
  * manifest GET by tag and by digest with a token (wrk, BENCH_CONNS connections,
    BENCH_DURATION seconds): req/s, p50/p99, and CPU per request of the server processes
    (workerd plus its Miniflare parent; wharf; docker-registry).
Local workerd is one process with one isolate on this machine: it says what the code costs,
not how Cloudflare's edge scales.
"""
import gzip, json, os, subprocess, sys, time
import http.client

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (the harness of bench/run.sh: Registry, seed, run_load, machine)
from bench import ADMIN_PASSWORD, REPO, ROOT, log  # noqa: E402

BUILD = os.environ.get("WORKER_BUILD", os.path.join(ROOT, "functions/worker/build"))
COLD = int(os.environ.get("BENCH_COLD", "5"))
PUSH_MB = int(os.environ.get("BENCH_PUSH_MB", "90"))
NODE_MODULES = os.path.join(ROOT, "target/node/node_modules")
SCHEMA = os.path.join(ROOT, "functions/worker/migrations/0001_init.sql")


def children(pid):
    try:
        return [int(p) for p in open(f"/proc/{pid}/task/{pid}/children").read().split()]
    except OSError:
        return []


def tree(pid):
    out = [pid]
    for c in children(pid):
        out += tree(c)
    return out


class Worker(bench.Registry):
    """The built Worker in workerd through Miniflare (tests/e2e/worker_serve.mjs)."""

    def __init__(self, name, work, state):
        super().__init__(name, "worker", work, auth=True)
        self.state = state

    def argv_env(self):
        env = dict(os.environ, WHARF_NODE_MODULES=NODE_MODULES)
        argv = ["node", os.path.join(ROOT, "tests/e2e/worker_serve.mjs"), BUILD, SCHEMA, self.state,
                str(self.port), f"WHARF_ADMIN_PASSWORD={ADMIN_PASSWORD}", "WHARF_TOKEN_TTL_SECS=3600",
                "WHARF_LOG=warn"]
        return argv, env

    @property
    def pid(self):
        """workerd's pid (Miniflare's node process starts it): where requests run."""
        for p in tree(self.proc.pid):
            try:
                if open(f"/proc/{p}/comm").read().startswith("workerd"):
                    return p
            except OSError:
                pass
        return self.proc.pid

    def cpu(self):
        """CPU ticks of Miniflare's node process and workerd under it."""
        return sum(bench.cpu_ticks(p) for p in tree(self.proc.pid))


def timed_get(port, path, headers):
    t0 = time.perf_counter()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    c.request("GET", path, headers=headers)
    r = c.getresponse()
    r.read()
    c.close()
    return r.status, (time.perf_counter() - t0) * 1000


def cold_starts(work, state, token):
    """exec → first manifest answer, and the first request's own latency, COLD times."""
    rounds = []
    path = f"/v2/{REPO}/manifests/oci"
    headers = {"Authorization": f"Bearer {token}", "Accept": bench.ACCEPT}
    for i in range(COLD):
        w = Worker(f"worker-cold{i}", work, state)
        argv, env = w.argv_env()
        t0 = time.perf_counter()
        w.proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = w.proc.stdout.readline()
        if not line.startswith("ready"):
            raise SystemExit(f"the Worker did not start: {line!r}")
        ready_ms = (time.perf_counter() - t0) * 1000
        st, first_ms = timed_get(w.port, path, headers)
        total_ms = (time.perf_counter() - t0) * 1000
        warm = sorted(timed_get(w.port, path, headers)[1] for _ in range(20))
        w.stop()
        assert st == 200, ("cold manifest GET", st)
        rounds.append({"ready_ms": ready_ms, "first_request_ms": first_ms, "exec_to_answer_ms": total_ms,
                       "warm_median_ms": warm[len(warm) // 2]})
        log(f"cold start {i + 1}/{COLD}: {total_ms:.0f} ms to the first manifest, first request {first_ms:.1f} ms")
    return rounds


def sizes():
    wasm = open(os.path.join(BUILD, "index_bg.wasm"), "rb").read()
    js = open(os.path.join(BUILD, "index.js"), "rb").read()
    return {"wasm": len(wasm), "wasm_gz": len(gzip.compress(wasm, 9)), "js": len(js),
            "bundle_gz": len(gzip.compress(wasm, 9)) + len(gzip.compress(js, 9))}


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def wasm_hash(runs=5):
    """SHA-256 of pushed bytes as the Worker's wasm does it (bench/wasm_hash.js): median of runs."""
    module = os.path.join(ROOT, "target", "bench-wasm-hash", "wharf_wasm_hash.js")
    out = []
    for i in range(runs):
        r = subprocess.run(["node", os.path.join(ROOT, "bench", "wasm_hash.js"), module, "256", "64"],
                           capture_output=True, text=True, check=True)
        out.append(json.loads(r.stdout))
        log(f"wasm SHA-256 {i + 1}/{runs}: {out[-1]['wasm_mb_s']:.0f} MB/s (node's OpenSSL {out[-1]['node_openssl_mb_s']:.0f} MB/s)")
    return {"runs": out, "node": out[0]["node"],
            "wasm_mb_s": median(r["wasm_mb_s"] for r in out),
            "wasm_cpu_ms_per_100mb": median(r["wasm_cpu_ms_per_100mb"] for r in out),
            "node_openssl_mb_s": median(r["node_openssl_mb_s"] for r in out)}


def main():
    res = {"machine": bench.machine(), "sizes": sizes(), "duration_s": bench.DURATION, "connections": bench.CONNS}
    rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    res["tree"] = rev
    res["hash"] = wasm_hash()
    work = os.path.join(ROOT, "target", "bench-worker")
    subprocess.run(["rm", "-rf", work])
    os.makedirs(work)
    state = os.path.join(work, "state")
    bench.WHARF_HAS_AUTH = True
    worker = Worker("worker", work, state)
    wharf = bench.Registry("wharf", "wharf", work, auth=True)
    ref = bench.Registry("distribution", "distribution", work)
    regs = [worker, wharf, ref]
    try:
        for reg in regs:
            log(f"starting {reg.name}")
            reg.start()
            if reg.auth:
                reg.login()
            res.setdefault(reg.name, {})["digests"] = bench.seed(reg)
        digest = res["worker"]["digests"]["oci"]
        cases = [("GET by tag", f"/v2/{REPO}/manifests/oci"), ("GET by digest", f"/v2/{REPO}/manifests/{digest}"),
                 ("version check /v2/ (token verified, no storage call)", "/v2/")]
        for label, path in cases:
            for reg in regs:
                log(f"manifest {label} on {reg.name}: {bench.DURATION:.0f} s at {bench.CONNS} connections")
                if isinstance(reg, Worker):
                    before = reg.cpu()
                    r = bench.run_load(reg, "wrk", "GET", path)
                    r["server_cpu_us_per_req"] = (reg.cpu() - before) / bench.CLK * 1e6 / max(r["requests"], 1)
                else:
                    r = bench.run_load(reg, "wrk", "GET", path)
                res[reg.name][label] = r
        log(f"writing a {PUSH_MB} MiB random layer")
        layer = os.path.join(work, "layer.bin")
        digest = bench.make_layer(layer, PUSH_MB)
        for reg in (worker, wharf):
            log(f"push of the {PUSH_MB} MiB layer in one chunked PATCH (docker) to {reg.name}")
            res[reg.name]["push"] = bench.push(reg, layer, digest, PUSH_MB << 20, "chunked")
        # The same blob read back: on the Worker no wasm runs per byte (R2's stream is handed
        # to the response), so this is what the local R2 simulator costs for 90 MiB.
        for reg in (worker, wharf):
            c0 = bench.cpu_ticks(reg.pid)
            code, got, _ = bench.curl([*bench.curl_auth(reg), "-L", reg.url(f"/v2/{REPO}/blobs/{digest}")])
            assert code == 200 and got == PUSH_MB << 20, (reg.name, code, got)
            res[reg.name]["pull_cpu_s"] = (bench.cpu_ticks(reg.pid) - c0) / bench.CLK
        os.remove(layer)
        token = worker.token
        worker.stop()
        res["cold"] = cold_starts(work, state, token)
    finally:
        for reg in regs:
            reg.stop()
    json.dump(res, open(os.path.join(ROOT, "target", "bench-worker.json"), "w"), indent=1)
    report(res)


def report(res):
    m, s = res["machine"], res["sizes"]
    p = print
    p(f"Run {m['date']} on {m['cpu']} ({m['cores']} cores, {m['mem_gib']} GiB), tree {res['tree']}; "
      f"workerd from wrangler 4.86 (Miniflare 4), wharf serve on fs+redb, Distribution 2.8 on the file system; "
      f"wrk, {res['connections']} connections, {res['duration_s']:.0f} s per run, token auth on wharf and the Worker.")
    p()
    p("| measure | Worker (workerd) | wharf serve | Distribution | goal |")
    p("|---|---|---|---|---|")
    for label in ("GET by tag", "GET by digest", "version check /v2/ (token verified, no storage call)"):
        w, l, d = res["worker"][label], res["wharf"][label], res["distribution"][label]
        what = label if label.startswith("version") else f"manifest {label}"
        p(f"| {what}: req/s | {w['rps']:,.0f} | {l['rps']:,.0f} | {d['rps']:,.0f} | |")
        p(f"| {what}: p50 / p99 | {w['p50_ms']:.2f} / {w['p99_ms']:.2f} ms | {l['p50_ms']:.2f} / {l['p99_ms']:.2f} ms | "
          f"{d['p50_ms']:.2f} / {d['p99_ms']:.2f} ms | |")
        p(f"| {what}: server CPU per request | {w['server_cpu_us_per_req']:.0f} µs | {l['server_cpu_us_per_req']:.0f} µs | "
          f"{d['server_cpu_us_per_req']:.0f} µs | |")
        bad = [r["non_2xx"] + r["errors"] for r in (w, l, d)]
        if any(bad):
            p(f"| {what}: non-2xx or socket errors | {bad[0]} | {bad[1]} | {bad[2]} | 0 |")
    w, l = res["worker"]["push"], res["wharf"]["push"]
    p(f"| push of a {PUSH_MB} MiB layer in one PATCH (docker): MB/s | {w['mbps']:.0f} | {l['mbps']:.0f} | | |")
    p(f"| … server CPU (user + sys) | {w['server_user_s'] + w['server_sys_s']:.2f} s | {l['server_user_s'] + l['server_sys_s']:.2f} s | | "
      f"within `cpu_ms` (300 s on Paid) |")
    p(f"| … the same blob pulled back: server CPU (Worker: R2's stream handed on, no wasm per byte) | "
      f"{res['worker']['pull_cpu_s']:.2f} s | {res['wharf']['pull_cpu_s']:.2f} s | | |")
    h = res["hash"]
    p(f"| … of which the Worker's own SHA-256 (wasm under V8 {h['node']}, copy into wasm memory included; "
      f"native OpenSSL {h['node_openssl_mb_s']:,.0f} MB/s): MB/s, median of {len(h['runs'])} | {h['wasm_mb_s']:.0f} | | | |")
    per_100mb_s = h['wasm_cpu_ms_per_100mb'] / 1000
    p(f"| … its CPU per 100 MB pushed | {per_100mb_s:.2f} s | | | "
      f"within `cpu_ms` (300 s on Paid: {300 / per_100mb_s / 10:.0f} GB of hashing per request) |")
    p(f"| … peak RSS of the server process (workerd: the runtime and its isolate) | {w['peak_rss_mib']:.0f} MiB | {l['peak_rss_mib']:.0f} MiB | | "
      f"flat: streamed, not buffered (isolate limit 128 MB) |")
    p(f"| … RSS at each quarter of the PATCH | {' / '.join(str(x) for x in w['rss_quarters_mib'])} MiB | "
      f"{' / '.join(str(x) for x in l['rss_quarters_mib'])} MiB | | |")
    c = res["cold"]
    p(f"| wasm after wasm-opt (gzip -9) | {s['wasm'] / 1e6:.2f} MB ({s['wasm_gz'] / 1e6:.2f} MB) | | | < 1.5 MB gzipped |")
    p(f"| bundle (index.js + wasm), gzipped | {s['bundle_gz'] / 1e6:.2f} MB | | | 3 MB Free, 10 MB Paid |")
    p(f"| cold start: exec of workerd to the first manifest answer (median of {len(c)}) | "
      f"{median(x['exec_to_answer_ms'] for x in c):.0f} ms | | | |")
    p(f"| cold start: the first request (isolate's registry built, D1 reads) vs warm, median | "
      f"{median(x['first_request_ms'] for x in c):.1f} ms vs {median(x['warm_median_ms'] for x in c):.1f} ms | | | |")


if __name__ == "__main__":
    main()
