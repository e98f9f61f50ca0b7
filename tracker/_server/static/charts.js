// Chart panels, one per metric, with the shown runs overlaid (uPlot), kept live over SSE.

import { decodeExact, getJson, path } from "./api.js";
import { el, formatDuration, formatNumber, formatTick, runColor } from "./format.js";
import { LiveFeed } from "./live.js";

/** Points per key and run the server sends (it keeps each bucket's extremes). */
export const SAMPLES = 1000;
/** A run holding more points than this per key is fetched again, downsampled. */
export const RESAMPLE_AT = 4 * SAMPLES;
const X_FIELDS = { step: "step", runtime: "runtime", timestamp: "timestamp" };
const X_LABELS = { step: "Step", runtime: "Relative time", timestamp: "Wall time" };

/**
 * A grid of chart panels, one per metric, the shown runs overlaid, under controls. The
 * subclass says where the points come from: `columns(run, metric)` gives a run's x and y
 * values of a metric, `keysOf(run)` its metrics, `loading()` whether some run's points are
 * still on their way. `config`: `name` (the controls' id prefix), `xLabels` (the x axes to
 * offer, the first the default), `labels` (the controls' labels), `smoothing` and `log`
 * (offer them), `height` (of a plot), `empty` (what an empty grid says).
 */
export class PanelGrid {
  constructor(config) {
    this.config = config;
    this.runs = [];
    this.panels = new Map(); // metric -> {figure, target, plot}
    this.options = { x: Object.keys(config.xLabels)[0], smoothing: 0, log: false, filter: "" };
    this.syncKey = `sync-${Math.random()}`;
    this.drawPending = false;
    this.element = el(
      "div",
      { class: `charts charts-${config.name}` },
      this.controls(),
      (this.note = el("p", { class: "muted", role: "status" })),
      (this.grid = el("div", { class: "chart-grid" })),
    );
    this.visible = new IntersectionObserver((entries) => this.onVisible(entries), { rootMargin: "200px" });
    new ResizeObserver(() => this.resize()).observe(this.grid);
    matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => this.rebuild());
  }

  controls() {
    const { name, xLabels, labels } = this.config;
    const id = (control) => `${name}-${control}`;
    const x = el(
      "select",
      { id: id("x"), onchange: (event) => this.setOption("x", event.target.value) },
      Object.entries(xLabels).map(([value, label]) => el("option", { value }, label)),
    );
    const parts = [el("label", { for: id("x") }, labels.x), x];
    if (this.config.smoothing) {
      const output = el("output", { for: id("smoothing"), id: id("smoothing-value") }, "0");
      const smoothing = el("input", {
        id: id("smoothing"),
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
      parts.push(el("label", { for: id("smoothing") }, "Smoothing"), smoothing, output);
    }
    if (this.config.log) {
      const log = el("input", {
        id: id("log"),
        type: "checkbox",
        onchange: (event) => this.setOption("log", event.target.checked),
      });
      parts.push(el("span", { class: "check" }, log, el("label", { for: id("log") }, "Log scale")));
    }
    const filter = el("input", {
      id: id("filter"),
      type: "search",
      placeholder: this.config.filterHint,
      autocomplete: "off",
      oninput: (event) => this.setOption("filter", event.target.value.trim().toLowerCase()),
    });
    parts.push(el("label", { for: id("filter") }, labels.filter), filter);
    return el("div", { class: "toolbar", role: "group", "aria-label": labels.group }, parts);
  }

  setOption(name, value) {
    this.options[name] = value;
    if (name === "x" || name === "log") this.rebuild();
    else this.draw();
  }

  /** The metrics to draw: the shown runs' keys (not "_..."), filtered, by name. */
  metrics() {
    const keys = new Set();
    for (const run of this.runs) for (const key of this.keysOf(run)) keys.add(key);
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
    this.layout(metrics);
    if (!metrics.length) {
      this.grid.replaceChildren(
        el(
          "p",
          { class: "muted" },
          this.runs.length ? (this.loading() ? "Loading charts…" : this.config.empty) : "No runs to chart.",
        ),
      );
    } else this.grid.querySelector(":scope > p")?.remove();
  }

  /** Put the metrics' panels in the grid, in order (a subclass may group them). */
  layout(metrics) {
    this.place(this.grid, metrics);
  }

  /** Put the panels of `metrics` into `box` in this order, and give their plots the points. */
  place(box, metrics) {
    metrics.forEach((metric, index) => {
      const panel = this.panels.get(metric) || this.addPanel(metric);
      if (box.children[index] !== panel.figure) box.insertBefore(panel.figure, box.children[index] || null);
      if (panel.plot) {
        // a zoomed chart keeps its zoom while points arrive; a double click shows everything
        const xs = panel.plot.data[0];
        const { min, max } = panel.plot.scales.x;
        panel.plot.setData(this.plotData(metric), !(xs.length && (min > xs[0] || max < xs[xs.length - 1])));
      }
    });
  }

  addPanel(metric) {
    const target = el("div", { class: "plot" });
    target.style.minHeight = `${this.config.height}px`;
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
      if (panel.plot) panel.plot.setSize({ width: panel.target.clientWidth, height: this.config.height });
    }
  }

  /** uPlot's data: the union of the runs' x values, one y array per run (smoothed, logged). */
  plotData(metric) {
    const tables = this.runs.map((run) => {
      const columns = this.columns(run, metric);
      if (!columns) return [[], []];
      let [xs, values] = columns;
      if (this.options.log) values = values.map((value) => (value > 0 ? value : null));
      return [xs, smooth(values, this.options.smoothing)];
    });
    return uPlot.join(tables);
  }

  makePlot(metric, target) {
    const style = getComputedStyle(document.documentElement);
    const text = style.getPropertyValue("--fg-muted").trim();
    const grid = style.getPropertyValue("--grid").trim();
    const axis = { stroke: text, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } };
    const x = this.options.x;
    const label = this.config.xLabels[x];
    const xAxis = { ...axis };
    if (x === "runtime") xAxis.values = (_, splits) => splits.map(formatDuration);
    const xSeries = { label };
    if (x !== "timestamp")
      xSeries.value = (_, value) =>
        value === null ? "" : x === "runtime" ? formatDuration(value) : formatNumber(value);
    const names = this.runs.map((run) => run.name || run.id).join(", ");
    target.setAttribute("role", "img");
    target.setAttribute("aria-label", `${metric} by ${label.toLowerCase()}: ${names}`);
    return new uPlot(
      {
        width: target.clientWidth || 400,
        height: this.config.height,
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
        axes: [
          xAxis,
          { ...axis, size: 60, values: (_, splits, _axis, _space, step) => splits.map((v) => formatTick(v, step)) },
        ],
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

/**
 * The charts of the numeric keys a set of runs logged, x by step or time. `setRuns(runs)`
 * chooses the runs; their points are fetched downsampled, then new ones arrive over the
 * page's live stream (`feed`, a `LiveFeed`; one of its own when none is given), which this
 * grid points at the runs it shows. `onRun(document)` hears of changed runs.
 */
export class ChartGrid extends PanelGrid {
  constructor(entity, project, { onRun = () => {}, feed = new LiveFeed(entity, project) } = {}) {
    super({
      name: "chart",
      xLabels: X_LABELS,
      labels: { x: "X axis", filter: "Metrics", group: "Chart options" },
      filterHint: "loss",
      smoothing: true,
      log: true,
      height: 220,
      empty: "No numeric metrics logged yet.",
    });
    this.entity = entity;
    this.project = project;
    this.onRun = onRun;
    this.feed = feed;
    this.data = new Map(); // run id -> {lastStep, series: {key: {step, value, runtime, timestamp}}}
    this.resampling = false;
    feed.follow("after", (runId) => this.data.get(runId)?.lastStep ?? -1, {
      run: (message) => this.runChanged(decodeExact(message)),
      series: (message) => this.append(message),
    });
    window.trackerCharts = this; // the page's charts, for tests and the browser console
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
    this.feed.setRuns(this.runs.map((run) => run.id));
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

  runChanged(document) {
    const index = this.runs.findIndex((run) => run.id === document.id);
    if (index >= 0) this.runs[index] = { ...this.runs[index], ...document };
    this.onRun(document);
  }

  append({ run, last_step: lastStep, series }) {
    const held = this.data.get(run);
    if (!held) {
      // a run whose fetch failed is followed from the start: this is all of it
      if (this.runs.some((shown) => shown.id === run)) this.data.set(run, { lastStep, series });
      this.draw();
      return;
    }
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
      this.feed.reconnect();
    } finally {
      this.resampling = false;
    }
  }

  keysOf(run) {
    return Object.keys(this.data.get(run.id)?.series || {});
  }

  loading() {
    return this.runs.some((run) => !this.data.has(run.id));
  }

  columns(run, metric) {
    const series = this.data.get(run.id)?.series[metric];
    return series ? [series[X_FIELDS[this.options.x]], series.value] : null;
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
