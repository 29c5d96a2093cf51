// What the server knows and the dashboard must agree with, read from the JSON the page embeds
// (web/facts.py builds it from jobs/states.py, events/metrics.py and events/rewards.py): the
// statuses, which button may act from which status, the step-metrics fields and a
// reinforcement job's reward keys. Nothing here is typed twice.

const facts = JSON.parse(document.getElementById("server-facts").textContent);

// Status names by their Python name: STATUS.SUCCEEDED === "succeeded".
export const STATUS = Object.freeze(facts.status);
export const FINAL = new Set(facts.final);
// Event types by their Python name: EVENT_TYPE.METRICS === "metrics".
export const EVENT_TYPE = Object.freeze(facts.event_type);
// What each button may do from each status (ftserve.jobs.states.TRANSITIONS).
export const ALLOWED = Object.fromEntries(
  Object.entries(facts.allowed).map(([action, from]) => [action, new Set(from)]),
);

// The step metrics, in the event's order: {name, split, measure}; the splits in order, the
// training one first, each {name, label}.
export const METRIC_FIELDS = facts.metrics.fields;
export const SPLITS = facts.metrics.splits;
export const STEP = facts.metrics.step;
export const TOTAL_STEPS = facts.metrics.total_steps;

// The field of `split` that measures `measure` ("loss" or "accuracy").
export function metricOf(split, measure) {
  return METRIC_FIELDS.find((f) => f.split === split.name && f.measure === measure).name;
}

// A reinforcement job's figures: {method, marker (a key only its steps' data has), series
// ([{key, split, label}], training first), completion_tokens, checkpoint ([train, valid] keys)}.
export const REWARDS = facts.rewards;

// Whether a job's steps report rewards: its method says so before its first step does.
export function isRewardJob(job, metrics) {
  return (job && job.method && job.method.type === REWARDS.method) || metrics.some((m) => REWARDS.marker in m);
}
