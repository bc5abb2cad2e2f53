"""`clapcorpus run`: build the corpus a spec describes."""

from __future__ import annotations

import argparse

from clap_corpus.core.cli_help import Command
from clap_corpus.pipeline.launch.run import build_corpus, format_report
from clap_corpus.pipeline.outputs.summary_model import NotRun, RunSummary


def _options(run: argparse.ArgumentParser) -> None:
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


def finish(summary: RunSummary | NotRun) -> int:
    """Print the run's report; the exit code: 1 where the accounting or a source's sample count failed."""
    print(format_report(summary))
    if isinstance(summary, NotRun):
        return 0
    return 0 if summary.accounting_ok and not summary.empty_sources else 1


def _run(args: argparse.Namespace, beam_args: list[str]) -> int:
    return finish(
        build_corpus(
            args.spec,
            args.output,
            beam_args,
            progress=True,
            start_check=not args.skip_start_check,
            retry_failed=args.retry_failed,
        )
    )


COMMANDS = (
    Command(
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
        options=_options,
        run=_run,
        beam_args=True,
        beam_options=True,
    ),
)
