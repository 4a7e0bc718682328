// The Swarm dashboard. Plain JavaScript, no framework, no build step, served by the brain under a strict CSP.
// Rule: everything that came from the brain (and so possibly from an agent) is put in the page as text:
// createElement + textContent (via `el` and `text`), never an HTML-parsing setter or document.write.
"use strict";

(function () {
  const state = { session: null, stream: null, audit: [], errors: [], skipped: 0, decisionCache: {}, refreshTimer: null, refreshing: false, paused: new Set(), taskOffset: 0 };
  // The task list is read a page at a time (GET /v1/tasks?limit=&offset=: the newest first, and how many there are),
  // never every task kept; the active agents and the failed tasks are read by their state.
  const TASK_PAGE = 100;
  // How many audit rows and errors the page keeps: the brain's numbers (GET /session), which are also the most its
  // live stream sends the page at each flush (brain_server/dashboard/feed.py).
  function auditRows() { return state.session.audit_rows; }
  function errorRows() { return state.session.error_rows; }

  function $(id) { return document.getElementById(id); }

  // An element with `className` (optional) and children: strings become text nodes, never markup.
  function el(tag, className, ...children) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.appendChild(typeof child === "string" || typeof child === "number" ? document.createTextNode(String(child)) : child);
    }
    return node;
  }

  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

  function text(id, value) { $(id).textContent = value; }

  function when(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    return isNaN(d.getTime()) ? String(iso) : d.toLocaleString();
  }

  function pct(x) { return x === null || x === undefined ? "n/a" : (100 * x).toFixed(1) + " %"; }
  function usd(x) { return x === null || x === undefined ? "n/a" : "$" + Number(x).toFixed(2); }

  // -- the API --------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.message) || ("HTTP " + status));
      this.status = status;
      this.code = body && body.code;
    }
  }

  async function api(method, path, body) {
    const headers = { "Accept": "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (method !== "GET" && state.session) headers[state.session.csrf_header] = state.session.csrf;
    const response = await fetch(path, {
      method, headers, credentials: "same-origin", cache: "no-store",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let data = null;
    if (response.status !== 204) {
      try { data = await response.json(); } catch (e) { data = null; }
    }
    if (!response.ok) {
      if (response.status === 401 && path !== "/session") showLogin("Your session has ended: " + ((data && data.message) || "log in again"));
      throw new ApiError(response.status, data);
    }
    return data;
  }

  function reportError(err) { text("action-error", err && err.message ? err.message : String(err)); }

  // -- login ----------------------------------------------------------------------------

  function showLogin(message) {
    // Several requests may find the session ended at once: the first one says why.
    if (!$("login-view").hidden && message && message.startsWith("Your session has ended")) return;
    stopStream();
    state.session = null;
    $("dashboard-view").hidden = true;
    $("login-view").hidden = false;
    $("logout").hidden = true;
    text("who", "");
    text("login-error", message || "");
  }

  async function start() {
    try {
      state.session = await api("GET", "/session");
    } catch (err) {
      showLogin(err.status === 401 ? "" : err.message);
      return;
    }
    showDashboard();
  }

  function showDashboard() {
    const s = state.session;
    $("login-view").hidden = true;
    $("dashboard-view").hidden = false;
    $("logout").hidden = false;
    text("who", s.label + " (" + s.role + ")");
    // Kill and resume are a captain's (the brain refuses anyone else's too).
    for (const id of ["kill-button", "resume-button", "kill-reason", "kill-reason-label"]) $(id).hidden = s.role !== "captain";
    text("kill-note", s.role === "captain" ? "" : "Kill and resume are a captain's.");
    text("action-error", "");
    refreshAll();
    startStream();
    if (state.refreshTimer === null) state.refreshTimer = setInterval(refreshAll, 5000);
  }

  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = $("token");
    try {
      state.session = await api("POST", "/session", { token: input.value });
      input.value = "";
      showDashboard();
    } catch (err) {
      text("login-error", err.message);
    }
  });

  $("logout").addEventListener("click", async () => {
    try { await api("DELETE", "/session"); } catch (err) { /* ended already */ }
    showLogin("Logged out.");
  });

  // -- what the page shows ------------------------------------------------------------------

  // Every 5 s, but never while the tab is hidden (it refreshes on being shown again) nor while the last round is
  // still being answered: a page left open in the background, or a brain slow to answer (busy with a kill), is not
  // asked again meanwhile. The stream's events still refresh what they concern.
  async function refreshAll() {
    if (!state.session || state.refreshing || document.hidden) return;
    state.refreshing = true;
    try {
      await Promise.all([refreshStatus(), refreshTasks(), refreshDecisions(), refreshKpis()].map((p) => p.catch(reportErrorQuietly)));
    } finally {
      state.refreshing = false;
    }
  }

  document.addEventListener("visibilitychange", () => { if (!document.hidden) refreshAll(); });

  function reportErrorQuietly(err) { if (err.status !== 401) reportError(err); }

  function renderKill(kill) {
    const node = $("kill-state");
    clear(node);
    if (kill.engaged) {
      node.appendChild(el("span", "engaged", "ENGAGED"));
      node.appendChild(document.createTextNode(" by " + (kill.by || "?") + " at " + when(kill.at) + ": " + (kill.reason || "")));
    } else {
      node.appendChild(el("span", "released", "released"));
      if (kill.by) node.appendChild(document.createTextNode(" (last changed by " + kill.by + " at " + when(kill.at) + ")"));
    }
    node.dataset.engaged = kill.engaged ? "true" : "false";
  }

  async function refreshStatus() {
    const status = await api("GET", "/v1/status");
    renderKill(status.kill);
    renderPaused(status.paused_agents || []);
    const body = $("bodies").tBodies[0];
    clear(body);
    for (const b of status.bodies) {
      body.appendChild(el("tr", null, el("td", null, b.body_id), el("td", null, b.hostname), el("td", null, b.connected ? "yes" : "no"), el("td", null, when(b.last_heartbeat))));
    }
  }

  async function refreshTasks() {
    const [list, claimed, waiting, failed] = await Promise.all([
      api("GET", "/v1/tasks?limit=" + TASK_PAGE + "&offset=" + state.taskOffset),
      api("GET", "/v1/tasks?state=claimed"),
      api("GET", "/v1/tasks?state=waiting_approval"),
      api("GET", "/v1/tasks?state=failed&limit=20"),
    ]);
    if (state.taskOffset > 0 && state.taskOffset >= list.total) {
      // (the list shrank under the page shown: back to the newest)
      state.taskOffset = 0;
      return refreshTasks();
    }
    const tasks = list.tasks.slice().reverse();
    const body = $("tasks").tBodies[0];
    clear(body);
    for (const t of tasks) {
      const updated = t.finished_at || t.claimed_at || t.created_at;
      const row = el("tr", "task-row", el("td", null, t.id), el("td", "task-title", t.title), el("td", null, t.state),
        el("td", null, t.claimed_by ? t.claimed_by.agent : ""), el("td", null, when(updated)));
      row.dataset.taskId = t.id;
      body.appendChild(row);
    }
    const first = list.total === 0 ? 0 : state.taskOffset + 1;
    text("task-count", list.total === 0 ? "no tasks" : "newest first: " + first + " to " + (state.taskOffset + tasks.length) + " of " + list.total);
    $("tasks-newer").disabled = state.taskOffset === 0;
    $("tasks-older").disabled = state.taskOffset + TASK_PAGE >= list.total;
    const holding = claimed.tasks.concat(waiting.tasks).sort((a, b) => (a.created_at < b.created_at ? -1 : a.created_at > b.created_at ? 1 : 0));
    // Active agents: who holds a task now (claimed, or parked waiting for a decision).
    const agents = new Map();
    for (const t of holding) {
      if (!t.claimed_by) continue;
      const a = agents.get(t.claimed_by.agent) || { agent: t.claimed_by.agent, bodies: new Set(), tasks: [] };
      a.bodies.add(t.claimed_by.body_id);
      a.tasks.push(t);
      agents.set(a.agent, a);
    }
    const agentBody = $("agents").tBodies[0];
    clear(agentBody);
    if (agents.size === 0) agentBody.appendChild(el("tr", null, el("td", null, "no agent holds a task")));
    for (const a of agents.values()) {
      const doing = a.tasks.map((t) => t.state + ": " + t.title + " (" + t.id + ")").join("; ");
      const states = Array.from(new Set(a.tasks.map((t) => t.state === "claimed" ? "working" : "waiting for approval"))).join(", ");
      const paused = state.paused.has(a.agent) ? " (PAUSED)" : "";
      const row = el("tr", "agent-row", el("td", "agent-name", a.agent), el("td", null, states + paused), el("td", null, doing), el("td", null, Array.from(a.bodies).join(", ")));
      row.dataset.agent = a.agent;
      agentBody.appendChild(row);
    }
    state.errors = state.errors.filter((e) => e.kind !== "task");
    for (const t of failed.tasks) {
      state.errors.push({ kind: "task", at: t.finished_at, line: "task " + t.id + " failed: " + t.title + (t.outcome_summary ? " — " + t.outcome_summary : "") });
    }
    renderErrors();
  }

  $("tasks-older").addEventListener("click", () => { state.taskOffset += TASK_PAGE; refreshTasks().catch(reportErrorQuietly); });
  $("tasks-newer").addEventListener("click", () => { state.taskOffset = Math.max(0, state.taskOffset - TASK_PAGE); refreshTasks().catch(reportErrorQuietly); });

  async function refreshKpis() {
    const [day, hour, usage] = await Promise.all([api("GET", "/v1/kpi"), api("GET", "/v1/kpi?since_s=3600"), api("GET", "/v1/usage?by_task=false")]);
    const dl = $("kpis");
    clear(dl);
    const budget = state.session.usd_per_hour;
    const rows = [
      ["Task success rate (window)", pct(day.task_success_rate) + " of " + day.tasks_finished + " finished"],
      ["Decision accuracy", pct(day.decision_accuracy)],
      ["Spend, last hour", usd(hour.spend_usd) + (budget === null || budget === undefined ? " (no [limits] usd_per_hour budget set)" : " of " + usd(budget) + " per hour (" + pct(hour.spend_usd / budget) + ")")],
      ["Spend, window", usd(day.spend_usd) + ", value delivered " + usd(day.value_delivered_usd) + ", ROI " + (day.roi === null ? "n/a" : day.roi.toFixed(2))],
      ["Spend, all time", usd(usage.total.usd) + " over " + usage.total.calls + " LLM calls"],
      ["Cost per task", usd(day.cost_per_task_usd)],
      ["Brain uptime", pct(day.brain_uptime.ratio)],
    ];
    for (const agent of Object.keys(usage.by_agent).sort()) rows.push(["Spend of " + agent, usd(usage.by_agent[agent].usd)]);
    for (const [k, v] of rows) { dl.appendChild(el("dt", null, k)); dl.appendChild(el("dd", null, v)); }
  }

  async function refreshDecisions() {
    const list = await api("GET", "/v1/decisions?state=pending");
    const ol = $("decisions");
    clear(ol);
    $("no-decisions").hidden = list.length > 0;
    for (const d of list) {
      state.decisionCache[d.id] = d;
      ol.appendChild(renderDecision(d));
    }
  }

  function facts(pairs) {
    const dl = el("dl");
    for (const [k, v] of pairs) {
      if (v === null || v === undefined || v === "") continue;
      dl.appendChild(el("dt", null, k));
      dl.appendChild(typeof v === "string" ? el("dd", null, v) : el("dd", null, v));
    }
    return dl;
  }

  function renderDecision(d) {
    const item = el("li", "decision");
    item.dataset.decisionId = d.id;
    item.appendChild(el("div", "summary", d.summary));
    const options = d.options.length ? el("ul", "options", ...d.options.map((o) => el("li", null, o))) : "(none given)";
    const panel = d.panel || [];
    item.appendChild(facts([
      ["Agent", d.agent + " on body " + d.body_id],
      ["Why (agent's rationale)", d.rationale],
      ["Confidence", String(d.confidence)],
      ["Needs", d.needs + " (rules v" + d.rules_version + ")"],
      ["Impact", d.impact.files + " files, " + d.impact.api_calls + " API calls, " + usd(d.impact.usd)],
      ["Options", options],
      ["Action", d.action || ""],
      ["Files", d.files.join(", ")],
      ["Deadline", when(d.deadline) + " (silence is a denial)"],
      ["Panel", panel.length ? renderPanel(d) : ""],
      ["Votes", (d.votes || []).length ? renderVotes(d) : (panel.length ? "no votes yet" : "")],
      ["Deadlock ladder", (d.ladder || []).length ? el("ol", "ladder", ...d.ladder.map((s) => el("li", "ladder-step", when(s.at) + " " + s.kind + ": " + s.reason))) : ""],
    ]));
    const reason = el("input", "reason");
    reason.type = "text";
    reason.placeholder = "reason (optional)";
    const approve = el("button", "approve", "Approve");
    const deny = el("button", "deny", "Deny");
    approve.type = deny.type = "button";
    approve.addEventListener("click", () => answer(d.id, "approve", reason.value));
    deny.addEventListener("click", () => answer(d.id, "deny", reason.value));
    item.appendChild(el("div", null, reason, approve, deny));
    // A vote with its reason (the brain records it under this session's token: human:<label>).
    const value = el("select", "vote-value", ...["approve", "deny", "abstain"].map((v) => { const o = el("option", null, v); o.value = v; return o; }));
    const why = el("input", "vote-reason");
    why.type = "text";
    why.placeholder = "why (a vote needs a reason)";
    const vote = el("button", "vote", "Vote");
    vote.type = "button";
    vote.addEventListener("click", () => castVote(d.id, value.value, why.value));
    item.appendChild(el("div", "vote-form", value, why, vote));
    item.appendChild(el("p", "hint vote-note", voteNote(d)));
    return item;
  }

  // The panel's count as the brain makes it (shared_protocol.consensus.count): each seat's latest counted vote (a
  // shadow vote, by a reviewer agent's logic version not live yet, is shown but never counted).
  function panelCount(d) {
    const latest = {};
    for (const v of d.votes || []) if (!v.shadow) latest[v.voter] = v;
    const seats = new Set(d.panel);
    let approvals = 0, denials = 0, abstentions = 0;
    for (const seat of seats) {
      const v = latest[seat];
      if (!v) continue;
      if (v.value === "approve") approvals++; else if (v.value === "deny") denials++; else abstentions++;
    }
    const missing = seats.size - approvals - denials - abstentions;
    let outcome = "open: waiting for votes";
    if (approvals >= d.quorum) outcome = d.human_required ? "quorum reached: waiting for a human's approval" : "approved";
    else if (denials >= d.quorum) outcome = "denied";
    else if (approvals + missing < d.quorum) outcome = approvals === denials && approvals > 0 ? "tie: a deadlock" : "cannot reach the quorum";
    return { approvals, denials, abstentions, missing, outcome };
  }

  function renderPanel(d) {
    const c = panelCount(d);
    return el("div", "panel-state",
      el("div", "quorum", "quorum " + d.quorum + " of " + d.panel.length + ": " + c.approvals + " approve, " + c.denials + " deny, " + c.abstentions + " abstain, " + c.missing + " not voted (" + c.outcome + ")"),
      el("div", null, "seats: " + d.panel.join(", ")),
      el("div", null, "a human's approval is " + (d.human_required ? "required too" : "not required")),
      d.quorum_deadline ? el("div", null, "the panel has until " + when(d.quorum_deadline) + ", then the deadlock ladder") : null);
  }

  function renderVotes(d) {
    const latest = {};
    for (const v of d.votes) if (!v.shadow) latest[v.voter] = v;
    const seats = new Set(d.panel || []);
    return el("ol", "votes", ...d.votes.map((v) => {
      const notes = [];
      if (v.shadow) notes.push("shadow: this logic version does not vote live yet, not counted");
      else if (latest[v.voter] !== v) notes.push("replaced by a later vote");
      if (seats.size && !seats.has(v.voter)) notes.push("no seat on the panel");
      const by = v.voter + (v.role ? " (" + v.role + ")" : "") + (v.logic_version ? " [" + v.logic_version + "]" : "");
      const li = el("li", "vote-item", el("span", "when", when(v.at) + " "), el("span", "voter", by), ": ",
        el("span", "value", v.value), " — ", el("span", "rationale", v.rationale), notes.length ? " (" + notes.join("; ") + ")" : null);
      li.dataset.voter = v.voter;
      return li;
    }));
  }

  // What this human's Approve, Deny or vote does to this decision (governance.settle's rules, in words).
  function voteNote(d) {
    const s = state.session;
    const seat = "human:" + s.label;
    const panel = d.panel || [];
    const ladder = d.ladder || [];
    const last = ladder.length ? ladder[ladder.length - 1].kind : null;
    if (!panel.length) return "Approve, Deny or a vote answer it at once.";
    if (last === "human_captain" && s.role === "captain") return "The deadlock is at the human captain's step: your vote (or Approve / Deny) decides it.";
    const lines = [];
    if (panel.includes(seat)) lines.push("You hold the seat " + seat + ": your vote counts toward the quorum.");
    else lines.push("You (" + seat + ") hold no seat on this panel: an approval does not count toward its quorum" + (d.human_required ? ", but it is the human approval it also requires." : "; it settles nothing."));
    lines.push("A deny from you denies it at once.");
    if (last === "human_captain") lines.push("The deadlock waits for a human captain.");
    return lines.join(" ");
  }

  async function castVote(id, value, reason) {
    if (!reason.trim()) { text("action-error", "a vote needs a reason: say why you vote " + value); return; }
    try {
      await api("POST", "/v1/decisions/" + encodeURIComponent(id) + "/votes", { value, reason });
      text("action-error", "");
    } catch (err) { reportError(err); }
    refreshDecisions().catch(reportErrorQuietly);
    refreshTasks().catch(reportErrorQuietly);
  }

  async function answer(id, verb, reason) {
    try {
      await api("POST", "/v1/decisions/" + encodeURIComponent(id) + "/" + verb, { reason: reason || verb + "d from the dashboard" });
      text("action-error", "");
    } catch (err) { reportError(err); }
    refreshDecisions().catch(reportErrorQuietly);
    refreshTasks().catch(reportErrorQuietly);
  }

  $("kill-button").addEventListener("click", async () => {
    try {
      renderKill(await api("POST", "/v1/kill", { reason: $("kill-reason").value || "from the dashboard" }));
      text("action-error", "");
    } catch (err) { reportError(err); }
  });

  $("resume-button").addEventListener("click", async () => {
    try {
      renderKill(await api("POST", "/v1/resume", { reason: $("kill-reason").value || "from the dashboard" }));
      text("action-error", "");
    } catch (err) { reportError(err); }
  });

  // -- paused agents (a kill switch scoped to one agent: the anomaly detector's or a captain's) ----------------

  function pauseNumbers(detail) {
    // An anomaly's numbers per metric (value, baseline median, robust sigma, threshold, samples), as text.
    const lines = [];
    for (const key of Object.keys(detail || {}).sort()) {
      const v = detail[key];
      if (v !== null && typeof v === "object" && !Array.isArray(v)) {
        const parts = Object.keys(v).map((k) => k + " " + (typeof v[k] === "number" ? Number(v[k].toFixed(3)) : String(v[k])));
        lines.push(key + ": " + parts.join(", "));
      } else {
        lines.push(key + ": " + (typeof v === "string" ? v : JSON.stringify(v)));
      }
    }
    return lines;
  }

  function renderPaused(pauses) {
    state.paused = new Set(pauses.map((p) => p.agent));
    const ol = $("paused");
    clear(ol);
    $("no-paused").hidden = pauses.length > 0;
    const captain = state.session && state.session.role === "captain";
    for (const p of pauses) {
      const item = el("li", "paused-agent");
      item.dataset.agent = p.agent;
      const who = p.source === "anomaly" ? "the anomaly detector" : p.by;
      item.appendChild(el("div", "summary", p.agent));
      const numbers = pauseNumbers(p.detail);
      item.appendChild(facts([
        ["Paused by", who + " (" + p.source + ")"],
        ["Since", when(p.at)],
        ["Why", p.reason],
        ["Numbers", numbers.length ? el("ul", "numbers", ...numbers.map((n) => el("li", null, n))) : ""],
      ]));
      const reason = el("input", "reason");
      reason.type = "text";
      reason.placeholder = "reason (optional)";
      const resume = el("button", "resume-agent", "Resume " + p.agent);
      resume.type = "button";
      // A captain's: an approver sees it but cannot press it (the brain refuses anyone else's too, 403).
      resume.disabled = !captain;
      if (!captain) resume.title = "Resuming a paused agent is a captain's";
      resume.addEventListener("click", () => resumeAgent(p.agent, reason.value));
      item.appendChild(el("div", null, reason, resume, captain ? null : el("span", "hint", " Resuming a paused agent is a captain's.")));
      ol.appendChild(item);
    }
  }

  async function resumeAgent(agent, reason) {
    try {
      await api("POST", "/v1/agents/" + encodeURIComponent(agent) + "/resume", { reason: reason || "resumed from the dashboard" });
      text("action-error", "");
    } catch (err) {
      reportError(err.status === 403 ? new Error("resuming agent " + agent + " was refused: " + err.message) : err);
    }
    refreshStatus().catch(reportErrorQuietly);
    refreshTasks().catch(reportErrorQuietly);
  }

  function renderErrors() {
    const ol = $("errors");
    clear(ol);
    const all = state.errors.slice().sort((a, b) => String(b.at).localeCompare(String(a.at))).slice(0, errorRows());
    if (all.length === 0) ol.appendChild(el("li", null, "no refusals, failures or failed tasks seen"));
    for (const e of all) ol.appendChild(el("li", "error-item", when(e.at) + " " + e.line));
  }

  // -- the audit stream ---------------------------------------------------------------------

  function auditLine(e) {
    const what = e.tool || e.kind;
    return "#" + e.seq + " " + e.body_id + " " + e.agent + " " + what + " " + e.outcome + (e.code ? " [" + e.code + "]" : "") + " — " + e.rationale;
  }

  function addAudit(e) {
    state.audit.push(e);
    if (state.audit.length > auditRows()) state.audit.shift();
    const ol = $("audit");
    const item = el("li", "audit-item " + e.outcome, el("span", "when", when(e.ts) + " "), el("span", "line", auditLine(e)));
    item.dataset.actionId = e.id;
    item.tabIndex = 0;
    item.addEventListener("click", () => explain(e));
    item.addEventListener("keydown", (ev) => { if (ev.key === "Enter") explain(e); });
    ol.insertBefore(item, ol.firstChild);
    while (ol.childNodes.length > auditRows()) ol.removeChild(ol.lastChild);
    if (e.outcome === "refused" || e.outcome === "failed") {
      state.errors.push({ kind: "audit", at: e.ts, line: e.agent + " " + (e.tool || e.kind) + " " + e.outcome + (e.code ? " [" + e.code + "]" : "") + ": " + (e.message || e.rationale) });
      // Only the newest are shown: the stream's errors come oldest first, so the oldest audit ones go.
      const audits = state.errors.filter((x) => x.kind === "audit");
      if (audits.length > errorRows()) {
        const gone = new Set(audits.slice(0, audits.length - errorRows()));
        state.errors = state.errors.filter((x) => !gone.has(x));
      }
      renderErrors();
    }
  }

  // The brain sends a page at most the newest events of each flush (and the refusals and failures the Errors panel
  // shows): the rest it counts, and the page says how many it never got, and where they all are.
  function addSkipped(count) {
    state.skipped += count;
    const line = $("audit-skipped");
    line.hidden = state.skipped === 0;
    text("audit-skipped", state.skipped.toLocaleString() + " earlier events not shown: the live stream sends only the newest " +
      auditRows() + " of each batch. The full record is each body's audit trail: swarm audit tail (--agent NAME or --workspace DIR) on its machine.");
  }

  function pretty(value) {
    try { return JSON.stringify(value, null, 2); } catch (err) { return String(value); }
  }

  // The explanation of one action, as `swarm audit explain` gives it: context, options, choice, rationale, diff.
  async function explain(e) {
    const panel = $("explanation");
    clear(panel);
    $("explain-panel").hidden = false;
    const version = e.logic_version ? ", logic version " + e.logic_version : "";
    const context = "agent '" + e.agent + "'" + version + ", session " + e.session + ", body " + e.body_id + ", mode " + e.mode + "; event #" + e.seq + " at " + e.ts + " (" + e.id + ")";
    const outcomes = {
      ok: "The guard allowed it and it was carried out.",
      shadow: "Shadow mode: the guard recorded what would happen and changed nothing.",
      refused: "The guard refused it; nothing was changed.",
      failed: "It was allowed but failed while executing.",
    };
    let options = "(no decision was asked for this action)";
    if (e.decision_id) {
      options = "under decision " + e.decision_id;
      try {
        const d = state.decisionCache[e.decision_id] || await api("GET", "/v1/decisions/" + encodeURIComponent(e.decision_id));
        state.decisionCache[d.id] = d;
        options = el("div", null, el("div", null, "Decision " + d.id + " (" + d.state + "): " + d.summary),
          d.options.length ? el("ul", "options", ...d.options.map((o) => el("li", null, o))) : el("div", null, "(no options given)"));
      } catch (err) { /* the decision is not readable: keep its id */ }
    }
    const choice = el("div", null,
      el("div", null, (e.tool || e.kind) + " " + (e.code ? "[" + e.code + "] " : "") + (outcomes[e.outcome] || e.outcome)),
      e.rule ? el("div", null, "Rule: " + e.rule + ": " + (e.message || "")) : null,
      el("pre", "arguments", pretty(e.arguments)));
    const diffText = (e.detail && typeof e.detail.diff === "string" && e.detail.diff) || (e.arguments && typeof e.arguments.diff === "string" && e.arguments.diff) || "";
    const diff = diffText ? el("pre", "diff", diffText) : "(no diff recorded with this action)";
    panel.appendChild(facts([
      ["Context", context],
      ["Model turn", e.turn ? "step " + e.turn.step + " — " + (e.turn.text || "(no text)") : ""],
      ["Options", options],
      ["Choice", choice],
      ["Rationale", e.rationale || "(none given)"],
      ["Diff", diff],
      ["Files", (e.files || []).join(", ")],
      ["Impact", e.impact.files + " files, " + e.impact.api_calls + " API calls, " + usd(e.impact.usd) + "; took " + Number(e.duration_ms).toFixed(1) + " ms"],
      ["Details", Object.keys(e.detail || {}).length ? el("pre", "detail", pretty(e.detail)) : ""],
    ]));
    $("explain-panel").scrollIntoView();
  }

  $("explain-close").addEventListener("click", () => { $("explain-panel").hidden = true; });

  // -- the live stream ------------------------------------------------------------------------

  function stopStream() {
    if (state.stream) { state.stream.close(); state.stream = null; }
    if (state.refreshTimer !== null) { clearInterval(state.refreshTimer); state.refreshTimer = null; }
    $("live").className = "badge";
    text("live", "offline");
  }

  function parse(ev) { try { return JSON.parse(ev.data); } catch (err) { return null; } }

  function startStream() {
    if (state.stream) state.stream.close();
    clear($("audit"));
    state.audit = [];
    state.skipped = 0;
    addSkipped(0);
    state.errors = state.errors.filter((e) => e.kind !== "audit");
    const source = new EventSource("/v1/dashboard/stream");
    state.stream = source;
    source.addEventListener("open", () => { $("live").className = "badge on"; text("live", "live"); });
    source.addEventListener("error", () => {
      $("live").className = "badge";
      text("live", "reconnecting");
      if (source.readyState === EventSource.CLOSED) {
        // Refused (a session that ended): the login form says why.
        api("GET", "/session").then(() => setTimeout(startStream, 2000), (err) => {
          if (err.status === 401) showLogin("Your session has ended: " + err.message);
          else setTimeout(startStream, 2000);
        });
      }
    });
    for (const name of ["kill", "resume"]) source.addEventListener(name, (ev) => { const k = parse(ev); if (k) renderKill(k); });
    source.addEventListener("decision", () => { refreshDecisions().catch(reportErrorQuietly); refreshTasks().catch(reportErrorQuietly); });
    for (const name of ["task_available", "task_cancelled", "task_ended"]) source.addEventListener(name, () => refreshTasks().catch(reportErrorQuietly));
    source.addEventListener("audit", (ev) => { const e = parse(ev); if (e) addAudit(e); });
    source.addEventListener("audit_skipped", (ev) => { const s = parse(ev); if (s && Number.isInteger(s.skipped)) addSkipped(s.skipped); });
  }

  start();
})();
