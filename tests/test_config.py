"""Tests for the run config: its sources, validation and change reporting."""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tracker._config import Config, load_config_source
from tracker._errors import UsageError
from tracker._wire.limits import MAX_CONFIG_VALUE_BYTES


class FakeAbslFlags:
    """Stands in for absl.flags.FLAGS, which the loader recognises by flag_values_dict()."""

    def flag_values_dict(self) -> dict[str, Any]:
        return {"lr": 0.01, "epochs": 3}


class Recorder:
    """An on_change callback that remembers every call."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, changed: dict[str, Any]) -> None:
        self.calls.append(changed)


# load_config_source


def test_none_source_is_empty() -> None:
    """None gives an empty config."""
    assert load_config_source(None) == {}


def test_mapping_source_is_copied() -> None:
    """A mapping is returned as a new dict, so the caller's dict is not shared."""
    source = {"lr": 0.1}
    loaded = load_config_source(source)
    assert loaded == {"lr": 0.1}
    assert loaded is not source


def test_namespace_source_gives_its_attributes() -> None:
    """An argparse.Namespace gives its attributes."""
    assert load_config_source(argparse.Namespace(lr=0.1, name="x")) == {"lr": 0.1, "name": "x"}


def test_absl_flags_source_uses_flag_values_dict() -> None:
    """An object with flag_values_dict() (absl FLAGS) gives that dict."""
    assert load_config_source(FakeAbslFlags()) == {"lr": 0.01, "epochs": 3}


def test_yaml_path_source_is_loaded(tmp_path: Path) -> None:
    """A str or PathLike path is read as YAML."""
    path = tmp_path / "config.yaml"
    path.write_text("lr: 0.1\nlayers: [64, 32]\noptim:\n  name: adam\n", encoding="utf-8")
    expected = {"lr": 0.1, "layers": [64, 32], "optim": {"name": "adam"}}
    assert load_config_source(str(path)) == expected
    assert load_config_source(path) == expected


def test_wandb_config_defaults_yaml_is_unwrapped(tmp_path: Path) -> None:
    """W&B's {value, desc} entries are unwrapped and its bookkeeping keys dropped."""
    path = tmp_path / "config-defaults.yaml"
    path.write_text(
        "wandb_version: 1\n"
        "_wandb:\n  desc: null\n  value: {cli_version: 0.18.0}\n"
        "epochs:\n  desc: Number of epochs to train over\n  value: 100\n"
        "batch_size:\n  value: 32\n"
        "optim:\n  name: adam\n  value: 3\n",
        encoding="utf-8",
    )
    assert load_config_source(path) == {
        "epochs": 100,
        "batch_size": 32,
        "optim": {"name": "adam", "value": 3},
    }


def test_empty_yaml_file_is_empty_config(tmp_path: Path) -> None:
    """An empty YAML file gives an empty config."""
    path = tmp_path / "empty.yaml"
    path.write_text("", encoding="utf-8")
    assert load_config_source(path) == {}


def test_missing_yaml_file_is_usage_error(tmp_path: Path) -> None:
    """A path that does not exist is a UsageError naming it."""
    path = tmp_path / "nope.yaml"
    with pytest.raises(UsageError, match=r"nope\.yaml.*does not exist"):
        load_config_source(str(path))


def test_unreadable_yaml_path_is_usage_error(tmp_path: Path) -> None:
    """A path that cannot be read (here a directory) is a UsageError naming it."""
    with pytest.raises(UsageError, match=f"{tmp_path.name}.*cannot be read"):
        load_config_source(tmp_path)


def test_invalid_yaml_is_usage_error(tmp_path: Path) -> None:
    """A file that is not valid YAML is a UsageError naming it."""
    path = tmp_path / "bad.yaml"
    path.write_text("lr: [0.1\n", encoding="utf-8")
    with pytest.raises(UsageError, match=r"bad\.yaml.*not valid YAML"):
        load_config_source(path)


def test_yaml_with_list_at_top_level_is_usage_error(tmp_path: Path) -> None:
    """A YAML file whose top level is not a mapping is a UsageError naming it."""
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n", encoding="utf-8")
    with pytest.raises(UsageError, match=r"list\.yaml.*holds a list.*must be a mapping"):
        load_config_source(path)


@pytest.mark.parametrize("source", [42, [("lr", 0.1)], b"config.yaml", object()])
def test_unsupported_source_type_is_usage_error(source: object) -> None:
    """Any other type is a UsageError naming it and the accepted types."""
    with pytest.raises(UsageError, match=f"{type(source).__qualname__}.*argparse.Namespace"):
        load_config_source(source)


def test_include_keys_keeps_only_those() -> None:
    """include_keys keeps only the listed top-level keys."""
    source = {"lr": 0.1, "epochs": 3, "seed": 1}
    assert load_config_source(source, include_keys=["lr", "seed", "other"]) == {
        "lr": 0.1,
        "seed": 1,
    }


def test_exclude_keys_drops_those() -> None:
    """exclude_keys drops the listed top-level keys."""
    source = {"lr": 0.1, "epochs": 3, "seed": 1}
    assert load_config_source(source, exclude_keys=["seed"]) == {"lr": 0.1, "epochs": 3}


def test_filters_apply_to_yaml_and_namespace(tmp_path: Path) -> None:
    """The key filters apply to every source type."""
    path = tmp_path / "c.yaml"
    path.write_text("a: 1\nb: 2\n", encoding="utf-8")
    assert load_config_source(path, include_keys=["a"]) == {"a": 1}
    assert load_config_source(argparse.Namespace(a=1, b=2), exclude_keys=["a"]) == {"b": 2}


def test_include_and_exclude_together_is_usage_error() -> None:
    """Giving both include_keys and exclude_keys is a UsageError naming both."""
    with pytest.raises(UsageError, match="config_include_keys and config_exclude_keys"):
        load_config_source({"a": 1}, include_keys=["a"], exclude_keys=["b"])


def test_key_list_given_as_str_is_usage_error() -> None:
    """A bare str as a key list is a UsageError, not a filter by its characters."""
    with pytest.raises(UsageError, match="config_exclude_keys is the str 'lr'"):
        load_config_source({"lr": 1}, exclude_keys="lr")


# Config: reading


def test_item_and_attribute_access() -> None:
    """Keys are read by item and by attribute; nested dicts by item."""
    config = Config()
    config.update({"lr": 0.1, "optim": {"name": "adam", "betas": [0.9, 0.99]}})
    assert config["lr"] == 0.1
    assert config.lr == 0.1
    assert config.optim["name"] == "adam"
    assert config["optim"]["betas"] == [0.9, 0.99]


def test_missing_attribute_raises_attribute_error() -> None:
    """A missing key read as an attribute raises AttributeError, so hasattr works."""
    config = Config()
    config.lr = 0.1
    assert hasattr(config, "lr")
    assert not hasattr(config, "epochs")
    with pytest.raises(AttributeError, match=r"no key 'epochs'.*'lr'.*config\.epochs = "):
        _ = config.epochs


def test_missing_item_raises_key_error() -> None:
    """A missing key read by item raises KeyError."""
    with pytest.raises(KeyError):
        Config()["lr"]


def test_private_key_is_read_by_item_only() -> None:
    """A key starting with '_' is stored by item; attribute access points to item access."""
    config = Config()
    config["_seed"] = 1
    assert config["_seed"] == 1
    with pytest.raises(AttributeError, match=r"config\['_seed'\]"):
        _ = config._seed


def test_mapping_protocol() -> None:
    """Config supports in, iter, len, keys, values, items, get and dict()."""
    config = Config()
    config.update({"a": 1, "b": "x"})
    assert "a" in config
    assert "c" not in config
    assert list(config) == ["a", "b"]
    assert len(config) == 2
    assert list(config.keys()) == ["a", "b"]
    assert list(config.values()) == [1, "x"]
    assert list(config.items()) == [("a", 1), ("b", "x")]
    assert config.get("a") == 1
    assert config.get("c") is None
    assert config.get("c", 5) == 5
    assert dict(config) == {"a": 1, "b": "x"}


def test_repr_shows_the_dict() -> None:
    """The repr reads like Config({...})."""
    config = Config()
    config.lr = 0.1
    assert repr(config) == "Config({'lr': 0.1})"


def test_as_dict_copies_nested_dicts() -> None:
    """as_dict returns a new dict whose nested dicts can change without changing the config."""
    config = Config()
    config.update({"optim": {"name": "adam"}})
    copy = config.as_dict()
    copy["optim"]["name"] = "sgd"
    copy["new"] = 1
    assert config.as_dict() == {"optim": {"name": "adam"}}


def test_stored_value_does_not_follow_the_callers_dict() -> None:
    """The config keeps a copy of nested dicts and lists, not the caller's objects."""
    source: dict[str, Any] = {"optim": {"name": "adam", "betas": [0.9]}}
    config = Config()
    config.update(source)
    source["optim"]["name"] = "sgd"
    source["optim"]["betas"].append(0.99)
    assert config.optim == {"name": "adam", "betas": [0.9]}


# Config: writing


def test_attribute_and_item_writes() -> None:
    """Keys are set by attribute and by item."""
    config = Config()
    config.lr = 0.1
    config["epochs"] = 3
    assert config.as_dict() == {"lr": 0.1, "epochs": 3}


def test_update_accepts_every_source_type(tmp_path: Path) -> None:
    """update() reads mappings, Namespaces, absl flags, YAML paths and None."""
    path = tmp_path / "c.yaml"
    path.write_text("from_yaml: 1\n", encoding="utf-8")
    config = Config()
    config.update({"from_dict": 1})
    config.update(argparse.Namespace(from_namespace=1))
    config.update(FakeAbslFlags())
    config.update(path)
    config.update(None)
    config.update()
    assert set(config) == {"from_dict", "from_namespace", "lr", "epochs", "from_yaml"}


def test_update_with_unsupported_type_is_usage_error() -> None:
    """update() with a type it cannot read is a UsageError naming the type."""
    with pytest.raises(UsageError, match="int"):
        Config().update(3)


def test_attribute_shadowing_a_method_is_usage_error() -> None:
    """Setting a key that would hide a method by attribute is refused; item access works."""
    config = Config()
    with pytest.raises(UsageError, match=r"'items'.*config\['items'\]"):
        config.items = 5  # type: ignore[method-assign,assignment]
    config["items"] = 5
    assert config["items"] == 5


def test_dotted_key_is_usage_error() -> None:
    """A key containing '.' is refused with the nested-dict spelling to use instead."""
    with pytest.raises(UsageError, match=r"'a\.b' contains '\.'.*\{'a': \{'b': \.\.\.\}\}"):
        Config()["a.b"] = 1


def test_non_str_key_is_usage_error() -> None:
    """A key that is not a str is refused, naming it and its type."""
    with pytest.raises(UsageError, match="config key 1 is a int"):
        Config().update({1: "x"})


def test_empty_key_is_usage_error() -> None:
    """An empty key is refused."""
    with pytest.raises(UsageError, match="config key '' is empty"):
        Config()[""] = 1


def test_unencodable_value_is_usage_error() -> None:
    """A value that cannot be encoded is refused, naming the key."""
    with pytest.raises(UsageError, match="config key 'model'"):
        Config().model = object()


def test_nested_int_keys_are_stored_as_str_as_wandb_does() -> None:
    """Int keys of nested dicts (numpy ints too, in lists of dicts too) become str keys."""
    config = Config()
    config.schedule = {1: 0.1, np.int64(10): {20: "x"}}
    config.update({"stages": [{0: "warmup"}]})
    assert config.as_dict() == {
        "schedule": {"1": 0.1, "10": {"20": "x"}},
        "stages": [{"0": "warmup"}],
    }


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"a": {(1, 2): 3}}, r"config\['model'\]\['a'\] has the key \(1, 2\) of type tuple"),
        ({"layers": [{None: 1}]}, r"config\['model'\]\['layers'\]\[0\] has the key None"),
        ({1: "a", "1": "b"}, r"config\['model'\] has the keys 1 and '1', both stored as '1'"),
    ],
)
def test_a_bad_nested_key_is_usage_error_saying_where_it_is(value: Any, message: str) -> None:
    """A nested key that is neither str nor int, or an int key clashing with a str key, is
    refused with the path to the dict holding it."""
    with pytest.raises(UsageError, match=message):
        Config().update({"model": value})


def test_value_over_10_mb_is_usage_error() -> None:
    """A value larger than 10 MB encoded is refused, naming the key, its size and run.save()."""
    big = "x" * MAX_CONFIG_VALUE_BYTES
    with pytest.raises(UsageError, match=r"'blob' is 10\.0 MB.*10 MB limit.*run\.save\(\)"):
        Config().blob = big


def test_value_just_under_10_mb_is_accepted() -> None:
    """A value whose encoding fits in 10 MB is accepted."""
    config = Config()
    config.blob = "x" * (MAX_CONFIG_VALUE_BYTES - 10)
    assert len(config.blob) == MAX_CONFIG_VALUE_BYTES - 10


def test_numpy_values_are_accepted() -> None:
    """numpy scalars and arrays are valid config values."""
    config = Config()
    config.update({"lr": np.float32(0.5), "sizes": np.arange(3)})
    assert config.lr == 0.5
    assert list(config.sizes) == [0, 1, 2]


def test_changing_a_value_is_usage_error() -> None:
    """Changing an existing key names the key, both values and allow_val_change=True."""
    config = Config()
    config.lr = 0.1
    with pytest.raises(
        UsageError, match=r"'lr' already holds 0\.1.*to 0\.2.*allow_val_change=True"
    ):
        config.lr = 0.2
    assert config.lr == 0.1


@pytest.mark.parametrize(
    ("old", "new"), [(1, 1.0), (1, True), (1.0, True), (0, None), ([1, 2], [2, 1])]
)
def test_values_equal_in_python_but_not_exactly_are_a_change(old: Any, new: Any) -> None:
    """1, 1.0 and True are different values, so replacing one with another is a change."""
    config = Config()
    config.x = old
    with pytest.raises(UsageError, match="allow_val_change"):
        config.x = new


def test_long_values_are_truncated_in_the_change_error() -> None:
    """The change error shows long values cut to about 60 characters."""
    config = Config()
    config.text = "a" * 500
    with pytest.raises(UsageError) as info:
        config.text = "b" * 500
    message = str(info.value)
    assert "a" * 70 not in message
    assert "b" * 70 not in message
    assert "..." in message


@pytest.mark.parametrize(
    "value",
    [0.1, math.nan, math.inf, 2**70, "héllo", None, [1, [2, 3]], {"a": {"b": math.nan}}],
)
def test_setting_the_same_value_again_is_not_a_change(value: Any) -> None:
    """Setting a key to the value it holds is allowed (NaN equals NaN) and reports nothing."""
    recorder = Recorder()
    config = Config(on_change=recorder)
    config.x = value
    config.x = value
    config.update({"x": value})
    assert len(recorder.calls) == 1


def test_reordered_nested_dict_is_not_a_change() -> None:
    """A nested dict with the same items in another order is the same value."""
    config = Config()
    config.optim = {"name": "adam", "lr": 0.1}
    config.optim = {"lr": 0.1, "name": "adam"}
    assert config.optim == {"name": "adam", "lr": 0.1}


def test_allow_val_change_on_the_instance() -> None:
    """A Config made with allow_val_change=True lets every write change values."""
    config = Config(allow_val_change=True)
    config.lr = 0.1
    config.lr = 0.2
    config.update({"lr": 0.3})
    assert config.lr == 0.3


def test_allow_val_change_per_call() -> None:
    """update(allow_val_change=True) changes values for that call only."""
    config = Config()
    config.lr = 0.1
    config.update({"lr": 0.2}, allow_val_change=True)
    assert config.lr == 0.2
    with pytest.raises(UsageError, match="allow_val_change"):
        config.update({"lr": 0.3})


def test_allow_val_change_false_per_call_overrides_the_instance() -> None:
    """update(allow_val_change=False) refuses a change even on a permissive Config."""
    config = Config(allow_val_change=True)
    config.lr = 0.1
    with pytest.raises(UsageError, match="allow_val_change"):
        config.update({"lr": 0.2}, allow_val_change=False)


def test_setdefaults_sets_only_missing_keys() -> None:
    """setdefaults() adds missing keys and leaves existing ones, without a change error."""
    recorder = Recorder()
    config = Config(on_change=recorder)
    config.lr = 0.1
    config.setdefaults({"lr": 0.5, "epochs": 3})
    assert config.as_dict() == {"lr": 0.1, "epochs": 3}
    assert recorder.calls == [{"lr": 0.1}, {"epochs": 3}]


def test_setdefaults_with_nothing_new_reports_nothing() -> None:
    """setdefaults() with only existing keys does not call on_change."""
    recorder = Recorder()
    config = Config(on_change=recorder)
    config.lr = 0.1
    config.setdefaults(argparse.Namespace(lr=0.2))
    assert recorder.calls == [{"lr": 0.1}]


def test_setdefaults_validates_new_keys() -> None:
    """setdefaults() refuses an invalid new key."""
    with pytest.raises(UsageError, match=r"contains '\.'"):
        Config().setdefaults({"a.b": 1})


def test_on_change_called_once_with_only_the_changed_keys() -> None:
    """on_change gets one call per write, holding only the keys whose value changed."""
    recorder = Recorder()
    config = Config(on_change=recorder, allow_val_change=True)
    config.update({"lr": 0.1, "epochs": 3})
    config.update({"lr": 0.1, "epochs": 4, "seed": 7})
    assert recorder.calls == [{"lr": 0.1, "epochs": 3}, {"epochs": 4, "seed": 7}]


def test_on_change_not_called_when_nothing_changed() -> None:
    """A write that changes nothing, or writes nothing, does not call on_change."""
    recorder = Recorder()
    config = Config(on_change=recorder)
    config.update({"lr": 0.1})
    config.update({"lr": 0.1})
    config.update({})
    config.update(None)
    assert recorder.calls == [{"lr": 0.1}]


def test_on_change_not_called_when_the_write_fails() -> None:
    """A refused write does not call on_change."""
    recorder = Recorder()
    config = Config(on_change=recorder)
    with pytest.raises(UsageError):
        config.update({"lr": 0.1, "a.b": 1})
    assert recorder.calls == []


@pytest.mark.parametrize(
    "bad",
    [
        {"a.b": 1},
        {2: 1},
        {"model": object()},
        {"lr": 0.5},
        {"blob": "x" * MAX_CONFIG_VALUE_BYTES},
    ],
)
def test_a_bad_item_leaves_the_config_unchanged(bad: dict[Any, Any]) -> None:
    """An update with one bad item applies none of its items."""
    config = Config()
    config.lr = 0.1
    with pytest.raises(UsageError):
        config.update({"epochs": 3, "seed": 1, **bad})
    assert config.as_dict() == {"lr": 0.1}


def test_config_of_a_config_copies_it() -> None:
    """A Config is a Mapping, so it can be the source of another config."""
    first = Config()
    first.update({"lr": 0.1, "optim": {"name": "adam"}})
    second = Config()
    second.update(first)
    assert second.as_dict() == first.as_dict()
    assert second.optim is not first.optim


def test_yaml_source_with_non_str_key_is_refused_by_config(tmp_path: Path) -> None:
    """A YAML file with a non-str top-level key loads, and the config refuses the key."""
    path = tmp_path / "c.yaml"
    path.write_text("1: one\n", encoding="utf-8")
    with pytest.raises(UsageError, match="config key 1 is a int"):
        Config().update(os.fspath(path))
