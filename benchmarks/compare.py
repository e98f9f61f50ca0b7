"""Run tracker, W&B, MLflow and trackio side by side on the same workloads, one fresh process each.

Contenders: tracker offline and online (to a local ``tracker server``), wandb offline, MLflow
with a local SQLite store (synchronous and async logging), trackio local. Each (contender,
workload) pair runs in its own fresh interpreter (``sys.executable``: install the competitors
with ``pip install -e '.[bench]'`` into the interpreter that runs this script). It times
``import``, the first ``init()``, every ``log()`` call (the first ``TIMED_ROWS``), the time
until the rows are durable, ``finish()``, samples the RSS of the process and its helpers,
then reads the rows back with the tool's own reader in another fresh process.

Usage: ``python benchmarks/compare.py [--quick] [--contenders A,B] [--workloads A,B]
[--json PATH] [--markdown PATH]``
"""

from __future__ import annotations

import argparse
import importlib
import json
import random
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from array import array
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

# Nothing but the standard library at module level: a contender's process measures
# ``import <tool>`` first, before orjson or numpy could be loaded on its behalf.

HERE: Final = Path(__file__).resolve().parent
DEFAULT_JSON: Final = HERE / "results" / "compare.json"
POOL_SIZE: Final = 1000
TIMED_ROWS: Final = 50_000
QUICK_DIVISOR: Final = 20
QUICK_MIN_ROWS: Final = 200
CHILD_TIMEOUT_SECONDS: Final = 900.0
VERIFY_TIMEOUT_SECONDS: Final = 600.0
ACK_TIMEOUT_SECONDS: Final = 300.0
ARRAY_SIZE: Final = 16  # W&B logs a numpy array of <= 32 elements as a list, larger as a histogram

CONTENDERS: Final = (
    "tracker-offline",
    "tracker-online",
    "wandb-offline",
    "mlflow-sync",
    "mlflow-async",
    "trackio",
)
MODULES: Final = {
    "tracker-offline": "tracker",
    "tracker-online": "tracker",
    "wandb-offline": "wandb",
    "mlflow-sync": "mlflow",
    "mlflow-async": "mlflow",
    "trackio": "trackio",
}
DURABLE_BY: Final = {
    "tracker-offline": "flush()",
    "tracker-online": "every row acked",
    "wandb-offline": "finish()",
    "mlflow-sync": "each call",
    "mlflow-async": "flush_async_logging()",
    "trackio": "finish()",
}

Path_ = tuple[str, ...]


@dataclass(frozen=True)
class Workload:
    """One kind of row, how many rows each contender logs, and the values read back."""

    name: str
    title: str
    rows: dict[str, int]
    """Rows per contender in a full run: slow ones log fewer (rows/s stays comparable)."""
    checks: tuple[Path_, ...]
    """Key paths whose values are compared, row by row, with what was logged."""
    notes: dict[str, str] = field(default_factory=dict)
    """What a contender logs instead, when it cannot take the row as it is."""


WORKLOADS: Final = {
    w.name: w
    for w in (
        Workload(
            "floats10",
            "10 floats per row",
            {
                "tracker-offline": 200_000,
                "tracker-online": 200_000,
                "wandb-offline": 100_000,
                "mlflow-sync": 5_000,
                "mlflow-async": 3_000,
                "trackio": 200_000,
            },
            (("m0",), ("m9",)),
        ),
        Workload(
            "float1",
            "1 float per row, 200k rows",
            {
                "tracker-offline": 200_000,
                "tracker-online": 200_000,
                "wandb-offline": 200_000,
                "mlflow-sync": 6_000,
                "mlflow-async": 3_000,
                "trackio": 200_000,
            },
            (("loss",),),
        ),
        Workload(
            "keys100",
            "100 keys per row",
            {
                "tracker-offline": 50_000,
                "tracker-online": 50_000,
                "wandb-offline": 20_000,
                "mlflow-sync": 1_000,
                "mlflow-async": 500,
                "trackio": 50_000,
            },
            (("k000",), ("k099",)),
        ),
        Workload(
            "nested",
            f"a float, a numpy array of {ARRAY_SIZE} floats and a nested dict",
            {
                "tracker-offline": 100_000,
                "tracker-online": 100_000,
                "wandb-offline": 50_000,
                "mlflow-sync": 4_000,
                "mlflow-async": 2_000,
                "trackio": 100_000,
            },
            (("loss",), ("opt", "betas", "b1"), ("arr",)),
            {
                "mlflow-sync": "MLflow takes numbers only: the nested dict and the array are "
                f"logged flattened, as scalar metrics opt.lr, opt.betas.b1, ..., arr.0..arr."
                f"{ARRAY_SIZE - 1}; arr is not read back",
                "mlflow-async": "as mlflow-sync",
                "trackio": "trackio refuses numpy arrays: arr is logged as a list (tolist())",
            },
        ),
    )
}


# -- rows ----------------------------------------------------------------------------------


def make_rows(workload: str, size: int = POOL_SIZE, seed: int = 0) -> list[dict[str, Any]]:
    """The pool of distinct rows a contender logs cyclically (the same in every process)."""
    rng = random.Random(seed)
    if workload == "floats10":
        return [{f"m{k}": rng.random() for k in range(10)} for _ in range(size)]
    if workload == "float1":
        return [{"loss": rng.random()} for _ in range(size)]
    if workload == "keys100":
        return [{f"k{k:03d}": rng.random() for k in range(100)} for _ in range(size)]
    import numpy as np

    return [
        {
            "loss": rng.random(),
            "arr": np.array([rng.random() for _ in range(ARRAY_SIZE)]),
            "opt": {"lr": rng.random(), "betas": {"b1": rng.random(), "b2": rng.random()}},
        }
        for _ in range(size)
    ]


def plain(value: Any) -> Any:
    """``value`` with numpy arrays as lists: what every reader gives back."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    tolist = getattr(value, "tolist", None)
    return tolist() if callable(tolist) else value


def flatten(row: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Nested dicts and arrays as scalar metrics with dotted names (for MLflow)."""
    out: dict[str, float] = {}
    for key, value in plain(row).items():
        name = prefix + key
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        elif isinstance(value, list):
            out.update({f"{name}.{i}": float(v) for i, v in enumerate(value)})
        else:
            out[name] = float(value)
    return out


def lookup(document: Any, path: Path_) -> Any:
    """``document[path[0]][path[1]]...``, or ``MISSING``."""
    for part in path:
        if not isinstance(document, dict) or part not in document:
            return MISSING
        document = document[part]
    return document


MISSING: Final = object()


def count_verified(
    by_step: dict[int, dict[str, Any]], pool: list[dict[str, Any]], rows: int, checks: list[Path_]
) -> int:
    """How many of the ``rows`` logged rows (step i holds pool row i % size) read back equal."""
    expected = [plain(row) for row in pool]
    size = len(expected)
    good = 0
    for step in range(rows):
        stored = by_step.get(step)
        if stored is not None and all(
            lookup(stored, path) == lookup(expected[step % size], path) for path in checks
        ):
            good += 1
    return good


# -- the contenders, inside their own process ------------------------------------------------


class Contender:
    """One tool in a fresh process: import it, start a run, log, make durable, finish.

    Subclasses fill in the tool's calls; ``durable()`` returns when the rows are on disk
    (or acknowledged) by the tool's own guarantee; ``durable_is_finish`` when only
    ``finish()`` gives that guarantee.
    """

    durable_is_finish = False

    def __init__(self, name: str, root: Path, spec: dict[str, Any]) -> None:
        """Measure contender ``name`` in folder ``root`` per the orchestrator's ``spec``."""
        self.name = name
        self.root = root
        self.spec = spec
        self.module: Any = None

    def load(self) -> None:
        """Import the tool (the timed import)."""
        self.module = __import__(MODULES[self.name])

    def start(self) -> Callable[[dict[str, Any]], object]:
        """Start a run; return the call that logs one row."""
        raise NotImplementedError

    def convert(self, row: dict[str, Any]) -> dict[str, Any]:
        """The row as this tool accepts it (by default, as it is)."""
        return row

    def durable(self) -> None:
        """Return when every logged row is durable."""

    def finish(self) -> None:
        """End the run."""
        raise NotImplementedError

    def identity(self) -> dict[str, Any]:
        """What the reader process needs to find the run."""
        return {}


class TrackerOffline(Contender):
    """tracker, offline: the run log on local disk."""

    def start(self) -> Callable[[dict[str, Any]], object]:
        """`tracker.init(mode="offline")`."""
        self.run = self.module.init(
            mode="offline", project="bench", dir=str(self.root / "runs"), settings={"silent": True}
        )
        return self.run.log  # type: ignore[no-any-return]

    def durable(self) -> None:
        """`run.flush()`: every row in the run log."""
        self.run.flush()

    def finish(self) -> None:
        """`run.finish()`."""
        self.run.finish(quiet=True)

    def identity(self) -> dict[str, Any]:
        """The run directory."""
        return {"dir": str(self.run.dir)}


class TrackerOnline(TrackerOffline):
    """tracker, online: streams to the local server."""

    def start(self) -> Callable[[dict[str, Any]], object]:
        """`tracker.init()` with the server's URL."""
        self.run = self.module.init(
            project="bench",
            dir=str(self.root / "runs"),
            settings={"silent": True, "base_url": self.spec["url"]},
        )
        return self.run.log  # type: ignore[no-any-return]

    def durable(self) -> None:
        """An online `flush()`: every record appended is on disk and acknowledged."""
        if not self.run.flush(timeout=ACK_TIMEOUT_SECONDS):
            raise RuntimeError(
                f"not all acknowledged within {ACK_TIMEOUT_SECONDS:.0f}s: {self.run.status()}"
            )

    def identity(self) -> dict[str, Any]:
        """The server and the run's path."""
        return {"url": self.spec["url"], "path": self.run.path}


class WandbOffline(Contender):
    """wandb in offline mode: ``log()`` hands each row to the wandb-core service process."""

    durable_is_finish = True

    def start(self) -> Callable[[dict[str, Any]], object]:
        """`wandb.init(mode="offline")`."""
        self.run = self.module.init(project="bench", dir=str(self.root), mode="offline")
        return self.run.log  # type: ignore[no-any-return]

    def finish(self) -> None:
        """`run.finish()`: the service has written the .wandb file when it returns."""
        self.run.finish()

    def identity(self) -> dict[str, Any]:
        """The run's .wandb file."""
        files = list(Path(self.run.dir).parent.glob("*.wandb"))
        return {"file": str(files[0]) if files else None}


class MlflowSync(Contender):
    """MLflow with a local SQLite store; each ``log_metrics`` call commits before returning."""

    def start(self) -> Callable[[dict[str, Any]], object]:
        """`mlflow.start_run()` on ``sqlite:///ROOT/mlflow.db``."""
        mlflow = self.module
        mlflow.set_tracking_uri(self.spec["tracking_uri"])
        self.configure()
        mlflow.set_experiment("bench")
        self.run = mlflow.start_run()
        log_metrics = mlflow.log_metrics
        steps = iter(range(2**62))

        def log(row: dict[str, Any]) -> object:
            return log_metrics(row, step=next(steps))

        return log

    def configure(self) -> None:
        """Synchronous logging (the default)."""

    def convert(self, row: dict[str, Any]) -> dict[str, Any]:
        """Scalars only: nested dicts and arrays become dotted scalar metrics."""
        return flatten(row)

    def finish(self) -> None:
        """`mlflow.end_run()`."""
        self.module.end_run()

    def identity(self) -> dict[str, Any]:
        """The store and the run id."""
        return {"tracking_uri": self.spec["tracking_uri"], "run_id": self.run.info.run_id}


class MlflowAsync(MlflowSync):
    """MLflow with async logging: ``log_metrics`` queues; a thread pool writes."""

    def configure(self) -> None:
        """`mlflow.config.enable_async_logging(True)`."""
        self.module.config.enable_async_logging(True)

    def durable(self) -> None:
        """`mlflow.flush_async_logging()`."""
        self.module.flush_async_logging()


class Trackio(Contender):
    """trackio, local: ``log()`` appends to a list; a thread writes SQLite every 0.5 s."""

    durable_is_finish = True

    def start(self) -> Callable[[dict[str, Any]], object]:
        """`trackio.init()` (TRACKIO_DIR points into the temporary folder)."""
        self.run = self.module.init(
            project="bench", name="bench-run", embed=False, auto_log_cpu=False, auto_log_gpu=False
        )
        return self.run.log  # type: ignore[no-any-return]

    def convert(self, row: dict[str, Any]) -> dict[str, Any]:
        """Numpy arrays as lists (trackio skips an array with a warning)."""
        return plain(row)  # type: ignore[no-any-return]

    def finish(self) -> None:
        """`trackio.finish()`: waits (up to 30 s) for its sender thread to write SQLite."""
        self.module.finish()

    def identity(self) -> dict[str, Any]:
        """The project and run name."""
        return {"project": "bench", "run": "bench-run"}


ADAPTERS: Final[dict[str, type[Contender]]] = {
    "tracker-offline": TrackerOffline,
    "tracker-online": TrackerOnline,
    "wandb-offline": WandbOffline,
    "mlflow-sync": MlflowSync,
    "mlflow-async": MlflowAsync,
    "trackio": Trackio,
}


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    """Everything measured inside one contender's process; the orchestrator adds the rest."""
    name, rows = spec["contender"], int(spec["rows"])
    contender = ADAPTERS[name](name, Path(spec["root"]), spec)
    began = time.perf_counter()
    try:
        contender.load()
    except ImportError as exc:
        return {"skipped": f"{MODULES[name]} is not installed ({exc}); pip install -e '.[bench]'"}
    import_seconds = time.perf_counter() - began

    import _common  # after the timed import: it loads orjson

    pool = [contender.convert(row) for row in make_rows(spec["workload"])]
    began = time.perf_counter()
    log = contender.start()
    init_seconds = time.perf_counter() - began

    timed = min(rows, TIMED_ROWS)
    samples = array("q", bytes(8 * timed))
    start = time.perf_counter()
    _common.log_timed(log, pool, samples)
    offset = timed % len(pool)
    _common.log_untimed(log, pool[offset:] + pool[:offset], rows - timed)
    logged = time.perf_counter()
    contender.durable()
    durable = time.perf_counter()
    contender.finish()
    finished = time.perf_counter()
    if contender.durable_is_finish:
        durable = finished
    return {
        "rows": rows,
        "import_seconds": import_seconds,
        "init_seconds": init_seconds,
        "log_us": asdict(_common.Latency.from_samples(samples)),
        "calls_per_s": rows / (logged - start),
        "rows_per_s_durable": rows / (durable - start),
        "seconds_to_durable": durable - start,
        "finish_seconds": finished - (logged if contender.durable_is_finish else durable),
        "peak_rss_self_mb": _common.peak_rss_mb(),
        "identity": contender.identity(),
    }


# -- reading back, in another fresh process ------------------------------------------------


def read_tracker_offline(identity: dict[str, Any], keys: list[str]) -> dict[int, dict[str, Any]]:
    """`tracker.read_run(dir).history(keys=...)`, by step."""
    import tracker

    history = tracker.read_run(identity["dir"]).history(keys=keys)
    return {int(row["_step"]): row for row in history}


def read_tracker_online(identity: dict[str, Any], keys: list[str]) -> dict[int, dict[str, Any]]:
    """`tracker.Api(url).run(path).history(keys=...)`, by step."""
    import tracker

    history = tracker.Api(identity["url"]).run(identity["path"]).history(keys=keys)
    return {int(row["_step"]): row for row in history}


WANDB_HEADER: Final = b":W&B\xe1\xbe\x00"
WANDB_BLOCK: Final = 32 * 1024


def wandb_records(path: Path) -> Iterator[bytes]:
    """The records of a .wandb file: a 7-byte header, then LevelDB-log style 32 KiB blocks of
    chunks (CRC32C, length, type FULL=1 / FIRST=2 / MIDDLE=3 / LAST=4) holding protobufs.

    wandb 0.31 ships no Python reader of its own (the Go service writes the file), so the
    blocks are parsed here; the records are decoded with wandb's own protobuf classes.
    """
    data = path.read_bytes()
    if not data.startswith(WANDB_HEADER):
        raise ValueError(f"{path}: not a .wandb file (header {data[:7]!r})")
    pos, pending = len(WANDB_HEADER), b""
    while pos + 7 <= len(data):
        left = WANDB_BLOCK - pos % WANDB_BLOCK
        if left < 7:  # a block's tail too short for a chunk header is padding
            pos += left
            continue
        _crc, length, kind = struct.unpack_from("<IHB", data, pos)
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 1:
            yield chunk
        elif kind == 2:
            pending = chunk
        elif kind == 3:
            pending += chunk
        elif kind == 4:
            yield pending + chunk
            pending = b""


def read_wandb(identity: dict[str, Any], keys: list[str]) -> dict[int, dict[str, Any]]:
    """History records of the .wandb file, decoded with ``wandb.proto.wandb_internal_pb2``."""
    wandb_internal_pb2 = importlib.import_module("wandb.proto.wandb_internal_pb2")

    if identity["file"] is None:
        raise ValueError("the run wrote no .wandb file")
    by_step: dict[int, dict[str, Any]] = {}
    for blob in wandb_records(Path(identity["file"])):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(blob)
        if record.WhichOneof("record_type") != "history":
            continue
        row: dict[str, Any] = {}
        for item in record.history.item:
            names = list(item.nested_key) or [item.key]
            target = row
            for part in names[:-1]:
                target = target.setdefault(part, {})
            target[names[-1]] = json.loads(item.value_json)
        by_step[int(row["_step"])] = row
    return by_step


def read_mlflow(identity: dict[str, Any], keys: list[str]) -> dict[int, dict[str, Any]]:
    """`MlflowClient().get_metric_history(run_id, key)` per checked key, by step."""
    client = importlib.import_module("mlflow").MlflowClient(tracking_uri=identity["tracking_uri"])
    by_step: dict[int, dict[str, Any]] = {}
    for key in keys:
        for metric in client.get_metric_history(identity["run_id"], key):
            row = by_step.setdefault(int(metric.step), {})
            target = row
            *parents, last = key.split(".")
            for part in parents:
                target = target.setdefault(part, {})
            target[last] = metric.value
    return by_step


def read_trackio(identity: dict[str, Any], keys: list[str]) -> dict[int, dict[str, Any]]:
    """trackio's own reader of its SQLite database, `SQLiteStorage.get_logs`, by step."""
    storage = importlib.import_module("trackio.sqlite_storage").SQLiteStorage
    logs = storage.get_logs(identity["project"], identity["run"])
    return {int(row["step"]): row for row in logs}


READERS: Final[dict[str, Callable[[dict[str, Any], list[str]], dict[int, dict[str, Any]]]]] = {
    "tracker-offline": read_tracker_offline,
    "tracker-online": read_tracker_online,
    "wandb-offline": read_wandb,
    "mlflow-sync": read_mlflow,
    "mlflow-async": read_mlflow,
    "trackio": read_trackio,
}


def run_verify(spec: dict[str, Any]) -> dict[str, Any]:
    """Read the run back with the contender's reader; count rows found and rows equal."""
    name = spec["contender"]
    workload = WORKLOADS[spec["workload"]]
    checks = list(workload.checks)
    if name.startswith("mlflow"):
        checks = [path for path in checks if path != ("arr",)]
        keys = [".".join(path) for path in checks]
    else:
        keys = sorted({path[0] for path in checks})
    began = time.perf_counter()
    by_step = READERS[name](spec["identity"], keys)
    read_seconds = time.perf_counter() - began
    rows = int(spec["rows"])
    return {
        "stored": len(by_step),
        "verified": count_verified(by_step, make_rows(workload.name), rows, checks),
        "checked": [".".join(path) for path in checks],
        "read_seconds": read_seconds,
    }


# -- the orchestrator ----------------------------------------------------------------------


def contender_env(name: str, root: Path) -> dict[str, str]:
    """The environment of a contender's processes: everything under ``root``, no network."""
    import _common

    env = _common.child_env()
    env.update(
        {
            "TRACKER_CONFIG_DIR": str(root / "tracker-config"),
            "WANDB_MODE": "offline",
            "WANDB_SILENT": "true",
            "WANDB_DIR": str(root),
            "WANDB_CONFIG_DIR": str(root / "wandb-config"),
            "WANDB_CACHE_DIR": str(root / "wandb-cache"),
            "WANDB_DATA_DIR": str(root / "wandb-data"),
            "TRACKIO_DIR": str(root / "trackio"),
            "HF_HOME": str(root / "hf"),
            "HF_HUB_OFFLINE": "1",
            "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        }
    )
    for variable in ("TRACKER_BASE_URL", "TRACKER_API_KEY", "TRACKER_MODE", "TRACKIO_SPACE_ID"):
        env.pop(variable, None)
    return env


def spawn(mode: str, spec: dict[str, Any], root: Path, timeout: float) -> dict[str, Any]:
    """Run this script with ``mode`` (``--child`` / ``--verify``) in a fresh process under
    ``root``; return its result, with the peak RSS of its process tree."""
    import _common

    spec_path, out_path = root / f"{mode[2:]}-spec.json", root / f"{mode[2:]}-result.json"
    spec_path.write_text(json.dumps(spec))
    log_path = root / f"{mode[2:]}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), mode, str(spec_path), str(out_path)],
            cwd=root,
            env=contender_env(spec["contender"], root),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        sampler = _common.TreeRssSampler(process.pid)
        try:
            code = process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            code = None
        peak = sampler.stop()
    tail = log_path.read_text(errors="replace")[-800:].strip()
    if code != 0 or not out_path.exists():
        what = "timed out" if code is None else f"exited with {code}"
        return {"error": f"{mode[2:]} {what}: {tail}"}
    result: dict[str, Any] = json.loads(out_path.read_text())
    result["peak_rss_tree_mb"] = peak
    return result


def measure(
    name: str, workload: Workload, rows: int, base: Path, url: str | None
) -> dict[str, Any]:
    """One contender on one workload: the measuring process, then the reading one."""
    root = Path(tempfile.mkdtemp(prefix=f"{name}-{workload.name}-", dir=base))
    spec: dict[str, Any] = {
        "contender": name,
        "workload": workload.name,
        "rows": rows,
        "root": str(root),
        "url": url,
        "tracking_uri": f"sqlite:///{root / 'mlflow.db'}",
    }
    print(f"  {name:<16} {rows:>8,} rows ...", end="", flush=True)
    result = spawn("--child", spec, root, CHILD_TIMEOUT_SECONDS)
    if "error" in result or "skipped" in result:
        print(" " + result.get("skipped", "failed"))
        return result
    spec["identity"] = result.pop("identity")
    check = spawn("--verify", spec, root, VERIFY_TIMEOUT_SECONDS)
    if "error" in check:
        result["verify_error"] = check["error"]
        check = {"stored": None, "verified": None}
    check.pop("peak_rss_tree_mb", None)
    result.update(check)
    if name in workload.notes:
        result["note"] = workload.notes[name]
    print(
        f" {result['rows_per_s_durable']:>12,.0f} rows/s durable, "
        f"verified {result['verified']}/{rows}"
    )
    return result


@contextmanager
def maybe_server(root: Path, wanted: bool) -> Iterator[str | None]:
    """A ``tracker server`` (fresh SQLite file under ``root``) when ``wanted``: its URL."""
    if not wanted:
        yield None
        return
    import stream

    with stream.running_server(root) as server:
        yield server.url


def rows_for(workload: Workload, name: str, quick: bool) -> int:
    """The rows ``name`` logs in ``workload`` (a twentieth of them, at least 200, quick)."""
    rows = workload.rows[name]
    return max(QUICK_MIN_ROWS, rows // QUICK_DIVISOR) if quick else rows


def cell(result: dict[str, Any], key: str, unit: str, scale: float = 1.0) -> str:
    """A table cell for ``result[key]`` (``-`` when missing)."""
    import _common

    value = result.get(key)
    return "-" if value is None else _common.fmt_value(value * scale, unit)


def workload_table(workload: Workload, results: dict[str, dict[str, Any]]) -> str:
    """The Markdown table of one workload: a line per contender."""
    import _common

    header = (
        "contender",
        "rows",
        "import",
        "init",
        "log() p50",
        "log() p99",
        "rows/s until durable",
        "durable at",
        "finish()",
        "peak RSS (tree)",
        "read back",
    )
    lines = []
    for name, result in results.items():
        if "skipped" in result or "error" in result:
            reason = result.get("skipped") or result["error"]
            lines.append((name, *["-"] * (len(header) - 2), reason[:120].replace("|", "/")))
            continue
        verified = result.get("verified")
        lines.append(
            (
                name,
                f"{result['rows']:,}",
                cell(result, "import_seconds", "ms"),
                cell(result, "init_seconds", "ms"),
                _common.fmt_value(result["log_us"]["p50_us"], "us"),
                _common.fmt_value(result["log_us"]["p99_us"], "us"),
                cell(result, "rows_per_s_durable", "rate"),
                DURABLE_BY[name],
                cell(result, "finish_seconds", "ms"),
                cell(result, "peak_rss_tree_mb", "MB"),
                "not verified" if verified is None else f"{verified:,} / {result['rows']:,}",
            )
        )
    return _common.markdown_table(header, lines)


def ratio(a: float | None, b: float | None) -> float | None:
    """``a / b``, None when either is missing."""
    return None if a is None or b is None or b == 0 else a / b


def targets(results: dict[str, dict[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """The issue's targets that this run measures, per workload where they apply."""
    import _common

    rows: list[dict[str, Any]] = []

    def add(metric: str, value: Any, unit: str, target: str, met: bool | None) -> None:
        rows.append(
            {
                "metric": metric,
                "value": _common.fmt_value(value, unit),
                "target": target,
                "met": met,
            }
        )

    def get(workload: str, name: str, key: str) -> Any:
        result = results.get(workload, {}).get(name, {})
        return result.get(key)

    for workload, by_contender in results.items():
        off = by_contender.get("tracker-offline", {})
        on = by_contender.get("tracker-online", {})
        if "log_us" in off and workload == "floats10":
            p50, p99 = off["log_us"]["p50_us"], off["log_us"]["p99_us"]
            add("floats10: tracker offline log() p50", p50, "us", "<= 1 µs", p50 <= 1)
            add("floats10: tracker offline log() p99", p99, "us", "<= 10 µs", p99 <= 10)
        if "rows_per_s_durable" in off:
            rate = off["rows_per_s_durable"]
            add(f"{workload}: tracker offline rows/s durable", rate, "rate", "", None)
            if workload == "floats10":
                rows[-1].update(target=">= 500,000/s", met=rate >= 500_000)
        if "rows_per_s_durable" in on:
            rate = on["rows_per_s_durable"]
            add(f"{workload}: tracker online rows/s acked", rate, "rate", "", None)
            if workload == "floats10":
                rows[-1].update(target=">= 300,000/s", met=rate >= 300_000)
        for peer, times in (("wandb-offline", 50), ("trackio", 10)):
            speedup = ratio(
                get(workload, "tracker-offline", "rows_per_s_durable"),
                get(workload, peer, "rows_per_s_durable"),
            )
            if speedup is not None:
                add(
                    f"{workload}: tracker offline / {peer} rows/s durable",
                    speedup,
                    "x",
                    f">= {times}x",
                    speedup >= times,
                )
            rss = ratio(
                get(workload, "tracker-offline", "peak_rss_tree_mb"),
                get(workload, peer, "peak_rss_tree_mb"),
            )
            if rss is not None:
                add(
                    f"{workload}: tracker offline / {peer} peak RSS",
                    rss,
                    "x",
                    "< 1x",
                    rss < 1,
                )
    for name, key, label, limit in (
        ("tracker-offline", "import_seconds", "import tracker", 0.1),
        ("tracker-offline", "init_seconds", "first init() of a process, offline", 0.02),
        ("tracker-online", "init_seconds", "first init() of a process, online", 0.15),
        ("tracker-offline", "finish_seconds", "finish() offline, after flush()", 0.05),
    ):
        values = [r[name][key] for r in results.values() if key in r.get(name, {})]
        if values:
            middle = statistics.median(values)
            add(
                f"{label} (median over workloads; worst {max(values) * 1000:.1f} ms)",
                middle,
                "ms",
                f"<= {limit * 1000:.0f} ms",
                middle <= limit,
            )
    return rows


def markdown(report: dict[str, Any]) -> str:
    """Every workload's table and the targets, as Markdown."""
    import _common

    env = report["environment"]
    parts = [
        f"Run {env['date']} on {env['cpu_count']} CPUs, {env['platform']}, Python "
        f"{env['python']}; load average {env['loadavg_1m']:.2f} at start, "
        f"{report['loadavg_1m_at_end']:.2f} at end. Versions: "
        + ", ".join(f"{k} {v}" for k, v in report["versions"].items())
        + f". Command: `{report['command']}`."
    ]
    for name, results in report["results"].items():
        workload = WORKLOADS[name]
        parts.append(f"#### {workload.title}\n\n{workload_table(workload, results)}")
        notes = [f"{k}: {r['note']}" for k, r in results.items() if r.get("note")]
        if notes:
            parts.append("\n".join(f"- {note}" for note in notes))
    lines = [
        (r["metric"], r["value"], r["target"], {True: "yes", False: "**no**"}.get(r["met"], ""))
        for r in report["targets"]
    ]
    parts.append(
        "#### Targets\n\n" + _common.markdown_table(("metric", "value", "target", "met?"), lines)
    )
    return "\n\n".join(parts) + "\n"


def warm_up_imports(contenders: list[str]) -> None:
    """Import every contender's module once, untimed, so that no tool's first timed import
    pays for reading its files from disk (the page cache is warm for all alike)."""
    import _common

    for module in sorted({MODULES[name] for name in contenders}):
        subprocess.run(
            [sys.executable, "-c", f"import {module}"],
            env=_common.child_env(),
            capture_output=True,
            check=False,
        )


def versions() -> dict[str, str]:
    """The installed version of every contender (``-`` when missing), without importing it."""
    from importlib import metadata

    out = {}
    for module in ("wandb", "mlflow", "trackio", "numpy", "orjson"):
        try:
            out[module] = metadata.version(module)
        except metadata.PackageNotFoundError:
            out[module] = "not installed"
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line: ``--quick``, ``--contenders``, ``--workloads``, ``--json``,
    ``--markdown``."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: a twentieth of the rows (>= 200)"
    )
    parser.add_argument(
        "--contenders", default=",".join(CONTENDERS), help="comma-separated, of: %(default)s"
    )
    parser.add_argument(
        "--workloads", default=",".join(WORKLOADS), help="comma-separated, of: %(default)s"
    )
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="results (%(default)s)")
    parser.add_argument("--markdown", type=Path, help="also write the Markdown tables here")
    args = parser.parse_args(argv)
    for flag, known in (("contenders", CONTENDERS), ("workloads", tuple(WORKLOADS))):
        chosen = [part.strip() for part in getattr(args, flag).split(",") if part.strip()]
        unknown = [part for part in chosen if part not in known]
        if unknown or not chosen:
            parser.error(f"--{flag} {unknown or chosen}: use a comma-separated list of {known}")
        setattr(args, flag, chosen)
    return args


def main(argv: list[str] | None = None) -> int:
    """Measure every contender on every workload; print and write the tables and the JSON."""
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] in (["--child"], ["--verify"]):
        spec = json.loads(Path(argv[1]).read_text())
        result = run_child(spec) if argv[0] == "--child" else run_verify(spec)
        Path(argv[2]).write_text(json.dumps(result))
        return 0
    args = parse_args(argv)
    import _common

    env = _common.environment(_common.timer_overhead_ns())
    warm_up_imports(args.contenders)
    results: dict[str, dict[str, dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="tracker-compare-") as tmp:
        base = Path(tmp)
        with maybe_server(base, "tracker-online" in args.contenders) as url:
            for name in args.workloads:
                workload = WORKLOADS[name]
                print(f"{workload.title}:")
                results[name] = {
                    contender: measure(
                        contender, workload, rows_for(workload, contender, args.quick), base, url
                    )
                    for contender in args.contenders
                }
    command = "python benchmarks/compare.py" + (" --quick" if args.quick else "")
    report: dict[str, Any] = {
        "environment": env,
        "versions": versions(),
        "command": command,
        "settings": {"quick": args.quick, "pool_size": POOL_SIZE, "timed_rows": TIMED_ROWS},
        "results": results,
        "loadavg_1m_at_end": _common.load_average(),
    }
    report["targets"] = targets(results)
    text = markdown(report)
    print("\n" + text)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text)
    _common.write_json(args.json, report)
    failed = [
        f"{w}/{c}"
        for w, by in results.items()
        for c, r in by.items()
        if "error" in r or (r.get("verified") is not None and r["verified"] != r["rows"])
    ]
    if failed:
        print(f"failed or rows missing: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
