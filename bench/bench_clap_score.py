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
2. The content guard: train records searched against 125 000 held-out vectors (5 % of 2.5 M; faiss
   ``IndexFlatIP``, 512 dimensions), one record per call (as the guard did) next to batches of 1 024
   (as it does), CPU milliseconds per record (``time.process_time``: every thread of the process)
   and wall milliseconds apart.
3. A projection for 2.5 M samples, stated with its assumptions (printed). The near-duplicate search
   has its own bench (bench/bench_near_duplicates.py: exact against IVF, recall and cost).
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
    from clap_corpus.scoring.scores import ClapInput

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


def _laion_sized(folder: str) -> str:
    from clap_models import tiny_clap_model
    from transformers import ClapConfig, ClapModel

    tiny_clap_model(folder)  # for its tokenizer files
    cfg = ClapConfig(audio_config={"enable_fusion": True}, text_config={"vocab_size": 1000})
    ClapModel(cfg).save_pretrained(folder)
    return folder


def bench_models(quick: bool) -> dict[str, float]:
    from clap_models import tiny_clap_model, trainer_checkpoint

    from clap_corpus.scoring.config import ClapConfig
    from clap_corpus.scoring.handler import Embedder

    torch.set_num_threads(1)
    n, repeats = (32, 1) if quick else (64, 3)
    items = _inputs(n)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        models = {
            "tiny ClapModel (tests)": tiny_clap_model(os.path.join(tmp, "tiny")),
            "trainer cnn/micro": trainer_checkpoint(os.path.join(tmp, "cnn"), "cnn", "micro"),
            "trainer htsat/tiny": trainer_checkpoint(os.path.join(tmp, "htsat"), "htsat", "tiny"),
            "LAION clap-htsat-fused architecture": _laion_sized(os.path.join(tmp, "laion")),
        }
        for name, path in models.items():
            embedder = Embedder(ClapConfig(model=path, device="cpu"))
            k = 8 if name.startswith("LAION") else n  # ~1 s a clip on one core: fewer clips
            out[name] = _rate(embedder, items[:k], 1 if k < n else repeats)
            print(f"  {name:40s} {out[name]:8.2f} samples per CPU-second", flush=True)
    return out


def bench_input() -> float:
    from clap_corpus.pipeline.demo import synth
    from clap_corpus.scoring.scores import clap_input
    from clap_corpus.transforms.decode import decode_audio

    data = synth.encode_audio(synth.tone(440.0, 10.0, 44100), 44100, "mp3")
    clap_input(decode_audio(data).samples, "k", ("x",))
    t0 = time.process_time()
    for i in range(10):
        clap_input(decode_audio(data).samples, f"k{i}", ("x",))
    rate = 10 / (time.process_time() - t0)
    print(f"  model input (decode + views, 10 s mp3)   {rate:8.2f} clips per CPU-second", flush=True)
    return rate


def bench_guard(
    heldout: int = 125_000, queries: int = 2048, dim: int = 512
) -> dict[str, tuple[float, float]]:
    """(CPU ms, wall ms) per train record searched against ``heldout`` vectors, one per call and batched."""
    from clap_corpus.scoring.scores import NeighbourIndex
    from clap_corpus.scoring.stage import GUARD_BATCH

    rng = np.random.default_rng(0)
    base = rng.standard_normal((heldout, dim), dtype=np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    q = base[:queries] + 0.05 * rng.standard_normal((queries, dim), dtype=np.float32)
    index = NeighbourIndex(dim)
    index.add(base)
    out = {}
    for name, batch, n in (
        ("one record per call", 1, queries // 8),
        (f"batches of {GUARD_BATCH}", GUARD_BATCH, queries),
    ):
        c0, w0 = time.process_time(), time.perf_counter()
        for start in range(0, n, batch):
            index.search(q[start : start + batch], 4)
        out[name] = ((time.process_time() - c0) / n * 1e3, (time.perf_counter() - w0) / n * 1e3)
        print(
            f"  {name:24s} {out[name][0]:8.3f} CPU ms / {out[name][1]:8.3f} wall ms per record ({n} records)",
            flush=True,
        )
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
    ap.add_argument("--quick", action="store_true", help="fewer clips and guard queries")
    args = ap.parse_args()
    print("CLAP model on CPU, one thread (embeddings of audio and one caption per clip):")
    rates = bench_models(args.quick)
    inp = bench_input()
    print("Content guard: train records against 125 000 held-out vectors (faiss flat, 512 dimensions):")
    guard = bench_guard(queries=512 if args.quick else 2048)
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
    for name, (cpu_ms, wall_ms) in guard.items():
        print(
            f"  content guard, {name}: {n_total * cpu_ms / 1e3 / 3600:.1f} CPU-hours for 2.5 M train records "
            f"({n_total * wall_ms / 1e3 / 3600:.1f} wall-hours of this process), 125 000 held-out vectors"
        )
    print("  near-duplicates: bench/bench_near_duplicates.py (exact vs IVF, recall and cost, 10^5 to 10^8)")


if __name__ == "__main__":
    main()
