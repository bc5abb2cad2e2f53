"""`clapcorpus report`: redraw the run report and the dataset card of a built corpus."""

from __future__ import annotations

import argparse

from clap_corpus.core.cli_help import Command
from clap_corpus.core.layout import SUMMARY_FILE
from clap_corpus.pipeline.outputs.card import write_card
from clap_corpus.pipeline.outputs.report import write_report
from clap_corpus.pipeline.outputs.summary_model import RunSummary
from clap_corpus.transforms import storage


def _options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output", required=True, help="the corpus output folder or URL (has summary.json)")


def _report_command(args: argparse.Namespace, _extra: list[str]) -> int:
    path = storage.join(args.output, SUMMARY_FILE)
    if not storage.exists(path):
        print(f"clapcorpus report: no {SUMMARY_FILE} in {args.output} (has the run finished?)")
        return 2
    summary = RunSummary.read(path)  # any version's summary.json (see summary_model.py)
    print(f"report: {write_report(summary)}")
    print(f"dataset card: {write_card(summary)}")
    return 0


COMMANDS = (
    Command(
        "report",
        help="(re)write the run report and dataset card of a built corpus",
        description="Rebuild report/index.html, report.json, the plots and the dataset card (README.md) "
        "of a corpus from its summary.json and shard stats; of the audio, only the few example clips "
        "it shows are read (one seek each).",
        examples=["clapcorpus report --output out/"],
        options=_options,
        run=_report_command,
    ),
)
