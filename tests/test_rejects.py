"""The reject contract (core/rejects.py): every code declared once, docs/reject-codes.md showing the same
tables, the shipped code using declared codes only, and Reject's JSON unchanged by the enums."""

from __future__ import annotations

import ast
import json
import pickle
import re
from pathlib import Path

import pytest
from docs_text import docs_page
from source_tree import FOLDERS

from clap_corpus.core.audio_ref import LocalFile
from clap_corpus.core.encoding import dumps_json
from clap_corpus.core.records import Record, Reject
from clap_corpus.core.rejects import PATH_CODES, Code, RejectError, Stage, codes_table, stages_table
from clap_corpus.manifests.source import PathRejected
from clap_corpus.transforms.decode import DecodeError

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = FOLDERS
# The calls that build a reject or raise a per-input failure, by the name they are called with.
REJECT_CALLS = re.compile(r"(?i).*reject.*|refuse|for_record|DecodeError")
NAME = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*")


def _markdown_table(text: str, header: str) -> str:
    lines = text.splitlines()
    start = lines.index(header)
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    return "\n".join(lines[start:end]) + "\n"


def test_readme_shows_the_tables_the_enum_renders():
    page = docs_page("reject-codes.md")
    assert page.startswith("# Reject codes\n")
    assert _markdown_table(page, stages_table().splitlines()[0]) == stages_table()
    assert _markdown_table(page, codes_table().splitlines()[0]) == codes_table()


def test_every_code_has_a_meaning_and_known_stages():
    assert len(Code) >= 37 and len({c.value for c in Code}) == len(Code)
    for code in Code:
        assert NAME.fullmatch(code) and code.meaning and "|" not in code.meaning, code
        assert code.stages and all(isinstance(s, Stage) for s in code.stages), code
    assert all(s.meaning and "|" not in s.meaning for s in Stage)
    assert all(Stage.MANIFEST in c.stages for c in PATH_CODES)


def _shipped_files() -> list[Path]:
    return [p for d in SHIPPED for p in sorted((ROOT / d).rglob("*.py"))]


def _literal_codes(tree: ast.AST) -> list[tuple[int, str]]:
    """Snake_case string literals passed straight to a reject-building call."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if not REJECT_CALLS.fullmatch(name):
            continue
        args = [*node.args, *(k.value for k in node.keywords if k.arg in ("stage", "code"))]
        found += [
            (a.lineno, a.value)
            for a in args
            if isinstance(a, ast.Constant) and isinstance(a.value, str) and NAME.fullmatch(a.value)
        ]
    return found


def test_shipped_code_uses_declared_stages_and_codes_only():
    declared = {c.value for c in Code} | {s.value for s in Stage}
    seen = []
    for path in _shipped_files():
        for line, value in _literal_codes(ast.parse(path.read_text(), str(path))):
            seen.append(value)
            assert value in declared, f"{path.relative_to(ROOT)}:{line}: '{value}' is not in core/rejects.py"
    # the scan sees a literal where an adapter would write one (the shipped code uses Code members)
    probe = ast.parse(
        'self.reject(row, "missing_id", "column is empty")\nReject.for_record(r, "decode", "x", "a reason")'
    )
    assert [v for _, v in _literal_codes(probe)] == ["missing_id", "decode", "x"]


def test_every_declared_code_is_used_somewhere():
    source = "\n".join(p.read_text() for p in _shipped_files() if p.name != "rejects.py")
    unused = [c.value for c in Code if f'"{c.value}"' not in source and f"Code.{c.name}" not in source]
    assert not unused, f"declared but never raised: {unused}"


def test_an_unknown_code_or_stage_fails_loudly():
    with pytest.raises(ValueError, match="no_such_code"):
        Reject("s", "manifest", "no_such_code", "why")
    with pytest.raises(ValueError, match="parse"):
        Reject("s", "parse", "missing_id", "why")
    with pytest.raises(ValueError):
        RejectError(Stage.DECODE, "corupt", "a typo")
    with pytest.raises(ValueError):
        DecodeError("corupt", "a typo")


def test_reject_json_is_plain_and_round_trips():
    record = Record(key="s_a_1", source="s", source_id="a", audio=LocalFile("/r/a.wav"), row=4)
    rej = Reject.for_record(record, "decode", "corrupt", "3 of 9 audio packets failed to decode")
    assert rej.stage is Stage.DECODE and rej.code is Code.CORRUPT
    doc = rej.to_json()
    assert type(doc["stage"]) is str and type(doc["code"]) is str
    assert dumps_json(doc) == (
        b'{"code":"corrupt","key":"s_a_1","path":"/r/a.wav","reason":"3 of 9 audio packets failed to decode",'
        b'"row":4,"source":"s","source_id":"a","stage":"decode"}'
    )
    back = Reject.from_json(json.loads(dumps_json(doc)))
    assert back == rej and back.code is Code.CORRUPT


def test_errors_keep_their_type_stage_and_code_through_pickling():
    for error in (
        RejectError("level", "silent", "the clip is digital silence"),
        DecodeError("too_short", "0 samples decoded"),
        PathRejected("outside_root", "path '../x' is outside the audio root"),
    ):
        back = pickle.loads(pickle.dumps(error))
        assert type(back) is type(error)
        assert (back.stage, back.code, back.reason) == (error.stage, error.code, error.reason)
    assert isinstance(PathRejected("bad_path", "NUL"), ValueError)  # adapters catch it with split errors
    assert PathRejected("bad_path", "NUL").stage is Stage.MANIFEST
