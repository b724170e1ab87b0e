// The search page: the esg-search JSON API of this index, the whole state in the URL.
"use strict";

const API = "/esg-search/search";
const PAGE = 10;
const FACET_VALUES = 30; // values drawn per facet before "all N values"
const FACET_SETS = JSON.parse(document.getElementById("facet-sets").textContent);
const DEFAULT_FACETS = FACET_SETS["*"];
const SHOWN_FIELDS = ["project", "activity_id", "institution_id", "source_id", "experiment_id",
  "member_id", "table_id", "variable_id", "grid_label", "frequency", "realm", "model",
  "experiment", "institute", "time_frequency", "ensemble", "variable", "data_node", "version",
  "datetime_start", "datetime_stop", "number_of_files", "size", "latest", "replica", "retracted"];
const $ = (id) => document.getElementById(id);

function facetsOf(project) {
  return FACET_SETS[project] || DEFAULT_FACETS;
}

// -- state <-> URL --------------------------------------------------------------------------
function readState() {
  const p = new URLSearchParams(location.search);
  const state = {
    q: p.get("q") || "",
    project: p.get("project") || "",
    latest: p.get("latest") !== "false",
    replicas: p.get("replicas") === "true",
    offset: Math.max(0, parseInt(p.get("offset") || "0", 10) || 0),
    selected: {},
  };
  for (const [name, value] of p.entries()) {
    if (["q", "project", "latest", "replicas", "offset"].includes(name)) continue;
    (state.selected[name] = state.selected[name] || []).push(value);
  }
  return state;
}

function stateQuery(state) {
  const p = new URLSearchParams();
  if (state.q) p.set("q", state.q);
  if (state.project) p.set("project", state.project);
  if (!state.latest) p.set("latest", "false");
  if (state.replicas) p.set("replicas", "true");
  if (state.offset) p.set("offset", String(state.offset));
  for (const [name, values] of Object.entries(state.selected)) {
    for (const v of values) p.append(name, v);
  }
  return p.toString();
}

function go(state, replace) {
  const query = stateQuery(state);
  const url = query ? `/?${query}` : "/";
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  render(state);
}

// -- esg-search requests --------------------------------------------------------------------
function constraints(state, withProject) {
  const p = new URLSearchParams();
  if (withProject && state.project) p.set("project", state.project);
  if (state.latest) p.set("latest", "true");
  if (!state.replicas) p.set("replica", "false");
  if (state.q) p.set("query", state.q);
  for (const [name, values] of Object.entries(state.selected)) {
    for (const v of values) p.append(name, v);
  }
  return p;
}

async function getJSON(params) {
  params.set("format", "application/solr+json");
  const r = await fetch(`${API}?${params}`, { headers: { Accept: "application/json" } });
  if (!r.ok) {
    const text = await r.text();
    const message = (text.match(/<p>([^<]*)<\/p>/) || [null, text.slice(0, 200)])[1];
    throw new Error(`search failed (${r.status}): ${message}`);
  }
  return r.json();
}

let generation = 0;

// the two searches behind a view: its datasets and facets, and the projects' counts
function searches(state) {
  const main = constraints(state, true);
  main.set("type", "Dataset");
  main.set("limit", String(PAGE));
  main.set("offset", String(state.offset));
  main.set("facets", facetsOf(state.project || "*").join(","));
  const projects = constraints(state, false);
  projects.set("limit", "0");
  projects.set("facets", "project");
  return Promise.all([getJSON(main), getJSON(projects)]);
}

async function render(state, pending) {
  const mine = ++generation;
  // busy until the newest state is drawn: what is on screen belongs to an older one
  $("results").setAttribute("aria-busy", "true");
  $("q").value = state.q;
  $("latest").checked = state.latest;
  $("replicas").checked = state.replicas;
  $("error").hidden = true;
  const facetNames = facetsOf(state.project || "*");
  try {
    const [result, projectResult] = await (pending || searches(state));
    if (mine !== generation) return; // a newer state is on its way
    renderProjects(state, projectResult);
    renderFacets(state, facetNames, result.facet_counts.facet_fields);
    renderResults(state, result.response);
    if (!performance.getEntriesByName("first-results").length) performance.mark("first-results");
    $("wget").href = `/esg-search/wget?${wgetQuery(state)}`;
  } catch (err) {
    if (mine !== generation) return;
    $("error").textContent = err.message;
    $("error").hidden = false;
    $("summary").textContent = "";
  }
  $("results").setAttribute("aria-busy", "false");
}

function wgetQuery(state) {
  const p = constraints(state, true);
  p.set("distrib", "false");
  p.set("limit", "1000");
  return p.toString();
}

// -- rendering ------------------------------------------------------------------------------
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "text") node.textContent = v;
    else if (v !== undefined && v !== null && v !== false) node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c) node.append(c);
  return node;
}

function pairs(flat) {
  const out = [];
  for (let i = 0; i + 1 < flat.length; i += 2) out.push([flat[i], flat[i + 1]]);
  return out;
}

function renderProjects(state, result) {
  const box = $("projects");
  box.replaceChildren();
  const counts = pairs(result.facet_counts.facet_fields.project || []);
  const choices = [["", result.response.numFound], ...counts];
  for (const [value, count] of choices) {
    const input = el("input", { type: "radio", name: "project", value, checked: state.project === value });
    input.addEventListener("change", () => go({ ...state, project: value, selected: {}, offset: 0 }));
    box.append(el("label", {}, input, el("span", { text: value || "All projects" }),
      el("span", { class: "count", text: String(count) })));
  }
}

function facetValue(state, name, chosen, value, count) {
  const input = el("input", { type: "checkbox", name, value, checked: chosen.includes(value) });
  input.addEventListener("change", () => {
    const next = { ...state, selected: { ...state.selected }, offset: 0 };
    const now = new Set(chosen);
    if (input.checked) now.add(value); else now.delete(value);
    if (now.size) next.selected[name] = [...now]; else delete next.selected[name];
    go(next);
  });
  return el("label", {}, input, el("span", { text: value }),
    el("span", { class: "count", text: String(count) }));
}

function renderFacets(state, names, fields) {
  const host = $("facet-panels");
  host.replaceChildren();
  for (const name of names) {
    const values = pairs(fields[name] || []);
    const chosen = state.selected[name] || [];
    if (!values.length && !chosen.length) continue;
    const list = el("div", { class: "values" });
    const seen = new Set(values.map(([v]) => v));
    for (const v of chosen) if (!seen.has(v)) values.push([v, 0]);
    const shown = values.filter(([v], i) => i < FACET_VALUES || chosen.includes(v));
    for (const [value, count] of shown) list.append(facetValue(state, name, chosen, value, count));
    const panel = el("fieldset", { class: "panel", "data-facet": name },
      el("legend", { text: name.replace(/_/g, " ") }), list);
    if (shown.length < values.length) {
      // long lists are drawn on demand: thousands of check boxes would delay the first results
      const more = el("button", { type: "button", class: "link-button more",
        text: `all ${values.length} values` });
      more.addEventListener("click", () => {
        more.remove();
        for (const [value, count] of values.slice(FACET_VALUES)) {
          if (!chosen.includes(value)) list.append(facetValue(state, name, chosen, value, count));
        }
      });
      panel.append(more);
    }
    host.append(panel);
  }
}

function human(bytes) {
  const n = Number(bytes);
  if (!Number.isFinite(n)) return "";
  const units = ["bytes", "KB", "MB", "GB", "TB"];
  let i = 0, v = n;
  while (v >= 1000 && i < units.length - 1) { v /= 1000; i++; }
  return `${i ? v.toFixed(1) : v} ${units[i]}`;
}

// record URLs become links only when they are web URLs (never javascript: or data:)
function webUrl(value) {
  return /^https?:\/\//i.test(value || "") ? value : undefined;
}

function first(value) {
  return Array.isArray(value) ? value[0] : value;
}

function renderResults(state, response) {
  const total = response.numFound;
  const start = total ? state.offset + 1 : 0;
  const end = Math.min(state.offset + PAGE, total);
  $("summary").textContent = `${total} datasets` + (total ? ` — showing ${start} to ${end}` : "");
  const list = $("datasets");
  list.replaceChildren();
  for (const doc of response.docs) list.append(datasetItem(doc));
  $("prev").disabled = state.offset <= 0;
  $("next").disabled = end >= total;
  $("page").textContent = total ? `page ${Math.floor(state.offset / PAGE) + 1} of ${Math.ceil(total / PAGE)}` : "";
  $("prev").onclick = () => go({ ...state, offset: Math.max(0, state.offset - PAGE) });
  $("next").onclick = () => go({ ...state, offset: state.offset + PAGE });
}

function datasetItem(doc) {
  const title = el("h2", { text: doc.instance_id || doc.id });
  if (doc.retracted) title.append(el("span", { class: "tag", text: "retracted" }));
  if (doc.replica) title.append(el("span", { class: "tag replica", text: "replica" }));
  const meta = el("p", { class: "meta", text:
    `${doc.data_node || ""} · ${doc.number_of_files || 0} files · ${human(doc.size)}` });
  const fields = el("dl", { class: "fields" });
  for (const name of SHOWN_FIELDS) {
    if (doc[name] === undefined) continue;
    const value = Array.isArray(doc[name]) ? doc[name].join(", ") : String(doc[name]);
    fields.append(el("dt", { text: name }), el("dd", { text: name === "size" ? human(value) : value }));
  }
  const details = el("details", { class: "details" }, el("summary", { text: "Details" }), fields);
  const files = el("details", { class: "files" }, el("summary", { text: "Files" }));
  files.addEventListener("toggle", () => { if (files.open && !files.dataset.loaded) loadFiles(doc, files); });
  const wget = el("a", { href: `/esg-search/wget?distrib=false&dataset_id=${encodeURIComponent(doc.id)}`,
    download: true, text: "wget script for this dataset" });
  return el("li", { "data-id": doc.id }, title, meta, details, files, el("p", {}, wget));
}

async function loadFiles(doc, host) {
  host.dataset.loaded = "1";
  const p = new URLSearchParams({ type: "File", dataset_id: doc.id, limit: "1000" });
  try {
    const result = await getJSON(p);
    const table = el("table", { class: "files" },
      el("thead", {}, el("tr", {}, el("th", { text: "file" }), el("th", { class: "size", text: "size" }),
        el("th", { class: "checksum", text: "checksum" }), el("th", { text: "access" }))));
    const body = el("tbody");
    for (const f of result.response.docs) {
      const urls = {};
      for (const entry of [].concat(f.url || [])) {
        const [href, , service] = String(entry).split("|");
        if (webUrl(href)) urls[service] = href;
      }
      const access = el("td");
      if (urls.HTTPServer) access.append(el("a", { href: urls.HTTPServer, class: "download", text: "download" }));
      if (urls.OPENDAP) access.append(" ", el("a", { href: urls.OPENDAP, text: "OPeNDAP" }));
      const name = el("td", { class: "name" });
      name.append(urls.HTTPServer ? el("a", { href: urls.HTTPServer, text: f.title }) : f.title);
      body.append(el("tr", {}, name, el("td", { class: "size", text: human(f.size) }),
        el("td", { class: "checksum", text: `${first(f.checksum_type) || ""} ${first(f.checksum) || ""}`.trim() }),
        access));
    }
    table.append(body);
    host.append(table);
    if (result.response.numFound > result.response.docs.length) {
      host.append(el("p", { text: `${result.response.numFound - result.response.docs.length} more files: use the wget script` }));
    }
  } catch (err) {
    host.append(el("p", { class: "error", text: err.message }));
  }
}

// -- wiring ---------------------------------------------------------------------------------
// The script runs as soon as it arrives (async): the first searches start before the page is
// parsed, and are drawn once it is.
const initial = readState();
const firstSearches = searches(initial);
firstSearches.catch(() => {}); // reported by render()
if (document.readyState === "loading") {
  document.addEventListener("DOMContentLoaded", start);
} else {
  start();
}

function start() {
$("search-form").addEventListener("submit", (event) => {
  event.preventDefault();
  go({ ...readState(), q: $("q").value.trim(), offset: 0 });
});
$("latest").addEventListener("change", () => go({ ...readState(), latest: $("latest").checked, offset: 0 }));
$("replicas").addEventListener("change", () => go({ ...readState(), replicas: $("replicas").checked, offset: 0 }));
$("clear").addEventListener("click", () => go({ ...readState(), q: "", selected: {}, offset: 0 }));
window.addEventListener("popstate", () => render(readState()));
render(initial, firstSearches);
}
