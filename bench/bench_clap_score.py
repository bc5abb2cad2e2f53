"""What CLAP scoring (``options.clap``) costs, side by side.

Run: ``.venv/bin/python bench/bench_clap_score.py [--quick]`` (needs the ``score`` extra for faiss).

1. Model throughput on CPU with one torch thread (one Beam worker process per core), through the
   stage's own :class:`pipeline.clap_handler.Embedder` (fixed-shape chunks of 32 clips, one caption
   each), on the views of 10-second clips (the longer flag set for half: the fusion path):
   - the tiny test ClapModel (tests/clap_models.py, 40 000 parameters),
   - the bundled trainer's models: ``cnn``/``micro`` (what tests/test_clap_signal.py trains) and
     ``htsat``/``tiny`` with a tiny text model, as checkpoints written by ``save_checkpoint``,
   - a ClapModel with LAION's clap-htsat-fused architecture (transformers' default ClapConfig with
     ``enable_fusion``, random weights: the same arithmetic as the released model, no download);
   plus the model input itself (decode + views of a 10 s mp3, what the stage adds per clip).
2. Nearest-neighbour search (exact inner product, 512 dimensions, k=8) over 10^5 and 10^6 vectors,
   faiss ``IndexFlatIP`` next to numpy in blocks: time to add, time per query (1 000 queries).
3. A projection for 2.5 M samples, stated with its assumptions (printed).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _inputs(n: int):
    from clap_corpus.transforms.clap_scores import ClapInput

    rng = np.random.default_rng(0)
    return [
        ClapInput((rng.normal(size=(4, 1001, 64)) * 10 - 40).astype(np.float16), i % 2 == 0, ("a dog barks",))
        for i in range(n)
    ]


def _rate(embedder, items, repeats: int) -> float:
    embedder.embed(items[:2])  # warm-up
    best = 0.0
    for _ in range(repeats):
        t0 = time.process_time()
        embedder.embed(items)
        best = max(best, len(items) / (time.process_time() - t0))
    return best


def _trainer_checkpoint(folder: str, encoder: str, size: str) -> str:
    from clap_corpus.trainer.checkpoint import save_checkpoint
    from clap_corpus.trainer.config import AudioConfig, ModelConfig, TextConfig
    from clap_corpus.trainer.text import build_tiny_text_model
    from clap_corpus.trainer.train import build_model

    text_cfg = TextConfig(model="tiny", tiny_hidden=32, tiny_layers=1)
    cfg = ModelConfig(audio=AudioConfig(encoder=encoder, size=size), text=text_cfg, joint_dim=32)
    captions = ["a dog barks", "rain on a roof"]
    text_dir = build_tiny_text_model(captions, os.path.join(folder, "text"), text_cfg)
    model, _ = build_model(cfg, text_dir, pretrained=False, seed=0, offline=True)
    return save_checkpoint(os.path.join(folder, "ckpt"), model, cfg, None, {}, text_dir)


def _laion_sized(folder: str) -> str:
    from clap_models import tiny_clap_model
    from transformers import ClapConfig, ClapModel

    tiny_clap_model(folder)  # for its tokenizer files
    cfg = ClapConfig(audio_config={"enable_fusion": True}, text_config={"vocab_size": 1000})
    ClapModel(cfg).save_pretrained(folder)
    return folder


def bench_models(quick: bool) -> dict[str, float]:
    from clap_models import tiny_clap_model

    from clap_corpus.pipeline.clap_config import ClapConfig
    from clap_corpus.pipeline.clap_handler import Embedder

    torch.set_num_threads(1)
    n, repeats = (32, 1) if quick else (64, 3)
    items = _inputs(n)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        models = {
            "tiny ClapModel (tests)": tiny_clap_model(os.path.join(tmp, "tiny")),
            "trainer cnn/micro": _trainer_checkpoint(os.path.join(tmp, "cnn"), "cnn", "micro"),
            "trainer htsat/tiny": _trainer_checkpoint(os.path.join(tmp, "htsat"), "htsat", "tiny"),
            "LAION clap-htsat-fused architecture": _laion_sized(os.path.join(tmp, "laion")),
        }
        for name, path in models.items():
            embedder = Embedder(ClapConfig(model=path, device="cpu"))
            k = 8 if name.startswith("LAION") else n  # ~1 s a clip on one core: fewer clips
            out[name] = _rate(embedder, items[:k], 1 if k < n else repeats)
            print(f"  {name:40s} {out[name]:8.2f} samples per CPU-second", flush=True)
    return out


def bench_input() -> float:
    from clap_corpus.pipeline import synth
    from clap_corpus.transforms.clap_scores import clap_input
    from clap_corpus.transforms.decode import decode_audio

    data = synth.encode_audio(synth.tone(440.0, 10.0, 44100), 44100, "mp3")
    clap_input(decode_audio(data).samples, "k", ("x",))
    t0 = time.process_time()
    for i in range(10):
        clap_input(decode_audio(data).samples, f"k{i}", ("x",))
    rate = 10 / (time.process_time() - t0)
    print(f"  model input (decode + views, 10 s mp3)   {rate:8.2f} clips per CPU-second", flush=True)
    return rate


def bench_search(sizes: list[int], dim: int = 512, k: int = 8, queries: int = 1000) -> dict:
    from clap_corpus.transforms.clap_scores import NeighbourIndex

    rng = np.random.default_rng(0)
    out = {}
    for n in sizes:
        base = rng.standard_normal((n, dim), dtype=np.float32)
        base /= np.linalg.norm(base, axis=1, keepdims=True)
        q = base[:queries] + 0.05 * rng.standard_normal((queries, dim), dtype=np.float32)
        row = {}
        for use_faiss in (True, False):
            index = NeighbourIndex(dim, use_faiss=use_faiss)
            t0 = time.perf_counter()
            for start in range(0, n, 100_000):
                index.add(base[start : start + 100_000])
            t_add = time.perf_counter() - t0
            nq = queries if use_faiss or n <= 100_000 else queries // 10
            t0 = time.perf_counter()
            index.search(q[:nq], k)
            per_query = (time.perf_counter() - t0) / nq
            row["faiss" if use_faiss else "numpy"] = (t_add, per_query)
            print(
                f"  n={n:>9,d}  {'faiss flat' if use_faiss else 'numpy':10s}  add {t_add:6.2f} s  "
                f"{per_query * 1e3:8.3f} ms per query (wall, {nq} queries)",
                flush=True,
            )
            del index
        out[n] = row
        del base
    return out


L4_PEAK_FLOPS = 121e12  # NVIDIA L4 datasheet, fp16 tensor, dense (an assumption for the projection)
L4_UTILISATION = 1 / 3  # assumed


def laion_flops() -> float:
    """FLOPs of one sample through a ClapModel of LAION's fused architecture (counted by torch)."""
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import ClapConfig, ClapModel

    model = ClapModel(ClapConfig(audio_config={"enable_fusion": True})).eval()
    x = torch.zeros(1, 4, 1001, 64)
    ids = torch.ones(1, 16, dtype=torch.long)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model.get_audio_features(input_features=x, is_longer=torch.tensor([[True]]))
        model.get_text_features(input_ids=ids, attention_mask=torch.ones_like(ids))
    return float(counter.get_total_flops())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer clips, 10^5 vectors only")
    args = ap.parse_args()
    print("CLAP model on CPU, one thread (embeddings of audio and one caption per clip):")
    rates = bench_models(args.quick)
    inp = bench_input()
    print("Nearest neighbours, 512 dimensions, k=8:")
    search = bench_search([100_000] if args.quick else [100_000, 1_000_000])
    n_total = 2_500_000
    laion = rates["LAION clap-htsat-fused architecture"]
    print("\nProjection for 2.5 M samples (assumptions stated; nothing here ran on a GPU):")
    print(f"  model input on CPU: {n_total / inp / 3600:,.1f} vCPU-hours at {inp:.1f} clips per CPU-s")
    print(
        f"  LAION-sized model on CPU: {n_total / laion / 3600:,.0f} vCPU-hours at {laion:.2f} samples/CPU-s"
    )
    flops = laion_flops()
    # Assumptions, not measurements: an NVIDIA L4 (Dataflow g2-standard-8) peaks at 121 TFLOP/s dense
    # fp16; a model this size in batches of 32 may reach a third of that; its 8 vCPUs make the inputs.
    gpu_rate = L4_PEAK_FLOPS * L4_UTILISATION / flops
    cpu_rate = 8 * inp
    worker_rate = min(gpu_rate, cpu_rate)
    print(
        f"  LAION-sized model: {flops / 1e9:,.1f} GFLOP per sample (audio and one caption); on one "
        f"L4 at an assumed {L4_UTILISATION:.0%} of its {L4_PEAK_FLOPS / 1e12:.0f} TFLOP/s: {gpu_rate:,.0f} "
        f"samples/s; its 8 vCPUs make {cpu_rate:,.0f} inputs/s, so a g2-standard-8 worker does "
        f"~{worker_rate:,.0f} samples/s: {n_total / worker_rate / 3600:.1f} worker-hours for 2.5 M"
    )
    big = max(search)
    per_query = search[big]["faiss"][1]
    print(
        f"  content guard: one query per train sample against the held-out set; at {big:,d} held-out vectors "
        f"{per_query * 1e3:.2f} ms a query: {n_total * per_query / 3600:.1f} CPU-hours (flat index)"
    )
    print(
        f"  near-duplicates (self-join of 2.5 M, flat): 2.5 M queries against 2.5 M vectors, "
        f"~{n_total * per_query * n_total / big / 3600:,.0f} CPU-hours if time grows linearly with the set"
    )


if __name__ == "__main__":
    main()
