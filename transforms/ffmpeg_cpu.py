"""FFmpeg's SIMD code paths pinned to one instruction-set level, so decoded audio and FLAC bytes do
not depend on which CPU a worker happens to get.

FFmpeg picks a DSP implementation per function from the CPU flags it detects (``av_get_cpu_flags``),
and the implementations do not round alike: on the PyAV 18.1 build, swresample's SSE2 path, its
AVX2/FMA3 path, and the path it takes on CPUs that FFmpeg marks "AVX slow" (some AMD generations)
give different float samples, enough to move 16-bit samples and so the FLAC bytes of every resampled
source (FFmpeg's FLAC encoder, measured the same way, wrote the same bytes under every flag set). So
each process that decodes audio forces one fixed set of flags before its first decoder opens: on
x86-64, the x86-64-v3 level (AVX2, FMA3, BMI1/2: every server CPU of the last decade, Dataflow's
machine families included) without the AVX-512 paths or the per-model "slow" flags. A CPU without all
of that level keeps FFmpeg's own choice (forcing an instruction it lacks would crash it), and the
pipeline says once per process that its bytes may differ from other machines'. On aarch64 the level
is ARMv8 + NEON, which every 64-bit ARM CPU has.

Forcing flags changes only which of FFmpeg's equivalent implementations runs. On a CPU that has the
level it drops only the AVX-512 paths and the "slow" markers: measured with
``bench/bench_decode_cpu.py``, the same speed for mp3, AAC, Vorbis, Opus and WAV, FLAC 8 % slower
(its decoder has an AVX-512 path). ``tests/test_views.py`` decodes in processes that start FFmpeg
from other CPUs' flags and compares the stored bytes.
"""

from __future__ import annotations

import ctypes
import glob
import logging
import os
import platform
import threading

import av

log = logging.getLogger(__name__)

# The level every stored sample is computed at, as FFmpeg's own flag names (av_parse_cpu_caps).
LEVELS = {
    "x86_64": "mmx+mmxext+sse+sse2+sse3+ssse3+sse4.1+sse4.2+cmov+avx+avx2+fma3+bmi1+bmi2",
    "amd64": "mmx+mmxext+sse+sse2+sse3+ssse3+sse4.1+sse4.2+cmov+avx+avx2+fma3+bmi1+bmi2",
    "aarch64": "armv8+neon",
    "arm64": "armv8+neon",
}

_lock = threading.Lock()
_state: str | None = None  # what pin() found, once per process


def _libavutil() -> ctypes.CDLL | None:
    """The libavutil that PyAV loaded (the same file, hence the same library instance in this process)."""
    candidates: list[str] = []
    try:
        with open("/proc/self/maps") as maps:  # Linux: the file actually mapped
            candidates += sorted({line.split()[-1] for line in maps if "libavutil" in line and "/" in line})
    except OSError:
        pass
    folder = os.path.dirname(av.__file__)
    for pattern in ("../av.libs/libavutil*", ".dylibs/libavutil*", "../av.libs/avutil*.dll"):
        candidates += sorted(glob.glob(os.path.join(folder, pattern)))
    for path in candidates:
        try:
            return ctypes.CDLL(path)
        except OSError:
            continue
    return None


def pin() -> str:
    """Force FFmpeg's CPU flags to the fixed level (once per process; later calls return the first
    answer): ``"pinned <level>"``, or why not (the pipeline then logs it once)."""
    global _state
    with _lock:
        if _state is None:
            _state = _pin()
            if not _state.startswith("pinned"):
                log.warning(
                    "FFmpeg's CPU flags are not pinned (%s): decoded audio and FLAC bytes of resampled "
                    "sources may differ from those of a run on another machine",
                    _state,
                )
        return _state


def _pin() -> str:
    level = LEVELS.get(platform.machine().lower())
    if level is None:
        return f"no fixed level for {platform.machine()}"
    lib = _libavutil()
    if lib is None:
        return "PyAV's libavutil not found"
    wanted = ctypes.c_uint(0)
    if lib.av_parse_cpu_caps(ctypes.byref(wanted), level.encode()) < 0:
        return f"this FFmpeg build does not know {level}"
    have = lib.av_get_cpu_flags() & 0xFFFFFFFF
    missing = wanted.value & ~have
    if missing:
        return f"this CPU lacks part of {level} (FFmpeg flags {missing:#x})"
    lib.av_force_cpu_flags(ctypes.c_int(wanted.value))
    return f"pinned {level}"


def current_flags() -> int:
    """FFmpeg's CPU flags in this process now (for tests and diagnostics)."""
    lib = _libavutil()
    return -1 if lib is None else lib.av_get_cpu_flags() & 0xFFFFFFFF
