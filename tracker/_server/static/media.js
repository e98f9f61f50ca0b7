// A run's media: images, videos and audio with a step slider, histograms over steps, tables.
//
// The summary names the media keys (its value of a key is the last one logged: W&B's
// reference dicts, docs/reference.md "Media"); their rows come from the run's history and
// their files from the run's files, fetched with this tab's key (a plain src cannot send it),
// so images, videos and audio are shown from blob: URLs.

import { decodeExact, request } from "./api.js";
import { el, formatNumber, isMedia } from "./format.js";

/** Rows of a key's history the page reads at most (the slider steps through them). */
const MAX_ROWS = 500;
/** Table rows shown at most. */
const MAX_TABLE_ROWS = 100;
const HISTOGRAM_ROW_HEIGHT = 6;

/** The media of one run: a panel per media key of its summary. */
export class MediaPanels {
  constructor(api) {
    this.api = api;
    this.blobs = new Map(); // stored file name -> blob: URL
    this.element = el("div", { class: "media-grid" });
  }

  /** Show the media keys of `summary` (nested ones too, as "a.b"); false when there is none. */
  async show(summary) {
    const found = mediaPaths(summary || {});
    if (!found.length) return false;
    const tops = [...new Set(found.map((keys) => keys[0]))];
    const rows = await this.history(tops);
    this.element.replaceChildren(
      ...found.map((keys) => {
        const points = rows
          .map((row) => ({ step: row._step, value: keys.reduce((inner, key) => inner?.[key], row) }))
          .filter((point) => isMedia(point.value));
        return this.panel(keys.join("."), points);
      }),
    );
    return true;
  }

  async history(keys) {
    const params = new URLSearchParams({ keys: keys.join(","), samples: String(MAX_ROWS) });
    const text = await (await request(`${this.api}/history?${params}`)).text();
    return text
      .split("\n")
      .filter(Boolean)
      .map((line) => decodeExact(JSON.parse(line)));
  }

  panel(name, points) {
    const kind = points.at(-1).value._type;
    const body = el("div", { class: "media-body" });
    const figure = el(
      "figure",
      { class: "panel media", "data-key": name, "data-type": kind },
      el("figcaption", {}, name),
      body,
    );
    if (kind === "histogram") {
      body.append(histogramCanvas(name, points));
      return figure;
    }
    const caption = el("p", { class: "muted media-caption" });
    const output = el("output", { class: "media-step" });
    const show = (index) => {
      const { step, value } = points[index];
      output.textContent = `step ${step}`;
      caption.textContent = value.caption || (value.captions || []).filter(Boolean).join(", ");
      this.draw(body, value).catch((error) => {
        body.replaceChildren(el("p", { class: "error" }, `Could not load it: ${error.message}`));
      });
    };
    const slider = el("input", {
      type: "range",
      class: "media-slider",
      min: "0",
      max: String(points.length - 1),
      value: String(points.length - 1),
      "aria-label": `Step of ${name}`,
      oninput: (event) => show(Number(event.target.value)),
    });
    // one value: no steps to move through
    if (points.length > 1) figure.append(el("div", { class: "toolbar" }, slider, output));
    figure.append(caption);
    show(points.length - 1);
    return figure;
  }

  /** Draw one logged value into `body`. */
  async draw(body, value) {
    switch (value._type) {
      case "image-file":
        body.replaceChildren(el("img", { src: await this.blob(value.path), alt: value.caption || value.path }));
        break;
      case "images/separated": {
        const urls = await Promise.all(value.filenames.map((name) => this.blob(name)));
        body.replaceChildren(
          ...urls.map((src, index) => el("img", { src, alt: (value.captions || [])[index] || value.filenames[index] })),
        );
        break;
      }
      case "video-file":
        body.replaceChildren(
          value.path.endsWith(".gif")
            ? el("img", { src: await this.blob(value.path), alt: value.caption || value.path })
            : el("video", { src: await this.blob(value.path), controls: true, loop: true }),
        );
        break;
      case "audio-file":
        body.replaceChildren(el("audio", { src: await this.blob(value.path), controls: true }));
        break;
      case "table-file":
        body.replaceChildren(tableOf(await (await request(this.fileUrl(value.path))).json()));
        break;
      case "html-file": {
        // no script runs in it (an empty sandbox), and it cannot reach this page
        const frame = el("iframe", { sandbox: "", title: value.path, class: "media-html" });
        frame.srcdoc = await (await request(this.fileUrl(value.path))).text();
        body.replaceChildren(frame);
        break;
      }
      default:
        body.replaceChildren(el("p", { class: "muted" }, `${value._type} is not drawn here`));
    }
  }

  fileUrl(name) {
    return `${this.api}/files/${name.split("/").map(encodeURIComponent).join("/")}`;
  }

  async blob(name) {
    if (!this.blobs.has(name)) {
      const blob = await (await request(this.fileUrl(name))).blob();
      this.blobs.set(name, URL.createObjectURL(blob));
    }
    return this.blobs.get(name);
  }
}

/** The key paths of the media values in a summary: ["img"], ["val", "img"], ... */
function mediaPaths(value, prefix = []) {
  if (isMedia(value)) return [prefix];
  if (value === null || typeof value !== "object" || Array.isArray(value)) return [];
  return Object.keys(value)
    .sort()
    .flatMap((key) => mediaPaths(value[key], [...prefix, key]));
}

/** Histograms over steps: a row per step (oldest at the top), darker where counts are high. */
function histogramCanvas(name, points) {
  const low = Math.min(...points.map(({ value }) => value.bins[0]));
  const high = Math.max(...points.map(({ value }) => value.bins.at(-1)));
  const width = 480;
  const canvas = el("canvas", {
    class: "histogram",
    width: String(width),
    height: String(points.length * HISTOGRAM_ROW_HEIGHT),
    role: "img",
    "aria-label": `${name}: ${points.length} histograms from step ${points[0].step} to ${points.at(-1).step}, values from ${formatNumber(low)} to ${formatNumber(high)}`,
    "data-steps": String(points.length),
  });
  const context = canvas.getContext("2d");
  const color = getComputedStyle(document.documentElement).getPropertyValue("--accent").trim();
  const span = high - low || 1;
  points.forEach(({ value }, row) => {
    const most = Math.max(...value.values, 0) || 1;
    value.values.forEach((count, bin) => {
      const left = ((value.bins[bin] - low) / span) * width;
      const right = ((value.bins[bin + 1] - low) / span) * width;
      context.globalAlpha = count / most;
      context.fillStyle = color;
      context.fillRect(left, row * HISTOGRAM_ROW_HEIGHT, Math.max(1, right - left), HISTOGRAM_ROW_HEIGHT);
    });
  });
  return el(
    "div",
    {},
    canvas,
    el(
      "p",
      { class: "muted" },
      `${formatNumber(low)} to ${formatNumber(high)}; steps ${points[0].step} (top) to ${points.at(-1).step}`,
    ),
  );
}

/** A logged table's first rows; media cells show their kind. */
function tableOf({ columns, data }) {
  const cell = (value) =>
    isMedia(value) ? value._type : value !== null && typeof value === "object" ? JSON.stringify(value) : String(value ?? "");
  const rows = data.slice(0, MAX_TABLE_ROWS);
  return el(
    "div",
    { class: "table-wrap" },
    el(
      "table",
      { class: "plain media-table" },
      el("thead", {}, el("tr", {}, columns.map((column) => el("th", { scope: "col" }, column)))),
      el(
        "tbody",
        {},
        rows.map((row) => el("tr", {}, row.map((value) => el("td", {}, cell(value))))),
      ),
    ),
    data.length > rows.length ? el("p", { class: "muted" }, `${rows.length} of ${data.length} rows`) : null,
  );
}
