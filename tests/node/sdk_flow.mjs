// The whole fine-tuning loop through the official openai-node SDK (v6), written the way the
// SDK's own examples are: upload, create, wait, auto-page the events with `for await`, list the
// checkpoints, then call the fine-tuned model, whole and streamed.
//
// Run by tests/e2e/test_node_sdk.py against a real ftserve server. `new OpenAI()` reads
// OPENAI_BASE_URL and OPENAI_API_KEY, as a user's script would. On success the last line of
// stdout is `RESULT {json}`: what the SDK saw, which the Python side compares with its own reads.

import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import OpenAI, { toFile } from "openai";

assert.ok(process.env.OPENAI_BASE_URL, "OPENAI_BASE_URL must be set");
assert.ok(process.env.OPENAI_API_KEY, "OPENAI_API_KEY must be set");
// No retries: a retried request would hide a server error the test should see.
// Generous: the first chat request starts the inference process and loads the model, which on a
// loaded CI machine can take a minute by itself.
const client = new OpenAI({ maxRetries: 0, timeout: 180_000 });
const JOB_TIMEOUT_MS = Number(process.env.FTSERVE_NODE_JOB_TIMEOUT_MS ?? 240_000);
const ROWS = 10; // the fewest a training file may have
const EPOCHS = 2;
const STEPS = ROWS * EPOCHS; // batch size 1

function log(...args) {
  console.log("node:", ...args);
}

const rows = Array.from({ length: ROWS }, (_, i) => ({
  messages: [
    { role: "user", content: `What is ${i} plus ${i}?` },
    { role: "assistant", content: `${i} plus ${i} is ${2 * i}.` },
  ],
}));
const jsonl = rows.map((r) => JSON.stringify(r) + "\n").join("");

// Upload from disk with a read stream (how the SDK's README does it), and once more from memory
// with toFile: the two multipart paths of the SDK.
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ftserve-node-"));
const trainPath = path.join(dir, "train.jsonl");
fs.writeFileSync(trainPath, jsonl);
const trainFile = await client.files.create({
  file: fs.createReadStream(trainPath),
  purpose: "fine-tune",
});
fs.rmSync(dir, { recursive: true });
assert.equal(trainFile.object, "file");
assert.equal(trainFile.purpose, "fine-tune");
assert.equal(trainFile.filename, "train.jsonl");
assert.equal(trainFile.bytes, Buffer.byteLength(jsonl));
log("uploaded", trainFile.id, "(read stream)");

const memFile = await client.files.create({
  file: await toFile(Buffer.from(jsonl), "in-memory.jsonl"),
  purpose: "fine-tune",
});
assert.equal(memFile.filename, "in-memory.jsonl");
assert.equal(memFile.bytes, trainFile.bytes);
assert.equal(await (await client.files.content(memFile.id)).text(), jsonl);
log("uploaded", memFile.id, "(toFile)");

let job = await client.fineTuning.jobs.create({
  model: "ftserve-tiny",
  training_file: trainFile.id,
  seed: 3,
  hyperparameters: { n_epochs: EPOCHS, batch_size: 1 },
});
assert.equal(job.object, "fine_tuning.job");
assert.ok(job.id.startsWith("ftjob-"), job.id);
log("created", job.id, job.status);

const deadline = Date.now() + JOB_TIMEOUT_MS;
while (!["succeeded", "failed", "cancelled"].includes(job.status)) {
  assert.ok(Date.now() < deadline, `${job.id} still ${job.status} after ${JOB_TIMEOUT_MS} ms`);
  await new Promise((resolve) => setTimeout(resolve, 250));
  job = await client.fineTuning.jobs.retrieve(job.id);
}
assert.equal(job.status, "succeeded", JSON.stringify(job.error));
assert.ok(job.fine_tuned_model, "a succeeded job names its model");
log("finished", job.id, job.status, job.fine_tuned_model, "trained_tokens", job.trained_tokens);

// The seed's example: auto-paging with `for await`, two events a page, so the SDK follows
// `after=<last id>` through many pages. Every event must come exactly once, newest first.
const events = [];
let pages = 0;
const firstPage = await client.fineTuning.jobs.listEvents(job.id, { limit: 2 });
for await (const page of firstPage.iterPages()) {
  pages += 1;
  assert.ok(page.data.length <= 2, `page ${pages} has ${page.data.length} events`);
  events.push(...page.data);
}
const viaItems = [];
for await (const event of client.fineTuning.jobs.listEvents(job.id, { limit: 2 })) {
  viaItems.push(event.id);
}
assert.deepEqual(viaItems, events.map((e) => e.id), "item and page iteration disagree");
const ids = events.map((e) => e.id);
assert.equal(new Set(ids).size, ids.length, `an event came twice: ${ids}`);
for (const e of events) {
  assert.equal(e.object, "fine_tuning.job.event");
  assert.ok(["info", "warn", "error"].includes(e.level), e.level);
}
for (let i = 1; i < events.length; i++) {
  assert.ok(events[i - 1].created_at >= events[i].created_at, `events ${i - 1}, ${i} out of order`);
}
const messages = events.map((e) => e.message).reverse(); // chronological
assert.equal(messages[0], `Created fine-tuning job: ${job.id}`);
assert.equal(messages.at(-1), "The job has successfully completed");
const steps = events
  .filter((e) => e.type === "metrics")
  .map((e) => e.data.step)
  .reverse();
assert.deepEqual(steps, Array.from({ length: STEPS }, (_, i) => i + 1), "metrics steps");
assert.ok(pages >= Math.ceil(events.length / 2), `${events.length} events in ${pages} pages`);
log(`events: ${events.length} in ${pages} pages of 2, each once, newest first`);

// Checkpoints, auto-paged one a page: one per epoch, newest first, the last is the final model.
const checkpoints = [];
for await (const c of client.fineTuning.jobs.checkpoints.list(job.id, { limit: 1 })) {
  checkpoints.push(c);
}
assert.deepEqual(
  checkpoints.map((c) => c.step_number),
  Array.from({ length: EPOCHS }, (_, i) => (STEPS / EPOCHS) * (EPOCHS - i)),
);
assert.equal(checkpoints[0].fine_tuned_model_checkpoint, job.fine_tuned_model);
for (const c of checkpoints) {
  assert.equal(c.object, "fine_tuning.job.checkpoint");
  assert.equal(c.fine_tuning_job_id, job.id);
  assert.ok(c.id.startsWith("ftckpt_"), c.id);
}
log("checkpoints:", checkpoints.map((c) => c.fine_tuned_model_checkpoint).join(", "));

// The fine-tuned model answers, whole and streamed; greedy decoding, so both say the same.
const question = [{ role: "user", content: "What is 2 plus 2?" }];
const answer = await client.chat.completions.create({
  model: job.fine_tuned_model,
  messages: question,
  temperature: 0,
  max_tokens: 12,
});
assert.equal(answer.object, "chat.completion");
assert.equal(answer.model, job.fine_tuned_model);
assert.equal(answer.choices.length, 1);
const [choice] = answer.choices;
assert.equal(choice.message.role, "assistant");
assert.equal(typeof choice.message.content, "string");
assert.ok(["stop", "length"].includes(choice.finish_reason), choice.finish_reason);
assert.ok(answer.usage.completion_tokens > 0 && answer.usage.prompt_tokens > 0);
log("chat:", JSON.stringify(choice.message.content));

const stream = await client.chat.completions.create({
  model: job.fine_tuned_model,
  messages: question,
  temperature: 0,
  max_tokens: 12,
  stream: true,
  stream_options: { include_usage: true },
});
let streamed = "";
let chunks = 0;
let finish = null;
let usage = null;
let role = null;
for await (const chunk of stream) {
  chunks += 1;
  assert.equal(chunk.object, "chat.completion.chunk");
  assert.equal(chunk.model, job.fine_tuned_model);
  if (chunk.usage) usage = chunk.usage;
  if (chunk.choices.length === 0) continue; // the usage chunk
  const delta = chunk.choices[0].delta;
  role ??= delta.role ?? null;
  streamed += delta.content ?? "";
  if (chunk.choices[0].finish_reason) finish = chunk.choices[0].finish_reason;
}
assert.equal(role, "assistant");
assert.equal(streamed, choice.message.content);
assert.equal(finish, choice.finish_reason);
assert.deepEqual(usage, answer.usage);
log(`stream: ${chunks} chunks, same text, finish_reason ${finish}`);

console.log(
  "RESULT " +
    JSON.stringify({
      job_id: job.id,
      fine_tuned_model: job.fine_tuned_model,
      event_ids: ids,
      checkpoint_ids: checkpoints.map((c) => c.id),
      content: choice.message.content,
    }),
);
