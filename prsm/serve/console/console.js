// The PRSM console: one page, a view per location hash, every figure from the public API
// called with the token the user signed in with (kept in this tab's session storage only).
// Pages are built with DOM calls and textContent, never from HTML strings.

const TOKEN = "prsm-token";
const main = document.getElementById("main");
const flash = document.getElementById("flash");
let me = null; // the signed-in principal: /v1/whoami
let timer = null; // the current view's refresh
let generation = 0; // bumped on each navigation: a stale view's late answer is dropped

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(path, options = {}) {
  const headers = { Authorization: `Bearer ${sessionStorage.getItem(TOKEN)}`, ...options.headers };
  if (options.json !== undefined) {
    headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(options.json);
  }
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401 && !options.signingIn) {
    signOut("Your session ended: sign in again.");
    throw new ApiError(401, "unauthenticated", "not signed in");
  }
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    const error = body.error || {};
    let message = error.message || body.detail || response.statusText;
    if (Array.isArray(message)) message = message.map((d) => `${d.loc?.join(".")}: ${d.msg}`).join("; ");
    throw new ApiError(response.status, error.code || "error", String(message));
  }
  return options.raw ? response : response.json();
}

function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "class") node.className = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const may = (scope) => me !== null && me.scopes.includes(scope);
const isAdmin = () => me !== null && me.roles.includes("admin"); // shared models: admins manage
const badge = (text) => h("span", { class: `badge ${text}` }, text);
const when = (iso) => (iso ? new Date(iso).toLocaleString() : "—");
const num = (x, digits = 1) => (x === null || x === undefined ? "—" : Number(x).toFixed(digits));
const shortId = (id) => id.slice(0, 8);

function table(headers, rows, empty = "Nothing here yet.") {
  if (!rows.length) return h("p", { class: "muted" }, empty);
  return h("table", {},
    h("thead", {}, h("tr", {}, headers.map((x) => h("th", { scope: "col", class: x.num ? "num" : null }, x.label ?? x)))),
    h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((c, i) => h("td", { class: headers[i].num ? "num" : null }, c))))));
}

function say(message, error = false) {
  flash.textContent = message;
  flash.className = error ? "error" : "";
}

// Render a view: loading → ready (the tests and the benchmark wait for data-state="ready").
// With refreshMs, the view is built again after each render ends, unless the tab is hidden,
// the user is typing in one of its fields, or the view called stop() (it has nothing left
// to change). The focused button or link keeps the focus across a refresh.
async function show(view, title, build, refreshMs = 0) {
  const mine = ++generation;
  clearTimeout(timer);
  revokeUrls();
  main.dataset.view = view;
  main.dataset.state = "loading";
  document.title = `${title} · PRSM console`;
  let stopped = false;
  const ctx = { stop: () => { stopped = true; } };
  const render = async (first) => {
    try {
      const content = await build(ctx);
      if (mine !== generation) return;
      const focused = focusedControl();
      main.replaceChildren(h("h1", {}, title), ...[content].flat());
      if (first) say("");
      else refocus(focused);
    } catch (err) {
      if (mine !== generation || err.status === 401) return;
      const text = err.status === 404 ? "Not found." : `${err.message} (${err.code || "error"})`;
      main.replaceChildren(h("h1", {}, title), h("p", { class: "error", role: "alert" }, text));
    }
    main.dataset.state = "ready";
  };
  const tick = async () => {
    if (mine !== generation || stopped) return;
    if (!document.hidden && !editing()) await render(false);
    if (mine === generation && !stopped) timer = setTimeout(tick, refreshMs);
  };
  await render(true);
  if (mine === generation) main.focus({ preventScroll: true });
  if (refreshMs && mine === generation && !stopped) timer = setTimeout(tick, refreshMs);
}

const editing = () => main.contains(document.activeElement) && document.activeElement.matches("input, select, textarea");

function focusedControl() {
  const el = document.activeElement;
  return main.contains(el) && el.matches("a, button") ? [el.tagName, el.textContent] : null;
}

function refocus(control) {
  if (!control) return;
  const [tag, text] = control;
  const again = [...main.querySelectorAll(tag)].find((el) => el.textContent === text);
  again?.focus({ preventScroll: true });
}

// Object URLs of downloads (a result held in the page), released when the view changes.
const urls = [];
function revokeUrls() {
  while (urls.length) URL.revokeObjectURL(urls.pop());
}

async function confirmed(question, action) {
  if (!window.confirm(question)) return;
  try { await action(); } catch (err) { say(err.message, true); }
}

// ---- tasks ----
const STATUSES = ["SUBMITTED", "QUEUED", "SCHEDULED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"];
const TERMINAL = new Set(["SUCCEEDED", "FAILED", "CANCELLED"]);

function tasksView(query) {
  const status = query.get("status") || "";
  const cursor = query.get("cursor") || "";
  return show("tasks", "Tasks", async () => {
    const params = new URLSearchParams({ limit: "50" });
    if (status) params.set("status", status);
    if (cursor) params.set("cursor", cursor);
    const page = await api(`/v1/tasks?${params}`);
    const filter = h("form", { class: "inline", onsubmit: (e) => {
      e.preventDefault();
      const chosen = e.target.elements.status.value;
      location.hash = chosen ? `#/tasks?status=${chosen}` : "#/tasks";
    } },
      h("label", {}, "Status", h("select", { name: "status" }, h("option", { value: "" }, "any"),
        STATUSES.map((s) => h("option", { value: s, selected: s === status }, s)))),
      h("button", { type: "submit", class: "secondary" }, "Filter"));
    const rows = page.tasks.map((t) => [
      h("a", { href: `#/tasks/${t.id}` }, shortId(t.id)), t.type, badge(t.status),
      h("progress", { max: "100", value: String(t.progress), "aria-label": `progress of ${shortId(t.id)}` }),
      `${Math.round(t.progress)} %`, when(t.submitted_at), when(t.updated_at),
    ]);
    const base = status ? `#/tasks?status=${status}&` : "#/tasks?";
    const pager = h("nav", { class: "pager", "aria-label": "Pages" },
      cursor ? h("a", { href: status ? `#/tasks?status=${status}` : "#/tasks" }, "First page") : null,
      page.next_cursor ? h("a", { href: `${base}cursor=${page.next_cursor}` }, "Next page") : null);
    return [filter, table(["Task", "Type", "Status", "Progress", { label: "%", num: true }, "Submitted", "Updated"], rows,
      "No tasks here."), pager];
  }, 2000);
}

function taskView(id, query) {
  const offset = Math.max(0, Number(query.get("offset")) || 0);
  const at = (n) => `#/tasks/${encodeURIComponent(id)}?offset=${n}`;
  let result = null; // fetched once the task has finished
  return show("task", `Task ${shortId(id)}`, async (ctx) => {
    const [task, subs] = await Promise.all([api(`/v1/tasks/${encodeURIComponent(id)}`),
      api(`/v1/tasks/${encodeURIComponent(id)}/subtasks?limit=100&offset=${offset}`)]);
    if (TERMINAL.has(task.status)) ctx.stop(); // nothing about it changes any more
    const out = [];
    out.push(h("dl", { class: "facts" },
      h("dt", {}, "Id"), h("dd", {}, task.id),
      h("dt", {}, "Type"), h("dd", {}, `${task.type} (${task.strategy})`),
      h("dt", {}, "Status"), h("dd", {}, badge(task.status)),
      h("dt", {}, "Progress"), h("dd", {}, h("progress", { max: "100", value: String(task.progress), "aria-label": "progress" }),
        ` ${Math.round(task.progress)} %`),
      h("dt", {}, "Submitted"), h("dd", {}, when(task.submitted_at)),
      h("dt", {}, "Resources"), h("dd", {}, `${task.resources.cpu} CPU, ${task.resources.gpu} GPU, ${task.resources.memory_mb} MiB`),
      task.queue ? [h("dt", {}, "Queue"), h("dd", {}, `position ${task.queue.position}, starts in about ${num(task.queue.estimated_start_s)} s`,
        task.queue.reason ? ` — ${task.queue.reason}` : "")] : null,
      task.error ? [h("dt", {}, "Error"), h("dd", { class: "error" }, task.error)] : null,
      task.skills?.length ? [h("dt", {}, "Skills"), h("dd", {}, task.skills.map((s) => `${s.name} ${s.version} (${s.origin})`).join(", "))] : null));
    if (!TERMINAL.has(task.status) && may("tasks:write")) {
      out.push(h("button", { type: "button", class: "danger", onclick: () => confirmed("Cancel this task?", async () => {
        await api(`/v1/tasks/${task.id}`, { method: "DELETE" });
        say("Cancelled.");
      }) }, "Cancel task"));
    }
    out.push(h("h2", {}, "Where it ran"));
    out.push(table(["Node", "Bundle", { label: "Completed", num: true }, { label: "Failed tries", num: true }],
      (task.ran_on || []).map((p) => [shortId(p.node_id), p.bundle ?? "pooled", p.completed, p.failed]), "No subtask has finished yet."));
    out.push(h("h2", {}, `Subtasks (${subs.total})`));
    out.push(table(["Subtask", "Status", { label: "Tries", num: true }, "Agent", "Node", { label: "Seconds", num: true }, "Error"],
      subs.subtasks.map((s) => [s.key, badge(s.status), s.tries, s.agent_id, shortId(s.node_id || "—"), num(s.seconds, 3), s.error || ""])));
    if (subs.total > 100) {
      out.push(h("nav", { class: "pager", "aria-label": "Subtask pages" },
        offset > 0 ? h("a", { href: at(Math.max(0, offset - 100)) }, "Previous subtasks") : null,
        offset + 100 < subs.total ? h("a", { href: at(offset + 100) }, "Next subtasks") : null));
    }
    if (TERMINAL.has(task.status) && task.status !== "CANCELLED") {
      result ??= await resultSection(task);
      out.push(...result);
    }
    return out;
  }, 2000);
}

async function resultSection(task) {
  let blob;
  try {
    blob = await (await api(`/v1/tasks/${task.id}/result`, { raw: true })).blob();
  } catch (err) {
    return [h("h2", {}, "Result"), h("p", { class: "error", role: "alert" }, `The result could not be read: ${err.message}`)];
  }
  const text = await blob.slice(0, 65536).text();
  let shown = text;
  if (blob.size <= 65536) {
    try { shown = JSON.stringify(JSON.parse(text), null, 2); } catch { /* shown as it came */ }
  }
  const url = URL.createObjectURL(blob);
  urls.push(url);
  const download = h("a", { href: url, download: `${task.id}.json` }, `Download result (${blob.size} bytes)`);
  return [h("h2", {}, "Result"), download, h("pre", { id: "result", tabindex: "0" }, shown,
    blob.size > 65536 ? "\n… (the first 64 KiB; download for all of it)" : "")];
}

const EXAMPLES = {
  map: { skill: "math.square", items: [1, 2, 3, 4, 5] },
  map_reduce: { skill: "math.square", items: [1, 2, 3, 4, 5], reduce: "reduce.sum" },
  pipeline: { stages: ["text.clean", "text.tokens", "text.count"], items: ["  Hello ray  ", "one two three"] },
  sweep: { skill: "sim.logistic", grid: { r: [0.5, 1, 2], K: [100], y0: [1], t_end: [10] }, metric: "final" },
  prompt: { model: "prsm-tiny", prompts: ["Say hello."], max_tokens: 16 },
};

function submitView() {
  return show("submit", "Submit a task", async () => {
    const skills = await api("/v1/skills");
    const params = h("textarea", { name: "params", id: "params", spellcheck: "false" }, JSON.stringify(EXAMPLES.map, null, 2));
    const type = h("select", { name: "type", id: "type", onchange: () => { params.value = JSON.stringify(EXAMPLES[type.value], null, 2); } },
      Object.keys(EXAMPLES).map((t) => h("option", { value: t }, t)));
    const error = h("p", { class: "error", role: "alert" });
    const form = h("form", { class: "stack", onsubmit: async (e) => {
      e.preventDefault();
      error.textContent = "";
      let parsed;
      try { parsed = JSON.parse(params.value); } catch (err) { error.textContent = `Params are not JSON: ${err.message}`; return; }
      const f = e.target.elements;
      const body = { type: type.value, params: parsed, priority: Number(f.priority.value),
        resources: { cpu: Number(f.cpu.value), gpu: 0, memory_mb: Number(f.memory.value) } };
      try {
        const task = await api("/v1/tasks", { method: "POST", json: body });
        location.hash = `#/tasks/${task.id}`;
      } catch (err) { error.textContent = err.message; }
    } },
      h("label", {}, "Type", type),
      h("label", {}, "Params (JSON)", params),
      h("label", {}, "Priority", h("input", { name: "priority", type: "number", value: "0", min: "-100", max: "100" })),
      h("label", {}, "CPU", h("input", { name: "cpu", type: "number", value: "1", min: "0", step: "0.5" })),
      h("label", {}, "Memory (MiB)", h("input", { name: "memory", type: "number", value: "512", min: "0" })),
      error, h("button", { type: "submit" }, "Submit"));
    const list = table(["Skill", "Kind", "Capability", "Origin"],
      skills.skills.map((s) => [s.name, s.kind, s.capability, s.origin]));
    return [form, h("h2", {}, "Skills you can name"), list];
  });
}

// ---- models ----
function modelsView() {
  return show("models", "Models", async () => {
    const { deployments } = await api("/v1/deployments");
    const live = deployments.filter((d) => d.status !== "UNDEPLOYED");
    const traffic = await Promise.all(live.map((d) =>
      api(`/v1/deployments/${d.name}/${d.version}/traffic?window_s=60`).catch(() => null)));
    const rows = live.map((d, i) => {
      const t = traffic[i];
      const manage = may("models:write") && (!d.shared || isAdmin()) && d.status !== "UNDEPLOYING";
      return [d.id, badge(d.status), d.healthy ? "healthy" : "unhealthy", d.replicas, d.shared ? "shared" : "tenant",
        t ? num(t.requests_per_s, 2) : "—", t ? `${num(100 * t.error_rate, 1)} %` : "—", t ? num(t.ttft_p50_ms, 0) : "—",
        t ? num(t.tokens_per_s, 1) : "—",
        manage ? h("button", { type: "button", class: "secondary", onclick: () => confirmed(`Undeploy ${d.id}?`, async () => {
          await api(`/v1/deployments/${d.name}/${d.version}`, { method: "DELETE" });
          say(`Undeploying ${d.id}.`);
        }) }, `Undeploy ${d.id}`) : ""];
    });
    const out = [h("p", { class: "muted" }, "Traffic over the last minute, from every gateway replica."),
      table(["Version", "Status", "Health", { label: "Replicas", num: true }, "Owner", { label: "Requests/s", num: true },
        { label: "Errors", num: true }, { label: "TTFT p50 ms", num: true }, { label: "Tokens/s", num: true }, ""], rows, "No models deployed.")];
    if (may("models:write")) {
      const error = h("p", { class: "error", role: "alert" });
      out.push(h("h2", {}, "Deploy a model version"), h("form", { class: "inline", onsubmit: async (e) => {
        e.preventDefault();
        const f = e.target.elements;
        try {
          await api("/v1/deployments", { method: "POST", json: { name: f.name.value, version: f.version.value, source: f.source.value } });
          say(`Deploying ${f.name.value}:${f.version.value}.`);
          route();
        } catch (err) { error.textContent = err.message; }
      } },
        h("label", {}, "Name", h("input", { name: "name", required: true })),
        h("label", {}, "Version", h("input", { name: "version", required: true })),
        h("label", {}, "Source (weights)", h("input", { name: "source", required: true, size: "40" })),
        h("button", { type: "submit" }, "Deploy")), error);
    }
    return out;
  }, 5000);
}

// ---- rollouts ----
function rolloutsView() {
  return show("rollouts", "Rollouts", async () => {
    const { rollouts } = await api("/v1/rollouts");
    const out = [table(["Rollout", "Model", "From → to", "Status", { label: "New version %", num: true }, "Started"],
      rollouts.map((r) => [h("a", { href: `#/rollouts/${r.id}` }, r.id), r.model, `${r.current_version} → ${r.new_version}`,
        badge(r.status), num(r.percent, 1), when(r.started_at)]), "No rollouts yet.")];
    if (may("rollouts:write")) {
      const error = h("p", { class: "error", role: "alert" });
      const policy = h("fieldset", {}, h("legend", {}, "Policy (blank: the platform's default)"),
        POLICY_FIELDS.map(([name, label]) => h("label", {}, label, h("input", { name, type: "number", step: "any", min: "0", size: "6" }))));
      out.push(h("h2", {}, "Start a rollout"), h("form", { class: "inline", onsubmit: async (e) => {
        e.preventDefault();
        const f = e.target.elements;
        const body = { model: f.model.value, version: f.version.value, policy: {} };
        if (f.source.value) body.source = f.source.value;
        for (const [name] of POLICY_FIELDS) if (f[name].value !== "") body.policy[name] = Number(f[name].value);
        try {
          const r = await api("/v1/rollouts", { method: "POST", json: body });
          location.hash = `#/rollouts/${r.id}`;
        } catch (err) { error.textContent = err.message; }
      } },
        h("label", {}, "Model", h("input", { name: "model", required: true })),
        h("label", {}, "New version", h("input", { name: "version", required: true })),
        h("label", {}, "Source (default: the current version's)", h("input", { name: "source", size: "30" })),
        policy,
        h("button", { type: "submit" }, "Start rollout")), error);
    }
    return out;
  }, 3000);
}

const POLICY_FIELDS = [["initial_percent", "First share %"], ["evaluation_interval_s", "Evaluate every (s)"],
  ["min_window_s", "Min window (s)"], ["min_samples", "Min requests"], ["min_success_rate", "Min success rate (0–1)"], ["max_latency_ratio", "Max latency ratio"]];

// The new version's share of traffic over time: a step line from the start to now.
function splitChart(r) {
  const points = [[Date.parse(r.started_at), r.policy.initial_percent]];
  for (const d of r.history) if (d.percent !== null) points.push([Date.parse(d.at), d.percent]);
  const end = r.status === "IN_PROGRESS" ? Date.now() : Date.parse(r.history.at(-1)?.at || r.started_at);
  points.push([Math.max(end, points.at(-1)[0]), points.at(-1)[1]]);
  const [w, hgt, pad] = [640, 200, 36];
  const t0 = points[0][0];
  const span = Math.max(1, points.at(-1)[0] - t0);
  const x = (t) => pad + ((t - t0) / span) * (w - 2 * pad);
  const y = (p) => hgt - pad + (-p / 100) * (hgt - 2 * pad);
  let path = `M${x(points[0][0])},${y(points[0][1])}`;
  for (let i = 1; i < points.length; i++) path += ` H${x(points[i][0])} V${y(points[i][1])}`;
  const ns = "http://www.w3.org/2000/svg";
  const el = (tag, attrs, text) => {
    const node = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text) node.textContent = text;
    return node;
  };
  const svg = el("svg", { class: "chart", viewBox: `0 0 ${w} ${hgt}`, width: String(w), height: String(hgt), role: "img",
    "aria-label": `Traffic to ${r.new_version} over time, now ${r.percent} percent` });
  for (const p of [0, 50, 100]) {
    svg.append(el("line", { x1: pad, x2: w - pad, y1: y(p), y2: y(p), stroke: "#d8dde3" }));
    svg.append(el("text", { x: 4, y: y(p) + 4, "font-size": "11", fill: "#5b6470" }, `${p}%`));
  }
  svg.append(el("path", { d: path, fill: "none", stroke: "#0b5cad", "stroke-width": "2.5" }));
  svg.append(el("text", { x: pad, y: hgt - 8, "font-size": "11", fill: "#5b6470" }, new Date(t0).toLocaleTimeString()));
  svg.append(el("text", { x: w - pad, y: hgt - 8, "font-size": "11", fill: "#5b6470", "text-anchor": "end" },
    new Date(points.at(-1)[0]).toLocaleTimeString()));
  return svg;
}

function rolloutView(id) {
  return show("rollout", `Rollout ${id}`, async () => {
    const r = await api(`/v1/rollouts/${encodeURIComponent(id)}`);
    const out = [h("dl", { class: "facts" },
      h("dt", {}, "Model"), h("dd", {}, r.model),
      h("dt", {}, "Versions"), h("dd", {}, `${r.current_version} → ${r.new_version}`),
      h("dt", {}, "Status"), h("dd", {}, badge(r.status)),
      h("dt", {}, "Traffic"), h("dd", { id: "traffic" }, Object.entries(r.traffic).map(([v, p]) => `${v}: ${p} %`).join(", ")),
      h("dt", {}, "Next evaluation"), h("dd", {}, when(r.next_evaluation_at)),
      h("dt", {}, "Started by"), h("dd", {}, `${r.started_by}, ${when(r.started_at)}`))];
    if (r.status === "IN_PROGRESS" && may("rollouts:write") && (r.owned_by !== "prsm" || isAdmin())) {
      const act = async (verb) => {
        await api(`/v1/rollouts/${r.id}/${verb}`, { method: "POST" });
        say(`Rollout ${verb === "promote" ? "promoted" : "aborted"}.`);
        route();
      };
      out.push(h("div", { class: "pager" },
        h("button", { type: "button", onclick: () => act("promote").catch((err) => say(err.message, true)) }, "Promote"),
        h("button", { type: "button", class: "danger", onclick: () => confirmed("Abort this rollout? Its traffic goes back.", () => act("abort")) }, "Abort")));
    }
    out.push(h("h2", {}, "Traffic to the new version"), splitChart(r));
    if (Object.keys(r.window).length) {
      out.push(h("h2", {}, "This step's figures"), table(["Version", { label: "Requests", num: true }, { label: "Errors", num: true },
        { label: "Success", num: true }, { label: "p95 ms", num: true }],
      Object.entries(r.window).map(([v, s]) => [v, s.requests, s.errors, `${num(100 * s.success_rate, 1)} %`, num(s.p95_ms, 0)])));
    }
    out.push(h("h2", {}, "Decisions, newest first"), table(["At", "Decision", { label: "%", num: true }, "Reason", "Figures"],
      r.history.slice().reverse().map((d) => [when(d.at), d.decision, num(d.percent, 1), d.reason || "", figures(d.figures)]), "No decision yet."));
    return out;
  }, 2000);
}

// A decision's figures: each version's requests, errors and p95 latency; else as they came.
function figures(f) {
  if (!f.current && !f.candidate) return Object.keys(f).length ? JSON.stringify(f) : "";
  const one = (name, s) => (s ? `${name}: ${s.requests} req, ${s.errors} err, p95 ${num(s.p95_ms, 0)} ms` : null);
  return [one("current", f.current), one("candidate", f.candidate)].filter(Boolean).join("; ");
}

// ---- cluster ----
const fmtResource = (key, value) => (key === "memory" || key.endsWith("memory") ? `${num(value / 2 ** 30, 1)} GiB` : num(value, 1));

function clusterView() {
  return show("cluster", "Cluster", async () => {
    const [cluster, agents] = await Promise.all([api("/v1/cluster"), api("/v1/agents")]);
    const keys = Object.keys(cluster.total).filter((k) => ["CPU", "GPU", "memory"].includes(k));
    const host = location.hostname;
    const links = h("p", {},
      cluster.dashboard_port ? h("a", { href: `${location.protocol}//${host}:${cluster.dashboard_port}`, target: "_blank", rel: "noopener" }, "Ray dashboard") : null,
      cluster.grafana_url ? [" · ", h("a", { href: cluster.grafana_url, target: "_blank", rel: "noopener" }, "Grafana")] : null);
    const cards = h("div", { class: "cards" },
      keys.map((k) => h("div", { class: "card" }, h("strong", {}, k), h("div", {}, `${fmtResource(k, cluster.free[k] ?? 0)} free of ${fmtResource(k, cluster.total[k])}`))),
      h("div", { class: "card" }, h("strong", {}, "Queue"), h("div", {}, `${cluster.queued} queued, ${cluster.allocations} allocations`)));
    const nodes = table(["Node", "Zone", ...keys.map((k) => ({ label: `${k} free / total`, num: true })), { label: "Allocations", num: true }],
      cluster.nodes.map((n) => [shortId(n.node_id), n.zone || "—", ...keys.map((k) => `${fmtResource(k, n.free[k] ?? 0)} / ${fmtResource(k, n.total[k] ?? 0)}`), n.allocations]));
    const agentRows = table(["Agent", "Type", "Status", { label: "Load", num: true }, { label: "Running", num: true }, { label: "Done", num: true }, "Node"],
      agents.agents.map((a) => [a.id, a.type, badge(a.status), `${num(100 * a.load, 0)} %`, a.running, a.done, shortId(a.node_id || "—")]), "No agents.");
    return [links, cards, h("h2", {}, "Nodes"), nodes, h("h2", {}, "Agents"), agentRows];
  }, 3000);
}

// ---- audit ----
function auditView(query) {
  return show("audit", "Audit", async () => {
    const params = new URLSearchParams({ limit: "100" });
    for (const key of ["user_id", "tenant_id", "allowed", "route"]) if (query.get(key)) params.set(key, query.get(key));
    const { entries } = await api(`/v1/audit?${params}`);
    const filter = h("form", { class: "inline", onsubmit: (e) => {
      e.preventDefault();
      const chosen = new URLSearchParams();
      for (const el of e.target.elements) if (el.name && el.value) chosen.set(el.name, el.value);
      location.hash = `#/audit?${chosen}`;
    } },
      h("label", {}, "User", h("input", { name: "user_id", value: query.get("user_id") || "" })),
      h("label", {}, "Tenant", h("input", { name: "tenant_id", value: query.get("tenant_id") || "" })),
      h("label", {}, "Decision", h("select", { name: "allowed" }, h("option", { value: "" }, "any"),
        h("option", { value: "true", selected: query.get("allowed") === "true" }, "allowed"),
        h("option", { value: "false", selected: query.get("allowed") === "false" }, "denied"))),
      h("label", {}, "Route", h("input", { name: "route", value: query.get("route") || "" })),
      h("button", { type: "submit", class: "secondary" }, "Filter"));
    return [filter, table(["At", "Decision", "Stage", "Method", "Route", "Scope", "User", "Tenant", "Reason"],
      entries.map((e) => [when(e.at), badge(e.allowed ? "allow" : "deny"), e.stage, e.method, e.route, e.scope, e.user_id || "—", e.tenant_id || "—", e.reason]),
      "No entries match.")];
  });
}

// ---- sign in, navigation ----
function signInView(message = "") {
  clearTimeout(timer);
  generation++;
  document.getElementById("nav").hidden = true;
  document.getElementById("signout").hidden = true;
  document.getElementById("who").textContent = "";
  const error = h("p", { class: "error", role: "alert" }, message);
  main.dataset.view = "signin";
  main.replaceChildren(h("h1", {}, "Sign in"), h("form", { class: "stack", id: "signin", onsubmit: async (e) => {
    e.preventDefault();
    sessionStorage.setItem(TOKEN, e.target.elements.token.value.trim());
    try {
      await loadMe(true);
      route();
    } catch (err) {
      sessionStorage.removeItem(TOKEN);
      error.textContent = err.status === 401 ? "That token or key was not accepted." : err.message;
    }
  } },
    h("p", { class: "muted" }, "With a PRSM token (`prsm token`) or an API key. It stays in this tab only."),
    h("label", {}, "Token or API key", h("input", { name: "token", id: "token", type: "password", autocomplete: "off", required: true })),
    error, h("button", { type: "submit" }, "Sign in")));
  main.dataset.state = "ready";
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN);
  me = null;
  signInView(message);
}

async function loadMe(signingIn = false) {
  me = await api("/v1/whoami", { signingIn });
  document.getElementById("who").textContent = `${me.user_id} · ${me.tenant_id} · ${me.roles.join(", ")}`;
  for (const link of document.querySelectorAll("#nav a[data-scope]")) link.hidden = !may(link.dataset.scope);
  document.getElementById("nav").hidden = false;
  document.getElementById("signout").hidden = false;
}

function route() {
  if (!sessionStorage.getItem(TOKEN)) return signInView();
  if (me === null) return loadMe().then(route, (err) => err.status !== 401 && signInView(`Could not sign in: ${err.message}`));
  if (location.hash && !location.hash.startsWith("#/")) return; // an in-page link (skip link)
  const [path, search] = (location.hash.slice(1) || "/tasks").split("?");
  const query = new URLSearchParams(search || "");
  const [, section, raw] = path.split("/");
  let id = raw;
  try { id = raw && decodeURIComponent(raw); } catch { /* shown as typed: the API says not found */ }
  for (const link of document.querySelectorAll("#nav a")) {
    link.toggleAttribute("aria-current", link.getAttribute("href") === `#/${section}`);
    if (link.hasAttribute("aria-current")) link.setAttribute("aria-current", "page");
  }
  if (section === "tasks") return id ? taskView(id, query) : tasksView(query);
  if (section === "submit") return submitView();
  if (section === "models") return modelsView();
  if (section === "rollouts") return id ? rolloutView(id) : rolloutsView();
  if (section === "cluster") return clusterView();
  if (section === "audit") return auditView(query);
  return show("missing", "Not found", async () => h("p", {}, "No such page."));
}

document.getElementById("signout").addEventListener("click", () => signOut("Signed out."));
window.addEventListener("hashchange", route);
route();
