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
  // the control of each parameter an error can name
  const CONTROLS = {
    namespace: "namespace", event: "event", start: "start", end: "end", period: "period",
    count: "count-prop", top: "top-prop", sum: "sum-rule", step: "steps", within: "within",
  };
  const charts = {};
  let state = readHash();
  let token = safeStorage("get", "bitstat.readToken") || "";
  let timer = null;
  let refreshSeconds = 10;
  let loading = null;
  let renders = 0;
  let started = false; // the server's settings are read: refreshes load the view
  let last = null; // the answer drawn last; null after a failed load

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
    const namespace = state.namespace;
    Object.assign(state, updates);
    for (const k of Object.keys(state)) if (!state[k]) delete state[k];
    writeHash();
    if (state.namespace !== namespace) draw({}); // nothing of the other namespace while loading
    load();
  }

  // --- the server

  async function api(path, params) {
    const url = "v1/" + path + (params ? "?" + params.toString() : "");
    const headers = token ? { Authorization: "Bearer " + token } : {};
    let answer;
    try {
      answer = await fetch(url, { headers, cache: "no-store" });
    } catch (err) {
      // the server stopped, or the network is down: all fetch says is "Failed to fetch"
      throw new Error(retrying("cannot reach the bitstat server at " + location.host + " (" + err.message + ")"));
    }
    const body = await answer.json().catch(() => ({ error: answer.statusText }));
    if (answer.status === 401) {
      askToken();
      const err = new Error(body.error || "a read token is needed");
      err.status = 401;
      throw err;
    }
    if (!answer.ok) {
      // 503: the server cannot reach Redis, which may come back
      const err = new Error(answer.status === 503 ? retrying(body.error || answer.statusText) : body.error || answer.statusText);
      err.parameter = body.parameter;
      throw err;
    }
    return body;
  }

  function retrying(text) {
    // what a failure that may pass says: whether the page will try again by itself
    return text.replace(/\.$/, "") + (live() ? "; trying again every " + refreshSeconds + " s" : "; reload the page to try again");
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
      failed(err.message, err.parameter);
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
    const same = // the texts too: "auto (day)" becomes "auto (week)" when the range grows
      select.options.length === opts.length &&
      opts.every(([v, text], i) => select.options[i].value === v && select.options[i].text === text);
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
      // not update("none"): that mode keeps the elements' resolved options, so a line of 54
      // weeks kept its dots when it became 374 days (animations are off anyway)
      old.update();
      return old;
    }
    if (old) old.destroy();
    charts[id] = new Chart($(id), config);
    return charts[id];
  }

  function empty(name, text, isError) {
    // the line a card shows instead of its chart: why there is nothing, or what went wrong
    const p = $("empty-" + name);
    if (!p) return;
    p.hidden = !text;
    p.textContent = text || "";
    p.classList.toggle("error", Boolean(text && isError));
  }

  function axisOptions(horizontal, extra) {
    const value = { beginAtZero: true, ticks: { precision: 0 }, grid: { color: "#eef2f7" } };
    // a time axis leaves labels out rather than run them together ("2025-W402025-W44"); a bar
    // chart names every bar (12 at most)
    const ticks = horizontal ? { autoSkip: false } : { autoSkip: true, autoSkipPadding: 16, maxRotation: 0 };
    const category = { grid: { display: false }, ticks };
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
    // rows null: the card's line is its section's (nothing configured, an error)
    const part = rows || [];
    chart(id, {
      type: "bar",
      data: {
        labels: part.map((r) => label(r.value)),
        datasets: [{ label: column, data: part.map((r) => r[column]), backgroundColor: color, borderRadius: 3 }],
      },
      options: axisOptions(horizontal),
    });
    if (rows) empty(name, part.length ? null : "no data in this range");
  }

  function section(part, name, absent) {
    // a part of the answer: missing (nothing configured, or no view), {error}, or data
    if (!part) {
      empty(name, absent);
      return null;
    }
    if (part.error) {
      empty(name, part.error, true);
      return null;
    }
    empty(name, null);
    return part;
  }

  function show(d) {
    renders += 1;
    last = d;
    window.bitstat = { data: d, error: null, charts, renders };
    clearBad();
    const rules = d.rules || { count: [], sum: [], top: [], unique: [] };
    $("namespace").value = d.namespace;
    fill($("event"), d.events, d.event);
    $("start").value = /^\d{4}-\d{2}-\d{2}$/.test(d.start) ? d.start : "";
    $("end").value = /^\d{4}-\d{2}-\d{2}$/.test(d.end) ? d.end : "";
    fill($("period"), d.periods, REPORT ? d.period : state.period || "", "auto (" + d.period + ")");
    fill($("count-prop"), rules.count, d.counts && d.counts.prop);
    fill($("top-prop"), rules.top, d.top && d.top.prop);
    fill($("sum-rule"), rules.sum, d.sums && d.sums.rule);
    if (document.activeElement !== $("steps")) $("steps").value = d.funnel && d.funnel.steps ? d.funnel.steps.join(", ") : "";
    if (document.activeElement !== $("within")) $("within").value = d.funnel ? d.funnel.within : state.within || "7d";
    $("updated").textContent = "updated " + d.generated.slice(11, 19);
    document.title = "bitstat · " + d.namespace + (d.event ? " · " + d.event : "");
    if (!d.event) message("No events recorded in namespace “" + d.namespace + "” yet.");
    draw(d.event ? d : {});
    document.body.dataset.ready = String(renders);
  }

  function failed(text, parameter) {
    // a view that could not be loaded: say why, and show nothing of the one before
    renders += 1;
    last = null;
    window.bitstat = { data: null, error: text, charts, renders };
    const named = !parameter || text.startsWith(parameter + ":");
    message(text + (named ? "" : " (" + parameter + ")"));
    clearBad();
    const control = $(CONTROLS[parameter] || "none");
    if (control && state[parameter === "step" ? "steps" : parameter]) {
      control.classList.add("bad");
      document.body.dataset.badParameter = parameter;
    }
    $("updated").textContent = "";
    draw({});
    document.body.dataset.ready = String(renders);
  }

  function clearBad() {
    delete document.body.dataset.badParameter;
    for (const id of Object.values(CONTROLS)) $(id).classList.remove("bad");
  }

  function tile(name, value, error) {
    $("kpi-" + name).textContent = value == null ? "–" : value;
    const note = $("note-" + name);
    note.hidden = !error;
    note.textContent = error || "";
    note.title = error || "";
  }

  function sumTile(d) {
    // the total of the summed property: its own part when recorded; a breakdown adds up only the
    // events that carry its label, so its sum is named as such
    const total = d.sum_total;
    if (total) {
      $("kpi-sum-label").textContent = "Sum of " + total.prop;
      return tile("sum", total.error ? null : decimal.format(total.sum), total.error);
    }
    const s = d.sums;
    if (!s) {
      $("kpi-sum-label").textContent = "Sum";
      return tile("sum", null);
    }
    const [prop, by] = s.rule.split(" by ");
    $("kpi-sum-label").textContent = "Sum of " + prop + (by && !s.error ? " (with " + by + ")" : "");
    if (s.error) return tile("sum", null, s.error);
    const value = "sum" in s ? s.sum : s.sums.reduce((a, r) => a + r.sum, 0);
    tile("sum", decimal.format(value));
  }

  function draw(d) {
    // every tile and card is drawn from `d` alone, so nothing of an earlier view stays; `{}`
    // (no event, or a failed load) leaves them all blank
    const absent = d.event ? "nothing recorded for this event" : null;
    const ok = (part) => (part && !part.error ? part : null);
    const error = (part) => (part && part.error) || null;
    const unique = ok(d.unique) && d.unique.unique;
    const total = ok(d.total) && d.total.total;
    tile("unique", unique == null ? null : whole.format(unique), error(d.unique));
    tile("total", total == null ? null : whole.format(total), error(d.total));
    tile("ratio", unique ? decimal.format(total / unique) : null);
    $("kpi-distinct-label").textContent = d.distinct ? "Distinct " + d.distinct.prop : "Distinct values";
    tile("distinct", ok(d.distinct) && whole.format(d.distinct.distinct), error(d.distinct));
    sumTile(d);

    const where = !d.event ? "" : d.start === d.end ? d.start : d.start + " – " + d.end;
    const sub = where ? ' <span class="sub">' + escapeHtml(where) + "</span>" : "";
    const per = d.event ? " per " + d.period : "";
    $("title-unique").innerHTML = "Unique actors" + per + sub;
    $("title-total").innerHTML = "Events" + per + sub;
    const su = section(d.series_unique, "unique", absent);
    line("chart-unique", "unique actors", su ? su.series : [], COLORS[0]);
    const st = section(d.series_total, "total", absent);
    line("chart-total", "events", st ? st.series : [], COLORS[1]);

    const counts = section(d.counts, "counts", absent);
    bars("chart-counts", "counts", counts ? counts.counts.slice(0, 12) : null, "count", true, COLORS[2]);
    const top = section(d.top, "top", absent);
    bars("chart-top", "top", top ? top.top : null, "count", true, COLORS[3]);
    showSums(d.sums, absent);
    // the funnel's steps default to the events of the range: none there, no steps
    showFunnel(d.funnel, d.event ? "no data in this range" : null);
    showRetention(d.retention, d.event);
    showLifecycle(d.lifecycle, absent);
    for (const id of Object.keys(charts)) describe(id);
  }

  function heading(card) {
    // a card's title as read: its text, with the value of each control in it
    const h = card.querySelector("h2");
    const part = (n) => (n.nodeType === Node.TEXT_NODE ? n.textContent : n.value != null ? n.value : n.textContent);
    return Array.from(h.childNodes).map(part).join(" ").replace(/\s+/g, " ").trim();
  }

  function describe(id) {
    // a canvas is a picture to a screen reader: its label says what the chart shows, in words
    const c = charts[id];
    const card = $(id).closest(".card");
    const note = card.querySelector(".empty");
    const value = (v) => (v == null ? "–" : decimal.format(Math.abs(v)));
    const labels = c.data.labels;
    const sets = c.data.datasets;
    let text;
    if (note && !note.hidden) text = note.textContent;
    else if (!labels.length) text = "nothing to show";
    else if (sets.length === 1 && labels.length > 12) {
      const data = sets[0].data;
      const top = data.reduce((best, v, i) => (v != null && (best < 0 || v > data[best]) ? i : best), -1);
      text = labels.length + " points from " + labels[0] + " to " + labels[labels.length - 1];
      if (top >= 0) text += ", highest " + value(data[top]) + " on " + labels[top];
      text += ", last " + value(data[data.length - 1]);
    } else {
      const one = (i) => sets.map((ds) => (sets.length > 1 ? ds.label + " " : "") + value(ds.data[i])).join(", ");
      text = labels.map((l, i) => l.replace(/\s+/g, " ") + ": " + one(i)).join("; ");
    }
    $(id).setAttribute("aria-label", heading(card) + ". " + text);
  }

  function showSums(part, absent) {
    const s = section(part, "sums", absent);
    if (s && "sums" in s) {
      // the 12 largest in size: refunds are negative sums, and the API ranks by value
      const largest = s.sums.slice().sort((a, b) => Math.abs(b.sum) - Math.abs(a.sum));
      bars("chart-sums", "sums", largest.slice(0, 12), "sum", true, COLORS[4]);
    } else {
      bars("chart-sums", "sums", null, "sum", false, COLORS[4]);
      if (s) empty("sums", "total: " + decimal.format(s.sum) + " (add a `sum … by` rule for a breakdown)");
    }
  }

  function showFunnel(part, absent) {
    const f = section(part, "funnel", absent);
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
    if (f && !rows.length) empty("funnel", "no steps");
  }

  // the ramp of analysis.heat (HEAT_RGB, HEAT_LIGHT_TEXT), which tests/test_heat.py holds it to
  function heat(rate) {
    const r = Math.min(Math.max(rate, 0), 1);
    const rgb = [37, 99, 235].map((c) => Math.round(255 + (c - 255) * r));
    return "background:rgb(" + rgb.join(",") + ");color:" + (r > 0.5 ? "#fff" : "#1a202c");
  }

  function showRetention(part, event) {
    const box = $("retention");
    $("title-retention").textContent = "Retention";
    if (!part || part.error) {
      box.innerHTML = part ? '<p class="empty-text error">' + escapeHtml(part.error) + "</p>" : "";
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

  function showLifecycle(part, absent) {
    const l = section(part, "lifecycle", absent);
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
    if (l && !rows.length) empty("lifecycle", "no periods in this range");
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
      const d = last;
      if (!d || !d.event) return;
      let span;
      try {
        span = await api("span", new URLSearchParams({ namespace: d.namespace, event: d.event }));
      } catch (err) {
        return failed(err.message, err.parameter);
      }
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
      const namespace = state.namespace;
      state = readHash();
      if (state.namespace !== namespace) draw({});
      load();
    });
    document.addEventListener("visibilitychange", schedule);
  }

  function live() {
    return $("live").checked && refreshSeconds > 0 && !document.hidden;
  }

  function schedule() {
    if (timer) clearInterval(timer);
    timer = null;
    // until the server's settings are read, a refresh asks for them again
    if (live()) timer = setInterval(started ? load : start, refreshSeconds * 1000);
  }

  async function start() {
    try {
      const info = await api("namespaces");
      refreshSeconds = info.refresh_seconds;
      $("namespaces").replaceChildren(...info.namespaces.map((n) => new Option(n)));
      started = true;
    } catch (err) {
      // the server or its Redis down as the page opened: try again, as a live view would (a
      // token asked for starts again when given)
      message(err.message);
      if (!timer && err.status !== 401) schedule();
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
