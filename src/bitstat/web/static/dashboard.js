/* bitstat dashboard: one view of a namespace, drawn from GET v1/dashboard (or, in a static
   report, from the same answer inlined as window.BITSTAT_REPORT). The view's choices live in
   the URL hash, so a view can be bookmarked and shared. */
(function () {
  "use strict";

  const REPORT = window.BITSTAT_REPORT || null;
  const $ = (id) => document.getElementById(id);
  const whole = new Intl.NumberFormat("en-US");
  const decimal = new Intl.NumberFormat("en-US", { maximumFractionDigits: 2 });
  const COLORS = ["#2563eb", "#0891b2", "#7c3aed", "#db2777", "#ea580c", "#16a34a", "#ca8a04", "#475569"];
  const LIFECYCLE = [
    ["new", "New", "#16a34a"],
    ["returning", "Returning", "#2563eb"],
    ["resurrecting", "Resurrecting", "#f59e0b"],
    ["dormant", "Dormant", "#94a3b8"],
  ];
  const ADJECTIVE = { hour: "hourly", day: "daily", week: "weekly", month: "monthly", year: "yearly" };
  const KEYS = ["namespace", "event", "start", "end", "period", "count", "top", "sum", "steps", "within"];
  const charts = {};
  let state = readHash();
  let token = safeStorage("get", "bitstat.readToken") || "";
  let timer = null;
  let refreshSeconds = 10;
  let loading = null;
  let renders = 0;

  Chart.defaults.animation = false;
  Chart.defaults.font.family = getComputedStyle(document.documentElement).fontFamily;
  Chart.defaults.font.size = 12;
  Chart.defaults.color = "#475569";
  Chart.defaults.plugins.legend.labels.boxWidth = 12;
  Chart.defaults.maintainAspectRatio = false;

  function safeStorage(op, key, value) {
    try {
      if (op === "get") return window.localStorage.getItem(key);
      window.localStorage.setItem(key, value);
    } catch (e) {
      return null;
    }
    return null;
  }

  // --- state <-> URL hash

  function readHash() {
    const p = new URLSearchParams(location.hash.slice(1));
    const s = {};
    for (const k of KEYS) if (p.get(k)) s[k] = p.get(k);
    return s;
  }

  function writeHash() {
    const p = new URLSearchParams();
    for (const k of KEYS) if (state[k]) p.set(k, state[k]);
    const text = "#" + p.toString();
    if (location.hash !== text) history.replaceState(null, "", text);
  }

  function change(updates) {
    Object.assign(state, updates);
    for (const k of Object.keys(state)) if (!state[k]) delete state[k];
    writeHash();
    load();
  }

  // --- the server

  async function api(path, params) {
    const url = "v1/" + path + (params ? "?" + params.toString() : "");
    const headers = token ? { Authorization: "Bearer " + token } : {};
    const answer = await fetch(url, { headers, cache: "no-store" });
    const body = await answer.json().catch(() => ({ error: answer.statusText }));
    if (answer.status === 401) {
      askToken();
      throw new Error(body.error || "a read token is needed");
    }
    if (!answer.ok) {
      const err = new Error(body.error || answer.statusText);
      err.parameter = body.parameter;
      throw err;
    }
    return body;
  }

  function dashboardParams() {
    const p = new URLSearchParams();
    for (const k of ["namespace", "event", "start", "end", "period", "count", "top", "sum", "within"]) {
      if (state[k]) p.set(k, state[k]);
    }
    for (const step of (state.steps || "").split(",").map((s) => s.trim()).filter(Boolean)) {
      p.append("step", step);
    }
    return p;
  }

  async function load() {
    if (REPORT) return show(REPORT.data);
    const mine = (loading = dashboardParams().toString());
    try {
      const data = await api("dashboard", dashboardParams());
      if (mine !== loading) return; // a newer view was asked for meanwhile
      message(null);
      show(data);
    } catch (err) {
      if (mine !== loading) return;
      message(err.message + (err.parameter ? " (" + err.parameter + ")" : ""));
      if (err.parameter && state[err.parameter === "step" ? "steps" : err.parameter]) {
        document.body.dataset.badParameter = err.parameter;
      }
    }
  }

  function message(text) {
    $("message").hidden = !text;
    $("message").textContent = text || "";
  }

  // --- drawing

  function label(value) {
    return Array.isArray(value) ? value.join(" · ") : String(value);
  }

  function fill(select, values, chosen, blank) {
    const opts = (blank ? [["", blank]] : []).concat(values.map((v) => [v, v]));
    const same =
      select.options.length === opts.length &&
      opts.every(([v], i) => select.options[i].value === v);
    if (!same) {
      select.replaceChildren(...opts.map(([v, text]) => new Option(text, v)));
    }
    select.value = chosen == null ? "" : chosen;
    select.disabled = values.length === 0;
  }

  function chart(id, config) {
    const old = charts[id];
    if (old && old.config.type === config.type) {
      old.data.labels = config.data.labels;
      old.data.datasets.forEach((ds, i) => Object.assign(ds, config.data.datasets[i]));
      if (old.data.datasets.length !== config.data.datasets.length) {
        old.data.datasets = config.data.datasets;
      }
      old.options = config.options;
      old.update("none");
      return old;
    }
    if (old) old.destroy();
    charts[id] = new Chart($(id), config);
    return charts[id];
  }

  function empty(name, text) {
    const p = $("empty-" + name);
    if (!p) return;
    p.hidden = !text;
    p.textContent = text || "";
  }

  function axisOptions(horizontal, extra) {
    const value = { beginAtZero: true, ticks: { precision: 0 }, grid: { color: "#eef2f7" } };
    const category = { grid: { display: false }, ticks: { autoSkip: true, maxRotation: 0 } };
    return Object.assign(
      {
        indexAxis: horizontal ? "y" : "x",
        plugins: { legend: { display: false } },
        scales: horizontal ? { x: value, y: category } : { x: category, y: value },
      },
      extra || {}
    );
  }

  function line(id, title, rows, color) {
    chart(id, {
      type: "line",
      data: {
        labels: rows.map((r) => r.period),
        datasets: [
          {
            label: title,
            data: rows.map((r) => r.value),
            borderColor: color,
            backgroundColor: color + "22",
            fill: true,
            tension: 0.25,
            pointRadius: rows.length > 60 ? 0 : 2,
            borderWidth: 2,
          },
        ],
      },
      options: axisOptions(false),
    });
  }

  function bars(id, name, rows, column, horizontal, color) {
    const part = rows || [];
    chart(id, {
      type: "bar",
      data: {
        labels: part.map((r) => label(r.value)),
        datasets: [{ label: column, data: part.map((r) => r[column]), backgroundColor: color, borderRadius: 3 }],
      },
      options: axisOptions(horizontal),
    });
    empty(name, part.length ? null : "no data in this range");
  }

  function section(part, name) {
    // a part of the answer: null (nothing configured), {error}, or data
    if (!part) {
      empty(name, "nothing recorded for this event");
      return null;
    }
    if (part.error) {
      empty(name, part.error);
      return null;
    }
    return part;
  }

  function show(d) {
    renders += 1;
    window.bitstat = { data: d, charts, renders };
    const rules = d.rules || { count: [], sum: [], top: [], unique: [] };
    $("namespace").value = d.namespace;
    fill($("event"), d.events, d.event);
    $("start").value = /^\d{4}-\d{2}-\d{2}$/.test(d.start) ? d.start : "";
    $("end").value = /^\d{4}-\d{2}-\d{2}$/.test(d.end) ? d.end : "";
    fill($("period"), d.periods, REPORT ? d.period : state.period || "", "auto (" + d.period + ")");
    fill($("count-prop"), rules.count, d.counts && d.counts.prop);
    fill($("top-prop"), rules.top, d.top && d.top.prop);
    fill($("sum-rule"), rules.sum, d.sums && d.sums.rule);
    if (document.activeElement !== $("steps")) $("steps").value = d.funnel ? d.funnel.steps.join(", ") : "";
    if (document.activeElement !== $("within")) $("within").value = d.funnel ? d.funnel.within : state.within || "7d";
    const where = d.start === d.end ? d.start : d.start + " – " + d.end;
    $("updated").textContent = "updated " + d.generated.slice(11, 19);
    document.title = "bitstat · " + d.namespace + (d.event ? " · " + d.event : "");
    if (!d.event) {
      message("No events recorded in namespace “" + d.namespace + "” yet.");
      document.body.dataset.ready = String(renders);
      return;
    }

    const num = (part, key) => (part && !part.error ? part[key] : null);
    const unique = num(d.unique, "unique");
    const total = num(d.total, "total");
    $("kpi-unique").textContent = unique == null ? "–" : whole.format(unique);
    $("kpi-total").textContent = total == null ? "–" : whole.format(total);
    $("kpi-ratio").textContent = unique ? decimal.format(total / unique) : "–";
    $("kpi-distinct-label").textContent = d.distinct ? "Distinct " + d.distinct.prop : "Distinct values";
    $("kpi-distinct").textContent = d.distinct && !d.distinct.error ? whole.format(d.distinct.distinct) : "–";
    const sums = d.sums && !d.sums.error ? d.sums : null;
    const sumTotal = sums ? ("sum" in sums ? sums.sum : sums.sums.reduce((a, r) => a + r.sum, 0)) : null;
    $("kpi-sum-label").textContent = sums ? "Sum of " + sums.rule.split(" by ")[0] : "Sum";
    $("kpi-sum").textContent = sumTotal == null ? "–" : decimal.format(sumTotal);

    const per = d.period;
    $("title-unique").innerHTML = "Unique actors per " + per + ' <span class="sub">' + where + "</span>";
    $("title-total").innerHTML = "Events per " + per + ' <span class="sub">' + where + "</span>";
    const su = section(d.series_unique, "unique");
    line("chart-unique", "unique actors", su ? su.series : [], COLORS[0]);
    const st = section(d.series_total, "total");
    line("chart-total", "events", st ? st.series : [], COLORS[1]);

    const counts = section(d.counts, "counts");
    bars("chart-counts", "counts", counts ? counts.counts.slice(0, 12) : [], "count", true, COLORS[2]);
    if (!counts) section(d.counts, "counts");
    const top = section(d.top, "top");
    bars("chart-top", "top", top ? top.top : [], "count", true, COLORS[3]);
    if (!top) section(d.top, "top");
    showSums(d.sums);
    showFunnel(d.funnel);
    showRetention(d.retention, d.event);
    showLifecycle(d.lifecycle);
    document.body.dataset.ready = String(renders);
  }

  function showSums(part) {
    const s = section(part, "sums");
    if (s && "sums" in s) {
      bars("chart-sums", "sums", s.sums.slice(0, 12), "sum", true, COLORS[4]);
    } else {
      bars("chart-sums", "sums", [], "sum", false, COLORS[4]);
      if (s) empty("sums", "total: " + decimal.format(s.sum) + " (add a `sum … by` rule for a breakdown)");
      else section(part, "sums");
    }
  }

  function showFunnel(part) {
    const f = section(part, "funnel");
    const rows = f ? f.funnel : [];
    const first = rows.length ? rows[0].actors : 0;
    chart("chart-funnel", {
      type: "bar",
      data: {
        labels: rows.map((r) => r.step + (first ? "  " + Math.round((100 * r.actors) / first) + "%" : "")),
        datasets: [{ label: "actors", data: rows.map((r) => r.actors), backgroundColor: COLORS[5], borderRadius: 3 }],
      },
      options: axisOptions(true),
    });
    if (!f) section(part, "funnel");
    else empty("funnel", rows.length ? null : "no steps");
  }

  function heat(rate) {
    const r = Math.min(Math.max(rate, 0), 1);
    const rgb = [37, 99, 235].map((c) => Math.round(255 + (c - 255) * r));
    return "background:rgb(" + rgb.join(",") + ");color:" + (r > 0.5 ? "#fff" : "#1a202c");
  }

  function showRetention(part, event) {
    const box = $("retention");
    if (!part || part.error) {
      box.innerHTML = '<p class="muted">' + (part ? escapeHtml(part.error) : "no periods in this range") + "</p>";
      return;
    }
    $("title-retention").innerHTML =
      "Retention <span class=\"sub\">" + escapeHtml(event) + " again, " + ADJECTIVE[part.period] + " cohorts of first-time actors</span>";
    const width = part.rows.length ? part.rows[0].counts.length : 0;
    let html = "<table><thead><tr><th>cohort</th><th>actors</th>";
    for (let k = 0; k < width; k++) html += "<th>" + (k === 0 ? part.period + " 0" : "+" + k) + "</th>";
    html += "</tr></thead><tbody>";
    for (const row of part.rows) {
      html += '<tr><td class="cohort">' + escapeHtml(row.cohort) + '</td><td class="size">' + whole.format(row.size) + "</td>";
      row.counts.forEach((c, k) => {
        const rate = row.rates[k];
        if (c == null) html += '<td class="none"></td>';
        else
          html +=
            '<td data-count="' + c + '" style="' + heat(rate || 0) + '" title="' + whole.format(c) + " of " +
            whole.format(row.size) + '">' + (rate == null ? "–" : (100 * rate).toFixed(rate >= 0.1 || rate === 0 ? 0 : 1) + "%") + "</td>";
      });
      html += "</tr>";
    }
    box.innerHTML = html + "</tbody></table>";
  }

  function showLifecycle(part) {
    const l = section(part, "lifecycle");
    const rows = l ? l.lifecycle : [];
    chart("chart-lifecycle", {
      type: "bar",
      data: {
        labels: rows.map((r) => r.period),
        datasets: LIFECYCLE.map(([key, name, color]) => ({
          label: name,
          data: rows.map((r) => (r[key] == null ? null : key === "dormant" ? -r[key] : r[key])),
          backgroundColor: color,
          stack: "actors",
        })),
      },
      options: {
        plugins: {
          legend: { display: true, position: "top", align: "end" },
          tooltip: { callbacks: { label: (c) => c.dataset.label + ": " + whole.format(Math.abs(c.raw)) } },
        },
        scales: {
          x: { stacked: true, grid: { display: false } },
          y: { stacked: true, ticks: { precision: 0, callback: (v) => whole.format(Math.abs(v)) }, grid: { color: "#eef2f7" } },
        },
      },
    });
    if (!l) section(part, "lifecycle");
    else empty("lifecycle", rows.length ? null : "no periods in this range");
  }

  function escapeHtml(text) {
    return String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  }

  // --- controls

  function askToken() {
    $("token-button").hidden = false;
    const dialog = $("token-dialog");
    if (!dialog.open) dialog.showModal();
  }

  function wire() {
    $("namespace").addEventListener("change", (e) =>
      change({ namespace: e.target.value.trim(), event: "", start: "", end: "", count: "", top: "", sum: "", steps: "" })
    );
    $("event").addEventListener("change", (e) => change({ event: e.target.value, count: "", top: "", sum: "" }));
    $("start").addEventListener("change", (e) => change({ start: e.target.value }));
    $("end").addEventListener("change", (e) => change({ end: e.target.value }));
    $("period").addEventListener("change", (e) => change({ period: e.target.value }));
    $("count-prop").addEventListener("change", (e) => change({ count: e.target.value }));
    $("top-prop").addEventListener("change", (e) => change({ top: e.target.value }));
    $("sum-rule").addEventListener("change", (e) => change({ sum: e.target.value }));
    $("steps").addEventListener("change", (e) => change({ steps: e.target.value }));
    $("within").addEventListener("change", (e) => change({ within: e.target.value.trim() }));
    $("controls").addEventListener("submit", (e) => e.preventDefault());
    $("presets").addEventListener("click", async (e) => {
      const days = e.target.dataset && e.target.dataset.days;
      if (!days) return;
      const d = window.bitstat && window.bitstat.data;
      if (!d || !d.event) return;
      const span = await api("span", new URLSearchParams({ namespace: d.namespace, event: d.event }));
      const end = span.last || d.end;
      if (days === "all") return change({ start: span.first || end, end, period: "" });
      const start = new Date(end + "T00:00:00Z");
      start.setUTCDate(start.getUTCDate() - Number(days) + 1);
      change({ start: start.toISOString().slice(0, 10), end, period: "" });
    });
    $("live").addEventListener("change", schedule);
    $("token-button").addEventListener("click", askToken);
    $("token-dialog").addEventListener("close", () => {
      if ($("token-dialog").returnValue !== "ok") return;
      token = $("token-input").value.trim();
      safeStorage("set", "bitstat.readToken", token);
      start();
    });
    window.addEventListener("hashchange", () => {
      state = readHash();
      load();
    });
    document.addEventListener("visibilitychange", schedule);
  }

  function schedule() {
    if (timer) clearInterval(timer);
    timer = null;
    if ($("live").checked && refreshSeconds > 0 && !document.hidden) {
      timer = setInterval(load, refreshSeconds * 1000);
    }
  }

  async function start() {
    try {
      const info = await api("namespaces");
      refreshSeconds = info.refresh_seconds;
      $("namespaces").replaceChildren(...info.namespaces.map((n) => new Option(n)));
    } catch (err) {
      message(err.message);
      return;
    }
    await load();
    schedule();
  }

  if (REPORT) {
    document.body.classList.add("report");
    const note = $("report-note");
    note.hidden = false;
    note.textContent = "Static report of namespace “" + REPORT.data.namespace + "”, made " + REPORT.data.generated + " by bitstat report.";
    show(REPORT.data);
  } else {
    wire();
    start();
  }
})();
