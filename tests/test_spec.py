import re

import pytest
import yaml

from clap_corpus.pipeline.spec.corpus import SpecError, load_spec


def _write(tmp_path, doc) -> str:
    (tmp_path / "m.jsonl").write_text('{"audio": "a.wav"}\n')
    p = tmp_path / "spec.yaml"
    p.write_text(yaml.safe_dump(doc) if not isinstance(doc, str) else doc)
    return str(p)


def _doc(**over):
    doc = {
        "corpus": "c",
        "sources": [{"name": "s", "adapter": "generic", "manifest": "m.jsonl", "audio_root": "."}],
    }
    doc.update(over)
    return doc


def test_loads_and_resolves_paths_relative_to_the_spec(tmp_path):
    spec = load_spec(_write(tmp_path, _doc(options={"shard_size": 64, "store_mel": False})))
    src = spec.sources[0]
    assert src.manifest == str(tmp_path / "m.jsonl") and src.audio_root == str(tmp_path)
    assert spec.options.shard_size == 64 and spec.options.sample.store_mel is False
    assert spec.options.split_proportions[0] == ("train", 0.9)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (_doc(corpus=None), "missing required field 'corpus'"),
        (_doc(corpus="Bad Name"), "spec.corpus"),
        (
            _doc(sources=[{"name": "s", "adapter": "nope", "manifest": "m.jsonl", "audio_root": "."}]),
            "sources[0].adapter: unknown adapter 'nope'",
        ),
        (_doc(sources=[{"name": "s", "adapter": "generic", "audio_root": "."}]), "needs a 'manifest'"),
        (
            _doc(sources=[{"name": "s", "adapter": "generic", "manifest": "gone.csv", "audio_root": "."}]),
            "sources[0].manifest: file not found",
        ),
        (_doc(options={"shard_size": "big"}), "options.shard_size: expected an integer"),
        (_doc(options={"store_mel": 1}), "options.store_mel: expected true/false"),
        (_doc(options={"split_proportions": {"train": 0.5, "test": 0.2}}), "must sum to 1"),
        (
            _doc(options={"formats": ["tfrecord"]}),
            "options.formats[0]: must be one of webdataset, parquet, views, got 'tfrecord'",
        ),
        (_doc(options={"shard_sise": 3}), "options.shard_sise: unknown field (did you mean 'shard_size'?)"),
        (
            _doc(
                sources=[
                    {"name": "s", "adapter": "generic", "manifest": "m.jsonl", "audio_root": ".", "splt": "x"}
                ]
            ),
            "sources[0].splt: unknown field (did you mean 'split'?)",
        ),
        (
            _doc(sources=[{"name": "s", "adapter": "generic", "manifest": "m.jsonl", "audio_root": "."}] * 2),
            "duplicate source name",
        ),
        ("corpus: [unclosed", "not valid YAML"),
    ],
)
def test_wrong_spec_names_file_and_field(tmp_path, doc, message):
    path = _write(tmp_path, doc)
    with pytest.raises(SpecError) as e:
        load_spec(path)
    assert message in str(e.value) and str(path) in str(e.value)


def test_fingerprint_changes_with_options_not_with_reloading(tmp_path):
    a = load_spec(_write(tmp_path, _doc()))
    assert a.fingerprint() == load_spec(_write(tmp_path, _doc())).fingerprint()
    b = load_spec(_write(tmp_path, _doc(options={"max_duration_s": 30})))
    assert a.fingerprint() != b.fingerprint()


def test_every_missing_manifest_and_wrong_source_in_one_error(tmp_path):
    src = {"adapter": "generic", "audio_root": "."}
    doc = _doc(
        sources=[
            {"name": "a", "manifest": "gone_a.jsonl", **src},
            {"name": "b", "manifest": "m.jsonl", **src},
            {"name": "c", "manifest": "gone_c.jsonl", **src},
            {"name": "d", "manifest": "m.jsonl", "min_audio_found": 2, **src},
        ]
    )
    with pytest.raises(SpecError) as e:
        load_spec(_write(tmp_path, doc))
    lines = str(e.value).splitlines()
    assert [line.split(": ", 2)[1] for line in lines] == [
        "sources[0].manifest",
        "sources[2].manifest",
        "sources[3].min_audio_found",
    ]
    assert "gone_a.jsonl" in lines[0] and "gone_c.jsonl" in lines[1]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("allow_empty", "yes", "sources[0].allow_empty: expected true/false"),
        ("min_audio_found", -0.1, "sources[0].min_audio_found: must be a fraction between 0 and 1"),
    ],
)
def test_start_check_fields(tmp_path, field, value, message):
    src = {"name": "s", "adapter": "generic", "manifest": "m.jsonl", "audio_root": "."}
    with pytest.raises(SpecError, match=re.escape(message)):
        load_spec(_write(tmp_path, _doc(sources=[{**src, field: value}])))
    with pytest.raises(SpecError, match=re.escape("options.start_check_rows: must not be negative")):
        load_spec(_write(tmp_path, _doc(options={"start_check_rows": -1})))


def test_start_check_settings_do_not_change_the_fingerprint(tmp_path):
    src = {"name": "s", "adapter": "generic", "manifest": "m.jsonl", "audio_root": "."}
    a = load_spec(_write(tmp_path, _doc()))
    b = load_spec(
        _write(
            tmp_path,
            _doc(
                sources=[{**src, "allow_empty": True, "min_audio_found": 0.1}],
                options={"start_check_rows": 50, "min_audio_found": 0.9},
            ),
        )
    )
    assert b.check("s").allow_empty and b.check("s").min_audio_found == 0.1
    assert a.check("s").min_audio_found == 0.5 and b.options.start_check_rows == 50
    assert a.fingerprint() == b.fingerprint()
