// One job's page: its details and buttons, its training curves, checkpoints and event log, all
// kept current by the live feed.

import { api, enc } from "./api.js";
import { eventLog } from "./event-log.js";
import { $, statusText, toast } from "./dom.js";
import { ALLOWED, EVENT_TYPE, STEP } from "./facts.js";
import { trainingCharts } from "./job-charts.js";
import { jobFeed } from "./job-feed.js";
import { loadCheckpoints, renderJob, renderProgress } from "./job-view.js";

const DONE_WORDS = { cancel: "cancelled", pause: "paused", resume: "resumed" };

export async function jobPage() {
  const jobId = document.body.dataset.jobId;
  const base = `/fine_tuning/jobs/${enc(jobId)}`;
  // job: as last read (null before); metrics: the data of every metrics event, in step order.
  const state = { job: null, metrics: [] };
  const seen = new Set(); // event ids already taken in, whichever way they came

  async function refreshJob() {
    try {
      state.job = await api(base);
    } catch (e) {
      if (e.status === 404) {
        $("#job-error").textContent = e.message;
        $("#job-error").hidden = false;
        $("#job-body").hidden = true;
        document.querySelector(".page-head .actions").hidden = true;
      }
      throw e;
    }
    renderJob(state.job, state.metrics);
    return state.job;
  }

  const charts = trainingCharts(state);
  const log = eventLog(base);
  const feed = jobFeed({ base, state, seen, refreshJob, takeEvent });

  for (const action of Object.keys(ALLOWED)) {
    $(`#btn-${action}`).addEventListener("click", async (ev) => {
      const button = ev.currentTarget;
      if (action === "cancel" && !confirm(`Cancel ${jobId}? A cancelled job cannot be resumed.`)) return;
      button.disabled = true;
      try {
        state.job = await api(`${base}/${action}`, { method: "POST" });
        renderJob(state.job, state.metrics);
        toast(`Job ${DONE_WORDS[action]}.`);
        feed.wake();
      } catch (e) {
        toast(e.message, true);
        renderJob(state.job, state.metrics);
      }
    });
  }

  let ckptTimer = 0;
  function scheduleCheckpoints() {
    clearTimeout(ckptTimer);
    ckptTimer = setTimeout(() => loadCheckpoints(base).catch(() => {}), 300);
  }

  let jobTimer = 0;
  function scheduleJobRefresh() {
    clearTimeout(jobTimer);
    jobTimer = setTimeout(() => refreshJob().catch(() => {}), 150);
  }

  function takeEvent(ev) {
    if (!ev || !ev.id || seen.has(ev.id)) return;
    seen.add(ev.id);
    const { metrics } = state;
    if (ev.type === EVENT_TYPE.METRICS && ev.data && typeof ev.data[STEP] === "number") {
      const last = metrics[metrics.length - 1];
      metrics.push(ev.data);
      if (last && last[STEP] > ev.data[STEP]) metrics.sort((a, b) => a[STEP] - b[STEP]);
      charts.scheduleDraw();
      renderProgress(state.job, metrics);
    } else {
      // Message events mark the transitions: ask the job what it is now, rather than
      // reading it from the text.
      scheduleJobRefresh();
      scheduleCheckpoints();
    }
    log.addLive(ev);
  }

  try {
    await refreshJob();
  } catch (e) {
    if (e.status === 404) return; // said on the page
    throw e;
  }
  charts.scheduleDraw();
  await Promise.all([log.loadPage(), loadCheckpoints(base)]).catch((e) => toast(e.message, true));
  await feed.follow();
  await loadCheckpoints(base).catch(() => {});
  charts.scheduleDraw();
  const { job, metrics } = state;
  feed.setLive("off", job ? `${statusText(job.status)} · ${metrics.length} steps` : "ended");
}
