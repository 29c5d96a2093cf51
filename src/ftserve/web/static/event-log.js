// A job's event log: the list endpoint's pages (newest first), live events added on top.

import { api } from "./api.js";
import { $, el, toast } from "./dom.js";
import { EVENT_TYPE } from "./facts.js";
import { fmtClock, fmtTime } from "./format.js";

const LOG_PAGE = 20;

// Answers loadPage() (the next older page) and addLive(event) (an event the live feed brought).
export function eventLog(base) {
  const logBody = $("#events-body");
  const logIds = new Set();
  let logShown = 0; // rows the pages read so far hold (what the log keeps showing)
  let logAfter = null;
  let logTopId = null; // the newest event of the first page read
  let caughtUp = false; // the live feed has passed logTopId: what comes now is new
  const moreBtn = $("#events-more");

  function eventRow(ev, fresh) {
    const metrics = ev.type === EVENT_TYPE.METRICS;
    const level = metrics ? EVENT_TYPE.METRICS : ev.level;
    return el("tr", { class: [metrics ? "metrics" : "", fresh ? "fresh" : ""].join(" ").trim() || null, dataset: { eventId: ev.id } },
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

  return { loadPage: loadLogPage, addLive };
}
