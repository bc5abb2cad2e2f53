"""`clapcorpus run` and `clapcorpus demo`."""

from __future__ import annotations

import argparse
import os

from clap_corpus.core.cli_help import add_command_parser, add_logging_options
from clap_corpus.core.layout import DEMO_CORPUS_FOLDER
from clap_corpus.pipeline.run import format_report, run_corpus


def add_command(sub: argparse._SubParsersAction) -> None:
    run = add_command_parser(
        sub,
        "run",
        help="build a corpus from a spec (unknown options go to Beam)",
        description="Build the corpus a spec describes: read every source's manifest, decode and check "
        "the audio, write captions, and write WebDataset and Parquet shards with their rejects, stats, "
        "summary, report and dataset card under --output. Options clapcorpus does not know go to Beam "
        "(--runner, --project, --region ...); without --runner the job runs locally on every core.",
        examples=[
            "clapcorpus run --spec my_corpus.yaml --output out/",
            "clapcorpus run --spec gs://b/spec.yaml --output gs://b/out --runner=DataflowRunner "
            "--project=P --region=us-central1 --temp_location=gs://b/tmp --setup_file=./setup.py",
        ],
    )
    run.add_argument("--spec", required=True, help="corpus spec (YAML)")
    run.add_argument("--output", required=True, help="output folder or URL (gs://...)")
    run.add_argument(
        "--skip-start-check",
        action="store_true",
        help="do not sample each source's rows for missing audio before starting",
    )
    run.add_argument(
        "--retry-failed",
        action="store_true",
        help="fetch again the URLs whose fetch status is `failed` (sources with http(s) URLs)",
    )
    run.set_defaults(func=_run, beam_args=True, beam_options=True)

    demo = add_command_parser(
        sub,
        "demo",
        help="generate the embedded demo corpus and build it",
        description="Write a small raw source (real mp3/ogg/opus/m4a/flac/wav files of sounds whose "
        "captions say what they are, plus a few broken rows) to OUTPUT/source and build it into "
        "OUTPUT/corpus with the embedded K2C model, as `clapcorpus run` would.",
        examples=[
            "clapcorpus demo --output demo-out",
            "clapcorpus demo --output demo-run --clips 160 --annotation described  # for clapcorpus train",
        ],
    )
    demo.add_argument("--output", default="demo-out", help="output folder")
    demo.add_argument("--clips", type=int, default=24, help="number of good clips to generate")
    demo.add_argument("--seed", type=int, default=0, help="seed of the generated sounds and captions")
    demo.add_argument(
        "--annotation",
        choices=("mixed", "captions", "described"),
        default="mixed",
        help="described: five captions per clip naming kind and loudness (for `clapcorpus train`)",
    )
    demo.set_defaults(func=_demo, beam_args=True, beam_options=True)

    for sp in (run, demo):
        # quiet by default: the progress line and the final report say what a local run needs
        add_logging_options(sp, "WARNING")


def _finish(summary: dict) -> int:
    print(format_report(summary))
    if summary.get("not_run"):
        return 0
    return 0 if summary["accounting_ok"] and not summary["empty_sources"] else 1


def _run(args: argparse.Namespace, beam_args: list[str]) -> int:
    return _finish(
        run_corpus(
            args.spec,
            args.output,
            beam_args,
            progress=True,
            start_check=not args.skip_start_check,
            retry_failed=args.retry_failed,
        )
    )


def _demo(args: argparse.Namespace, beam_args: list[str]) -> int:
    from clap_corpus.core.extras import EXTRAS, missing_modules
    from clap_corpus.pipeline.demo import write_demo_corpus

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
    return _finish(
        run_corpus(spec_path, os.path.join(args.output, DEMO_CORPUS_FOLDER), beam_args, progress=True)
    )
