// Runs the built Worker in workerd through Miniflare (the runtime `wrangler dev` uses,
// ready in well under a second), with local R2 and D1 persisted under a directory, the
// D1 migrations applied, and the scheduled handler reachable at /cdn-cgi/handler/scheduled.
// Prints "ready <url>" and stays up until SIGTERM/SIGINT, when it disposes workerd.
//   node worker_serve.mjs BUILD_DIR MIGRATIONS_DIR PERSIST_DIR PORT [NAME=VALUE…]
// NAME=VALUE pairs become the Worker's variables (secrets look the same to it).
import { createRequire } from "node:module";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";

const require = createRequire(path.join(process.env.WHARF_NODE_MODULES, "x.js"));
const { Miniflare } = require("miniflare");

const [buildDir, migrationsDir, persist, port, ...pairs] = process.argv.slice(2);
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
// The migrations in name order, each once (recorded in d1_migrations, as
// `wrangler d1 migrations apply` records them), one statement at a time: a restart on the
// same state applies only what is new.
await db.prepare(
  "CREATE TABLE IF NOT EXISTS d1_migrations (id INTEGER PRIMARY KEY AUTOINCREMENT, " +
  "name TEXT UNIQUE, applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL)").run();
const applied = new Set((await db.prepare("SELECT name FROM d1_migrations").all()).results.map((r) => r.name));
for (const name of readdirSync(migrationsDir).filter((f) => f.endsWith(".sql")).sort()) {
  if (applied.has(name)) continue;
  const statements = readFileSync(path.join(migrationsDir, name), "utf8")
    .split("\n").filter((l) => !l.trim().startsWith("--")).join("\n")
    .split(";").map((s) => s.trim()).filter(Boolean);
  await db.batch([
    ...statements.map((s) => db.prepare(s)),
    db.prepare("INSERT INTO d1_migrations (name) VALUES (?1)").bind(name),
  ]);
}
console.log(`ready ${url}`);
