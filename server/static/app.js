// ragkiln web page: search with entity facets, and "ask" with a streamed, cited answer (shown inside its
// sentence, the cited passage one click away, "not found" as such), a model picker. No build step; text
// from the server goes into the page as text nodes only (never innerHTML).
"use strict";

const $ = (id) => document.getElementById(id);
const state = { filters: [] };

function apiKey() { return $("key").value.trim(); }

function headers() {
  const h = { "Content-Type": "application/json" };
  if (apiKey()) h["Authorization"] = "Bearer " + apiKey();
  return h;
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

// Text with [start, end) spans wrapped in `tag` (spans relative to the text, non-overlapping kept).
function highlighted(text, spans, tag, cls) {
  const frag = document.createDocumentFragment();
  let at = 0;
  for (const s of [...spans].sort((a, b) => a.start - b.start)) {
    if (s.start < at || s.end > text.length || s.end <= s.start) continue;
    frag.append(text.slice(at, s.start));
    frag.append(el(tag, cls ? { class: cls, title: s.title || "" } : {}, text.slice(s.start, s.end)));
    at = s.end;
  }
  frag.append(text.slice(at));
  return frag;
}

function setStatus(msg, isError) {
  $("status").textContent = msg;
  $("status").className = isError ? "error" : "";
}

async function errorText(resp) {
  try { const j = await resp.json(); return `${resp.status}: ${j.error.message}`; } catch (e) { return `HTTP ${resp.status}`; }
}

function body(extra) {
  const filters = state.filters.length ? { entities: state.filters } : undefined;
  return JSON.stringify({ k: 10, mode: $("mode").value, filters, ...extra });
}

function renderFilters() {
  const box = $("filters");
  box.replaceChildren(...state.filters.map((f) =>
    el("span", { class: "chip", title: "remove filter", onclick: () => { state.filters = state.filters.filter((x) => x !== f); run(lastAction); } }, f + " \u00d7")));
}

function renderFacets(facets) {
  const box = $("facets");
  box.replaceChildren();
  for (const [label, facet] of Object.entries(facets || {})) {
    box.append(el("h3", {}, `${label} (${facet.count})`));
    for (const v of facet.values) {
      const spec = `${label}:${v.value}`;
      box.append(el("button", { class: "facet", "data-filter": spec, onclick: () => {
        if (!state.filters.includes(spec)) state.filters.push(spec);
        run("search");
      } }, `${v.value} (${v.count})`));
    }
  }
}

function renderHits(hits) {
  const list = $("results");
  list.replaceChildren();
  for (const h of hits) {
    const ents = h.entities.map((e) => ({ start: e.start, end: e.end, title: e.label }));
    list.append(el("li", { class: "hit", "data-doc": h.doc_id },
      el("div", {}, el("strong", {}, h.title || h.doc_id)),
      el("div", { class: "meta" }, `${h.doc_id} [${h.start}:${h.end}] score ${h.score.toFixed(4)} ` +
        Object.entries(h.ranks).map(([k, v]) => `${k}#${v}`).join(" ") +
        (h.also_in.length ? ` \u2014 also in ${h.also_in.join(", ")}` : "")),
      el("p", {}, highlighted(h.text, ents, "span", "ent"))));
  }
}

async function search(q) {
  setStatus("searching\u2026");
  $("answer-box").hidden = true;
  const resp = await fetch("/v1/search", { method: "POST", headers: headers(), body: body({ query: q }) });
  if (!resp.ok) { setStatus(await errorText(resp), true); return; }
  const data = await resp.json();
  renderHits(data.hits);
  renderFacets(data.facets);
  setStatus(`${data.hits.length} hits in ${data.took_ms.toFixed(1)} ms`);
}

// Each citation: its quote, and one click (the <summary>) opens the whole cited passage with the span marked.
function renderCitations(data) {
  const list = $("citations");
  list.replaceChildren();
  state.passages = data.passages || [];
  state.citations = data.citations || [];
  const passages = new Map(state.passages.map((p) => [p.chunk_id, p]));
  for (const c of data.citations) {
    const p = passages.get(c.chunk_id);
    const text = p ? p.text : c.quote;
    const offset = p ? p.start : c.start;
    list.append(el("li", { class: "citation", "data-doc": c.doc_id, "data-chunk": String(c.chunk_id), "data-rank": String(c.rank) },
      el("details", {},
        el("summary", {},
          el("span", { class: "meta" }, `[${c.rank}] ${c.title || c.doc_id} \u2014 ${c.doc_id} [${c.start}:${c.end}]`),
          el("q", { class: "quote" }, c.quote)),
        el("p", { class: "passage" }, highlighted(text, [{ start: c.start - offset, end: c.end - offset }], "mark")))));
  }
}

// Opens the cited passage of `chunkId` (else the first citation) and brings it into view.
function openCitation(chunkId) {
  const items = [...$("citations").querySelectorAll("li.citation")];
  const li = items.find((x) => x.dataset.chunk === String(chunkId)) || items[0];
  if (!li) return;
  const d = li.querySelector("details");
  d.open = true;
  li.scrollIntoView({ block: "nearest" });
  d.querySelector("summary").focus();
}

// [start, end) of the answer span inside `sentence.text` ({text, start, end, span_start, span_end}: the
// span's document offsets inside the sentence's), or null when absent or inconsistent: show the plain answer.
function spanInSentence(sentence) {
  if (!sentence || typeof sentence.text !== "string") return null;
  const a = sentence.span_start - sentence.start, b = sentence.span_end - sentence.start;
  if (!Number.isInteger(a) || !Number.isInteger(b) || a < 0 || b <= a || b > sentence.text.length) return null;
  return [a, b];
}

function sourceButton(c) {
  return el("button", { type: "button", class: "source", "data-chunk": String(c.chunk_id), title: "show the cited passage",
    onclick: () => openCitation(c.chunk_id) }, `[${c.rank}] ${c.title || c.doc_id}`);
}

// The final answer (the `done` event): inside its sentence with the span marked, or as given; not found
// (grounded: false) says so and shows no answer.
function renderAnswer(data) {
  const box = $("answer-box"), answer = $("answer"), meta = $("answer-meta");
  box.classList.toggle("not-found", !data.grounded);
  if (!data.grounded) {
    $("answer-title").textContent = "Not found in your documents";
    const n = (state.passages || []).length;
    answer.replaceChildren(el("span", { class: "not-found-text" },
      `None of the ${n} passages retrieved supports an answer to this question, so ragkiln gives none.`));
    meta.replaceChildren();
    return;
  }
  $("answer-title").textContent = "Answer";
  const cites = state.citations || [];
  const s = data.sentence;
  const span = spanInSentence(s);
  if (span) {
    const [a, b] = span;
    answer.replaceChildren(el("span", { class: "sentence" }, s.text.slice(0, a),
      el("mark", { class: "answer-span" }, s.text.slice(a, b)), s.text.slice(b)));
    answer.dataset.view = "sentence";
    const own = cites.find((c) => String(c.chunk_id) === String(s.chunk_id));
    if (own) answer.append(" ", sourceButton(own));
  } else {
    answer.replaceChildren(el("span", { class: "plain" }, data.answer));
    answer.dataset.view = "plain";
    for (const c of cites) answer.append(" ", sourceButton(c));
  }
  // a how-to answer's code example (AnswerResponse.example), shown as code under the answer
  if (data.example && typeof data.example.text === "string") {
    answer.append(el("pre", { class: "example" }, el("code", {}, data.example.text)));
  }
  const parts = [];
  parts.push(data.model ? `${data.mode || "extractive"} answer by ${data.model}`
    : "extractive answer by the reader (no language model in this workspace)");
  if (data.notice) parts.push(data.notice);
  meta.textContent = parts.join(" \u00b7 ");
}

// POST /v1/answer with stream: true and read its Server-Sent Events as they arrive.
async function ask(q) {
  setStatus("retrieving and generating\u2026");
  const box = $("answer-box");
  box.hidden = false;
  delete box.dataset.done;
  box.classList.remove("not-found");
  $("answer-title").textContent = "Answer";
  $("answer").textContent = "";
  delete $("answer").dataset.view;
  $("answer-meta").textContent = "";
  $("citations").replaceChildren();
  state.passages = [];
  state.citations = [];
  const resp = await fetch("/v1/answer", { method: "POST", headers: headers(),
    body: body({ question: q, k: 5, stream: true, max_tokens: 96, model: chosenModel() }) });
  if (!resp.ok) { setStatus(await errorText(resp), true); return; }
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, cut);
      buf = buf.slice(cut + 2);
      const ev = {};
      for (const line of block.split("\n")) { const i = line.indexOf(": "); if (i > 0) ev[line.slice(0, i)] = line.slice(i + 2); }
      const data = JSON.parse(ev.data || "{}");
      if (ev.event === "token") $("answer").append(data.text);  // streamed as it comes; `done` renders it in full
      else if (ev.event === "citations") { renderCitations(data); renderHits([]); }
      else if (ev.event === "done") {
        renderAnswer(data);
        const t = data.timings;
        setStatus(data.grounded ? `answered by ${data.model || "the reader"}: first token ${t.first_token_ms} ms after retrieval (${t.retrieval_ms} ms)` : "not found in your documents");
        box.dataset.done = "1";
      } else if (ev.event === "error") setStatus(data.error.message, true);
    }
  }
}

// GET /v1/models: a picker when more than one generator is served (the first listed is the default);
// the choice goes to /v1/answer as `model`.
async function loadModels() {
  const pick = $("model");
  let resp;
  try { resp = await fetch("/v1/models", { headers: headers() }); } catch (e) { return; }
  if (!resp.ok) { pick.hidden = true; return; }
  const gens = (await resp.json()).data.filter((m) => m.kind === "generator");
  const keep = pick.value;
  pick.replaceChildren(...gens.map((m, i) => el("option", { value: m.id },
    m.id + (m.format === "chat" ? " (chat)" : "") + (i === 0 ? " \u2014 default" : ""))));
  if (gens.some((m) => m.id === keep)) pick.value = keep;
  pick.hidden = gens.length < 2;
}

function chosenModel() {
  const pick = $("model");
  return pick.hidden || !pick.value ? undefined : pick.value;
}

// GET /v1/workspace: what the workspace holds (counts, models) and example queries from its corpus.
function n(x) { return Number(x).toLocaleString("en"); }

function modelsLine(w) {
  const parts = [];
  if (w.embedder) parts.push(`embedder ${w.embedder}` + (w.embedding_dim ? ` (${w.embedding_dim}-d)` : ""));
  if (w.ner) parts.push(`NER ${w.ner}`);
  const g = w.generator;
  const types = g.gguf_types.map((t) => `${t.type} ${(t.size_bytes / 2 ** 20).toFixed(1)} MiB`).join(", ");
  const lm = Object.keys(g.lm_args).length ? ` [${Object.entries(g.lm_args).map(([k, v]) => `${k} ${v}`).join(", ")}]` : "";
  if (g.model) parts.push(`generator ${g.model}` + (g.source ? ` from LM ${g.source}` : "") + lm);
  else parts.push("no generator loaded" + (g.problem ? ` (${g.problem})` : ""));
  if (types) parts.push(`GGUF types: ${types}`);
  return parts.join(" \u00b7 ");
}

function tryExample(ex) {
  $("q").value = ex.query;
  state.filters = ex.filter ? [ex.filter] : [];
  run("search");
}

async function loadWorkspace() {
  const box = $("workspace");
  let resp;
  try { resp = await fetch("/v1/workspace", { headers: headers() }); } catch (e) { return; }
  if (resp.status === 401 || resp.status === 403) {
    box.replaceChildren(el("p", { class: "meta" }, "Enter an API key (read scope) to see what this workspace holds."));
    return;
  }
  if (!resp.ok) { box.replaceChildren(el("p", { class: "error" }, await errorText(resp))); return; }
  const w = await resp.json();
  const e = w.entities;
  const labels = Object.entries(e.labels).slice(0, 5).map(([k, v]) => `${k} ${n(v)}`).join(", ");
  box.replaceChildren(
    el("p", {}, el("strong", {}, `${n(w.documents)} documents, ${n(w.chunks)} chunks`),
      `, ${n(e.informative)} entities worth a facet` + (labels ? ` (${labels})` : "") +
      ` of ${n(e.distinct)} found`),
    el("p", { class: "meta" }, modelsLine(w)),
    el("p", { class: "try" }, "Try: ", ...w.examples.map((ex) => el("button", {
      type: "button", class: "example", "data-kind": ex.kind, title: ex.filter ? `search, filtered by ${ex.filter}` : "search",
      onclick: () => tryExample(ex) }, ex.query))));
  if (!w.examples.length) box.append(el("p", { class: "meta" }, "The workspace is empty: run `ragkiln ingest PATH` first."));
}

let lastAction = "search";
async function run(action) {
  lastAction = action;
  renderFilters();
  const q = $("q").value.trim();
  if (!q) return;
  try { await (action === "ask" ? ask(q) : search(q)); } catch (e) { setStatus(String(e), true); }
}

$("form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  run(ev.submitter && ev.submitter.dataset.action === "ask" ? "ask" : "search");
});
$("key").addEventListener("change", () => { localStorage.setItem("ragkiln-key", apiKey()); loadWorkspace(); loadModels(); });

// Start-up: key from localStorage or the URL fragment (#key=...), never sent in a URL to the server;
// ?q=...&action=ask|search&filter=LABEL:value&model=ID fills the form and submits it (links and tests use this).
(async function init() {
  const frag = new URLSearchParams(location.hash.slice(1));
  $("key").value = frag.get("key") || localStorage.getItem("ragkiln-key") || "";
  loadWorkspace();
  await loadModels();
  const params = new URLSearchParams(location.search);
  state.filters = params.getAll("filter");
  if (params.get("mode")) $("mode").value = params.get("mode");
  if (params.get("model")) $("model").value = params.get("model");
  if (params.get("q")) {
    $("q").value = params.get("q");
    const button = params.get("action") === "ask" ? $("ask-btn") : $("search-btn");
    $("form").requestSubmit(button);
  }
})();
