"""The fixed bench corpus: real encoded files in every format the pipeline reads.

mp3, ogg (Vorbis), opus, m4a (AAC), flac and wav; source rates from 22.05 to 48 kHz; mono and stereo;
half the clips up to 10 s, half 10-60 s (LAION's two view modes). The clip plan is a pure function of
(n_clips, seed): every format gets short and long clips, mono and stereo, and the sound kinds of the
demo corpus (tones, noises, sweeps, clicks), so no codec benchmarks on silence only.

The files are made once by :mod:`pipeline.synth` and cached under ``<root>/corpus-<n>-<seed>/``
(a ``done.json`` written last marks a complete cache).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass

import numpy as np
import yaml

from clap_corpus.pipeline.demo import synth
from clap_corpus.pipeline.demo.corpus import SOUND_KINDS

# Source rates per format, all in 22.05-48 kHz. Opus only takes 48/24/16/12/8 kHz.
RATES = {
    "mp3": (22050, 32000, 44100, 48000),
    "ogg": (22050, 32000, 44100, 48000),
    "opus": (24000, 48000),
    "m4a": (22050, 32000, 44100, 48000),
    "flac": (22050, 32000, 44100, 48000),
    "wav": (22050, 32000, 44100, 48000),
}
CORPUS_VERSION = 2  # bump when the plan or the signals change: invalidates cached corpora


@dataclass(frozen=True)
class BenchClip:
    file: str
    fmt: str
    rate: int
    channels: int
    seconds: float
    kind: str


def plan_bench(n_clips: int, seed: int = 0) -> list[BenchClip]:
    """Clip i: format cycles every 2 clips, length alternates short/long, channels flip every 12."""
    rng = np.random.default_rng(seed)
    clips = []
    for i in range(n_clips):
        fmt = synth.FORMATS[(i // 2) % len(synth.FORMATS)]
        channels = 1 + (i // (2 * len(synth.FORMATS))) % 2
        rate = int(rng.choice(RATES[fmt]))
        if i % 2 == 0:
            seconds = float(np.round(rng.uniform(1.0, 10.0), 2))
        else:
            seconds = float(np.round(rng.uniform(10.5, 60.0), 2))
        kind = SOUND_KINDS[i % len(SOUND_KINDS)].name
        clips.append(BenchClip(f"{i:05d}_{kind}.{fmt}", fmt, rate, channels, seconds, kind))
    return clips


def build_bench_corpus(root: str, n_clips: int, seed: int = 0) -> str:
    """Write the corpus (audio + ``raw/manifest.jsonl``) under ``root`` unless cached; return its folder.

    :func:`write_spec` writes specs for it, over all its clips or over the first ``clips`` of them
    (the plan of a smaller corpus is a prefix of the plan of a larger one).
    """
    folder = os.path.join(root, f"corpus-{n_clips}-{seed}")
    marker = os.path.join(folder, "done.json")
    plan = plan_bench(n_clips, seed)
    want = {"version": CORPUS_VERSION, "clips": [asdict(c) for c in plan]}
    if os.path.exists(marker):
        with open(marker, encoding="utf-8") as f:
            if json.load(f) == want:
                return folder
    raw = os.path.join(folder, "raw")
    os.makedirs(raw, exist_ok=True)
    kinds = {k.name: k for k in SOUND_KINDS}
    rows = []
    for i, clip in enumerate(plan):
        mono = kinds[clip.kind].make(clip.seconds, clip.rate, seed * 100_003 + i)
        data = synth.encode_audio(synth.to_channels(mono, clip.channels), clip.rate, clip.fmt)
        with open(os.path.join(raw, clip.file), "wb") as f:
            f.write(data)
        kind = kinds[clip.kind]
        rows.append(
            {
                "audio": clip.file,
                "id": clip.file.rsplit(".", 1)[0],
                "captions": [kind.caption],
                "labels": list(kind.labels),
                "keywords": list(kind.keywords),
                "license": "CC0-1.0",
            }
        )
    with open(os.path.join(raw, "manifest.jsonl"), "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, sort_keys=True) + "\n")
    with open(marker, "w", encoding="utf-8") as f:
        json.dump(want, f)
    return folder


def manifest_path(folder: str, clips: int | None = None) -> str:
    """The manifest of the first ``clips`` clips of the corpus (all of them for None), written on demand."""
    full = os.path.join(folder, "raw", "manifest.jsonl")
    if clips is None:
        return full
    path = os.path.join(folder, "raw", f"manifest-{clips}.jsonl")
    with open(full, encoding="utf-8") as f:
        lines = f.readlines()
    if clips > len(lines):
        raise ValueError(f"the corpus in {folder} has {len(lines)} clips, not {clips}")
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(lines[:clips])
    return path


def write_spec(
    folder: str, name: str, *, clips: int | None = None, shard_size: int = 512, **options: object
) -> str:
    """A spec over the first ``clips`` clips of the corpus in ``folder``, with extra ``options``
    (e.g. ``store_mel=False``)."""
    manifest = os.path.relpath(manifest_path(folder, clips), folder)
    spec = {
        "corpus": "bench",
        "options": {"shard_size": shard_size, **options},
        "sources": [
            {
                "name": "bench",
                "adapter": "generic",
                "manifest": manifest,
                "audio_root": "raw",
                "license": "CC0-1.0",
            }
        ],
    }
    path = os.path.join(folder, name)
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(spec, f, sort_keys=False)
    return path


def corpus_files(manifest: str) -> list[tuple[str, dict]]:
    """(audio path, manifest row) of every clip of a manifest, in manifest order."""
    raw = os.path.dirname(manifest)
    out = []
    with open(manifest, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            out.append((os.path.join(raw, row["audio"]), row))
    return out


AUDIO_SUFFIXES = (
    ".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".wma", ".aif", ".aiff", ".au",
    ".mp2", ".webm", ".mka", ".spx", ".caf",
)  # fmt: skip


def _probe_seconds(path: str) -> float:
    """The duration the container declares (0.0 if it declares none or cannot be opened)."""
    import av

    try:
        with av.open(path) as container:
            streams = [s for s in container.streams if s.type == "audio"]
            if not streams:
                return 0.0
            if container.duration:
                return container.duration / 1_000_000
            s = streams[0]
            return float(s.duration * s.time_base) if s.duration and s.time_base else 0.0
    except Exception:  # any file PyAV cannot open is left out of the bench corpus
        return 0.0


def build_folder_corpus(src: str, root: str, seed: int = 0) -> str:
    """A bench corpus from every audio file under ``src`` (real recordings): copied into
    ``<root>/folder-<digest>/raw`` as ``NNNNN.<ext>`` in a fixed shuffled order (so the first quarter,
    the small size, is a sample of the whole), with a manifest row per file carrying its declared
    duration in ``seconds``. The longest file comes first: a worker's peak memory follows the longest
    clip it decodes, so with it in both sizes their peaks compare corpus size alone. Files PyAV cannot
    open or that declare no duration are left out (and listed in ``left_out.json``). Nothing is
    written under ``src``.
    """
    files = sorted(
        os.path.join(d, name)
        for d, _, names in os.walk(src)
        for name in names
        if name.lower().endswith(AUDIO_SUFFIXES)
    )
    if not files:
        raise ValueError(f"no audio files ({', '.join(AUDIO_SUFFIXES)}) under {src}")
    stats = [(os.path.relpath(f, src), os.path.getsize(f), int(os.path.getmtime(f))) for f in files]
    want = {"version": CORPUS_VERSION, "source": os.path.abspath(src), "files": stats, "seed": seed}
    digest = hashlib.sha256(json.dumps(want, sort_keys=True).encode()).hexdigest()[:12]
    folder = os.path.join(root, f"folder-{digest}")
    marker = os.path.join(folder, "done.json")
    if os.path.exists(marker):
        return folder
    raw = os.path.join(folder, "raw")
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(raw)
    order = np.random.default_rng(seed).permutation(len(files))
    probed, left_out = [], []
    for i in order:
        path = files[int(i)]
        seconds = _probe_seconds(path)
        if seconds <= 0:
            left_out.append(os.path.relpath(path, src))
        else:
            probed.append((path, seconds))
    if probed:
        longest = max(range(len(probed)), key=lambda k: probed[k][1])
        probed.insert(0, probed.pop(longest))
    rows = []
    for path, seconds in probed:
        suffix = os.path.splitext(path)[1].lower()
        name = f"{len(rows):05d}{suffix}"
        shutil.copyfile(path, os.path.join(raw, name))
        stem = os.path.splitext(os.path.basename(path))[0].replace("_", " ").replace("-", " ")
        rows.append(
            {
                "audio": name,
                "id": name.split(".")[0],
                "captions": [f"the sound {stem}"],
                "license": "as distributed",
                "seconds": round(seconds, 3),
                "source_file": os.path.relpath(path, src),
            }
        )
    if not rows:
        raise ValueError(f"none of the {len(files)} audio files under {src} could be opened")
    with open(os.path.join(raw, "manifest.jsonl"), "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, sort_keys=True) + "\n")
    with open(os.path.join(folder, "left_out.json"), "w", encoding="utf-8") as f:
        json.dump(left_out, f, indent=1)
    with open(marker, "w", encoding="utf-8") as f:
        json.dump(want, f)
    return folder


def whole_file_cap(folder: str) -> float:
    """``max_duration_s`` that decodes every file of a folder corpus whole, as LAION's way converts
    whole files (never under the pipeline's default of 300 s)."""
    longest = max(float(r["seconds"]) for r in manifest_rows(folder))
    return max(300.0, float(int(longest) + 1))


def manifest_rows(folder: str, clips: int | None = None) -> list[dict]:
    with open(manifest_path(folder, clips), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def corpus_seconds(folder: str, clips: int) -> float:
    """Nominal audio seconds of the first ``clips`` clips: the rows' ``seconds`` (folder corpora), else
    the synthetic plan's."""
    rows = manifest_rows(folder, clips)
    if all("seconds" in r for r in rows):
        return sum(float(r["seconds"]) for r in rows)
    return sum(c.seconds for c in plan_bench(clips))
