// Talking to the server: the API key of this tab, exact JSON, and the live event stream.

const KEY = "tracker.key";

/** An error answer of the API: HTTP status, stable code, and a message saying what to do. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Keep a `?key=...` of the page's URL for this tab (sessionStorage), and drop it from the URL. */
export function takeKeyFromUrl() {
  const url = new URL(location.href);
  if (!url.searchParams.has("key")) return;
  setKey(url.searchParams.get("key"));
  url.searchParams.delete("key");
  history.replaceState(history.state, "", url.pathname + url.search + url.hash);
}

/** Use `key` (or no key, when empty) for this tab's requests. */
export function setKey(key) {
  if (key) sessionStorage.setItem(KEY, key);
  else sessionStorage.removeItem(KEY);
}

/** `encodeURIComponent` of each part, joined by "/": a safe URL path from names. */
export function path(...parts) {
  return parts.map(encodeURIComponent).join("/");
}

/** Fetch an API URL with this tab's key; an error answer throws an ApiError. */
export async function request(url, { method = "GET", body } = {}) {
  const headers = {};
  const key = sessionStorage.getItem(KEY);
  if (key) headers.Authorization = `Bearer ${key}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(url, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) {
    let error = {};
    try {
      error = (await response.json()).error || {};
    } catch {
      // not the API's error format (a proxy's page): the status says enough
    }
    throw new ApiError(response.status, error.code || "http_error", error.message || response.statusText);
  }
  return response;
}

/** Save the answer of an API URL as a file called `name`: fetched with this tab's key (a
 * plain link cannot send it), then handed to the browser from a `blob:` URL. */
export async function downloadFile(url, name) {
  const blob = await (await request(url)).blob();
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = name;
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 10000);
}

/** A plain JSON answer. */
export async function getJson(url) {
  return (await request(url)).json();
}

/** An exactly encoded JSON answer, decoded (docs/protocol.md, "Exact JSON"). */
export async function getExact(url, options) {
  return decodeExact(await (await request(url, options)).json());
}

/** The value of `[document]` or `[document, specials]`: NaN, ±Infinity and BigInt restored. */
export function decodeExact([document, specials = []]) {
  let root = document;
  for (const [where, kind] of specials) {
    const parent = where.slice(0, -1).reduce((value, part) => value[part], root);
    const old = where.length ? parent[where.at(-1)] : root;
    const special = { nan: NaN, inf: Infinity, "-inf": -Infinity }[kind] ?? BigInt(old);
    if (where.length) parent[where.at(-1)] = special;
    else root = special;
  }
  return root;
}

/** The URL of the live event stream of a project's runs with these query parameters. */
export function liveUrl(entity, project, params) {
  const query = new URLSearchParams(params);
  const key = sessionStorage.getItem(KEY);
  // EventSource cannot send headers: the server takes the key from the URL on this endpoint
  if (key) query.set("key", key);
  return `/api/v1/dashboard/live/${path(entity, project)}?${query}`;
}
