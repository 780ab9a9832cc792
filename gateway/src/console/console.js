// The operator console: plain DOM, no framework. Data is only ever written with textContent.
"use strict";
const $ = (s) => document.querySelector(s);
let token = sessionStorage.getItem("wingspan-admin-token") || "";

async function api(method, path, body) {
  const init = { method, headers: { Authorization: "Bearer " + token } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(path, init);
  const data = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error((data.title || resp.statusText) + (data.detail ? ": " + data.detail : ""));
  return data;
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

function health(d) {
  const span = document.createElement("span");
  const consumers = d.queue ? d.queue.consumers : 0;
  if (!d.queue || consumers === 0) { span.className = "bad"; span.textContent = "no consumer"; }
  else if ((d.parked_in_queue || 0) > 0 || d.last_error) { span.className = "warn"; span.textContent = "degraded"; }
  else { span.className = "ok"; span.textContent = "healthy"; }
  return span;
}

async function loadDestinations() {
  const tbody = $("#destinations tbody");
  const data = await api("GET", "/admin/destinations");
  tbody.replaceChildren();
  for (const d of data.destinations) {
    const err = d.last_error ? d.last_error.error + " (" + d.last_error.at + ")" : "";
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
    const reason = document.createElement("input");
    reason.placeholder = "reason (required)"; reason.required = true; reason.className = "replay-reason";
    const button = document.createElement("button");
    button.type = "submit"; button.textContent = "Replay"; button.className = "replay";
    form.append(reason, button);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      button.disabled = true;
      try {
        const r = await api("POST", "/admin/dead-letters/" + encodeURIComponent(d.message_id) + "/replay", { reason: reason.value });
        $("#dlq-result").textContent = "Replayed " + r.count + " copy(ies) of " + d.message_id;
        await refresh();
      } catch (e) {
        $("#dlq-result").textContent = "Replay failed: " + e.message;
        button.disabled = false;
      }
    });
    const tr = row(tbody, [d.message_id, d.destination, d.message_type, d.attempts, d.last_failure, d.reason, form]);
    tr.dataset.messageId = d.message_id;
  }
}

async function track(id) {
  const tbody = $("#timeline tbody");
  tbody.replaceChildren();
  try {
    const data = await api("GET", "/admin/messages/" + encodeURIComponent(id));
    const s = data.status;
    $("#track-status").textContent = s ? "Status: " + s.status + " · destinations: " + (s.destinations || []).map((d) => d.destination + " " + d.state).join(", ") : "No receipt.";
    for (const e of data.timeline) row(tbody, [e.at, e.event, e.destination, e.outcome, e.reason, e.actor]);
  } catch (e) {
    $("#track-status").textContent = e.message;
  }
}

async function refresh() {
  try {
    await Promise.all([loadDestinations(), loadDeadLetters()]);
    $("#who").textContent = "connected";
  } catch (e) {
    $("#who").textContent = e.message;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("#token").value = token;
  $("#login").addEventListener("submit", (ev) => {
    ev.preventDefault();
    token = $("#token").value;
    sessionStorage.setItem("wingspan-admin-token", token);
    refresh();
  });
  $("#refresh").addEventListener("click", refresh);
  $("#track").addEventListener("submit", (ev) => { ev.preventDefault(); track($("#track-id").value.trim()); });
  if (token) refresh();
});
