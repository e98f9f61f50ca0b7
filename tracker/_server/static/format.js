// Building DOM safely and formatting values, times and durations for people.

/**
 * An element: `el("a", {href: "/", class: "x"}, "text", child)`. Text is always text
 * (never parsed as HTML), so run names and config values cannot inject markup.
 * Attributes starting with "on" are event listeners; `false`/`null` attributes are left out.
 */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name in node && typeof value !== "string") node[name] = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  node.append(...children.flat().filter((child) => child !== null && child !== undefined && child !== false));
  return node;
}

/** An axis tick: as `formatNumber`, with as many decimals as the ticks' step needs, so
 * ticks 0.0005 apart on a scale near 27.16 do not all read "27.16". */
export function formatTick(value, step) {
  if (!(step > 0) || !Number.isFinite(value) || Math.abs(value) >= 1e6 || step < 1e-9) {
    return formatNumber(value);
  }
  let decimals = 0; // the fewest that write the step exactly: 0.25 needs 2, 0.0005 needs 4
  while (decimals < 9 && Math.abs(step * 10 ** decimals - Math.round(step * 10 ** decimals)) > 1e-6)
    decimals += 1;
  return decimals === 0 ? formatNumber(value) : value.toFixed(decimals);
}

/** A number for a table cell or legend: integers whole, others with 4 significant digits. */
export function formatNumber(value) {
  if (typeof value === "bigint") return value.toString();
  if (!Number.isFinite(value)) return String(value);
  if (Number.isInteger(value) && Math.abs(value) < 1e15) return String(value);
  const size = Math.abs(value);
  if (size !== 0 && (size >= 1e6 || size < 1e-3)) return value.toExponential(3);
  return String(Number(value.toPrecision(4)));
}

const MEDIA_TYPES = new Set([
  "image-file",
  "images/separated",
  "histogram",
  "table-file",
  "video-file",
  "audio-file",
  "html-file",
]);

/** Whether a value is the reference of a logged media value (W&B's `{"_type": ...}`). */
export function isMedia(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value) && MEDIA_TYPES.has(value._type);
}

/** A media reference as short text, e.g. "image 28×28", "table 3×100". */
function mediaLabel(value) {
  const size = value.width && value.height ? ` ${value.width}×${value.height}` : "";
  switch (value._type) {
    case "histogram":
      return `histogram (${value.values.length} bins)`;
    case "table-file":
      return `table ${value.ncols}×${value.nrows}`;
    case "images/separated":
      return `${value.count} images${size}`;
    default:
      return `${value._type.replace("-file", "")}${size}`;
  }
}

/** Any config or summary value, as short text. */
export function formatValue(value) {
  if (value === null || value === undefined) return "";
  if (isMedia(value)) return mediaLabel(value);
  if (typeof value === "number" || typeof value === "bigint") return formatNumber(value);
  if (typeof value === "string") return value;
  if (typeof value === "boolean") return String(value);
  return JSON.stringify(value, (_, inner) => (typeof inner === "bigint" ? inner.toString() : inner));
}

/** Unix seconds as local date and time, e.g. "2024-05-01 14:03:07". */
export function formatTime(seconds) {
  if (typeof seconds !== "number") return "";
  const date = new Date(seconds * 1000);
  const two = (number) => String(number).padStart(2, "0");
  return (
    `${date.getFullYear()}-${two(date.getMonth() + 1)}-${two(date.getDate())} ` +
    `${two(date.getHours())}:${two(date.getMinutes())}:${two(date.getSeconds())}`
  );
}

/** How long ago unix seconds were, e.g. "5 min ago". */
export function formatAgo(seconds) {
  if (typeof seconds !== "number") return "";
  const age = Date.now() / 1000 - seconds;
  if (age < 60) return "just now";
  if (age < 3600) return `${Math.floor(age / 60)} min ago`;
  if (age < 86400) return `${Math.floor(age / 3600)} h ago`;
  return `${Math.floor(age / 86400)} d ago`;
}

/** Seconds as a duration, e.g. "0.5s", "42s", "3m 05s", "2h 10m". */
export function formatDuration(seconds) {
  if (typeof seconds !== "number" || !Number.isFinite(seconds)) return "";
  if (seconds < 9.95) return `${Number(Math.max(0, seconds).toPrecision(2))}s`;
  const whole = Math.round(seconds);
  if (whole < 60) return `${whole}s`;
  const two = (number) => String(number).padStart(2, "0");
  if (whole < 3600) return `${Math.floor(whole / 60)}m ${two(whole % 60)}s`;
  return `${Math.floor(whole / 3600)}h ${two(Math.floor(whole / 60) % 60)}m`;
}

/** A byte count, e.g. "1.5 MB". */
export function formatBytes(size) {
  const units = ["B", "kB", "MB", "GB", "TB"];
  let index = 0;
  while (size >= 1000 && index < units.length - 1) {
    size /= 1000;
    index += 1;
  }
  return `${index ? size.toFixed(1) : size} ${units[index]}`;
}

/** The leaves of nested plain objects (a media reference is one), as [[key, key, ...], value]
 * pairs in key order. */
export function flatten(value, prefix = []) {
  if (isMedia(value)) return prefix.length ? [[prefix, value]] : [];
  if (value === null || typeof value !== "object" || Array.isArray(value) || !Object.keys(value).length) {
    return prefix.length ? [[prefix, value]] : [];
  }
  return Object.keys(value)
    .sort()
    .flatMap((key) => flatten(value[key], [...prefix, key]));
}

/** The value at a key path of nested objects, or undefined. */
export function valueAt(value, keys) {
  return keys.reduce(
    (inner, key) => (inner !== null && typeof inner === "object" ? inner[key] : undefined),
    value,
  );
}

const PALETTE = [
  "#1f77b4",
  "#e8590c",
  "#2b8a3e",
  "#d6336c",
  "#7048e8",
  "#8d6e63",
  "#0c8599",
  "#c2255c",
  "#5c940d",
  "#495057",
];

/** The colour of the n-th run drawn in the charts (the table shows the same one). */
export function runColor(index) {
  return PALETTE[index % PALETTE.length];
}
