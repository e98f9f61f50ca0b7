// The System charts: one small panel per system metric of the shown runs, grouped, live.

import { PanelGrid, RESAMPLE_AT } from "./charts.js";
import { el } from "./format.js";

const X_LABELS = { runtime: "Relative time", timestamp: "Wall time" };
/** Metric name prefixes (docs/dashboard.md, "System") and their groups, in page order. */
const GROUPS = [
  ["proc.", "Process"],
  ["cpu.", "CPU"],
  ["memory.", "Memory"],
  ["disk.", "Disk"],
  ["network.", "Network"],
];

/** The group of a metric: "CPU", "GPU 0", ..., "Other". */
function groupOf(metric) {
  const gpu = /^gpu\.(\d+)\./.exec(metric);
  if (gpu) return `GPU ${gpu[1]}`;
  return GROUPS.find(([prefix]) => metric.startsWith(prefix))?.[1] ?? "Other";
}

/** Where a group comes on the page: the fixed groups, then GPUs by index, then the rest. */
function groupRank(group) {
  const fixed = GROUPS.findIndex(([, name]) => name === group);
  if (fixed >= 0) return [fixed, 0];
  if (group.startsWith("GPU ")) return [GROUPS.length, Number(group.slice(4))];
  return [GROUPS.length + 1, 0];
}

function compareMetrics(a, b) {
  const [rankA, indexA] = groupRank(groupOf(a));
  const [rankB, indexB] = groupRank(groupOf(b));
  return rankA - rankB || indexA - indexB || a.localeCompare(b);
}

/**
 * The system metrics of a set of runs (their `system` streams), one panel per metric, in
 * groups (process, CPU, memory, disk, network, each GPU), the runs overlaid, x the time
 * since each run was created or the wall time. The samples arrive over the page's live
 * stream (`feed`): all of a run's first (downsampled by the server), then the new ones.
 */
export class SystemGrid extends PanelGrid {
  constructor(feed) {
    super({
      name: "system",
      xLabels: X_LABELS,
      labels: { x: "Time axis", filter: "System metrics", group: "System chart options" },
      filterHint: "cpu",
      smoothing: false,
      log: false,
      height: 140,
      empty: "No system metrics recorded.",
    });
    this.grid.classList.add("system-groups");
    this.data = new Map(); // run id -> {lastSeq, resample, series: {metric: {timestamp, value}}}
    this.groups = new Map(); // group -> {section, grid}
    feed.follow("system", (runId) => this.position(runId), { system: (message) => this.append(message) });
    this.feed = feed;
    window.trackerSystem = this; // for tests and the browser console
  }

  /** Show these runs (documents, in order: the n-th gets colour n); the page's feed follows them. */
  setRuns(runs) {
    const same =
      runs.length === this.runs.length && runs.every((run, index) => run.id === this.runs[index].id);
    this.runs = runs;
    if (same) return;
    for (const id of this.data.keys()) if (!runs.some((run) => run.id === id)) this.data.delete(id);
    this.rebuild();
  }

  /** The last seq held of a shown run's samples (-1: none, or all again to downsample). */
  position(runId) {
    if (!this.runs.some((run) => run.id === runId)) return null;
    const held = this.data.get(runId);
    return !held || held.resample ? -1 : held.lastSeq;
  }

  append({ run, after, last_seq: lastSeq, series }) {
    if (!this.runs.some((shown) => shown.id === run)) return;
    const held = this.data.get(run);
    if (after === -1) this.data.set(run, { lastSeq, resample: false, series });
    else if (held && after === held.lastSeq) {
      held.lastSeq = lastSeq;
      for (const [metric, fresh] of Object.entries(series)) {
        const old = held.series[metric];
        if (!old) held.series[metric] = fresh;
        else for (const field of ["timestamp", "value"]) old[field].push(...fresh[field]);
      }
      if (!held.resample && Object.values(held.series).some((old) => old.value.length > RESAMPLE_AT)) {
        held.resample = true;
        this.feed.reconnect();
      }
    } else return; // from a stream closed meanwhile
    this.draw();
  }

  rebuild() {
    this.groups.clear();
    super.rebuild();
  }

  keysOf(run) {
    return Object.keys(this.data.get(run.id)?.series || {});
  }

  loading() {
    return this.runs.some((run) => !this.data.has(run.id));
  }

  metrics() {
    return super.metrics().sort(compareMetrics);
  }

  columns(run, metric) {
    const series = this.data.get(run.id)?.series[metric];
    if (!series) return null;
    if (this.options.x === "timestamp") return [series.timestamp, series.value];
    return [series.timestamp.map((time) => time - run.created_at), series.value];
  }

  /** A section per group of the metrics, in order, each with its panels. */
  layout(metrics) {
    const byGroup = new Map();
    for (const metric of metrics) {
      const group = groupOf(metric);
      if (!byGroup.has(group)) byGroup.set(group, []);
      byGroup.get(group).push(metric);
    }
    for (const [group, { section }] of this.groups) {
      if (!byGroup.has(group)) {
        section.remove();
        this.groups.delete(group);
      }
    }
    [...byGroup].forEach(([group, inGroup], index) => {
      let box = this.groups.get(group);
      if (!box) {
        const grid = el("div", { class: "chart-grid small" });
        box = { section: el("section", { class: "system-group" }, el("h3", {}, group), grid), grid };
        this.groups.set(group, box);
      }
      box.section.style.setProperty("--panels", String(inGroup.length));
      if (this.grid.children[index] !== box.section)
        this.grid.insertBefore(box.section, this.grid.children[index] || null);
      this.place(box.grid, inGroup);
    });
  }
}
