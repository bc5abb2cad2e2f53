"""Read one of our WebDataset shards with LAION-CLAP's own loader code (the installed laion-clap 1.1.7).

Run as a program by tests/test_laion_clap.py, in its own process: LAION's data module loads three Hugging
Face tokenizers when it is imported, and ``HF_HUB_OFFLINE`` must be set before ``huggingface_hub`` is
first imported for that to stay off the network; a process of its own also keeps the numpy RNG state that
this program sets away from every other test.

    python tests/laion_loader.py REQUEST.json RESULT.npz
    python tests/laion_loader.py REQUEST.json RESULT.json    # REQUEST with batch_size: the batches

REQUEST: ``{"tar": path, "keys": [keys in tar order], "starts": {key: [front, middle, back] | null},
"selection": "none" | "all" | "augment_only"}``.

What runs is LAION's WebDataset path of ``get_wds_dataset`` minus the shard shuffling:
``wds.SimpleShardList`` -> ``wds.tarfile_to_samples`` -> ``wds.decode`` -> ``wds.batched`` with LAION's
``collate_fn_with_preprocess``, which calls its ``preprocess_single`` (``float32_to_int16_torch``,
``int16_to_float32_torch``, ``get_audio_features`` with ``get_mel``, ``select_text``, ``tokenizer``) on
every sample, with ``data_filling="repeatpad"``, ``data_truncating="fusion"`` and the ``audio_cfg`` of
LAION's HTSAT-tiny model config. One step is not LAION's: LAION decodes the FLAC with ``wds.torch_audio``
(``torchaudio.load``), which since torchaudio 2.9 needs torchcodec and the system's FFmpeg libraries.
Here the FLAC is read by soundfile with ``dtype="float32"``, what ``torchaudio.load`` did through its
soundfile backend: the same ``[channels, n]`` float32 ``int16 / 32768`` (the result carries the int16
read too, so the test checks that).

LAION draws the three fusion crop starts with ``np.random.choice`` on the global numpy RNG, then one
waveform crop with ``np.random.randint``. To make it crop where our ``view_plan`` says, the RNG is given a
state (``np.random.set_state``) whose next 32-bit outputs are the wanted indices into each third: legacy
``choice``/``randint`` over fewer than 2**32 values take one masked 32-bit output per draw, and an MT19937
state at position 0 hands out its key words through the tempering, which is inverted here. LAION's code
itself is not touched; the crop starts it drew are checked before its views are returned.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
from functools import partial
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"  # before anything imports huggingface_hub

import numpy as np
import soundfile as sf
import torch
import webdataset as wds
from laion_clap.training import data as laion

MAX_LEN = 480_000
MT_WORDS = 624


def _temper(y: int) -> int:
    y ^= y >> 11
    y ^= (y << 7) & 0x9D2C5680
    y ^= (y << 15) & 0xEFC60000
    return (y ^ (y >> 18)) & 0xFFFFFFFF


def _untemper(y: int) -> int:
    y ^= y >> 18
    y ^= (y << 15) & 0xEFC60000
    x = y
    for _ in range(5):  # 7-bit shifts: five rounds recover all 32 bits
        x = y ^ ((x << 7) & 0x9D2C5680)
    y = x & 0xFFFFFFFF
    x = y
    for _ in range(3):
        x = y ^ (x >> 11)
    return x & 0xFFFFFFFF


def _thirds(total_frames: int, chunk_frames: int) -> list[np.ndarray]:
    # The ranges LAION's get_audio_features draws from, only to know which index each start is.
    ranges = np.array_split(np.arange(total_frames - chunk_frames + 1), 3)
    return [r if len(r) else np.array([0]) for r in ranges]


def set_rng_for(starts: list[int] | None, num_samples: int, hop: int) -> None:
    """Give the global numpy RNG a state under which LAION draws ``starts`` (then crops at 0)."""
    words: list[int] = []
    if starts is not None:
        chunk = MAX_LEN // hop + 1
        for start, third in zip(starts, _thirds(num_samples // hop + 1, chunk), strict=True):
            if len(third) > 1:  # a one-value range is returned without a draw
                words.append(int(start - third[0]))
    words.append(0)  # the waveform crop: index 0 is in range whatever the overflow
    key = np.array([_untemper(w) for w in words] + [0] * (MT_WORDS - len(words)), dtype=np.uint32)
    assert [_temper(int(k)) for k in key[: len(words)]] == words
    np.random.set_state(("MT19937", key, 0, 0, 0.0))
    if starts is not None:
        # The replay LAION's draws will make: choice over each third, in order front, middle, back.
        chunk = MAX_LEN // hop + 1
        drawn = [int(np.random.choice(t)) for t in _thirds(num_samples // hop + 1, chunk)]
        assert drawn == list(starts), (drawn, starts)
        np.random.set_state(("MT19937", key, 0, 0, 0.0))


def batches(request: dict, audio_cfg: dict) -> None:
    """LAION's training loader as it batches (``batch_size`` samples, shuffled by its own RNG): the
    keys of every batch, or the error its collate raised."""

    def read_flac(key: str, data: bytes) -> tuple[torch.Tensor, int] | None:
        if not key.endswith("flac"):
            return None
        audio, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
        return torch.from_numpy(np.ascontiguousarray(audio.T)), rate

    args = argparse.Namespace(
        class_index_dict=None, data_filling="repeatpad", data_truncating="fusion",
        text_augment_selection="none", tmodel="roberta",
    )  # fmt: skip
    pipeline = wds.DataPipeline(
        wds.SimpleShardList([request["tar"]]),
        wds.tarfile_to_samples(),
        wds.decode(read_flac),
        wds.batched(
            request["batch_size"],
            collation_fn=partial(
                laion.collate_fn_with_preprocess,
                audio_ext="flac",
                text_ext="json",
                max_len=MAX_LEN,
                audio_cfg=audio_cfg,
                args=args,
            ),
        ),
    )
    try:
        result = {"batches": [list(b["__key__"]) for b in pipeline]}
    except Exception as e:  # what a training run would die of
        result = {"error": f"{type(e).__name__}: {e}"}
    Path(sys.argv[2]).write_text(json.dumps(result))


def main() -> None:
    request = json.loads(Path(sys.argv[1]).read_text())
    audio_cfg = json.loads(
        Path(laion.__file__).parent.parent.joinpath("clap_module/model_configs/HTSAT-tiny.json").read_text()
    )["audio_cfg"]
    if request.get("batch_size"):
        return batches(request, audio_cfg)
    reads: list[tuple[np.ndarray, np.ndarray]] = []  # one per sample decoded, in tar order

    def read_flac(key: str, data: bytes) -> tuple[torch.Tensor, int] | None:
        if not key.endswith("flac"):
            return None
        pcm, _ = sf.read(io.BytesIO(data), dtype="int16", always_2d=True)
        audio, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
        reads.append((pcm, audio))
        return torch.from_numpy(np.ascontiguousarray(audio.T)), rate

    args = argparse.Namespace(
        class_index_dict=None,
        data_filling="repeatpad",
        data_truncating="fusion",
        text_augment_selection=request["selection"],
        tmodel="roberta",
    )
    pipeline = wds.DataPipeline(
        wds.SimpleShardList([request["tar"]]),
        wds.tarfile_to_samples(),
        wds.decode(read_flac),
        wds.batched(
            1,
            collation_fn=partial(
                laion.collate_fn_with_preprocess,
                audio_ext="flac",
                text_ext="json",
                max_len=MAX_LEN,
                audio_cfg=audio_cfg,
                args=args,
            ),
        ),
    )
    out: dict[str, np.ndarray] = {}
    meta: dict[str, dict] = {}
    it = iter(pipeline)
    for key in request["keys"]:
        starts = request["starts"][key]
        set_rng_for(starts, request["num_samples"][key], audio_cfg["hop_size"])
        batch = next(it)
        assert batch["__key__"] == [key], (batch["__key__"], key)
        out[f"{key}/mel_fusion"] = batch["mel_fusion"][0].numpy()
        out[f"{key}/waveform"] = batch["waveform"][0].numpy()
        meta[key] = {
            "longer": bool(batch["longer"][0].item()),
            "full_text": batch["full_text"][0],
            "raw_text": batch["raw_text"][0],
            "batch_fields": sorted(batch),
            "selections": {},
        }
    # The stream decodes ahead of the batches, so the reads are matched to keys once all are done.
    assert len(reads) == len(request["keys"])
    for key, (pcm, audio) in zip(request["keys"], reads, strict=True):
        out[f"{key}/read_int16"], out[f"{key}/read_float"] = pcm, audio
    for s in wds.WebDataset(request["tar"], shardshuffle=False):
        doc = json.loads(s["json"])
        meta[s["__key__"]]["selections"] = {
            sel: laion.select_text(doc, sel) for sel in ("none", "all", "augment_only")
        }
    out["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(sys.argv[2], **out)


if __name__ == "__main__":
    main()
