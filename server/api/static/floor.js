// The live floor page: a snapshot from /live/state, then changes from /live/stream (SSE).
// Its texts come from the page (data-* attributes, the legend, #door-kinds), in the
// reader's language; times are written in the page's language too.
"use strict";

const MAX_DOORS = 20;
const floors = document.getElementById("floors");
const link = document.getElementById("link");
const lang = document.documentElement.lang || "fr";
// Written as the server's pages are: British English (24-hour clock) and French of France.
const locale = { en: "en-GB", fr: "fr-FR" }[lang] || lang;
const plurals = new Intl.PluralRules(locale);
const states = new Map(
  [...document.querySelectorAll(".legend [data-state]")].map((item) => [
    item.dataset.state, item.querySelector(".label").textContent,
  ]),
);
const kindsTemplate = document.getElementById("door-kinds");
const kinds = new Map(
  [...(kindsTemplate ? kindsTemplate.content.querySelectorAll("[data-kind]") : [])].map(
    (item) => [item.dataset.kind, item.textContent],
  ),
);
let stream = null;

function element(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function clock(iso) {
  return new Date(iso).toLocaleTimeString(locale, { hour: "2-digit", minute: "2-digit" });
}

function present(count) {
  const form = plurals.select(count) === "one" ? "presentOne" : "presentOther";
  return floors.dataset[form].replace("{n}", String(count));
}

function deskLabel(desk) {
  const state = states.get(desk.state) || desk.state;
  let label = desk.changed_at
    ? floors.dataset.since.replace("{state}", state).replace("{time}", clock(desk.changed_at))
    : state;
  // The member checked in at the desk, when the server says who.
  if (desk.member) label += ` · ${desk.member}`;
  return label;
}

function paintDesk(node, desk) {
  node.className = `desk state-${desk.state}`;
  node.dataset.state = desk.state;
  node.title = `${desk.desk} (${desk.zone}): ${deskLabel(desk)}`;
  node.setAttribute("aria-label", node.title);
  if (desk.member) node.dataset.member = desk.member;
  else delete node.dataset.member;
}

function doorItem(event) {
  const when = event.ts ? clock(event.ts) : "";
  const kind = kinds.get(event.kind) || event.kind;
  return element("li", { class: `kind-${event.kind}` }, `${when} ${event.door} · ${kind}`);
}

function drawSite(site) {
  const section = element("section", { class: "site", "data-site": site.site });
  const title = element("h2", {}, site.name || site.site);
  const count = element("span", { class: "headcount", "data-headcount": "" }, present(site.headcount));
  title.append(" ", count);
  const plan = element("div", { class: "plan" });
  const zones = new Map();
  for (const desk of site.desks) {
    if (!zones.has(desk.zone)) zones.set(desk.zone, []);
    zones.get(desk.zone).push(desk);
  }
  for (const [zone, desks] of zones) {
    const box = element("div", { class: "zone", "data-zone": zone });
    box.append(element("h3", {}, zone));
    const grid = element("div", { class: "grid", role: "list" });
    let spare = 0;
    for (const desk of desks) {
      const node = element("div", { "data-desk": desk.desk, role: "listitem" }, desk.desk);
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
  doors.append(element("h3", {}, floors.dataset.doors));
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
    section.querySelector("[data-headcount]").textContent = present(change.headcount);
  } else if (change.type === "door") {
    const list = section.querySelector("[data-doors]");
    list.prepend(doorItem(change.event));
    while (list.children.length > MAX_DOORS) list.lastElementChild.remove();
  }
}

async function load() {
  const answer = await fetch("/live/state", { credentials: "same-origin" });
  if (answer.status === 401) {
    // The session ended: the page itself sends to sign-in.
    window.location.reload();
    return;
  }
  if (!answer.ok) throw new Error(`live state: HTTP ${answer.status}`);
  const state = await answer.json();
  floors.replaceChildren(...state.sites.map(drawSite));
  follow();
}

function follow() {
  if (stream) stream.close();
  stream = new EventSource("/live/stream");
  stream.onopen = () => {
    link.dataset.state = "live";
    link.textContent = link.dataset.live;
  };
  stream.onerror = () => {
    link.dataset.state = "idle";
    link.textContent = link.dataset.reconnecting;
  };
  stream.onmessage = (message) => applyChange(JSON.parse(message.data));
}

if (floors) load().catch((failure) => { link.textContent = String(failure); });
