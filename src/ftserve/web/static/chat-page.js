// The chat page: a base or fine-tuned model's answer, streamed in as it is generated.

import { API, api, authHeaders, errorOf, keyRefused } from "./api.js";
import { $, el } from "./dom.js";
import { sseMessages } from "./sse.js";

export async function chatPage() {
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
