// The Responses API streamed through the official openai-node SDK (v6): `responses.create`
// with `stream: true` read with `for await`, and the SDK's `responses.stream` helper, which
// rebuilds the response from the events and throws on one that does not fit it.
//
// Run by tests/e2e/test_node_sdk.py against a real ftserve server (the base model
// ftserve-tiny: random weights, so the text is gibberish and usually stops at the limit).
// On success the last line of stdout is `RESULT {json}`, which the Python side checks
// against its own reads of the stored responses.

import assert from "node:assert/strict";
import OpenAI from "openai";

const client = new OpenAI({ maxRetries: 0, timeout: 180_000 });
const MODEL = "ftserve-tiny";
const FIRST = [
  "response.created",
  "response.in_progress",
  "response.output_item.added",
  "response.content_part.added",
];
const LAST = ["response.output_text.done", "response.content_part.done", "response.output_item.done"];

const events = [];
const stream = await client.responses.create({
  model: MODEL,
  input: [{ role: "user", content: [{ type: "input_text", text: "Hello there" }] }],
  instructions: "Be brief.",
  max_output_tokens: 16,
  temperature: 0,
  stream: true,
});
for await (const event of stream) {
  events.push(event);
}
const types = events.map((e) => e.type);
assert.deepEqual(types.slice(0, 4), FIRST);
assert.deepEqual(types.slice(-4, -1), LAST);
const end = types.at(-1);
assert.ok(end === "response.completed" || end === "response.incomplete", end);
assert.deepEqual(
  events.map((e) => e.sequence_number),
  events.map((_, i) => i),
);
const deltas = events.filter((e) => e.type === "response.output_text.delta");
assert.ok(deltas.length > 0);
const text = deltas.map((e) => e.delta).join("");
const final = events.at(-1).response;
assert.equal(final.output[0].content[0].text, text);
assert.equal(final.output_text ?? text, text);

// The helper, continuing the first response.
const helper = client.responses.stream({
  model: MODEL,
  input: "And then?",
  previous_response_id: final.id,
  max_output_tokens: 16,
  temperature: 0,
});
const seen = [];
helper.on("response.output_text.delta", (e) => seen.push(e.snapshot));
const second = await helper.finalResponse();
assert.equal(second.previous_response_id, final.id);
assert.ok(seen.length > 0);
assert.equal(second.output_text, seen.at(-1));

console.log(
  "RESULT " +
    JSON.stringify({ first: final.id, text, second: second.id, second_text: second.output_text }),
);
