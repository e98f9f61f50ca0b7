"""Settings: the frozen, validated knobs of a run, and where their values come from.

Resolution, lowest first: class defaults < settings file (written by `tracker login`)
< environment (`TRACKER_*`) < the `settings=` argument < explicit `init()` arguments.
Every bad value is a `UsageError` naming its source: the field, the file and key, or
the environment variable.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import math
import os
import pathlib
import sys
import tempfile
import types
from collections.abc import Callable, Mapping
from typing import Any

from tracker._errors import UsageError
from tracker._wire.limits import MAX_BATCH_BYTES

if sys.version_info >= (3, 11):
    import tomllib
else:
    # tomli is the 3.10 backport of tomllib (a dependency there); absent from 3.11 envs.
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

__all__ = [
    "ENVIRONMENT_VARIABLES",
    "Settings",
    "resolve_settings",
    "settings_file_path",
    "write_settings_file",
]

ENVIRONMENT_VARIABLES: Mapping[str, str] = types.MappingProxyType(
    {
        "TRACKER_BASE_URL": "base_url",
        "TRACKER_API_KEY": "api_key",
        "TRACKER_MODE": "mode",
        "TRACKER_PROJECT": "project",
        "TRACKER_ENTITY": "entity",
        "TRACKER_RUN_ID": "run_id",
        "TRACKER_RUN_NAME": "run_name",
        "TRACKER_RUN_GROUP": "run_group",
        "TRACKER_JOB_TYPE": "run_job_type",
        "TRACKER_TAGS": "run_tags",
        "TRACKER_NOTES": "run_notes",
        "TRACKER_RESUME": "resume",
        "TRACKER_DIR": "root_dir",
        "TRACKER_SILENT": "silent",
        "TRACKER_CONSOLE": "console",
        "TRACKER_STATS_INTERVAL_SECONDS": "stats_interval_seconds",
        "TRACKER_DISABLE_STATS": "disable_stats",
        "TRACKER_DISABLE_GIT": "disable_git",
        "TRACKER_SAVE_REQUIREMENTS": "save_requirements",
    }
)
"""Environment variable -> Settings field; the one table the reference docs are built from."""

_MODES = ("online", "offline", "disabled")
_RESUME_POLICIES = ("auto", "allow", "never", "must")
_TRUE_WORDS = ("1", "true", "yes", "on")
_FALSE_WORDS = ("0", "false", "no", "off")
_TOML_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}

_TomlValue = str | int | float | bool | tuple[str, ...]


class _Invalid(Exception):
    """A field check failed; the message completes "<field>=<value> ..." (e.g. "is not a mode")."""


def _words(choices: tuple[str, ...]) -> str:
    """Join choices as "a, b or c" for messages."""
    return ", ".join(choices[:-1]) + " or " + choices[-1]


def _choice(label: str, choices: tuple[str, ...], *, optional: bool) -> Callable[[object], object]:
    """Build a check accepting one of `choices` (and None when `optional`)."""

    def check(value: object) -> object:
        if (value is None and optional) or (isinstance(value, str) and value in choices):
            return value
        raise _Invalid(f"is not a {label}; use {_words(choices)}")

    return check


def _optional_str(value: object) -> object:
    """Accept a str or None."""
    if value is None or isinstance(value, str):
        return value
    raise _Invalid("is not a string; use a str or None")


def _base_url(value: object) -> object:
    """Accept None or an http(s) URL with a host; drop trailing slashes."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise _Invalid(
            "is not a server URL; use one starting with http:// or https://, "
            "e.g. http://localhost:8080"
        )
    url = value.rstrip("/")
    if not url.partition("://")[2]:
        raise _Invalid("has no host; use e.g. http://localhost:8080")
    return url


def _tags(value: object) -> object:
    """Accept a tuple or list of str; return a tuple."""
    if isinstance(value, (tuple, list)) and all(isinstance(tag, str) for tag in value):
        return tuple(value)
    raise _Invalid("is not a list of strings; use a tuple or list of str, e.g. ('baseline', 'v2')")


def _resume(value: object) -> object:
    """Accept None, a bool, or one of W&B's resume policies."""
    if value is None or isinstance(value, bool) or value in _RESUME_POLICIES:
        return value
    raise _Invalid(
        "is not a resume policy; use None, True, False, 'auto', 'allow', 'never' or 'must'"
    )


def _root_dir(value: object) -> object:
    """Accept None, a str or an os.PathLike of str (returned as str)."""
    if value is None:
        return None
    if isinstance(value, (str, os.PathLike)):
        path = os.fspath(value)
        if isinstance(path, str):
            return path
    raise _Invalid("is not a directory path; use a str or pathlib.Path")


def _bool(value: object) -> object:
    """Accept a real bool."""
    if isinstance(value, bool):
        return value
    raise _Invalid("is not a bool; use True or False")


def _seconds(
    *, allow_zero: bool, example: str, at_least: float | None = None
) -> Callable[[object], object]:
    """Build a check for a finite duration in seconds (> 0, or >= 0 when `allow_zero`, or
    >= `at_least` when given)."""
    bound = f">= {at_least}" if at_least is not None else ">= 0" if allow_zero else "> 0"

    def check(value: object) -> object:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                seconds = float(value)
            except OverflowError:
                seconds = math.inf
            if at_least is not None:
                fits = seconds >= at_least
            else:
                fits = seconds > 0 or (allow_zero and seconds == 0)
            if math.isfinite(seconds) and fits:
                return seconds
        raise _Invalid(
            f"is not a number of seconds {bound}; use a finite int or float, e.g. {example}"
        )

    return check


def _count(
    minimum: int, unit: str, example: int, maximum: int | None = None
) -> Callable[[object], object]:
    """Build a check for an int (not a bool) of at least `minimum` (and at most `maximum`)."""
    bound = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum}"

    def check(value: object) -> object:
        if (
            isinstance(value, int)
            and not isinstance(value, bool)
            and value >= minimum
            and (maximum is None or value <= maximum)
        ):
            return value
        raise _Invalid(f"is not an int {bound}; use a whole number of {unit}, e.g. {example}")

    return check


_CHECKS: dict[str, Callable[[object], object]] = {
    "mode": _choice("mode", _MODES, optional=True),
    "base_url": _base_url,
    "api_key": _optional_str,
    "project": _optional_str,
    "entity": _optional_str,
    "run_id": _optional_str,
    "run_name": _optional_str,
    "run_group": _optional_str,
    "run_job_type": _optional_str,
    "run_notes": _optional_str,
    "run_tags": _tags,
    "resume": _resume,
    "root_dir": _root_dir,
    "silent": _bool,
    "init_timeout": _seconds(allow_zero=False, example="90"),
    "finish_timeout": _seconds(allow_zero=False, example="30"),
    "heartbeat_interval": _seconds(allow_zero=False, example="10"),
    "queue_max_events": _count(1, "events", 100_000),
    "queue_max_bytes": _count(1024, "bytes", 64 * 2**20),
    "queue_full_policy": _choice("queue-full policy", ("block", "drop"), optional=False),
    # a server takes batches of at most MAX_BATCH_BYTES: a larger batch could never be sent
    "batch_max_bytes": _count(1024, "bytes", 4 * 2**20, MAX_BATCH_BYTES),
    "batch_linger_seconds": _seconds(allow_zero=True, example="0.002"),
    "transport": _choice("transport", ("websocket", "http"), optional=False),
    "retry_initial_wait_seconds": _seconds(allow_zero=False, example="0.5"),
    "retry_max_wait_seconds": _seconds(allow_zero=False, example="60"),
    "fsync_policy": _choice("fsync policy", ("flush", "batch", "never"), optional=False),
    "console": _choice("console capture mode", ("auto", "off", "redirect"), optional=False),
    # sampling more than ten times a second costs more CPU than what it measures is worth
    "stats_interval_seconds": _seconds(
        allow_zero=False, example="15 (or disable_stats=True to take no samples)", at_least=0.1
    ),
    "disable_stats": _bool,
    "disable_git": _bool,
    "save_requirements": _bool,
}
"""Field -> check returning the normalized value; each check raises _Invalid."""


def _checked(name: str, value: object, where: str, shown_as: str | None = None) -> object:
    """Run the check of field `name`; a failure is a UsageError prefixed by `where`."""
    try:
        return _CHECKS[name](value)
    except _Invalid as exc:
        shown = f"{name}={value!r}" if shown_as is None else shown_as
        raise UsageError(f"{where}{shown} {exc}") from None


def _unknown_field(name: object, where: str) -> UsageError:
    """Build the error for a key that is not a Settings field, suggesting close matches."""
    close = difflib.get_close_matches(str(name), _FIELD_NAMES, n=3)
    if close:
        hint = "did you mean " + " or ".join(repr(match) for match in close) + "?"
    else:
        hint = "the fields are: " + ", ".join(_FIELD_NAMES)
    return UsageError(f"{where}{name!r} is not a settings field; {hint}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings:
    """How a run talks to the server, where it writes, and how its queue behaves.

    Frozen and validated on construction: a wrong type or value raises `UsageError`
    naming the field and the accepted values. Times are in seconds.

    Attributes:
        mode: "online", "offline" or "disabled"; None decides at init (online when a
            server is configured).
        base_url: the server, "http://..." or "https://..." (trailing "/" dropped).
        api_key: the key sent to the server (hidden from repr).
        project, entity, run_id, run_name, run_group, run_job_type, run_notes: defaults
            for the matching init() arguments.
        run_tags: tags of the run (a list is stored as a tuple).
        resume: None, True, False, "auto", "allow", "never" or "must" (W&B's semantics).
        root_dir: the folder whose ``tracker-runs`` folder holds run directories; None
            means the working directory.
        silent: suppress tracker's console messages.
        init_timeout: how long init() waits for the server.
        finish_timeout: how long finish() waits for the server's acknowledgements.
        heartbeat_interval: how often a live run tells the server it is alive.
        queue_max_events, queue_max_bytes: bounds of the in-memory queue.
        queue_full_policy: "block" (wait, lose nothing) or "drop" (drop and count).
        batch_max_bytes, batch_linger_seconds: how large a batch grows and how long the
            writer waits for more events before writing one.
        transport: "websocket" or "http".
        retry_initial_wait_seconds, retry_max_wait_seconds: backoff bounds of retries.
        fsync_policy: "flush" (fsync on flush()/finish()), "batch" (after every write)
            or "never".
        console: capture the program's stdout and stderr into the run: "auto" (wrap
            ``sys.stdout``/``sys.stderr``), "redirect" (file descriptors 1 and 2, so
            C extensions and child processes are captured too) or "off".
        stats_interval_seconds: how often system metrics (CPU, memory, disk, network,
            GPUs) are sampled into the run's ``system`` stream; at least 0.1.
        disable_stats: take no system metrics samples.
        disable_git: record no git state (remote, commit, branch, dirty) and no
            ``diff.patch``.
        save_requirements: store the installed packages as ``requirements.txt``.
    """

    mode: str | None = None
    base_url: str | None = None
    api_key: str | None = dataclasses.field(default=None, repr=False)
    project: str | None = None
    entity: str | None = None
    run_id: str | None = None
    run_name: str | None = None
    run_group: str | None = None
    run_job_type: str | None = None
    run_notes: str | None = None
    run_tags: tuple[str, ...] = ()
    resume: str | bool | None = None
    root_dir: str | None = None
    silent: bool = False
    init_timeout: float = 90.0
    finish_timeout: float = 30.0
    heartbeat_interval: float = 10.0
    queue_max_events: int = 100_000
    queue_max_bytes: int = 64 * 2**20
    queue_full_policy: str = "block"
    batch_max_bytes: int = 4 * 2**20
    batch_linger_seconds: float = 0.002
    transport: str = "websocket"
    retry_initial_wait_seconds: float = 0.5
    retry_max_wait_seconds: float = 60.0
    fsync_policy: str = "flush"
    console: str = "auto"
    stats_interval_seconds: float = 15.0
    disable_stats: bool = False
    disable_git: bool = False
    save_requirements: bool = True

    def __post_init__(self) -> None:
        """Validate every field and store its normalized value (tuple tags, float seconds)."""
        for name in _CHECKS:
            # Frozen: object.__setattr__ is the documented way to normalize in __post_init__.
            object.__setattr__(self, name, _checked(name, getattr(self, name), "Settings: "))
        if self.retry_initial_wait_seconds > self.retry_max_wait_seconds:
            raise UsageError(
                f"Settings: retry_initial_wait_seconds={self.retry_initial_wait_seconds!r} is "
                f"above retry_max_wait_seconds={self.retry_max_wait_seconds!r}; make the "
                "initial wait at most the max wait"
            )

    def replace(self, **changes: Any) -> Settings:
        """Return a validated copy with `changes` applied.

        Raises:
            UsageError: a change names no field, or its value is invalid.
        """
        for name in changes:
            if name not in _CHECKS:
                raise _unknown_field(name, "Settings.replace(): ")
        return dataclasses.replace(self, **changes)


_FIELD_NAMES = tuple(field.name for field in dataclasses.fields(Settings))
_DEFAULTS: dict[str, object] = {field.name: field.default for field in dataclasses.fields(Settings)}


def settings_file_path(environ: Mapping[str, str] | None = None) -> pathlib.Path:
    """Return where the settings file lives: $TRACKER_CONFIG_DIR/settings.toml, else
    ~/.config/tracker/settings.toml."""
    env = os.environ if environ is None else environ
    config_dir = env.get("TRACKER_CONFIG_DIR", "")
    if config_dir:
        return pathlib.Path(config_dir).expanduser() / "settings.toml"
    return pathlib.Path.home() / ".config" / "tracker" / "settings.toml"


def _read_settings_file(path: pathlib.Path) -> dict[str, object]:
    """Read and validate the settings file at `path`; a missing file is empty."""
    try:
        with path.open("rb") as file:
            raw: dict[str, object] = tomllib.load(file)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(
            f"settings file {path} is not valid TOML ({exc}); fix it, or delete it and run "
            "`tracker login` again"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(
            f"settings file {path} cannot be read ({exc}); make it a readable UTF-8 file, "
            "or set TRACKER_CONFIG_DIR to another directory"
        ) from None
    where = f"settings file {path}: "
    values: dict[str, object] = {}
    for key, value in raw.items():
        if key not in _CHECKS:
            raise _unknown_field(key, where)
        values[key] = _checked(key, value, where)
    return values


def _parse_environment_value(field: str, raw: str) -> object:
    """Turn the text of an environment variable into a value for `field`."""
    if field == "run_tags":
        return tuple(tag.strip() for tag in raw.split(",") if tag.strip())
    if field == "resume":
        word = raw.strip().lower()
        if word in ("true", "1"):
            return True
        if word in ("false", "0"):
            return False
        if raw in _RESUME_POLICIES:
            return raw
        raise _Invalid(
            f"is not a resume policy; use {_words((*_RESUME_POLICIES, 'true', 'false'))}"
        )
    if isinstance(_DEFAULTS[field], float):
        try:
            return float(raw)
        except ValueError:
            raise _Invalid("is not a number; use digits, e.g. 15 or 0.5") from None
    if _CHECKS[field] is _bool:
        word = raw.strip().lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
        raise _Invalid(f"is not a boolean; use {_words(_TRUE_WORDS + _FALSE_WORDS)}")
    return raw


def _environment_values(environ: Mapping[str, str]) -> dict[str, object]:
    """Collect the Settings fields set by TRACKER_* variables; empty values are ignored."""
    values: dict[str, object] = {}
    for variable, field in ENVIRONMENT_VARIABLES.items():
        raw = environ.get(variable, "")
        if not raw:
            continue
        shown = f"{variable}={raw!r}"
        try:
            parsed = _parse_environment_value(field, raw)
        except _Invalid as exc:
            raise UsageError(f"{shown} {exc}") from None
        values[field] = _checked(field, parsed, "", shown)
    return values


def _settings_argument_values(settings: Settings | Mapping[str, Any] | None) -> dict[str, object]:
    """Collect the fields the `settings=` argument sets: a Settings' non-default fields, or a
    dict's non-None entries."""
    if settings is None:
        return {}
    if isinstance(settings, Settings):
        return {
            name: getattr(settings, name)
            for name in _FIELD_NAMES
            if getattr(settings, name) != _DEFAULTS[name]
        }
    if not isinstance(settings, Mapping):
        raise UsageError(
            f"settings={settings!r} is a {type(settings).__name__}; use a tracker.Settings "
            "or a dict of its fields, e.g. settings={'mode': 'offline'}"
        )
    values: dict[str, object] = {}
    for name, value in settings.items():
        if name not in _CHECKS:
            raise _unknown_field(name, "settings argument: ")
        if value is not None:
            values[name] = _checked(name, value, "", f"settings[{name!r}]={value!r}")
    return values


def resolve_settings(
    init_overrides: Mapping[str, Any],
    settings: Settings | Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Merge defaults < settings file < environment < `settings` < `init_overrides`.

    Args:
        init_overrides: fields the caller of init() set explicitly; None means not given.
        settings: the `settings=` argument: a Settings (its non-default fields count) or
            a dict of field names (None values are skipped).
        environ: the environment to read; defaults to os.environ.

    Raises:
        UsageError: an unknown field or a bad value, naming where it came from.
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = _read_settings_file(settings_file_path(env))
    values.update(_environment_values(env))
    values.update(_settings_argument_values(settings))
    for name, value in init_overrides.items():
        if name not in _CHECKS:
            raise _unknown_field(name, "init(): ")
        if value is not None:
            values[name] = value
    return Settings(**values)


def _toml_string(text: str) -> str:
    """Quote `text` as a TOML basic string."""
    parts = ['"']
    for char in text:
        if char in _TOML_ESCAPES:
            parts.append(_TOML_ESCAPES[char])
        elif char < " " or char == "\x7f":
            parts.append(f"\\u{ord(char):04x}")
        else:
            parts.append(char)
    parts.append('"')
    return "".join(parts)


def _toml_value(value: _TomlValue) -> str:
    """Render a flat value (or a tuple of str) as TOML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        # repr of a finite float is valid TOML ("0.5", "1e-05"); the checks reject nan/inf.
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    return "[" + ", ".join(_toml_string(item) for item in value) + "]"


def _storable(name: str, value: object, where: str) -> _TomlValue:
    """Narrow a checked value to what TOML can hold; None has no TOML form."""
    if isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, tuple):
        return value
    raise UsageError(
        f"{where}{name}={value!r} cannot be stored in the settings file; "
        "use a str, int, float or bool"
    )


def write_settings_file(
    values: Mapping[str, str | int | float | bool], environ: Mapping[str, str] | None = None
) -> pathlib.Path:
    """Merge `values` into the settings file and return its path (used by `tracker login`).

    The file is replaced atomically and has mode 0o600, because it holds the API key.

    Raises:
        UsageError: an unknown field, a bad value, an unreadable existing file, or a
            directory that cannot be written.
    """
    path = settings_file_path(environ)
    where = f"settings file {path}: "
    merged: dict[str, _TomlValue] = {
        name: _storable(name, value, where) for name, value in _read_settings_file(path).items()
    }
    for name, value in values.items():
        if name not in _CHECKS:
            raise _unknown_field(name, where)
        merged[name] = _storable(name, _checked(name, value, where), where)
    lines = ["# tracker settings (keys are tracker.Settings fields); written by `tracker login`"]
    lines += [f"{name} = {_toml_value(merged[name])}" for name in sorted(merged)]
    try:
        data = ("\n".join(lines) + "\n").encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UsageError(
            f"{where}a value contains a character UTF-8 cannot encode ({exc}); remove it"
        ) from None
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # mkstemp creates the file with mode 0o600, so the key is never readable by others,
        # and os.replace makes the new file appear whole or not at all.
        fd, temporary = tempfile.mkstemp(prefix=".settings-", suffix=".toml", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
    except OSError as exc:
        raise UsageError(
            f"{where}cannot be written ({exc}); make {path.parent} writable or set "
            "TRACKER_CONFIG_DIR to a writable directory"
        ) from None
    return path
