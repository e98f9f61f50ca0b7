// A run's page: state and timing, tags and notes (editable), charts, config, summary, files.

import { ApiError, getExact, getJson, path, request } from "./api.js";
import { ChartGrid } from "./charts.js";
import { el, flatten, formatBytes, formatDuration, formatTime, formatValue } from "./format.js";
import { MediaPanels } from "./media.js";
import { stateBadge } from "./runs.js";

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
    this.charts = new ChartGrid(entity, project, { onRun: (document) => this.update(document) });
    this.media = new MediaPanels(this.api);
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
    this.status = el("p", { class: "status", role: "status" });
    const notes = el("textarea", { id: "notes", rows: "3" });
    notes.value = this.run.notes || "";
    this.main.replaceChildren(
      this.heading,
      el("p", { class: "muted" }, el("code", {}, this.runId), ` in ${this.entity}/${this.project}`),
      this.facts,
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
        { "aria-labelledby": "files-heading" },
        el("h2", { id: "files-heading" }, "Files"),
        this.files,
      ),
      el(
        "details",
        { class: "system" },
        el("summary", {}, "System and run metadata"),
        keyValues(this.run.metadata),
      ),
    );
    this.render();
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
    this.run = { ...this.run, ...document };
    this.render();
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
    if (!files.length) {
      this.files.replaceChildren(el("p", { class: "muted" }, "No files."));
      return;
    }
    const rows = files.map((file) => {
      const url = `${this.api}/files/${file.name.split("/").map(encodeURIComponent).join("/")}`;
      const link = el(
        "a",
        {
          href: url,
          download: file.name.split("/").at(-1),
          onclick: (event) => this.download(event, url, file.name),
        },
        "Download",
      );
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

  /** Downloads go through fetch, so they carry this tab's key (a plain link cannot). */
  async download(event, url, name) {
    event.preventDefault();
    try {
      const blob = await (await request(url)).blob();
      const link = el("a", { href: URL.createObjectURL(blob), download: name.split("/").at(-1) });
      link.click();
      setTimeout(() => URL.revokeObjectURL(link.href), 10000);
    } catch (error) {
      this.status.textContent = `Could not download ${name}: ${error.message}`;
    }
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
