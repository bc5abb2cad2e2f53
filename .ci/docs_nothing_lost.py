"""Nothing lost when the README's text moved into the documentation site (issue 27, item 8).

Every non-trivial line of the README at REV (a git revision) must be found in today's README.md +
docs/**/*.md, and every fenced block of it byte for byte. Both sides are normalised line by line
(whitespace collapsed, heading marks dropped, Markdown links reduced to their text) and the new side is
joined into one string, so a reflowed paragraph or a re-indented list still matches. Lines reworded on
purpose (a stale "see below" that now points to another page) are printed; the list is for a person to
read, not a test.

    python .ci/docs_nothing_lost.py 566ff74     # the last commit with the long README
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
FENCED = re.compile(r"^```[a-z]*\n.*?^```", re.S | re.M)


def norm(line: str) -> str:
    line = LINK.sub(r"\1", line)
    line = re.sub(r"^\s*#+\s+", "", line)
    return " ".join(line.split())


def trivial(line: str) -> bool:
    return len(re.sub(r"[\W_]", "", line)) < 3  # fences, table rules, blank lines


def main(rev: str) -> int:
    old = subprocess.run(
        ["git", "show", f"{rev}:README.md"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    files = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    texts = [f.read_text(encoding="utf-8") for f in files]
    new = " ".join(norm(line) for t in texts for line in t.splitlines())
    lines = [(n, line) for n, line in enumerate(old.splitlines(), 1) if not trivial(norm(line))]
    lost = [(n, line) for n, line in lines if norm(line) not in new]
    blocks = FENCED.findall(old)
    changed = [b for b in blocks if not any(b in t for t in texts)]
    print(f"{len(lines)} non-trivial lines of README.md at {rev}: {len(lost)} not found as they were")
    for n, line in lost:
        print(f"{n:5}: {line}")
    print(f"{len(blocks)} fenced blocks: {len(changed)} not found byte for byte")
    for b in changed:
        print("  " + b.splitlines()[1][:100])
    return 1 if lost or changed else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1]))
