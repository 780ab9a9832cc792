// The console: plain DOM, no framework, nothing from elsewhere. Every value from the gateway
// is written with textContent or as an attribute, never as HTML. The token lives in the
// tab's session storage; the chosen language in local storage; the page itself holds no data.
"use strict";
const $ = (s, root) => (root || document).querySelector(s);
const $$ = (s, root) => Array.from((root || document).querySelectorAll(s));

let token = sessionStorage.getItem("wingspan-admin-token") || "";
let me = null; // {name, role, payloads}
let lang = "en";

// ---- language -------------------------------------------------------------------------

function pickLanguage() {
  const stored = localStorage.getItem("wingspan-lang");
  if (stored && STRINGS[stored]) return stored;
  const wanted = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || "en"];
  for (const l of wanted) {
    if (/^zh\b/i.test(l)) return "zh-CN";
    if (/^en\b/i.test(l)) return "en";
  }
  return "zh-CN";
}

function t(key, vars) {
  let s = (STRINGS[lang] && STRINGS[lang][key]) || STRINGS.en[key] || key;
  if (vars) for (const [k, v] of Object.entries(vars)) s = s.split("{" + k + "}").join(v == null ? "" : String(v));
  return s;
}

function applyStrings() {
  document.documentElement.lang = lang;
  for (const el of $$("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of $$("[data-msg]")) el.textContent = t(el.dataset.msg, JSON.parse(el.dataset.vars || "{}"));
  // Times already shown: written again in the new language's form.
  for (const el of $$("time[datetime]")) {
    el.textContent = new Date(el.dateTime).toLocaleString(lang);
    el.title = t("utc_hint", { utc: el.dateTime });
  }
  $("#lang").value = lang;
  showWho();
}

// ---- helpers --------------------------------------------------------------------------

async function api(method, path, body) {
  const init = { method, headers: { Authorization: "Bearer " + token } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = typeof body === "string" ? body : JSON.stringify(body);
  }
  const resp = await fetch(path, init);
  const data = await resp.json().catch(() => ({}));
  if (!resp.ok) {
    const e = new Error((data.title || resp.statusText) + (data.detail ? ": " + data.detail : ""));
    e.status = resp.status;
    e.data = data;
    throw e;
  }
  return data;
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null) continue;
    if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
  }
  for (const c of children) if (c != null) e.append(c instanceof Node ? c : String(c));
  return e;
}

// A time from the gateway (RFC 3339, UTC): shown in the browser's local time, UTC on hover.
function when(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (isNaN(d.getTime())) return el("span", { text: iso });
  return el("time", { datetime: iso, title: t("utc_hint", { utc: iso }), text: d.toLocaleString(lang) });
}

// A datetime-local input's value (local time) as the gateway's UTC form; "" when empty.
function utc(input) {
  if (!input.value) return "";
  const d = new Date(input.value);
  return isNaN(d.getTime()) ? "" : d.toISOString();
}

function row(tbody, cells) {
  const tr = document.createElement("tr");
  for (const c of cells) {
    const td = document.createElement("td");
    if (c instanceof Node) td.appendChild(c); else td.textContent = c == null ? "" : String(c);
    tr.appendChild(td);
  }
  tbody.appendChild(tr);
  return tr;
}

function short(hash) {
  return hash ? el("code", { title: hash, text: hash.slice(0, 12) + "…" }) : "";
}

// A status line: literal text, or a message of the string table that a change of language
// translates again (its key and values kept on the element).
function status(sel, text) {
  const e = $(sel);
  delete e.dataset.msg;
  delete e.dataset.vars;
  e.textContent = text;
}

function say(sel, key, vars) {
  const e = $(sel);
  e.dataset.msg = key;
  e.dataset.vars = JSON.stringify(vars || {});
  e.textContent = t(key, vars);
}

function failed(sel) {
  return (e) => (e.status === 403 ? say(sel, "forbidden") : say(sel, "error", { detail: e.message }));
}

// ---- sign in, roles and views -----------------------------------------------------------

function showWho() {
  const who = $("#who");
  if (!who) return;
  who.textContent = me ? t("who.signed_in", { name: me.name, role: t("role." + me.role) }) : t("who.signed_out");
  $("#signout").hidden = !me;
}

function showView(name) {
  for (const v of $$(".view")) v.hidden = !me || v.id !== "view-" + name || v.dataset.role !== me.role;
  for (const b of $$("#views button")) b.setAttribute("aria-current", b.dataset.view === name ? "page" : "false");
  sessionStorage.setItem("wingspan-view", name);
  const load = LOADERS[name];
  if (load && me) load();
}

async function signIn() {
  me = null;
  try {
    me = await api("GET", "/v1/whoami");
  } catch (e) {
    me = null;
    for (const v of $$(".view")) v.hidden = true;
    $("#views").hidden = true;
    showWho();
    $("#who").textContent = t("error", { detail: e.message });
    return;
  }
  // Only the views of this role exist on the page; the others are removed, not just hidden.
  for (const v of $$(".view")) if (v.dataset.role !== me.role) v.remove();
  for (const b of $$("#views button")) b.hidden = b.dataset.role !== me.role;
  $("#views").hidden = false;
  showWho();
  const mine = $$("#views button").filter((b) => !b.hidden).map((b) => b.dataset.view);
  const last = sessionStorage.getItem("wingspan-view");
  showView(mine.includes(last) ? last : mine[0]);
}

function signOut() {
  sessionStorage.removeItem("wingspan-admin-token");
  sessionStorage.removeItem("wingspan-view");
  location.reload();
}

// ---- compliance: search and timeline ------------------------------------------------------

let nextAfter = null;

function searchBody(after) {
  const body = { limit: 100 };
  const set = (k, v) => { if (v) body[k] = v; };
  set("since", utc($("#s-since")));
  set("until", utc($("#s-until")));
  set("message_id", $("#s-message").value.trim());
  set("subject", $("#s-subject").value.trim());
  set("reason", $("#s-reason").value.trim());
  set("source", $("#s-source").value.trim());
  set("destination", $("#s-destination").value.trim());
  set("type", $("#s-type").value.trim());
  set("event", $("#s-event").value);
  set("outcome", $("#s-outcome").value.trim());
  if (after) body.after = after;
  return body;
}

async function search(more) {
  const body = searchBody(more ? nextAfter : null);
  // A message id is a timeline: the message, its steps and its replies.
  if (body.message_id) {
    $("#results tbody").replaceChildren();
    $("#s-more").hidden = true;
    status("#search-status", "");
    await timeline(body.message_id);
    return;
  }
  if (body.subject && !body.reason) {
    say("#search-status", "search.reason_required");
    $("#s-reason").focus();
    return;
  }
  const tbody = $("#results tbody");
  if (!more) tbody.replaceChildren();
  say("#search-status", "loading");
  try {
    const data = await api("POST", "/v1/audit/search", body);
    for (const r of data.records) {
      const open = el("button", { type: "button", class: "link", text: r.message_id || "" });
      if (r.message_id) open.addEventListener("click", () => timeline(r.message_id));
      const tr = row(tbody, [when(r.at), r.event, r.message_id ? open : "", r.source, r.destination, r.message_type, r.outcome, r.actor]);
      tr.dataset.seq = r.seq;
    }
    nextAfter = data.next_after;
    $("#s-more").hidden = nextAfter == null;
    say("#search-status", "search.count", { count: tbody.children.length });
  } catch (e) {
    failed("#search-status")(e);
  }
}

// The message whose timeline is shown: drawn again when the language changes.
let shownTimeline = null;

async function timeline(id) {
  shownTimeline = id;
  $("#t-id").value = id;
  const list = $("#timeline");
  list.replaceChildren();
  say("#timeline-status", "loading");
  try {
    const data = await api("GET", "/v1/audit/messages/" + encodeURIComponent(id));
    say("#timeline-status", "timeline.of", { id });
    for (const r of data.records) {
      const reply = r.message_id !== id;
      const li = el("li", { class: reply ? "reply" : "request" },
        el("div", { class: "when" }, when(r.at)),
        el("div", { class: "what" },
          el("strong", { text: r.event }), " ",
          el("span", { class: "tag", text: t(reply ? "timeline.reply" : "timeline.request") }),
          r.message_id && reply ? el("span", { class: "muted", text: " " + r.message_id }) : null),
        el("dl", {},
          ...pair("col.actor", r.actor), ...pair("col.destination", r.destination),
          ...pair("col.outcome", r.outcome), ...pair("col.reason", r.reason),
          ...pair("col.seq", r.seq == null ? null : String(r.seq)),
          ...pairNode("col.payload_hash", r.payload_sha256 ? short(r.payload_sha256) : null),
          ...pairNode("col.hash", r.hash ? short(r.hash) : null),
          ...pairNode("col.prev_hash", r.prev_hash ? short(r.prev_hash) : null)));
      li.dataset.event = r.event;
      list.append(li);
    }
    list.focus();
  } catch (e) {
    failed("#timeline-status")(e);
  }
}

function pair(key, value) {
  if (value == null || value === "") return [];
  return [el("dt", { text: t(key) }), el("dd", { text: value })];
}

function pairNode(key, node) {
  if (!node) return [];
  return [el("dt", { text: t(key) }), el("dd", {}, node)];
}

// ---- compliance: chain status and export ----------------------------------------------

function showChains(result) {
  const tbody = $("#chains tbody");
  tbody.replaceChildren();
  if (!result) {
    say("#chain-last", "chain.never");
    return;
  }
  $("#chain-last").replaceChildren(t("chain.last", { at: "" }), when(result.at), " — ",
    el("strong", { class: result.ok ? "ok" : "bad", text: t(result.ok ? "chain.ok" : "chain.bad") }));
  for (const c of result.chains) {
    const problems = [];
    if (c.finding) problems.push(c.finding.kind + " #" + c.finding.seq);
    if (c.bad_signatures && c.bad_signatures.length) problems.push("bad signatures: #" + c.bad_signatures.join(", #"));
    for (const p of c.archive_problems || []) problems.push(p);
    const good = problems.length === 0;
    const finding = problems.join("; ");
    const tr = row(tbody, [c.chain_id, c.records, c.checkpoints, c.last_seq == null ? "" : "#" + c.last_seq,
      el("span", { class: good ? "ok" : "bad", text: t(good ? "chain.ok" : "chain.bad") }), finding]);
    tr.dataset.chain = c.chain_id;
  }
}

async function loadChain() {
  try {
    const data = await api("GET", "/v1/audit/status");
    showChains(data.last_verification);
  } catch (e) {
    failed("#chain-last")(e);
  }
}

async function verifyNow() {
  const button = $("#verify");
  button.disabled = true;
  say("#chain-last", "loading");
  try {
    showChains(await api("POST", "/v1/audit/verify"));
  } catch (e) {
    failed("#chain-last")(e);
  } finally {
    button.disabled = false;
  }
}

// A person's subject access report, made (and recorded) by the gateway: the HTML document to
// open or save. The person id goes in the request body only.
async function subjectReport() {
  const subject = $("#s-subject").value.trim(), reason = $("#s-reason").value.trim();
  const link = $("#report-link");
  link.replaceChildren();
  if (!subject || !reason) {
    say("#search-status", "search.report_needs");
    (subject ? $("#s-reason") : $("#s-subject")).focus();
    return;
  }
  say("#search-status", "loading");
  try {
    const resp = await fetch("/v1/audit/subject-report", {
      method: "POST",
      headers: { Authorization: "Bearer " + token, "Content-Type": "application/json" },
      body: JSON.stringify({ subject, reason, format: "html" }),
    });
    if (!resp.ok) {
      const data = await resp.json().catch(() => ({}));
      throw new Error((data.title || resp.statusText) + (data.detail ? ": " + data.detail : ""));
    }
    const blob = await resp.blob();
    const a = el("a", { href: URL.createObjectURL(blob), download: "subject-report.html", target: "_blank", rel: "noopener", "data-i18n": "search.report", text: t("search.report") });
    link.append(a);
    say("#search-status", "search.report_ready");
  } catch (e) {
    failed("#search-status")(e);
  }
}

async function exportWindow() {
  const body = {};
  const since = utc($("#e-since")), until = utc($("#e-until"));
  if (since) body.since = since;
  if (until) body.until = until;
  const list = $("#export-files");
  list.replaceChildren();
  say("#export-status", "loading");
  try {
    const made = await api("POST", "/v1/audit/export", body);
    for (const f of made.files) {
      const resp = await fetch("/v1/audit/exports/" + encodeURIComponent(made.id) + "/" + encodeURIComponent(f.name),
        { headers: { Authorization: "Bearer " + token } });
      if (!resp.ok) throw new Error(resp.statusText);
      const blob = await resp.blob();
      const a = el("a", { href: URL.createObjectURL(blob), download: f.name, text: f.name });
      a.dataset.file = f.name;
      list.append(el("li", {}, a, " ", el("span", { class: "muted", text: f.bytes + " B" })));
    }
    say("#export-status", "export.done", { count: made.count, files: made.files.length });
  } catch (e) {
    failed("#export-status")(e);
  }
}

// ---- operator: the last hour --------------------------------------------------------------

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (text != null) e.textContent = String(text);
  return e;
}

// A line chart of `series` ([{key, values}]) over `minutes` points, oldest first.
function chart(box, series, minutes) {
  const W = 560, H = 220, L = 44, R = 8, T = 10, B = 46;
  let max = 1;
  for (const s of series) for (const v of s.values) if (v != null && v > max) max = v;
  // Four steps of a round size (1, 2, 2.5 or 5 × 10ⁿ, at least 1): whole numbers on the axis.
  let step = Math.pow(10, Math.floor(Math.log10(max / 4)));
  for (const m of step >= 10 ? [1, 2, 2.5, 5, 10] : [1, 2, 5, 10]) if (m * step * 4 >= max) { step *= m; break; }
  step = Math.max(1, step);
  max = step * 4;
  const x = (i) => L + (minutes > 1 ? (i * (W - L - R)) / (minutes - 1) : 0);
  const y = (v) => T + (H - T - B) * (1 - v / max);
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", class: "plot" });
  root.append(svg("title", {}, series.map((s) => t(s.key)).join(", ")));
  for (let k = 0; k <= 4; k++) {
    const v = (max * k) / 4;
    root.append(svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }));
    root.append(svg("text", { x: L - 4, y: y(v) + 4, "text-anchor": "end", class: "axis" }, Math.round(v)));
  }
  for (const [i, label] of [[0, t("live.minutes_ago", { n: minutes - 1 })], [minutes - 1, t("live.now")]]) {
    root.append(svg("text", { x: x(i), y: H - B + 14, "text-anchor": i === 0 ? "start" : "end", class: "axis" }, label));
  }
  series.forEach((s, n) => {
    const pts = s.values.map((v, i) => (v == null ? null : `${x(i).toFixed(1)},${y(v).toFixed(1)}`)).filter(Boolean);
    if (pts.length) root.append(svg("polyline", { points: pts.join(" "), class: "series s" + n }));
    s.values.forEach((v, i) => {
      if (v != null) root.append(svg("circle", { cx: x(i).toFixed(1), cy: y(v).toFixed(1), r: 2.5, class: "point s" + n }));
    });
    const lx = L + n * 128;
    root.append(svg("rect", { x: lx, y: H - 18, width: 10, height: 10, class: "swatch s" + n }));
    const last = s.values.length ? s.values[s.values.length - 1] : null;
    root.append(svg("text", { x: lx + 14, y: H - 9, class: "legend" }, t(s.key) + (last == null ? "" : " " + Math.round(last))));
  });
  box.replaceChildren(root);
}

async function loadLive() {
  try {
    const data = await api("GET", "/admin/live");
    const m = data.minutes;
    const col = (k) => m.map((p) => (p[k] == null ? null : p[k]));
    chart($("#chart-flow"), [
      { key: "live.accepted", values: col("accepted") },
      { key: "live.delivered", values: col("delivered") },
      { key: "live.refused", values: col("refused") },
      { key: "live.parked", values: col("parked") },
    ], Math.max(m.length, 2));
    chart($("#chart-latency"), [
      { key: "live.accept_p50", values: col("accept_p50_ms") },
      { key: "live.accept_p99", values: col("accept_p99_ms") },
      { key: "live.delivery_p50", values: col("delivery_p50_ms") },
      { key: "live.delivery_p99", values: col("delivery_p99_ms") },
    ], Math.max(m.length, 2));
  } catch (e) {
    $("#chart-flow").textContent = t("error", { detail: e.message });
  }
}

// ---- operator: destinations, dead letters, tracker ------------------------------------------

function health(d) {
  const span = document.createElement("span");
  const consumers = d.queue ? d.queue.consumers : 0;
  if (!d.queue || consumers === 0) { span.className = "bad"; span.textContent = t("health.no_consumer"); }
  else if ((d.parked_in_queue || 0) > 0 || d.last_error) { span.className = "warn"; span.textContent = t("health.degraded"); }
  else { span.className = "ok"; span.textContent = t("health.ok"); }
  return span;
}

async function loadDestinations() {
  const tbody = $("#destinations tbody");
  const data = await api("GET", "/admin/destinations");
  tbody.replaceChildren();
  for (const d of data.destinations) {
    const err = d.last_error ? el("span", {}, d.last_error.error + " (", when(d.last_error.at), ")") : "";
    const tr = row(tbody, [d.id, d.adapter, d.target, d.queue ? d.queue.messages : "?", d.queue ? d.queue.consumers : "?",
      d.parked_in_queue == null ? "?" : d.parked_in_queue, d.counts.delivered, d.counts.retried, err, health(d)]);
    tr.dataset.destination = d.id;
  }
}

async function loadDeadLetters() {
  const tbody = $("#dead-letters tbody");
  const data = await api("GET", "/admin/dead-letters");
  tbody.replaceChildren();
  for (const d of data.dead_letters) {
    const form = document.createElement("form");
    const reason = el("input", { placeholder: t("dlq.reason"), class: "replay-reason", "aria-label": t("dlq.reason") });
    reason.required = true;
    const button = el("button", { type: "submit", class: "replay", text: t("dlq.replay") });
    form.append(reason, button);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      button.disabled = true;
      try {
        const r = await api("POST", "/admin/dead-letters/" + encodeURIComponent(d.message_id) + "/replay", { reason: reason.value });
        say("#dlq-result", "dlq.replayed", { count: r.count, id: d.message_id });
        await loadDelivery();
      } catch (e) {
        say("#dlq-result", "dlq.failed", { detail: e.message });
        button.disabled = false;
      }
    });
    const tr = row(tbody, [d.message_id, d.destination, d.message_type, d.attempts, when(d.last_failure), d.reason, form]);
    tr.dataset.messageId = d.message_id;
  }
}

async function loadDelivery() {
  try {
    await Promise.all([loadDestinations(), loadDeadLetters()]);
  } catch (e) {
    failed("#dlq-result")(e);
  }
}

async function track(id) {
  const tbody = $("#track-timeline tbody");
  tbody.replaceChildren();
  try {
    const data = await api("GET", "/admin/messages/" + encodeURIComponent(id));
    const s = data.status;
    if (s) say("#track-status", "track.status", { status: s.status, destinations: (s.destinations || []).map((d) => d.destination + " " + d.state).join(", ") });
    else say("#track-status", "track.none");
    for (const e of data.timeline) row(tbody, [when(e.at), e.event, e.destination, e.outcome, e.reason, e.actor]);
  } catch (e) {
    failed("#track-status")(e);
  }
}

// ---- operator: routes and config versions ---------------------------------------------------

async function loadRoutes() {
  const tbody = $("#routes tbody");
  try {
    const data = await api("GET", "/admin/routes");
    tbody.replaceChildren();
    for (const r of data.routes) {
      const when_ = r.when.length ? el("ul", {}, ...r.when.map((w) => el("li", { text: w }))) : t("routes.always");
      const tr = row(tbody, [r.name, r.message_types.join(", "), when_, r.destinations.join(", ")]);
      tr.dataset.route = r.name;
    }
  } catch (e) {
    failed("#config-status")(e);
  }
}

async function loadConfig() {
  const tbody = $("#versions tbody");
  try {
    const data = await api("GET", "/admin/config");
    $("#config-current").textContent = t("config.current", { sha: data.current });
    tbody.replaceChildren();
    const newest = data.history.slice().reverse();
    newest.forEach((v, i) => {
      const pick = (name, checked) => {
        const input = el("input", { type: "radio", name, value: v.sha256, "aria-label": t(name === "from" ? "config.col.from" : "config.col.to") + " " + v.sha256.slice(0, 12) });
        input.checked = checked;
        return input;
      };
      const tr = row(tbody, [el("code", { title: v.sha256, text: v.sha256.slice(0, 12) }), when(v.first_loaded_at),
        pick("from", i === 1), pick("to", i === 0)]);
      tr.dataset.sha = v.sha256;
      if (v.sha256 === data.current) tr.classList.add("current");
    });
  } catch (e) {
    failed("#config-status")(e);
  }
}

async function loadRoutesAndConfig() {
  await Promise.all([loadRoutes(), loadConfig()]);
}

// The lines of `a` and `b` as a unified list of [op, line]: " " kept, "-" removed, "+" added
// (longest common subsequence; configs are a few hundred lines).
function lineDiff(a, b) {
  const n = a.length, m = b.length;
  const lcs = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--)
    lcs[i][j] = a[i] === b[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
  const out = [];
  let i = 0, j = 0;
  while (i < n && j < m) {
    if (a[i] === b[j]) { out.push([" ", a[i]]); i++; j++; }
    else if (lcs[i + 1][j] >= lcs[i][j + 1]) out.push(["-", a[i++]]);
    else out.push(["+", b[j++]]);
  }
  while (i < n) out.push(["-", a[i++]]);
  while (j < m) out.push(["+", b[j++]]);
  return out;
}

async function diff() {
  const from = $("input[name=from]:checked"), to = $("input[name=to]:checked");
  const out = $("#diff-out");
  out.replaceChildren();
  if (!from || !to) { say("#config-status", "config.pick_two"); return; }
  try {
    const [a, b] = await Promise.all([
      api("GET", "/admin/config/" + encodeURIComponent(from.value)),
      api("GET", "/admin/config/" + encodeURIComponent(to.value)),
    ]);
    $("#diff-title").textContent = t("config.diff_title", { from: from.value.slice(0, 12), to: to.value.slice(0, 12) });
    const lines = lineDiff(a.text.split("\n"), b.text.split("\n"));
    if (!lines.some(([op]) => op !== " ")) { out.textContent = t("config.same"); return; }
    // Changed lines with three lines of context around them.
    const keep = lines.map(([op]) => op !== " ");
    const near = lines.map((_, k) => keep.slice(Math.max(0, k - 3), k + 4).some(Boolean));
    let gap = false;
    lines.forEach(([op, line], k) => {
      if (!near[k]) { if (!gap) out.append(el("span", { class: "gap", text: "…\n" })); gap = true; return; }
      gap = false;
      out.append(el("span", { class: op === "+" ? "add" : op === "-" ? "del" : "ctx", text: op + " " + line + "\n" }));
    });
    status("#config-status", "");
  } catch (e) {
    failed("#config-status")(e);
  }
}

// Reload and rollback ask first: the action is named on a confirm button, which does it.
let pending = null;
function ask(label, action) {
  pending = action;
  $("#confirm-yes").textContent = t("config.confirm", { action: label });
  $("#confirm").hidden = false;
  $("#confirm-yes").focus();
}

async function confirmed() {
  const action = pending;
  pending = null;
  $("#confirm").hidden = true;
  if (!action) return;
  try {
    const r = await action();
    say("#config-status", r.unchanged ? "config.unchanged" : "config.done", { sha: r.sha256 });
  } catch (e) {
    const problems = e.data && e.data.problems ? " " + e.data.problems.join("; ") : "";
    say("#config-status", "config.refused", { detail: e.message + problems });
  }
  await loadRoutesAndConfig();
}

// ---- operator: explain ---------------------------------------------------------------------

async function explain() {
  const out = $("#explain-out");
  out.replaceChildren();
  say("#explain-status", "loading");
  try {
    const x = await api("POST", "/admin/explain", $("#explain-message").value);
    if (x.refused) say("#explain-status", "explain.refused", { detail: x.refused.type + " — " + x.refused.detail });
    else status("#explain-status", "");
    const routes = el("ul", { class: "verdicts" });
    for (const r of x.routes) {
      const li = el("li", { class: r.matched ? "ok" : "muted" },
        el("strong", { text: r.route }), " — ", t(r.matched ? "explain.route_takes" : "explain.route_skips"));
      li.dataset.route = r.route;
      if (r.predicates.length) li.append(el("ul", {}, ...r.predicates.map((p) => el("li", { class: p.holds ? "ok" : "bad", text: (p.holds ? "✓ " : "✗ ") + p.text }))));
      routes.append(li);
    }
    out.append(routes);
    if (!x.deliveries.length) out.append(el("p", { text: t("explain.nothing") }));
    for (const d of x.deliveries) {
      const box = el("div", { class: "delivery" },
        el("h3", { text: t("explain.receives", { destination: d.destination, adapter: d.adapter, content_type: d.content_type }) }),
        el("pre", { tabindex: "0", class: d.error ? "bad" : "", text: d.error || d.body }));
      box.dataset.destination = d.destination;
      out.append(box);
    }
  } catch (e) {
    failed("#explain-status")(e);
  }
}

// ---- wiring ----------------------------------------------------------------------------------

const LOADERS = {
  // A search is not run again (a search by person is recorded each time it runs); a
  // timeline is only read.
  audit: () => { if (shownTimeline) timeline(shownTimeline); },
  chain: loadChain,
  live: loadLive,
  delivery: loadDelivery,
  routes: loadRoutesAndConfig,
  explain: null,
};

function on(sel, ev, f) {
  const e = $(sel);
  if (e) e.addEventListener(ev, f);
}

function submit(sel, f) {
  on(sel, "submit", (ev) => { ev.preventDefault(); f(); });
}

document.addEventListener("DOMContentLoaded", () => {
  lang = pickLanguage();
  applyStrings();
  $("#lang").addEventListener("change", () => {
    lang = $("#lang").value;
    localStorage.setItem("wingspan-lang", lang);
    applyStrings();
    const open = $$(".view").find((v) => !v.hidden);
    if (open) showView(open.id.replace("view-", ""));
  });
  $("#token").value = token;
  submit("#login", () => {
    token = $("#token").value;
    sessionStorage.setItem("wingspan-admin-token", token);
    // Another user in the same tab: start from a fresh page (the views of a role are
    // removed from it at sign-in).
    if (me) location.reload(); else signIn();
  });
  on("#signout", "click", signOut);
  for (const b of $$("#views button")) b.addEventListener("click", () => showView(b.dataset.view));
  submit("#search", () => search(false));
  on("#s-more", "click", () => search(true));
  on("#s-report", "click", subjectReport);
  submit("#timeline-form", () => timeline($("#t-id").value.trim()));
  on("#verify", "click", verifyNow);
  submit("#export", exportWindow);
  on("#live-refresh", "click", loadLive);
  on("#refresh", "click", loadDelivery);
  submit("#track", () => track($("#track-id").value.trim()));
  submit("#config-form", diff);
  on("#reload", "click", () => ask(t("config.reload"), () => api("POST", "/admin/reload")));
  on("#rollback", "click", () => {
    const to = $("input[name=to]:checked");
    if (!to) { say("#config-status", "config.pick_two"); return; }
    ask(t("config.rollback") + " " + to.value.slice(0, 12), () => api("POST", "/admin/rollback", { sha256: to.value }));
  });
  on("#confirm-yes", "click", confirmed);
  on("#confirm-no", "click", () => { pending = null; $("#confirm").hidden = true; });
  submit("#explain", explain);
  if (token) signIn();
});
