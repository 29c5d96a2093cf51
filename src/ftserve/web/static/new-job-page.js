// The new-job page: upload a JSONL file, then start a job on it from the form.

import { API, api, authHeaders, enc, errorOf, keyRefused } from "./api.js";
import { $, el } from "./dom.js";
import { ago, fmtBytes, fmtTime } from "./format.js";

export async function newJobPage() {
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
