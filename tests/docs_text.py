"""The documentation's text, for the tests that hold it to the code: README.md and the pages of the
documentation site (docs/, published through mkdocs.yml's nav)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def readme() -> str:
    return (ROOT / "README.md").read_text(encoding="utf-8")


def nav_pages() -> list[str]:
    """Every page mkdocs.yml's nav lists, in order (paths under docs/)."""

    def walk(entry: object) -> list[str]:
        if isinstance(entry, str):
            return [entry]
        if isinstance(entry, list):
            return [p for e in entry for p in walk(e)]
        if isinstance(entry, dict):
            return [p for v in entry.values() for p in walk(v)]
        return []

    return walk(yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))["nav"])


def docs_page(name: str) -> str:
    """The text of docs/<name>, a page the site publishes (a page left out of the nav is not read)."""
    assert name in nav_pages(), f"docs/{name} is not in mkdocs.yml's nav"
    return (ROOT / "docs" / name).read_text(encoding="utf-8")


def fenced_blocks(text: str, lang: str) -> list[str]:
    """The bodies of the ```<lang> blocks of a Markdown text, in order."""
    return re.findall(rf"```{re.escape(lang)}\n(.*?)```", text, flags=re.S)


def block_after(text: str, marker: str, lang: str) -> str:
    """The body of the first ```<lang> block after `marker`."""
    start = text.index(marker)
    m = re.compile(rf"```{re.escape(lang)}\n(.*?)```", re.S).search(text, start)
    assert m is not None, f"no ```{lang} block after {marker!r}"
    return m.group(1)
