"""A hostile raw corpus, the kind the open internet delivers, and what must become of each file."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from clap_corpus.pipeline.demo import synth
from clap_corpus.transforms.flac import encode_flac

HOURS_3 = 3 * 3600


@dataclass(frozen=True)
class Expect:
    """`code` None means the file must become a sample (with `truncated` as given)."""

    code: str | None
    truncated: bool = False


def _write(audio: Path, name: str, data: bytes) -> None:
    (audio / name).write_bytes(data)


def three_hour_flac(rate: int = 1_000) -> bytes:
    """Three hours of a faint square wave in ~800 KB: decodes to ~2 GB of float32 at 48 kHz.

    -40 dBFS, not silence (a silent clip is rejected as such); its half-period is a multiple of the
    encoder's 192-sample frames at 1 kHz, so every FLAC frame is constant and costs what a silent one does."""
    n = rate * HOURS_3
    return encode_flac(np.where((np.arange(n) // 1152) % 2 == 0, 327, -327).astype(np.int16), rate)


def write_hostile_corpus(root: Path, *, extra_options: dict | None = None) -> tuple[str, dict[str, Expect]]:
    """Write ``root/audio`` + manifest + spec; return the spec path and the expected fate per id."""
    audio = root / "audio"
    audio.mkdir(parents=True)
    tone = synth.tone(440.0, 2.0, 44_100)
    mp3 = synth.encode_audio(tone, 44_100, "mp3")
    expect: dict[str, Expect] = {}

    def add(name: str, data: bytes, outcome: Expect) -> None:
        _write(audio, name, data)
        expect[name] = outcome

    add("good.ogg", synth.encode_audio(tone, 44_100, "ogg"), Expect(None))
    add("mp3_named_wav.wav", mp3, Expect(None))  # a wrong extension: decoded by content
    add("cut_mid_stream.mp3", mp3[: len(mp3) // 2], Expect(None))  # what decoded is kept
    add("cut_in_header.m4a", synth.encode_audio(tone, 44_100, "m4a")[:300], Expect("corrupt"))
    add("zero_bytes.flac", b"", Expect("empty_file"))
    add("text_named.wav", b"Just some notes about a recording session.\n" * 20, Expect("not_audio"))
    nan = synth.tone(440.0, 0.5, 48_000)
    nan[100] = np.nan
    add(
        "nan_float.wav",
        synth.wav_with_header(nan.tobytes(), channels=1, rate=48_000, bits=32, format_tag=3),
        Expect("non_finite"),
    )
    inf = synth.tone(440.0, 0.5, 48_000)
    inf[7] = np.inf
    add(
        "inf_float.wav",
        synth.wav_with_header(inf.tobytes(), channels=1, rate=48_000, bits=32, format_tag=3),
        Expect("non_finite"),
    )
    add(
        "absurd_rate.wav",
        synth.wav_with_header(bytes(9600), channels=1, rate=3_000_000, bits=16),
        Expect("bad_sample_rate"),
    )
    add(
        "forty_channels.wav",
        synth.wav_with_header(bytes(40 * 2 * 4800), channels=40, rate=48_000, bits=16),
        Expect("too_many_channels"),
    )
    one_second = (synth.tone(300.0, 1.0, 16_000) * 32767).astype(np.int16).tobytes()
    add(
        "claims_hours.wav",  # the header claims ~4 GB of data; one second is there
        synth.wav_with_header(one_second, channels=1, rate=16_000, bits=16, data_size=2**32 - 64),
        Expect(None),
    )
    add("three_hours.flac", three_hour_flac(), Expect(None, truncated=True))
    add(
        "playlist.mp3",
        b"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\ngood.ogg\n#EXT-X-ENDLIST\n",
        Expect("format_not_allowed"),
    )
    add("concat_list.wav", b"ffconcat version 1.0\nfile 'good.ogg'\n", Expect("format_not_allowed"))
    big = synth.wav_with_header(bytes(3_200_000), channels=1, rate=16_000, bits=16)
    add("over_size_cap.wav", big, Expect("too_large"))
    outside = root / "secret.wav"
    outside.write_bytes(synth.encode_audio(tone, 44_100, "wav"))
    os.symlink(outside, audio / "link_out.wav")
    expect["link_out.wav"] = Expect("outside_root")

    rows = [{"audio": name, "id": name, "captions": [f"hostile input {name}"]} for name in expect]
    rows.append({"audio": "../secret.wav", "id": "dotdot", "captions": ["escape"]})
    expect["dotdot"] = Expect("outside_root")
    rows.append({"audio": str(outside), "id": "absolute", "captions": ["escape"]})
    expect["absolute"] = Expect("outside_root")
    rows.append({"audio": "file:///etc/passwd", "id": "url", "captions": ["escape"]})
    expect["url"] = Expect("outside_root")
    rows.append({"audio": "gs://bucket/a.wav", "id": "foreign_url", "captions": ["elsewhere"]})
    expect["foreign_url"] = Expect("scheme_not_allowed")
    with open(audio / "manifest.jsonl", "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    spec = {
        "corpus": "hostile",
        "options": {
            "shard_size": 4,
            "max_file_bytes": 3_000_000,
            "max_duration_s": 120.0,
            **(extra_options or {}),
        },
        "sources": [
            {"name": "web", "adapter": "generic", "manifest": "audio/manifest.jsonl", "audio_root": "audio"}
        ],
    }
    spec_path = root / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    return str(spec_path), expect
