// ftserve dashboard: hand-written ES modules, no build step, no libraries, nothing loaded from
// outside this server. The pages they run on hold no data; everything comes from the public
// API (/v1) with the key the person pasted, sent in the Authorization header and nowhere else.
// This module asks for the key once per tab, then runs the page's own module.

import { API, errorOf, forgetKey, getKey, setKey } from "./api.js";
import { chatPage } from "./chat-page.js";
import { $, toast } from "./dom.js";
import { jobPage } from "./job-page.js";
import { jobsPage } from "./jobs-page.js";
import { newJobPage } from "./new-job-page.js";

const PAGES = { jobs: jobsPage, job: jobPage, new: newJobPage, chat: chatPage };

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
    setKey(key);
    input.value = "";
    start();
  });
  $("#forget-key").addEventListener("click", forgetKey);
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
