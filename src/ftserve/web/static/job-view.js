// A job's own parts of its page: the status and the buttons it allows, the details, the
// hyperparameters, the progress bar and the checkpoints table.

import { enc, listAll } from "./api.js";
import { $, badge, el, setBadge, statusText } from "./dom.js";
import { ALLOWED, FINAL, REWARDS, SPLITS, STATUS, STEP, TOTAL_STEPS, metricOf } from "./facts.js";
import { fmtNum, fmtPct, fmtTime } from "./format.js";

// ftserve's own extension: the training settings in it, not where files live.
const EXTENSION_SETTINGS = ["adapter", "lora_rank", "lora_alpha", "training_format"];

export function renderJob(job, metrics) {
  setBadge($("#job-status"), job.status);
  for (const [action, from] of Object.entries(ALLOWED)) {
    $(`#btn-${action}`).disabled = !from.has(job.status);
  }
  const sub = [job.model];
  if (job.fine_tuned_model) sub.push(`→ ${job.fine_tuned_model}`);
  $("#job-sub").textContent = sub.join(" ");
  if (job.status === STATUS.FAILED && job.error && job.error.message) {
    $("#job-error").textContent = `Failed: ${job.error.message}`;
    $("#job-error").hidden = false;
  }
  const method = job.method || { type: "supervised" };
  const details = [
    ["Status", badge(job.status)],
    ["Base model", job.model],
    ["Fine-tuned model", job.fine_tuned_model
      ? el("span", {}, el("span", { class: "model-name", text: job.fine_tuned_model }), " ",
        job.status === STATUS.SUCCEEDED ? el("a", { href: `/chat?model=${enc(job.fine_tuned_model)}`, text: "try it →" }) : null)
      : "—"],
    ["Method", method.type],
    ["Training file", el("span", { class: "mono", text: job.training_file })],
    ["Validation file", job.validation_file ? el("span", { class: "mono", text: job.validation_file }) : "—"],
    ["Suffix", job.user_provided_suffix || "—"],
    ["Seed", String(job.seed)],
    ["Trained tokens", job.trained_tokens === null || job.trained_tokens === undefined ? "—" : job.trained_tokens.toLocaleString()],
    ["Created", fmtTime(job.created_at)],
    ["Finished", fmtTime(job.finished_at)],
  ];
  if (job.estimated_finish && !FINAL.has(job.status)) details.push(["Estimated finish", fmtTime(job.estimated_finish)]);
  fillKv($("#job-details"), details);

  const hp = { ...(job.hyperparameters || {}) };
  const methodHp = (method[method.type] && method[method.type].hyperparameters) || {};
  Object.assign(hp, methodHp);
  const rows = Object.entries(hp).map(([k, v]) => [k, el("span", { class: "mono", text: fmtNum(v, 6) })]);
  const ext = job.ftserve && typeof job.ftserve === "object" ? job.ftserve : {};
  for (const k of EXTENSION_SETTINGS) {
    const v = ext[k];
    if (v !== null && v !== undefined && typeof v !== "object") rows.push([k, el("span", { class: "mono", text: fmtNum(v, 6) })]);
  }
  fillKv($("#job-hparams"), rows.length ? rows : [["—", "not resolved yet"]]);
  renderProgress(job, metrics);
}

function fillKv(dl, rows) {
  dl.replaceChildren(...rows.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", {}, v)]));
}

// job is null until the first answer.
export function renderProgress(job, metrics) {
  const last = metrics[metrics.length - 1];
  const bar = $("#progress-fill").parentElement;
  bar.className = "progress";
  if (job && job.status === STATUS.SUCCEEDED) bar.classList.add("done");
  else if (job && job.status === STATUS.PAUSED) bar.classList.add("paused");
  else if (job && FINAL.has(job.status)) bar.classList.add("stopped");
  if (!last) {
    $("#progress-fill").style.width = job && job.status === STATUS.SUCCEEDED ? "100%" : "0";
    $("#progress-text").textContent = job ? statusText(job.status) : "—";
    return;
  }
  const pct = last[TOTAL_STEPS] ? (100 * last[STEP]) / last[TOTAL_STEPS] : 0;
  $("#progress-fill").style.width = `${Math.min(100, pct)}%`;
  $("#progress-text").textContent = `step ${last[STEP]} / ${last[TOTAL_STEPS] ?? "?"} · ${pct.toFixed(0)}%`;
}

// The table's columns: the training figures, and the most complete validation measured (the
// later splits cover more of the validation file).
const [TRAIN, ...VALIDATION] = SPLITS;
const FULLEST_FIRST = [...VALIDATION].reverse();
const fullest = (m, measure) => FULLEST_FIRST.map((s) => m[metricOf(s, measure)]).find((v) => v != null);

// A reinforcement job's checkpoints hold rewards, their losses and accuracies null: the table
// shows the rewards in the first two figure columns and hides the accuracy ones.
const [TRAIN_REWARD, VALID_REWARD] = REWARDS.checkpoint;

export async function loadCheckpoints(base) {
  const items = await listAll(`${base}/checkpoints`);
  const rewards = items.some((c) => c.metrics && TRAIN_REWARD in c.metrics);
  $("#ckpt-table").classList.toggle("rewards", rewards);
  $("#ckpt-train").textContent = rewards ? "Train reward" : "Train loss";
  $("#ckpt-valid").textContent = rewards ? "Valid reward" : "Valid loss";
  $("#ckpt-empty").hidden = items.length > 0;
  $("#ckpt-body").replaceChildren(...items.map((c) => {
    const m = c.metrics || {};
    const [train, valid] = rewards ? [m[TRAIN_REWARD], m[VALID_REWARD]] : [m[metricOf(TRAIN, "loss")], fullest(m, "loss")];
    return el("tr", {},
      el("td", { class: "mono", text: String(c.step_number) }),
      el("td", {}, el("span", { class: "model-name", text: c.fine_tuned_model_checkpoint })),
      el("td", { class: "num", text: fmtNum(train) }),
      el("td", { class: "num", text: fmtNum(valid) }),
      el("td", { class: "num acc", text: fmtPct(m[metricOf(TRAIN, "accuracy")]) }),
      el("td", { class: "num acc", text: fmtPct(fullest(m, "accuracy")) }),
      el("td", { class: "small", text: fmtTime(c.created_at) }));
  }));
}
