// GCS JSON API emulator: firebase-tools' Cloud Storage emulator started without
// `firebase emulators:start` (that path needs Java >= 21 and downloads a rules jar).
// GCS JSON API routes (/storage/v1, /upload/storage/v1, /download/storage/v1) use the
// admin storage layer, so no security-rules runtime is needed.
//
// Ours on top: the emulator ignores ifGenerationMatch, so uploads carrying it
// pass through a precondition check first (412 conditionNotMet unless the
// object's generation is the one asked for; 0 = the object must not exist),
// serialised per object so two conditional uploads cannot both pass, and
// delayed until Date.now() has moved past the current generation (the
// emulator's generations are Date.now(): two uploads in one millisecond
// would otherwise share one, and a stale If-Match would match).
// Env: GCS_HOST (127.0.0.1), GCS_PORT (9199), GCS_PROJECT, TOOLS (dir with node_modules)
const path = require("path");
const tools = process.env.TOOLS || __dirname;
const base = path.dirname(require.resolve("firebase-tools/package.json", { paths: [tools] }));
const { StorageEmulator } = require(base + "/lib/emulator/storage");
const { createApp } = require(base + "/lib/emulator/storage/server");
const { EmulatorRegistry } = require(base + "/lib/emulator/registry");
const host = process.env.GCS_HOST || "127.0.0.1";
const port = Number(process.env.GCS_PORT || 9199);
const projectId = process.env.GCS_PROJECT || "demo-test";
const queues = new Map(); // "bucket/object" -> tail of its promise chain
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function currentGeneration(bucketId, name) {
  try {
    const r = await emu.adminStorageLayer.getObject({ bucketId, decodedObjectId: name });
    return String(r.metadata.generation);
  } catch (e) {
    return "0"; // not found
  }
}

function conditional(req, res, next) {
  const m = /^\/upload\/storage\/v1\/b\/([^/]+)\/o$/.exec(req.path);
  const want = req.query.ifGenerationMatch;
  if (req.method !== "POST" || !m || want === undefined || !req.query.name) return next();
  const key = m[1] + "/" + req.query.name;
  let release;
  const mine = new Promise((r) => (release = r));
  const prev = queues.get(key) || Promise.resolve();
  const tail = prev.then(() => mine);
  queues.set(key, tail);
  const done = () => {
    release();
    if (queues.get(key) === tail) queues.delete(key);
  };
  res.on("finish", done);
  res.on("close", done);
  prev.then(async () => {
    const cur = await currentGeneration(m[1], req.query.name);
    if (cur !== String(want)) {
      res.status(412).json({ error: { code: 412, message: "conditionNotMet",
        errors: [{ reason: "conditionNotMet", message: `generation is ${cur}, not ${want}` }] } });
      return;
    }
    while (Date.now() <= Number(cur)) await sleep(1);
    next();
  });
}

const emu = new StorageEmulator({ projectId, host, port, rules: [], auto_download: false });
(async () => {
  EmulatorRegistry.set("storage", emu); // needed for selfLink/mediaLink host:port
  const app = await createApp(projectId, emu);
  const express = require(require.resolve("express", { paths: [base] }));
  const outer = express();
  outer.use(conditional);
  outer.use(app);
  const server = outer.listen(port, host, () =>
    console.log(`gcs emulator listening on http://${host}:${port}`));
  const stop = () => server.close(() => process.exit(0));
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
})().catch((e) => { console.error(e); process.exit(1); });
