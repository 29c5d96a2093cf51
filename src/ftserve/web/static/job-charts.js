// A job's training curves, with a hover cursor on each chart: for a supervised or DPO job, loss
// and token accuracy per step, one series per split of the step metrics (training, validation,
// full validation); for a reinforcement job, the mean reward (training, full validation) and
// the mean length of its sampled answers.

import { attachCursor, drawChart, yRange } from "./chart.js";
import { $ } from "./dom.js";
import { FINAL, REWARDS, SPLITS, STEP, TOTAL_STEPS, isRewardJob, metricOf } from "./facts.js";

// A validation series this short is drawn with a dot per point: it is measured now and then.
const DOTS_UP_TO = 60;

const splitNamed = (name) => SPLITS.find((s) => s.name === name);

// Each chart: its caption, the series it plots ({key, split}), the span its values may take,
// and how its values read (a percent, or a number with `digits` decimals).
const LOSS_CHARTS = [
  {
    caption: "Loss", label: "Training and validation loss", floor: 0, cap: Infinity, digits: 4,
    series: SPLITS.map((split) => ({ key: metricOf(split, "loss"), split })),
  },
  {
    caption: "Mean token accuracy", label: "Token accuracy", floor: 0, cap: 1, percent: true,
    series: SPLITS.map((split) => ({ key: metricOf(split, "accuracy"), split })),
  },
];
const REWARD_CHARTS = [
  {
    // A grader's reward is not always within [0, 1] (a score_model's range, a multi's formula).
    caption: "Mean reward", label: "Training and validation mean reward", floor: -Infinity, cap: Infinity, digits: 4,
    series: REWARDS.series.map((s) => ({ key: s.key, split: splitNamed(s.split) })),
  },
  {
    caption: "Mean completion tokens", label: "Mean tokens of the sampled answers", floor: 0, cap: Infinity, digits: 1,
    series: [{ key: REWARDS.completion_tokens, split: SPLITS[0] }],
  },
];

// state: {job, metrics}, read at each draw; metrics is the data of every metrics event, in step
// order. Answers scheduleDraw(), which draws once per animation frame at most.
export function trainingCharts(state) {
  const svgs = [$("#chart-loss"), $("#chart-acc")];
  const captions = [$("#caption-loss"), $("#caption-acc")];
  const chartStates = [null, null];
  const stepOf = (row) => row[STEP];
  let drawQueued = false;

  function scheduleDraw() {
    if (drawQueued) return;
    drawQueued = true;
    requestAnimationFrame(() => { drawQueued = false; draw(); });
  }

  function series(chart) {
    const pick = (key) => state.metrics.filter((m) => typeof m[key] === "number").map((m) => [m[STEP], m[key]]);
    return chart.series.map(({ key, split }, i) => {
      const points = pick(key);
      const validation = i > 0;  // the training split comes first
      return {
        key, cls: `s-${split.name}`, label: split.label, points,
        optional: validation, dots: validation && points.length <= DOTS_UP_TO,
      };
    });
  }

  function fmt(chart, v) {
    return chart.percent ? `${(v * 100).toFixed(1)}%` : v.toFixed(chart.digits);
  }

  function describe(chart, row) {
    return chart.series.map(({ key, split }) => [split.name.replace("_", " "), row[key]])
      .filter(([, v]) => typeof v === "number")
      .map(([k, v]) => `${k} ${fmt(chart, v)}`);
  }

  function draw() {
    const { job, metrics } = state;
    const last = metrics[metrics.length - 1];
    const xMax = Math.max(1, (last && last[TOTAL_STEPS]) || 0, last ? last[STEP] : 0);
    const placeholder = metrics.length ? null
      : job && FINAL.has(job.status) ? "This job logged no training steps."
      : "Waiting for the first training step…";
    const charts = isRewardJob(job, metrics) ? REWARD_CHARTS : LOSS_CHARTS;
    charts.forEach((chart, i) => {
      const svg = svgs[i];
      captions[i].textContent = chart.caption;
      svg.setAttribute("aria-label", chart.label);
      const lines = series(chart);
      const [yMin, yMax] = yRange(lines, chart.floor, chart.cap, [0, 1]);
      const scale = drawChart(svg, {
        series: lines, xMax, yMin, yMax, percent: chart.percent, digits: chart.digits, placeholder,
      });
      svg.dataset.points = String(lines[0].points.length);
      chartStates[i] = { rows: metrics, stepOf, scale, xMax, describe: (r) => describe(chart, r) };
    });
  }

  svgs.forEach((svg, i) => attachCursor(svg, () => chartStates[i]));
  return { scheduleDraw };
}
