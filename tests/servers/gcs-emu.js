// GCS JSON API emulator: firebase-tools' Cloud Storage emulator started without
// `firebase emulators:start` (that path needs Java >= 21 and downloads a rules jar).
// GCS JSON API routes (/storage/v1, /upload/storage/v1, /download/storage/v1) use the
// admin storage layer, so no security-rules runtime is needed.
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
const emu = new StorageEmulator({ projectId, host, port, rules: [], auto_download: false });
(async () => {
  EmulatorRegistry.set("storage", emu); // needed for selfLink/mediaLink host:port
  const app = await createApp(projectId, emu);
  const server = app.listen(port, host, () =>
    console.log(`gcs emulator listening on http://${host}:${port}`));
  const stop = () => server.close(() => process.exit(0));
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
})().catch((e) => { console.error(e); process.exit(1); });
