"""The trainer on a corpus built by the real pipeline (Beam FnApiRunner, real encoded audio).

The corpus is the demo corpus with ``annotation="described"``: eight kinds of sound at two loudness
levels, five captions per clip naming both, labels for zero-shot. It is built once per session.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from clap_corpus.core.layout import Layout
from clap_corpus.pipeline.cli.main import main as cli_main
from clap_corpus.pipeline.demo.corpus import write_demo_corpus
from clap_corpus.pipeline.launch.run import run_corpus
from clap_corpus.trainer.config import AudioConfig, ModelConfig, TextConfig, TrainConfig
from clap_corpus.trainer.data import (
    MISSING_MEMBER,
    TRUNCATED_SHARD,
    SkipCounts,
    StreamConfig,
    eval_loader,
    iter_parquet,
    iter_tar,
    list_shards,
    resolve_layout,
    steps_per_epoch,
    train_loader,
)
from clap_corpus.trainer.train import train

# every test reads the 160-clip corpus built once here (about 25 s) and most train on it
pytestmark = pytest.mark.slow

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing here may touch the network
os.environ["TOKENIZERS_PARALLELISM"] = "false"

RUNNER = ["--runner=FnApiRunner"]
CORPUS = "clapdemo"
N_CLIPS = 160  # every 5th clip is `valid` (32); the rest `train` (128), in shards of 16
CPU = torch.device("cpu")


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("trainer_corpus")
    spec = write_demo_corpus(
        str(root / "source"),
        n_clips=N_CLIPS,
        max_seconds=12.0,  # half the clips over 10 s: fusion views
        bad_rows=False,
        annotation="described",
        shard_size=16,
        corpus=CORPUS,
        extra_options={"split_proportions": {"train": 1.0}},
    )
    summary = run_corpus(spec, str(root / "built"), RUNNER)
    assert summary["accounting_ok"] and summary["samples"] == N_CLIPS
    return str(root / "built")


def _micro_model() -> ModelConfig:
    return ModelConfig(
        audio=AudioConfig(encoder="cnn", size="micro"),
        text=TextConfig(model="tiny", tiny_hidden=32, tiny_layers=1),
        joint_dim=32,
    )


# ------------------------------------------------------------------------------------------------
# Data


def test_an_epoch_reads_every_train_sample_once_in_index_order(corpus):
    layout = resolve_layout(corpus)
    assert layout.corpus == CORPUS
    shards = list_shards(layout, "train")
    steps = steps_per_epoch(shards, 16, 1)
    assert steps == 8
    cfg = StreamConfig(batch_size=16, workers=2, shuffle_buffer=20, seed=0)
    batches = list(train_loader(shards, cfg, 0, steps))
    assert [b.index for b in batches] == list(range(steps))
    keys = [k for b in batches for k in b.keys]
    assert len(keys) == len(set(keys)) == 128
    assert all(len(c) == 1 for b in batches for c in b.captions)
    assert all(b.mel.shape == (16, 4, 1001, 64) and not b.compute for b in batches)  # stored views
    longer = torch.cat([b.longer for b in batches])
    assert 0 < int(longer.sum()) < 128  # both view modes are in the corpus
    again = list(train_loader(shards, cfg, 0, steps))
    assert [b.keys for b in again] == [b.keys for b in batches]
    assert [b.captions for b in again] == [b.captions for b in batches]
    next_epoch = list(train_loader(shards, cfg, 1, steps))
    assert [b.keys for b in next_epoch] != [b.keys for b in batches]
    assert sorted(k for b in next_epoch for k in b.keys) == sorted(keys)


@pytest.mark.parametrize("workers", [0, 2, 3])
def test_a_resumed_stream_continues_where_it_stopped(corpus, workers):
    shards = list_shards(resolve_layout(corpus), "train")
    cfg = StreamConfig(batch_size=8, workers=workers, shuffle_buffer=12, seed=3)
    full = [(b.index, b.keys, b.captions) for b in train_loader(shards, cfg, 1, 16)]
    for start in (1, 5):
        tail = [(b.index, b.keys, b.captions) for b in train_loader(shards, cfg, 1, 16, start=start)]
        assert tail == full[start:]


def test_stored_and_computed_views_are_identical(corpus):
    layout = resolve_layout(corpus)

    def views(fmt: str, mel: str) -> dict[str, torch.Tensor]:
        out = {}
        for b in eval_loader(list_shards(layout, "valid", fmt)[:1], 8, 0, mel):
            if fmt == "parquet" or mel == "compute":
                assert len(b.compute) == len(b)  # views computed from the FLAC
            for key, v in zip(b.keys, b.views(CPU), strict=True):
                out[key] = v
        return out

    stored = views("webdataset", "auto")
    assert len(stored) == 16
    for other in (views("webdataset", "compute"), views("parquet", "auto")):
        assert other.keys() == stored.keys()
        for key, v in stored.items():
            assert torch.equal(v, other[key]), key


def _member_offsets(path: str) -> list[tuple[str, int, int]]:
    with tarfile.open(path) as tar:
        return [(m.name, m.offset, m.offset_data + m.size) for m in tar.getmembers()]


def test_truncated_shards_and_missing_members_are_skipped_and_counted(corpus, tmp_path):
    src = Layout(corpus, CORPUS)
    dst = Layout(str(tmp_path), CORPUS)
    shutil.copytree(src.webdataset_dir("train"), dst.webdataset_dir("train"))
    tar0, tar1, tar2 = (dst.tar_path("train", f"{i:06d}") for i in range(3))
    # 000000: cut in the middle of the 5th sample's mel member (a killed writer)
    members = _member_offsets(tar0)
    name, start, end = members[4 * 3 + 2]
    assert name.endswith(".mel.npy")
    with open(tar0, "r+b") as f:
        f.truncate((start + end) // 2)
    # 000001: the 4th sample lost its json
    with tarfile.open(tar1) as tar:
        kept = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    dropped = kept.pop(3 * 3 + 1)[0].name
    assert dropped.endswith(".json")
    with tarfile.open(tar1, "w", format=tarfile.USTAR_FORMAT) as tar:
        for m, data in kept:
            tar.addfile(m, io.BytesIO(data))
    # 000002: cut cleanly after 10 samples, no end-of-archive blocks: only sizes.json can tell
    cut = _member_offsets(tar2)[10 * 3][1]
    with open(tar2, "r+b") as f:
        f.truncate(cut)

    shards = {s.url: s for s in list_shards(dst, "train")}
    counts = SkipCounts()
    assert len(list(iter_tar(shards[tar0], counts))) == 4
    assert counts == {TRUNCATED_SHARD: 1}
    counts = SkipCounts()
    assert len(list(iter_tar(shards[tar1], counts))) == 15
    assert counts == {MISSING_MEMBER: 1}
    counts = SkipCounts()
    assert len(list(iter_tar(shards[tar2], counts))) == 10
    assert counts == {TRUNCATED_SHARD: 1}

    # Training on the damaged split: every batch still arrives, the damage is reported with them.
    cfg = StreamConfig(batch_size=16, workers=2, shuffle_buffer=16, seed=0)
    seen = SkipCounts()
    batches = list(train_loader(list(shards.values()), cfg, 0, 8))
    for b in batches:
        seen.merge(b.skipped)
        assert len(b) == 16
    assert len(batches) == 8
    assert seen[MISSING_MEMBER] >= 1 and seen[TRUNCATED_SHARD] >= 2
    # Evaluation reads each shard once: exactly the damage above.
    total, evaluated = SkipCounts(), 0
    for b in eval_loader(list(shards.values()), 32, 2):
        total.merge(b.skipped)
        evaluated += len(b)
    assert total == {TRUNCATED_SHARD: 2, MISSING_MEMBER: 1}
    assert evaluated == 128 - 12 - 1 - 6

    # A Parquet shard cut in half has no footer: listed with no rows, skipped and counted when read.
    shutil.copytree(src.parquet_dir("train"), dst.parquet_dir("train"))
    cut_pq = dst.parquet_path("train", "000000")
    with open(cut_pq, "r+b") as f:
        f.truncate(os.path.getsize(cut_pq) // 2)
    pq_shards = {s.url: s for s in list_shards(dst, "train", "parquet")}
    assert pq_shards[cut_pq].samples == 0 and len(pq_shards) == 8
    counts = SkipCounts()
    assert list(iter_parquet(pq_shards[cut_pq], counts)) == [] and counts == {TRUNCATED_SHARD: 1}
    counts = SkipCounts()
    assert (
        len(list(iter_parquet(pq_shards[dst.parquet_path("train", "000001")], counts))) == 16 and not counts
    )


# ------------------------------------------------------------------------------------------------
# Training


def _train_cfg(corpus: str, output: str, **kw) -> TrainConfig:
    base = dict(
        data=corpus,
        output=output,
        batch_size=32,
        max_steps=5,
        lr=1e-3,
        warmup_steps=2,
        workers=2,
        shuffle_buffer=24,
        eval_split=None,
        log_every=1,
        threads=1,  # on a 2-core machine with 2 loader workers, one compute thread is fastest
    )
    return TrainConfig(**{**base, **kw})


def _weights(run: str) -> dict[str, torch.Tensor]:
    ckpts = sorted((Path(run) / "checkpoints").iterdir())
    return load_file(str(ckpts[-1] / "model.safetensors"))


def test_exact_resume_on_cpu(corpus, tmp_path):
    """5 steps in one go == 3 steps, save, resume, 2 steps (mid-epoch, then into the next epoch),
    with gradient accumulation over two micro-batches of 16."""
    mcfg = _micro_model()
    cfg = {"batch_size": 16, "grad_accum": 2}
    whole = train(_train_cfg(corpus, str(tmp_path / "whole"), **cfg), mcfg)
    assert whole.state.step == 5 and whole.state.epoch == 1  # 4 steps (8 micro-batches) per epoch
    first = train(_train_cfg(corpus, str(tmp_path / "split"), **cfg), mcfg, stop_at_step=3)
    assert first.state.step == 3 and first.state.batch == 6
    second = train(_train_cfg(corpus, str(tmp_path / "split"), **cfg), mcfg, resume="auto")
    assert second.state.step == 5
    a, b = _weights(str(tmp_path / "whole")), _weights(str(tmp_path / "split"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    losses = [r["loss"] for r in whole.log if r.get("event") == "train"]
    assert losses == [r["loss"] for r in first.log + second.log if r.get("event") == "train"]


def test_resuming_another_configuration_fails_clearly(corpus, tmp_path, capsys):
    out = str(tmp_path / "run")
    train(_train_cfg(corpus, out, max_steps=1), _micro_model())
    code = cli_main(
        [
            *("train", "--data", corpus, "--output", out, "--resume", "auto", "--audio-encoder", "cnn"),
            *("--audio-size", "micro", "--text-model", "tiny", "--no-fusion", "--max-steps", "2"),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "another model configuration" in err and "audio.fusion: True != False" in err


def test_cpu_run_beats_three_times_chance(corpus, tmp_path, capsys):
    """The acceptance run: a few minutes of CPU; text->audio R@1 and zero-shot >= 3x chance."""
    out = str(tmp_path / "run")
    code = cli_main(
        [
            *("train", "--data", corpus, "--output", out, "--audio-encoder", "cnn", "--text-model", "tiny"),
            *("--batch-size", "16", "--epochs", "5", "--lr", "1e-3", "--warmup-steps", "10"),
            *("--eval-every-epochs", "0", "--log-every", "10", "--threads", "1", "--log-level", "WARNING"),
            "--tensorboard",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "text->audio" in printed and "chance" in printed and "zero-shot accuracy" in printed
    report_path = tmp_path / "report.json"
    assert cli_main(["eval", "--checkpoint", out, "--data", corpus, "--json", str(report_path)]) == 0
    printed = capsys.readouterr().out
    print(printed)  # shown with -s: the numbers next to chance
    rep = json.loads(report_path.read_text())
    m, chance = rep["metrics"], rep["chance"]
    assert rep["clips"] == 32 and rep["captions_per_clip"] == 5
    assert chance["text_to_audio_R@1"] == pytest.approx(1 / 32)
    assert chance["zero_shot_accuracy"] == pytest.approx(1 / len(rep["classes"])) and len(rep["classes"]) == 7
    assert m["text_to_audio_R@1"] >= 3 * chance["text_to_audio_R@1"], printed
    assert m["zero_shot_accuracy"] >= 3 * chance["zero_shot_accuracy"], printed
    # the eval command saw the same model the training run evaluated
    log = [json.loads(line) for line in (Path(out) / "train_log.jsonl").read_text().splitlines()]
    final = [r for r in log if r["event"] == "eval"][-1]
    assert final["metrics"]["text_to_audio_R@1"] == pytest.approx(m["text_to_audio_R@1"])
    # TensorBoard's event files, read back with TensorBoard's own reader, hold the same numbers
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    board = EventAccumulator(str(Path(out) / "tensorboard"))
    board.Reload()
    train_rows = [r for r in log if r["event"] == "train"]
    loss = board.Scalars("train/loss")
    assert [e.step for e in loss] == [r["step"] for r in train_rows]
    assert [e.value for e in loss] == pytest.approx([r["loss"] for r in train_rows], rel=1e-6)
    temperature = board.Scalars("train/temperature")[-1].value
    assert temperature == pytest.approx(1 / train_rows[-1]["logit_scale"], rel=1e-6)
    assert [e.value for e in board.Scalars("train/lr")] == pytest.approx([r["lr"] for r in train_rows])
    r1 = board.Scalars(f"eval/{final['split']}/text_to_audio_R@1")
    assert r1[-1].step == final["step"] and r1[-1].value == pytest.approx(m["text_to_audio_R@1"], rel=1e-6)


DDP_SCRIPT = textwrap.dedent(
    """
    import hashlib, json, os, sys
    import torch
    from clap_corpus.trainer.config import AudioConfig, ModelConfig, TextConfig, TrainConfig
    from clap_corpus.trainer.train import train

    corpus, out = sys.argv[1], sys.argv[2]
    mcfg = ModelConfig(audio=AudioConfig(encoder="cnn", size="micro"),
                       text=TextConfig(model="tiny", tiny_hidden=32, tiny_layers=1), joint_dim=32)
    tcfg = TrainConfig(data=corpus, output=out, format="parquet", batch_size=8, max_steps=2, lr=1e-3,
                       warmup_steps=1, workers=1, shuffle_buffer=8, eval_split=None, log_every=1)
    res = train(tcfg, mcfg)
    h = hashlib.sha256()
    # parameters only: BatchNorm running statistics are per rank (DDP broadcasts rank 0's each step)
    for k, v in sorted(res.model.named_parameters()):
        h.update(k.encode()); h.update(v.detach().cpu().numpy().tobytes())
    rank = os.environ["RANK"]
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump({"digest": h.hexdigest(), "step": res.state.step, "samples": res.state.samples,
                   "world": torch.distributed.get_world_size()}, f)
    """
)


def test_ddp_two_cpu_processes(corpus, tmp_path):
    """torchrun, gloo backend, 2 ranks, Parquet shards (views computed from the FLAC)."""
    script = tmp_path / "ddp_train.py"
    script.write_text(DDP_SCRIPT)
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd()}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    proc = subprocess.run(
        [*torchrun, str(script), corpus, str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["world"] == 2 and ranks[0]["step"] == ranks[1]["step"] == 2
    assert ranks[0]["samples"] == ranks[1]["samples"] == 16  # each rank: 2 batches of its own shards
    assert ranks[0]["digest"] == ranks[1]["digest"]  # the ranks stayed in step
    assert (out / "checkpoints" / "step_00000002" / "model.safetensors").is_file()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_bf16_views_and_steps(corpus, tmp_path):
    layout = resolve_layout(corpus)
    batch = next(iter(eval_loader(list_shards(layout, "valid", "parquet"), 8, 0)))
    gpu = batch.views(torch.device("cuda"))
    cpu = batch.views(CPU)
    # float16-rounded views; the GPU FFT differs in the last bits, a step of float16 at most
    assert (gpu.cpu() - cpu).abs().max() < 0.07
    res = train(_train_cfg(corpus, str(tmp_path / "gpu"), max_steps=3, device="cuda"), _micro_model())
    assert res.state.step == 3 and all(r["loss"] == r["loss"] for r in res.log if r.get("event") == "train")
