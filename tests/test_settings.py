"""Tests of Settings: validation, resolution (file < env < settings= < init), the settings file."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import stat
import sys
from typing import Any

import pytest

from tracker._errors import UsageError
from tracker._settings import (
    ENVIRONMENT_VARIABLES,
    Settings,
    resolve_settings,
    settings_file_path,
    write_settings_file,
)


@pytest.fixture
def config_dir(tmp_path: pathlib.Path) -> pathlib.Path:
    """A fresh settings directory, empty unless a test writes to it."""
    return tmp_path / "config"


@pytest.fixture
def environ(config_dir: pathlib.Path) -> dict[str, str]:
    """An environment holding only TRACKER_CONFIG_DIR, isolated from the real one."""
    return {"TRACKER_CONFIG_DIR": str(config_dir)}


def write_toml(config_dir: pathlib.Path, text: str) -> pathlib.Path:
    """Write `text` as the settings file in `config_dir`."""
    config_dir.mkdir(parents=True, exist_ok=True)
    path = config_dir / "settings.toml"
    path.write_text(text, encoding="utf-8")
    return path


class BytesPath(os.PathLike[bytes]):
    """A path-like object whose path is bytes, which root_dir cannot hold."""

    def __fspath__(self) -> bytes:
        """Return a bytes path."""
        return b"/tmp/runs"


# --- defaults and construction ---


def test_defaults_match_the_documented_values() -> None:
    """A bare Settings carries the documented defaults."""
    settings = Settings()
    assert settings.mode is None
    assert settings.base_url is None
    assert settings.api_key is None
    assert settings.project is None
    assert settings.entity is None
    assert settings.run_id is None
    assert settings.run_name is None
    assert settings.run_group is None
    assert settings.run_job_type is None
    assert settings.run_notes is None
    assert settings.run_tags == ()
    assert settings.resume is None
    assert settings.root_dir is None
    assert settings.silent is False
    assert settings.init_timeout == 90.0
    assert settings.finish_timeout == 30.0
    assert settings.heartbeat_interval == 10.0
    assert settings.queue_max_events == 100_000
    assert settings.queue_max_bytes == 64 * 2**20
    assert settings.queue_full_policy == "block"
    assert settings.batch_max_bytes == 4 * 2**20
    assert settings.batch_linger_seconds == 0.002
    assert settings.transport == "websocket"
    assert settings.retry_initial_wait_seconds == 0.5
    assert settings.retry_max_wait_seconds == 60.0
    assert settings.fsync_policy == "flush"
    assert settings.stats_interval_seconds == 15.0
    assert settings.disable_stats is False
    assert settings.disable_git is False
    assert settings.save_requirements is True


def test_settings_are_frozen_and_keyword_only() -> None:
    """Settings cannot be changed after construction nor built positionally."""
    settings = Settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.mode = "offline"  # type: ignore[misc]
    with pytest.raises(TypeError):
        Settings("offline")  # type: ignore[call-arg]


def test_every_field_has_a_default() -> None:
    """Every field is optional, so Settings() and dict subsets are always constructible."""
    for field in dataclasses.fields(Settings):
        assert field.default is not dataclasses.MISSING, field.name


def test_resolve_with_nothing_set_gives_defaults(environ: dict[str, str]) -> None:
    """No file, no environment and no arguments resolve to the class defaults."""
    assert resolve_settings({}, environ=environ) == Settings()


def test_api_key_is_hidden_from_repr() -> None:
    """The API key never appears in the repr, so logs and tracebacks do not leak it."""
    text = repr(Settings(api_key="secret-key-123", project="p"))
    assert "secret-key-123" not in text
    assert "project='p'" in text


def test_tags_list_is_stored_as_tuple() -> None:
    """A list of tags becomes a tuple, keeping Settings hashable and immutable."""
    settings = Settings(run_tags=["a", "b"])  # type: ignore[arg-type]
    assert settings.run_tags == ("a", "b")
    hash(settings)


def test_base_url_trailing_slashes_are_stripped() -> None:
    """Trailing slashes are dropped from base_url so paths can be appended."""
    assert Settings(base_url="https://example.com/").base_url == "https://example.com"
    assert Settings(base_url="http://h:8080/api//").base_url == "http://h:8080/api"


def test_int_seconds_are_stored_as_float() -> None:
    """Durations accept ints and store floats."""
    settings = Settings(init_timeout=5, batch_linger_seconds=0)
    assert settings.init_timeout == 5.0
    assert isinstance(settings.init_timeout, float)
    assert isinstance(settings.batch_linger_seconds, float)


def test_root_dir_accepts_a_path(tmp_path: pathlib.Path) -> None:
    """root_dir accepts a pathlib.Path and stores it as str."""
    assert Settings(root_dir=tmp_path).root_dir == str(tmp_path)  # type: ignore[arg-type]


@pytest.mark.parametrize("resume", [None, True, False, "auto", "allow", "never", "must"])
def test_every_resume_policy_is_accepted(resume: str | bool | None) -> None:
    """All of W&B's resume values are valid."""
    assert Settings(resume=resume).resume == resume


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("mode", "online"),
        ("mode", "offline"),
        ("mode", "disabled"),
        ("queue_full_policy", "drop"),
        ("transport", "http"),
        ("fsync_policy", "batch"),
        ("fsync_policy", "never"),
        ("queue_max_events", 1),
        ("queue_max_bytes", 1024),
        ("batch_max_bytes", 1024),
        ("batch_linger_seconds", 0.0),
        ("silent", True),
        ("console", "off"),
        ("console", "redirect"),
        ("stats_interval_seconds", 0.1),
        ("disable_stats", True),
        ("disable_git", True),
        ("save_requirements", False),
    ],
)
def test_boundary_and_choice_values_are_accepted(field: str, value: Any) -> None:
    """Each accepted choice and each inclusive lower bound is valid."""
    assert getattr(Settings(**{field: value}), field) == value


def test_retry_initial_equal_to_max_is_accepted() -> None:
    """retry_initial_wait_seconds may equal retry_max_wait_seconds."""
    settings = Settings(retry_initial_wait_seconds=2, retry_max_wait_seconds=2)
    assert settings.retry_initial_wait_seconds == settings.retry_max_wait_seconds == 2.0


# --- validation errors ---


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("mode", "bogus", "use online, offline or disabled"),
        ("mode", 1, "is not a mode"),
        ("base_url", "example.com", "http:// or https://"),
        ("base_url", "ftp://example.com", "http:// or https://"),
        ("base_url", "http://", "has no host"),
        ("base_url", 42, "http:// or https://"),
        ("api_key", 123, "is not a string"),
        ("project", 1, "is not a string"),
        ("entity", b"team", "is not a string"),
        ("run_id", 7, "is not a string"),
        ("run_name", ["x"], "is not a string"),
        ("run_group", 1.5, "is not a string"),
        ("run_job_type", True, "is not a string"),
        ("run_notes", {}, "is not a string"),
        ("run_tags", "baseline", "is not a list of strings"),
        ("run_tags", ["a", 1], "is not a list of strings"),
        ("run_tags", None, "is not a list of strings"),
        ("resume", "sometimes", "'auto', 'allow', 'never' or 'must'"),
        ("resume", 1, "is not a resume policy"),
        ("root_dir", 5, "is not a directory path"),
        ("root_dir", b"/tmp/runs", "is not a directory path"),
        ("root_dir", BytesPath(), "is not a directory path"),
        ("silent", 1, "use True or False"),
        ("silent", "yes", "use True or False"),
        ("disable_git", "yes", "use True or False"),
        ("disable_git", 1, "use True or False"),
        ("save_requirements", None, "use True or False"),
        ("init_timeout", 0, "seconds > 0"),
        ("init_timeout", -1.0, "seconds > 0"),
        ("init_timeout", True, "seconds > 0"),
        ("init_timeout", "90", "seconds > 0"),
        ("init_timeout", float("nan"), "seconds > 0"),
        ("init_timeout", float("inf"), "seconds > 0"),
        ("init_timeout", 10**400, "seconds > 0"),
        ("finish_timeout", 0.0, "seconds > 0"),
        ("heartbeat_interval", -5, "seconds > 0"),
        ("batch_linger_seconds", -0.001, "seconds >= 0"),
        ("retry_initial_wait_seconds", 0, "seconds > 0"),
        ("retry_max_wait_seconds", 0, "seconds > 0"),
        ("queue_max_events", 0, "int >= 1"),
        ("queue_max_events", 10.0, "int >= 1"),
        ("queue_max_events", True, "int >= 1"),
        ("queue_max_bytes", 1023, "int >= 1024"),
        ("batch_max_bytes", 100, "int from 1024 to 16777216"),
        ("batch_max_bytes", "4MB", "int from 1024 to 16777216"),
        # above the server's batch limit, a batch could never be sent
        ("batch_max_bytes", 2**24 + 1, "int from 1024 to 16777216"),
        ("queue_full_policy", "wait", "use block or drop"),
        ("transport", "grpc", "use websocket or http"),
        ("fsync_policy", "always", "use flush, batch or never"),
        ("console", "wrap", "is not a console capture mode; use auto, off or redirect"),
        ("console", True, "is not a console capture mode; use auto, off or redirect"),
        ("stats_interval_seconds", 0.09, "is not a number of seconds >= 0.1; use a finite"),
        ("stats_interval_seconds", 0, "seconds >= 0.1"),
        ("stats_interval_seconds", -15, "seconds >= 0.1"),
        ("stats_interval_seconds", float("nan"), "seconds >= 0.1"),
        ("stats_interval_seconds", float("inf"), "seconds >= 0.1"),
        ("stats_interval_seconds", 10**400, "seconds >= 0.1"),
        ("stats_interval_seconds", True, "seconds >= 0.1"),
        ("stats_interval_seconds", "15", "seconds >= 0.1"),
        ("disable_stats", 1, "is not a bool; use True or False"),
        ("disable_stats", "yes", "is not a bool; use True or False"),
    ],
)
def test_bad_value_names_the_field_and_accepted_values(
    field: str, value: Any, expected: str
) -> None:
    """A wrong type or value raises UsageError naming the field and what to use."""
    with pytest.raises(UsageError) as info:
        Settings(**{field: value})
    message = str(info.value)
    assert f"{field}=" in message
    assert expected in message


def test_every_field_rejects_a_wrong_type() -> None:
    """No field accepts an arbitrary object, so every field is validated."""
    for field in dataclasses.fields(Settings):
        bad: dict[str, Any] = {field.name: object()}
        with pytest.raises(UsageError, match=field.name):
            Settings(**bad)


def test_retry_initial_above_max_is_rejected() -> None:
    """An initial retry wait above the max wait raises UsageError naming both fields."""
    with pytest.raises(UsageError, match=r"retry_initial_wait_seconds=5\.0 is above") as info:
        Settings(retry_initial_wait_seconds=5, retry_max_wait_seconds=1)
    assert "retry_max_wait_seconds=1.0" in str(info.value)


def test_usage_error_is_a_value_error() -> None:
    """Validation errors can also be caught as ValueError."""
    with pytest.raises(ValueError, match="mode"):
        Settings(mode="bogus")


# --- replace ---


def test_replace_returns_a_validated_copy() -> None:
    """replace() returns a new Settings with the change, leaving the original intact."""
    original = Settings(project="a")
    changed = original.replace(project="b", run_tags=["x"])
    assert changed.project == "b"
    assert changed.run_tags == ("x",)
    assert original.project == "a"


def test_replace_validates_values() -> None:
    """replace() rejects a bad value like the constructor."""
    with pytest.raises(UsageError, match="transport='grpc'"):
        Settings().replace(transport="grpc")


def test_replace_unknown_field_suggests_close_match() -> None:
    """replace() with an unknown field names it and suggests the closest field."""
    with pytest.raises(
        UsageError, match=r"'projct' is not a settings field; did you mean 'project'"
    ):
        Settings().replace(projct="x")


# --- environment ---


@pytest.mark.parametrize(
    ("variable", "raw", "field", "expected"),
    [
        ("TRACKER_BASE_URL", "http://localhost:8080/", "base_url", "http://localhost:8080"),
        ("TRACKER_API_KEY", "k-123", "api_key", "k-123"),
        ("TRACKER_MODE", "offline", "mode", "offline"),
        ("TRACKER_PROJECT", "mnist", "project", "mnist"),
        ("TRACKER_ENTITY", "team", "entity", "team"),
        ("TRACKER_RUN_ID", "abc123", "run_id", "abc123"),
        ("TRACKER_RUN_NAME", "brisk-sunset-12", "run_name", "brisk-sunset-12"),
        ("TRACKER_RUN_GROUP", "sweep-1", "run_group", "sweep-1"),
        ("TRACKER_JOB_TYPE", "train", "run_job_type", "train"),
        ("TRACKER_TAGS", "a,b", "run_tags", ("a", "b")),
        ("TRACKER_NOTES", "first try", "run_notes", "first try"),
        ("TRACKER_RESUME", "allow", "resume", "allow"),
        ("TRACKER_DIR", "/tmp/runs", "root_dir", "/tmp/runs"),
        ("TRACKER_SILENT", "1", "silent", True),
        ("TRACKER_CONSOLE", "redirect", "console", "redirect"),
        ("TRACKER_STATS_INTERVAL_SECONDS", "0.5", "stats_interval_seconds", 0.5),
        ("TRACKER_STATS_INTERVAL_SECONDS", " 60 ", "stats_interval_seconds", 60.0),
        ("TRACKER_DISABLE_STATS", "1", "disable_stats", True),
        ("TRACKER_DISABLE_STATS", "Off", "disable_stats", False),
        ("TRACKER_DISABLE_GIT", "1", "disable_git", True),
        ("TRACKER_SAVE_REQUIREMENTS", "off", "save_requirements", False),
    ],
)
def test_each_environment_variable_sets_its_field(
    environ: dict[str, str], variable: str, raw: str, field: str, expected: object
) -> None:
    """Each TRACKER_* variable sets the Settings field it is documented to set."""
    environ[variable] = raw
    assert getattr(resolve_settings({}, environ=environ), field) == expected


def test_environment_table_covers_every_documented_variable() -> None:
    """ENVIRONMENT_VARIABLES lists exactly the SPEC's variables, each mapped to a real field."""
    assert set(ENVIRONMENT_VARIABLES) == {
        "TRACKER_BASE_URL",
        "TRACKER_API_KEY",
        "TRACKER_MODE",
        "TRACKER_PROJECT",
        "TRACKER_ENTITY",
        "TRACKER_RUN_ID",
        "TRACKER_RUN_NAME",
        "TRACKER_RUN_GROUP",
        "TRACKER_JOB_TYPE",
        "TRACKER_TAGS",
        "TRACKER_NOTES",
        "TRACKER_RESUME",
        "TRACKER_DIR",
        "TRACKER_SILENT",
        "TRACKER_CONSOLE",
        "TRACKER_STATS_INTERVAL_SECONDS",
        "TRACKER_DISABLE_STATS",
        "TRACKER_DISABLE_GIT",
        "TRACKER_SAVE_REQUIREMENTS",
    }
    names = {field.name for field in dataclasses.fields(Settings)}
    assert set(ENVIRONMENT_VARIABLES.values()) <= names


def test_environment_table_is_read_only() -> None:
    """The public environment table cannot be modified by accident."""
    with pytest.raises(TypeError):
        ENVIRONMENT_VARIABLES["TRACKER_X"] = "mode"  # type: ignore[index]


def test_empty_environment_values_are_ignored(environ: dict[str, str]) -> None:
    """An empty TRACKER_* variable counts as unset, even for validated fields."""
    environ.update(dict.fromkeys(ENVIRONMENT_VARIABLES, ""))
    assert resolve_settings({}, environ=environ) == Settings()


def test_environ_defaults_to_os_environ(
    monkeypatch: pytest.MonkeyPatch, config_dir: pathlib.Path
) -> None:
    """Without environ=, the process environment is read."""
    monkeypatch.setenv("TRACKER_CONFIG_DIR", str(config_dir))
    monkeypatch.setenv("TRACKER_PROJECT", "from-os")
    assert resolve_settings({}).project == "from-os"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a,b,c", ("a", "b", "c")),
        (" a , b ", ("a", "b")),
        ("a,,b,", ("a", "b")),
        ("solo", ("solo",)),
        (" , ,", ()),
        ("two words,x", ("two words", "x")),
    ],
)
def test_tracker_tags_are_split_on_commas(
    environ: dict[str, str], raw: str, expected: tuple[str, ...]
) -> None:
    """TRACKER_TAGS is comma-separated; blanks are stripped and empty items dropped."""
    environ["TRACKER_TAGS"] = raw
    assert resolve_settings({}, environ=environ).run_tags == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        ("1", True),
        ("false", False),
        ("False", False),
        ("0", False),
        ("auto", "auto"),
        ("allow", "allow"),
        ("never", "never"),
        ("must", "must"),
    ],
)
def test_tracker_resume_parses_bools_and_policies(
    environ: dict[str, str], raw: str, expected: object
) -> None:
    """TRACKER_RESUME maps true/1 and false/0 to bools and passes policies through."""
    environ["TRACKER_RESUME"] = raw
    assert resolve_settings({}, environ=environ).resume == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1", True),
        ("true", True),
        ("Yes", True),
        ("ON", True),
        ("0", False),
        ("FALSE", False),
        ("no", False),
        ("Off", False),
    ],
)
def test_tracker_silent_parses_boolean_words(
    environ: dict[str, str], raw: str, expected: bool
) -> None:
    """TRACKER_SILENT accepts 1/true/yes/on and 0/false/no/off in any case."""
    environ["TRACKER_SILENT"] = raw
    assert resolve_settings({}, environ=environ).silent is expected


@pytest.mark.parametrize(
    ("variable", "raw", "expected"),
    [
        (
            "TRACKER_MODE",
            "bogus",
            "TRACKER_MODE='bogus' is not a mode; use online, offline or disabled",
        ),
        ("TRACKER_BASE_URL", "localhost:8080", "TRACKER_BASE_URL='localhost:8080' is not a"),
        ("TRACKER_RESUME", "maybe", "TRACKER_RESUME='maybe' is not a resume policy; use auto"),
        ("TRACKER_SILENT", "maybe", "TRACKER_SILENT='maybe' is not a boolean; use 1, true"),
        ("TRACKER_DISABLE_GIT", "git", "TRACKER_DISABLE_GIT='git' is not a boolean; use 1"),
        ("TRACKER_SAVE_REQUIREMENTS", "2", "TRACKER_SAVE_REQUIREMENTS='2' is not a boolean"),
        (
            "TRACKER_CONSOLE",
            "tee",
            "TRACKER_CONSOLE='tee' is not a console capture mode; use auto, off or redirect",
        ),
        (
            "TRACKER_STATS_INTERVAL_SECONDS",
            "fast",
            "TRACKER_STATS_INTERVAL_SECONDS='fast' is not a number; use digits, e.g. 15",
        ),
        (
            "TRACKER_STATS_INTERVAL_SECONDS",
            "0.01",
            "TRACKER_STATS_INTERVAL_SECONDS='0.01' is not a number of seconds >= 0.1",
        ),
        (
            "TRACKER_DISABLE_STATS",
            "maybe",
            "TRACKER_DISABLE_STATS='maybe' is not a boolean; use 1, true",
        ),
    ],
)
def test_bad_environment_value_names_the_variable(
    environ: dict[str, str], variable: str, raw: str, expected: str
) -> None:
    """A bad environment value raises UsageError naming the variable and its value."""
    environ[variable] = raw
    with pytest.raises(UsageError) as info:
        resolve_settings({}, environ=environ)
    assert str(info.value).startswith(expected)


# --- precedence ---


def test_precedence_is_file_then_env_then_settings_then_init(
    environ: dict[str, str], config_dir: pathlib.Path
) -> None:
    """Each layer overrides the ones below: file < environment < settings= < init()."""
    write_toml(
        config_dir,
        'project = "file"\nentity = "file"\nrun_group = "file"\nrun_notes = "file"\n',
    )
    environ.update(
        TRACKER_PROJECT="env",
        TRACKER_ENTITY="env",
        TRACKER_RUN_GROUP="env",
    )
    settings = {"project": "settings", "entity": "settings"}
    resolved = resolve_settings({"project": "init"}, settings=settings, environ=environ)
    assert resolved.project == "init"
    assert resolved.entity == "settings"
    assert resolved.run_group == "env"
    assert resolved.run_notes == "file"


def test_file_values_apply_when_nothing_else_is_set(
    environ: dict[str, str], config_dir: pathlib.Path
) -> None:
    """The settings file sets fields, arrays included, under the defaults' place."""
    write_toml(
        config_dir,
        'base_url = "https://t.example/"\napi_key = "k"\nrun_tags = ["x", "y"]\n'
        "init_timeout = 5\nsilent = true\n",
    )
    resolved = resolve_settings({}, environ=environ)
    assert resolved.base_url == "https://t.example"
    assert resolved.api_key == "k"
    assert resolved.run_tags == ("x", "y")
    assert resolved.init_timeout == 5.0
    assert resolved.silent is True


def test_none_init_overrides_are_not_given(environ: dict[str, str]) -> None:
    """A None in init_overrides leaves the lower layers' value in place."""
    environ["TRACKER_MODE"] = "offline"
    assert resolve_settings({"mode": None}, environ=environ).mode == "offline"


def test_none_values_in_settings_dict_are_not_given(environ: dict[str, str]) -> None:
    """A None in the settings= dict leaves the lower layers' value in place."""
    environ["TRACKER_MODE"] = "offline"
    assert resolve_settings({}, settings={"mode": None}, environ=environ).mode == "offline"


def test_settings_instance_overrides_only_non_defaults(
    environ: dict[str, str], config_dir: pathlib.Path
) -> None:
    """A Settings passed as settings= overrides only the fields that differ from defaults."""
    write_toml(config_dir, 'transport = "http"\nsilent = true\n')
    environ["TRACKER_PROJECT"] = "env"
    given = Settings(project="mine", transport="websocket", queue_max_events=7)
    resolved = resolve_settings({}, settings=given, environ=environ)
    assert resolved.project == "mine"
    assert resolved.queue_max_events == 7
    assert resolved.transport == "http"
    assert resolved.silent is True


def test_init_overrides_beat_settings_instance(environ: dict[str, str]) -> None:
    """Explicit init() arguments beat a Settings passed as settings=."""
    given = Settings(mode="offline", run_tags=("s",))
    resolved = resolve_settings({"mode": "disabled", "run_tags": ["i"]}, given, environ)
    assert resolved.mode == "disabled"
    assert resolved.run_tags == ("i",)


def test_retry_bounds_are_checked_after_merging(
    environ: dict[str, str], config_dir: pathlib.Path
) -> None:
    """The retry bounds are compared once all layers are merged, not per layer."""
    write_toml(config_dir, "retry_initial_wait_seconds = 100\n")
    resolved = resolve_settings({}, settings={"retry_max_wait_seconds": 200}, environ=environ)
    assert resolved.retry_initial_wait_seconds == 100.0
    with pytest.raises(UsageError, match=r"retry_initial_wait_seconds=100\.0 is above"):
        resolve_settings({}, environ=environ)


# --- bad settings= and init_overrides ---


def test_unknown_settings_dict_field_suggests_close_matches(environ: dict[str, str]) -> None:
    """An unknown settings= key raises UsageError naming it and suggesting close fields."""
    with pytest.raises(UsageError) as info:
        resolve_settings({}, settings={"init_timout": 5}, environ=environ)
    message = str(info.value)
    assert "'init_timout' is not a settings field" in message
    assert "'init_timeout'" in message


def test_unknown_field_without_close_match_lists_fields(environ: dict[str, str]) -> None:
    """An unknown key with no close match lists the valid fields instead."""
    with pytest.raises(UsageError, match="the fields are: mode, base_url"):
        resolve_settings({}, settings={"zzzzzz": 1}, environ=environ)


def test_bad_settings_dict_value_names_the_key(environ: dict[str, str]) -> None:
    """A bad value in the settings= dict names the dict key."""
    with pytest.raises(UsageError, match=r"settings\['transport'\]='grpc' is not a transport"):
        resolve_settings({}, settings={"transport": "grpc"}, environ=environ)


def test_settings_argument_of_wrong_type_is_rejected(environ: dict[str, str]) -> None:
    """settings= that is neither a Settings nor a mapping raises UsageError."""
    with pytest.raises(UsageError, match=r"settings=.* is a list; use a tracker\.Settings"):
        resolve_settings({}, settings=[("mode", "offline")], environ=environ)  # type: ignore[arg-type]


def test_unknown_init_override_is_rejected(environ: dict[str, str]) -> None:
    """An init override that names no field raises UsageError."""
    with pytest.raises(UsageError, match="init\\(\\): 'tags' is not a settings field"):
        resolve_settings({"tags": ["a"]}, environ=environ)


def test_bad_init_override_value_names_the_field(environ: dict[str, str]) -> None:
    """A bad init override value raises UsageError naming the field."""
    with pytest.raises(UsageError, match="mode='bogus' is not a mode"):
        resolve_settings({"mode": "bogus"}, environ=environ)


# --- settings file ---


def test_settings_file_path_uses_tracker_config_dir(tmp_path: pathlib.Path) -> None:
    """TRACKER_CONFIG_DIR moves the settings file."""
    path = settings_file_path({"TRACKER_CONFIG_DIR": str(tmp_path)})
    assert path == tmp_path / "settings.toml"


def test_settings_file_path_defaults_to_home_config() -> None:
    """Without TRACKER_CONFIG_DIR (or with it empty) the file is ~/.config/tracker."""
    expected = pathlib.Path.home() / ".config" / "tracker" / "settings.toml"
    assert settings_file_path({}) == expected
    assert settings_file_path({"TRACKER_CONFIG_DIR": ""}) == expected


def test_settings_file_path_reads_os_environ_by_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    """Without environ=, settings_file_path reads the process environment."""
    monkeypatch.setenv("TRACKER_CONFIG_DIR", str(tmp_path))
    assert settings_file_path() == tmp_path / "settings.toml"


def test_bad_toml_names_the_file(environ: dict[str, str], config_dir: pathlib.Path) -> None:
    """A settings file that is not TOML raises UsageError naming the file."""
    path = write_toml(config_dir, "mode = \n")
    with pytest.raises(UsageError) as info:
        resolve_settings({}, environ=environ)
    assert f"settings file {path} is not valid TOML" in str(info.value)


def test_non_utf8_settings_file_names_the_file(
    environ: dict[str, str], config_dir: pathlib.Path
) -> None:
    """A settings file that is not UTF-8 raises UsageError naming the file."""
    config_dir.mkdir()
    path = config_dir / "settings.toml"
    path.write_bytes(b'project = "\xff"\n')
    with pytest.raises(UsageError, match="cannot be read"):
        resolve_settings({}, environ=environ)


def test_settings_file_that_is_a_directory_is_rejected(
    environ: dict[str, str], config_dir: pathlib.Path
) -> None:
    """A directory in place of the settings file raises UsageError, not OSError."""
    (config_dir / "settings.toml").mkdir(parents=True)
    with pytest.raises(UsageError, match=r"settings\.toml cannot be read"):
        resolve_settings({}, environ=environ)


def test_unknown_key_in_file_names_file_and_key(
    environ: dict[str, str], config_dir: pathlib.Path
) -> None:
    """An unknown key in the settings file raises UsageError naming the file and key."""
    path = write_toml(config_dir, 'base_uri = "http://x"\n')
    with pytest.raises(UsageError) as info:
        resolve_settings({}, environ=environ)
    message = str(info.value)
    assert str(path) in message
    assert "'base_uri' is not a settings field; did you mean 'base_url'" in message


def test_nested_table_in_file_is_an_unknown_key(
    environ: dict[str, str], config_dir: pathlib.Path
) -> None:
    """A [table] in the settings file is an unknown key, since the file is flat."""
    write_toml(config_dir, "[server]\nurl = 1\n")
    with pytest.raises(UsageError, match="'server' is not a settings field"):
        resolve_settings({}, environ=environ)


def test_bad_value_in_file_names_file_and_key(
    environ: dict[str, str], config_dir: pathlib.Path
) -> None:
    """A bad value in the settings file raises UsageError naming the file and key."""
    path = write_toml(config_dir, "queue_max_events = 1.5\n")
    with pytest.raises(UsageError) as info:
        resolve_settings({}, environ=environ)
    assert str(info.value).startswith(f"settings file {path}: queue_max_events=1.5 is not an int")


def test_write_settings_file_round_trips(environ: dict[str, str]) -> None:
    """Values written are read back unchanged by resolve_settings."""
    path = write_settings_file(
        {
            "base_url": "https://tracker.example/",
            "api_key": "abc123",
            "init_timeout": 12.5,
            "queue_max_events": 500,
            "silent": True,
            "heartbeat_interval": 3,
        },
        environ=environ,
    )
    assert path == settings_file_path(environ)
    resolved = resolve_settings({}, environ=environ)
    assert resolved.base_url == "https://tracker.example"
    assert resolved.api_key == "abc123"
    assert resolved.init_timeout == 12.5
    assert resolved.queue_max_events == 500
    assert resolved.silent is True
    assert resolved.heartbeat_interval == 3.0


def test_write_settings_file_merges_with_existing(environ: dict[str, str]) -> None:
    """A second write keeps earlier keys and replaces only the ones given."""
    write_settings_file({"base_url": "http://a", "api_key": "old"}, environ=environ)
    write_settings_file({"api_key": "new"}, environ=environ)
    resolved = resolve_settings({}, environ=environ)
    assert resolved.base_url == "http://a"
    assert resolved.api_key == "new"


def test_write_settings_file_keeps_existing_tags(
    environ: dict[str, str], config_dir: pathlib.Path
) -> None:
    """An array already in the file survives a merge."""
    write_toml(config_dir, 'run_tags = ["a", "b \\"q\\""]\n')
    write_settings_file({"project": "p"}, environ=environ)
    resolved = resolve_settings({}, environ=environ)
    assert resolved.run_tags == ("a", 'b "q"')
    assert resolved.project == "p"


@pytest.mark.parametrize(
    "text",
    [
        'quote " and backslash \\ end',
        "tab\tnewline\ncr\rformfeed\fbackspace\b",
        "control \x00 \x01 \x1f and delete \x7f",
        "unicode é 漢字 🚀",
        "'single' and '''triple'''",
        "",
    ],
)
def test_write_settings_file_escapes_strings(environ: dict[str, str], text: str) -> None:
    """Strings with quotes, backslashes, controls and unicode survive the TOML writer."""
    write_settings_file({"run_notes": text}, environ=environ)
    assert resolve_settings({}, environ=environ).run_notes == text


def test_write_settings_file_float_formats_parse_back(environ: dict[str, str]) -> None:
    """Floats in exponent form are written as valid TOML."""
    write_settings_file(
        {"batch_linger_seconds": 1e-05, "retry_max_wait_seconds": 1e16}, environ=environ
    )
    resolved = resolve_settings({}, environ=environ)
    assert resolved.batch_linger_seconds == 1e-05
    assert resolved.retry_max_wait_seconds == 1e16


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permission bits")
def test_write_settings_file_is_private(environ: dict[str, str], config_dir: pathlib.Path) -> None:
    """The settings file holds the API key, so it is created with mode 0o600."""
    path = write_settings_file({"api_key": "secret"}, environ=environ)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permission bits")
def test_write_settings_file_tightens_an_open_file(
    environ: dict[str, str], config_dir: pathlib.Path
) -> None:
    """Rewriting a world-readable settings file leaves it at mode 0o600."""
    path = write_toml(config_dir, 'project = "p"\n')
    path.chmod(0o644)
    write_settings_file({"api_key": "secret"}, environ=environ)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in config_dir.iterdir()] == ["settings.toml"]


def test_write_settings_file_rejects_unknown_key(environ: dict[str, str]) -> None:
    """Writing a key that is not a field raises UsageError and writes nothing."""
    with pytest.raises(
        UsageError, match="'apikey' is not a settings field; did you mean 'api_key'"
    ):
        write_settings_file({"apikey": "x"}, environ=environ)
    assert not settings_file_path(environ).exists()


def test_write_settings_file_rejects_bad_value(environ: dict[str, str]) -> None:
    """Writing an invalid value raises UsageError naming the key."""
    with pytest.raises(UsageError, match="mode='bogus' is not a mode"):
        write_settings_file({"mode": "bogus"}, environ=environ)


def test_write_settings_file_rejects_none(environ: dict[str, str]) -> None:
    """None has no TOML form, so writing it raises UsageError."""
    values: dict[str, Any] = {"api_key": None}
    with pytest.raises(UsageError, match="api_key=None cannot be stored"):
        write_settings_file(values, environ=environ)


def test_write_settings_file_rejects_unencodable_text(environ: dict[str, str]) -> None:
    """A lone surrogate cannot be written as UTF-8 and raises UsageError."""
    with pytest.raises(UsageError, match="UTF-8 cannot encode"):
        write_settings_file({"run_notes": "bad \ud800"}, environ=environ)


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc")
def test_write_settings_file_unwritable_directory_is_usage_error() -> None:
    """A directory where no file can be created (even by root) raises UsageError, not OSError."""
    with pytest.raises(UsageError, match=r"cannot be written.*TRACKER_CONFIG_DIR"):
        write_settings_file({"api_key": "x"}, environ={"TRACKER_CONFIG_DIR": "/proc/self"})


def test_write_settings_file_refuses_to_merge_a_bad_file(
    environ: dict[str, str], config_dir: pathlib.Path
) -> None:
    """An existing bad settings file is reported, not overwritten."""
    path = write_toml(config_dir, "not toml ===\n")
    with pytest.raises(UsageError, match="is not valid TOML"):
        write_settings_file({"api_key": "x"}, environ=environ)
    assert path.read_text(encoding="utf-8") == "not toml ===\n"
