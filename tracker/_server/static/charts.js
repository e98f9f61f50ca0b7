// Chart panels, one per metric, with the shown runs overlaid (uPlot), kept live over SSE.

import { getJson, openLive, path } from "./api.js";
import { el, formatDuration, formatNumber, runColor } from "./format.js";

/** Points per key and run the server sends (it keeps each bucket's extremes). */
const SAMPLES = 1000;
/** A run holding more points than this per key is fetched again, downsampled. */
const RESAMPLE_AT = 4 * SAMPLES;
const HEIGHT = 220;
const X_FIELDS = { step: "step", runtime: "runtime", timestamp: "timestamp" };
const X_LABELS = { step: "Step", runtime: "Relative time", timestamp: "Wall time" };

/**
 * The charts of a set of runs: controls (x axis, smoothing, log scale, metric filter) and
 * a grid of panels. `setRuns(runs)` chooses the runs; their points are fetched downsampled,
 * then new ones arrive over the live stream. `onRun(document)` hears of changed runs.
 */
export class ChartGrid {
  constructor(entity, project, { onRun = () => {} } = {}) {
    this.entity = entity;
    this.project = project;
    this.onRun = onRun;
    this.runs = [];
    this.data = new Map(); // run id -> {lastStep, series: {key: {step, value, runtime, timestamp}}}
    this.panels = new Map(); // metric -> {figure, target, plot}
    this.options = { x: "step", smoothing: 0, log: false, filter: "" };
    this.syncKey = `sync-${Math.random()}`;
    this.live = null;
    this.retry = null;
    this.drawPending = false;
    this.resampling = false;
    this.element = el(
      "div",
      { class: "charts" },
      this.controls(),
      (this.note = el("p", { class: "muted", role: "status" })),
      (this.grid = el("div", { class: "chart-grid" })),
    );
    this.visible = new IntersectionObserver((entries) => this.onVisible(entries), { rootMargin: "200px" });
    new ResizeObserver(() => this.resize()).observe(this.grid);
    matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => this.rebuild());
    window.trackerCharts = this; // the page's charts, for tests and the browser console
  }

  controls() {
    const x = el(
      "select",
      { id: "chart-x", onchange: (event) => this.setOption("x", event.target.value) },
      Object.entries(X_LABELS).map(([value, label]) => el("option", { value }, label)),
    );
    const output = el("output", { for: "chart-smoothing", id: "chart-smoothing-value" }, "0");
    const smoothing = el("input", {
      id: "chart-smoothing",
      type: "range",
      min: "0",
      max: "0.99",
      step: "0.01",
      value: "0",
      oninput: (event) => {
        output.textContent = event.target.value;
        this.setOption("smoothing", Number(event.target.value));
      },
    });
    const log = el("input", {
      id: "chart-log",
      type: "checkbox",
      onchange: (event) => this.setOption("log", event.target.checked),
    });
    const filter = el("input", {
      id: "chart-filter",
      type: "search",
      placeholder: "loss",
      autocomplete: "off",
      oninput: (event) => this.setOption("filter", event.target.value.trim().toLowerCase()),
    });
    return el(
      "div",
      { class: "toolbar", role: "group", "aria-label": "Chart options" },
      el("label", { for: "chart-x" }, "X axis"),
      x,
      el("label", { for: "chart-smoothing" }, "Smoothing"),
      smoothing,
      output,
      el("span", { class: "check" }, log, el("label", { for: "chart-log" }, "Log scale")),
      el("label", { for: "chart-filter" }, "Metrics"),
      filter,
    );
  }

  /** Show these runs (documents, in order: the n-th gets colour n); fetch what is missing. */
  async setRuns(runs, note = "") {
    const same =
      runs.length === this.runs.length && runs.every((run, index) => run.id === this.runs[index].id);
    this.runs = runs;
    this.note.textContent = note;
    if (same) return;
    for (const id of this.data.keys()) if (!runs.some((run) => run.id === id)) this.data.delete(id);
    this.rebuild();
    await Promise.all(runs.filter((run) => !this.data.has(run.id)).map((run) => this.fetchRun(run.id)));
    this.connect();
    this.draw();
  }

  async fetchRun(runId) {
    const url = `/api/v1/dashboard/series/${path(this.entity, this.project, runId)}?samples=${SAMPLES}`;
    try {
      const answer = await getJson(url);
      this.data.set(runId, { lastStep: answer.last_step, series: answer.series });
    } catch (error) {
      this.note.textContent = `Could not read the history of run ${runId}: ${error.message}`;
    }
  }

  /** (Re)open the live stream from the last step held of each shown run. */
  connect() {
    clearTimeout(this.retry);
    this.live?.close();
    this.live = null;
    const runs = this.runs.filter((run) => this.data.has(run.id));
    if (!runs.length) return;
    const after = runs.map((run) => this.data.get(run.id).lastStep);
    this.live = openLive(
      this.entity,
      this.project,
      runs.map((run) => run.id),
      after,
      {
        onRun: (document) => this.runChanged(document),
        onSeries: (message) => this.append(message),
        onError: () => {
          this.live = null;
          this.retry = setTimeout(() => this.connect(), 2000);
        },
      },
    );
  }

  runChanged(document) {
    const index = this.runs.findIndex((run) => run.id === document.id);
    if (index >= 0) this.runs[index] = { ...this.runs[index], ...document };
    this.onRun(document);
  }

  append({ run, last_step: lastStep, series }) {
    const held = this.data.get(run);
    if (!held) return;
    held.lastStep = Math.max(held.lastStep, lastStep);
    let grown = false;
    for (const [key, fresh] of Object.entries(series)) {
      const old = held.series[key];
      if (!old) {
        held.series[key] = fresh;
        continue;
      }
      const last = old.step.length ? old.step[old.step.length - 1] : -Infinity;
      const start = fresh.step.findIndex((step) => step > last);
      if (start < 0) continue;
      for (const field of ["step", "value", "runtime", "timestamp"])
        old[field].push(...fresh[field].slice(start));
      grown ||= old.step.length > RESAMPLE_AT;
    }
    if (grown) this.resample(run);
    this.draw();
  }

  async resample(runId) {
    if (this.resampling) return;
    this.resampling = true;
    try {
      await this.fetchRun(runId);
      this.connect();
    } finally {
      this.resampling = false;
    }
  }

  setOption(name, value) {
    this.options[name] = value;
    if (name === "x" || name === "log") this.rebuild();
    else this.draw();
  }

  /** The metrics to draw: numeric keys of the shown runs (not "_..."), filtered, by name. */
  metrics() {
    const keys = new Set();
    for (const run of this.runs)
      for (const key of Object.keys(this.data.get(run.id)?.series || {})) keys.add(key);
    return [...keys]
      .filter((key) => !key.startsWith("_") && key.toLowerCase().includes(this.options.filter))
      .sort();
  }

  /** Throw the plots away (new runs, axis, scale or colours); panels are drawn again. */
  rebuild() {
    for (const panel of this.panels.values()) panel.plot?.destroy();
    this.panels.clear();
    this.grid.replaceChildren();
    this.draw();
  }

  /** Draw at the next frame, at most once per frame, however many points arrive. */
  draw() {
    if (this.drawPending) return;
    this.drawPending = true;
    requestAnimationFrame(() => {
      this.drawPending = false;
      this.drawNow();
    });
  }

  drawNow() {
    const metrics = this.metrics();
    for (const [metric, panel] of this.panels) {
      if (!metrics.includes(metric)) {
        panel.plot?.destroy();
        panel.figure.remove();
        this.panels.delete(metric);
      }
    }
    metrics.forEach((metric, index) => {
      let panel = this.panels.get(metric);
      if (!panel) {
        panel = this.addPanel(metric);
      }
      if (this.grid.children[index] !== panel.figure)
        this.grid.insertBefore(panel.figure, this.grid.children[index] || null);
      if (panel.plot) {
        // a zoomed chart keeps its zoom while points arrive; a double click shows everything
        const xs = panel.plot.data[0];
        const { min, max } = panel.plot.scales.x;
        panel.plot.setData(this.plotData(metric), !(xs.length && (min > xs[0] || max < xs[xs.length - 1])));
      }
    });
    if (!metrics.length) {
      const waiting = this.runs.some((run) => !this.data.has(run.id));
      this.grid.replaceChildren(
        el(
          "p",
          { class: "muted" },
          this.runs.length
            ? waiting
              ? "Loading charts…"
              : "No numeric metrics logged yet."
            : "No runs to chart.",
        ),
      );
    } else this.grid.querySelector(":scope > p")?.remove();
  }

  addPanel(metric) {
    const target = el("div", { class: "plot" });
    const figure = el(
      "figure",
      { class: "panel", "data-metric": metric },
      el("figcaption", {}, metric),
      target,
    );
    const panel = { figure, target, plot: null };
    this.panels.set(metric, panel);
    figure.metric = metric;
    this.visible.observe(figure);
    return panel;
  }

  /** Plots are made when their panel comes near the screen: hundreds of metrics stay fast. */
  onVisible(entries) {
    for (const entry of entries) {
      if (!entry.isIntersecting) continue;
      const panel = this.panels.get(entry.target.metric);
      if (panel && !panel.plot) panel.plot = this.makePlot(entry.target.metric, panel.target);
      this.visible.unobserve(entry.target);
    }
  }

  resize() {
    for (const panel of this.panels.values()) {
      if (panel.plot) panel.plot.setSize({ width: panel.target.clientWidth, height: HEIGHT });
    }
  }

  /** uPlot's data: the union of the runs' x values, one y array per run (smoothed, logged). */
  plotData(metric) {
    const field = X_FIELDS[this.options.x];
    const tables = this.runs.map((run) => {
      const series = this.data.get(run.id)?.series[metric];
      if (!series) return [[], []];
      let values = series.value;
      if (this.options.log) values = values.map((value) => (value > 0 ? value : null));
      return [series[field], smooth(values, this.options.smoothing)];
    });
    return uPlot.join(tables);
  }

  makePlot(metric, target) {
    const style = getComputedStyle(document.documentElement);
    const text = style.getPropertyValue("--fg-muted").trim();
    const grid = style.getPropertyValue("--grid").trim();
    const axis = { stroke: text, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } };
    const x = this.options.x;
    const xAxis = { ...axis };
    if (x === "runtime") xAxis.values = (_, splits) => splits.map(formatDuration);
    const xSeries = { label: X_LABELS[x] };
    if (x !== "timestamp")
      xSeries.value = (_, value) =>
        value === null ? "" : x === "runtime" ? formatDuration(value) : formatNumber(value);
    const names = this.runs.map((run) => run.name || run.id).join(", ");
    target.setAttribute("role", "img");
    target.setAttribute("aria-label", `${metric} by ${X_LABELS[x].toLowerCase()}: ${names}`);
    return new uPlot(
      {
        width: target.clientWidth || 400,
        height: HEIGHT,
        scales: { x: { time: x === "timestamp" }, y: { distr: this.options.log ? 3 : 1 } },
        series: [
          xSeries,
          ...this.runs.map((run, index) => ({
            label: run.name || run.id,
            stroke: runColor(index),
            width: 1.5,
            spanGaps: true,
            value: (_, value) => (value === null || value === undefined ? "" : formatNumber(value)),
          })),
        ],
        axes: [xAxis, { ...axis, size: 60, values: (_, splits) => splits.map(formatNumber) }],
        cursor: { sync: { key: this.syncKey } },
        legend: { live: true },
      },
      this.plotData(metric),
      target,
    );
  }

  /** The uPlot instance of a metric's panel, once drawn (for tests and the console). */
  plot(metric) {
    return this.panels.get(metric)?.plot ?? null;
  }
}

/** Exponential moving average with TensorBoard's debiasing; gaps stay gaps. */
function smooth(values, weight) {
  if (!weight) return values;
  let average = 0;
  let count = 0;
  return values.map((value) => {
    if (value === null || !Number.isFinite(value)) return null;
    average = average * weight + (1 - weight) * value;
    count += 1;
    return average / (1 - weight ** count);
  });
}
