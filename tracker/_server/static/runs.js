// A project's page: filters, the runs table (paged and sorted by the server), charts and
// system charts of the runs shown.

import { getExact, path } from "./api.js";
import { ChartGrid } from "./charts.js";
import {
  el,
  flatten,
  formatAgo,
  formatDuration,
  formatTime,
  formatValue,
  runColor,
  valueAt,
} from "./format.js";
import { LiveFeed } from "./live.js";
import { SystemGrid } from "./system.js";

const STATES = ["running", "finished", "failed", "crashed", "killed"];
/** Runs charted when none is selected: the first rows of the table. */
const DEFAULT_CHARTED = 5;
const MAX_CHARTED = 20;
const REFRESH_MS = 5000;
const FIXED_COLUMNS = [
  { id: "name", label: "Name", sort: ["name"] },
  { id: "state", label: "State", sort: ["state"] },
  { id: "tags", label: "Tags" },
  { id: "group", label: "Group", sort: ["group"] },
  { id: "job_type", label: "Job type", sort: ["job_type"] },
  { id: "created_at", label: "Created", sort: ["created_at"] },
  { id: "runtime", label: "Duration", sort: ["runtime"] },
];

/** Draw the page of `entity/project` into `main`. */
export function showProject(main, entity, project) {
  const page = new ProjectPage(entity, project);
  main.replaceChildren(page.element);
  page.load();
}

class ProjectPage {
  constructor(entity, project) {
    this.entity = entity;
    this.project = project;
    this.storageKey = `tracker.columns.${entity}/${project}`;
    this.filters = { search: "", state: "", tags: "", group: "", job_type: "" };
    this.sort = ["created_at"];
    this.descending = true;
    this.offset = 0;
    this.limit = 50;
    this.runs = [];
    this.total = 0;
    this.selected = new Map(); // id -> run document, in selection order
    this.seenKeys = new Map(); // "config\u0000a\u0000b" -> ["config", "a", "b"]
    this.seen = { tags: new Set(), group: new Set(), job_type: new Set() };
    this.columns = JSON.parse(localStorage.getItem(this.storageKey) || "null");
    const feed = new LiveFeed(entity, project);
    this.charts = new ChartGrid(entity, project, { onRun: (document) => this.runChanged(document), feed });
    this.system = new SystemGrid(feed);
    this.element = el(
      "div",
      { class: "project" },
      el("h1", {}, project),
      el("p", {}, el("a", { href: `/${path(entity, project)}/benchmarks` }, "Benchmarks")),
      el(
        "section",
        { "aria-labelledby": "runs-heading" },
        el("h2", { id: "runs-heading", class: "visually-hidden" }, "Runs"),
        this.filterForm(),
        (this.tools = el("div", { class: "toolbar table-tools" })),
        el("div", { class: "table-wrap" }, (this.table = el("table", { class: "runs" }))),
      ),
      el(
        "section",
        { "aria-labelledby": "charts-heading" },
        el("h2", { id: "charts-heading" }, "Charts"),
        this.charts.element,
      ),
      el(
        "section",
        { "aria-labelledby": "system-heading" },
        el("h2", { id: "system-heading" }, "System"),
        this.system.element,
      ),
    );
    setInterval(() => this.refresh(), REFRESH_MS);
  }

  filterForm() {
    const field = (name, label, input) =>
      el("span", { class: "field" }, el("label", { for: `filter-${name}` }, label), input);
    const text = (name, placeholder, list) =>
      el("input", {
        id: `filter-${name}`,
        type: "search",
        placeholder,
        autocomplete: "off",
        list,
        oninput: (event) => this.setFilter(name, event.target.value.trim(), 300),
      });
    this.lists = Object.fromEntries(
      ["tags", "group", "job_type"].map((name) => [name, el("datalist", { id: `known-${name}` })]),
    );
    const state = el(
      "select",
      { id: "filter-state", onchange: (event) => this.setFilter("state", event.target.value, 0) },
      el("option", { value: "" }, "any"),
      STATES.map((name) => el("option", { value: name }, name)),
    );
    return el(
      "form",
      {
        class: "toolbar filters",
        role: "search",
        "aria-label": "Filter runs",
        onsubmit: (event) => event.preventDefault(),
      },
      field("search", "Search", text("search", "name or id")),
      field("state", "State", state),
      field("tags", "Tag", text("tags", "any tag", "known-tags")),
      field("group", "Group", text("group", "any group", "known-group")),
      field("job_type", "Job type", text("job_type", "any job type", "known-job_type")),
      Object.values(this.lists),
    );
  }

  setFilter(name, value, delay) {
    this.filters[name] = value;
    clearTimeout(this.filterTimer);
    this.filterTimer = setTimeout(() => {
      this.offset = 0;
      this.load();
    }, delay);
  }

  query() {
    const filters = Object.fromEntries(Object.entries(this.filters).filter(([, value]) => value));
    const params = new URLSearchParams({
      filters: JSON.stringify(filters),
      sort: JSON.stringify(this.sort),
      desc: this.descending ? "1" : "0",
      limit: String(this.limit),
      offset: String(this.offset),
    });
    return `/api/v1/dashboard/runs/${path(this.entity, this.project)}?${params}`;
  }

  /** Fetch the current page of runs and draw the table and the charts (`quiet`: only if changed). */
  async load({ quiet = false } = {}) {
    const ticket = (this.ticket = (this.ticket || 0) + 1);
    let answer;
    try {
      answer = await getExact(this.query());
    } catch (error) {
      if (error.status === 401) throw error; // the app asks for a key
      if (ticket === this.ticket) this.showError(error);
      return;
    }
    if (ticket !== this.ticket) return; // a newer request was made meanwhile
    this.error?.remove();
    const signature = JSON.stringify([
      answer.total,
      answer.runs.map((run) => [run.id, run.updated_at, run.state]),
    ]);
    if (quiet && signature === this.signature) return;
    this.signature = signature;
    this.runs = answer.runs;
    this.total = answer.total;
    for (const run of this.runs) this.learn(run);
    for (const [name, list] of Object.entries(this.lists)) {
      list.replaceChildren(...[...this.seen[name]].sort().map((value) => el("option", { value })));
    }
    if (this.columns === null) this.columns = this.defaultColumns();
    this.render();
    this.chart();
  }

  /** Reload the page quietly (state, duration, new runs), unless the user is working in it. */
  refresh() {
    if (
      document.hidden ||
      this.table.contains(document.activeElement) ||
      this.tools.contains(document.activeElement)
    )
      return;
    this.load({ quiet: true });
  }

  showError(error) {
    this.error?.remove();
    this.error = el("p", { class: "error", role: "alert" }, `Could not load the runs: ${error.message}`);
    this.tools.before(this.error);
  }

  /** Remember the keys, tags, groups and job types seen, for the column picker and filters. */
  learn(run) {
    for (const part of ["config", "summary"]) {
      for (const [keys] of flatten(run[part])) {
        const full = [part, ...keys];
        this.seenKeys.set(full.join("\u0000"), full);
      }
    }
    for (const tag of run.tags || []) this.seen.tags.add(tag);
    for (const name of ["group", "job_type"]) if (run[name]) this.seen[name].add(run[name]);
  }

  defaultColumns() {
    const keys = [...this.seenKeys.values()];
    const first = (part) => keys.filter((key) => key[0] === part).slice(0, 3);
    return [...first("config"), ...first("summary")];
  }

  /** Draw the tools and the table again, keeping the keyboard focus on the same control. */
  render() {
    const focused = document.activeElement?.dataset?.focus;
    this.renderTools();
    this.renderTable();
    if (!focused) return;
    const again = this.element.querySelector(`[data-focus="${CSS.escape(focused)}"]`);
    (again && !again.disabled ? again : this.table.querySelector("#select-page"))?.focus();
  }

  renderTools() {
    const first = this.total ? this.offset + 1 : 0;
    const last = Math.min(this.offset + this.limit, this.total);
    const size = el(
      "select",
      {
        id: "page-size",
        "data-focus": "page-size",
        onchange: (event) => {
          this.limit = Number(event.target.value);
          this.offset = 0;
          this.load();
        },
      },
      [25, 50, 100, 250].map((count) =>
        el("option", { value: String(count), selected: count === this.limit }, String(count)),
      ),
    );
    this.tools.replaceChildren(
      el("span", { role: "status" }, `${first}–${last} of ${this.total.toLocaleString()} runs`),
      el(
        "button",
        {
          type: "button",
          "data-focus": "previous",
          disabled: this.offset === 0,
          onclick: () => this.goTo(this.offset - this.limit),
        },
        "Previous",
      ),
      el(
        "button",
        {
          type: "button",
          "data-focus": "next",
          disabled: last >= this.total,
          onclick: () => this.goTo(this.offset + this.limit),
        },
        "Next",
      ),
      el("label", { for: "page-size" }, "Per page"),
      size,
      el("span", { class: "spacer" }),
      el(
        "span",
        { role: "status" },
        this.selected.size ? `${this.selected.size} selected` : "Select runs to compare them",
      ),
      el(
        "button",
        {
          type: "button",
          "data-focus": "clear",
          disabled: !this.selected.size,
          onclick: () => this.clearSelection(),
        },
        "Clear selection",
      ),
      this.columnPicker(),
    );
  }

  goTo(offset) {
    this.offset = Math.max(0, offset);
    this.load();
  }

  columnPicker() {
    const chosen = new Set(this.columns.map((key) => key.join("\u0000")));
    const boxes = [...this.seenKeys.entries()]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([id, key], index) =>
        el(
          "li",
          {},
          el("input", {
            type: "checkbox",
            id: `column-${index}`,
            "data-focus": `column:${JSON.stringify(key)}`,
            checked: chosen.has(id),
            onchange: (event) => this.toggleColumn(key, event.target.checked),
          }),
          el("label", { for: `column-${index}` }, key.join(".")),
        ),
      );
    const picker = el(
      "details",
      { class: "columns" },
      el("summary", {}, "Columns"),
      el(
        "fieldset",
        {},
        el("legend", {}, "Config and summary columns"),
        boxes.length ? el("ul", {}, boxes) : el("p", { class: "muted" }, "No config or summary keys yet."),
      ),
    );
    picker.open = Boolean(this.pickerOpen);
    picker.addEventListener("toggle", () => (this.pickerOpen = picker.open));
    return picker;
  }

  toggleColumn(key, on) {
    const id = key.join("\u0000");
    this.columns = this.columns.filter((column) => column.join("\u0000") !== id);
    if (on) this.columns.push(key);
    localStorage.setItem(this.storageKey, JSON.stringify(this.columns));
    this.render();
  }

  allColumns() {
    return [
      ...FIXED_COLUMNS,
      ...this.columns.map((key) => ({ id: key.join("."), label: key.join("."), sort: key, key })),
    ];
  }

  renderTable() {
    const columns = this.allColumns();
    const pageIds = this.runs.map((run) => run.id);
    const all = el("input", {
      type: "checkbox",
      id: "select-page",
      "data-focus": "select-page",
      "aria-label": "Select all runs on this page",
      checked: pageIds.length > 0 && pageIds.every((id) => this.selected.has(id)),
      onchange: (event) => this.selectPage(event.target.checked),
    });
    const head = el(
      "tr",
      {},
      el("th", { scope: "col", class: "select" }, all),
      columns.map((column) => this.headerCell(column)),
    );
    const charted = this.chartedRuns().map((run) => run.id);
    const body = this.runs.length
      ? this.runs.map((run) => this.row(run, columns, charted))
      : [el("tr", {}, el("td", { colspan: String(columns.length + 1), class: "muted" }, "No runs match."))];
    this.table.replaceChildren(
      el("caption", { class: "visually-hidden" }, `Runs of ${this.project}`),
      el("thead", {}, head),
      el("tbody", {}, body),
    );
  }

  headerCell(column) {
    if (!column.sort) return el("th", { scope: "col" }, column.label);
    const active = this.sort.join("\u0000") === column.sort.join("\u0000");
    const arrow = active ? (this.descending ? " ▼" : " ▲") : "";
    return el(
      "th",
      { scope: "col", "aria-sort": active ? (this.descending ? "descending" : "ascending") : "none" },
      el(
        "button",
        {
          type: "button",
          class: "sort",
          "data-focus": `sort:${JSON.stringify(column.sort)}`,
          onclick: () => this.sortBy(column.sort),
        },
        column.label,
        el("span", { "aria-hidden": "true" }, arrow),
      ),
    );
  }

  sortBy(sort) {
    const same = this.sort.join("\u0000") === sort.join("\u0000");
    this.descending = same ? !this.descending : !["name", "group", "job_type", "state"].includes(sort[0]);
    this.sort = sort;
    this.offset = 0;
    this.load();
  }

  row(run, columns, charted) {
    const name = run.name || run.id;
    const box = el("input", {
      type: "checkbox",
      checked: this.selected.has(run.id),
      "aria-label": `Select run ${name}`,
      "data-focus": `select:${run.id}`,
      onchange: (event) => this.select(run, event.target.checked),
    });
    const index = charted.indexOf(run.id);
    const cells = columns.map((column) =>
      el("td", { class: `col-${column.id.replace(/[^\w-]/g, "_")}` }, this.cell(run, column, index)),
    );
    return el(
      "tr",
      { "data-id": run.id, class: this.selected.has(run.id) ? "selected" : null },
      el("td", { class: "select" }, box),
      cells,
    );
  }

  cell(run, column, chartIndex) {
    switch (column.id) {
      case "name": {
        const swatch = el("span", { class: "swatch", "aria-hidden": "true" });
        if (chartIndex >= 0) swatch.style.background = runColor(chartIndex);
        return [
          swatch,
          el(
            "a",
            { href: `/${path(this.entity, this.project)}/runs/${encodeURIComponent(run.id)}` },
            run.name || run.id,
          ),
        ];
      }
      case "state":
        return stateBadge(run.state);
      case "tags":
        return (run.tags || []).map((tag) => el("span", { class: "tag" }, tag));
      case "created_at":
        return el(
          "time",
          { datetime: new Date(run.created_at * 1000).toISOString(), title: formatTime(run.created_at) },
          formatAgo(run.created_at),
        );
      case "runtime":
        return formatDuration(run.runtime);
      default:
        return column.key
          ? formatValue(valueAt(run[column.key[0]], column.key.slice(1)))
          : formatValue(run[column.id]);
    }
  }

  select(run, on) {
    if (on) this.selected.set(run.id, run);
    else this.selected.delete(run.id);
    this.render();
    this.chart();
  }

  selectPage(on) {
    for (const run of this.runs) {
      if (on) this.selected.set(run.id, run);
      else this.selected.delete(run.id);
    }
    this.render();
    this.chart();
  }

  clearSelection() {
    this.selected.clear();
    this.render();
    this.chart();
  }

  chartedRuns() {
    if (this.selected.size) return [...this.selected.values()].slice(0, MAX_CHARTED);
    return this.runs.slice(0, DEFAULT_CHARTED);
  }

  chart() {
    const runs = this.chartedRuns();
    let note = "";
    if (!this.selected.size && runs.length)
      note = `Showing the first ${runs.length} runs of the table; select runs to compare others.`;
    else if (this.selected.size > MAX_CHARTED)
      note = `Showing the first ${MAX_CHARTED} of ${this.selected.size} selected runs.`;
    this.system.setRuns(runs);
    this.charts.setRuns(runs, note);
  }

  /** A run changed (live): update its row in place and its selected copy. */
  runChanged(document) {
    const index = this.runs.findIndex((run) => run.id === document.id);
    if (index >= 0) this.runs[index] = { ...this.runs[index], ...document };
    if (this.selected.has(document.id))
      this.selected.set(document.id, { ...this.selected.get(document.id), ...document });
    const row = this.table.querySelector(`tr[data-id="${CSS.escape(document.id)}"]`);
    if (index < 0 || !row || row.contains(window.document.activeElement)) return;
    row.replaceWith(
      this.row(
        this.runs[index],
        this.allColumns(),
        this.chartedRuns().map((run) => run.id),
      ),
    );
  }
}

/** A run's state; a running run is marked live. */
export function stateBadge(state) {
  const live = state === "running";
  return el(
    "span",
    { class: `state state-${state}`, title: live ? "live: the run is streaming" : null },
    live ? el("span", { class: "live-dot", "aria-hidden": "true" }) : null,
    live ? "running (live)" : state,
  );
}
