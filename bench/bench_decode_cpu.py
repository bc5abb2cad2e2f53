"""What pinning FFmpeg's CPU flags costs: decode + resample with the pin (what the pipeline does) next to
FFmpeg's own choice for this CPU (what it did before), interleaved, each in a fresh process.

Run: ``.venv/bin/python bench/bench_decode_cpu.py [--repeats N] [--seconds S]``. Encodes one clip per
codec (44.1 kHz stereo, so every decode resamples), then decodes each in child processes that either
pin (``transforms.ffmpeg_cpu.pin``) or leave FFmpeg's detected flags, and prints CPU ms per clip
(best of the repeats) and x-realtime per core, side by side, with the flags each side ran.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from clap_corpus.pipeline.demo import synth

CODECS = ("mp3", "m4a", "ogg", "opus", "flac", "wav")

_CHILD = r"""
import json, sys, time
from pathlib import Path
from clap_corpus.transforms import ffmpeg_cpu
if sys.argv[2] == "auto":
    ffmpeg_cpu._state = "left to FFmpeg (bench baseline)"  # pin() then does nothing
from clap_corpus.transforms.decode import decode_audio
out = {}
for path in sorted(Path(sys.argv[1]).iterdir()):
    data = path.read_bytes()
    decode_audio(data)  # warm: codec tables, first allocations
    times = []
    for _ in range(int(sys.argv[3])):
        t = time.process_time()
        decode_audio(data, max_duration_s=3600.0)
        times.append(time.process_time() - t)
    out[path.suffix[1:]] = min(times)
out["flags"] = hex(ffmpeg_cpu.current_flags())
print(json.dumps(out))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="decodes per clip per process (best kept)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved process pairs")
    parser.add_argument("--seconds", type=float, default=60.0, help="clip length")
    args = parser.parse_args()
    rate = 44_100
    rng = np.random.default_rng(0)
    n = int(args.seconds * rate)
    wave = 0.4 * synth.tone(440.0, args.seconds, rate)[:n] + 0.05 * rng.standard_normal(n)
    with tempfile.TemporaryDirectory() as folder:
        for codec in CODECS:
            data = synth.encode_audio(synth.to_channels(wave.astype(np.float32), 2), rate, codec)
            Path(folder, f"clip.{codec}").write_bytes(data)
        best: dict[str, dict[str, float]] = {"pinned": {}, "auto": {}}
        flags = {}
        for _ in range(args.rounds):
            for side in ("pinned", "auto"):
                proc = subprocess.run(
                    [sys.executable, "-c", _CHILD, folder, side, str(args.repeats)],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                result = json.loads(proc.stdout.splitlines()[-1])
                flags[side] = result.pop("flags")
                for codec, seconds in result.items():
                    best[side][codec] = min(best[side].get(codec, float("inf")), seconds)
    print(f"machine: {platform.machine()} {platform.processor() or ''}".rstrip())
    print(f"FFmpeg flags: pinned {flags['pinned']}, FFmpeg's own {flags['auto']}")
    print(f"{args.seconds:g} s clips, 44.1 kHz stereo -> 48 kHz mono; CPU ms per clip (x realtime per core)")
    print(f"{'codec':<6} {'pinned':>18} {'FFmpeg own':>18} {'ratio':>7}")
    for codec in CODECS:
        p, a = best["pinned"][codec], best["auto"][codec]
        print(
            f"{codec:<6} {p * 1e3:>8.1f} ({args.seconds / p:>6.0f}x) "
            f"{a * 1e3:>8.1f} ({args.seconds / a:>6.0f}x) {p / a:>7.3f}"
        )


if __name__ == "__main__":
    main()
