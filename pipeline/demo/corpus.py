"""The embedded default corpus: real encoded files of sounds whose captions say what they are.

``write_demo_corpus`` writes a raw source the way users have theirs — audio files in several codecs,
rates and channel counts, a JSONL manifest with captions, labels or keywords, a few broken rows —
and a corpus spec that points at it. The captions describe the audio (pitch of a tone, colour of a
noise, direction of a sweep, speed of a rhythm), so a CLAP model trained on the result can learn
something checkable; the trainer's tests build larger versions of the same corpus.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import yaml

from clap_corpus.pipeline.demo import synth
from clap_corpus.transforms.captions import template_caption

RATES = (16000, 22050, 32000, 44100, 48000)
OPUS_RATES = (16000, 24000, 48000)


@dataclass(frozen=True)
class SoundKind:
    """One kind of synthetic sound and the words that describe it."""

    name: str
    caption: str
    labels: tuple[str, ...]
    keywords: tuple[str, ...]
    make: Callable[[float, int, int], np.ndarray]  # (seconds, rate, seed) -> mono float32


SOUND_KINDS: tuple[SoundKind, ...] = (
    SoundKind(
        "low_tone",
        "A steady low-pitched hum",
        ("Hum",),
        ("tone", "low", "steady"),
        lambda s, r, seed: synth.tone(110.0 + 20 * (seed % 3), s, r),
    ),
    SoundKind(
        "high_tone",
        "A steady high-pitched whistle",
        ("Whistle",),
        ("tone", "high", "steady"),
        lambda s, r, seed: synth.tone(1760.0 + 110 * (seed % 3), s, r, amplitude=0.4),
    ),
    SoundKind(
        "white_noise",
        "Harsh hissing white noise",
        ("White noise",),
        ("noise", "hiss", "bright"),
        lambda s, r, seed: synth.noise("white", s, r, seed=seed),
    ),
    SoundKind(
        "brown_noise",
        "Deep rumbling brown noise",
        ("Rumble",),
        ("noise", "rumble", "dark"),
        lambda s, r, seed: synth.noise("brown", s, r, seed=seed),
    ),
    SoundKind(
        "rising_chirp",
        "A tone sweeping upward in pitch",
        ("Chirp",),
        ("sweep", "rising", "tone"),
        lambda s, r, seed: synth.chirp(200.0, min(4000.0, r * 0.4), s, r),
    ),
    SoundKind(
        "falling_chirp",
        "A tone sweeping downward in pitch",
        ("Chirp",),
        ("sweep", "falling", "tone"),
        lambda s, r, seed: synth.chirp(min(4000.0, r * 0.4), 200.0, s, r),
    ),
    SoundKind(
        "slow_clicks",
        "Slow regular clicking",
        ("Tick",),
        ("clicks", "slow", "rhythm"),
        lambda s, r, seed: synth.rhythm(2.0, s, r),
    ),
    SoundKind(
        "fast_beeps",
        "Fast rhythmic beeping",
        ("Beep, bleep",),
        ("beeps", "fast", "rhythm"),
        lambda s, r, seed: synth.rhythm(8.0, s, r, click_freq=2000.0),
    ),
)


# annotation="described": each kind at two levels (gain on the signal), so that captions can name
# something a model must hear (kind x level = 16 distinct descriptions, not 8).
LOUDNESS: tuple[tuple[str, float], ...] = (("loud", 1.0), ("quiet", 0.1))


def described_captions(kind: SoundKind, loudness: str) -> list[str]:
    """Five captions of one clip (as Clotho and AudioCaps clips carry five), all naming kind and level."""
    what = kind.caption[0].lower() + kind.caption[1:]
    return [
        f"A {loudness} recording of {what}.",
        f"{kind.caption}, {loudness}.",
        f"{template_caption(kind.labels)[:-1]}, {loudness}.",
        f"{loudness.capitalize()} {', '.join(kind.keywords)}.",
        f"Something {loudness}: {what}.",
    ]


@dataclass(frozen=True)
class DemoClip:
    file: str
    kind: SoundKind
    seconds: float
    rate: int
    channels: int
    fmt: str


def plan_clips(
    n_clips: int,
    *,
    seed: int = 0,
    min_seconds: float = 1.0,
    max_seconds: float = 60.0,
    formats: tuple[str, ...] = synth.FORMATS,
) -> list[DemoClip]:
    """A deterministic mix of sound kinds, formats, rates, channel counts and lengths."""
    rng = np.random.default_rng(seed)
    clips = []
    for i in range(n_clips):
        kind = SOUND_KINDS[i % len(SOUND_KINDS)]
        fmt = formats[(i // len(SOUND_KINDS) + i) % len(formats)]
        rate = int(rng.choice(OPUS_RATES if fmt == "opus" else RATES))
        # half the clips up to 10 s, half longer (LAION's two view modes)
        if i % 2 == 0:
            seconds = float(np.round(rng.uniform(min_seconds, min(10.0, max_seconds)), 2))
        else:
            seconds = float(np.round(rng.uniform(min(10.5, max_seconds), max_seconds), 2))
        channels = 1 + int(rng.integers(0, 2))
        clips.append(DemoClip(f"{i:04d}_{kind.name}.{fmt}", kind, seconds, rate, channels, fmt))
    return clips


def write_demo_corpus(
    root: str,
    *,
    n_clips: int = 24,
    seed: int = 0,
    min_seconds: float = 1.0,
    max_seconds: float = 60.0,
    bad_rows: bool = True,
    shard_size: int = 8,
    annotation: str = "mixed",
    corpus: str = "demo",
    extra_options: dict | None = None,
    k2c_model: str | None = "tiny",
) -> str:
    """Write ``<root>/raw/`` (audio + manifest.jsonl) and ``<root>/spec.yaml``; return the spec path.

    ``annotation``: "mixed" gives a third of the clips captions, a third labels only and a third
    keywords only (what real sources look like); "captions" gives every clip its caption;
    "described" plays every other run of kinds quietly and gives each clip five captions naming its
    kind and level (:func:`described_captions`), plus its labels and keywords.
    """
    raw = os.path.join(root, "raw")
    os.makedirs(raw, exist_ok=True)
    rows = []
    clips = plan_clips(n_clips, seed=seed, min_seconds=min_seconds, max_seconds=max_seconds)
    for i, clip in enumerate(clips):
        mono = clip.kind.make(clip.seconds, clip.rate, seed * 100_003 + i)
        loudness, gain = LOUDNESS[(i // len(SOUND_KINDS)) % len(LOUDNESS)]
        if annotation == "described":
            mono = mono * np.float32(gain)
        data = synth.encode_audio(synth.to_channels(mono, clip.channels), clip.rate, clip.fmt)
        with open(os.path.join(raw, clip.file), "wb") as f:
            f.write(data)
        row: dict = {
            "audio": clip.file,
            "id": clip.file.rsplit(".", 1)[0],
            "license": "CC0-1.0",
            "kind": clip.kind.name,
        }
        style = i % 3 if annotation == "mixed" else 0
        if annotation == "described":
            row["captions"] = described_captions(clip.kind, loudness)
            row["labels"] = list(clip.kind.labels)
            row["keywords"] = list(clip.kind.keywords)
            row["loudness"] = loudness
        elif style == 0:
            row["captions"] = [clip.kind.caption]
            row["keywords"] = list(clip.kind.keywords)
        elif style == 1:
            row["labels"] = list(clip.kind.labels)
        else:
            row["keywords"] = list(clip.kind.keywords)
        if i % 5 == 4:
            row["split"] = "val"  # an official split, mapped to `valid` by the spec
        rows.append(row)
    if bad_rows:
        rows.extend(_bad_rows(raw, real_file=clips[0].file if clips else "missing.wav"))
    with open(os.path.join(raw, "manifest.jsonl"), "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, sort_keys=True) + "\n")
    spec = {
        "corpus": corpus,
        "options": {
            "shard_size": shard_size,
            "max_duration_s": 300.0,
            # keyword-to-caption with the embedded demo model (None: off); extra_options may override
            **({"k2c": {"model": k2c_model}} if k2c_model else {}),
            **(extra_options or {}),
        },
        "sources": [
            {
                "name": "synthetic",
                "adapter": "generic",
                "manifest": "raw/manifest.jsonl",
                "audio_root": "raw",
                "split_map": {"val": "valid"},
                "license": "CC0-1.0",
                "expected_count": n_clips,
            }
        ],
    }
    spec_path = os.path.join(root, "spec.yaml")
    with open(spec_path, "w", encoding="utf-8") as f:
        yaml.safe_dump(spec, f, sort_keys=False)
    return spec_path


def _bad_rows(raw: str, real_file: str) -> list[dict]:
    """Inputs a real collection has: each must end up in rejects with a reason, never crash the run."""
    with open(os.path.join(raw, "notes_not_audio.wav"), "w") as f:
        f.write("this is a text file with a .wav name\n")
    open(os.path.join(raw, "empty.mp3"), "wb").close()
    good = synth.encode_audio(synth.tone(440.0, 3.0, 44100), 44100, "mp3")
    with open(os.path.join(raw, "cut_short.mp3"), "wb") as f:
        f.write(good[:200])
    return [
        {"audio": "notes_not_audio.wav", "captions": ["A text file pretending to be audio"]},
        {"audio": "empty.mp3", "captions": ["An empty file"]},
        {"audio": "cut_short.mp3", "captions": ["A file cut after 200 bytes"]},
        {"audio": "does_not_exist.flac", "captions": ["A file the manifest lists but nobody downloaded"]},
        {"audio": "../outside_the_root.wav", "captions": ["A path escaping the audio root"]},
        {"id": "no_path", "captions": ["A row without an audio path"]},
        {"audio": real_file, "id": "caption_is_number", "captions": [42]},
    ]
