"""`clapcorpus demo`: generate the embedded demo corpus's source files and build them."""

from __future__ import annotations

import argparse
import os

from clap_corpus.core.cli_help import Command
from clap_corpus.core.layout import DEMO_CORPUS_FOLDER
from clap_corpus.pipeline.cli.run import finish
from clap_corpus.pipeline.launch.run import build_corpus


def _options(demo: argparse.ArgumentParser) -> None:
    demo.add_argument("--output", default="demo-out", help="output folder")
    demo.add_argument("--clips", type=int, default=24, help="number of good clips to generate")
    demo.add_argument("--seed", type=int, default=0, help="seed of the generated sounds and captions")
    demo.add_argument(
        "--annotation",
        choices=("mixed", "captions", "described"),
        default="mixed",
        help="described: five captions per clip naming kind and loudness (for `clapcorpus train`)",
    )


def _demo(args: argparse.Namespace, beam_args: list[str]) -> int:
    from clap_corpus.core.extras import EXTRAS, missing_modules
    from clap_corpus.pipeline.demo.corpus import write_demo_corpus

    # The demo shows K2C with its embedded model where the k2c extra is installed; a core install
    # still builds the demo corpus, with the template captions.
    k2c_missing = missing_modules(EXTRAS["k2c"])
    spec_path = write_demo_corpus(
        os.path.join(args.output, "source"),
        n_clips=args.clips,
        seed=args.seed,
        annotation=args.annotation,
        k2c_model=None if k2c_missing else "tiny",
    )
    print(f"demo source written: {spec_path}")
    if k2c_missing:
        missing = ", ".join(k2c_missing)
        print(f"keyword-to-caption is off ({missing} not installed): pip install 'clap-corpus[k2c]'")
    return finish(
        build_corpus(spec_path, os.path.join(args.output, DEMO_CORPUS_FOLDER), beam_args, progress=True)
    )


COMMANDS = (
    Command(
        "demo",
        help="generate the embedded demo corpus and build it",
        description="Write a small raw source (real mp3/ogg/opus/m4a/flac/wav files of sounds whose "
        "captions say what they are, plus a few broken rows) to OUTPUT/source and build it into "
        "OUTPUT/corpus with the embedded K2C model, as `clapcorpus run` would.",
        examples=[
            "clapcorpus demo --output demo-out",
            "clapcorpus demo --output demo-run --clips 160 --annotation described  # for clapcorpus train",
        ],
        options=_options,
        run=_demo,
        beam_args=True,
        beam_options=True,
    ),
)
