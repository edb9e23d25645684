// The live floor page: a snapshot from /live/state, then changes from /live/stream (SSE).
"use strict";

const MAX_DOORS = 20;
const floors = document.getElementById("floors");
const loginForm = document.getElementById("login");
const link = document.getElementById("link");
let stream = null;

function element(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function deskLabel(desk) {
  return desk.changed_at ? `${desk.state} since ${new Date(desk.changed_at).toLocaleTimeString()}` : desk.state;
}

function paintDesk(node, desk) {
  node.className = `desk state-${desk.state}`;
  node.dataset.state = desk.state;
  node.title = `${desk.desk} (${desk.zone}): ${deskLabel(desk)}`;
}

function doorItem(event) {
  const when = event.ts ? new Date(event.ts).toLocaleTimeString() : "";
  return element("li", { class: `kind-${event.kind}` }, `${when} ${event.door} · ${event.kind}`);
}

function drawSite(site) {
  const section = element("section", { class: "site", "data-site": site.site });
  const title = element("h2", {}, site.name || site.site);
  const count = element("span", { class: "headcount", "data-headcount": "" }, `${site.headcount} present`);
  title.append(count);
  const plan = element("div", { class: "plan" });
  const zones = new Map();
  for (const desk of site.desks) {
    if (!zones.has(desk.zone)) zones.set(desk.zone, []);
    zones.get(desk.zone).push(desk);
  }
  for (const [zone, desks] of zones) {
    const box = element("div", { class: "zone", "data-zone": zone });
    box.append(element("h3", {}, zone));
    const grid = element("div", { class: "grid" });
    let spare = 0;
    for (const desk of desks) {
      const node = element("div", { "data-desk": desk.desk }, desk.desk);
      if (desk.x !== null && desk.y !== null) {
        node.style.gridColumn = String(desk.x + 1);
        node.style.gridRow = String(desk.y + 1);
      } else {
        node.style.gridRow = "1000";
        node.style.gridColumn = String(++spare);
      }
      paintDesk(node, desk);
      grid.append(node);
    }
    box.append(grid);
    plan.append(box);
  }
  const doors = element("aside", { class: "doors" });
  doors.append(element("h3", {}, "Door events"));
  const list = element("ol", { "data-doors": "" });
  for (const event of site.doors) list.append(doorItem(event));
  doors.append(list);
  section.append(title, plan, doors);
  return section;
}

function applyChange(change) {
  const section = floors.querySelector(`[data-site="${CSS.escape(change.site)}"]`);
  if (!section) return;
  if (change.type === "desk") {
    const node = section.querySelector(`[data-desk="${CSS.escape(change.desk.desk)}"]`);
    if (node) paintDesk(node, change.desk);
    section.querySelector("[data-headcount]").textContent = `${change.headcount} present`;
  } else if (change.type === "door") {
    const list = section.querySelector("[data-doors]");
    list.prepend(doorItem(change.event));
    while (list.children.length > MAX_DOORS) list.lastElementChild.remove();
  }
}

async function load() {
  const answer = await fetch("/live/state", { credentials: "same-origin" });
  if (answer.status === 401 || answer.status === 403) {
    loginForm.hidden = false;
    return;
  }
  if (!answer.ok) throw new Error(`live state: HTTP ${answer.status}`);
  const state = await answer.json();
  loginForm.hidden = true;
  floors.replaceChildren(...state.sites.map(drawSite));
  follow();
}

function follow() {
  if (stream) stream.close();
  stream = new EventSource("/live/stream");
  stream.onopen = () => { link.dataset.state = "live"; link.textContent = "live"; };
  stream.onerror = () => { link.dataset.state = "idle"; link.textContent = "reconnecting"; };
  stream.onmessage = (message) => applyChange(JSON.parse(message.data));
}

loginForm.addEventListener("submit", async (submit) => {
  submit.preventDefault();
  const error = document.getElementById("login-error");
  const key = document.getElementById("key");
  const answer = await fetch("/login", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ key: key.value }),
    credentials: "same-origin",
  });
  key.value = "";
  if (answer.ok) {
    error.textContent = "";
    await load();
  } else {
    const body = await answer.json().catch(() => ({}));
    error.textContent = body.detail || `login failed (HTTP ${answer.status})`;
  }
});

load().catch((failure) => { link.textContent = String(failure); });
