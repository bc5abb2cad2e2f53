"""The documentation site (mkdocs.yml, docs/) builds with warnings as errors: a broken link or anchor, or
a page left out of the nav, fails CI like any other test; the README's links into it resolve."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import markdown
from docs_text import ROOT, nav_pages, readme


def _mkdocs() -> str:
    found = shutil.which("mkdocs", path=str(Path(sys.executable).parent)) or shutil.which("mkdocs")
    assert found, "mkdocs is not installed (the test extra has it)"
    return found


def test_the_site_builds_strict(tmp_path):
    site = tmp_path / "site"
    proc = subprocess.run(
        [_mkdocs(), "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"), "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,  # a few seconds; a hang, not a speed limit
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "WARNING" not in proc.stderr, proc.stderr[-4000:]
    for page in nav_pages():
        built = "index.html" if page == "index.md" else f"{page.removesuffix('.md')}/index.html"
        assert (site / built).is_file(), built


def test_every_page_is_in_the_nav_once():
    pages = nav_pages()
    assert len(pages) == len(set(pages))
    on_disk = sorted(p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md"))
    assert sorted(pages) == on_disk


def _anchors(page: Path) -> set[str]:
    md = markdown.Markdown(extensions=["toc", "tables", "fenced_code"])
    md.convert(page.read_text(encoding="utf-8"))

    def walk(tokens: list[dict]) -> set[str]:
        return {t["id"] for t in tokens} | {a for t in tokens for a in walk(t["children"])}

    return walk(md.toc_tokens)  # pyright: ignore[reportAttributeAccessIssue]  (set by the toc extension)


def test_the_readme_links_resolve():
    """mkdocs checks the site's own links; the README is outside it, so its links are checked here."""
    links = re.findall(r"\]\(([^)\s]+)\)", readme())
    local = [link for link in links if not re.match(r"[a-z]+://", link)]
    assert any(link.startswith("docs/") for link in local)
    for link in local:
        path, _, anchor = link.partition("#")
        target = ROOT / path
        assert target.exists(), link
        if path.startswith("docs/"):
            assert target.relative_to(ROOT / "docs").as_posix() in nav_pages(), link
        if anchor:
            assert anchor in _anchors(target), link
