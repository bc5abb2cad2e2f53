"""`clapcorpus plan`: per-source rows, hours, shards and a worker-hour estimate, from metadata only."""

from __future__ import annotations

import argparse
import json

from manifests.plan import THROUGHPUT_X_REALTIME, format_plan, plan_spec
from pipeline.spec import load_spec


def add_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plan", help="what a spec will produce, from its metadata alone (no audio read)")
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
        help=f"processing speed in x realtime per worker core (default {THROUGHPUT_X_REALTIME:g})",
    )
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.add_argument("--log-level", default="WARNING")
    p.set_defaults(func=_plan)


def _plan(args: argparse.Namespace, _extra: list[str]) -> int:
    if args.throughput <= 0:
        raise SystemExit("clapcorpus plan: --throughput must be positive")
    plan = plan_spec(load_spec(args.spec), check_audio=args.check_audio, throughput=args.throughput)
    print(json.dumps(plan, indent=1, sort_keys=True) if args.json else format_plan(plan))
    return 0
