"""One record plus its audio bytes in, one finished sample (or a rejection) out.

This is the whole per-sample chain — decode, quantise, views, FLAC, JSON — as a pure function, so
it is tested without Beam and the shard writer stays a thin loop around it.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import StrictBool, model_validator
from pydantic.dataclasses import dataclass as pydantic_dataclass

from clap_corpus.core.audio import INT16_SCALE, SAMPLE_RATE, quantize_int16
from clap_corpus.core.config import (
    MODEL_CONFIG,
    Bytes,
    Count,
    Dbfs,
    Fraction,
    PositiveSeconds,
    Seconds,
    ordered,
)
from clap_corpus.core.encoding import dumps_json
from clap_corpus.core.hashing import audio_digest
from clap_corpus.core.records import Record
from clap_corpus.core.rejects import Code, RejectError, Stage
from clap_corpus.core.schema import check_document
from clap_corpus.transforms.captions import for_duration as k2c_for_duration
from clap_corpus.transforms.captions import text_augment_all
from clap_corpus.transforms.decode import DecodedAudio, decode_audio
from clap_corpus.transforms.flac import encode_flac
from clap_corpus.transforms.views import ViewPlan, plan_views, views_from_int16


@pydantic_dataclass(frozen=True, config=MODEL_CONFIG)
class SampleOptions:
    """Per-sample limits and switches (fields of the spec's ``options`` section)."""

    max_duration_s: PositiveSeconds = 300.0  # decoding stops here; the sample is flagged `truncated`
    min_duration_s: Seconds = 0.0  # shorter clips are rejected; at most max_duration_s
    max_file_bytes: Bytes = 256 * 1024 * 1024  # larger files are rejected without being read
    decode_time_limit_s: Seconds = 60.0  # a file that stalls the decoder longer is rejected; 0: no limit
    max_channels: Count = 32
    store_mel: StrictBool = True  # write `<key>.mel.npy` (float16 [4, 1001, 64])
    # Clips whose four views are one (`longer: false`: every clip up to 10 s) store it once, float16
    # [1, 1001, 64]; readers expand it (views.expand_views). Saves 3/4 of those clips' mel bytes. Off
    # by default: LAION-CLAP's loader stacks the `.mel.npy` of a batch, which must then have one shape
    # (tests/test_laion_clap.py); with the views in a sidecar (formats: views) it reads none.
    mel_single_view: StrictBool = False
    # A decode that ends before this share of the length the file declares is flagged `incomplete`
    min_complete_fraction: Fraction = 0.9
    on_incomplete: Literal["keep", "reject"] = "keep"  # reject: code `incomplete`
    # Clips whose peak or RMS level is below these are rejected (`silent`); digital silence always is
    min_peak_dbfs: Dbfs = -60.0
    min_rms_dbfs: Dbfs = -70.0

    @model_validator(mode="after")
    def _bounds(self) -> SampleOptions:
        ordered("min_duration_s", self.min_duration_s, "max_duration_s", self.max_duration_s)
        return self


# Level measurement: dB relative to int16 full scale (32767), in 20 ms frames (960 samples at 48 kHz);
# a frame is silent when its RMS is under SILENT_FRAME_DBFS. Digital silence (all zeros) reads
# DBFS_FLOOR, below anything int16 can hold (its smallest step is -90.3 dBFS).
LEVEL_FRAME = SAMPLE_RATE // 50
SILENT_FRAME_DBFS = -60.0
DBFS_FLOOR = -120.0
_LEVEL_BLOCK_FRAMES = 256  # frames per block of measure_level (1 MB of float32)


@dataclass(frozen=True)
class Level:
    peak_dbfs: float
    rms_dbfs: float
    silent_fraction: float  # share of LEVEL_FRAME frames under SILENT_FRAME_DBFS (a short last one counts)

    @property
    def digital_silence(self) -> bool:
        return self.peak_dbfs <= DBFS_FLOOR


def _dbfs(amplitude: float) -> float:
    if amplitude <= 0.0:
        return DBFS_FLOOR
    return round(max(DBFS_FLOOR, 20.0 * math.log10(amplitude / INT16_SCALE)), 2)


def measure_level(pcm: np.ndarray) -> Level:
    """Peak and RMS level of int16 ``pcm`` (what the FLAC holds), and its share of silent frames."""
    n = len(pcm)
    if n == 0:
        return Level(DBFS_FLOOR, DBFS_FLOOR, 1.0)
    peak = max(int(pcm.max()), -int(pcm.min()))  # np.abs(int16 -32768) overflows
    frames = -(-n // LEVEL_FRAME)
    energy = np.empty(frames, dtype=np.float64)
    # Frames in blocks through one small float32 buffer (zero-padded past the end), not a float copy
    # of the whole clip: the same sums, without 4 bytes a sample of memory or the trip out of cache.
    buf = np.empty((min(_LEVEL_BLOCK_FRAMES, frames), LEVEL_FRAME), dtype=np.float32)
    for start in range(0, frames, _LEVEL_BLOCK_FRAMES):
        stop = min(start + _LEVEL_BLOCK_FRAMES, frames)
        block = buf[: stop - start]
        flat = block.reshape(-1)
        lo, hi = start * LEVEL_FRAME, min(stop * LEVEL_FRAME, n)
        flat[: hi - lo] = pcm[lo:hi]
        flat[hi - lo :] = 0.0
        np.einsum("ij,ij->i", block, block, dtype=np.float64, out=energy[start:stop])
    # per-frame RMS over the samples each frame really holds
    sizes = np.full(frames, LEVEL_FRAME, dtype=np.float64)
    sizes[-1] = n - (frames - 1) * LEVEL_FRAME
    threshold = (INT16_SCALE * 10.0 ** (SILENT_FRAME_DBFS / 20.0)) ** 2
    silent = int(np.count_nonzero(energy / sizes < threshold))
    return Level(
        peak_dbfs=_dbfs(float(peak)),
        rms_dbfs=_dbfs(math.sqrt(float(energy.sum()) / n)),
        silent_fraction=round(silent / frames, 4),
    )


@dataclass(frozen=True)
class Sample:
    """A finished sample: what goes into the tar and the Parquet row."""

    key: str
    flac: bytes
    meta: dict[str, Any]  # the `<key>.json` document
    mel: np.ndarray | None  # float16 [4, 1001, 64], or [1, 1001, 64] (mel_single_view, longer false)
    duration_s: float
    audio_hash: str = ""  # core.hashing.audio_digest of the int16 PCM (duplicate detection)

    def json_bytes(self) -> bytes:
        return dumps_json(self.meta)

    def mel_bytes(self) -> bytes:
        assert self.mel is not None
        buf = io.BytesIO()
        np.save(buf, self.mel, allow_pickle=False)
        return buf.getvalue()


def sample_meta(
    record: Record, decoded: DecodedAudio, plan: ViewPlan, level: Level, incomplete: bool
) -> dict[str, Any]:
    """The `<key>.json` document: LAION's fields (`text`, `tag`, `original_data`) plus ours."""
    meta: dict[str, Any] = {
        "text": list(record.text),
        "tag": list(record.tags),
        "original_data": dict(record.original),
        "key": record.key,
        "source": record.source,
        "source_id": record.source_id,
        "split": record.split,
        "labels": list(record.labels),
        "keywords": list(record.keywords),
        "caption_kind": record.caption_kind,
        "license": record.license,
        "attribution": record.attribution,
        "origin_ids": list(record.origin_ids),
        "duration": round(decoded.duration_s, 6),
        "sample_rate": SAMPLE_RATE,
        "original_sample_rate": decoded.source_rate,
        "original_channels": decoded.source_channels,
        "original_codec": decoded.codec,
        "truncated": decoded.truncated,
        "incomplete": incomplete,
        "declared_duration": None
        if decoded.declared_duration_s is None
        else round(decoded.declared_duration_s, 6),
        "peak_dbfs": level.peak_dbfs,
        "rms_dbfs": level.rms_dbfs,
        "silent_fraction": level.silent_fraction,
        "longer": plan.longer,
        "view_plan": plan.to_json(),
    }
    if record.k2c_caption is not None:
        meta["text_augment_t5"] = record.k2c_caption
        meta["text_augment_all"] = text_augment_all(record)
    if record.clap is not None:
        meta["clap_score"] = round(record.clap.best, 6)
        meta["clap_scores"] = [round(x, 6) for x in record.clap.scores]
    check_document(meta)  # what core.schema declares, no more, no less
    return meta


def decode_with_options(data: bytes, options: SampleOptions) -> DecodedAudio:
    """Decode under the spec's limits, ``min_duration_s`` included; raises
    :class:`transforms.decode.DecodeError` (a ``decode`` :class:`core.rejects.RejectError`).

    The duplicate pass hashes what this returns, so it must stay the one decode call the shard
    writer makes too: the same bytes then give the same digest in both places."""
    return decode_audio(
        data,
        max_duration_s=options.max_duration_s,
        min_duration_s=options.min_duration_s,
        time_limit_s=options.decode_time_limit_s or None,
        max_channels=options.max_channels,
    )


def _incomplete_reason(decoded: DecodedAudio) -> str:
    if decoded.chains_dropped:
        return f"{decoded.chains_dropped} chained stream(s) of the file could not be decoded"
    return (
        f"decoded {decoded.duration_s:.3f} s of the {decoded.declared_duration_s:.3f} s the file declares "
        "(a partial download or a cut file)"
    )


def silence_reason(level: Level, options: SampleOptions) -> str | None:
    """Why a clip of this level is too quiet to be a training pair, or None if it is not."""
    if level.digital_silence:
        return "the clip is digital silence (every sample is zero)"
    if level.peak_dbfs < options.min_peak_dbfs:
        return f"peak level {level.peak_dbfs:.1f} dBFS is under the {options.min_peak_dbfs:g} dBFS minimum"
    if level.rms_dbfs < options.min_rms_dbfs:
        return f"RMS level {level.rms_dbfs:.1f} dBFS is under the {options.min_rms_dbfs:g} dBFS minimum"
    return None


def process_sample(record: Record, data: bytes, options: SampleOptions) -> Sample:
    """Decode ``data`` and build the sample for ``record``; raise :class:`core.rejects.RejectError`
    if it can't."""
    decoded = decode_with_options(data, options)  # too short (the duration rule) is decided there
    incomplete = decoded.incomplete(options.min_complete_fraction)
    if incomplete and options.on_incomplete == "reject":
        raise RejectError(Stage.DECODE, Code.INCOMPLETE, _incomplete_reason(decoded))
    pcm = quantize_int16(decoded.samples)
    level = measure_level(pcm)
    silent = silence_reason(level, options)
    if silent:
        raise RejectError(Stage.LEVEL, Code.SILENT, silent)
    plan = plan_views(len(pcm), record.key)
    mel = None
    if options.store_mel:
        try:
            views = views_from_int16(pcm, plan)
            if options.mel_single_view and not plan.longer:
                views = views[:1]
            mel = views.astype(np.float16)
        except (ValueError, RuntimeError) as e:
            raise RejectError(
                Stage.VIEWS, Code.VIEWS_FAILED, f"could not compute the mel views: {e}"
            ) from None
    try:
        flac = encode_flac(pcm, SAMPLE_RATE)
    except Exception as e:  # an encoder failure must reject this sample, not the shard
        raise RejectError(Stage.ENCODE, Code.FLAC_FAILED, f"FLAC encoding failed: {e}") from None
    return Sample(
        key=record.key,
        flac=flac,
        meta=sample_meta(k2c_for_duration(record, decoded.duration_s), decoded, plan, level, incomplete),
        mel=mel,
        duration_s=decoded.duration_s,
        audio_hash=audio_digest(pcm),
    )
