"""`clapcorpus run` and `clapcorpus demo`."""

from __future__ import annotations

import argparse
import os

from clap_corpus.core.layout import DEMO_CORPUS_FOLDER
from clap_corpus.pipeline.run import format_report, run_corpus


def add_command(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run", help="build a corpus from a spec (unknown options go to Beam)")
    run.add_argument("--spec", required=True, help="corpus spec (YAML)")
    run.add_argument("--output", required=True, help="output folder or URL (gs://...)")
    run.add_argument(
        "--skip-start-check",
        action="store_true",
        help="do not sample each source's rows for missing audio before starting",
    )
    run.set_defaults(func=_run, beam_args=True, beam_options=True)

    demo = sub.add_parser("demo", help="generate the embedded demo corpus and build it")
    demo.add_argument("--output", default="demo-out", help="output folder (default: demo-out)")
    demo.add_argument("--clips", type=int, default=24, help="number of good clips to generate")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument(
        "--annotation",
        choices=("mixed", "captions", "described"),
        default="mixed",
        help="described: five captions per clip naming kind and loudness (for `clapcorpus train`)",
    )
    demo.set_defaults(func=_demo, beam_args=True, beam_options=True)

    for sp in (run, demo):
        sp.add_argument("--log-level", default="INFO")


def _finish(summary: dict) -> int:
    print(format_report(summary))
    if summary.get("not_run"):
        return 0
    return 0 if summary["accounting_ok"] and not summary["empty_sources"] else 1


def _run(args: argparse.Namespace, beam_args: list[str]) -> int:
    return _finish(
        run_corpus(args.spec, args.output, beam_args, progress=True, start_check=not args.skip_start_check)
    )


def _demo(args: argparse.Namespace, beam_args: list[str]) -> int:
    from clap_corpus.pipeline.demo import write_demo_corpus

    spec_path = write_demo_corpus(
        os.path.join(args.output, "source"), n_clips=args.clips, seed=args.seed, annotation=args.annotation
    )
    print(f"demo source written: {spec_path}")
    return _finish(
        run_corpus(spec_path, os.path.join(args.output, DEMO_CORPUS_FOLDER), beam_args, progress=True)
    )
