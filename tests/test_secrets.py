"""Secrets: keys reach the server without the process list (a key file, TRACKER_API_KEY), a
new key has at least 16 characters, and a key on a training script's command line is not
stored with its run."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from server_process import ServerProcess, child_env

import tracker
from tracker._redact import REDACTED, redact_argv
from tracker._server.storage import open_storage

R = REDACTED


@pytest.mark.parametrize(
    ("argv", "stored"),
    [
        (["--api-key", "abc123", "--lr", "0.1"], ["--api-key", R, "--lr", "0.1"]),
        (["--api-key=abc123"], [f"--api-key={R}"]),
        (["--hf_token", "x", "-password", "pw"], ["--hf_token", R, "-password", R]),
        (["--secret", "--verbose"], ["--secret", "--verbose"]),
        (
            ["WANDB_API_KEY=abc", "+db.password=pw", "key=v"],
            [f"WANDB_API_KEY={R}", f"+db.password={R}", f"key={R}"],
        ),
        (["https://bob:hunter2@github.com/x.git"], [f"https://bob:{R}@github.com/x.git"]),
        (["--note", "ghp_abcdefghijklmnopqrstuvwxyz0123456789"], ["--note", R]),
        (["sk-proj-abcdefghijklmnop1234", "hf_abcdefghijklmnopqrs"], [R, R]),
        (["b5c9b43906d0ee05e01bfd2bcfe6742b79e7e83124b77164"], [R]),
    ],
)
def test_secret_values_in_argv_are_redacted(argv: list[str], stored: list[str]) -> None:
    """Values after secret-named flags, NAME=VALUE with secret names, URL passwords,
    prefixed tokens and long random tokens become <redacted>."""
    assert redact_argv(argv) == stored


@pytest.mark.parametrize(
    "argv",
    [
        ["--lr=0.1", "--epochs", "10", "optimizer.lr=0.1", "--monkey", "3"],
        ["--tokenizer", "bert-base-uncased", "--keys", "loss,acc", "--name", "brisk-sunset-12"],
        ["--out", "checkpoints/run-2024-01-01/model_epoch_10.pt", "/data/imagenet2012/n014407"],
        ["resnet50_imagenet_lr01_bs256_epochs90_warmup5", "123e4567-e89b-12d3-a456-426614174000"],
        ["--commit-message", "ffffffffffffffffffffffffffffffffffffffff"],
    ],
)
def test_ordinary_arguments_are_stored_as_given(argv: list[str]) -> None:
    """Hyperparameters, paths, names, uuids and low-entropy strings are left alone."""
    assert redact_argv(argv) == argv


TRAIN = """
import sys, tracker
run = tracker.init(dir="runs", mode="offline")
run.log({"x": 1})
run.finish()
print(run.dir)
"""


def test_a_key_on_the_scripts_command_line_is_not_stored_with_the_run(tmp_path: Path) -> None:
    """A training script run with keys in its arguments stores them as <redacted> in the
    run's metadata, and the run log holds none of them."""
    keys = [secrets.token_hex(24), "hunter2-but-longer", "hf_" + secrets.token_hex(12)]
    argv = ["--api-key", keys[0], "--lr", "0.1", f"DB_PASSWORD={keys[1]}", keys[2]]
    script = tmp_path / "train.py"
    script.write_text(TRAIN)
    result = subprocess.run(
        [sys.executable, str(script), *argv],
        cwd=tmp_path,
        env=child_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    run_dir = Path(result.stdout.strip()).parent  # run.dir is the run's files folder
    stored = tracker.read_run(run_dir).metadata["args"]
    assert stored == ["--api-key", R, "--lr", "0.1", f"DB_PASSWORD={R}", R]
    log = (run_dir / "run.log").read_bytes()
    assert not [key for key in keys if key.encode() in log]


def _server(
    tmp_path: Path, *options: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `tracker server` expecting it to refuse to start; its exit status and output."""
    command = [sys.executable, "-m", "tracker", "server", "--port", "0"]
    command += ["--db", f"sqlite:///{tmp_path / 'refused.db'}", *options]
    return subprocess.run(
        command,
        env={**child_env(tmp_path), **(env or {})},
        capture_output=True,
        text=True,
        timeout=15,
    )


def test_the_server_takes_keys_from_a_file_and_the_environment(tmp_path: Path) -> None:
    """--api-key-file (comments and blank lines skipped, ENTITY:KEY or KEY) and
    TRACKER_API_KEY give the server its keys, none of which shows in its command line."""
    alice, local, from_env = (secrets.token_hex(24) for _ in range(3))
    key_file = tmp_path / "keys"
    key_file.write_text(f"# the team's keys\n\nalice:{alice}\n  {local}  \n")
    key_file.chmod(0o600)
    server = ServerProcess(
        tmp_path / "server", "--api-key-file", str(key_file), env={"TRACKER_API_KEY": from_env}
    ).start()
    try:
        assert server.process is not None
        command_line = Path(f"/proc/{server.process.pid}/cmdline").read_bytes()
        assert not [key for key in (alice, local, from_env) if key.encode() in command_line]
        entities = [
            tracker.Api(server.url, api_key=key).default_entity for key in (alice, local, from_env)
        ]
        assert entities == ["alice", "local", "local"]
        with pytest.raises(tracker.AuthenticationError):
            tracker.Api(server.url, api_key=secrets.token_hex(24)).default_entity
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("content", "mode", "needle"),
    [
        (None, 0o600, "no such file"),
        ("alice:{key}\n", 0o644, "chmod 600"),
        ("a directory", 0o700, "cannot read it"),
        ("# nothing but a comment\n\n", 0o600, "holds no key"),
        ("alice:{key}\nbob:\n", 0o600, "line 2: the key is empty"),
        ("a/b:{key}\n", 0o600, "line 1: the entity"),
    ],
)
def test_a_bad_key_file_is_refused_saying_what_to_do(
    tmp_path: Path, content: str | None, mode: int, needle: str
) -> None:
    """A missing, unreadable, world-readable or empty key file, or a bad line in one, stops
    the server with exit status 2 and a message naming the file and the fix, not the key."""
    key = secrets.token_hex(24)
    key_file = tmp_path / "keys"
    if content == "a directory":  # unreadable even for root
        key_file.mkdir()
    elif content is not None:
        key_file.write_text(content.format(key=key))
        key_file.chmod(mode)
    result = _server(tmp_path, "--api-key-file", str(key_file))
    assert result.returncode == 2, result.stderr
    assert f"--api-key-file {key_file}" in result.stderr
    assert needle in result.stderr
    assert key not in result.stderr + result.stdout


def test_a_new_key_needs_16_characters_and_a_stored_short_one_keeps_working(
    tmp_path: Path,
) -> None:
    """A key under 16 characters given by --api-key, a key file or TRACKER_API_KEY stops
    the server (exit 2, saying how to generate one); a short key the database already
    holds keeps working, given again or not."""
    key_file = tmp_path / "short-keys"
    key_file.write_text("alice:short\n")
    key_file.chmod(0o600)
    for options, env, source in [
        (["--api-key", "alice:short"], None, "--api-key"),
        (["--api-key-file", str(key_file)], None, f"--api-key-file {key_file} line 1"),
        ([], {"TRACKER_API_KEY": "short"}, "TRACKER_API_KEY"),
    ]:
        result = _server(tmp_path, *options, env=env)
        assert result.returncode == 2, result.stderr
        assert f"{source}: the key has 5 characters" in result.stderr
        assert "openssl rand -hex 24" in result.stderr
    directory = tmp_path / "old"
    directory.mkdir()

    async def store_short_key() -> None:
        storage = await open_storage(f"sqlite:///{directory / 'server.db'}")
        await storage.add_api_key("alice", "short")
        await storage.close()

    asyncio.run(store_short_key())
    for options in [("--api-key", "alice:short"), ()]:
        server = ServerProcess(directory, *options).start()
        try:
            assert tracker.Api(server.url, api_key="short").default_entity == "alice"
        finally:
            server.stop()
