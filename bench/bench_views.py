"""Speed of transforms.views.compute_views, single thread, next to its torch path and torchaudio's mel.

Run: ``.venv/bin/python bench/bench_views.py [--repeats N]``. Prints x-realtime per core (seconds of
audio per second of one core) for 10 s and 30 s clips: ``compute_views`` (numpy + scipy.fft, what the
pipeline stores), the same views as they were computed before issue 25 (a float32 BLAS matmul, numpy's
log10 and einsum: faster, but their bits depend on the CPU; :func:`cpu_dependent_views` below keeps
that code for this comparison), ``compute_views_torch`` on CPU (the trainer's path, the pipeline's
before issue 17), and torchaudio's MelSpectrogram +
AmplitudeToDB of the same clip (the mel only, without LAION's repeat-pad, crops or resize), i.e. a
lower bound on what LAION's own feature code costs. Target: >= 1500x for compute_views.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view

from clap_corpus.core.audio import SAMPLE_RATE, int16_to_float, quantize_int16
from clap_corpus.transforms import views
from clap_corpus.transforms.views import ViewPlan, compute_views, one_thread, plan_views
from clap_corpus.transforms.views_torch import compute_views_torch


def cpu_dependent_views(wave: np.ndarray, plan: ViewPlan) -> np.ndarray:
    """compute_views as it was before issue 25, for the timing only: the mel a float32 BLAS matmul
    (OpenBLAS picks its kernel per CPU), numpy's float32 log10 and the resize an einsum (their loops
    too). The window, FFT, crops and layout are the current ones."""
    import scipy.fft

    x = views.repeat_pad(wave) if plan.mode == views.MODE_REPEATPAD else wave
    x = x[None]
    total = x.shape[1] // views.HOP + 1
    lo, hi = views.used_bins()
    fb = views.interleaved_filterbank()
    mel = np.empty((1, total, views.MEL_BINS), dtype=np.float32)
    for start in range(0, total, views.CPU_BLOCK_FRAMES):
        stop = min(start + views.CPU_BLOCK_FRAMES, total)
        segment = views._reflect_padded(x, start * views.HOP, (stop - 1) * views.HOP + views.N_FFT)
        frames = sliding_window_view(segment, views.N_FFT, axis=-1)[:, :: views.HOP]
        spec = scipy.fft.rfft(frames * views._window(), axis=-1, workers=1)
        re_im = np.ascontiguousarray(spec[..., lo:hi]).view(np.float32)
        np.matmul(re_im * re_im, fb, out=mel[:, start:stop])
    np.maximum(mel, np.float32(views.AMIN), out=mel)
    np.log10(mel, out=mel)
    mel *= np.float32(10.0)
    mel = mel[0]
    out = np.empty((views.NUM_VIEWS, views.CHUNK_FRAMES, views.MEL_BINS), dtype=np.float32)
    if not plan.longer:
        out[:] = mel[None]
        return out
    idx, weights = views._resize_taps(mel.shape[0])
    out[0] = np.einsum("ok,okm->om", weights, mel[idx], dtype=np.float32)
    for view, start in enumerate(plan.starts or (), start=1):
        out[view] = mel[start : start + views.CHUNK_FRAMES]
    return out


def _clip(seconds: float, seed: int) -> np.ndarray:
    n = int(seconds * SAMPLE_RATE)
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SAMPLE_RATE
    x = 0.3 * np.sin(2 * np.pi * 440.0 * t) + 0.05 * rng.standard_normal(n)
    return int16_to_float(quantize_int16(x))


def _median_seconds(fn: Callable[[], object], repeats: int) -> float:
    # CPU seconds of this process (one thread everywhere): other load on the machine does not count.
    for _ in range(3):  # warm-up: caches, FFT plans, allocator
        fn()
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return statistics.median(times)


@dataclass(frozen=True)
class ViewsTiming:
    seconds: float  # clip length
    mode: str  # the view plan's mode
    ours_s: float  # median seconds of compute_views
    torchaudio_s: float  # median seconds of torchaudio's MelSpectrogram + AmplitudeToDB
    torch_path_s: float  # median seconds of compute_views_torch on CPU
    before_s: float  # median seconds of cpu_dependent_views (compute_views before issue 25)

    @property
    def ours_x(self) -> float:
        return self.seconds / self.ours_s

    @property
    def before_x(self) -> float:
        return self.seconds / self.before_s

    @property
    def torch_path_x(self) -> float:
        return self.seconds / self.torch_path_s

    @property
    def torchaudio_x(self) -> float:
        return self.seconds / self.torchaudio_s


def measure(repeats: int) -> list[ViewsTiming]:
    """Both columns for a 10 s and a 30 s clip, on one thread (the pipeline runs a worker per core)."""
    torch.set_num_threads(1)
    one_thread()
    # LAION's get_mel, the reference mel of tests/test_views.py: the tests' helper modules, as
    # bench_clap_score.py reaches them
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
    from laion_mel import laion_get_mel

    get_mel = laion_get_mel()
    # A worker's steady state: it has seen clips of every length, and glibc's malloc has raised its
    # mmap threshold past the temporaries of the longest. Timed cold, the first (10 s) case pays page
    # faults for every temporary on every call (measured: 20 ms instead of 10 ms).
    for seconds in (30.0, 10.0):
        warm = _clip(seconds, seed=0)
        for _ in range(3):
            compute_views(warm, plan_views(len(warm), "warm"))
    out = []
    for seconds in (10.0, 30.0):
        wave = _clip(seconds, seed=int(seconds))
        plan = plan_views(len(wave), f"bench-{seconds}")
        wave_t = torch.from_numpy(wave)
        ours = _median_seconds(lambda wave=wave, plan=plan: compute_views(wave, plan), repeats)
        before = _median_seconds(lambda wave=wave, plan=plan: cpu_dependent_views(wave, plan), repeats)
        torch_path = _median_seconds(
            lambda w=wave_t, plan=plan: compute_views_torch([w], [plan], device="cpu"), repeats
        )
        with torch.no_grad():
            theirs = _median_seconds(lambda w=wave_t: get_mel(w), repeats)
        out.append(ViewsTiming(seconds, plan.mode, ours, theirs, torch_path, before))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()

    timings = measure(args.repeats)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, median of {args.repeats}")
    print(
        f"{'clip':>6} {'mode':>10} {'compute_views (numpy)':>22} {'before issue 25':>22} "
        f"{'compute_views_torch':>22} {'torchaudio mel+dB':>22} {'vs torchaudio':>13}"
    )
    for t in timings:
        print(
            f"{t.seconds:>5.0f}s {t.mode:>10} "
            f"{t.ours_x:>9.0f}x ({t.ours_s * 1e3:6.2f} ms) "
            f"{t.before_x:>9.0f}x ({t.before_s * 1e3:6.2f} ms) "
            f"{t.torch_path_x:>9.0f}x ({t.torch_path_s * 1e3:6.2f} ms) "
            f"{t.torchaudio_x:>9.0f}x ({t.torchaudio_s * 1e3:6.2f} ms) "
            f"{t.torchaudio_s / t.ours_s:>12.2f}x"
        )


if __name__ == "__main__":
    main()
