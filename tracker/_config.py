"""The run's config: hyperparameters set once, validated on every write, like ``wandb.config``.

Sources (`load_config_source`): a mapping, an ``argparse.Namespace``, absl flags, or
the path of a YAML file (W&B's ``config-defaults.yaml`` form included). Every write
is all-or-nothing: the whole call is validated before anything changes.
"""

from __future__ import annotations

import argparse
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Final

from tracker._errors import UsageError
from tracker._records.codec import encode_value
from tracker._wire.limits import MAX_CONFIG_VALUE_BYTES

__all__ = ["Config", "load_config_source"]

_ACCEPTED_SOURCES: Final = (
    "a dict (or any Mapping), an argparse.Namespace, absl flags (FLAGS), "
    "or the path of a YAML file (str or os.PathLike)"
)
_WANDB_FILE_KEYS: Final = frozenset({"wandb_version", "_wandb"})
_WANDB_VALUE_KEYS: Final = frozenset({"value", "desc"})
_REPR_CHARS: Final = 60


def load_config_source(
    source: object,
    include_keys: Sequence[str] | None = None,
    exclude_keys: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Turn whatever `init(config=...)` accepts into a new dict, filtered by top-level key.

    As in W&B, an empty or None key list means no filtering.

    Raises:
        UsageError: both key lists are given, a key list is a str, the source type is
            not supported, or a YAML file is missing, unreadable or not a mapping.
    """
    if include_keys and exclude_keys:
        raise UsageError(
            "config_include_keys and config_exclude_keys were both given; pass at most one of them"
        )
    for name, keys in (
        ("config_include_keys", include_keys),
        ("config_exclude_keys", exclude_keys),
    ):
        if isinstance(keys, str):
            raise UsageError(
                f"{name} is the str {keys!r}; pass a list of keys instead, e.g. [{keys!r}]"
            )
        if keys is not None and (
            not isinstance(keys, (list, tuple, set, frozenset))
            or not all(isinstance(key, str) for key in keys)
        ):
            raise UsageError(
                f"{name}={keys!r}: pass a list of config keys (str), e.g. ['lr', 'batch_size']"
            )
    data = _source_to_dict(source)
    if include_keys:
        wanted = set(include_keys)
        return {key: value for key, value in data.items() if key in wanted}
    if exclude_keys:
        unwanted = set(exclude_keys)
        return {key: value for key, value in data.items() if key not in unwanted}
    return data


def _source_to_dict(source: object) -> dict[str, Any]:
    if source is None:
        return {}
    if isinstance(source, Mapping):
        return dict(source)
    if isinstance(source, argparse.Namespace):
        return dict(vars(source))
    if isinstance(source, (str, os.PathLike)):
        return _load_yaml(os.fspath(source))
    flag_values_dict = getattr(source, "flag_values_dict", None)
    if callable(flag_values_dict):  # absl.flags.FLAGS, duck-typed: absl is optional
        return dict(flag_values_dict())
    raise UsageError(
        f"config is a {type(source).__module__}.{type(source).__qualname__}, "
        f"which cannot be read as a config; pass {_ACCEPTED_SOURCES}"
    )


def _load_yaml(path: str | bytes) -> dict[str, Any]:
    import yaml  # only YAML configs pay for the import

    """Read a YAML config file; unwrap W&B's ``{value: v, desc: ...}`` entries."""
    shown = os.fsdecode(path)
    try:
        with open(path, encoding="utf-8") as file:
            loaded = yaml.safe_load(file)
    except FileNotFoundError:
        raise UsageError(
            f"config file {shown!r} does not exist; pass the path of a YAML file, or a dict"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(
            f"config file {shown!r} cannot be read ({exc}); check the path and its permissions"
        ) from None
    except yaml.YAMLError as exc:
        raise UsageError(f"config file {shown!r} is not valid YAML; fix it: {exc}") from None
    if loaded is None:  # an empty file
        return {}
    if not isinstance(loaded, dict):
        raise UsageError(
            f"config file {shown!r} holds a {type(loaded).__name__} at the top level; "
            "it must be a mapping of keys to values (key: value lines)"
        )
    return {
        key: _unwrap_wandb_value(value)
        for key, value in loaded.items()
        if key not in _WANDB_FILE_KEYS
    }


def _unwrap_wandb_value(value: Any) -> Any:
    """W&B's config-defaults.yaml writes ``key: {value: v, desc: ...}``; keep only ``v``."""
    if isinstance(value, dict) and "value" in value and value.keys() <= _WANDB_VALUE_KEYS:
        return value["value"]
    return value


class Config(Mapping[str, Any]):
    """The run's config: a dict with attribute access that validates every write.

    Keys are str without '.'; values must encode (`encode_value`) to at most 10 MB;
    an existing key keeps its value unless ``allow_val_change``. ``on_change``
    receives the keys each write actually changed, once per write.
    """

    __slots__ = ("_allow_val_change", "_data", "_lock", "_on_change")

    _data: dict[str, Any]
    _on_change: Callable[[dict[str, Any]], None] | None
    _allow_val_change: bool
    _lock: threading.RLock

    def __init__(
        self,
        on_change: Callable[[dict[str, Any]], None] | None = None,
        allow_val_change: bool = False,
    ) -> None:
        """Create an empty config; ``allow_val_change`` is the default for every write."""
        self._data = {}
        self._on_change = on_change
        self._allow_val_change = allow_val_change
        self._lock = threading.RLock()  # validate-then-apply must not interleave across threads

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._write({key: value}, self._allow_val_change)

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails: methods and set slots never reach here.
        # Private names never look in _data, which may not be set yet (copy, pickle).
        if name.startswith("_"):
            raise AttributeError(
                f"Config has no attribute {name!r}; a key starting with '_' is read by item: "
                f"config[{name!r}]"
            )
        try:
            return self._data[name]
        except KeyError:
            known = ", ".join(repr(key) for key in list(self._data)[:10]) or "none"
            raise AttributeError(
                f"config has no key {name!r} (keys: {known}); set it first with "
                f"config.{name} = ... or config.update({{{name!r}: ...}})"
            ) from None

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_"):
            object.__setattr__(self, name, value)
            return
        if any(name in vars(klass) for klass in type(self).__mro__):
            raise UsageError(
                f"config key {name!r} cannot be set as an attribute: it would hide "
                f"Config.{name}; set it with config[{name!r}] = ... instead"
            )
        self._write({name: value}, self._allow_val_change)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"Config({self._data!r})"

    def update(self, d: object = None, allow_val_change: bool | None = None) -> None:
        """Set every key of ``d`` (anything `load_config_source` reads), all or nothing.

        Raises:
            UsageError: a key or value is invalid, or a key would change its value
                while ``allow_val_change`` (this call's, else the config's) is False.
        """
        allow = self._allow_val_change if allow_val_change is None else allow_val_change
        self._write(load_config_source(d), allow)

    def setdefaults(self, d: object) -> None:
        """Set the keys of ``d`` that the config does not have yet; existing keys stay.

        Raises:
            UsageError: a new key or value is invalid.
        """
        with self._lock:
            items = load_config_source(d)
            self._write({k: v for k, v in items.items() if k not in self._data}, False)

    def as_dict(self) -> dict[str, Any]:
        """A new dict of the config; nested dicts are copied, so changing it leaves the config."""
        return {key: _copy_dicts(value) for key, value in self._data.items()}

    def _write(self, items: Mapping[Any, Any], allow_val_change: bool) -> None:
        """Validate every item, then apply them all and report the changed ones once."""
        with self._lock:
            changed: dict[str, Any] = {}
            for key, original in items.items():
                _check_key(key)
                what = f"config key {key!r}"
                value = _with_str_keys(original, [key])
                encoded = encode_value(value, what)
                if len(encoded) > MAX_CONFIG_VALUE_BYTES:
                    raise UsageError(
                        f"{what} is {len(encoded) / 2**20:.1f} MB encoded, over the "
                        f"{MAX_CONFIG_VALUE_BYTES // 2**20} MB limit for a config value; store "
                        "large objects as files with run.save() and put their path in the config"
                    )
                if key in self._data:
                    old = self._data[key]
                    if _same_value(old, value, what):
                        continue
                    if not allow_val_change:
                        raise UsageError(
                            f"{what} already holds {_short_repr(old)}; refusing to change it "
                            f"to {_short_repr(value)}; pass allow_val_change=True (to "
                            "config.update() or tracker.init()) to change it"
                        )
                changed[key] = _copy_dicts(value)
            if not changed:
                return
            if self._on_change is not None:
                self._on_change(dict(changed))  # recorded first: if that fails, nothing changes
            self._data.update(changed)


def _check_key(key: object) -> None:
    if not isinstance(key, str):
        raise UsageError(
            f"config key {key!r} is a {type(key).__name__}; config keys must be str "
            f"(convert it, e.g. str({key!r}))"
        )
    if not key:
        raise UsageError("config key '' is empty; give the value a name")
    if "." in key:
        nested = "..."
        for part in reversed(key.split(".")):
            nested = f"{{{part!r}: {nested}}}"
        raise UsageError(f"config key {key!r} contains '.'; use nested dicts instead: {nested}")


def _with_str_keys(value: Any, path: list[Any]) -> Any:
    """``value`` with the int keys of its nested dicts made str, as W&B stores them
    (``{1: "a"}`` becomes ``{"1": "a"}``); ``value`` itself when it has none.

    Raises:
        UsageError: a nested key of another type, or an int key that clashes with a str
            key; the message says where it is nested.
    """
    if isinstance(value, Mapping):
        if all(type(key) is str for key in value):
            items = {key: _with_str_keys(item, [*path, key]) for key, item in value.items()}
            changed = any(items[key] is not item for key, item in value.items())
            return items if changed or not isinstance(value, dict) else value
        converted: dict[str, Any] = {}
        originals: dict[str, Any] = {}
        for key, item in value.items():
            if isinstance(key, bool) or not (
                isinstance(key, (str, int)) or hasattr(key, "__index__")
            ):
                where = "config" + "".join(f"[{part!r}]" for part in path)
                raise UsageError(
                    f"{where} has the key {key!r} of type {type(key).__name__}; keys of "
                    "nested dicts must be str (int keys are stored as str): convert it, e.g. "
                    f"str({key!r})"
                )
            name = key if isinstance(key, str) else str(key.__index__())
            if name in converted:
                where = "config" + "".join(f"[{part!r}]" for part in path)
                raise UsageError(
                    f"{where} has the keys {originals[name]!r} and {key!r}, both stored as "
                    f"{name!r}; keep one of them"
                )
            originals[name] = key
            converted[name] = _with_str_keys(item, [*path, name])
        return converted
    if isinstance(value, (list, tuple)):
        items_list = [_with_str_keys(item, [*path, index]) for index, item in enumerate(value)]
        if all(new is old for new, old in zip(items_list, value, strict=True)):
            return value
        return items_list if isinstance(value, list) else tuple(items_list)
    return value


def _same_value(old: Any, new: Any, what: str) -> bool:
    """Whether ``new`` equals ``old`` exactly: 1, 1.0 and True differ, NaN equals NaN.

    Compared by encoding; dicts compare key by key so their order does not matter.
    """
    if isinstance(old, dict) and isinstance(new, Mapping):
        return old.keys() == new.keys() and all(_same_value(old[k], new[k], what) for k in old)
    return encode_value(old, what) == encode_value(new, what)


def _copy_dicts(value: Any) -> Any:
    """A copy of ``value`` where every mapping, list and tuple is new and mappings are dicts."""
    if isinstance(value, Mapping):
        return {key: _copy_dicts(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy_dicts(item) for item in value]
    if isinstance(value, tuple):
        return tuple(_copy_dicts(item) for item in value)
    return value


def _short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _REPR_CHARS else text[: _REPR_CHARS - 3] + "..."
