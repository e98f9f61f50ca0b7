// A run's page: state and timing; an Overview tab (tags and notes, editable; charts, system
// charts, media, config, summary, environment, files) and a Logs tab (the console, live).

import { ApiError, downloadFile, getExact, getJson, path } from "./api.js";
import { ChartGrid } from "./charts.js";
import { el, flatten, formatBytes, formatDuration, formatTime, formatValue } from "./format.js";
import { LiveFeed } from "./live.js";
import { ConsoleView } from "./logs.js";
import { MediaPanels } from "./media.js";
import { stateBadge } from "./runs.js";
import { SystemGrid } from "./system.js";

/** The run page's tabs: id (also the URL's #fragment) and label; the first is the default. */
const TABS = [
  ["overview", "Overview"],
  ["logs", "Logs"],
];
/** Run files the Environment panel links to when the run has them. */
const ENVIRONMENT_FILES = [
  ["diff.patch", "Diff"],
  ["requirements.txt", "Requirements"],
];

/** How many times a page reads a live run's metadata again, waiting for what it collects
 * after init() (a run written by a tracker that collects none never has it). */
const ENVIRONMENT_RELOADS = 5;

/** Draw the page of a run into `main`. */
export async function showRun(main, entity, project, runId) {
  await new RunPage(entity, project, runId, main).load();
}

class RunPage {
  constructor(entity, project, runId, main) {
    this.entity = entity;
    this.project = project;
    this.runId = runId;
    this.main = main;
    this.api = `/api/v1/runs/${path(entity, project, runId)}`;
    const feed = new LiveFeed(entity, project);
    this.charts = new ChartGrid(entity, project, { onRun: (document) => this.update(document), feed });
    this.system = new SystemGrid(feed);
    this.logs = new ConsoleView(feed, entity, project, runId);
    this.media = new MediaPanels(this.api);
    this.fileList = [];
    this.environmentReloads = 0;
  }

  async load() {
    try {
      this.run = await getExact(this.api);
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 404) throw error;
      this.main.replaceChildren(
        el("h1", {}, "No such run"),
        el(
          "p",
          {},
          `${this.entity}/${this.project} has no run ${this.runId}. `,
          el("a", { href: `/${path(this.entity, this.project)}` }, `All runs of ${this.project}`),
        ),
      );
      return;
    }
    document.title = `${this.run.name || this.runId} · tracker`;
    this.heading = el("h1", {});
    this.facts = el("dl", { class: "facts" });
    this.tags = el("div", { class: "tags-editor" });
    this.config = el("div", {});
    this.summary = el("div", {});
    this.files = el("div", {}, el("p", { class: "muted" }, "Loading…"));
    this.environment = el("div", {});
    this.status = el("p", { class: "status", role: "status" });
    const notes = el("textarea", { id: "notes", rows: "3" });
    notes.value = this.run.notes || "";
    const overview = el(
      "div",
      {},
      el(
        "section",
        { "aria-labelledby": "tags-heading" },
        el("h2", { id: "tags-heading" }, "Tags"),
        this.tags,
      ),
      el(
        "section",
        { "aria-labelledby": "notes-heading" },
        el("h2", { id: "notes-heading" }, "Notes"),
        el(
          "form",
          { class: "notes", onsubmit: (event) => this.saveNotes(event, notes.value) },
          el("label", { for: "notes", class: "visually-hidden" }, "Notes"),
          notes,
          el("button", { type: "submit" }, "Save notes"),
        ),
      ),
      this.status,
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
      (this.mediaSection = el(
        "section",
        { "aria-labelledby": "media-heading", hidden: true },
        el("h2", { id: "media-heading" }, "Media"),
        this.media.element,
      )),
      el(
        "div",
        { class: "columns-2" },
        el(
          "section",
          { "aria-labelledby": "config-heading" },
          el("h2", { id: "config-heading" }, "Config"),
          this.config,
        ),
        el(
          "section",
          { "aria-labelledby": "summary-heading" },
          el("h2", { id: "summary-heading" }, "Summary"),
          this.summary,
        ),
      ),
      el(
        "section",
        { "aria-labelledby": "environment-heading" },
        el("h2", { id: "environment-heading" }, "Environment"),
        this.environment,
      ),
      el(
        "section",
        { "aria-labelledby": "files-heading" },
        el("h2", { id: "files-heading" }, "Files"),
        this.files,
      ),
      el(
        "details",
        { class: "metadata" },
        el("summary", {}, "All run metadata"),
        keyValues(this.run.metadata),
      ),
    );
    const logs = el(
      "section",
      { "aria-labelledby": "logs-heading" },
      el("h2", { id: "logs-heading", class: "visually-hidden" }, "Logs"),
      this.logs.element,
    );
    this.main.replaceChildren(
      this.heading,
      el("p", { class: "muted" }, el("code", {}, this.runId), ` in ${this.entity}/${this.project}`),
      this.facts,
      this.tabBar({ overview, logs }),
      overview,
      logs,
    );
    this.render();
    this.renderEnvironment();
    this.system.setRuns([this.run]);
    this.charts.setRuns([this.run]);
    this.loadFiles();
    this.loadMedia();
  }

  async loadMedia() {
    try {
      this.mediaSection.hidden = !(await this.media.show(this.run.summary));
    } catch (error) {
      this.mediaSection.hidden = false;
      this.media.element.replaceChildren(el("p", { class: "error" }, `Could not read the media: ${error.message}`));
    }
  }

  /** A live change of the run (state, timing, summary) or an edit's answer. */
  update(document) {
    const moved = document.updated_at !== this.run.updated_at;
    this.run = { ...this.run, ...document };
    this.render();
    if (moved && this.environmentReloads < ENVIRONMENT_RELOADS && !this.environmentCollected())
      this.reloadEnvironment();
  }

  /** Whether the metadata a run collects after init() (OS, GPUs, git) is on the page: live
   * events leave the metadata out, so a page opened at once reads it again as it changes. */
  environmentCollected() {
    return "os" in (this.run.metadata || {});
  }

  /** Read the run's metadata and files again, for the Environment panel. */
  async reloadEnvironment() {
    this.environmentReloads += 1;
    try {
      const { metadata } = await getExact(this.api);
      this.run = { ...this.run, metadata };
    } catch {
      return; // the next change tries again
    }
    this.renderEnvironment();
    if (this.environmentCollected()) this.loadFiles();
  }

  render() {
    const run = this.run;
    this.heading.replaceChildren(run.name || run.id, " ", stateBadge(run.state));
    const ended =
      run.end_time == null
        ? ["Last heard", formatTime(run.heartbeat_at)]
        : ["Ended", formatTime(run.end_time)];
    const facts = [
      ["State", stateBadge(run.state)],
      ["Created", formatTime(run.created_at)],
      ended,
      ["Duration", formatDuration(run.runtime)],
      ["Last step", run.last_step >= 0 ? String(run.last_step) : "none yet"],
      ["Exit code", run.exit_code == null ? "" : String(run.exit_code)],
      ["Group", run.group || ""],
      ["Job type", run.job_type || ""],
    ].filter(([, value]) => value !== "");
    if (run.parent) {
      const href = `/${path(this.entity, this.project)}/runs/${encodeURIComponent(run.parent.run_id)}`;
      facts.push(["Forked from", [el("a", { href }, run.parent.run_id), ` at step ${run.parent.step}`]]);
    }
    this.facts.replaceChildren(
      ...facts.map(([term, value]) => el("div", {}, el("dt", {}, term), el("dd", {}, value))),
    );
    this.renderTags();
    this.config.replaceChildren(keyValues(run.config));
    this.summary.replaceChildren(keyValues(run.summary));
  }

  renderTags() {
    const input = el("input", { id: "new-tag", autocomplete: "off", maxlength: "256" });
    const chips = (this.run.tags || []).map((tag) =>
      el(
        "li",
        { class: "tag" },
        tag,
        el(
          "button",
          {
            type: "button",
            class: "remove",
            "aria-label": `Remove tag ${tag}`,
            onclick: () => this.saveTags(this.run.tags.filter((other) => other !== tag)),
          },
          "×",
        ),
      ),
    );
    this.tags.replaceChildren(
      chips.length
        ? el("ul", { class: "tag-list", "aria-label": "Tags" }, chips)
        : el("p", { class: "muted" }, "No tags."),
      el(
        "form",
        {
          class: "add-tag",
          onsubmit: (event) => {
            event.preventDefault();
            const tag = input.value.trim();
            if (tag && !this.run.tags.includes(tag)) this.saveTags([...this.run.tags, tag], true);
          },
        },
        el("label", { for: "new-tag" }, "Add a tag"),
        input,
        el("button", { type: "submit" }, "Add"),
      ),
    );
  }

  async saveTags(tags, refocus = false) {
    if (await this.patch({ tags }, "Tags saved.")) {
      // the buttons were redrawn: keep the keyboard where it was
      (refocus ? this.tags.querySelector("#new-tag") : this.tags.querySelector("button, input"))?.focus();
    }
  }

  async saveNotes(event, notes) {
    event.preventDefault();
    await this.patch({ notes: notes || null }, "Notes saved.");
  }

  async patch(body, done) {
    this.status.textContent = "Saving…";
    try {
      this.update(await getExact(this.api, { method: "PATCH", body }));
      this.status.textContent = done;
      return true;
    } catch (error) {
      this.status.textContent = `Not saved: ${error.message}`;
      return false;
    }
  }

  async loadFiles() {
    let files;
    try {
      ({ files } = await getJson(`${this.api}/files`));
    } catch (error) {
      this.files.replaceChildren(el("p", { class: "error" }, `Could not list the files: ${error.message}`));
      return;
    }
    this.fileList = files;
    this.renderEnvironment();
    if (!files.length) {
      this.files.replaceChildren(el("p", { class: "muted" }, "No files."));
      return;
    }
    const rows = files.map((file) => {
      const link = this.fileLink(file.name, "Download");
      link.setAttribute("aria-label", `Download ${file.name}`);
      return el(
        "tr",
        {},
        el("td", {}, file.name),
        el("td", { class: "number" }, formatBytes(file.size)),
        el("td", {}, formatTime(file.updated_at)),
        el("td", {}, link),
      );
    });
    this.files.replaceChildren(
      el(
        "table",
        { class: "plain" },
        el(
          "thead",
          {},
          el(
            "tr",
            {},
            ["Name", "Size", "Updated", ""].map((label) => el("th", { scope: "col" }, label)),
          ),
        ),
        el("tbody", {}, rows),
      ),
    );
  }

  /** A link that downloads a run file, through fetch so that it carries this tab's key. */
  fileLink(name, text) {
    const url = `${this.api}/files/${name.split("/").map(encodeURIComponent).join("/")}`;
    const base = name.split("/").at(-1);
    return el(
      "a",
      {
        href: url,
        download: base,
        onclick: async (event) => {
          event.preventDefault();
          try {
            await downloadFile(url, base);
          } catch (error) {
            this.status.textContent = `Could not download ${name}: ${error.message}`;
          }
        },
      },
      text,
    );
  }

  /** The tab bar over the page's panels (`{id: element}`); the URL's #fragment picks one. */
  tabBar(panels) {
    const buttons = TABS.map(([id, label]) =>
      el(
        "button",
        {
          type: "button",
          role: "tab",
          id: `tab-${id}`,
          "aria-controls": `panel-${id}`,
          onclick: () => select(id, true),
          onkeydown: (event) => {
            const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
            if (!step) return;
            const index = (TABS.findIndex(([other]) => other === id) + step + TABS.length) % TABS.length;
            select(TABS[index][0], true);
            buttons[index].focus();
          },
        },
        label,
      ),
    );
    for (const [id] of TABS) {
      panels[id].id = `panel-${id}`;
      panels[id].setAttribute("role", "tabpanel");
      panels[id].setAttribute("aria-labelledby", `tab-${id}`);
    }
    const select = (chosen, byUser) => {
      TABS.forEach(([id], index) => {
        const on = id === chosen;
        buttons[index].setAttribute("aria-selected", String(on));
        buttons[index].tabIndex = on ? 0 : -1;
        panels[id].hidden = !on;
      });
      if (chosen === "logs") this.logs.follow();
      if (byUser) {
        const hash = chosen === TABS[0][0] ? "" : `#${chosen}`;
        history.replaceState(history.state, "", location.pathname + location.search + hash);
      }
    };
    const wanted = location.hash.slice(1);
    select(TABS.some(([id]) => id === wanted) ? wanted : TABS[0][0], false);
    return el("div", { class: "tabs", role: "tablist", "aria-label": "Run views" }, buttons);
  }

  /** Where and how the run ran (its metadata), with links to its diff and requirements. */
  renderEnvironment() {
    const meta = this.run.metadata || {};
    const git = meta.git && typeof meta.git === "object" ? meta.git : null;
    const rows = [
      ["Host", meta.host],
      ["OS", meta.os],
      ["Python", meta.python],
      ["Python executable", meta.python_executable],
      ["Command", meta.command == null ? null : el("code", {}, String(meta.command))],
      ["Working directory", meta.cwd == null ? null : el("code", {}, String(meta.cwd))],
      ["CPUs", meta.cpu_count],
      ["GPUs", Array.isArray(meta.gpus) ? meta.gpus.join(", ") || "none" : null],
    ];
    if (git) {
      rows.push(
        ["Git remote", git.remote],
        ["Git branch", "branch" in git ? (git.branch ?? "none (detached HEAD)") : null],
        ["Git commit", git.commit == null ? null : el("code", {}, String(git.commit))],
        ["Uncommitted changes", typeof git.dirty === "boolean" ? (git.dirty ? "yes" : "no") : null],
      );
    }
    const names = new Set(this.fileList.map((file) => file.name));
    for (const [name, label] of ENVIRONMENT_FILES)
      if (names.has(name)) rows.push([label, this.fileLink(name, name)]);
    const shown = rows.filter(([, value]) => value !== null && value !== undefined && value !== "");
    if (!shown.length) {
      this.environment.replaceChildren(el("p", { class: "muted" }, "Nothing recorded."));
      return;
    }
    this.environment.replaceChildren(
      el(
        "table",
        { class: "plain kv environment" },
        el(
          "tbody",
          {},
          shown.map(([label, value]) =>
            el(
              "tr",
              {},
              el("th", { scope: "row" }, label),
              el("td", {}, typeof value === "object" ? value : formatValue(value)),
            ),
          ),
        ),
      ),
    );
  }
}

/** A two-column table of the leaves of nested objects. */
function keyValues(value) {
  const rows = flatten(value || {});
  if (!rows.length) return el("p", { class: "muted" }, "Nothing.");
  return el(
    "table",
    { class: "plain kv" },
    el(
      "tbody",
      {},
      rows.map(([keys, inner]) =>
        el("tr", {}, el("th", { scope: "row" }, keys.join(".")), el("td", {}, formatValue(inner))),
      ),
    ),
  );
}
