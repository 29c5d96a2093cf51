// The jobs list: newest first, each with its progress from its latest metrics event, refreshed
// every few seconds.

import { api, enc } from "./api.js";
import { $, badge, el, toast } from "./dom.js";
import { FINAL, STATUS, STEP, TOTAL_STEPS } from "./facts.js";
import { ago, fmtTime } from "./format.js";

const JOBS_REFRESH_MS = 3000;

export async function jobsPage() {
  const body = $("#jobs-body");
  const more = $("#jobs-more");
  let shown = 25;
  const progress = new Map(); // job id → {step, total} of its latest metrics event
  const settled = new Set(); // final jobs whose progress is known for good

  more.addEventListener("click", () => { shown += 25; refresh(); });

  async function latestMetrics(job) {
    if (settled.has(job.id)) return progress.get(job.id);
    const page = await api(`/fine_tuning/jobs/${enc(job.id)}/events?limit=50`);
    const found = page.data.find((e) => e.type === "metrics" && e.data);
    const value = found ? { step: found.data[STEP], total: found.data[TOTAL_STEPS] } : null;
    if (value || !page.has_more) progress.set(job.id, value);
    if (FINAL.has(job.status)) settled.add(job.id);
    return progress.get(job.id) ?? null;
  }

  function progressCell(job, p) {
    const bar = el("div", { class: "progress" }, el("span"));
    let text = "—";
    if (p && p.total) {
      bar.firstChild.style.width = `${Math.min(100, (100 * p.step) / p.total)}%`;
      text = `${p.step} / ${p.total}`;
    }
    if (job.status === STATUS.SUCCEEDED) {
      bar.classList.add("done");
      bar.firstChild.style.width = "100%";
    } else if (job.status === STATUS.PAUSED) bar.classList.add("paused");
    else if (FINAL.has(job.status)) bar.classList.add("stopped");
    return el("div", { class: "progress-cell" }, bar, el("span", { class: "mono", text }));
  }

  let timer = 0;
  async function refresh() {
    clearTimeout(timer);
    try {
      const page = await api(`/fine_tuning/jobs?limit=${shown}`);
      const jobs = page.data;
      const metrics = await Promise.all(
        jobs.map((j) => (j.status === STATUS.VALIDATING_FILES ? null : latestMetrics(j).catch(() => null))),
      );
      const rows = jobs.map((job, i) => el("tr", { dataset: { jobId: job.id, status: job.status } },
        el("td", {},
          el("a", { class: "mono", href: `/jobs/${enc(job.id)}`, text: job.id }),
          job.user_provided_suffix ? el("div", { class: "small", text: job.user_provided_suffix }) : null),
        el("td", {},
          el("div", { text: job.model }),
          job.fine_tuned_model ? el("div", { class: "model-name", text: job.fine_tuned_model }) : null),
        el("td", {}, badge(job.status)),
        el("td", {}, progressCell(job, metrics[i])),
        el("td", { class: "small", title: fmtTime(job.created_at), text: ago(job.created_at) }),
      ));
      body.replaceChildren(...rows);
      $("#jobs-empty").hidden = jobs.length > 0;
      more.hidden = !page.has_more;
    } catch (e) {
      if (e.status !== 401) toast(`Could not load the jobs: ${e.message}`, true);
    }
    timer = setTimeout(refresh, JOBS_REFRESH_MS);
  }
  await refresh();
}
