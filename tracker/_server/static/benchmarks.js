// A project's benchmarks: one benchmark's history in commit order, a series per machine with
// its sample bands and change points, and the samples of two commits side by side.

import { getJson, path } from "./api.js";
import { el, formatNumber, runColor } from "./format.js";

const HEIGHT = 320;
const SAMPLES_HEIGHT = 220;
const TIME_SCALES = [
  [1, "s"],
  [1e-3, "ms"],
  [1e-6, "µs"],
  [1e-9, "ns"],
];
const SI = [
  [1e9, "G"],
  [1e6, "M"],
  [1e3, "k"],
];

/** A value in its unit, scaled to its size: "1.21 ms", "3.4M instr", "12kB". */
export function formatUnit(value, unit) {
  if (value === null || value === undefined || !Number.isFinite(value)) return "";
  const size = Math.abs(Number(value.toPrecision(3))); // 999.8 µs reads 1 ms
  const three = (number) => String(Number(number.toPrecision(3)));
  if (unit === "seconds" || unit === "s") {
    const [factor, suffix] = TIME_SCALES.find(([f]) => size >= f) || TIME_SCALES.at(-1);
    return `${three(value / factor)} ${suffix}`;
  }
  if (["bytes", "instructions", "unit", ""].includes(unit)) {
    const [factor, prefix] = SI.find(([f]) => size >= f) || [1, ""];
    return `${three(value / factor)}${prefix}${{ bytes: "B", instructions: " instr" }[unit] || ""}`;
  }
  return `${formatNumber(value)} ${unit}`;
}

/** Draw the benchmarks page of `entity/project` into `main`. */
export function showBenchmarks(main, entity, project) {
  const page = new BenchmarksPage(entity, project);
  main.replaceChildren(page.element);
  page.load();
}

class BenchmarksPage {
  constructor(entity, project) {
    this.entity = entity;
    this.project = project;
    this.answer = null;
    this.plot = null;
    this.samplesPlot = null;
    this.benchmarkSelect = el("select", { id: "bench-benchmark", onchange: () => this.load() });
    this.branchSelect = el("select", { id: "bench-branch", onchange: () => this.load() });
    this.status = el("p", { class: "muted", role: "status" });
    this.target = el("div", { class: "plot bench-plot" });
    this.changeList = el("ol", { class: "bench-changes" });
    this.samples = el("div", { class: "bench-samples", "aria-live": "polite" });
    this.element = el(
      "div",
      { class: "benchmarks" },
      el("h1", {}, "Benchmarks ", el("span", { class: "muted" }, `of ${project}`)),
      el("p", {}, el("a", { href: `/${path(entity, project)}` }, `All runs of ${project}`)),
      el(
        "div",
        { class: "toolbar", role: "group", "aria-label": "Benchmark and branch" },
        el("label", { for: "bench-benchmark" }, "Benchmark"),
        this.benchmarkSelect,
        el("label", { for: "bench-branch" }, "Branch"),
        this.branchSelect,
      ),
      this.status,
      el(
        "figure",
        { class: "panel bench-chart" },
        (this.caption = el("figcaption", {})),
        this.target,
        el(
          "p",
          { class: "muted bench-legend" },
          "x: the branch's commits in order. Lines: the median per machine; bands: the quartiles ",
          "(dark) and the extremes (light) of the samples; dashed lines: change points. ",
          "Click a point to compare its samples with the commit before it.",
        ),
      ),
      el(
        "section",
        { "aria-labelledby": "bench-changes-heading" },
        el("h2", { id: "bench-changes-heading" }, "Change points"),
        this.changeList,
      ),
      el(
        "section",
        { "aria-labelledby": "bench-samples-heading" },
        el("h2", { id: "bench-samples-heading" }, "Samples"),
        this.samples,
      ),
    );
    new ResizeObserver(() => this.plot?.setSize({ width: this.target.clientWidth, height: HEIGHT })).observe(
      this.target,
    );
    window.trackerBench = this; // the page's state, for tests and the browser console
  }

  query() {
    const params = new URLSearchParams();
    if (this.benchmarkSelect.value) params.set("benchmark", this.benchmarkSelect.value);
    if (this.branchSelect.value) params.set("branch", this.branchSelect.value);
    return `/api/v1/dashboard/bench/${path(this.entity, this.project)}?${params}`;
  }

  async load() {
    this.status.textContent = "Loading…";
    const answer = await getJson(this.query());
    this.answer = answer;
    this.fillSelect(
      this.benchmarkSelect,
      answer.benchmarks.map((b) => b.name),
      answer.benchmark,
    );
    this.fillSelect(this.branchSelect, answer.branches, answer.branch);
    this.samples.replaceChildren(el("p", { class: "muted" }, "Pick a change point or click a point of the chart."));
    if (!answer.benchmark) {
      this.status.textContent = "";
      this.target.replaceChildren(
        el("p", {}, "No benchmark runs in this project yet. Store some from your suite:"),
        el("pre", {}, `pip install pytest-benchmark tracker\nTRACKER_BASE_URL=${location.origin} pytest --tracker`),
      );
      this.changeList.replaceChildren();
      return;
    }
    const changes = answer.series.reduce((sum, series) => sum + series.changes.length, 0);
    this.status.textContent =
      `${answer.commits.length} commits of ${answer.branch ?? "no branch"}, ` +
      `${answer.series.length} machine${answer.series.length === 1 ? "" : "s"}, ` +
      `${changes} change point${changes === 1 ? "" : "s"} (steps of ${Math.round(answer.threshold * 100)} % or more).`;
    const better = answer.lower_is_better ? "lower" : "higher";
    this.caption.textContent = `${answer.benchmark} (${answer.unit}, ${better} is better)`;
    this.draw();
    this.listChanges();
  }

  fillSelect(select, values, chosen) {
    select.replaceChildren(...values.map((value) => el("option", { value }, value)));
    if (chosen !== null && chosen !== undefined) select.value = chosen;
  }

  /** The label of commit `index` on the x axis: its short sha. */
  commitLabel(index) {
    const commit = Number.isInteger(index) ? this.answer.commits[index] : undefined;
    return commit ? commit.sha.slice(0, 7) : "";
  }

  /** Per machine, its medians at the commits it has (null elsewhere), for uPlot. */
  columns() {
    const count = this.answer.commits.length;
    return this.answer.series.map((series) => {
      const values = new Array(count).fill(null);
      series.points.commit.forEach((commit, k) => {
        values[commit] = series.points.median[k];
      });
      return values;
    });
  }

  draw() {
    this.plot?.destroy();
    const { commits, series, unit } = this.answer;
    const style = getComputedStyle(document.documentElement);
    const text = style.getPropertyValue("--fg-muted").trim();
    const grid = style.getPropertyValue("--grid").trim();
    const axis = { stroke: text, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } };
    const quartiles = series.flatMap((s) => [...s.points.q1, ...s.points.q3, ...s.points.median]);
    const low = Math.min(...quartiles);
    const high = Math.max(...quartiles);
    const pad = (high - low) * 0.1 || Math.abs(high) * 0.05 || 1;
    this.target.replaceChildren();
    this.target.setAttribute("role", "img");
    this.target.setAttribute(
      "aria-label",
      `${this.answer.benchmark} over ${commits.length} commits: ${series.map((s) => s.label).join("; ")}`,
    );
    this.plot = new uPlot(
      {
        width: this.target.clientWidth || 800,
        height: HEIGHT,
        scales: {
          x: { time: false, range: (_, min, max) => [min - 0.5, max + 0.5] },
          y: { range: () => [Math.max(0, low - pad), high + pad] },
        },
        series: [
          {
            label: "Commit",
            value: (_, index) => (index === null ? "" : `${this.commitLabel(index)} ${commits[index]?.message ?? ""}`),
          },
          ...series.map((s, index) => ({
            label: s.label,
            stroke: runColor(index),
            width: 1.5,
            spanGaps: true,
            points: { show: true, size: 6 },
            value: (_, value) => formatUnit(value, unit),
          })),
        ],
        axes: [
          {
            ...axis,
            incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000],
            values: (_, splits) => splits.map((index) => this.commitLabel(index)),
          },
          { ...axis, size: 80, values: (_, splits) => splits.map((value) => formatUnit(value, unit)) },
        ],
        cursor: { drag: { x: false, y: false } },
        legend: { live: true },
        hooks: { drawAxes: [(u) => this.drawBands(u)], draw: [(u) => this.drawChanges(u)] },
      },
      [commits.map((_, index) => index), ...this.columns()],
      this.target,
    );
    this.plot.over.addEventListener("click", () => this.clicked());
  }

  /** Each machine's sample bands: extremes (light) and quartiles (darker), under its line. */
  drawBands(u) {
    const { ctx } = u;
    ctx.save();
    ctx.beginPath();
    ctx.rect(u.bbox.left, u.bbox.top, u.bbox.width, u.bbox.height);
    ctx.clip();
    this.answer.series.forEach((series, index) => {
      const xs = series.points.commit.map((commit) => u.valToPos(commit, "x", true));
      for (const [lowField, highField, alpha] of [
        ["min", "max", 0.08],
        ["q1", "q3", 0.22],
      ]) {
        const lows = series.points[lowField].map((value) => u.valToPos(value, "y", true));
        const highs = series.points[highField].map((value) => u.valToPos(value, "y", true));
        ctx.beginPath();
        xs.forEach((x, k) => (k ? ctx.lineTo(x, highs[k]) : ctx.moveTo(x, highs[k])));
        for (let k = xs.length - 1; k >= 0; k -= 1) ctx.lineTo(xs[k], lows[k]);
        ctx.closePath();
        ctx.globalAlpha = alpha;
        ctx.fillStyle = runColor(index);
        ctx.fill();
      }
    });
    ctx.restore();
  }

  /** A dashed line between the two commits of each change point, red for a regression. */
  drawChanges(u) {
    const { ctx } = u;
    const style = getComputedStyle(document.documentElement);
    ctx.save();
    ctx.setLineDash([5, 4]);
    ctx.lineWidth = 1.5 * devicePixelRatio;
    for (const series of this.answer.series) {
      for (const change of series.changes) {
        const x = u.valToPos((change.before + change.after) / 2, "x", true);
        ctx.strokeStyle = style.getPropertyValue(change.kind === "regression" ? "--bad" : "--ok").trim();
        ctx.beginPath();
        ctx.moveTo(x, u.bbox.top);
        ctx.lineTo(x, u.bbox.top + u.bbox.height);
        ctx.stroke();
      }
    }
    ctx.restore();
  }

  listChanges() {
    const items = [];
    for (const series of this.answer.series) {
      for (const change of series.changes) {
        const after = this.answer.commits[change.after];
        const before = this.answer.commits[change.before];
        const percent = (change.ratio - 1) * 100;
        items.push(
          el(
            "li",
            { class: `bench-change ${change.kind}` },
            el("span", { class: `state state-${change.kind === "regression" ? "failed" : "finished"}` }, change.kind),
            " ",
            el("code", {}, after.sha.slice(0, 10)),
            ` ${after.message} `,
            el("span", { class: "muted" }, `(after ${before.sha.slice(0, 7)}, on ${series.label}): `),
            `${percent >= 0 ? "+" : ""}${percent.toFixed(1)} % `,
            el(
              "button",
              { type: "button", onclick: () => this.showSamples(series, change.before, change.after) },
              "Compare samples",
            ),
          ),
        );
      }
    }
    this.changeList.replaceChildren(
      ...(items.length ? items : [el("li", { class: "muted" }, "No change points on this branch.")]),
    );
  }

  /** A click on the chart: the nearest commit, on the machine whose line is nearest. */
  clicked() {
    const u = this.plot;
    const index = u.cursor.idx;
    if (index === null || index === undefined) return;
    const y = u.posToVal(u.cursor.top, "y");
    let best = null;
    this.answer.series.forEach((series) => {
      const k = series.points.commit.indexOf(index);
      if (k < 0) return;
      const distance = Math.abs(series.points.median[k] - y);
      if (!best || distance < best.distance) best = { series, k, distance };
    });
    if (!best) return;
    if (best.k === 0) {
      this.samples.replaceChildren(
        el("p", {}, `${this.commitLabel(index)} is the first commit of ${best.series.label}: nothing to compare with.`),
      );
      return;
    }
    this.showSamples(best.series, best.series.points.commit[best.k - 1], index);
  }

  /** The samples of a machine's points at commits `before` and `after`, side by side. */
  async showSamples(series, before, after) {
    const runOf = (commit) => series.points.run[series.points.commit.indexOf(commit)];
    const params = new URLSearchParams({
      runs: `${runOf(before)},${runOf(after)}`,
      benchmark: this.answer.benchmark,
      threshold: this.answer.threshold,
    });
    this.samples.replaceChildren(el("p", { class: "muted" }, "Loading samples…"));
    const answer = await getJson(`/api/v1/dashboard/bench-samples/${path(this.entity, this.project)}?${params}`);
    const { comparison, unit } = answer;
    const [first, second] = answer.runs;
    const row = (label, value) =>
      el("tr", {}, el("th", { scope: "row" }, label), ...answer.runs.map((run) => el("td", {}, value(run))));
    const stat = (name) => (run) => formatUnit(run.stats[name], unit);
    const verdict =
      comparison.ratio === null
        ? "no comparison"
        : `${comparison.kind}: ×${comparison.ratio.toFixed(3)}` +
          (comparison.p_value === null
            ? " (no raw samples to test)"
            : `, p ${comparison.p_value < 0.001 ? "< 0.001" : `= ${comparison.p_value.toFixed(3)}`}`);
    const target = el("div", { class: "plot" });
    this.samples.replaceChildren(
      el(
        "h3",
        {},
        `${answer.benchmark}: `,
        el("code", {}, first.commit.slice(0, 7)),
        " → ",
        el("code", {}, second.commit.slice(0, 7)),
        el("span", { class: "muted" }, ` on ${first.machine}`),
      ),
      el("p", { class: `bench-verdict ${comparison.kind}` }, verdict),
      el(
        "table",
        { class: "plain bench-stats" },
        el(
          "thead",
          {},
          el(
            "tr",
            {},
            el("th", { scope: "col" }, ""),
            ...answer.runs.map((run) => el("th", { scope: "col" }, el("code", {}, run.commit.slice(0, 10)))),
          ),
        ),
        el(
          "tbody",
          {},
          row("Commit", (run) => run.message),
          row("Samples", (run) => run.count.toLocaleString()),
          row("Median", stat("median")),
          row("Quartiles", (run) => `${formatUnit(run.stats.q1, unit)} – ${formatUnit(run.stats.q3, unit)}`),
          row("Min – max", (run) => `${formatUnit(run.stats.min, unit)} – ${formatUnit(run.stats.max, unit)}`),
        ),
      ),
      el("figure", { class: "panel" }, el("figcaption", {}, "Sorted samples (x: quantile)"), target),
    );
    this.samplesPlot?.destroy();
    const tables = answer.runs.map((run) => [
      run.samples.map((_, i) => (run.samples.length > 1 ? i / (run.samples.length - 1) : 0.5)),
      run.samples,
    ]);
    this.samplesPlot = new uPlot(
      {
        width: target.clientWidth || 600,
        height: SAMPLES_HEIGHT,
        scales: { x: { time: false } },
        series: [
          { label: "Quantile", value: (_, value) => (value === null ? "" : value.toFixed(2)) },
          ...answer.runs.map((run, index) => ({
            label: run.commit.slice(0, 7),
            stroke: runColor(index + 1),
            width: 1.5,
            spanGaps: true,
            value: (_, value) => formatUnit(value, unit),
          })),
        ],
        axes: [{}, { size: 80, values: (_, splits) => splits.map((value) => formatUnit(value, unit)) }],
      },
      uPlot.join(tables),
      target,
    );
  }
}
