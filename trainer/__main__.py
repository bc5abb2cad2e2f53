"""``python -m trainer train|eval ...``: the trainer's commands on their own, for machines that train
without Apache Beam installed (``clapcorpus`` loads the pipeline's commands, and Beam with them).
``torchrun --nproc_per_node=N -m trainer train ...`` runs DDP the same way."""

from __future__ import annotations

import argparse
import logging
import sys

from clap_corpus.core.cli_help import add_commands, log_level
from clap_corpus.trainer.cli import COMMANDS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m clap_corpus.trainer", description="Train and evaluate CLAP."
    )
    add_commands(parser.add_subparsers(dest="command", required=True), COMMANDS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=log_level(args), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return int(args.func(args, []))


if __name__ == "__main__":
    sys.exit(main())
