"use strict";
// microhive console: one EventSource ("api/events") feeds every panel; changes are POSTs
// with the session's CSRF token. Every value from the hive is shown with textContent.

const $ = (id) => document.getElementById(id);
const COLORS = ["#f5b83d", "#5aa9f6", "#3ecf8e", "#ef5b5b", "#b07cf7", "#4dd0c8", "#f28bd0", "#c3e07a"];
const state = {
  session: null, queues: new Map(), order: [], selected: null, charts: {}, deadSeen: null,
  counts: {}, calls: {}, previousCounts: {}, lastTick: null,
};

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) node.append(child);
  return node;
}
const fmtTime = (t) => new Date(t * 1000).toLocaleTimeString([], { hour12: false });
const fmtRate = (r) => (r === null || r === undefined ? "–" : r < 10 ? r.toFixed(1) : Math.round(r).toString());
const fmtNum = (n) => (n === null || n === undefined ? "–" : String(n));
const fmtFig = (n) => (n === null || n === undefined ? "—" : String(n)); // None: the engine cannot tell
function ago(t) {
  const s = Math.max(0, Date.now() / 1000 - t);
  if (s < 60) return `${Math.round(s)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  return `${(s / 3600).toFixed(1)} h ago`;
}
function span(seconds) {
  if (seconds < 60) return `${Math.round(seconds)} s`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

// -- session -----------------------------------------------------------------------------

async function loadSession() {
  const session = await (await fetch("api/session", { cache: "no-store" })).json();
  if (!session.may_view) { location.href = "login"; return null; }
  state.session = session;
  const mode = $("mode");
  mode.textContent = session.read_only ? "read-only" : "read-write";
  mode.className = "badge " + (session.read_only ? "ro" : "rw");
  $("who").textContent = session.who ? `logged in (${session.who})` : "";
  $("logout").hidden = !session.logged_in;
  $("login").hidden = session.logged_in || session.open;
  if (session.why) { $("notice").textContent = session.why; $("notice").hidden = false; }
  for (const button of document.querySelectorAll("button.write")) {
    button.disabled = !writable();
    if (!writable()) button.title = session.why || "log in to change";
  }
  return session;
}
const writable = () => state.session && !state.session.read_only && state.session.logged_in;

async function post(path, body) {
  const answer = await fetch(path, {
    method: "POST",
    headers: { "content-type": "application/json", "x-csrf-token": state.session.csrf || "" },
    body: JSON.stringify(body),
  });
  const data = await answer.json().catch(() => ({}));
  if (answer.status === 401) { location.href = "login"; }
  if (!answer.ok) throw new Error(data.error || `HTTP ${answer.status}`);
  return data;
}

$("logout").addEventListener("click", async () => {
  await post("api/logout", {}).catch(() => null);
  location.href = "login";
});

// -- queues ------------------------------------------------------------------------------

function queueState(name) {
  let q = state.queues.get(name);
  if (!q) {
    q = { name, times: [], lengths: [], dead: [], sent: [], done: [], last: {} };
    state.queues.set(name, q);
    state.order.push(name);
    state.charts.stale = true;
  }
  return q;
}
const KEEP = 600;
function push(q, sample) {
  q.times.push(sample.at); q.lengths.push(sample.length); q.dead.push(sample.dead);
  q.sent.push(sample.sent_rate); q.done.push(sample.done_rate);
  for (const key of ["times", "lengths", "dead", "sent", "done"]) {
    if (q[key].length > KEEP) q[key].splice(0, q[key].length - KEEP);
  }
  q.last = sample;
}

function renderQueues() {
  const body = $("queues").tBodies[0];
  $("queues-empty").hidden = state.order.length > 0;
  $("queues-count").textContent = state.order.length ? String(state.order.length) : "";
  for (const name of state.order) {
    const q = state.queues.get(name);
    let row = body.querySelector(`tr[data-queue="${CSS.escape(name)}"]`);
    if (!row) {
      row = el("tr", { "data-queue": name },
        el("td", { class: "name mono" }), el("td", { class: "num length" }),
        el("td", { class: "num consumers" }), el("td", { class: "num in-flight" }),
        el("td", { class: "num dead" }), el("td", { class: "num sent" }),
        el("td", { class: "num done" }), el("td", {}, el("canvas", { class: "spark", width: 160, height: 26 })));
      row.addEventListener("click", () => select(name));
      body.append(row);
    }
    const s = q.last;
    row.querySelector(".name").textContent = name;
    if (s.error) row.querySelector(".name").append(el("div", { class: "error-text", text: s.error }));
    row.querySelector(".length").textContent = fmtNum(s.length);
    row.querySelector(".consumers").textContent = fmtFig(s.consumers);
    row.querySelector(".in-flight").textContent = fmtFig(s.in_flight);
    const dead = row.querySelector(".dead");
    dead.textContent = fmtFig(s.dead);
    dead.classList.toggle("dead-some", s.dead > 0);
    row.querySelector(".sent").textContent = s.replay ? fmtRate(s.sent_rate) : "n/a";
    row.querySelector(".done").textContent = fmtRate(s.done_rate);
    row.classList.toggle("selected", name === state.selected);
    spark(row.querySelector("canvas"), q.lengths.slice(-60), COLORS[state.order.indexOf(name) % COLORS.length]);
  }
}

function spark(canvas, values, color) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  const nums = values.map((v) => (v === null ? 0 : v));
  if (nums.length < 2) return;
  const max = Math.max(1, ...nums);
  ctx.strokeStyle = color; ctx.lineWidth = 1.5; ctx.beginPath();
  nums.forEach((v, i) => {
    const x = (i / (nums.length - 1)) * (w - 2) + 1, y = h - 2 - (v / max) * (h - 4);
    if (i) ctx.lineTo(x, y); else ctx.moveTo(x, y);
  });
  ctx.stroke();
}

function chartOptions(title, series, width) {
  return {
    width, height: 220, title: "",
    cursor: { drag: { x: false, y: false } },
    scales: { x: { time: true }, rate: { range: (u, min, max) => [0, Math.max(1, max)] },
              y: { range: (u, min, max) => [0, Math.max(1, max)] } },
    axes: [
      { stroke: "#7d8b99", grid: { stroke: "#202a34" }, ticks: { stroke: "#202a34" },
        values: (u, splits) => splits.map((t) => fmtTime(t)) },
      { stroke: "#7d8b99", grid: { stroke: "#202a34" }, ticks: { stroke: "#202a34" }, scale: "y" },
      ...(series.some((s) => s.scale === "rate")
        ? [{ side: 1, scale: "rate", stroke: "#7d8b99", grid: { show: false }, size: 50 }] : []),
    ],
    series: [{}, ...series],
  };
}

function drawCharts() {
  const all = $("chart-all"), one = $("chart-one");
  const width = Math.max(280, all.clientWidth || 500);
  if (typeof uPlot === "undefined") return;
  // every queue's length, on one time axis (the first queue's sample times)
  const base = state.order.length ? state.queues.get(state.order[0]).times : [];
  const allData = [base, ...state.order.map((n) => align(state.queues.get(n), base, "lengths"))];
  if (state.charts.stale || !state.charts.all) {
    if (state.charts.all) state.charts.all.destroy();
    all.textContent = "";
    state.charts.all = new uPlot(chartOptions("length", state.order.map((name, i) => ({
      label: name, stroke: COLORS[i % COLORS.length], width: 2, scale: "y",
    })), width), allData, all);
    state.charts.stale = false;
  } else {
    state.charts.all.setData(allData);
  }
  const q = state.selected && state.queues.get(state.selected);
  if (!q) return;
  $("chart-one-title").textContent = `${q.name}: length, dead letters, in/s and out/s`;
  const oneData = [q.times, q.lengths, q.dead, q.sent, q.done];
  if (!state.charts.one || state.charts.oneName !== q.name) {
    if (state.charts.one) state.charts.one.destroy();
    one.textContent = "";
    state.charts.one = new uPlot(chartOptions("queue", [
      { label: "length", stroke: "#f5b83d", width: 2, scale: "y", fill: "rgba(245,184,61,.08)" },
      { label: "dead", stroke: "#ef5b5b", width: 1.5, scale: "y" },
      { label: "in/s (right)", stroke: "#5aa9f6", width: 1.5, scale: "rate", dash: [4, 3] },
      { label: "out/s (right)", stroke: "#3ecf8e", width: 1.5, scale: "rate" },
    ], one.clientWidth || width), oneData, one);
    state.charts.oneName = q.name;
  } else {
    state.charts.one.setData(oneData);
  }
}

function align(q, base, key) {
  if (q.times === base) return q[key];
  const out = new Array(base.length).fill(null);
  let j = 0;
  for (let i = 0; i < base.length; i++) {
    while (j < q.times.length - 1 && q.times[j + 1] <= base[i] + 0.5) j++;
    if (q.times.length && Math.abs(q.times[j] - base[i]) < 1.5) out[i] = q[key][j];
  }
  return out;
}

function select(name) {
  state.selected = name;
  state.deadSeen = null;
  renderQueues();
  drawCharts();
  loadLetters();
}

// -- dead letters ------------------------------------------------------------------------

function filters() {
  const form = new FormData($("dead-filters"));
  const body = {};
  if (form.get("reason")) body.reason = form.get("reason");
  if (form.get("older_than")) body.older_than = Number(form.get("older_than"));
  if (form.get("limit")) body.limit = Number(form.get("limit"));
  return body;
}

async function loadLetters() {
  const name = state.selected;
  $("dead-queue").textContent = name ? `of ${name}` : "";
  const box = $("letters");
  if (!name) { box.textContent = ""; return; }
  const query = new URLSearchParams(Object.entries(filters()).map(([k, v]) => [k, String(v)]));
  const answer = await fetch(`api/queues/${encodeURIComponent(name)}/dead?${query}`, { cache: "no-store" });
  if (answer.status === 401) { location.href = "login"; return; }
  const data = await answer.json();
  box.textContent = "";
  if (!answer.ok) { box.append(el("p", { class: "error", text: data.error })); return; }
  $("letters-empty").hidden = data.letters.length > 0;
  for (const letter of data.letters) box.append(letterCard(name, letter));
}

function letterCard(queue, letter) {
  const envelope = letter.envelope;
  const payload = envelope ? JSON.stringify(envelope.payload, null, 2) : letter.raw;
  const requeue = el("button", { class: "small requeue write", text: "Requeue", disabled: !writable() });
  const purge = el("button", { class: "small ghost purge write", text: "Purge", disabled: !writable() });
  requeue.addEventListener("click", () => change(queue, "requeue", { key: letter.key }));
  purge.addEventListener("click", () => {
    if (confirm("Delete this dead letter for good?")) change(queue, "purge", { key: letter.key });
  });
  return el("div", { class: "letter", "data-key": letter.key },
    el("div", { class: "head" },
      el("span", { class: "reason", text: letter.reason }),
      el("span", { class: "meta", text: `attempt ${letter.attempt} · died ${fmtTime(letter.dead_at)}` }),
      el("span", { class: "actions" }, requeue, purge)),
    el("div", { class: "meta mono", text: envelope
      ? `id ${envelope.id} · from ${envelope.sender || "–"} · sent ${fmtTime(envelope.sent_at)}`
      : "undecodable message (raw bytes below)" }),
    el("pre", { text: payload }));
}

async function change(queue, verb, body) {
  try {
    const done = await post(`api/queues/${encodeURIComponent(queue)}/dead/${verb}`, body);
    flash(`${verb === "requeue" ? "Requeued" : "Purged"} ${done[verb + "d"]} dead letter(s) of ${queue}`);
  } catch (error) {
    flash(String(error.message || error), true);
  }
  loadLetters();
}

function flash(text, bad = false) {
  const notice = $("notice");
  notice.textContent = text;
  notice.hidden = false;
  notice.style.color = bad ? "var(--bad)" : "var(--ok)";
  clearTimeout(flash.timer);
  flash.timer = setTimeout(() => {
    notice.style.color = "";
    if (state.session.why) notice.textContent = state.session.why; else notice.hidden = true;
  }, 4000);
}

$("dead-filters").addEventListener("submit", (event) => { event.preventDefault(); loadLetters(); });
$("requeue-all").addEventListener("click", () => {
  if (state.selected && confirm(`Requeue the matching dead letters of ${state.selected}?`))
    change(state.selected, "requeue", filters());
});
$("purge-all").addEventListener("click", () => {
  if (state.selected && confirm(`Delete the matching dead letters of ${state.selected} for good?`))
    change(state.selected, "purge", filters());
});

// -- agents ------------------------------------------------------------------------------

function handlersText(h) {
  const parts = [];
  const add = (label, items) => { if (items.length) parts.push([label, items.join(", ")]); };
  add("receives", (h.receivers || []).flatMap((r) => r.signals));
  add("consumes", (h.consumers || []).map((c) => c.queue + (c.concurrency > 1 ? ` ×${c.concurrency}` : "")));
  add("runs", (h.schedules || []).map((s) => `${s.handler} ${s.when}` +
    (s.single ? " once across replicas" : "") +
    (s.next && s.next.length ? ` (next ${fmtTime(s.next[0])})` : "")));
  return parts;
}

function renderAgents(agents, missing = []) {
  const body = $("agents").tBodies[0];
  body.textContent = "";
  $("agents-empty").hidden = agents.length + missing.length > 0;
  const alive = agents.filter((a) => a.alive).length;
  $("agents-count").textContent = agents.length ? `${alive} alive · ${agents.length - alive} gone` : "";
  const now = Date.now() / 1000;
  for (const a of agents) {
    const handlers = el("td", { class: "handlers" });
    for (const [label, text] of handlersText(a.handlers)) {
      handlers.append(el("div", {}, el("b", { text: label + " " }), text));
    }
    body.append(el("tr", { class: a.alive ? "alive" : "gone", "data-instance": a.instance, "data-agent": a.agent || "" },
      el("td", {}, el("span", { class: "dot" })),
      el("td", {}, el("div", { text: a.agent || "?" }),
        el("div", { class: "dim mono", text: a.instance }),
        el("span", { class: "state", text: a.alive ? "alive" : a.stopped ? "gone (stopped)" : "gone (no heartbeat)" })),
      el("td", { class: "mono", text: `${a.host || "?"} · ${a.pid ?? "?"}` }),
      el("td", { class: "mono", text: ago(a.last_seen) }),
      el("td", { class: "mono", text: a.started_at ? span(now - a.started_at) : "–" }),
      handlers));
  }
  for (const name of missing) {  // classes the console was given, with no instance alive
    body.append(el("tr", { class: "gone missing", "data-missing": name },
      el("td", {}, el("span", { class: "dot" })),
      el("td", {}, el("div", { text: name.split(":").pop() }), el("div", { class: "dim mono", text: name }),
        el("span", { class: "state", text: "not running" })),
      el("td", { class: "mono", text: "–" }), el("td", { class: "mono", text: "–" }),
      el("td", { class: "mono", text: "–" }), el("td", { class: "handlers", text: "" })));
  }
}

// -- signals -----------------------------------------------------------------------------

function renderSignals(signals, elapsed) {
  state.counts = signals.counts; state.calls = signals.calls;
  const chips = $("signal-counts");
  chips.textContent = "";
  const names = [...new Set([...Object.keys(signals.counts), ...Object.keys(signals.calls)])].sort();
  let total = 0;
  for (const name of names) {
    for (const [kind, counts] of [["signal", signals.counts], ["call", signals.calls]]) {
      if (!(name in counts)) continue;
      total += counts[name];
      const key = kind + ":" + name;
      const before = state.previousCounts[key];
      const rate = before === undefined || !elapsed ? null : (counts[name] - before) / elapsed;
      state.previousCounts[key] = counts[name];
      chips.append(el("span", { class: "chip " + kind, "data-signal": name, title: `${kind}s seen since the console started` },
        `${kind === "call" ? "call " : ""}${name}`, el("b", { text: `${counts[name]}` }),
        el("span", { class: "dim", text: rate === null ? "" : ` ${fmtRate(rate)}/s` })));
    }
  }
  $("signals-count").textContent = total ? `${total} seen` : "";
  const flow = $("flow");
  for (const item of signals.new) {
    const payload = JSON.stringify(item.payload);
    flow.prepend(el("li", { class: "fresh" },
      el("span", { class: "dim", text: fmtTime(item.at) }),
      el("span", { class: "kind " + item.kind, text: item.kind }),
      el("span", { text: item.name }),
      el("span", { class: "dim", text: item.sender || "–" }),
      el("span", { class: "payload", text: payload, title: payload })));
  }
  while (flow.children.length > 100) flow.lastChild.remove();
  $("flow-empty").hidden = flow.children.length > 0;
}

// -- jobs --------------------------------------------------------------------------------

function renderJobs(jobs) {
  if (!jobs) return;
  $("jobs-card").hidden = false;
  const chips = $("job-counts");
  chips.textContent = "";
  for (const [name, count] of Object.entries(jobs.counts).sort()) {
    chips.append(el("span", { class: "chip", "data-state": name },
      el("span", { class: "state-" + name, text: name }), el("b", { text: String(count) })));
  }
  if (jobs.error) chips.append(el("span", { class: "error-text", text: jobs.error }));
  const total = Object.values(jobs.counts).reduce((a, b) => a + b, 0);
  $("jobs-count").textContent = total ? `${total} recent` : "";
  const body = $("jobs").tBodies[0];
  body.textContent = "";
  $("jobs-empty").hidden = jobs.recent.length > 0;
  for (const job of jobs.recent.slice(0, 50)) {
    const took = job.finished_at && job.started_at ? `${(job.finished_at - job.started_at).toFixed(2)} s` : "–";
    const out = job.error || (job.result !== null ? JSON.stringify(job.result)
      : job.progress !== null ? `progress ${JSON.stringify(job.progress)}` : "");
    body.append(el("tr", { "data-job": job.id },
      el("td", { class: "mono", text: job.id.slice(0, 12), title: job.id }),
      el("td", { class: "mono", text: job.queue }),
      el("td", { class: "state-" + job.state, text: job.state }),
      el("td", { class: "num", text: String(job.attempt) }),
      el("td", { class: "mono", text: job.created_at ? fmtTime(job.created_at) : "–" }),
      el("td", { class: "num", text: took }),
      el("td", { class: "out mono" + (job.error ? " error-text" : ""), text: out, title: out })));
  }
}

// -- the stream --------------------------------------------------------------------------

function onSnapshot(snapshot) {
  const hive = snapshot.hive;
  $("hive").textContent = `bus ${hive.bus || "(none)"} · broker ${hive.broker}`;
  $("footer").textContent = `sampling every ${hive.every} s` +
    (hive.replay ? "" : " · this broker cannot replay a queue: in/s is not known, out/s is the length's fall") +
    (snapshot.watching.length ? ` · signals watched: ${snapshot.watching.join(", ")}` : "");
  state.queues.clear(); state.order = []; state.charts.stale = true;
  for (const history of snapshot.queues) {
    const q = queueState(history.queue);
    Object.assign(q, { times: history.times, lengths: history.lengths, dead: history.dead,
      sent: history.sent, done: history.done });
  }
  for (const sample of snapshot.latest) queueState(sample.queue).last = sample;
  if (!state.selected && state.order.length) state.selected = state.order[0];
  $("flow").textContent = "";
  renderQueues(); drawCharts(); renderAgents(snapshot.agents, snapshot.missing);
  renderSignals(snapshot.signals, 0);
  renderJobs(snapshot.jobs);
  loadLetters();
  state.lastTick = snapshot.at;
}

function onTick(tick) {
  for (const sample of tick.queues) push(queueState(sample.queue), sample);
  renderQueues(); drawCharts(); renderAgents(tick.agents, tick.missing);
  renderSignals(tick.signals, state.lastTick ? tick.at - state.lastTick : 0);
  if (tick.jobs) renderJobs(tick.jobs);
  state.lastTick = tick.at;
  const selected = state.selected && state.queues.get(state.selected);
  if (selected && selected.last.dead !== state.deadSeen) {
    if (state.deadSeen !== null) loadLetters();
    state.deadSeen = selected.last.dead;
  }
}

function connect() {
  const source = new EventSource("api/events");
  const live = $("live");
  source.addEventListener("open", () => { live.textContent = "live"; live.className = "live on"; });
  source.addEventListener("snapshot", (e) => onSnapshot(JSON.parse(e.data)));
  source.addEventListener("tick", (e) => onTick(JSON.parse(e.data)));
  source.addEventListener("error", async () => {
    live.textContent = "reconnecting…"; live.className = "live off";
    const session = await fetch("api/session", { cache: "no-store" }).then((r) => r.json()).catch(() => null);
    if (session && !session.may_view) location.href = "login";
  });
}

window.addEventListener("resize", () => {
  for (const [key, box] of [["all", "chart-all"], ["one", "chart-one"]]) {
    if (state.charts[key]) state.charts[key].setSize({ width: $(box).clientWidth, height: 220 });
  }
});

loadSession().then((session) => { if (session) connect(); });
