#!/usr/bin/env node
// Calls every implemented Tailor RPC from Node.js, built from protos/ ALONE (no generated
// code, no Python): proof that any gRPC client can use the API.
//
//   node call_all.js ADDRESS [APPLICATION] USER_ID
//   node call_all.js 127.0.0.1:9000 tailor 17850
//
// Prints one JSON object to stdout: {ok, address, application, user_id, calls: [...], errors: [...]},
// one entry per call with its name, gRPC status code (0 on success) and a summary of the
// response. Exits 0 only when every call behaved as expected: the happy calls succeed and
// MarketingService.Recommend with k=0 answers INVALID_ARGUMENT. Diagnostics go to stderr.
"use strict";

const fs = require("fs");
const path = require("path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const DEADLINE_MS = 120 * 1000;
const PROTOS = path.resolve(__dirname, "..", "..", "protos");
const PROTO_DIR = path.join(PROTOS, "tailor", "v1");

function usage(message) {
  process.stderr.write(`${message}\nusage: node call_all.js ADDRESS [APPLICATION] USER_ID\n`);
  process.exit(2);
}

const [address, applicationArg, userId] = process.argv.slice(2);
if (!address) usage("missing ADDRESS (host:port)");
if (!userId) usage("missing USER_ID");
const application = applicationArg || "tailor";

// --- Load the contract from the .proto files ------------------------------------------------

const protoFiles = fs
  .readdirSync(PROTO_DIR)
  .filter((name) => name.endsWith(".proto"))
  .sort()
  .map((name) => path.join("tailor", "v1", name)); // relative to includeDirs, like the imports
const definition = protoLoader.loadSync(protoFiles, {
  includeDirs: [PROTOS],
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
});
const tailor = grpc.loadPackageDefinition(definition).tailor.v1;

// One channel shared by every service client.
const embedding = new tailor.EmbeddingService(address, grpc.credentials.createInsecure());
const channelOverride = { channelOverride: embedding.getChannel() };
const insecure = grpc.credentials.createInsecure();
const retrieval = new tailor.RetrievalService(address, insecure, channelOverride);
const ranking = new tailor.RankingService(address, insecure, channelOverride);
const copy = new tailor.CopyService(address, insecure, channelOverride);
const marketing = new tailor.MarketingService(address, insecure, channelOverride);

function metadata() {
  const md = new grpc.Metadata();
  md.set("application", application);
  return md;
}

// Promise around one unary call: resolves {code: 0, response} or {code, details} — never rejects.
function unary(client, method, request) {
  return new Promise((resolve) => {
    const deadline = new Date(Date.now() + DEADLINE_MS);
    const started = process.hrtime.bigint();
    client[method](request, metadata(), { deadline }, (error, response) => {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      if (error) {
        resolve({ code: error.code, details: error.details, ms, response: null });
      } else {
        resolve({ code: grpc.status.OK, details: "", ms, response });
      }
    });
  });
}

function waitForReady(client, ms) {
  return new Promise((resolve, reject) => {
    client.waitForReady(new Date(Date.now() + ms), (error) => (error ? reject(error) : resolve()));
  });
}

// --- Summaries: small, JSON-friendly views of each response ---------------------------------

function summarizeCopyVariant(v) {
  return v
    ? {
        item_id: v.item_id,
        title: v.title,
        body: v.body,
        call_to_action: v.call_to_action,
        source: v.source,
        fallback: v.fallback,
        problems: v.problems,
      }
    : null;
}

function summarizeRanked(items) {
  return items.map((r) => ({
    item_id: r.item ? r.item.item_id : "",
    title: r.item ? r.item.title : "",
    score: r.score,
    reasons: r.reasons,
  }));
}

const summarize = {
  Embed: (r) => ({
    count: r.vectors.length,
    dimension: r.dimension,
    vector_lengths: r.vectors.map((v) => v.values.length),
    model: r.model,
  }),
  IndexInfo: (r) => ({
    build_id: r.build_id,
    index_type: r.index_type,
    size: Number(r.size), // int64 arrives as a string (longs: String)
    dimension: r.dimension,
    metric: r.metric,
    embedding_model: r.embedding_model,
    built_at: r.built_at,
  }),
  Retrieve: (r) => ({
    count: r.candidates.length,
    item_ids: r.candidates.map((c) => c.item_id),
    scores: r.candidates.map((c) => c.score),
    sources: [...new Set(r.candidates.map((c) => c.source))],
    build_id: r.build_id,
  }),
  Rank: (r) => ({ count: r.items.length, items: summarizeRanked(r.items), ranker: r.ranker, build_id: r.build_id }),
  Generate: (r) => ({
    count: r.variants.length,
    variants: r.variants.map(summarizeCopyVariant),
    model: r.model,
    channel: r.channel,
    language: r.language,
  }),
  Recommend: (r) => ({
    count: r.items.length,
    items: summarizeRanked(r.items),
    profile: r.profile,
    copy: summarizeCopyVariant(r.copy),
    build_id: r.build_id,
  }),
};

// --- The calls, in order ----------------------------------------------------------------------

async function main() {
  const calls = [];
  const errors = [];
  const output = () => ({ ok: errors.length === 0, address, application, user_id: userId, calls, errors });

  try {
    await waitForReady(embedding, 30 * 1000);
  } catch (error) {
    errors.push(`cannot connect to ${address}: ${error.message}`);
    return output();
  }

  // Record one call; `expect` is the status code it must answer; `check` returns a problem or null.
  async function call(name, client, method, request, { expect = grpc.status.OK, check = null } = {}) {
    const result = await unary(client, method, request);
    const entry = { name, code: result.code, ms: Math.round(result.ms) };
    if (result.code === grpc.status.OK) {
      entry.summary = summarize[method](result.response);
    } else {
      entry.details = result.details;
    }
    calls.push(entry);
    if (result.code !== expect) {
      errors.push(`${name}: expected status ${expect}, got ${result.code} (${result.details || "OK"})`);
      return null;
    }
    const problem = check && result.code === grpc.status.OK ? check(result.response) : null;
    if (problem) errors.push(`${name}: ${problem}`);
    return result.response;
  }
  const skipped = (name, why) => {
    calls.push({ name, code: null, skipped: why });
    errors.push(`${name}: skipped, ${why}`);
  };

  const texts = ["white hanging heart t-light holder", "regency cake stand"];
  await call("EmbeddingService.Embed", embedding, "Embed", { texts }, {
    check: (r) =>
      r.vectors.length !== texts.length
        ? `${r.vectors.length} vectors for ${texts.length} texts`
        : r.vectors.some((v) => v.values.length !== r.dimension)
          ? `a vector's length differs from dimension ${r.dimension}`
          : null,
  });

  await call("RetrievalService.IndexInfo", retrieval, "IndexInfo", {}, {
    check: (r) => (Number(r.size) > 0 ? null : "the index is empty"),
  });

  const retrieved = await call(
    "RetrievalService.Retrieve",
    retrieval,
    "Retrieve",
    { user_id: userId, k: 5, exclude_purchased: true },
    { check: (r) => (r.candidates.length > 0 ? null : "no candidates for the user") },
  );

  await call("RetrievalService.Retrieve(text)", retrieval, "Retrieve", { text: texts[0], k: 3 }, {
    check: (r) => (r.candidates.length > 0 ? null : "no candidates for the text"),
  });

  let ranked = null;
  if (retrieved && retrieved.candidates.length > 0) {
    ranked = await call(
      "RankingService.Rank",
      ranking,
      "Rank",
      { user_id: userId, item_ids: retrieved.candidates.map((c) => c.item_id), k: 3 },
      { check: (r) => (r.items.length > 0 ? null : "ranked nothing") },
    );
  } else {
    skipped("RankingService.Rank", "Retrieve returned no item ids to rank");
  }

  if (ranked && ranked.items.length > 0) {
    await call(
      "CopyService.Generate",
      copy,
      "Generate",
      { user_id: userId, item_ids: [ranked.items[0].item.item_id], channel: "CHANNEL_SMS", n_variants: 1 },
      { check: (r) => (r.variants.length === 1 ? null : `${r.variants.length} variants for n_variants 1`) },
    );
  } else {
    skipped("CopyService.Generate", "Rank returned no item to write about");
  }

  await call("MarketingService.Recommend", marketing, "Recommend", { user_id: userId, k: 3, channel: "CHANNEL_PUSH" }, {
    check: (r) => (r.items.length > 0 ? null : "recommended nothing"),
  });

  await call(
    "MarketingService.Recommend(k=0)",
    marketing,
    "Recommend",
    { user_id: userId, k: 0, channel: "CHANNEL_PUSH" },
    { expect: grpc.status.INVALID_ARGUMENT },
  );

  return output();
}

main()
  .then((result) => {
    process.stdout.write(JSON.stringify(result) + "\n");
    for (const error of result.errors) process.stderr.write(`unexpected: ${error}\n`);
    process.exitCode = result.ok ? 0 : 1;
  })
  .catch((error) => {
    process.stderr.write(`call_all.js crashed: ${error && error.stack ? error.stack : error}\n`);
    process.exitCode = 1;
  })
  .finally(() => {
    for (const client of [retrieval, ranking, copy, marketing, embedding]) client.close();
  });
