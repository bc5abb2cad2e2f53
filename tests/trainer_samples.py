"""Small real shards for the trainer's tests: the members the pipeline writes for a sample (real FLAC,
its JSON document, its stored views), in real tars, built in milliseconds without Beam."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np

from clap_corpus.core.audio import quantize_int16
from clap_corpus.transforms.flac import encode_flac
from clap_corpus.transforms.views import compute_views, plan_views


def sample_members(key: str, seconds: float = 0.5, mel: bool = True) -> list[tuple[str, bytes]]:
    """The members the pipeline writes for one sample: real FLAC, its JSON document, its stored views."""
    t = np.arange(int(48_000 * seconds)) / 48_000
    pcm = quantize_int16(0.3 * np.sin(2 * np.pi * 440 * t))
    plan = plan_views(len(pcm), key)
    doc = {"key": key, "text": [f"caption of {key}"], "labels": ["beep"], "view_plan": plan.to_json()}
    members = [(f"{key}.flac", encode_flac(pcm)), (f"{key}.json", json.dumps(doc).encode())]
    if mel:
        buf = io.BytesIO()
        np.save(buf, compute_views(pcm.astype(np.float32) / 32767, plan).astype(np.float16))
        members.append((f"{key}.mel.npy", buf.getvalue()))
    return members


def write_tar(path: str, members: list[tuple[str, bytes]]) -> list[tuple[str, int, int]]:
    """A USTAR tar of ``members``; (name, header offset, end of data) per member."""
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with tarfile.open(path) as tar:
        return [(m.name, m.offset, m.offset_data + m.size) for m in tar.getmembers()]
