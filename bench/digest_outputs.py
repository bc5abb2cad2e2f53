"""Digest every output file of a run, to show that a change left the bytes alone.

    python bench/digest_outputs.py OUTPUT_DIR > before.txt   # ... change the code, rebuild ...
    python bench/digest_outputs.py OUTPUT_DIR > after.txt && diff before.txt after.txt

Lists ``sha256  size  path`` for every file under OUTPUT_DIR, except the ones that record when and
how fast a run went (stats and summary files carry wall times; the run report and card carry dates):
what is left is what a corpus consumer reads. The stored bytes do not depend on the CPU's vector units
(transforms/views.py, transforms/ffmpeg_cpu.py), but reject files name the source files they read:
build both runs from sources at the same paths.
"""

from __future__ import annotations

import hashlib
import os
import sys

# Files and folders whose bytes carry wall-clock times, dates or the spec fingerprint, not corpus content.
VOLATILE_FILES = ("summary.json", "README.md", "plan.json", "progress.json")
VOLATILE_DIRS = ("stats", "report")


def digests(root: str) -> list[tuple[str, int, str]]:
    out = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in VOLATILE_DIRS)
        for name in sorted(files):
            if name in VOLATILE_FILES:
                continue
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
            out.append((digest, os.path.getsize(path), os.path.relpath(path, root)))
    return out


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    for digest, size, rel in digests(sys.argv[1]):
        print(f"{digest}  {size:>10}  {rel}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
