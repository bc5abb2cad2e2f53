"""A run that cannot succeed stops (issue 25): every kind of worker failure Beam reports ends the run
with one readable line, in the default multi-process mode and with ``--runner=FnApiRunner``.

Each scenario is a real Beam pipeline in a fresh interpreter (pipeline/launch/workers.py's run_pipeline, what
``clapcorpus run`` and ``clapcorpus fetch`` use) with a DoFn that fails the way real ones do: a module
the workers cannot import, an import or an exception in ``setup``, a worker process killed by SIGKILL
(what the kernel's out-of-memory killer sends) or one that exits. Before pipeline/launch/workers.py the
killed and exited workers hung the run for ever (measured: still waiting after 60 s, Beam logging
"Worker subprocess exited with return code 137"), and a failed bundle could hang the shutdown. The
timeouts below only bound a hang; nothing here measures speed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clap_corpus.pipeline.demo.corpus import write_demo_corpus

FAILING_DOFN = """
import os, signal
import apache_beam as beam


class Fail(beam.DoFn):
    def __init__(self, kind):
        self.kind = kind

    def setup(self):
        if self.kind == "setup_import":
            import a_package_this_worker_does_not_have  # noqa: F401
        if self.kind == "setup_raises":
            raise OSError("the model file is missing")

    def process(self, x):
        if self.kind == "sigkill" and x == 3:
            os.kill(os.getpid(), signal.SIGKILL)
        if self.kind == "exit" and x == 3:
            os._exit(3)
        yield x
"""

SCENARIOS = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])  # the launcher imports the DoFn's module; workers only via PYTHONPATH
import apache_beam as beam
from clap_corpus.pipeline.spec.beam_options import pipeline_options
from clap_corpus.pipeline.launch.workers import RunFailed, run_pipeline
from failing import Fail

for kind in json.loads(sys.argv[2]):
    start = time.monotonic()
    try:
        run_pipeline(
            pipeline_options(json.loads(sys.argv[3])),
            lambda p: p | beam.Create(list(range(8))) | beam.Reshuffle() | beam.ParDo(Fail(kind)),
        )
        line = None
    except RunFailed as e:
        line = str(e)
    print(json.dumps({"kind": kind, "line": line, "seconds": round(time.monotonic() - start, 1)}))
"""

MULTI = ["--direct_num_workers=2"]  # no --runner: the local default, one worker process each
IN_PROCESS = ["--runner=FnApiRunner"]


def _scenarios(tmp: Path, kinds: list[str], args: list[str], importable: bool) -> dict[str, dict]:
    module = tmp / "module"  # not the working directory, which `python -m` workers import from
    module.mkdir()
    (module / "failing.py").write_text(FAILING_DOFN)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if importable:
        env["PYTHONPATH"] = str(module)
    proc = subprocess.run(
        [sys.executable, "-c", SCENARIOS, str(module), json.dumps(kinds), json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=600,  # a hang, not a speed limit: each scenario ends in seconds
        cwd=tmp,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return {r["kind"]: r for r in results}


@pytest.fixture(scope="module")
def multi_process(tmp_path_factory) -> dict[str, dict]:
    kinds = ["ok", "setup_import", "setup_raises", "sigkill", "exit"]
    return _scenarios(tmp_path_factory.mktemp("multi"), kinds, MULTI, importable=True)


@pytest.fixture(scope="module")
def in_process(tmp_path_factory) -> dict[str, dict]:
    kinds = ["ok", "setup_import", "setup_raises"]
    return _scenarios(tmp_path_factory.mktemp("in_process"), kinds, IN_PROCESS, importable=True)


EXPECTED = {
    "setup_import": "ModuleNotFoundError: No module named 'a_package_this_worker_does_not_have'",
    "setup_raises": "OSError: the model file is missing",
}


# the multi-process runs start Beam's worker processes (about 20 s, once for the module): slow
@pytest.mark.parametrize("kind", ["setup_import", "setup_raises"])
@pytest.mark.parametrize("mode", [pytest.param("multi_process", marks=pytest.mark.slow), "in_process"])
def test_an_error_in_setup_stops_the_run_with_the_workers_error(kind, mode, request):
    result = request.getfixturevalue(mode)[kind]
    line = result["line"]
    assert line is not None and "\n" not in line
    assert line.startswith(EXPECTED[kind]) and "while running 'ParDo(Fail)'" in line, line


@pytest.mark.slow
def test_a_worker_killed_by_sigkill_stops_the_run(multi_process):
    line = multi_process["sigkill"]["line"]
    assert line is not None and "\n" not in line
    assert "a worker process (pid " in line and "was killed by signal 9 (SIGKILL)" in line, line
    assert "out-of-memory killer" in line


@pytest.mark.slow
def test_a_worker_that_exits_stops_the_run(multi_process):
    line = multi_process["exit"]["line"]
    assert line is not None and "exited with status 3 before the run was done" in line, line


@pytest.mark.slow
def test_a_healthy_run_is_not_disturbed(multi_process, in_process):
    assert multi_process["ok"]["line"] is None and in_process["ok"]["line"] is None


def test_a_module_the_workers_cannot_import_stops_the_run(tmp_path):
    # The DoFn's module is on the launcher's sys.path only, as the repository's own package was for
    # a plain install run from the repository root (issue 25). Six workers on a small machine: some
    # are still starting when the first bundle fails, the case that hung Beam's shutdown.
    result = _scenarios(tmp_path, ["ok"], ["--direct_num_workers=6"], importable=False)["ok"]
    assert result["line"] == "ModuleNotFoundError: No module named 'failing'", result


def _worker_pids(root: int) -> list[int]:
    """Beam worker processes below ``root`` (Linux /proc), oldest first."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        for pid in children.get(todo.pop(), []):
            todo.append(pid)
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"apache_beam.runners.worker.sdk_worker_main" in cmdline:
                found.append(pid)
    return sorted(found)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the worker processes in /proc")
def test_clapcorpus_run_stops_when_the_oom_killer_takes_a_worker(tmp_path):
    """The kernel's OOM killer sends SIGKILL to the largest process: a worker, from outside."""
    spec = write_demo_corpus(str(tmp_path / "src"), n_clips=6, max_seconds=20.0, k2c_model=None)
    cmd = [
        sys.executable,
        "-m",
        "clap_corpus.pipeline",
        "run",
        "--spec",
        spec,
        "--output",
        str(tmp_path / "out"),
    ]
    proc = subprocess.Popen(
        [*cmd, "--direct_num_workers=2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    victim, seen = None, set()
    try:
        deadline = time.monotonic() + 600  # a hang, not a speed limit
        while proc.poll() is None and time.monotonic() < deadline:
            workers = _worker_pids(proc.pid)
            seen.update(workers)
            if victim is None and workers:
                victim = workers[0]
                os.kill(victim, signal.SIGKILL)
            time.sleep(0.05)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert victim is not None, "no worker process appeared"
    assert proc.returncode == 3, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("clapcorpus: the run stopped: a worker process (pid "), last
    assert "killed by signal 9 (SIGKILL)" in last
    # and no worker outlives the run (a reaped one has no /proc entry, a zombie no command line)
    assert len(seen) >= 2
    time.sleep(1.0)
    left = []
    for pid in seen:
        with contextlib.suppress(OSError):
            left += [pid] if b"sdk_worker_main" in Path(f"/proc/{pid}/cmdline").read_bytes() else []
    assert not left
