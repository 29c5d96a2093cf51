// A job's live feed: its events as they are written, from the event stream (or, with a server
// older than the stream, by polling the list), and the job refreshed at each transition.

import { API, api, authHeaders, errorOf, keyRefused, sleep } from "./api.js";
import { $ } from "./dom.js";
import { FINAL, STATUS } from "./facts.js";
import { sseMessages } from "./sse.js";

// base: the job's API path; state.job: the job as last read; refreshJob(): reads it again;
// seen: the ids of the events taken in; takeEvent(ev): takes in one, whichever way it came.
// Answers follow() (until the job is final or gone), wake() (cut a wait short: a button
// changed the job) and setLive(mode, text) (the feed's badge).
export function jobFeed({ base, state, seen, refreshJob, takeEvent }) {
  let lastEventId = null;

  function setLive(mode, text) {
    const node = $("#live-mode");
    node.className = `live ${mode}`;
    node.textContent = text;
    node.dataset.mode = mode === "on" ? text.split(" ")[0] : mode;
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
      if (now && now.status === STATUS.PAUSED && outcome === "closed") {
        setLive("warn", "paused");
        while (state.job.status === STATUS.PAUSED) {
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
      if (now && now.status === STATUS.PAUSED) setLive("warn", "paused");
      else setLive("on", "polling · live");
      await nap(1000);
    }
  }

  async function follow() {
    const how = await followStream();
    if (how === "unsupported") await followPolling();
  }

  return { follow, wake, setLive };
}
