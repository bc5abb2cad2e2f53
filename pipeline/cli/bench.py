"""`clapcorpus bench`: the throughput benchmark of bench/bench_pipeline.py.

The benchmark lives in the source checkout's ``bench/`` folder (it is not part of the installed
package, and needs ``pip install -e .[bench]``); this command runs it from there and hands it every
option (``clapcorpus bench --help``).
"""

from __future__ import annotations

import argparse
import os
import sys


def add_command(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser(
        "bench",
        help="benchmark the pipeline against LAION's way and a bare loop (source checkout; see --help)",
        # --help and every other option belong to bench/bench_pipeline.py, which describes itself
        add_help=False,
    )
    bench.set_defaults(func=_bench, beam_args=True)  # every option goes to bench/bench_pipeline.py


def _bench(args: argparse.Namespace, extra: list[str]) -> int:
    # realpath: under the editable install __file__ is a link in build/; bench/ is next to pipeline/
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
    if not os.path.exists(os.path.join(root, "bench", "bench_pipeline.py")):
        print("clapcorpus bench: needs a source checkout (no bench/bench_pipeline.py)", file=sys.stderr)
        return 2
    if root not in sys.path:
        sys.path.insert(0, root)
    from bench.bench_pipeline import main

    return main(extra)
