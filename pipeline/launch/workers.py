"""Local worker processes that cannot hang a run, and a failed run in one readable line.

Without ``--runner`` (or with ``--direct_running_mode=multi_processing``), Beam's FnApiRunner starts
one ``python -m apache_beam.runners.worker.sdk_worker_main`` process per core (pipeline/spec/beam_options.py)
and then trusts every one of them to answer. Measured on Beam 2.77, that hangs a run for ever in two
ways:

- a worker process that dies (SIGKILL, the kernel's out-of-memory killer, a crash, ``os._exit``)
  leaves the runner waiting for the answers it owed; Beam only logs "Worker subprocess exited with
  return code 137" from a thread;
- when a bundle fails (a worker cannot import a module, a DoFn's ``setup`` raises), the runner stops
  its workers and waits for each without a deadline: a worker still starting at that moment connects
  after it was told to stop, is never told again, and the run hangs in the shutdown.

Beam's Docker worker handler already watches its container and fails the pending instructions when it
exits. :class:`SupervisedWorkerHandler` does the same for local worker processes; importing this
module registers it for Beam's subprocess environment (the one multi-processing mode uses), in this
process only. A worker that ends while the run needs it answers every instruction it owed, and every
later one, with an error that says how it ended; at shutdown each worker gets ``STOP_GRACE_S`` to
hang up and is then killed, at once when the run is failing anyway.

:func:`run_pipeline` runs a graph and turns whatever stopped it into :class:`RunFailed`, whose message
is one line: the worker's own error (``ModuleNotFoundError: ...``, ``OSError: ... [while running
'...']``, or how its process ended) rather than Beam's page of runner traceback.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import apache_beam as beam
import grpc
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.portability import python_urns
from apache_beam.portability.api import beam_fn_api_pb2, beam_fn_api_pb2_grpc, endpoints_pb2
from apache_beam.runners.portability import local_job_service
from apache_beam.runners.portability.fn_api_runner import worker_handlers
from apache_beam.utils import thread_pool_executor
from google.protobuf import json_format, text_format

log = logging.getLogger(__name__)

# Seconds a worker gets to hang up after it is told to stop at the end of a run that went well (it
# needs well under one); then it is killed.
STOP_GRACE_S = 10.0


class RunFailed(RuntimeError):
    """The pipeline stopped before its end; the message is one line (the full error is the
    ``__cause__``)."""


def failure_line(error: BaseException) -> str:
    """The one line that says why a run stopped.

    Beam reports a worker's error as a RuntimeError holding the worker's traceback, whose last line
    is the error itself (``ModuleNotFoundError: No module named 'x'``); the runner in this process
    (``--runner=FnApiRunner``) raises the DoFn's own exception, named here by its type."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    if type(error) is RuntimeError and lines:
        return lines[-1]
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def run_pipeline(options: PipelineOptions, build: Callable[[beam.Pipeline], Any]) -> None:
    """Build a graph with ``build(pipeline)`` and run it to its end.

    An error while building (a ConfigError, say) propagates as it is; one while running raises
    :class:`RunFailed`. An interrupt (Ctrl-C) is not caught: the workers are stopped on the way out."""
    built = False
    try:
        with beam.Pipeline(options=options) as p:
            build(p)
            built = True
    except Exception as e:
        if not built:
            raise
        raise RunFailed(failure_line(e)) from e


def how_it_ended(pid: int, code: int) -> str:
    """A worker process's end in one line. The worker runs under ``sh -c`` (Beam's command line),
    which reports a child killed by signal N as exit status 128 + N."""
    number = -code if code < 0 else code - 128 if code > 128 else 0
    try:
        name = signal.Signals(number).name if number else ""
    except ValueError:
        name = ""
    how = f"was killed by signal {number} ({name})" if name else f"exited with status {code}"
    line = f"a worker process (pid {pid}) {how} before the run was done"
    if number == signal.SIGKILL:
        line += "; the kernel's out-of-memory killer ends processes this way (see dmesg)"
    return line


class _Instructions:
    """A worker's control connection as the runner uses it, able to answer for a dead worker.

    The runner pushes each instruction and waits on the future it gets back; a worker that died
    never answers. :meth:`fail` answers the ones pending, and every one pushed after it, with the
    error response a live worker sends for a failed instruction, which the runner raises."""

    def __init__(self, conn: worker_handlers.ControlConnection) -> None:
        self._conn = conn
        self._lock = threading.Lock()
        self._pending: dict[str, Any] = {}
        self._failed: str | None = None

    def push(self, request: Any) -> Any:
        with self._lock:
            future = self._conn.push(request)
            if future is None:  # the stop marker
                return None
            if self._failed is not None:
                _answer(future, request.instruction_id, self._failed)
            else:
                self._pending = {i: f for i, f in self._pending.items() if not f.is_done()}
                self._pending[request.instruction_id] = future
            return future

    def fail(self, message: str) -> None:
        with self._lock:
            self._failed = message
            for instruction_id, future in self._pending.items():
                if not future.is_done():
                    _answer(future, instruction_id, message)
            self._pending.clear()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def _answer(future: Any, instruction_id: str, error: str) -> None:
    future.set(beam_fn_api_pb2.InstructionResponse(instruction_id=instruction_id, error=error))


# (Beam types its register_environment decorator as returning a callable; it returns the class)
class SupervisedWorkerHandler(worker_handlers.SubprocessSdkWorkerHandler):  # pyright: ignore[reportGeneralTypeIssues]
    """Beam's subprocess worker (the same command, environment and log service), watched.

    The process runs in its own process group, so that stopping it stops the shell Beam's command
    line runs under and the Python worker below it; a terminal's Ctrl-C reaches the launcher, which
    stops the workers on its way out."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.control_conn = _Instructions(self.control_conn)  # type: ignore[assignment]
        self._process: subprocess.Popen | None = None
        self._logging: grpc.Server | None = None
        self._stopping = False

    def start_worker(self) -> None:
        # The worker's log records go to Beam's local_job_service logger, as from Beam's own handler.
        options = [("grpc.http2.max_pings_without_data", 0), ("grpc.http2.max_ping_strikes", 0)]
        # Beam's own servers take this executor; grpc's stubs name ThreadPoolExecutor, grpc only submits
        pool = thread_pool_executor.shared_unbounded_instance()
        self._logging = grpc.server(pool, options=options)  # pyright: ignore[reportArgumentType]
        port = self._logging.add_insecure_port("localhost:0")
        beam_fn_api_pb2_grpc.add_BeamFnLoggingServicer_to_server(
            local_job_service.BeamFnLoggingServicer(), self._logging
        )
        self._logging.start()
        env = dict(
            os.environ,
            CONTROL_API_SERVICE_DESCRIPTOR=_descriptor(self.control_address),
            LOGGING_API_SERVICE_DESCRIPTOR=_descriptor(f"localhost:{port}"),
            PIPELINE_OPTIONS=json_format.MessageToJson(self.provision_info.provision_info.pipeline_options),
            WORKER_ID=self.worker_id,
        )
        command = self._worker_command_line.decode("utf-8")
        with worker_handlers.SUBPROCESS_LOCK:
            self._process = subprocess.Popen(command, shell=True, env=env, process_group=0)
        threading.Thread(target=self._watch, name=f"watch_{self.worker_id}", daemon=True).start()

    def _watch(self) -> None:
        assert self._process is not None
        code = self._process.wait()
        if not self._stopping:
            message = how_it_ended(self._process.pid, code)
            log.error(message)
            self.control_conn.fail(message)  # type: ignore[attr-defined]

    def _kill(self) -> None:
        # Only while the process is ours (not yet reaped): its pid is then still its process group's.
        if self._process is not None and self._process.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._process.pid, signal.SIGKILL)

    def close(self) -> None:
        self._stopping = True
        if sys.exc_info()[1] is not None:
            # Beam closes its workers in a `finally`: with an exception on its way the run has
            # failed, and nothing a worker is still doing is wanted.
            self._kill()
        # Beam's close tells the worker to stop and waits for it to hang up, without a deadline.
        closing = threading.Thread(target=super().close, name=f"close_{self.worker_id}", daemon=True)
        closing.start()
        closing.join(STOP_GRACE_S)
        if closing.is_alive():
            self._kill()  # its connections end with it, and so does the wait
            closing.join(STOP_GRACE_S)

    def stop_worker(self) -> None:
        self._stopping = True
        if self._process is not None:
            try:
                self._process.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self._kill()
                self._process.wait()
        if self._logging is not None:
            self._logging.stop(0)


def _descriptor(url: str) -> str:
    return text_format.MessageToString(endpoints_pb2.ApiServiceDescriptor(url=url))


worker_handlers.WorkerHandler.register_environment(python_urns.SUBPROCESS_SDK, bytes)(SupervisedWorkerHandler)
