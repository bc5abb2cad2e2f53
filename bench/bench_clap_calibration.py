"""What CLAP scoring removes with a weak model and with one that works: the run's calibration, side by
side with what the same options removed before it existed (``trust_model: true``).

Run: ``.venv/bin/python bench/bench_clap_calibration.py [--model DIR] [--corpus recordings|demo]``.

- ``--model``: a CLAP model (``options.clap.model``); default: the README's demo checkpoint, trained
  here as README "Training CLAP on a built corpus" does (the demo corpus with described captions,
  small CNN, tiny text model, 5 epochs, ~40 s on one core).
- ``--corpus recordings``: real recordings found on this machine (the Debian packages bench/real_corpus.py
  names: ``apt-get install sound-theme-freedesktop oxygen-sounds frozen-bubble-data lbreakout2-data
  pingus-data``), captioned from their file names ("the sound of dialog warning"), every fifth held
  out, and a re-encoded copy (MP3, 3 dB quieter, 70 ms later) of three held-out clips planted in train
  under other names: what the content guard is for. ``--corpus demo``: the demo's sounds, one clip of
  each kind and loudness (clips of one kind and loudness are the same generated sound), with the same
  planted copies: the data the demo checkpoint was trained for.

Both runs use the defaults a user starts from: ``content_overlap: remove`` at 0.95 (``--threshold``)
and ``keep_top_fraction: 0.9``. Printed: the calibration, and per run what was removed (planted copies
caught, other clips lost) and what was held back.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import tempfile

import numpy as np
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

RUNNER = ["--runner=FnApiRunner"]
SOUND_DIRS = ("/usr/share/sounds", "/usr/share/games")
PLANTED = 3


def demo_checkpoint(root: str) -> str:
    from clap_corpus.pipeline.cli.main import main as cli_main
    from clap_corpus.pipeline.demo.corpus import write_demo_corpus
    from clap_corpus.pipeline.launch.run import run_corpus

    spec = write_demo_corpus(
        os.path.join(root, "demo"), n_clips=160, max_seconds=12.0, bad_rows=False, annotation="described",
        shard_size=32, corpus="clapdemo", k2c_model=None, extra_options={"split_proportions": {"train": 1.0}},
    )  # fmt: skip
    built = os.path.join(root, "built")
    run_corpus(spec, built, RUNNER)
    model = os.path.join(root, "clap")
    args = ["train", "--data", built, "--output", model, "--audio-encoder", "cnn", "--text-model", "tiny"]
    args += ["--batch-size", "16", "--epochs", "5", "--lr", "1e-3", "--warmup-steps", "10"]
    assert cli_main([*args, "--eval-every-epochs", "0", "--threads", "1", "--log-level", "WARNING"]) == 0
    return model


def recordings_rows(raw: str) -> list[dict]:
    from clap_corpus.transforms.decode import decode_audio

    rows, seen = [], set()
    files = sorted(
        f
        for d in SOUND_DIRS
        for f in glob.glob(os.path.join(d, "**", "*"), recursive=True)
        if f.endswith((".wav", ".ogg", ".oga", ".flac"))
    )
    for i, path in enumerate(files):
        with open(path, "rb") as f:
            data = f.read()
        try:
            if decode_audio(data).duration_s < 0.3:
                continue
        except Exception:
            continue
        name = os.path.basename(path).rsplit(".", 1)[0]
        words = name.replace("_", " ").replace("-", " ").strip()
        if words in seen:
            continue
        seen.add(words)
        ext = path.rsplit(".", 1)[1]
        with open(os.path.join(raw, f"r{i:04d}.{ext}"), "wb") as f:
            f.write(data)
        rows.append({"audio": f"r{i:04d}.{ext}", "id": f"r{i:04d}", "captions": [f"the sound of {words}"]})
    return rows


def demo_rows(raw: str) -> list[dict]:
    from clap_corpus.pipeline.demo.corpus import write_demo_corpus

    spec = write_demo_corpus(
        os.path.join(raw, "..", "demo"), n_clips=32, max_seconds=12.0, bad_rows=False,
        annotation="described", k2c_model=None,
    )  # fmt: skip
    src = os.path.join(os.path.dirname(spec), "raw")
    rows, found = [], set()
    with open(os.path.join(src, "manifest.jsonl"), encoding="utf-8") as f:
        for r in map(json.loads, f):
            if (r["kind"], r["loudness"]) not in found:
                found.add((r["kind"], r["loudness"]))
                with (
                    open(os.path.join(src, r["audio"]), "rb") as g,
                    open(os.path.join(raw, r["audio"]), "wb") as h,
                ):
                    h.write(g.read())
                rows.append({k: r[k] for k in ("audio", "id", "captions")})
    return rows


def with_planted(raw: str, rows: list[dict]) -> list[dict]:
    """Every fifth row held out; a re-encoded copy of the first PLANTED of them planted in train."""
    from clap_corpus.pipeline.demo.synth import encode_audio
    from clap_corpus.scoring.stage import calibration_copy
    from clap_corpus.transforms.decode import decode_audio

    for i, r in enumerate(rows):
        r["split"] = "valid" if i % 5 == 4 else "train"
    planted = []
    for r in [r for r in rows if r["split"] == "valid"][:PLANTED]:
        with open(os.path.join(raw, r["audio"]), "rb") as f:
            copy = calibration_copy(decode_audio(f.read()).samples)
        name = f"planted_{r['id']}"
        with open(os.path.join(raw, f"{name}.wav"), "wb") as f:
            f.write(encode_audio(copy, 48_000, "wav"))
        planted.append({"audio": f"{name}.wav", "id": name, "captions": ["an upload"], "split": "train"})
    return rows + planted


def run(root: str, rows: list[dict], model: str, trust: bool, threshold: float) -> dict:
    from clap_corpus.pipeline.launch.run import run_corpus

    spec = {
        "corpus": "calibration",
        "options": {
            "shard_size": 64,
            "clap": {
                "model": model,
                "keep_top_fraction": 0.9,
                "content_threshold": threshold,
                "trust_model": trust,
            },
        },
        "sources": [
            {"name": "clips", "adapter": "generic", "manifest": "raw/manifest.jsonl", "audio_root": "raw"}
        ],
    }
    with open(os.path.join(root, "raw", "manifest.jsonl"), "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    path = os.path.join(root, f"spec_{trust}.yaml")
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(spec, f, sort_keys=False)
    return run_corpus(path, os.path.join(root, f"out_{trust}"), RUNNER)


def removed_ids(out: str, code: str) -> list[str]:
    ids = []
    for path in glob.glob(os.path.join(out, "rejects", "manifest", "*.jsonl")):
        with open(path, encoding="utf-8") as f:
            ids += [r["source_id"] for r in map(json.loads, f) if r["code"] == code]
    return sorted(ids)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="a CLAP model; default: the README's demo checkpoint, trained here")
    ap.add_argument("--corpus", choices=("recordings", "demo"), default="recordings")
    ap.add_argument("--threshold", type=float, default=0.95, help="content_threshold (default: the default)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or demo_checkpoint(os.path.join(tmp, "model"))
        root = os.path.join(tmp, "corpus")
        raw = os.path.join(root, "raw")
        os.makedirs(raw)
        rows = with_planted(raw, recordings_rows(raw) if args.corpus == "recordings" else demo_rows(raw))
        if len(rows) < 16:
            sys.exit(f"only {len(rows)} clips found: install the packages the docstring names")
        train = sum(r["split"] == "train" for r in rows)
        print(
            f"{args.corpus}: {len(rows)} clips ({train} train, {PLANTED} of them planted copies of "
            "held-out clips)"
        )
        print(f"model: {args.model or 'the README demo checkpoint (trained here)'}")
        results = {trust: run(root, rows, model, trust, args.threshold) for trust in (False, True)}
        cal = results[False]["stages"]["clap"]["calibration"]
        a = cal["audio"]
        print(
            f"calibration on {cal['clips']} clips: own caption above another's "
            f"{cal['captions']['caption_wins']} "
            f"(chance 0.5); cosine of a clip and its copy: median {a['copies'].get('median')}, p05 "
            f"{a['copies'].get('p05')}; of two different clips: median {a['different_clips'].get('median')}, "
            f"p99 {a['different_clips'].get('p99')}; separation {a['separation']}; suggested threshold "
            f"{cal['suggested_threshold']}"
        )
        for name, d in cal["thresholds"].items():
            print(
                f"  {name} {d['threshold']}: copies at or above {d['copies_at_or_above']}, different "
                f"clips at or above {d['different_clips_at_or_above']} -> "
                + ("removes" if d["trusted"] else "report only")
            )
        print(f"  {'':36}{'calibrated (default)':>22}{'trust_model: true':>20}")
        for code in ("eval_overlap_content", "low_clap_score"):
            ids = {t: removed_ids(os.path.join(root, f"out_{t}"), code) for t in (False, True)}
            cells = [
                f"{len(ids[t])} ({sum(i.startswith('planted') for i in ids[t])} planted)"
                for t in (False, True)
            ]
            print(f"  {code + ' removed':36}{cells[0]:>22}{cells[1]:>20}")
        for t in (False, True):
            s = results[t]
            stage = s["stages"]["clap"]
            print(
                f"  {'trust_model' if t else 'calibrated'}: {s['samples']} of {len(rows)} samples ship; "
                f"held back: {stage['withheld'] or 'nothing'}"
            )
            for code, why in stage["removal_refused"].items():
                print(f"    refused {code}: {why}")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
