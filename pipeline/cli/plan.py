"""`clapcorpus plan`: per-source rows, hours, shards and a worker-hour estimate, from metadata only."""

from __future__ import annotations

import argparse
import json

from clap_corpus.core.cli_help import Command
from clap_corpus.manifests.plan import THROUGHPUT_X_REALTIME, format_plan, plan_spec
from clap_corpus.pipeline.launch.preflight import format_results, load_checked_spec
from clap_corpus.pipeline.spec.k2c_model import check_k2c_model


def _options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--spec", required=True, help="corpus spec (YAML)")
    p.add_argument(
        "--check-audio",
        action="store_true",
        help="list the audio folders too, so rows without an audio file count as rejects",
    )
    p.add_argument(
        "--throughput",
        type=float,
        default=THROUGHPUT_X_REALTIME,
        help="processing speed in x realtime per worker core",
    )
    p.add_argument(
        "--skip-start-check",
        action="store_true",
        help="plan without checking that a sample of each source's audio files exists",
    )
    p.add_argument("--json", action="store_true", help="print the plan as JSON")


def _plan(args: argparse.Namespace, _extra: list[str]) -> int:
    if args.throughput <= 0:
        raise SystemExit("clapcorpus plan: --throughput must be positive")
    # the same start check as `clapcorpus run`: a spec that would build nothing fails here too
    spec, checks = load_checked_spec(args.spec, start_check=not args.skip_start_check)
    check_k2c_model(spec)
    plan = plan_spec(spec, check_audio=args.check_audio, throughput=args.throughput)
    plan["start_check"] = {name: r.to_json() for name, r in checks.items()}
    if args.json:
        print(json.dumps(plan, indent=1, sort_keys=True))
    else:
        print(format_plan(plan) + (f"\n  {format_results(checks)}" if checks else ""))
    return 0


COMMANDS = (
    Command(
        "plan",
        help="what a spec will produce, from its metadata alone (no audio read)",
        description="Read a spec's manifests (not the audio) and print per source and split the clips, "
        "rejects, hours and shards the run would make, and an estimate of its cost in worker hours.",
        examples=[
            "clapcorpus plan --spec my_corpus.yaml",
            "clapcorpus plan --spec my_corpus.yaml --check-audio --json > plan.json",
        ],
        options=_options,
        run=_plan,
    ),
)
