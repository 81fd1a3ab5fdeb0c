// Runs the built Worker in workerd through Miniflare (the runtime `wrangler dev` uses,
// ready in well under a second), with local R2 and D1 persisted under a directory, the
// D1 schema applied, and the scheduled handler reachable at /cdn-cgi/handler/scheduled.
// Prints "ready <url>" and stays up until SIGTERM/SIGINT, when it disposes workerd.
//   node worker_serve.mjs BUILD_DIR SCHEMA_SQL PERSIST_DIR PORT [NAME=VALUE…]
// NAME=VALUE pairs become the Worker's variables (secrets look the same to it).
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import path from "node:path";

const require = createRequire(path.join(process.env.WHARF_NODE_MODULES, "x.js"));
const { Miniflare } = require("miniflare");

const [buildDir, schemaPath, persist, port, ...pairs] = process.argv.slice(2);
const bindings = Object.fromEntries(pairs.map((p) => [p.slice(0, p.indexOf("=")), p.slice(p.indexOf("=") + 1)]));

const mf = new Miniflare({
  modules: true,
  scriptPath: path.join(buildDir, "index.js"),
  modulesRules: [{ type: "CompiledWasm", include: ["**/*.wasm"] }],
  compatibilityDate: "2025-09-01",
  r2Buckets: ["BLOBS"],
  d1Databases: ["DB"],
  r2Persist: path.join(persist, "r2"),
  d1Persist: path.join(persist, "d1"),
  bindings,
  unsafeTriggerHandlers: true,
  // workerd's own output (the Worker's console) to our stderr: stdout carries only "ready".
  handleRuntimeStdio(stdout, stderr) {
    stdout.pipe(process.stderr);
    stderr.pipe(process.stderr);
  },
  cf: false,
  host: "127.0.0.1",
  port: Number(port),
});

let stopping = false;
async function stop() {
  if (stopping) return;
  stopping = true;
  await mf.dispose().catch(() => {});
  process.exit(0);
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);

const url = await mf.ready;
const db = await mf.getD1Database("DB");
// The migration, one statement at a time (what `wrangler d1 migrations apply` does).
const statements = readFileSync(schemaPath, "utf8")
  .split("\n").filter((l) => !l.trim().startsWith("--")).join("\n")
  .split(";").map((s) => s.trim()).filter(Boolean)
  .map((s) => s.replace(/^CREATE (TABLE|INDEX) (?!IF NOT EXISTS)/, "CREATE $1 IF NOT EXISTS "));
await db.batch(statements.map((s) => db.prepare(s)));
console.log(`ready ${url}`);
