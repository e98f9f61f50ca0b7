"""System metrics (`settings.stats_interval_seconds`, `disable_stats`): samples of the process
tree and the machine on the run's ``system`` stream, apart from its history.

What a process does (a tree of children burning CPU, psutil missing, a GPU driver that
hangs, fork) runs in real subprocesses; the rest in this process. The suite disables
stats (conftest); every test here turns them on.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from server_process import child_env
from server_process import run_script as run_child

import tracker
from tracker._cli import main as tracker_cli
from tracker._errors import UsageError
from tracker._records.kinds import EXIT, SYSTEM
from tracker._rundir import LOG_NAME
from tracker._runlog import RunLogReader
from tracker._server._runner import EmbeddedServer
from tracker._system import NO_PSUTIL_NOTICE
from tracker._system._sampler import OsCounters, PsutilCounters, Sampler, find_cgroup_memory

STATS = {"silent": True, "disable_stats": False, "stats_interval_seconds": 0.2}
HOST_KEYS = {
    "proc.cpu_percent",
    "proc.rss_mb",
    "proc.threads",
    "cpu.count",
    "cpu.percent",
    "memory.percent",
    "memory.used_mb",
    "memory.available_mb",
    "disk.percent",
    "disk.used_gb",
    "disk.read_mb",
    "disk.write_mb",
    "network.sent_mb",
    "network.recv_mb",
}


@pytest.fixture
def sampling(tmp_path: Path) -> Callable[..., tracker.Run]:
    """Start an offline run sampling every 0.2 s: ``sampling(**settings)`` changes that."""

    def start(**settings: Any) -> tracker.Run:
        return tracker.init(
            project="tests", dir=tmp_path, mode="offline", settings={**STATS, **settings}
        )

    return start


def run_script(tmp_path: Path, script: str, **env_changes: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in ``tmp_path`` with system metrics on every 0.2 s (and ``env_changes``)."""
    env = child_env(tmp_path)
    env.update(TRACKER_DISABLE_STATS="0", TRACKER_STATS_INTERVAL_SECONDS="0.2")
    env.update(env_changes)
    return run_child(tmp_path, script, env)


def samples_of(run_dir: Path | str) -> list[dict[str, Any]]:
    """The run's system stream, read back from its directory."""
    return list(tracker.read_run(run_dir).history(stream="system"))


def check_values(samples: list[dict[str, Any]]) -> None:
    """Every value is a finite number >= 0, and samples come in time order."""
    for sample in samples:
        for name, value in sample.items():
            assert type(value) in (int, float), (name, value)
            assert math.isfinite(value), (name, value)
            assert value >= 0, (name, value)
    stamps = [sample["_timestamp"] for sample in samples]
    assert stamps == sorted(stamps)
    assert len(set(stamps)) == len(stamps)


LATEST = Path("tracker-runs") / "latest-run"

BURN = """
import subprocess, sys, time
seconds, how = float(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else ""
if how:  # "tree": a child burns too and is waited for; "orphan": it burns on after this exits
    child = subprocess.Popen([sys.executable, __file__, sys.argv[1]])
if how == "orphan":
    time.sleep(seconds / 2)
    sys.exit(0)
end = time.process_time() + seconds
while time.process_time() < end:
    pass
if how == "tree":
    child.wait()
"""


def burning(tmp_path: Path, script: str, **env_changes: str) -> None:
    """Run ``script`` with ``burn.py`` (BURN) beside it."""
    (tmp_path / "burn.py").write_text(BURN)
    run_script(tmp_path, script, **env_changes)


TREE_SCRIPT = """
import subprocess, sys, time, tracker
run = tracker.init(project="system", mode="offline")
run.log({"loss": 1.0})
time.sleep(0.5)  # idle samples first
burn = [sys.executable, "burn.py", "1.0"]
children = [subprocess.Popen(burn), subprocess.Popen([*burn, "tree"])]  # a tree of three
for child in children:
    child.wait()
time.sleep(0.5)
run.log({"loss": 0.5})
run.finish()
"""


def test_a_process_tree_burning_cpu_shows_in_the_samples(tmp_path: Path) -> None:
    """Children and a grandchild busy-looping push ``proc.cpu_percent`` far above an idle
    process's, ``proc.children`` counts them, and the history and its steps are untouched."""
    burning(tmp_path, TREE_SCRIPT)
    stored = tracker.read_run(tmp_path / LATEST)
    samples = samples_of(tmp_path / LATEST)
    check_values(samples)
    assert len(samples) >= 8
    assert set(samples[-1]) >= HOST_KEYS
    assert max(sample["proc.children"] for sample in samples) >= 2
    idle = samples[1]["proc.cpu_percent"]  # before the children start
    busiest = max(sample["proc.cpu_percent"] for sample in samples)
    assert idle < 20
    assert busiest > 80  # three busy processes on two cores: up to 200
    assert [row["_step"] for row in stored.history()] == [0, 1]
    row_keys = {"_step", "_timestamp", "_runtime", "loss"}
    assert [set(row) for row in stored.history()] == [row_keys, row_keys]
    assert not any(name.startswith(("proc.", "cpu.")) for name in stored.summary)


def test_a_descendant_leaving_the_tree_never_makes_cpu_negative(tmp_path: Path) -> None:
    """A child that exits without waiting for its busy grandchild takes that grandchild's
    time out of the tree (it is reparented): the next sample says 0 or more, not less."""
    script = """
    import subprocess, sys, time, tracker
    run = tracker.init(project="system", mode="offline")
    subprocess.run([sys.executable, "burn.py", "1.5", "orphan"], check=True)
    time.sleep(0.5)
    run.finish()
    """
    burning(tmp_path, script, TRACKER_STATS_INTERVAL_SECONDS="0.1")
    samples = samples_of(tmp_path / LATEST)
    check_values(samples)
    assert max(sample["proc.children"] for sample in samples) >= 2


def test_a_run_shorter_than_one_interval_has_its_first_sample(
    sampling: Callable[..., tracker.Run],
) -> None:
    """The first sample is taken at start, so even a run that ends at once has one, before
    its exit record, and nothing is recorded after that."""
    run = sampling(stats_interval_seconds=60)
    run.finish()
    samples = samples_of(run.dir)
    assert len(samples) == 1
    assert run.start_time <= samples[0]["_timestamp"] <= time.time()
    kinds = [record[1] for record in records_of(run)]
    assert kinds[-1] == EXIT
    assert kinds.count(SYSTEM) == 1


def records_of(run: tracker.Run) -> list[Any]:
    """Every record of a run's log, in order."""
    reader = RunLogReader(Path(run.dir).parent / LOG_NAME)
    return [record for records in reader.frame_records() for record in records]


def test_sampling_stops_at_finish(sampling: Callable[..., tracker.Run]) -> None:
    """Samples come every interval while the run lives; none is written after its exit
    record, and the log does not grow once the run is finished."""
    run = sampling(stats_interval_seconds=0.1)
    time.sleep(0.8)
    run.finish()
    log = Path(run.dir).parent / LOG_NAME
    size = log.stat().st_size
    time.sleep(0.4)
    assert log.stat().st_size == size
    kinds = [record[1] for record in records_of(run)]
    assert kinds[-1] == EXIT
    assert kinds.count(SYSTEM) >= 4


def test_disable_stats_records_no_samples(sampling: Callable[..., tracker.Run]) -> None:
    """``disable_stats=True`` takes no sample at all, however short the interval."""
    run = sampling(disable_stats=True, stats_interval_seconds=0.1)
    time.sleep(0.3)
    run.finish()
    assert samples_of(run.dir) == []


def test_a_disabled_run_samples_nothing(tmp_path: Path) -> None:
    """A disabled run writes nothing, system metrics included."""
    run = tracker.init(mode="disabled", dir=tmp_path, settings=STATS)
    time.sleep(0.3)
    run.finish()
    assert not (tmp_path / "tracker-runs").exists()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"stats_interval_seconds": 0.01},
            "settings['stats_interval_seconds']=0.01 is not a number of seconds >= 0.1",
        ),
        ({"stats_interval_seconds": "15"}, "is not a number of seconds >= 0.1"),
        ({"disable_stats": "yes"}, "settings['disable_stats']='yes' is not a bool"),
    ],
)
def test_bad_stats_settings_are_refused(
    sampling: Callable[..., tracker.Run], settings: dict[str, Any], message: str
) -> None:
    """A bad interval or flag is an error naming the setting and what to use."""
    with pytest.raises(UsageError, match=message.replace("[", r"\[").replace("]", r"\]")):
        sampling(**settings)


def test_a_bad_stats_variable_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad TRACKER_STATS_INTERVAL_SECONDS is an error naming the variable."""
    monkeypatch.setenv("TRACKER_STATS_INTERVAL_SECONDS", "0")
    with pytest.raises(UsageError, match=r"TRACKER_STATS_INTERVAL_SECONDS='0' is not a number"):
        tracker.init(project="tests", dir=tmp_path, mode="offline")


def test_an_online_run_and_a_synced_one_read_their_samples_from_the_server(
    tmp_path: Path, server: EmbeddedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """An online run's samples reach the server's system stream, and an offline run's do
    with ``tracker sync``: ``Api().run(path).history(stream="system")`` reads what
    ``read_run`` reads."""
    settings = {**STATS, "base_url": server.url}
    online = tracker.init(project="system", dir=tmp_path, settings=settings)
    online.log({"loss": 1.0})
    time.sleep(0.5)
    online.finish()
    offline = tracker.init(project="system", dir=tmp_path, mode="offline", settings=settings)
    time.sleep(0.5)
    offline.finish()
    assert tracker_cli(["sync", offline.dir, "--base-url", server.url]) == 0
    assert "records sent" in capsys.readouterr().out
    api = tracker.Api(server.url)
    for run in (online, offline):
        stored = samples_of(run.dir)
        assert len(stored) >= 2
        assert HOST_KEYS - {"cpu.percent"} <= set(stored[0])
        assert list(api.run(run.path).history(stream="system")) == stored
    assert [row["_step"] for row in api.run(online.path).history()] == [0]


def test_without_psutil_samples_are_taken_and_the_notice_is_said_once(tmp_path: Path) -> None:
    """With psutil unimportable the runs still record this process's metrics and the
    machine's (no ``proc.children``), and say once how to get all of them."""
    script = """
    import sys
    sys.modules["psutil"] = None  # import psutil raises ImportError
    import time, tracker
    first = tracker.init(project="system", mode="offline")
    time.sleep(0.5)
    first.finish()
    second = tracker.init(project="system", mode="offline")
    second.finish()
    print(first.dir)
    """
    done = run_script(tmp_path, script, TRACKER_SILENT="0", TRACKER_CONSOLE="off")
    assert done.stderr.count(NO_PSUTIL_NOTICE) == 1
    samples = samples_of(done.stdout.strip())
    check_values(samples)
    assert len(samples) >= 2
    assert "proc.children" not in samples[-1]
    if sys.platform == "linux":
        assert set(samples[-1]) >= HOST_KEYS
    assert samples_of(tmp_path / LATEST)


def test_a_forked_child_takes_no_samples(tmp_path: Path) -> None:
    """After a fork only the parent samples: the child (with no I/O thread) records
    nothing into the inherited run and exits cleanly; the parent's samples go on."""
    script = """
    import os, time, tracker
    run = tracker.init(project="system", mode="offline")
    time.sleep(0.3)
    pid = os.fork()
    if pid == 0:
        time.sleep(1.0)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert status == 0, status
    run.finish()
    """
    run_script(tmp_path, script)
    samples = samples_of(tmp_path / LATEST)
    check_values(samples)
    assert len(samples) >= 5
    assert max(sample["proc.children"] for sample in samples) >= 1  # the forked child


# --- GPUs: pynvml stands in for a driver this machine does not have --------------------

FAKE_NVML = """
import time

NVML_TEMPERATURE_GPU = 0


class NVMLError(Exception):
    pass


class _Rates:
    gpu = 37


class _Memory:
    used = 3 * 2**30
    total = 12 * 2**30


def nvmlInit():
    if MODE == "no-driver":
        raise NVMLError("NVML Shared Library Not Found")


def nvmlShutdown():
    pass


def nvmlDeviceGetCount():
    return 2


def nvmlDeviceGetHandleByIndex(index):
    return index


def nvmlDeviceGetUtilizationRates(handle):
    if MODE == "hang" and handle == 1:
        time.sleep(3600)
    return _Rates()


def nvmlDeviceGetMemoryInfo(handle):
    return _Memory()


def nvmlDeviceGetTemperature(handle, sensor):
    return 61


def nvmlDeviceGetPowerUsage(handle):
    if handle == 1:
        raise NVMLError("Not Supported")
    return 123_456
"""

GPU_SCRIPT = """
import time, tracker
run = tracker.init(project="system", mode="offline")
time.sleep(1.5)
began = time.monotonic()
run.finish()
print(time.monotonic() - began)
"""


def run_with_nvml(tmp_path: Path, mode: str) -> tuple[list[dict[str, Any]], float]:
    """Run GPU_SCRIPT with a ``pynvml`` module in ``mode``: its samples and finish's time."""
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / "pynvml.py").write_text(f"MODE = {mode!r}\n" + FAKE_NVML)
    env = child_env(tmp_path)
    path = os.pathsep.join([str(modules), env["PYTHONPATH"]])
    done = run_script(tmp_path, GPU_SCRIPT, PYTHONPATH=path)
    return samples_of(tmp_path / LATEST), float(done.stdout.strip())


def test_gpus_are_sampled_through_pynvml(tmp_path: Path) -> None:
    """Each GPU's utilization, memory, temperature and power become ``gpu.{i}.*``; a value
    a device does not report is absent."""
    samples, _ = run_with_nvml(tmp_path, "works")
    check_values(samples)
    assert len(samples) >= 5
    last = samples[-1]
    assert last["gpu.0.utilization"] == 37.0
    assert last["gpu.0.memory_used_mb"] == 3 * 1024
    assert last["gpu.0.memory_percent"] == 25.0
    assert last["gpu.0.temperature_c"] == 61.0
    assert last["gpu.0.power_w"] == pytest.approx(123.456)
    assert "gpu.1.power_w" not in last
    assert last["gpu.1.temperature_c"] == 61.0


def test_a_hung_gpu_driver_does_not_stop_sampling(tmp_path: Path) -> None:
    """A GPU query that never returns costs the samples their GPU keys, not the samples:
    they keep coming every interval, and finish() does not wait for the driver."""
    samples, finish_seconds = run_with_nvml(tmp_path, "hang")
    check_values(samples)
    assert len(samples) >= 4
    assert not any(name.startswith("gpu.") for sample in samples for name in sample)
    assert "proc.rss_mb" in samples[-1]
    assert finish_seconds < 2


def test_a_gpu_driver_that_does_not_start_gives_no_gpu_keys(tmp_path: Path) -> None:
    """When nvmlInit fails the samples have no GPU keys and the rest as usual."""
    samples, _ = run_with_nvml(tmp_path, "no-driver")
    assert len(samples) >= 5
    assert not any(name.startswith("gpu.") for sample in samples for name in sample)
    assert set(samples[-1]) >= HOST_KEYS


# --- the sampler's parts ---------------------------------------------------------------


def write_files(folder: Path, files: dict[str, str]) -> Path:
    """Write ``files`` (name -> text) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


GIB = 2**30
V2_FILES = {
    "memory.max": f"{GIB}\n",
    "memory.current": f"{GIB // 2}\n",
    "memory.stat": f"anon 1000\nfile 2000\ninactive_file {GIB // 4}\nactive_file 10\n",
}
V1_FILES = {
    "memory.limit_in_bytes": f"{2 * GIB}\n",
    "memory.usage_in_bytes": f"{GIB}\n",
    "memory.stat": f"cache 5\ntotal_inactive_file {GIB // 2}\n",
}


def test_a_memory_limited_cgroup_v2_bounds_the_memory_metrics(tmp_path: Path) -> None:
    """In a cgroup v2 with a limit below the host's memory, memory is its usage (less the
    inactive page cache) against its limit."""
    write_files(tmp_path / "cgroup" / "job" / "x", V2_FILES)
    proc_cgroup = tmp_path / "proc-cgroup"
    proc_cgroup.write_text("0::/job/x\n")
    cgroup = find_cgroup_memory(proc_cgroup, tmp_path / "cgroup")
    assert cgroup is not None
    metrics = Sampler(OsCounters(), tmp_path, cgroup).sample()
    assert metrics["memory.used_mb"] == 256
    assert metrics["memory.available_mb"] == 768
    assert metrics["memory.percent"] == 25


def test_a_cgroup_v1_limit_and_a_container_root_are_found(tmp_path: Path) -> None:
    """cgroup v1's memory controller is read too, at the mount's root when the cgroup's
    own folder is not visible (as in a container)."""
    write_files(tmp_path / "cgroup" / "memory", V1_FILES)
    proc_cgroup = tmp_path / "proc-cgroup"
    proc_cgroup.write_text("5:cpu,cpuacct:/docker/abc\n4:memory:/docker/abc\n0::/\n")
    cgroup = find_cgroup_memory(proc_cgroup, tmp_path / "cgroup")
    assert cgroup is not None
    assert cgroup.read() == (2 * GIB, GIB // 2)
    metrics = Sampler(OsCounters(), tmp_path, cgroup).sample()
    assert metrics["memory.percent"] == 25
    assert metrics["memory.available_mb"] == 1536


def test_an_unlimited_cgroup_leaves_the_host_memory(tmp_path: Path) -> None:
    """A cgroup without a limit ("max"), or one above the host's memory, is not used."""
    write_files(tmp_path / "v2", {**V2_FILES, "memory.max": "max\n"})
    (tmp_path / "proc-v2").write_text("0::/\n")
    cgroup = find_cgroup_memory(tmp_path / "proc-v2", tmp_path / "v2")
    assert cgroup is not None
    assert cgroup.read() is None
    huge = {**V1_FILES, "memory.limit_in_bytes": "9223372036854771712\n"}
    write_files(tmp_path / "v1" / "memory", huge)
    (tmp_path / "proc-v1").write_text("4:memory:/\n")
    cgroup = find_cgroup_memory(tmp_path / "proc-v1", tmp_path / "v1")
    assert cgroup is not None
    counters = OsCounters()
    host = counters.host_memory()
    assert host is not None
    metrics = Sampler(counters, tmp_path, cgroup).sample()
    assert metrics["memory.used_mb"] + metrics["memory.available_mb"] == pytest.approx(
        host[0] / 2**20
    )
    assert find_cgroup_memory(tmp_path / "missing", tmp_path) is None


def test_the_disk_metrics_are_of_the_run_directorys_file_system(tmp_path: Path) -> None:
    """``disk.*`` describe the file system holding the given folder, as ``df`` does."""
    psutil = pytest.importorskip("psutil")
    metrics = Sampler(PsutilCounters(psutil), tmp_path).sample()
    usage = psutil.disk_usage(str(tmp_path))
    assert metrics["disk.percent"] == pytest.approx(usage.percent, abs=0.5)
    assert metrics["disk.used_gb"] == pytest.approx(usage.used / GIB, abs=0.5)
    assert metrics["cpu.count"] == os.cpu_count()
    assert "cpu.percent" not in metrics  # a rate: from the second sample on


def test_rates_start_with_the_second_sample(tmp_path: Path) -> None:
    """``cpu.percent`` is over the time since the previous sample, so the first has none;
    ``proc.cpu_percent`` of the first is since the process started."""
    for counters in (OsCounters(), PsutilCounters(pytest.importorskip("psutil"))):
        sampler = Sampler(counters, tmp_path)
        first = sampler.sample()
        assert "cpu.percent" not in first
        assert first["proc.cpu_percent"] >= 0
        end = time.process_time() + 0.1
        while time.process_time() < end:
            pass
        second = sampler.sample()
        assert 0 <= second["cpu.percent"] <= 100
        assert second["proc.cpu_percent"] > 30  # this loop, busy for all of it
