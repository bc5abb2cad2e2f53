"""Trainer throughput: the data loader alone and whole training steps, in samples/s, side by side.

Run: ``.venv/bin/python bench/bench_trainer.py [--data BUILT_CORPUS] [--batches 10] [--workers 2]``.

Rows, all on the same shards:

- webdataset, stored mel: ``<key>.mel.npy`` read as written by the pipeline (no signal processing);
- webdataset, mel from FLAC: the same tars, views computed on the device from the FLAC and the
  stored view plan (``--mel compute``);
- parquet, mel from FLAC: the Parquet shards (which carry no mel);
- webdataset library (baseline, loader only): ``webdataset.WebDataset`` + shuffle + the same
  ``np.load``/``json`` decoding, batched, through a torch DataLoader with the same workers.

"loader" = batches ready on the device (views included); "train" = loader + forward, backward and
AdamW step of the model given by ``--encoder``/``--size`` with the tiny text encoder. Without
``--data`` a 64-clip "described" demo corpus is built once with the real pipeline and cached.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import time

import numpy as np
import torch

from clap_corpus.pipeline.demo.corpus import write_demo_corpus
from clap_corpus.pipeline.launch.run import run_corpus
from clap_corpus.trainer.config import AudioConfig, ModelConfig, TextConfig
from clap_corpus.trainer.data import StreamConfig, list_shards, resolve_layout, train_loader
from clap_corpus.trainer.loss import clip_loss
from clap_corpus.trainer.text import build_tiny_text_model, tokenize
from clap_corpus.trainer.train import build_model, corpus_texts


def bench_corpus(cache: str, clips: int) -> str:
    out = os.path.join(cache, f"described-{clips}")
    built = os.path.join(out, "built")
    if not os.path.isfile(os.path.join(built, "summary.json")):
        spec = write_demo_corpus(
            os.path.join(out, "source"),
            n_clips=clips,
            max_seconds=12.0,
            bad_rows=False,
            annotation="described",
            shard_size=16,
            corpus="benchtrainer",
            extra_options={"split_proportions": {"train": 1.0}},
        )
        run_corpus(spec, built, ["--runner=FnApiRunner"])
    return built


def _baseline_loader(urls: list[str], batch: int, workers: int):
    import webdataset as wds

    def decode(sample: dict) -> tuple[torch.Tensor, str]:
        mel = torch.from_numpy(np.load(io.BytesIO(sample["mel.npy"]), allow_pickle=False))
        return mel, json.loads(sample["json"])["text"][0]

    ds = (
        wds.WebDataset(urls, shardshuffle=False, nodesplitter=None, workersplitter=wds.split_by_worker)
        .repeat()
        .shuffle(500)
        .map(decode)
        .batched(batch, collation_fn=lambda xs: (torch.stack([m for m, _ in xs]), [t for _, t in xs]))
    )
    return torch.utils.data.DataLoader(ds, batch_size=None, num_workers=workers)


def _time_batches(batches, n: int, step=None) -> float:
    it = iter(batches)
    first = next(it)  # worker start-up and first fill: not part of the steady state
    if step:
        step(first)
    done, t0 = 0, time.perf_counter()
    for _ in range(n):
        b = next(it)
        if step:
            step(b)
        done += len(b) if not isinstance(b, tuple) else b[0].shape[0]
    return done / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None, help="a built corpus (default: build a demo corpus)")
    p.add_argument("--cache", default=os.path.join("/tmp", "clapcorpus-bench-trainer"))
    p.add_argument("--clips", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--batches", type=int, default=10, help="timed batches per row (after one warm-up)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--encoder", default="cnn")
    p.add_argument("--size", default="small")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    device = torch.device(args.device)

    data = args.data or bench_corpus(args.cache, args.clips)
    layout = resolve_layout(data)
    text_dir = os.path.join(args.cache, f"text-{layout.corpus}")
    mcfg = ModelConfig(audio=AudioConfig(encoder=args.encoder, size=args.size), text=TextConfig(model="tiny"))
    if not os.path.isfile(os.path.join(text_dir, "config.json")):
        build_tiny_text_model(corpus_texts(list_shards(layout, "train")), text_dir, mcfg.text)
    steps = args.batches + 1

    rows = []
    for label, fmt, mel in (
        ("webdataset, stored mel", "webdataset", "auto"),
        ("webdataset, mel from FLAC", "webdataset", "compute"),
        ("parquet, mel from FLAC", "parquet", "auto"),
    ):
        shards = list_shards(layout, "train", fmt)
        cfg = StreamConfig(
            batch_size=args.batch_size, workers=args.workers, shuffle_buffer=500, seed=0, mel=mel
        )

        def on_device(b) -> None:
            b.views(device)
            if device.type == "cuda":
                torch.cuda.synchronize()

        loader_rate = _time_batches(train_loader(shards, cfg, 0, steps), args.batches, on_device)
        model, tok = build_model(mcfg, text_dir, pretrained=False, seed=0)
        model.to(device).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        autocast = (
            (lambda: torch.autocast("cuda", dtype=torch.bfloat16))
            if device.type == "cuda"
            else (lambda: torch.autocast("cpu", enabled=False))
        )

        def step(b, model=model, tok=tok, opt=opt, autocast=autocast) -> None:
            ids, mask = tokenize(tok, [c[0] for c in b.captions], 77)
            with autocast():
                a, t, s = model(b.views(device), b.longer.to(device), ids.to(device), mask.to(device))
            clip_loss(a, t, s).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if device.type == "cuda":
                torch.cuda.synchronize()

        train_rate = _time_batches(train_loader(shards, cfg, 1, steps), args.batches, step)
        rows.append((label, loader_rate, train_rate))

    urls = [s.url for s in list_shards(layout, "train")]
    base = _time_batches(_baseline_loader(urls, args.batch_size, args.workers), args.batches)
    rows.append(("webdataset library (baseline)", base, float("nan")))

    print(
        f"trainer throughput on {device} ({torch.get_num_threads()} threads), {args.encoder}-{args.size} + "
        f"tiny text, batch {args.batch_size}, {args.workers} workers, {args.batches} timed batches per row"
    )
    print(f"  {'source':<32}{'loader samples/s':>18}{'train samples/s':>18}")
    for label, lr_, tr in rows:
        train_cell = "-" if tr != tr else f"{tr:.1f}"
        print(f"  {label:<32}{lr_:>18.1f}{train_cell:>18}")


if __name__ == "__main__":
    main()
