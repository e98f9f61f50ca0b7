// The dashboard's entry point: read the path, draw the page, explain errors.

import { ApiError, getJson, path, setKey, takeKeyFromUrl } from "./api.js";
import { showBenchmarks } from "./benchmarks.js";
import { el, formatAgo, formatTime } from "./format.js";
import { showRun } from "./run.js";
import { showProject } from "./runs.js";

const main = document.getElementById("main");
const crumbs = document.getElementById("crumbs");

/** The projects of the caller's entity. */
async function showProjects() {
  const [{ entity }, { projects }] = await Promise.all([
    getJson("/api/v1/viewer"),
    getJson("/api/v1/projects"),
  ]);
  const heading = el("h1", {}, "Projects ", el("span", { class: "muted" }, `of ${entity}`));
  if (!projects.length) {
    main.replaceChildren(
      heading,
      el("p", {}, "No runs yet. Point a client at this server and start a run:"),
      el(
        "pre",
        {},
        `import tracker\nrun = tracker.init(project="mnist", settings={"base_url": "${location.origin}"})\nrun.log({"loss": 0.5})`,
      ),
    );
    return;
  }
  const rows = projects.map((project) =>
    el(
      "tr",
      {},
      el("th", { scope: "row" }, el("a", { href: `/${path(entity, project.name)}` }, project.name)),
      el("td", { class: "number" }, project.runs.toLocaleString()),
      el("td", {}, el("time", { title: formatTime(project.updated_at) }, formatAgo(project.updated_at))),
    ),
  );
  main.replaceChildren(
    heading,
    el(
      "table",
      { class: "plain projects" },
      el(
        "thead",
        {},
        el(
          "tr",
          {},
          el("th", { scope: "col" }, "Project"),
          el("th", { scope: "col" }, "Runs"),
          el("th", { scope: "col" }, "Updated"),
        ),
      ),
      el("tbody", {}, rows),
    ),
  );
}

function setCrumbs(parts) {
  const items = [el("a", { href: "/" }, "Projects")];
  if (parts.length >= 2) items.push(el("a", { href: `/${path(parts[0], parts[1])}` }, parts[1]));
  if (parts.length === 3) items.push(el("span", {}, "Benchmarks"));
  if (parts.length === 4) items.push(el("span", {}, parts[3]));
  const last = items.at(-1);
  last.setAttribute("aria-current", "page");
  crumbs.replaceChildren(
    el(
      "ol",
      {},
      items.map((item) => el("li", {}, item)),
    ),
  );
}

/** A form for the API key when the server needs one (kept for this tab only). */
function askForKey(error) {
  const input = el("input", { id: "api-key", type: "password", autocomplete: "off", required: true });
  main.replaceChildren(
    el("h1", {}, "This server needs an API key"),
    el("p", {}, error.message),
    el(
      "form",
      {
        class: "key-form",
        onsubmit: (event) => {
          event.preventDefault();
          setKey(input.value.trim());
          location.reload();
        },
      },
      el("label", { for: "api-key" }, "API key"),
      input,
      el("button", { type: "submit" }, "Use this key"),
    ),
    el(
      "p",
      { class: "muted" },
      "The key stays in this browser tab (sessionStorage). You can also open the dashboard once as ",
      el("code", {}, `${location.origin}/?key=YOUR_KEY`),
      ".",
    ),
  );
  input.focus();
}

function showError(error) {
  if (error instanceof ApiError && error.status === 401) {
    askForKey(error);
    return;
  }
  main.replaceChildren(
    el("h1", {}, "Something went wrong"),
    el("p", { class: "error", role: "alert" }, error.message || String(error)),
  );
}

async function route() {
  takeKeyFromUrl();
  const parts = location.pathname.split("/").filter(Boolean).map(decodeURIComponent);
  setCrumbs(parts);
  if (parts.length === 0) await showProjects();
  else if (parts.length === 2) {
    document.title = `${parts[1]} · tracker`;
    showProject(main, parts[0], parts[1]);
  } else if (parts.length === 3 && parts[2] === "benchmarks") {
    document.title = `Benchmarks of ${parts[1]} · tracker`;
    showBenchmarks(main, parts[0], parts[1]);
  } else if (parts.length === 4 && parts[2] === "runs") await showRun(main, parts[0], parts[1], parts[3]);
  else
    main.replaceChildren(el("h1", {}, "No such page"), el("p", {}, el("a", { href: "/" }, "All projects")));
}

window.addEventListener("unhandledrejection", (event) => showError(event.reason));
route().catch(showError);
