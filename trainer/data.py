"""Streaming the pipeline's shards into training batches, deterministically and resumably.

The on-disk format is read through :mod:`core.layout` (paths, member names, ``sizes.json``),
:mod:`core.schema` (the Parquet columns), :mod:`transforms.views` (view plans, on-device mel) and
:mod:`transforms.flac`; files through :mod:`trainer.storage` (fsspec), tars through webdataset's own
expander (``tar_file_expander`` + ``group_by_keys``, the grouping LAION-CLAP's loader uses). Nothing
here needs Apache Beam.

How an epoch is cut (the webdataset "fixed epoch" scheme, which DDP needs: every rank must take the
same number of steps):

- ``steps`` = the split's sample count (``sizes.json`` / Parquet footers) // (batch x world size);
- the shard list is permuted by ``(seed, epoch)`` and dealt to ``world x streams`` slots; a stream is
  one data-loader worker (or the main process when there are none) and yields the batches whose
  index ``i`` has ``i % streams == stream``, so the loader's round-robin gives batches in index order;
- a stream reads its shards through webdataset's shuffle buffer (``webdataset.filters.shuffle``, which
  draws from a seeded ``random.Random``: the seed comes from ``(seed, epoch, rank, stream)``) and starts
  over on them (reshuffled) if they run out before its share of the epoch.

Resuming at batch ``k`` of an epoch: worker ``p`` runs stream ``(p + k) % streams`` and fast-forwards
past the batches that were already consumed without decoding them, so batch ``k`` comes first and
the sequence is the one the uninterrupted run would have seen.

A truncated shard or a sample missing a member is skipped and counted (:class:`SkipCounts`), never a
crash; the counts travel with the batches back to the training loop. Captions are drawn per sample
per epoch from a generator seeded by ``(seed, epoch, key)``, so they do not depend on read order.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from webdataset.filters import shuffle
from webdataset.tariterators import group_by_keys, tar_file_expander

from clap_corpus.core.audio import SAMPLE_RATE
from clap_corpus.core.hashing import stable_hash64
from clap_corpus.core.layout import DEMO_CORPUS_FOLDER, FLAC, JSON, MEL, SIZES_FILE, SUMMARY_FILE, Layout
from clap_corpus.core.schema import FIELDS, PARQUET_COLUMNS
from clap_corpus.trainer import storage
from clap_corpus.transforms.decode import DecodeError
from clap_corpus.transforms.flac import decode_flac
from clap_corpus.transforms.views import (
    CHUNK_FRAMES,
    MEL_BINS,
    NUM_VIEWS,
    ViewPlan,
    expand_views,
    views_from_int16,
)
from clap_corpus.transforms.views_torch import compute_views_torch, laion_loader_input_torch

log = logging.getLogger(__name__)

MEL_SHAPE = (NUM_VIEWS, CHUNK_FRAMES, MEL_BINS)
EVAL_CAPTIONS = 5  # Clotho / AudioCaps evaluation: five captions per clip

# Skip codes, each counted: a shard that could not be opened or ended early, or a sample that is
# incomplete or unreadable.
UNREADABLE_SHARD = "unreadable_shard"
TRUNCATED_SHARD = "truncated_shard"
MISSING_MEMBER = "missing_member"
BAD_JSON = "bad_json"
NO_CAPTION = "no_caption"
BAD_MEL = "bad_mel"
BAD_AUDIO = "bad_audio"
# A sidecar views shard (formats: views) that could not be opened or ended early: its samples are read
# from the FLAC instead (views computed on the device), so they are not lost.
UNREADABLE_VIEWS = "unreadable_views"


class DataError(Exception):
    """The data cannot be trained on at all (no shards, nothing readable): a clear stop."""


class SkipCounts(Counter):
    """Skipped shards and samples by code."""

    def merge(self, other: dict[str, int]) -> None:
        for k, v in other.items():
            self[k] += v


# ------------------------------------------------------------------------------------------------
# Where the shards are


@dataclass(frozen=True)
class Shard:
    url: str
    samples: int  # as listed by sizes.json / the Parquet footer
    views_url: str | None = None  # its sidecar views tar (formats: views), read beside it


@contextlib.contextmanager
def _storage_errors() -> Iterator[None]:
    # A URL no installed fsspec implementation serves stops the run as any other data problem does.
    try:
        yield
    except storage.StorageError as e:
        raise DataError(str(e)) from e


def resolve_layout(root: str, corpus: str | None = None) -> Layout:
    """The layout of the corpus built into ``root``; the corpus name from summary.json or the folder.

    ``root`` may also be the folder `clapcorpus demo --output` wrote: its corpus is ``root/corpus``."""
    with _storage_errors():
        root = _built_corpus_folder(root)
        if corpus is None:
            summary = storage.join(root, SUMMARY_FILE)
            if storage.exists(summary):
                corpus = json.loads(storage.read_text(summary)).get("corpus")
        if corpus is None:
            pattern = storage.join(root, "webdataset", "*", "*", SIZES_FILE)
            names = sorted({p.split("/")[-3] for p in storage.match(pattern)})
            if len(names) != 1:
                if not names:
                    raise DataError(
                        f"{root}: no built corpus here (no {SUMMARY_FILE}, no webdataset/ shards): pass the "
                        "folder that `clapcorpus run --output` wrote (for `clapcorpus demo --output D`: D)"
                    )
                raise DataError(f"{root}: it holds the corpora {', '.join(names)}: pick one with --corpus")
            corpus = names[0]
    return Layout(root, corpus)


def _built_corpus_folder(root: str) -> str:
    """``root``, or ``root/corpus`` when ``root`` is a demo folder (``source/`` + ``corpus/``)."""
    if storage.exists(storage.join(root, SUMMARY_FILE)) or storage.exists(storage.join(root, "webdataset")):
        return root
    inner = storage.join(root, DEMO_CORPUS_FOLDER)
    if storage.exists(storage.join(inner, SUMMARY_FILE)):
        log.info("%s is a demo folder: reading the corpus built into %s", root, inner)
        return inner
    return root


def list_shards(layout: Layout, split: str, fmt: str = "webdataset") -> list[Shard]:
    """The shards of a split, in name order, with their sample counts and sidecar views shards."""
    with _storage_errors():
        # One listing of the sidecar folder, not a lookup per shard (a round trip each on GCS).
        sidecars = {
            url.rsplit("/", 1)[-1]: url
            for url in storage.match(storage.join(layout.views_dir(split), "*.tar"))
        }

        def shard(url: str, n: int) -> Shard:
            name = url.rsplit("/", 1)[-1].rsplit(".", 1)[0] + ".tar"
            return Shard(url, n, sidecars.get(name))

        if fmt == "webdataset":
            sizes_path = layout.sizes_path(split)
            if not storage.exists(sizes_path):
                raise DataError(f"no {SIZES_FILE} at {sizes_path}: is '{split}' a split of this corpus?")
            sizes = json.loads(storage.read_text(sizes_path))
            folder = layout.webdataset_dir(split)
            return [
                shard(storage.join(folder, name), int(n)) for name, n in sorted(sizes.items()) if int(n) > 0
            ]
        if fmt == "parquet":
            import pyarrow.parquet as pq

            urls = storage.match(storage.join(layout.parquet_dir(split), "*.parquet"))
            if not urls:
                raise DataError(f"no Parquet shards under {layout.parquet_dir(split)}")
            shards = []
            for url in urls:
                try:
                    with storage.open_read(url) as f:
                        n = pq.ParquetFile(f).metadata.num_rows
                except Exception as e:  # a broken footer: listed with 0 rows, counted when read
                    log.warning("cannot read the Parquet footer of %s: %s", url, e)
                    n = 0
                shards.append(shard(url, n))
            return shards
    raise ValueError(f"unknown format {fmt!r}")


# ------------------------------------------------------------------------------------------------
# Reading samples (raw: bytes and parsed metadata, nothing decoded)


@dataclass
class RawSample:
    key: str
    meta: dict[str, Any]
    plan: ViewPlan
    flac: bytes | None
    mel: bytes | None


def _audio(flac: bytes | None, mel: bytes | None, mel_mode: str) -> tuple[bytes | None, bytes | None]:
    """The (flac, mel) pair the sample is read from under ``mel_mode``: stored views when allowed and
    present, else the FLAC; (None, None) when neither is usable."""
    mel = mel if mel_mode != "compute" else None
    flac = flac if mel is None and mel_mode != "stored" else None
    return flac, mel


def _make_raw(
    key: str, meta: Any, flac: bytes | None, mel: bytes | None, counts: SkipCounts
) -> RawSample | None:
    """The sample from its parsed JSON document and chosen audio; None (counted) when unusable."""
    if flac is None and mel is None:
        counts[MISSING_MEMBER] += 1
        return None
    try:
        if not isinstance(meta, dict):
            raise ValueError("not an object")
        plan = ViewPlan.from_json(meta["view_plan"])
    except (ValueError, KeyError, TypeError):
        counts[BAD_JSON] += 1
        return None
    if not sample_captions(meta):
        counts[NO_CAPTION] += 1
        return None
    return RawSample(key.rsplit("/", 1)[-1], meta, plan, flac, mel)


def _from_members(
    group: dict[str, Any], counts: SkipCounts, mel_mode: str, sidecar: SidecarViews | None = None
) -> RawSample | None:
    """A sample from one tar group (webdataset's ``group_by_keys`` dict: ``__key__`` + one entry per
    member suffix); its views from the sidecar shard when the tar holds none."""
    mel = group.get(MEL)
    if mel is None and sidecar is not None:
        mel = sidecar.take(group.get("__key__", ""))
    flac, mel = _audio(group.get(FLAC), mel, mel_mode)
    if JSON not in group or (flac is None and mel is None):
        counts[MISSING_MEMBER] += 1
        return None
    try:
        meta = json.loads(group[JSON])
    except (ValueError, TypeError):
        counts[BAD_JSON] += 1
        return None
    return _make_raw(group["__key__"], meta, flac, mel, counts)


def _open_shard(shard: Shard, counts: SkipCounts) -> BinaryIO | None:
    """The shard's file, or None (counted, logged) when it cannot be opened: the run goes on."""
    try:
        return storage.open_read(shard.url)
    except Exception as e:
        log.warning("skipping unreadable shard %s: %s", shard.url, e)
        counts[UNREADABLE_SHARD] += 1
        return None


class SidecarViews:
    """The ``<key>.mel.npy`` members of a sidecar views tar, taken in step with its audio shard.

    The shard writer puts a sample's views in the sidecar as it puts the sample in the audio tar, so
    both hold the same keys in the same (sorted) order, and one forward pass over each pairs them. A key
    the sidecar lacks gets no views (the trainer computes them from the FLAC), a sidecar entry whose
    sample is not in the audio shard is passed over; a sidecar that cannot be opened or ends early is
    counted once (``unreadable_views``) and its remaining samples go the same way.
    """

    def __init__(self, url: str, counts: SkipCounts):
        self.url, self.counts = url, counts
        self._file: BinaryIO | None = None
        self._groups: Iterator[dict[str, Any]] | None = None
        self._pending: dict[str, Any] | None = None
        self._failed: list[Exception] = []
        try:
            self._file = storage.open_read(url)
        except Exception as e:
            self._fail(e)
            return

        def stop(e: Exception) -> bool:
            self._failed.append(e)
            return False

        files = tar_file_expander([{"url": url, "stream": self._file}], handler=stop)
        self._groups = group_by_keys(files, handler=stop)

    def _fail(self, e: Exception) -> None:
        log.warning("sidecar views %s unreadable (computing views from the FLAC instead): %s", self.url, e)
        self.counts[UNREADABLE_VIEWS] += 1
        self._groups = None

    def take(self, key: str) -> bytes | None:
        """The views stored for ``key``, or None. Keys must come in the shards' (sorted) order."""
        while True:
            if self._pending is None:
                if self._groups is None:
                    return None
                self._pending = next(self._groups, None)
                if self._failed:
                    self._fail(self._failed[0])
                    self._pending = None
                if self._pending is None:
                    self._groups = None
                    return None
            have = str(self._pending.get("__key__", ""))
            if have == key:
                mel, self._pending = self._pending.get(MEL), None
                return mel
            if have > key:
                return None  # no views stored for this sample; the pending ones wait for their key
            self._pending = None  # views of a sample the audio shard does not hold: passed over

    def close(self) -> None:
        if self._file is not None:
            self._file.close()

    def __enter__(self) -> SidecarViews:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _sidecar(shard: Shard, counts: SkipCounts, mel_mode: str) -> contextlib.AbstractContextManager:
    """The shard's sidecar views, when it has some and the stored views are wanted."""
    if shard.views_url is None or mel_mode == "compute":
        return contextlib.nullcontext()
    return SidecarViews(shard.views_url, counts)


def iter_tar(shard: Shard, counts: SkipCounts, mel_mode: str = "auto") -> Iterator[RawSample]:
    """The samples of one WebDataset tar, in file order; problems counted in ``counts``.

    webdataset's expander reads the tar; its error handler is told of the first error (a cut file,
    a corrupt header, a member name twice in a sample), which ends the shard. The sample being read
    when that happened is lost with the rest of the shard, even where the members read so far would
    make one: its last member may be the one cut short.
    """
    f = _open_shard(shard, counts)
    if f is None:
        return
    failed: list[Exception] = []

    def stop(e: Exception) -> bool:
        failed.append(e)
        return False  # webdataset: do not go on with this stream

    groups = 0  # samples seen, usable or not
    with f, _sidecar(shard, counts, mel_mode) as sidecar:
        files = tar_file_expander([{"url": shard.url, "stream": f}], handler=stop)
        for group in group_by_keys(files, handler=stop):
            if failed:
                break
            groups += 1
            raw = _from_members(group, counts, mel_mode, sidecar)
            if raw is not None:
                yield raw
    if failed:
        log.warning("shard %s is truncated or corrupt after %d samples: %s", shard.url, groups, failed[0])
        counts[TRUNCATED_SHARD] += 1
    elif groups < shard.samples:
        # Cut exactly between two members: tarfile sees a clean end, sizes.json knows better.
        log.warning("shard %s holds %d samples, %s lists %d", shard.url, groups, SIZES_FILE, shard.samples)
        counts[TRUNCATED_SHARD] += 1


# The Parquet columns by kind (core.schema): the audio column holds the FLAC, JSON-kind columns hold
# JSON text; every other column is the JSON document's field of the same name.
_AUDIO_COLUMN = next(f.name for f in FIELDS if f.kind == "audio")
_JSON_COLUMNS = tuple(f.name for f in FIELDS if f.parquet and f.kind == "json")


def iter_parquet(shard: Shard, counts: SkipCounts, mel_mode: str = "auto") -> Iterator[RawSample]:
    """The rows of one Parquet shard as samples: the FLAC, and the views from the sidecar views shard
    of the same name when there is one (else they are computed on the device)."""
    import pyarrow.parquet as pq

    n = 0
    f = _open_shard(shard, counts)
    if f is None:
        return
    with f, _sidecar(shard, counts, mel_mode) as sidecar:
        try:
            pf = pq.ParquetFile(f)
            for i in range(pf.num_row_groups):
                for row in pf.read_row_group(i, columns=list(PARQUET_COLUMNS)).to_pylist():
                    audio = row.pop(_AUDIO_COLUMN) or {}
                    try:
                        for name in _JSON_COLUMNS:
                            row[name] = json.loads(row[name])
                    except (TypeError, ValueError):
                        counts[BAD_JSON] += 1
                        continue
                    key = str(row.get("key"))
                    mel = sidecar.take(key) if sidecar is not None else None
                    flac, mel = _audio(audio.get("bytes") or None, mel, mel_mode)
                    raw = _make_raw(key, row, flac, mel, counts)
                    if raw is not None:
                        n += 1
                        yield raw
        except Exception as e:  # pyarrow raises its own error types for cut files
            log.warning("Parquet shard %s is truncated or corrupt after %d samples: %s", shard.url, n, e)
            counts[TRUNCATED_SHARD] += 1


def iter_shard(shard: Shard, counts: SkipCounts, mel_mode: str = "auto") -> Iterator[RawSample]:
    if shard.url.endswith(".parquet"):
        return iter_parquet(shard, counts, mel_mode)
    return iter_tar(shard, counts, mel_mode)


# ------------------------------------------------------------------------------------------------
# Decoding (after the shuffle buffer, only for batches that are used)


@dataclass
class Decoded:
    key: str
    mel: torch.Tensor | None  # float16 [4, 1001, 64], or None when computed on the device
    wave: torch.Tensor | None  # int16 [n] when the views are computed on the device
    plan: ViewPlan
    captions: list[str]
    labels: list[str]


class SkipSample(Exception):
    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


def decode_mel(data: bytes, plan: ViewPlan | None = None) -> torch.Tensor:
    """Stored views -> float16 [4, 1001, 64]. A single stored view (``mel_single_view``) is the four
    views of a clip with ``longer: false`` and is expanded here; on a ``longer`` clip it is an error."""
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise SkipSample(BAD_MEL) from e
    if arr.shape == (1, *MEL_SHAPE[1:]) and (plan is None or not plan.longer):
        arr = expand_views(arr)
    if arr.shape != MEL_SHAPE or arr.dtype not in (np.float16, np.float32):
        raise SkipSample(BAD_MEL)
    return torch.from_numpy(arr.astype(np.float16, copy=False))


def decode_wave(data: bytes, plan: ViewPlan) -> torch.Tensor:
    try:
        pcm, rate = decode_flac(data)
    except DecodeError as e:
        raise SkipSample(BAD_AUDIO) from e
    if rate != SAMPLE_RATE or pcm.ndim != 1 or pcm.shape[0] != plan.num_samples:
        raise SkipSample(BAD_AUDIO)
    return torch.from_numpy(pcm)


def caption_rng(seed: int, epoch: int, key: str) -> np.random.Generator:
    return np.random.default_rng(stable_hash64(f"{seed}:{epoch}:{key}", salt="caption"))


def sample_captions(meta: dict[str, Any]) -> list[str]:
    return [t for t in meta.get("text") or [] if isinstance(t, str) and t.strip()]


def draw_caption(meta: dict[str, Any], key: str, *, seed: int, epoch: int, source: str = "text") -> str:
    """One caption for this sample in this epoch, chosen as LAION's ``--text-augment-selection`` does.

    ``text`` (LAION's ``none``): one of `text`. ``all``: one of `text_augment_all` where the sample has
    it (its captions plus the K2C one), else of `text`. ``k2c`` (LAION's ``augment_only``): the K2C
    caption where there is one, else one of `text`.
    """
    if source == "k2c":
        k2c = meta.get("text_augment_t5")
        if isinstance(k2c, str) and k2c.strip():
            return k2c
    texts = sample_captions(meta)
    if source == "all":
        texts = sample_captions({"text": meta.get("text_augment_all")}) or texts
    return texts[int(caption_rng(seed, epoch, key).integers(len(texts)))]


def decode_sample(raw: RawSample, captions: list[str]) -> Decoded:
    mel = decode_mel(raw.mel, raw.plan) if raw.mel is not None else None
    wave = decode_wave(raw.flac, raw.plan) if mel is None and raw.flac is not None else None
    if mel is None and wave is None:
        raise SkipSample(MISSING_MEMBER)
    labels = [x for x in raw.meta.get("labels") or [] if isinstance(x, str)]
    return Decoded(raw.key, mel, wave, raw.plan, captions, labels)


@dataclass
class Batch:
    """A batch on the host; :meth:`views` turns it into the model's input on a device."""

    keys: list[str]
    mel: torch.Tensor  # float16 [B, 4, 1001, 64]; rows listed in `compute` are filled by views()
    longer: torch.Tensor  # bool [B]
    compute: list[int]  # rows whose views come from `waves` + `plans`
    waves: list[torch.Tensor]
    plans: list[ViewPlan]
    captions: list[list[str]]  # one caption per sample in training, all of them in evaluation
    labels: list[list[str]]
    index: int = -1  # batch index in the epoch (training)
    skipped: dict[str, int] = field(default_factory=dict)  # skips since the stream's previous batch

    def __len__(self) -> int:
        return len(self.keys)

    def pin_memory(self) -> Batch:
        self.mel = self.mel.pin_memory()
        return self

    def views(self, device: torch.device) -> torch.Tensor:
        """float32 [B, 4, 1001, 64] on ``device``; missing views computed there from the FLAC.

        Computed views are rounded through float16 as the stored ones were. On CPU they are computed
        as the pipeline stored them (numpy, :func:`views_from_int16`), so a model sees the same numbers
        whichever way a sample arrives; on an accelerator by the torch path, which agrees with them
        within one float16 step in every bin within 100 dB of a clip's peak.
        """
        mel = self.mel.to(device, non_blocking=True).float()
        if self.compute:
            if device.type == "cpu":
                views = torch.from_numpy(
                    np.stack(
                        [views_from_int16(w.numpy(), p) for w, p in zip(self.waves, self.plans, strict=True)]
                    )
                )
            else:
                waves = [laion_loader_input_torch(w.to(device, non_blocking=True)) for w in self.waves]
                views = compute_views_torch(waves, self.plans, device=device)
            mel[self.compute] = views.half().float()
        return mel


def collate(items: list[Decoded], index: int = -1, skipped: dict[str, int] | None = None) -> Batch:
    mel = torch.zeros((len(items), *MEL_SHAPE), dtype=torch.float16)
    compute, waves, plans = [], [], []
    for i, d in enumerate(items):
        if d.mel is not None:
            mel[i] = d.mel
        else:
            compute.append(i)
            waves.append(d.wave)
            plans.append(d.plan)
    return Batch(
        keys=[d.key for d in items],
        mel=mel,
        longer=torch.tensor([d.plan.longer for d in items], dtype=torch.bool),
        compute=compute,
        waves=waves,
        plans=plans,
        captions=[d.captions for d in items],
        labels=[d.labels for d in items],
        index=index,
        skipped=dict(skipped or {}),
    )


# ------------------------------------------------------------------------------------------------
# The training stream


@dataclass(frozen=True)
class StreamConfig:
    """What the training stream reads and how: named as TrainConfig's fields, which a run hands over
    by name (``take(StreamConfig, tcfg, rank=..., world=...)``), and checked there."""

    batch_size: int
    workers: int  # data-loader worker processes; 0 reads in the main process
    shuffle_buffer: int
    seed: int
    caption_source: str = "text"
    mel: str = "auto"  # TrainConfig.mel
    rank: int = 0
    world: int = 1

    @property
    def streams(self) -> int:
        return max(1, self.workers)


def steps_per_epoch(shards: list[Shard], batch_size: int, world: int) -> int:
    return sum(s.samples for s in shards) // (batch_size * world)


def stream_shards(shards: list[Shard], epoch: int, cfg: StreamConfig, stream: int) -> list[Shard]:
    """This (rank, stream)'s shards for ``epoch``: a seeded permutation dealt to world x streams slots."""
    if not shards:
        return []
    order = np.random.default_rng([cfg.seed, epoch, 0x5A4D]).permutation(len(shards))
    slots = cfg.world * cfg.streams
    slot = cfg.rank * cfg.streams + stream
    mine = [shards[i] for i in order[slot::slots]]
    # More slots than shards: streams share shards (their shuffle buffers still differ).
    return mine or [shards[order[slot % len(shards)]]]


def stream_rng(seed: int, epoch: int, rank: int, stream: int) -> random.Random:
    """The generator of one (rank, stream)'s shuffle buffer and pass order in ``epoch``."""
    return random.Random(stable_hash64(f"{seed}:{epoch}:{rank}:{stream}", salt="shuffle"))


class TrainStream(IterableDataset):
    """One epoch of training batches for one rank (see the module docstring)."""

    def __init__(self, shards: list[Shard], cfg: StreamConfig, epoch: int, steps: int, start: int = 0):
        super().__init__()
        self.shards, self.cfg, self.epoch, self.steps, self.start = shards, cfg, epoch, steps, start

    def _items(self, stream: int, counts: SkipCounts) -> Iterator[RawSample]:
        """The stream's samples, pass after pass over its shards, each pass through the buffer.

        The buffer drains at the end of a pass, so a pass never mixes with the next: within one
        pass every sample comes once (a stream whose shards run short starts a second pass).
        """
        cfg = self.cfg
        mine = stream_shards(self.shards, self.epoch, cfg, stream)
        size = max(1, min(cfg.shuffle_buffer, sum(s.samples for s in mine)))
        rng = stream_rng(cfg.seed, self.epoch, cfg.rank, stream)
        order = list(range(len(mine)))
        while True:
            got = 0

            def one_pass(order: list[int] = order) -> Iterator[RawSample]:
                nonlocal got
                for i in order:
                    for raw in iter_shard(mine[i], counts, cfg.mel):
                        got += 1
                        yield raw

            # initial=size: the buffer fills before the first draw (with webdataset's default of 100,
            # a pass's first batches would come from its first 100 samples only).
            yield from shuffle(size, initial=size, rng=rng)(one_pass())
            if got == 0:
                raise DataError(f"no readable samples in {', '.join(s.url for s in mine)}")
            order = rng.sample(range(len(mine)), len(mine))  # another pass, in another order

    def _stream_batches(self, stream: int) -> Iterator[Batch]:
        cfg = self.cfg
        counts = SkipCounts()
        items = self._items(stream, counts)
        for index in range(stream, self.steps, cfg.streams):
            group = [next(items) for _ in range(cfg.batch_size)]
            if index < self.start:
                counts.clear()  # counted before the checkpoint this run resumes from
                continue
            decoded = []
            for raw in group:
                caption = draw_caption(
                    raw.meta, raw.key, seed=cfg.seed, epoch=self.epoch, source=cfg.caption_source
                )
                try:
                    decoded.append(decode_sample(raw, [caption]))
                except SkipSample as e:
                    counts[e.code] += 1
            batch = collate(decoded, index=index, skipped=dict(counts))
            counts.clear()
            yield batch

    def __iter__(self) -> Iterator[Batch]:
        info = get_worker_info()
        if info is None:
            if self.cfg.streams != 1:
                raise ValueError(f"{self.cfg.streams} streams need as many data-loader workers")
            yield from self._stream_batches(0)
            return
        if info.num_workers != self.cfg.streams:
            raise ValueError(f"{info.num_workers} data-loader workers for {self.cfg.streams} streams")
        # Worker p takes the stream whose next batch is p-th in line: the loader's round-robin then
        # delivers batch `start` first (see the module docstring).
        yield from self._stream_batches((info.id + self.start) % self.cfg.streams)


def _worker_init(_: int) -> None:
    # One thread per worker: the workers are the parallelism; oversubscribed BLAS threads only fight.
    torch.set_num_threads(1)


def train_loader(
    shards: list[Shard], cfg: StreamConfig, epoch: int, steps: int, start: int = 0, pin_memory: bool = False
) -> DataLoader:
    workers = cfg.workers
    return DataLoader(
        TrainStream(shards, cfg, epoch, steps, start),
        batch_size=None,
        num_workers=workers,
        pin_memory=pin_memory,
        worker_init_fn=_worker_init if workers else None,
        # The loader draws worker base seeds from this, not from the global RNG (exact resume).
        generator=torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch),
        prefetch_factor=2 if workers else None,
        persistent_workers=False,
        multiprocessing_context=_mp_context() if workers else None,
    )


def _mp_context() -> str | None:
    # fork starts workers fastest; they never touch CUDA, so a parent's CUDA context is no obstacle.
    import multiprocessing as mp

    return "fork" if "fork" in mp.get_all_start_methods() else None


# ------------------------------------------------------------------------------------------------
# Evaluation: one pass, every sample once, all captions


class EvalStream(IterableDataset):
    def __init__(self, shards: list[Shard], batch_size: int, mel_mode: str = "auto"):
        super().__init__()
        self.shards, self.batch_size, self.mel_mode = shards, batch_size, mel_mode

    def __iter__(self) -> Iterator[Batch]:
        info = get_worker_info()
        wid, nw = (0, 1) if info is None else (info.id, info.num_workers)
        counts = SkipCounts()
        group: list[Decoded] = []
        for shard in self.shards[wid::nw]:
            for raw in iter_shard(shard, counts, self.mel_mode):
                try:
                    group.append(decode_sample(raw, sample_captions(raw.meta)))
                except SkipSample as e:
                    counts[e.code] += 1
                if len(group) == self.batch_size:
                    yield collate(group, skipped=dict(counts))
                    group, counts = [], SkipCounts()
        if group or counts:
            yield collate(group, skipped=dict(counts))


def eval_loader(shards: list[Shard], batch_size: int, workers: int, mel_mode: str = "auto") -> DataLoader:
    workers = min(workers, len(shards))
    return DataLoader(
        EvalStream(shards, batch_size, mel_mode),
        batch_size=None,
        num_workers=workers,
        worker_init_fn=_worker_init if workers else None,
        prefetch_factor=2 if workers else None,
        multiprocessing_context=_mp_context() if workers else None,
    )
