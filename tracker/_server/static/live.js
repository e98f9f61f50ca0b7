// One live event stream per page, shared by what the page follows of its runs.

import { liveUrl } from "./api.js";

/** How long after a broken stream the feed opens a new one. */
const RETRY_MS = 2000;

/**
 * The page's live stream (docs/dashboard.md, "The endpoints behind it"). Each part that
 * follows something of the runs joins with `follow(param, position, events)`: `param` is
 * its query parameter (`after`, `system`, `console`), `position(runId)` what it holds of a
 * run (null: nothing followed) and `events` its handlers by event name, given the parsed
 * JSON. A browser keeps few connections per server, so a page opens one stream, and opens
 * it again, with every part's positions, whenever the runs change or a part asks.
 */
export class LiveFeed {
  constructor(entity, project) {
    this.entity = entity;
    this.project = project;
    this.runIds = [];
    this.parts = [];
    this.source = null;
    this.timer = null;
  }

  follow(param, position, events) {
    this.parts.push({ param, position, events });
  }

  /** Follow these runs (ids, in order). */
  setRuns(runIds) {
    this.runIds = [...runIds];
    this.reconnect();
  }

  /** Open the stream again soon, from what every part holds now; calls within a task coalesce. */
  reconnect() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.open(), 0);
  }

  open() {
    this.source?.close();
    this.source = null;
    if (!this.runIds.length) return;
    const params = { runs: this.runIds.join(",") };
    for (const { param, position } of this.parts) {
      const positions = this.runIds.map((id) => position(id));
      if (positions.some((held) => held !== null)) params[param] = positions.map((held) => held ?? "").join(",");
    }
    const source = new EventSource(liveUrl(this.entity, this.project, params));
    for (const { events } of this.parts) {
      for (const [name, handler] of Object.entries(events))
        source.addEventListener(name, (event) => handler(JSON.parse(event.data)));
    }
    source.addEventListener("error", () => {
      source.close();
      if (this.source !== source) return;
      this.source = null;
      this.timer = setTimeout(() => this.open(), RETRY_MS);
    });
    this.source = source;
  }
}
