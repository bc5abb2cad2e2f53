"""The adapter contract: a new adapter only reads its native format; the base applies the rules.

The adapter here is written the way a new one would be: it knows a made-up line format and nothing
about keys, split names, audio roots or licenses. Real files, a real spec, the real registry.
"""

from collections.abc import Iterator

import pytest

from clap_corpus.core.audio_ref import LocalFile
from clap_corpus.core.records import Record, Reject, make_key
from clap_corpus.manifests.base import Adapter, Lookup, NativeRow
from clap_corpus.manifests.options import AdapterOptions, OptionError, SpecPath, file_pattern
from clap_corpus.manifests.registry import ADAPTERS, AdapterInfo, needs_manifest, parse_options, read_source
from clap_corpus.manifests.source import SourceSpec
from clap_corpus.manifests.tables import RowError

IdPattern = file_pattern("id")
DEV_IS_TRAIN = {"dev": "train"}


class LinesOptions(AdapterOptions):
    notes: SpecPath | None = None
    file_pattern: IdPattern | None = None


class LinesAdapter(Adapter):
    """``id|audio name or -|native split|caption|license`` per line."""

    Options = LinesOptions
    split_defaults = DEV_IS_TRAIN

    def rows(self) -> Iterator[NativeRow | RowError | Reject]:
        assert self.source.manifest is not None
        with open(self.source.manifest) as f:
            for n, line in enumerate(f, start=1):
                parts = line.rstrip("\n").split("|")
                if len(parts) != 5:
                    yield RowError(n, f"{len(parts)} fields, expected 5")
                    continue
                sid, audio, split, caption, license_ = parts
                if not caption:
                    yield self.reject(n, "empty_caption", "no caption", source_id=sid)
                    continue
                yield NativeRow(
                    row=n,
                    id=sid,
                    audio=Lookup(sid, {"id": sid}) if audio == "-" else audio,
                    split=split or None,
                    captions=(caption,),
                    license=license_ or None,
                    problem=("caption_not_text", "a number") if caption.isdigit() else None,
                )


@pytest.fixture
def lines(tmp_path, monkeypatch):
    (tmp_path / "audio").mkdir()
    for name in ("a.wav", "b.wav", "d.wav", "9.wav"):
        (tmp_path / "audio" / name).write_bytes(b"RIFF")
    (tmp_path / "m.txt").write_text(
        "\n".join(
            [
                "a|a.wav|dev|a dog barks|CC0",  # 1: placed; dev -> train by the adapter's default
                "b|b.wav|valid|rain|",  # 2: the source's license
                "c|../../etc/passwd|dev|x|",  # 3: outside the root
                "d|d.wav|Bad/Split|x|",  # 4: not a split folder
                "broken line",  # 5: malformed
                "e|e.wav||x|",  # 6: no such file is fine here: existence is checked when read
                "f|f.wav|dev||",  # 7: the adapter's own reject
                "9|-|dev|9|",  # 8: found by listing, then the content problem
                "g|-|dev|x|",  # 9: not found by listing
            ]
        )
        + "\n"
    )
    info = AdapterInfo("lines", LinesAdapter.read, LinesOptions, 5.0, "a test format")
    monkeypatch.setitem(ADAPTERS, "lines", info)
    return SourceSpec(
        name="toy",
        adapter="lines",
        audio_root=str(tmp_path / "audio"),
        manifest=str(tmp_path / "m.txt"),
        license="CC-BY-4.0",
    )


def test_the_base_applies_key_split_path_license_and_reject_rules(lines, tmp_path):
    out = list(read_source(lines))
    records = {r.row: r for r in out if isinstance(r, Record)}
    rejects = {r.row: r for r in out if isinstance(r, Reject)}
    assert sorted(records) == [1, 2, 6] and sorted(rejects) == [3, 4, 5, 7, 8, 9]
    a = records[1]
    assert a.key == make_key("toy", "a") and a.source == "toy" and a.source_id == "a"
    assert a.audio == LocalFile(str(tmp_path / "audio" / "a.wav"))
    assert (a.split, a.license) == ("train", "CC0")
    assert (records[2].split, records[2].license) == ("valid", "CC-BY-4.0")
    assert records[6].split is None  # placed by hash later
    assert {n: r.code for n, r in rejects.items()} == {
        3: "outside_root",
        4: "bad_split",
        5: "malformed_row",
        7: "empty_caption",
        8: "caption_not_text",
        9: "missing_audio",
    }
    assert all(r.stage == "manifest" and r.path == lines.manifest for r in rejects.values())
    assert rejects[3].source_id == "c" and rejects[5].source_id is None


def test_a_spec_level_split_wins_and_plan_mode_lists_nothing(lines):
    from dataclasses import replace

    out = list(read_source(replace(lines, split="test")))
    assert {r.split for r in out if isinstance(r, Record)} == {"test"}
    planned = list(read_source(lines, scan_audio=False))
    # without listing the root, an id lookup is a placeholder path, not a missing file
    assert [r.code for r in planned if isinstance(r, Reject)] == [
        "outside_root",
        "bad_split",
        "malformed_row",
        "empty_caption",
        "caption_not_text",
    ]


def test_options_are_checked_resolved_and_read_back_typed(lines, tmp_path):
    (tmp_path / "notes.txt").write_text("n")
    resolve = lambda p: str(tmp_path / p)  # noqa: E731
    checked = parse_options("lines", {"notes": "notes.txt", "mean_duration_s": 3}, resolve)
    assert checked == {"notes": str(tmp_path / "notes.txt"), "mean_duration_s": 3.0}
    adapter = LinesAdapter(SourceSpec(name="toy", adapter="lines", audio_root="/r", options=checked))
    assert isinstance(adapter.options, LinesOptions) and adapter.options.notes == str(tmp_path / "notes.txt")
    assert adapter.options.file_pattern is None
    for bad, message in [
        (
            {"note": "x"},
            "note: unknown option (known: exclude, file_pattern, join, mean_duration_s, notes, wanted)",
        ),
        ({"notes": "gone.txt"}, "notes: file not found: "),
        ({"notes": 3}, "notes: expected a path, got int"),
        ({"mean_duration_s": True}, "mean_duration_s: expected float, got a boolean"),
        ({"mean_duration_s": "10"}, "mean_duration_s: expected float, got str ('10')"),
        ({"file_pattern": "{name}.wav"}, "file_pattern: unknown field {name} (fields: {id})"),
    ]:
        with pytest.raises(OptionError) as e:
            parse_options("lines", bad, resolve)
        assert str(e.value).startswith(message), str(e.value)
    assert not needs_manifest("filenames") and needs_manifest("generic")


def test_every_registered_adapter_has_an_options_model_and_a_doc():
    for name, info in ADAPTERS.items():
        assert info.name == name and info.doc and info.default_duration_s > 0
        assert issubclass(info.options, AdapterOptions)
        with pytest.raises(OptionError, match="unknown option"):
            info.options.check({"no_such_option": 1}, str)
