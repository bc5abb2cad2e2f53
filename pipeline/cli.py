"""`clapcorpus` command line: run a spec, or build and run the embedded demo corpus.

Any option the command does not know is handed to Beam, so every runner option passes straight
through (``--runner=DataflowRunner --project=... --region=...``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from pipeline.spec import SpecError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="clapcorpus", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="build a corpus from a spec (unknown options go to Beam)")
    run.add_argument("--spec", required=True, help="corpus spec (YAML)")
    run.add_argument("--output", required=True, help="output folder or URL (gs://...)")

    demo = sub.add_parser("demo", help="generate the embedded demo corpus and build it")
    demo.add_argument("--output", default="demo-out", help="output folder (default: demo-out)")
    demo.add_argument("--clips", type=int, default=24, help="number of good clips to generate")
    demo.add_argument("--seed", type=int, default=0)

    for sp in (run, demo):
        sp.add_argument("--log-level", default="INFO")
    return p


def main(argv: list[str] | None = None) -> int:
    args, beam_args = _parser().parse_known_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.log_level.upper() != "DEBUG":
        # Beam's local runner forwards every worker's INFO chatter; keep the terminal readable.
        logging.getLogger("apache_beam").setLevel(logging.WARNING)
        logging.getLogger("apache_beam.runners.portability.local_job_service").setLevel(logging.ERROR)
    from pipeline.run import format_report, run_corpus

    try:
        if args.command == "run":
            summary = run_corpus(args.spec, args.output, beam_args)
        elif args.command == "demo":
            from pipeline.demo import write_demo_corpus

            spec_path = write_demo_corpus(
                os.path.join(args.output, "source"), n_clips=args.clips, seed=args.seed
            )
            print(f"demo source written: {spec_path}")
            summary = run_corpus(spec_path, os.path.join(args.output, "corpus"), beam_args)
        else:  # pragma: no cover - argparse rejects unknown commands
            raise AssertionError(args.command)
    except SpecError as e:
        print(f"clapcorpus: spec error: {e}", file=sys.stderr)
        return 2
    print(format_report(summary))
    return 0 if summary["accounting_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
