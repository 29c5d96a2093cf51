// The key and the API: every request goes to this server's /v1 with the key the person pasted,
// in the Authorization header and nowhere else.

export const API = "/v1";
const KEY_STORE = "ftserve.apiKey";

export const enc = encodeURIComponent;
export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export const getKey = () => sessionStorage.getItem(KEY_STORE);
export const setKey = (key) => sessionStorage.setItem(KEY_STORE, key);

export function forgetKey() {
  sessionStorage.removeItem(KEY_STORE);
  location.reload();
}

export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

export function authHeaders(extra = {}) {
  return { Authorization: `Bearer ${getKey()}`, ...extra };
}

// A key the server refuses (revoked, or another server's) is forgotten, and the form shown.
export const keyRefused = forgetKey;

export async function errorOf(resp) {
  let body = null;
  try { body = await resp.json(); } catch { /* not JSON: the status says enough */ }
  const err = body && body.error;
  let message = (err && err.message) || `HTTP ${resp.status}`;
  if (err && err.param) message += ` (${err.param})`;
  return new ApiError(resp.status, message, body);
}

export async function api(path, { method = "GET", json, body, signal } = {}) {
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
export async function listAll(path, limit = 100) {
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
