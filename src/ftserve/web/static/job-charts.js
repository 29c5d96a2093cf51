// A job's training curves: loss and token accuracy per step, one series per split of the step
// metrics (training, validation, full validation), with a hover cursor on each chart.

import { attachCursor, drawChart, yRange } from "./chart.js";
import { $ } from "./dom.js";
import { FINAL, SPLITS, STEP, TOTAL_STEPS, metricOf } from "./facts.js";

// A validation series this short is drawn with a dot per point: it is measured now and then.
const DOTS_UP_TO = 60;

// state: {job, metrics}, read at each draw; metrics is the data of every metrics event, in step
// order. Answers scheduleDraw(), which draws once per animation frame at most.
export function trainingCharts(state) {
  const lossSvg = $("#chart-loss");
  const accSvg = $("#chart-acc");
  const chartState = { loss: null, acc: null };
  const stepOf = (row) => row[STEP];
  let drawQueued = false;

  function scheduleDraw() {
    if (drawQueued) return;
    drawQueued = true;
    requestAnimationFrame(() => { drawQueued = false; draw(); });
  }

  function series(measure) {
    const pick = (key) => state.metrics.filter((m) => typeof m[key] === "number").map((m) => [m[STEP], m[key]]);
    return SPLITS.map((split, i) => {
      const key = metricOf(split, measure);
      const points = pick(key);
      const validation = i > 0;  // the training split comes first
      return {
        key, cls: `s-${split.name}`, label: split.label, points,
        optional: validation, dots: validation && points.length <= DOTS_UP_TO,
      };
    });
  }

  function draw() {
    const { job, metrics } = state;
    const last = metrics[metrics.length - 1];
    const xMax = Math.max(1, (last && last[TOTAL_STEPS]) || 0, last ? last[STEP] : 0);
    const placeholder = metrics.length ? null
      : job && FINAL.has(job.status) ? "This job logged no training steps."
      : "Waiting for the first training step…";
    const loss = series("loss");
    const acc = series("accuracy");
    const [lossMin, lossMax] = yRange(loss, 0, Infinity, [0, 1]);
    const [accMin, accMax] = yRange(acc, 0, 1, [0, 1]);
    const scaleLoss = drawChart(lossSvg, { series: loss, xMax, yMin: lossMin, yMax: lossMax, placeholder });
    const scaleAcc = drawChart(accSvg, { series: acc, xMax, yMin: accMin, yMax: accMax, percent: true, placeholder });
    lossSvg.dataset.points = String(loss[0].points.length);
    accSvg.dataset.points = String(acc[0].points.length);
    chartState.loss = { rows: metrics, stepOf, scale: scaleLoss, xMax, describe: (r) => describe(r, "loss") };
    chartState.acc = { rows: metrics, stepOf, scale: scaleAcc, xMax, describe: (r) => describe(r, "accuracy") };
  }

  function describe(row, measure) {
    const percent = measure === "accuracy";
    return SPLITS.map((split) => [split.name.replace("_", " "), row[metricOf(split, measure)]])
      .filter(([, v]) => typeof v === "number")
      .map(([k, v]) => `${k} ${percent ? `${(v * 100).toFixed(1)}%` : v.toFixed(4)}`);
  }

  attachCursor(lossSvg, () => chartState.loss);
  attachCursor(accSvg, () => chartState.acc);
  return { scheduleDraw };
}
