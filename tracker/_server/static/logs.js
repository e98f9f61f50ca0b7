// The Logs tab: a run's console, live, stdout and stderr told apart, its last lines only.

import { downloadFile, path } from "./api.js";
import { el, formatTime } from "./format.js";

/** The most lines shown (the server sends at most as many at once: CONSOLE_TAIL_LINES). */
export const MAX_LINES = 5000;
/** How close to the bottom (pixels) still counts as following the output. */
const BOTTOM_SLACK = 8;

/**
 * The console of one run, from the page's live stream (`feed`): its last `MAX_LINES` lines
 * first, collapsed by the server as `run.console()` collapses them, then new lines as the
 * run prints them. The view stays at the bottom unless the reader scrolled up. Text is
 * inserted as text: a printed tag shows as printed.
 */
export class ConsoleView {
  constructor(feed, entity, project, runId) {
    this.runId = runId;
    this.url = `/api/v1/dashboard/console/${path(entity, project, runId)}`;
    this.lastSeq = -1;
    this.received = false;
    this.count = 0;
    this.stick = true;
    this.box = el("div", {
      class: "console",
      role: "log",
      tabindex: "0",
      "aria-label": "Console output",
      onscroll: () => {
        this.stick = this.box.scrollTop + this.box.clientHeight >= this.box.scrollHeight - BOTTOM_SLACK;
      },
    });
    this.empty = el("p", { class: "muted" }, "Loading…");
    this.cut = el(
      "p",
      { class: "muted console-cut", hidden: true },
      `Showing the last ${MAX_LINES.toLocaleString()} lines. `,
      el("a", { href: this.url, onclick: (event) => this.download(event) }, "Download the full text"),
    );
    this.status = el("p", { class: "status", role: "status" });
    this.element = el("div", { class: "logs" }, this.cut, this.empty, this.box, this.status);
    feed.follow("console", (id) => (id === runId ? this.lastSeq : null), {
      console: (message) => this.append(message),
    });
  }

  append({ run, after, last_seq: lastSeq, cut, lines }) {
    if (run !== this.runId || after !== this.lastSeq) return; // from a stream closed meanwhile
    this.lastSeq = lastSeq;
    this.received = true;
    if (cut) {
      // lines were left out before these: the ones held no longer lead up to them
      this.box.replaceChildren();
      this.count = 0;
      this.cut.hidden = false;
    }
    const fragment = document.createDocumentFragment();
    for (const line of lines) fragment.append(consoleLine(line));
    this.box.append(fragment);
    this.count += lines.length;
    while (this.count > MAX_LINES) {
      this.box.firstElementChild.remove();
      this.count -= 1;
      this.cut.hidden = false;
    }
    this.empty.textContent = this.count ? "" : "No console output yet.";
    this.empty.hidden = Boolean(this.count);
    this.follow();
  }

  /** Keep the newest line in view, unless the reader scrolled up (call when shown again). */
  follow() {
    if (this.stick) this.box.scrollTop = this.box.scrollHeight;
  }

  async download(event) {
    event.preventDefault();
    this.status.textContent = "Downloading…";
    try {
      await downloadFile(this.url, `${this.runId}-console.txt`);
      this.status.textContent = "";
    } catch (error) {
      this.status.textContent = `Could not download the console: ${error.message}`;
    }
  }
}

/** One console line: its local time, then its text (as text), stderr marked. */
function consoleLine({ time, stream, text }) {
  const stamp = formatTime(time);
  return el(
    "div",
    { class: `line ${stream}`, title: stream === "stderr" ? "stderr" : null },
    el("time", { datetime: new Date(time * 1000).toISOString(), title: stamp }, stamp.slice(11)),
    el("span", { class: "text" }, text),
  );
}
