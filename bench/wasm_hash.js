// Times wharf-core's SHA-256 built for wasm32 as the Worker is (bench/wasm-hash, through
// wasm-bindgen's copy-in glue) under this node's V8, and node's own OpenSSL SHA-256 on the
// same bytes in the same run. Prints one JSON object. A measurement, not a test: the only
// failure is a wrong digest.
//   node bench/wasm_hash.js <wasm-bindgen nodejs module> [MiB] [chunk KiB]
"use strict";
const crypto = require("node:crypto");
const { Sha256 } = require(process.argv[2]);
const mib = Number(process.argv[3] || 256);
const chunkKiB = Number(process.argv[4] || 64);
const chunk = crypto.randomBytes(chunkKiB * 1024);
const rounds = Math.floor((mib * 1024) / chunkKiB);

function time(fn) {
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const out = fn();
  const wall = Number(process.hrtime.bigint() - t0) / 1e6;
  const c = process.cpuUsage(c0);
  return { out, wall_ms: wall, cpu_ms: (c.user + c.system) / 1000 };
}
function wasmHash() {
  const h = new Sha256();
  for (let i = 0; i < rounds; i++) h.update(chunk);
  return h.finish();
}
function nodeHash() {
  const h = crypto.createHash("sha256");
  for (let i = 0; i < rounds; i++) h.update(chunk);
  return "sha256:" + h.digest("hex");
}
wasmHash(); // warm-up: compile and tier up, as a warm isolate has
const wasm = time(wasmHash);
const native = time(nodeHash);
if (wasm.out !== native.out) {
  console.error(`digest mismatch: wasm ${wasm.out}, node ${native.out}`);
  process.exit(1);
}
const bytes = rounds * chunk.length;
const rate = (t) => bytes / 1e6 / (t.cpu_ms / 1000);
console.log(JSON.stringify({
  node: process.version,
  mib: bytes / 1048576,
  chunk_kib: chunkKiB,
  wasm_mb_s: rate(wasm),
  wasm_cpu_ms_per_100mb: (wasm.cpu_ms * 100e6) / bytes,
  node_openssl_mb_s: rate(native),
  digest: wasm.out,
}));
