// ftserve dashboard: one hand-written script, no build step, no libraries, nothing loaded from
// outside this server. The pages it runs on hold no data; everything comes from the public API
// (/v1) with the key the person pasted, sent in the Authorization header and nowhere else.
"use strict";

(() => {
  const API = "/v1";
  const KEY_STORE = "ftserve.apiKey";
  const FINAL = new Set(["succeeded", "failed", "cancelled"]);
  // What each button may do from each status (ftserve.jobs.states.TRANSITIONS).
  const ALLOWED = {
    cancel: new Set(["validating_files", "queued", "running", "paused"]),
    pause: new Set(["queued", "running"]),
    resume: new Set(["paused"]),
  };
  const SVG_NS = "http://www.w3.org/2000/svg";

  // ---------------------------------------------------------------- small helpers

  const $ = (sel) => document.querySelector(sel);
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const enc = encodeURIComponent;

  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(props)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k === "dataset") Object.assign(node.dataset, v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function svgEl(tag, attrs = {}, text) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function badge(status) {
    return el("span", { class: `badge s-${status}`, text: status.replace("_", " ") });
  }

  function setBadge(node, status) {
    node.className = `badge s-${status}`;
    node.textContent = status.replace("_", " ");
  }

  function fmtTime(unix) {
    if (!unix) return "—";
    return new Date(unix * 1000).toLocaleString(undefined, {
      month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit",
      hour12: false,  // as fmtClock: one page, one clock
    });
  }

  function fmtClock(unix) {
    return new Date(unix * 1000).toLocaleTimeString(undefined, { hour12: false });
  }

  function ago(unix) {
    const s = Math.max(0, Math.round(Date.now() / 1000 - unix));
    if (s < 60) return `${s} s ago`;
    if (s < 3600) return `${Math.floor(s / 60)} min ago`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
    return `${Math.floor(s / 86400)} d ago`;
  }

  function fmtNum(v, digits = 4) {
    if (v === null || v === undefined || Number.isNaN(v)) return "—";
    if (typeof v !== "number") return String(v);
    return Number.isInteger(v) ? String(v) : v.toFixed(digits);
  }

  function fmtPct(v) {
    return typeof v === "number" ? `${(100 * v).toFixed(1)}%` : "—";
  }

  function fmtBytes(n) {
    if (n < 1024) return `${n} B`;
    if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
    return `${(n / 1024 / 1024).toFixed(1)} MB`;
  }

  let toastTimer = 0;
  function toast(text, isError = false) {
    const node = $("#toast");
    node.textContent = text;
    node.classList.toggle("error", isError);
    node.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { node.hidden = true; }, isError ? 7000 : 3500);
  }

  // ---------------------------------------------------------------- the key and the API

  const getKey = () => sessionStorage.getItem(KEY_STORE);

  class ApiError extends Error {
    constructor(status, message, body) {
      super(message);
      this.status = status;
      this.body = body;
    }
  }

  function authHeaders(extra = {}) {
    return { Authorization: `Bearer ${getKey()}`, ...extra };
  }

  // A key the server refuses (revoked, or another server's) is forgotten, and the form shown.
  function keyRefused() {
    sessionStorage.removeItem(KEY_STORE);
    location.reload();
  }

  async function errorOf(resp) {
    let body = null;
    try { body = await resp.json(); } catch { /* not JSON: the status says enough */ }
    const err = body && body.error;
    let message = (err && err.message) || `HTTP ${resp.status}`;
    if (err && err.param) message += ` (${err.param})`;
    return new ApiError(resp.status, message, body);
  }

  async function api(path, { method = "GET", json, body, signal } = {}) {
    const headers = authHeaders();
    if (json !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(json);
    }
    const resp = await fetch(API + path, { method, headers, body, signal, cache: "no-store" });
    if (resp.status === 401) {
      keyRefused();
      throw new ApiError(401, "The server refused the API key.");
    }
    if (!resp.ok) throw await errorOf(resp);
    return resp.json();
  }

  // Every page of a list, following `after` while `has_more`.
  async function listAll(path, limit = 100) {
    const items = [];
    let after = null;
    for (;;) {
      const q = new URLSearchParams({ limit: String(limit) });
      if (after) q.set("after", after);
      const sep = path.includes("?") ? "&" : "?";
      const page = await api(`${path}${sep}${q}`);
      items.push(...page.data);
      if (!page.has_more || page.data.length === 0) return items;
      after = page.data[page.data.length - 1].id;
    }
  }

  // ---------------------------------------------------------------- server-sent events

  // The browser's EventSource cannot send an Authorization header, so streams are read with
  // fetch and parsed here (the WHATWG framing: `field: value` lines, a blank line ends a
  // message, `:` starts a comment). Yields {id, data} per message and null per comment (the
  // server's heartbeat), so a reader knows the connection is alive.
  async function* sseMessages(body) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    let data = [];
    let id = null;
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        buf += value;
        for (;;) {
          const m = /\r\n|\r|\n/.exec(buf);
          // A lone CR at the end may be the first half of a CRLF: wait for more.
          if (!m || (m[0] === "\r" && m.index === buf.length - 1)) break;
          const line = buf.slice(0, m.index);
          buf = buf.slice(m.index + m[0].length);
          if (line === "") {
            if (data.length) yield { id, data: data.join("\n") };
            data = [];
            continue;
          }
          if (line.startsWith(":")) {
            yield null;
            continue;
          }
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          let value = colon < 0 ? "" : line.slice(colon + 1);
          if (value.startsWith(" ")) value = value.slice(1);
          if (field === "data") data.push(value);
          else if (field === "id" && !value.includes("\0")) id = value;
        }
      }
    } finally {
      reader.cancel().catch(() => {});
    }
  }

  // ---------------------------------------------------------------- boot

  function setupKeyGate() {
    const form = $("#key-form");
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const input = $("#api-key");
      const key = input.value.trim();
      const error = $("#key-error");
      error.hidden = true;
      if (!key) return;
      try {
        const resp = await fetch(`${API}/models`, {
          headers: { Authorization: `Bearer ${key}` }, cache: "no-store",
        });
        if (resp.status === 401) {
          error.textContent = "This server refused that key.";
          error.hidden = false;
          return;
        }
        if (!resp.ok) throw await errorOf(resp);
      } catch (e) {
        error.textContent = `Could not reach the server: ${e.message}`;
        error.hidden = false;
        return;
      }
      sessionStorage.setItem(KEY_STORE, key);
      input.value = "";
      start();
    });
    $("#forget-key").addEventListener("click", () => {
      sessionStorage.removeItem(KEY_STORE);
      location.reload();
    });
  }

  function start() {
    $("#key-gate").hidden = true;
    $("#app").hidden = false;
    $("#key-state").hidden = false;
    const run = PAGES[document.body.dataset.page];
    if (run) run().catch((e) => toast(e.message, true));
  }

  document.addEventListener("DOMContentLoaded", () => {
    setupKeyGate();
    if (getKey()) start();
    else {
      $("#key-gate").hidden = false;
      $("#api-key").focus();
    }
  });

  // ---------------------------------------------------------------- jobs list

  const JOBS_REFRESH_MS = 3000;

  async function jobsPage() {
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
      const value = found ? { step: found.data.step, total: found.data.total_steps } : null;
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
      if (job.status === "succeeded") {
        bar.classList.add("done");
        bar.firstChild.style.width = "100%";
      } else if (job.status === "paused") bar.classList.add("paused");
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
          jobs.map((j) => (j.status === "validating_files" ? null : latestMetrics(j).catch(() => null))),
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

  // ---------------------------------------------------------------- the chart

  // Drawn by hand as inline SVG: no chart library can be used without a CDN or a build step,
  // and a line chart is only axes, ticks, polylines and a legend.
  const W = 560;
  const H = 260;
  const M = { l: 46, r: 14, t: 34, b: 30 };

  function niceTicks(lo, hi, count) {
    const span = hi - lo || 1;
    const raw = span / count;
    const mag = 10 ** Math.floor(Math.log10(raw));
    const f = raw / mag;
    const step = (f >= 7.5 ? 10 : f >= 3.5 ? 5 : f >= 1.5 ? 2 : 1) * mag;
    const ticks = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) {
      ticks.push(Math.round(v / step) * step);
    }
    return { ticks, step };
  }

  function tickLabel(v, step) {
    const digits = Math.max(0, -Math.floor(Math.log10(step)));
    return v.toFixed(Math.min(digits, 4));
  }

  // The values' span with a margin, widened to whole ticks and kept within [floor, cap]: a loss
  // that moves between 4.7 and 5.7 fills the chart instead of a tenth of it.
  function yRange(series, floor, cap, empty) {
    const values = series.flatMap((s) => s.points.map((p) => p[1]));
    if (!values.length) return empty;
    let lo = Math.min(...values);
    let hi = Math.max(...values);
    const pad = (hi - lo) * 0.1 || Math.abs(hi) * 0.1 || 0.5;
    lo = Math.max(floor, lo - pad);
    hi = Math.min(cap, hi + pad);
    const { step } = niceTicks(lo, hi, 5);
    return [Math.max(floor, Math.floor(lo / step) * step), Math.min(cap, Math.ceil(hi / step) * step)];
  }

  // series: [{cls, label, points: [[step, value]…], dots}]; draws into svg, returns the scales.
  function drawChart(svg, { series, xMax, yMin, yMax, percent, placeholder }) {
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    const plotW = W - M.l - M.r;
    const plotH = H - M.t - M.b;
    const x = (s) => M.l + (s / xMax) * plotW;
    const y = (v) => M.t + plotH - ((v - yMin) / (yMax - yMin || 1)) * plotH;
    const nodes = [];

    const yt = niceTicks(yMin, yMax, 5);
    for (const v of yt.ticks) {
      nodes.push(svgEl("line", { class: "grid-line", x1: M.l, x2: W - M.r, y1: y(v), y2: y(v) }));
      const label = percent ? `${Math.round(v * 100)}%` : tickLabel(v, yt.step);
      nodes.push(svgEl("text", { x: M.l - 8, y: y(v) + 4, "text-anchor": "end" }, label));
    }
    const xt = niceTicks(0, xMax, 6);
    for (const s of xt.ticks) {
      if (!Number.isInteger(s)) continue;
      nodes.push(svgEl("line", { class: "axis", x1: x(s), x2: x(s), y1: M.t + plotH, y2: M.t + plotH + 4 }));
      nodes.push(svgEl("text", { x: x(s), y: M.t + plotH + 17, "text-anchor": "middle" }, String(s)));
    }
    nodes.push(svgEl("line", { class: "axis", x1: M.l, x2: W - M.r, y1: M.t + plotH, y2: M.t + plotH }));
    nodes.push(svgEl("text", { x: W - M.r, y: H - 1, "text-anchor": "end" }, "step"));

    let legendX = M.l;
    for (const s of series) {
      if (s.points.length) {
        const pts = s.points.map(([sx, sv]) => `${x(sx).toFixed(1)},${y(sv).toFixed(1)}`).join(" ");
        nodes.push(svgEl("polyline", { class: `series ${s.cls}`, points: pts, "data-series": s.key }));
        if (s.dots) {
          for (const [sx, sv] of s.points) {
            nodes.push(svgEl("circle", { class: `dot ${s.cls}`, cx: x(sx), cy: y(sv), r: 2.6 }));
          }
        }
      }
      if (!s.points.length && s.optional) continue;
      const last = s.points.length ? s.points[s.points.length - 1][1] : null;
      nodes.push(svgEl("line", { class: `swatch ${s.cls}`, x1: legendX, x2: legendX + 14, y1: 12, y2: 12 }));
      const text = svgEl("text", { class: "legend", x: legendX + 20, y: 16 }, `${s.label} `);
      const valueText = last === null ? "—" : percent ? `${(last * 100).toFixed(1)}%` : last.toFixed(4);
      text.append(svgEl("tspan", { class: "val" }, valueText));
      nodes.push(text);
      legendX += 34 + (s.label.length + valueText.length) * 6.4;
    }
    if (placeholder) {
      nodes.push(svgEl("text", { class: "placeholder", x: M.l + plotW / 2, y: M.t + plotH / 2, "text-anchor": "middle" }, placeholder));
    }
    svg.replaceChildren(...nodes);
    return { x, y, plotW, plotH };
  }

  // A hover cursor: the nearest step's values in a small box.
  function attachCursor(svg, getState) {
    const layer = () => svg.querySelector("g.hover");
    svg.addEventListener("mouseleave", () => layer()?.remove());
    svg.addEventListener("mousemove", (ev) => {
      const state = getState();
      if (!state || !state.rows.length) return;
      const box = svg.getBoundingClientRect();
      const px = ((ev.clientX - box.left) / box.width) * W;
      const step = ((px - M.l) / state.scale.plotW) * state.xMax;
      let lo = 0;
      let hi = state.rows.length - 1;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (state.rows[mid].step < step) lo = mid + 1; else hi = mid;
      }
      if (lo > 0 && Math.abs(state.rows[lo - 1].step - step) < Math.abs(state.rows[lo].step - step)) lo -= 1;
      const row = state.rows[lo];
      const lines = [`step ${row.step}`, ...state.describe(row)];
      layer()?.remove();
      const g = svgEl("g", { class: "hover" });
      const cx = state.scale.x(row.step);
      g.append(svgEl("line", { class: "cursor", x1: cx, x2: cx, y1: M.t, y2: H - M.b }));
      const tipW = 150;
      const tipH = 14 * lines.length + 10;
      const tx = cx + 10 + tipW > W ? cx - 10 - tipW : cx + 10;
      const tip = svgEl("g", { class: "tip" });
      tip.append(svgEl("rect", { x: tx, y: M.t, width: tipW, height: tipH, rx: 5 }));
      lines.forEach((line, i) => tip.append(svgEl("text", { x: tx + 8, y: M.t + 17 + i * 14 }, line)));
      g.append(tip);
      svg.append(g);
    });
  }

  // ---------------------------------------------------------------- one job

  async function jobPage() {
    const jobId = document.body.dataset.jobId;
    const base = `/fine_tuning/jobs/${enc(jobId)}`;
    let job = null;
    const seen = new Set(); // event ids already taken in, whichever way they came
    const metrics = []; // the data of every metrics event, in step order
    let lastEventId = null;

    // ---- the job itself
    async function refreshJob() {
      try {
        job = await api(base);
      } catch (e) {
        if (e.status === 404) {
          $("#job-error").textContent = e.message;
          $("#job-error").hidden = false;
          $("#job-body").hidden = true;
          document.querySelector(".page-head .actions").hidden = true;
        }
        throw e;
      }
      renderJob();
      return job;
    }

    function renderJob() {
      setBadge($("#job-status"), job.status);
      for (const action of ["cancel", "pause", "resume"]) {
        $(`#btn-${action}`).disabled = !ALLOWED[action].has(job.status);
      }
      const sub = [job.model];
      if (job.fine_tuned_model) sub.push(`→ ${job.fine_tuned_model}`);
      $("#job-sub").textContent = sub.join(" ");
      if (job.status === "failed" && job.error && job.error.message) {
        $("#job-error").textContent = `Failed: ${job.error.message}`;
        $("#job-error").hidden = false;
      }
      const method = job.method || { type: "supervised" };
      const details = [
        ["Status", badge(job.status)],
        ["Base model", job.model],
        ["Fine-tuned model", job.fine_tuned_model
          ? el("span", {}, el("span", { class: "model-name", text: job.fine_tuned_model }), " ",
            job.status === "succeeded" ? el("a", { href: `/chat?model=${enc(job.fine_tuned_model)}`, text: "try it →" }) : null)
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
      // ftserve's own extension: the training settings in it, not where files live.
      const ext = job.ftserve && typeof job.ftserve === "object" ? job.ftserve : {};
      for (const k of ["adapter", "lora_rank", "lora_alpha", "training_format"]) {
        const v = ext[k];
        if (v !== null && v !== undefined && typeof v !== "object") rows.push([k, el("span", { class: "mono", text: fmtNum(v, 6) })]);
      }
      fillKv($("#job-hparams"), rows.length ? rows : [["—", "not resolved yet"]]);
      renderProgress();
    }

    function fillKv(dl, rows) {
      dl.replaceChildren(...rows.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", {}, v)]));
    }

    function renderProgress() {
      const last = metrics[metrics.length - 1];
      const bar = $("#progress-fill").parentElement;
      bar.className = "progress";
      if (job && job.status === "succeeded") bar.classList.add("done");
      else if (job && job.status === "paused") bar.classList.add("paused");
      else if (job && FINAL.has(job.status)) bar.classList.add("stopped");
      if (!last) {
        $("#progress-fill").style.width = job && job.status === "succeeded" ? "100%" : "0";
        $("#progress-text").textContent = job ? job.status.replace("_", " ") : "—";
        return;
      }
      const pct = last.total_steps ? (100 * last.step) / last.total_steps : 0;
      $("#progress-fill").style.width = `${Math.min(100, pct)}%`;
      $("#progress-text").textContent = `step ${last.step} / ${last.total_steps ?? "?"} · ${pct.toFixed(0)}%`;
    }

    // ---- buttons
    for (const action of ["cancel", "pause", "resume"]) {
      $(`#btn-${action}`).addEventListener("click", async (ev) => {
        const button = ev.currentTarget;
        if (action === "cancel" && !confirm(`Cancel ${jobId}? A cancelled job cannot be resumed.`)) return;
        button.disabled = true;
        try {
          job = await api(`${base}/${action}`, { method: "POST" });
          renderJob();
          toast(`Job ${action === "cancel" ? "cancelled" : action === "pause" ? "paused" : "resumed"}.`);
          wake();
        } catch (e) {
          toast(e.message, true);
          renderJob();
        }
      });
    }

    // ---- chart
    const lossSvg = $("#chart-loss");
    const accSvg = $("#chart-acc");
    const chartState = { loss: null, acc: null };
    let drawQueued = false;
    function scheduleDraw() {
      if (drawQueued) return;
      drawQueued = true;
      requestAnimationFrame(() => { drawQueued = false; draw(); });
    }

    function draw() {
      const pick = (key) => metrics.filter((m) => typeof m[key] === "number").map((m) => [m.step, m[key]]);
      const last = metrics[metrics.length - 1];
      const xMax = Math.max(1, (last && last.total_steps) || 0, last ? last.step : 0);
      const placeholder = metrics.length ? null
        : job && FINAL.has(job.status) ? "This job logged no training steps."
        : "Waiting for the first training step…";
      const loss = [
        { key: "train_loss", cls: "s-train", label: "training", points: pick("train_loss") },
        { key: "valid_loss", cls: "s-valid", label: "validation", points: pick("valid_loss"), optional: true },
        { key: "full_valid_loss", cls: "s-full", label: "full validation", points: pick("full_valid_loss"), optional: true, dots: true },
      ];
      const acc = [
        { key: "train_mean_token_accuracy", cls: "s-train", label: "training", points: pick("train_mean_token_accuracy") },
        { key: "valid_mean_token_accuracy", cls: "s-valid", label: "validation", points: pick("valid_mean_token_accuracy"), optional: true },
        { key: "full_valid_mean_token_accuracy", cls: "s-full", label: "full validation", points: pick("full_valid_mean_token_accuracy"), optional: true, dots: true },
      ];
      for (const s of [...loss, ...acc]) {
        if (s.cls === "s-valid" && s.points.length <= 60) s.dots = true;
      }
      const [lossMin, lossMax] = yRange(loss, 0, Infinity, [0, 1]);
      const [accMin, accMax] = yRange(acc, 0, 1, [0, 1]);
      const scaleLoss = drawChart(lossSvg, { series: loss, xMax, yMin: lossMin, yMax: lossMax, placeholder });
      const scaleAcc = drawChart(accSvg, { series: acc, xMax, yMin: accMin, yMax: accMax, percent: true, placeholder });
      lossSvg.dataset.points = String(loss[0].points.length);
      accSvg.dataset.points = String(acc[0].points.length);
      chartState.loss = { rows: metrics, scale: scaleLoss, xMax, describe: (r) => describe(r, false) };
      chartState.acc = { rows: metrics, scale: scaleAcc, xMax, describe: (r) => describe(r, true) };
    }

    function describe(row, acc) {
      const pairs = acc
        ? [["train", row.train_mean_token_accuracy], ["valid", row.valid_mean_token_accuracy], ["full valid", row.full_valid_mean_token_accuracy]]
        : [["train", row.train_loss], ["valid", row.valid_loss], ["full valid", row.full_valid_loss]];
      return pairs.filter(([, v]) => typeof v === "number")
        .map(([k, v]) => `${k} ${acc ? `${(v * 100).toFixed(1)}%` : v.toFixed(4)}`);
    }
    attachCursor(lossSvg, () => chartState.loss);
    attachCursor(accSvg, () => chartState.acc);

    // ---- events log: the list endpoint's pages (newest first), live events added on top
    const logBody = $("#events-body");
    const logIds = new Set();
    const LOG_PAGE = 20;
    let logShown = 0; // rows the pages read so far hold (what the log keeps showing)
    let logAfter = null;
    let logTopId = null; // the newest event of the first page read
    let caughtUp = false; // the live feed has passed logTopId: what comes now is new
    const moreBtn = $("#events-more");

    function eventRow(ev, fresh) {
      const level = ev.type === "metrics" ? "metrics" : ev.level;
      return el("tr", { class: [ev.type === "metrics" ? "metrics" : "", fresh ? "fresh" : ""].join(" ").trim() || null, dataset: { eventId: ev.id } },
        el("td", { title: fmtTime(ev.created_at), text: fmtClock(ev.created_at) }),
        el("td", {}, el("span", { class: `badge lvl-${level}`, text: level })),
        el("td", { text: ev.message }));
    }

    async function loadLogPage() {
      const q = new URLSearchParams({ limit: String(LOG_PAGE) });
      if (logAfter) q.set("after", logAfter);
      const page = await api(`${base}/events?${q}`);
      const rows = [];
      for (const ev of page.data) {
        if (logIds.has(ev.id)) continue;
        logIds.add(ev.id);
        rows.push(eventRow(ev, false));
      }
      logBody.append(...rows);
      logShown += LOG_PAGE;
      if (page.data.length) {
        logAfter = page.data[page.data.length - 1].id;
        if (logTopId === null) logTopId = page.data[0].id;
      }
      if (logTopId === null) caughtUp = true; // an empty log: everything live is new
      moreBtn.hidden = !page.has_more;
    }
    moreBtn.addEventListener("click", () => loadLogPage().catch((e) => toast(e.message, true)));
    $("#show-metrics").addEventListener("change", (ev) => {
      $("#events-table").classList.toggle("hide-metrics", !ev.target.checked);
    });

    // Live events go on top, and as many rows drop off the bottom: the log keeps showing the
    // newest pages it was asked for, and "Load older" goes on from its last row (the list
    // endpoint's `after` is that row's id), so nothing is skipped or shown twice.
    let pendingRows = [];
    function addLive(ev) {
      if (!caughtUp) {
        if (ev.id === logTopId) caughtUp = true;
        return;
      }
      if (logIds.has(ev.id)) return;
      logIds.add(ev.id);
      pendingRows.push(eventRow(ev, true));
      if (pendingRows.length === 1) requestAnimationFrame(flushLive);
    }

    function flushLive() {
      logBody.prepend(...pendingRows.reverse());
      pendingRows = [];
      const keep = Math.max(LOG_PAGE, logShown);
      while (logBody.rows.length > keep) {
        const row = logBody.lastElementChild;
        logIds.delete(row.dataset.eventId);
        row.remove();
        moreBtn.hidden = false;
      }
      logAfter = logBody.lastElementChild ? logBody.lastElementChild.dataset.eventId : logAfter;
    }

    // ---- checkpoints
    let ckptTimer = 0;
    function scheduleCheckpoints() {
      clearTimeout(ckptTimer);
      ckptTimer = setTimeout(() => loadCheckpoints().catch(() => {}), 300);
    }
    async function loadCheckpoints() {
      const items = await listAll(`${base}/checkpoints`);
      $("#ckpt-empty").hidden = items.length > 0;
      $("#ckpt-body").replaceChildren(...items.map((c) => {
        const m = c.metrics || {};
        return el("tr", {},
          el("td", { class: "mono", text: String(c.step_number) }),
          el("td", {}, el("span", { class: "model-name", text: c.fine_tuned_model_checkpoint })),
          el("td", { class: "num", text: fmtNum(m.train_loss) }),
          el("td", { class: "num", text: fmtNum(m.full_valid_loss ?? m.valid_loss) }),
          el("td", { class: "num", text: fmtPct(m.train_mean_token_accuracy) }),
          el("td", { class: "num", text: fmtPct(m.full_valid_mean_token_accuracy ?? m.valid_mean_token_accuracy) }),
          el("td", { class: "small", text: fmtTime(c.created_at) }));
      }));
    }

    // ---- taking in events, from the stream or (with an older server) from polling
    let jobTimer = 0;
    function scheduleJobRefresh() {
      clearTimeout(jobTimer);
      jobTimer = setTimeout(() => refreshJob().catch(() => {}), 150);
    }

    function takeEvent(ev) {
      if (!ev || !ev.id || seen.has(ev.id)) return;
      seen.add(ev.id);
      if (ev.type === "metrics" && ev.data && typeof ev.data.step === "number") {
        const last = metrics[metrics.length - 1];
        metrics.push(ev.data);
        if (last && last.step > ev.data.step) metrics.sort((a, b) => a.step - b.step);
        scheduleDraw();
        renderProgress();
      } else {
        // Message events mark the transitions: ask the job what it is now, rather than
        // reading it from the text.
        scheduleJobRefresh();
        scheduleCheckpoints();
      }
      addLive(ev);
    }

    function setLive(state, text) {
      const node = $("#live-mode");
      node.className = `live ${state}`;
      node.textContent = text;
      node.dataset.mode = state === "on" ? text.split(" ")[0] : state;
    }

    let wakeUp = null;
    function wake() { if (wakeUp) wakeUp(); }
    const nap = (ms) => new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      wakeUp = () => { clearTimeout(t); resolve(); };
    });

    // One connection of the stream: "closed" when the server ended it, "unsupported" when the
    // server answered a plain list (one older than the stream); throws when it broke.
    async function streamOnce(onMessage) {
      const headers = authHeaders({ Accept: "text/event-stream" });
      if (lastEventId) headers["Last-Event-ID"] = lastEventId;
      const resp = await fetch(`${API}${base}/events?stream=true`, { headers, cache: "no-store" });
      if (resp.status === 401) { keyRefused(); return "closed"; }
      if (!resp.ok) throw await errorOf(resp);
      if (!(resp.headers.get("content-type") || "").startsWith("text/event-stream")) {
        await resp.body.cancel();
        return "unsupported";
      }
      document.body.dataset.feed = "stream";
      setLive("on", "stream · live");
      for await (const msg of sseMessages(resp.body)) {
        onMessage();
        if (msg === null) continue; // heartbeat
        let ev;
        try { ev = JSON.parse(msg.data); } catch { continue; }
        lastEventId = msg.id || ev.id || lastEventId;
        takeEvent(ev);
      }
      return "closed";
    }

    async function followStream() {
      let backoff = 500;
      for (;;) {
        let outcome;
        try {
          outcome = await streamOnce(() => { backoff = 500; });
        } catch (e) {
          if (e.status === 404) return "done";
          outcome = "broken";
        }
        if (outcome === "unsupported") return "unsupported";
        const now = await refreshJob().catch(() => null);
        // The server closes the stream after the job's terminal event: all has been seen.
        if (outcome === "closed" && now && FINAL.has(now.status)) return "done";
        if (now && now.status === "paused" && outcome === "closed") {
          setLive("warn", "paused");
          while (job.status === "paused") {
            await nap(2000);
            await refreshJob().catch(() => null);
          }
          continue;
        }
        if (outcome === "broken") {
          setLive("warn", "reconnecting…");
          await sleep(backoff);
          backoff = Math.min(8000, backoff * 2);
        } else {
          await sleep(500); // closed early (a restarting server): reconnect, but not in a spin
        }
      }
    }

    // Newest-first pages until one reaches an event already seen: the events not yet seen,
    // oldest first.
    async function unseenEvents() {
      const fresh = [];
      let after = null;
      for (;;) {
        const q = new URLSearchParams({ limit: "1000" });
        if (after) q.set("after", after);
        const page = await api(`${base}/events?${q}`);
        let reachedSeen = false;
        for (const ev of page.data) {
          if (seen.has(ev.id)) { reachedSeen = true; break; }
          fresh.push(ev);
        }
        if (reachedSeen || !page.has_more || !page.data.length) return fresh.reverse();
        after = page.data[page.data.length - 1].id;
      }
    }

    async function followPolling() {
      document.body.dataset.feed = "polling";
      setLive("on", "polling · live");
      for (;;) {
        // The job first: its terminal event is written with its final status, so the events
        // read after a final status include the last one.
        const now = await refreshJob().catch(() => null);
        try {
          for (const ev of await unseenEvents()) takeEvent(ev);
        } catch (e) {
          if (e.status === 404) return;
        }
        if (now && FINAL.has(now.status)) return;
        if (now && now.status === "paused") setLive("warn", "paused");
        else setLive("on", "polling · live");
        await nap(1000);
      }
    }

    try {
      await refreshJob();
    } catch (e) {
      if (e.status === 404) return; // said on the page
      throw e;
    }
    scheduleDraw();
    await Promise.all([loadLogPage(), loadCheckpoints()]).catch((e) => toast(e.message, true));
    const how = await followStream();
    if (how === "unsupported") await followPolling();
    await loadCheckpoints().catch(() => {});
    scheduleDraw();
    setLive("off", job ? `${job.status.replace("_", " ")} · ${metrics.length} steps` : "ended");
  }

  // ---------------------------------------------------------------- new job

  async function newJobPage() {
    const modelSel = $("#f-model");
    const trainSel = $("#f-training");
    const validSel = $("#f-validation");

    async function loadModels() {
      const models = (await api("/models")).data;
      modelSel.replaceChildren(...models.map((m) => el("option", { value: m.id, text: m.id })));
    }

    async function loadFiles(select) {
      const files = (await api("/files?purpose=fine-tune")).data;
      const options = (none) => [
        ...(none ? [el("option", { value: "", text: "none" })] : []),
        ...files.map((f) => el("option", { value: f.id, text: `${f.filename} · ${fmtBytes(f.bytes)} · ${f.id}` })),
      ];
      trainSel.replaceChildren(...options(false));
      validSel.replaceChildren(...options(true));
      if (select) trainSel.value = select;
      if (!files.length) trainSel.replaceChildren(el("option", { value: "", text: "upload a file first" }));
      $("#files-empty").hidden = files.length > 0;
      $("#files-body").replaceChildren(...files.slice(0, 12).map((f) => el("tr", {},
        el("td", {}, el("div", { text: f.filename }), el("div", { class: "small mono", text: f.id })),
        el("td", { class: "num small", text: fmtBytes(f.bytes) }),
        el("td", { class: "small", title: fmtTime(f.created_at), text: ago(f.created_at) }))));
    }

    $("#f-method").addEventListener("change", (ev) => {
      $("#beta-field").hidden = ev.target.value !== "dpo";
    });

    $("#upload-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const input = $("#upload-file");
      const out = $("#upload-result");
      if (!input.files.length) return;
      const form = new FormData();
      form.append("purpose", "fine-tune");
      form.append("file", input.files[0]);
      out.hidden = false;
      out.className = "form-note";
      out.textContent = "Uploading…";
      try {
        const resp = await fetch(`${API}/files`, { method: "POST", headers: authHeaders(), body: form });
        if (resp.status === 401) return keyRefused();
        if (!resp.ok) throw await errorOf(resp);
        const file = await resp.json();
        out.textContent = `Uploaded ${file.filename} as ${file.id} (${fmtBytes(file.bytes)}).`;
        out.dataset.fileId = file.id;
        input.value = "";
        await loadFiles(file.id);
      } catch (e) {
        out.className = "form-error";
        out.textContent = e.message;
      }
    });

    $("#job-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const error = $("#job-form-error");
      error.hidden = true;
      const num = (id) => { const v = $(id).value.trim(); return v === "" ? undefined : Number(v); };
      const type = $("#f-method").value;
      const hp = {};
      if (num("#f-epochs") !== undefined) hp.n_epochs = num("#f-epochs");
      if (num("#f-batch") !== undefined) hp.batch_size = num("#f-batch");
      if (num("#f-lr") !== undefined) hp.learning_rate_multiplier = num("#f-lr");
      if (type === "dpo" && num("#f-beta") !== undefined) hp.beta = num("#f-beta");
      const body = { model: modelSel.value, training_file: trainSel.value, method: { type, [type]: { hyperparameters: hp } } };
      if (validSel.value) body.validation_file = validSel.value;
      if ($("#f-suffix").value.trim()) body.suffix = $("#f-suffix").value.trim();
      if (num("#f-seed") !== undefined) body.seed = num("#f-seed");
      try {
        const created = await api("/fine_tuning/jobs", { method: "POST", json: body });
        location.assign(`/jobs/${enc(created.id)}`);
      } catch (e) {
        error.textContent = e.message;
        error.hidden = false;
      }
    });

    await Promise.all([loadModels(), loadFiles()]);
  }

  // ---------------------------------------------------------------- chat

  async function chatPage() {
    const modelSel = $("#chat-model");
    const log = $("#chat-log");
    const input = $("#chat-input");
    const history = [];
    let controller = null;

    const models = (await api("/models")).data;
    // Fine-tuned models first: they are what one comes here to try.
    models.sort((a, b) => (b.id.startsWith("ft:") - a.id.startsWith("ft:")) || (b.created || 0) - (a.created || 0));
    modelSel.replaceChildren(...models.map((m) => el("option", { value: m.id, text: m.id })));
    const wanted = new URLSearchParams(location.search).get("model");
    if (wanted && models.some((m) => m.id === wanted)) modelSel.value = wanted;

    function bubble(cls, text) {
      $("#chat-empty")?.remove();
      const node = el("div", { class: `msg ${cls}`, text });
      log.append(node);
      log.scrollTop = log.scrollHeight;
      return node;
    }

    $("#chat-clear").addEventListener("click", () => {
      if (controller) controller.abort();
      history.length = 0;
      log.replaceChildren(el("p", { class: "empty", id: "chat-empty", text: "Say something to the model." }));
    });
    $("#chat-stop").addEventListener("click", () => { if (controller) controller.abort(); });
    input.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" && !ev.shiftKey) {
        ev.preventDefault();
        $("#chat-form").requestSubmit();
      }
    });

    $("#chat-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const text = input.value.trim();
      if (!text || controller) return;
      input.value = "";
      history.push({ role: "user", content: text });
      bubble("user", text);
      const answer = bubble("assistant streaming", "");
      const messages = [];
      const system = $("#chat-system").value.trim();
      if (system) messages.push({ role: "system", content: system });
      messages.push(...history);
      const maxTokens = Number($("#chat-max").value) || undefined;
      controller = new AbortController();
      $("#chat-send").disabled = true;
      $("#chat-stop").hidden = false;
      const started = performance.now();
      let pieces = 0;
      let finish = null;
      try {
        const resp = await fetch(`${API}/chat/completions`, {
          method: "POST",
          headers: authHeaders({ "Content-Type": "application/json", Accept: "text/event-stream" }),
          body: JSON.stringify({ model: modelSel.value, messages, stream: true, max_tokens: maxTokens }),
          signal: controller.signal,
        });
        if (resp.status === 401) return keyRefused();
        if (!resp.ok) throw await errorOf(resp);
        for await (const msg of sseMessages(resp.body)) {
          if (msg === null) continue;
          if (msg.data === "[DONE]") break;
          const chunk = JSON.parse(msg.data);
          if (chunk.error) throw new Error(chunk.error.message);
          const choice = chunk.choices && chunk.choices[0];
          if (!choice) continue;
          if (choice.delta && choice.delta.content) {
            answer.textContent += choice.delta.content;
            pieces += 1;
            log.scrollTop = log.scrollHeight;
          }
          if (choice.finish_reason) finish = choice.finish_reason;
        }
        history.push({ role: "assistant", content: answer.textContent });
        const secs = (performance.now() - started) / 1000;
        answer.append(el("span", { class: "meta", text: `${modelSel.value} · ${pieces} chunks in ${secs.toFixed(1)} s${finish ? ` · ${finish}` : ""}` }));
      } catch (e) {
        if (e.name === "AbortError") {
          answer.append(el("span", { class: "meta", text: "stopped" }));
          if (answer.firstChild && answer.firstChild.nodeType === Node.TEXT_NODE) {
            history.push({ role: "assistant", content: answer.firstChild.textContent });
          }
        } else {
          answer.className = "msg error";
          answer.textContent = e.message;
          history.pop();
        }
      } finally {
        answer.classList.remove("streaming");
        answer.dataset.done = "true";
        controller = null;
        $("#chat-send").disabled = false;
        $("#chat-stop").hidden = true;
        input.focus();
      }
    });
    input.focus();
  }

  const PAGES = { jobs: jobsPage, job: jobPage, new: newJobPage, chat: chatPage };
})();
