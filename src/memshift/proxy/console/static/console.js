// The memshift console: reads the admin API every two seconds, acts on it when asked.
// Every value is put in the page as text (never as markup); every change carries the
// session's CSRF token and asks for confirmation first.
"use strict";

const csrf = document.querySelector('meta[name="csrf-token"]').content;
const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function when(seconds) {
  if (!seconds) return "";
  return new Date(seconds * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC";
}

function percent(x) {
  return (100 * x).toFixed(2) + "%";
}

function shown(value) {
  if (value === undefined) return "—";
  return typeof value === "string" ? value : JSON.stringify(value);
}

async function get(path) {
  const answer = await fetch(path, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (answer.status === 401) {
    window.location.assign("/console");
    throw new Error("signed out");
  }
  if (!answer.ok) throw new Error(path + ": " + answer.status);
  return answer.json();
}

async function act(path, body, question) {
  if (!window.confirm(question)) return;
  const answer = await fetch(path, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
    body: JSON.stringify(body),
  });
  let doc = {};
  try {
    doc = await answer.json();
  } catch (e) {
    doc = {};
  }
  const result = $("result");
  if (answer.ok) {
    result.className = "ok";
    result.textContent = "Done. Primary " + shown(doc.primary ?? (doc.window ? "unchanged" : "?")) +
      (doc.read_percent !== undefined ? ", reads to new " + doc.read_percent + "%" : "") +
      (doc.window ? ", report window opened " + when(doc.window.since) : "") + ".";
  } else {
    result.className = "problem";
    const error = doc.error || {};
    const reasons = (error.reasons || []).join("; ");
    result.textContent = "Refused (" + answer.status + "): " + (reasons || error.message || answer.statusText);
  }
  await refresh();
}

function reason() {
  return $("reason").value.trim();
}

function withReason(body) {
  const said = reason();
  if (said) body.reason = said;
  return body;
}

function fact(list, name, value, cls) {
  list.append(el("dt", name), el("dd", value, cls));
}

function renderState(status, audit) {
  const schedule = status.schedule || {};
  $("state").textContent = "primary " + status.primary + " · reads to new " + status.read_percent +
    "% · shadow " + status.shadow_read_percent + "% · epoch " + status.epoch;
  const facts = $("facts");
  facts.replaceChildren();
  fact(facts, "primary", status.primary);
  fact(facts, "reads to new", status.read_percent + "%");
  fact(facts, "shadow reads", status.shadow_read_percent + "%");
  fact(facts, "writes", status.write_mode);
  if (schedule.next) {
    fact(facts, "next step", schedule.next.read_percent + "% after " +
      Math.ceil(schedule.next.after_healthy_s) + " s more of healthy judgement");
  } else {
    fact(facts, "schedule", (schedule.steps || []).length ? "last step reached" : "none");
  }
  const latch = $("latch");
  latch.hidden = !status.failed_back;
  if (status.failed_back) {
    $("latch-reason").textContent = status.reason || "by hand";
    const entry = (audit.items || []).find((item) => item.change && item.change.failed_back === true);
    $("latch-at").textContent = entry ? "at " + when(entry.at / 1e6) + " by " + entry.source : "";
  }
}

function renderHealth(status) {
  const limits = status.thresholds || {};
  const figures = status.health_figures || {};
  const verdict = $("verdict");
  verdict.className = status.health;
  verdict.textContent = status.health === "inconclusive"
    ? "Inconclusive: " + (status.health_reason || "too few samples") + ". Nothing is judged healthy or tripped yet."
    : status.health + (status.health_reason ? ": " + status.health_reason : "");
  const body = $("health").tBodies[0];
  body.replaceChildren();
  for (const name of ["legacy", "new"]) {
    const s = status.stores[name];
    const row = el("tr");
    row.append(el("th", name), el("td", s.requests), el("td", s.errors));
    const bad = name === "new" && s.requests >= limits.min_samples && s.error_rate > limits.max_error_rate;
    row.append(el("td", percent(s.error_rate), bad ? "bad" : ""), el("td", s.p50_ms), el("td", s.p99_ms));
    row.firstChild.setAttribute("scope", "row");
    body.append(row);
  }
  $("thresholds").textContent = "Failback when, over " + limits.window_s + " s and at least " +
    limits.min_samples + " samples: new's error rate > " + percent(limits.max_error_rate) +
    ", its p99 > " + limits.max_latency_ratio + "× legacy's on comparable requests" +
    (figures.latency_ratio !== undefined
      ? " (now " + figures.latency_ratio + "×, " + figures.latency_class + ")" : "") +
    ", or mismatched reads > " + percent(limits.max_mismatch_rate) + " (now " +
    (figures.compared ? figures.mismatched + " of " + figures.compared : "none judged") +
    "); each from at least " + limits.min_callers + " callers, or all of them when fewer are active" +
    (figures.callers !== undefined ? " (now " + figures.callers + ")" : "") + ".";
}

function renderChart(series) {
  const holder = $("chart");
  holder.replaceChildren();
  const width = 640, height = 120, pad = 24;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 " + width + " " + height);
  svg.setAttribute("width", "100%");
  if (!series.length) {
    holder.append(el("p", "No reads compared yet.", "muted"));
    return;
  }
  const shown = series.slice(-60);
  const top = Math.max(1, ...shown.map((p) => p.compared));
  const slot = (width - 2 * pad) / 60;
  shown.forEach((p, i) => {
    const x = pad + (60 - shown.length + i) * slot;
    for (const [key, cls] of [["compared", "bar-compared"], ["mismatched", "bar-mismatched"]]) {
      const tall = (p[key] / top) * (height - 2 * pad);
      const bar = document.createElementNS(SVG, "rect");
      bar.setAttribute("class", cls);
      bar.setAttribute("x", x.toFixed(1));
      bar.setAttribute("width", Math.max(1, slot - 2).toFixed(1));
      bar.setAttribute("y", (height - pad - tall).toFixed(1));
      bar.setAttribute("height", tall.toFixed(1));
      svg.append(bar);
    }
  });
  holder.append(svg, el("p", "the last hour, per minute, up to " + top + " compared · blue compared, red mismatched", "muted"));
}

function renderVerdicts(report) {
  const window = report.window || {};
  const totals = report.totals;
  $("window").textContent = "Since " + when(window.since) + " (" + window.opened_by +
    (window.reason ? ": " + window.reason : "") + "): " + totals.compared + " compared, " +
    totals.mismatched + " mismatched, " + totals.pending + " pending, mismatch rate " +
    percent(totals.mismatch_rate) + ". Since start: " + report.since_start.totals.compared + " compared.";
  renderChart(report.series || []);
  const body = $("verdicts").tBodies[0];
  body.replaceChildren();
  for (const r of report.routes) {
    const row = el("tr");
    const name = el("th", r.route);
    name.setAttribute("scope", "row");
    row.append(name);
    for (const key of ["compared", "matched", "mismatched", "pending", "inflight", "noise", "errors"]) {
      row.append(el("td", r[key], key === "mismatched" && r[key] ? "bad" : ""));
    }
    row.append(el("td", percent(r.mismatch_rate)));
    body.append(row);
  }
}

function renderSamples(samples) {
  const holder = $("samples");
  holder.replaceChildren();
  if (!samples.length) {
    holder.append(el("p", "No differences in this window.", "muted"));
    return;
  }
  for (const s of samples.slice(0, 10)) {
    const box = el("article", null, "sample");
    const records = (s.records || []).map((r) => r.kind + " " + r.legacy + " (new " + (r.new ?? "?") + ")").join(", ");
    box.append(el("h3", s.route + " · " + s.verdict));
    box.append(el("p", when(s.at) + (records ? " · " + records : "") + (s.user ? " · user " + s.user : ""), "muted"));
    const table = el("table");
    const head = el("tr");
    for (const title of ["path", "legacy", "new"]) {
      const cell = el("th", title);
      cell.setAttribute("scope", "col");
      head.append(cell);
    }
    table.append(head);
    for (const d of s.differences.slice(0, 8)) {
      const row = el("tr");
      row.append(el("td", d.path + " (" + d.kind + ")"), el("td", shown(d.control), "value"), el("td", shown(d.candidate), "value"));
      table.append(row);
    }
    box.append(table);
    holder.append(box);
  }
}

function renderWrites(status) {
  const list = $("writes");
  list.replaceChildren();
  fact(list, "waiting for replay", status.repair_backlog + (status.repair_backlog ? " (oldest " + status.repair_backlog_age_s + " s)" : ""), status.repair_backlog_alert ? "bad" : "");
  fact(list, "divergent", status.divergent, status.divergent ? "bad" : "");
  fact(list, "held for verify --repair", status.held_writes ?? 0);
  fact(list, "not mirrored (unidentified)", status.unmirrored_writes ?? 0);
}

function renderJob(doc) {
  const holder = $("job");
  holder.replaceChildren();
  const job = doc.job;
  if (!job) {
    holder.append(el("p", "No backfill or verify has run in this proxy yet.", "muted"));
    return;
  }
  const title = job.kind + (job.repair ? " --repair" : "") + ": " + job.state;
  holder.append(el("p", title + (job.started_at ? " · started " + when(job.started_at) : "")));
  if (job.progress) holder.append(el("p", job.progress.line, "muted"));
  if (job.error) holder.append(el("p", job.error, "problem"));
  if (job.result && job.result.equal !== undefined) {
    holder.append(el("p", job.result.equal ? "Both stores agree." : "The stores differ.", job.result.equal ? "ok" : "bad"));
  }
}

function renderAudit(audit) {
  const list = $("audit");
  list.replaceChildren();
  for (const item of audit.items || []) {
    list.append(el("li", when(item.at / 1e6) + " · " + item.source + " · " + JSON.stringify(item.change) + (item.reason ? " · " + item.reason : "")));
  }
}

let busy = false;
async function refresh() {
  if (busy) return;
  busy = true;
  try {
    const [status, report, audit, job] = await Promise.all([get("/status"), get("/report"), get("/audit?limit=20"), get("/migrate")]);
    renderState(status, audit);
    renderHealth(status);
    renderVerdicts(report);
    renderSamples(report.samples || []);
    renderWrites(status);
    renderJob(job);
    renderAudit(audit);
  } catch (e) {
    $("state").textContent = "Cannot read the admin API: " + e.message;
  } finally {
    busy = false;
  }
}

for (const button of document.querySelectorAll("[data-ramp]")) {
  button.addEventListener("click", () => {
    const value = Number(button.dataset.ramp);
    act("/ramp", withReason({ read_percent: value }), "Serve " + value + "% of reads from new?");
  });
}
$("ramp-go").addEventListener("click", () => {
  const value = Number($("ramp-value").value);
  if (!Number.isInteger(value) || value < 0 || value > 100) {
    $("result").className = "problem";
    $("result").textContent = "A read percent is a whole number from 0 to 100.";
    return;
  }
  act("/ramp", withReason({ read_percent: value }), "Serve " + value + "% of reads from new?");
});
$("failback").addEventListener("click", () =>
  act("/failback", { reason: reason() || "by hand, from the console" }, "Fail back to legacy now?"));
$("rearm").addEventListener("click", () => act("/rearm", withReason({}), "Re-arm (lift the failback latch)?"));
$("promote").addEventListener("click", () => {
  const force = $("force").checked;
  act("/promote", withReason(force ? { force: true } : {}), force ? "Promote new although it may be unsafe?" : "Make new the primary?");
});
$("reset").addEventListener("click", () => act("/report/reset", withReason({}), "Start a new report window?"));
$("signout").addEventListener("click", async () => {
  await fetch("/console/signout", { method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": csrf } });
  window.location.assign("/console");
});

refresh();
window.setInterval(refresh, 2000);
