"""`clapcorpus bench`: the throughput benchmark of bench/bench_pipeline.py.

The benchmark lives in the source checkout's ``bench/`` folder (it is not part of the installed
package, and needs ``pip install -e .[bench]``); this command runs it from there and hands it every
option (``clapcorpus bench --help``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from clap_corpus.core.cli_help import Command


def _bench(args: argparse.Namespace, extra: list[str]) -> int:
    # realpath: under the editable install __file__ is a link in build/; bench/ is at the checkout's
    # root, some folders above the source file (found by looking, so a move of this module is no bug)
    root = next(
        (
            str(d)
            for d in Path(os.path.realpath(__file__)).parents
            if (d / "bench" / "bench_pipeline.py").exists()
        ),
        None,
    )
    if root is None:
        print("clapcorpus bench: needs a source checkout (no bench/bench_pipeline.py)", file=sys.stderr)
        return 2
    if root not in sys.path:
        sys.path.insert(0, root)
    from bench.bench_pipeline import main

    return main(extra)


COMMANDS = (
    Command(
        "bench",
        help="benchmark the pipeline against LAION's way and a bare loop (source checkout; see --help)",
        run=_bench,
        # --help and every other option belong to bench/bench_pipeline.py, which describes itself
        passthrough=True,
    ),
)
