// Building and updating the page: element helpers, status badges, the toast.

const SVG_NS = "http://www.w3.org/2000/svg";

export const $ = (sel) => document.querySelector(sel);

export function el(tag, props = {}, ...children) {
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

export function svgEl(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

export const statusText = (status) => status.replace("_", " ");

export function badge(status) {
  return el("span", { class: `badge s-${status}`, text: statusText(status) });
}

export function setBadge(node, status) {
  node.className = `badge s-${status}`;
  node.textContent = statusText(status);
}

let toastTimer = 0;
export function toast(text, isError = false) {
  const node = $("#toast");
  node.textContent = text;
  node.classList.toggle("error", isError);
  node.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { node.hidden = true; }, isError ? 7000 : 3500);
}
