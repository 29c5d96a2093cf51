"""The dashboard's HTML, built as strings: a shared frame (header, key form) around each page's
empty skeleton, which the script fills from the API. Nothing here is data, and nothing is a key;
the one value taken from a request, a job id in the path, is escaped."""

from __future__ import annotations

import json
from html import escape

from ..jobs.method_schemas import BATCH_SIZE_MAX, BETA_MAX, N_EPOCHS_MAX
from ..jobs.schemas import MAX_SEED, SUFFIX_MAX_LENGTH

Versions = dict[str, str]  # each asset's name → its content hash


def import_map(versions: Versions) -> str:
    """Each script module's URL → the same URL with its hash. A module's ``import "./api.js"``
    resolves through it, so a page only ever runs the modules of the server that served it,
    without a build step rewriting the imports."""
    imports = {
        f"/static/{name}": f"/static/{name}?v={version}"
        for name, version in sorted(versions.items())
        if name.endswith(".js")
    }
    return json.dumps({"imports": imports}, separators=(",", ":"))


def assets_head(versions: Versions, facts: str) -> str:
    """What every page's head loads: the stylesheet, the server's facts (JSON text safe inside
    a script element, web/facts.py), the import map and the entry module."""
    return f"""<link rel="stylesheet" href="/static/app.css?v={versions["app.css"]}">
<script type="application/json" id="server-facts">{facts}</script>
<script type="importmap">{import_map(versions)}</script>
<script type="module" src="/static/app.js?v={versions["app.js"]}"></script>"""


_KEY_FORM = """
<section id="key-gate" class="gate" hidden>
  <form id="key-form" class="card gate-card" autocomplete="off">
    <h1>Connect to ftserve</h1>
    <p>Paste an API key of this server. It is in <code>ftserve-data/api_key</code> (or
      <code>FTSERVE_API_KEYS</code>). It stays in this browser tab's session storage and is sent
      only to this server, in the <code>Authorization</code> header.</p>
    <label for="api-key">API key</label>
    <input id="api-key" name="api-key" type="password" spellcheck="false" required
      autocomplete="off" placeholder="sk-ftserve-…">
    <p id="key-error" class="form-error" hidden></p>
    <button type="submit" class="primary">Continue</button>
  </form>
</section>
"""


def _frame(head: str, title: str, page: str, body: str, job_id: str | None = None) -> str:
    job_attr = f' data-job-id="{escape(job_id)}"' if job_id is not None else ""
    current = "jobs" if page == "job" else page
    links = (("jobs", "/", "Jobs"), ("new", "/new", "New job"), ("chat", "/chat", "Chat"))
    nav = "".join(
        f'<a href="{href}" class="active">{label}</a>'
        if name == current
        else f'<a href="{href}">{label}</a>'
        for name, href, label in links
    )
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)} · ftserve</title>
<link rel="icon" href="data:,">
{head}
</head>
<body data-page="{page}"{job_attr}>
<header class="top">
  <a class="brand" href="/"><span class="logo" aria-hidden="true"></span>ftserve</a>
  <nav>{nav}</nav>
  <div id="key-state" class="key-state" hidden>
    <span class="dot" aria-hidden="true"></span>connected
    <button id="forget-key" type="button" class="link">forget key</button>
  </div>
</header>
{_KEY_FORM}
<main id="app" hidden>
{body}
</main>
<div id="toast" class="toast" role="status" hidden></div>
</body>
</html>
"""


def jobs(head: str) -> str:
    body = """
<div class="page-head">
  <div>
    <h1>Fine-tuning jobs</h1>
    <p class="sub">Newest first; refreshed every few seconds.</p>
  </div>
  <a class="button primary" href="/new">New job</a>
</div>
<section class="card flush">
  <table class="table" id="jobs-table">
    <thead><tr>
      <th>Job</th><th>Model</th><th>Status</th><th class="w-progress">Progress</th>
      <th>Created</th>
    </tr></thead>
    <tbody id="jobs-body"></tbody>
  </table>
  <p id="jobs-empty" class="empty" hidden>No jobs yet. <a href="/new">Start one.</a></p>
  <div class="more"><button id="jobs-more" type="button" hidden>Show more</button></div>
</section>
"""
    return _frame(head, "Jobs", "jobs", body)


def job(head: str, job_id: str) -> str:
    jid = escape(job_id)
    body = f"""
<div class="page-head">
  <div>
    <a class="back" href="/">← All jobs</a>
    <h1 class="mono" id="job-title">{jid}</h1>
    <p class="sub" id="job-sub"></p>
  </div>
  <div class="actions">
    <span id="job-status" class="badge">loading</span>
    <button id="btn-pause" type="button" disabled>Pause</button>
    <button id="btn-resume" type="button" disabled>Resume</button>
    <button id="btn-cancel" type="button" class="danger" disabled>Cancel</button>
  </div>
</div>
<p id="job-error" class="banner error" hidden></p>
<div id="job-body">
<div class="progress-row">
  <div class="progress"><span id="progress-fill"></span></div>
  <span id="progress-text" class="mono">—</span>
</div>
<div class="grid">
  <section class="card span-2">
    <div class="card-head">
      <h2>Training curves</h2>
      <span id="live-mode" class="live">connecting…</span>
    </div>
    <div class="charts">
      <figure><figcaption id="caption-loss">Loss</figcaption>
        <svg id="chart-loss" class="chart" role="img" aria-label="Training and validation loss">
        </svg></figure>
      <figure><figcaption id="caption-acc">Mean token accuracy</figcaption>
        <svg id="chart-acc" class="chart" role="img" aria-label="Token accuracy"></svg></figure>
    </div>
  </section>
  <section class="card">
    <h2>Job</h2>
    <dl id="job-details" class="kv"></dl>
  </section>
  <section class="card">
    <h2>Hyperparameters</h2>
    <dl id="job-hparams" class="kv"></dl>
  </section>
  <section class="card span-2 flush">
    <div class="card-head pad"><h2>Checkpoints</h2></div>
    <table class="table" id="ckpt-table">
      <thead><tr>
        <th>Step</th><th>Model</th>
        <th class="num" id="ckpt-train">Train loss</th>
        <th class="num" id="ckpt-valid">Valid loss</th>
        <th class="num acc">Train acc.</th><th class="num acc">Valid acc.</th><th>Created</th>
      </tr></thead>
      <tbody id="ckpt-body"></tbody>
    </table>
    <p id="ckpt-empty" class="empty">No checkpoints yet.</p>
  </section>
  <section class="card span-2 flush">
    <div class="card-head pad">
      <h2>Events</h2>
      <label class="check"><input id="show-metrics" type="checkbox" checked> metrics</label>
    </div>
    <table class="table events" id="events-table">
      <thead><tr><th>Time</th><th>Level</th><th>Message</th></tr></thead>
      <tbody id="events-body"></tbody>
    </table>
    <div class="more"><button id="events-more" type="button" hidden>Load older</button></div>
  </section>
</div>
</div>
"""
    return _frame(head, job_id, "job", body, job_id=job_id)


def new_job(head: str) -> str:
    body = f"""
<div class="page-head">
  <div>
    <h1>New fine-tuning job</h1>
    <p class="sub">Upload JSONL training data, then start a job on it.</p>
  </div>
</div>
<div class="grid">
  <section class="card">
    <h2>1 · Upload a file</h2>
    <form id="upload-form" class="form">
      <label for="upload-file">JSONL file (purpose <code>fine-tune</code>)</label>
      <input id="upload-file" type="file" accept=".jsonl,application/jsonl,application/json"
        required>
      <button type="submit" class="primary">Upload</button>
      <p id="upload-result" class="form-note" hidden></p>
    </form>
    <h2 class="gap">Fine-tune files</h2>
    <table class="table compact" id="files-table">
      <thead><tr><th>File</th><th class="num">Size</th><th>Uploaded</th></tr></thead>
      <tbody id="files-body"></tbody>
    </table>
    <p id="files-empty" class="empty" hidden>None yet.</p>
  </section>
  <section class="card">
    <h2>2 · Start a job</h2>
    <form id="job-form" class="form">
      <label for="f-model">Base model</label>
      <select id="f-model" required></select>
      <label for="f-training">Training file</label>
      <select id="f-training" required></select>
      <label for="f-validation">Validation file <span class="opt">optional</span></label>
      <select id="f-validation"></select>
      <label for="f-method">Method</label>
      <select id="f-method">
        <option value="supervised">Supervised (SFT)</option>
        <option value="dpo">Preference (DPO)</option>
      </select>
      <div class="row">
        <div><label for="f-epochs">Epochs</label>
          <input id="f-epochs" type="number" min="1" max="{N_EPOCHS_MAX}" placeholder="auto"></div>
        <div><label for="f-batch">Batch size</label>
          <input id="f-batch" type="number" min="1" max="{BATCH_SIZE_MAX}" placeholder="auto"></div>
        <div><label for="f-lr">LR multiplier</label>
          <input id="f-lr" type="number" min="0" step="any" placeholder="auto"></div>
      </div>
      <div class="row">
        <div><label for="f-suffix">Suffix <span class="opt">optional</span></label>
          <input id="f-suffix" type="text" maxlength="{SUFFIX_MAX_LENGTH}"
            placeholder="my-model"></div>
        <div><label for="f-seed">Seed <span class="opt">optional</span></label>
          <input id="f-seed" type="number" min="0" max="{MAX_SEED}" placeholder="random"></div>
        <div id="beta-field" hidden><label for="f-beta">DPO beta</label>
          <input id="f-beta" type="number" min="0" max="{BETA_MAX}" step="any"
            placeholder="auto"></div>
      </div>
      <p id="job-form-error" class="form-error" hidden></p>
      <button type="submit" class="primary">Start job</button>
    </form>
  </section>
</div>
"""
    return _frame(head, "New job", "new", body)


def chat(head: str) -> str:
    body = """
<div class="page-head">
  <div>
    <h1>Chat</h1>
    <p class="sub">Try a base or fine-tuned model; the answer streams in as it is generated.</p>
  </div>
  <div class="actions chat-opts">
    <label for="chat-model">Model</label>
    <select id="chat-model"></select>
    <label for="chat-max">Max tokens</label>
    <input id="chat-max" type="number" min="1" value="128">
    <button id="chat-clear" type="button">Clear</button>
  </div>
</div>
<section class="card chat">
  <input id="chat-system" type="text" placeholder="System prompt (optional)">
  <div id="chat-log" class="chat-log" aria-live="polite">
    <p class="empty" id="chat-empty">Say something to the model.</p>
  </div>
  <form id="chat-form" class="chat-form">
    <textarea id="chat-input" rows="2"
      placeholder="Message… (Enter to send, Shift+Enter for a new line)"
      required></textarea>
    <button id="chat-send" type="submit" class="primary">Send</button>
    <button id="chat-stop" type="button" hidden>Stop</button>
  </form>
</section>
"""
    return _frame(head, "Chat", "chat", body)
