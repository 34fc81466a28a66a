// Runner for @20minutes/s3rver (its npm package ships no bin/ file).
// Env: S3_HOST (127.0.0.1), S3_PORT (4568), S3_DIR, S3_BUCKETS (comma list), TOOLS
const path = require("path");
const tools = process.env.TOOLS || __dirname;
const S3rver = require(require.resolve("@20minutes/s3rver", { paths: [tools] }));
const buckets = (process.env.S3_BUCKETS || "testbucket").split(",").filter(Boolean);
new S3rver({
  address: process.env.S3_HOST || "127.0.0.1",
  port: Number(process.env.S3_PORT || 4568),
  directory: process.env.S3_DIR || "/tmp/s3rver-data",
  silent: !process.env.S3_VERBOSE,
  configureBuckets: buckets.map((name) => ({ name, configs: [] })),
}).run().then(({ address, port }) => console.log(`s3rver listening on ${address}:${port}`));
