"""`clapcorpus eval` on a checkpoint prints exactly what the evaluation at the end of `clapcorpus train`
printed for it (same data, same threads), down to the last digit of every metric."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from clap_corpus.pipeline.cli.main import main as cli_main
from clap_corpus.pipeline.demo.corpus import write_demo_corpus
from clap_corpus.pipeline.launch.run import run_corpus

# every test trains on the corpus built once here, then evaluates (about 30 s in all)
pytestmark = pytest.mark.slow

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

TRAIN = (
    *("--audio-encoder", "cnn", "--audio-size", "micro", "--text-model", "tiny", "--joint-dim", "32"),
    *("--batch-size", "8", "--max-steps", "3", "--lr", "1e-3", "--warmup-steps", "1", "--workers", "2"),
    *("--log-level", "WARNING"),
)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("eval_corpus")
    spec = write_demo_corpus(
        str(root / "source"),
        n_clips=40,  # every 5th clip is `valid`: 8 clips in 2 shards
        max_seconds=12.0,
        bad_rows=False,
        annotation="described",
        shard_size=4,
        corpus="evaldemo",
        extra_options={"split_proportions": {"train": 1.0}, "store_mel": False},
    )
    summary = run_corpus(spec, str(root / "built"), ["--runner=FnApiRunner"])
    assert summary["accounting_ok"] and summary["samples"] == 40
    return str(root / "built")


def _report_block(printed: str) -> str:
    """The last evaluation report in the printed output."""
    lines = printed.splitlines()
    start = max(i for i, line in enumerate(lines) if line.startswith("evaluation on "))
    end = start + 1
    while end < len(lines) and lines[end].startswith("  "):
        end += 1
    return "\n".join(lines[start:end])


def _final_eval(run: Path) -> dict:
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    return [r for r in log if r["event"] == "eval"][-1]


@pytest.mark.parametrize("threads", ["1", "2"])
def test_eval_prints_what_train_printed(corpus, tmp_path, capsys, threads):
    run = tmp_path / "run"
    args = ("train", "--data", corpus, "--output", str(run), *TRAIN, "--threads", threads)
    assert cli_main(list(args)) == 0
    trained = _report_block(capsys.readouterr().out)
    final = _final_eval(run)
    assert final["settings"] == {
        "threads": int(threads),
        "batch_size": 8,
        "workers": 2,
        "mel": "auto",
        "precision": "fp32",
    }
    assert f"settings: threads {threads}, batch 8, workers 2, mel auto, fp32" in trained

    # no flags: the checkpoint's training settings; then the same settings spelled out
    for flags in ((), ("--threads", threads, "--batch-size", "8", "--workers", "2")):
        out = tmp_path / "report.json"
        code = cli_main(["eval", "--checkpoint", str(run), "--data", corpus, "--json", str(out), *flags])
        assert code == 0
        assert _report_block(capsys.readouterr().out) == trained, flags
        report = json.loads(out.read_text())
        assert report["metrics"] == final["metrics"] and report["settings"] == final["settings"]

    # another thread count is honoured and shown next to the numbers
    other = "2" if threads == "1" else "1"
    code = cli_main(
        ["eval", "--checkpoint", str(run), "--data", corpus, "--threads", other, "--json", str(out)]
    )
    assert code == 0 and json.loads(out.read_text())["settings"]["threads"] == int(other)
    assert f"settings: threads {other}, batch 8" in capsys.readouterr().out
