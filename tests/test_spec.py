import pytest
import yaml

from pipeline.spec import SpecError, load_spec


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
        (_doc(options={"formats": ["tfrecord"]}), "unknown format"),
        (_doc(options={"shard_sise": 3}), "unknown field(s) shard_sise"),
        (
            _doc(
                sources=[
                    {"name": "s", "adapter": "generic", "manifest": "m.jsonl", "audio_root": ".", "splt": "x"}
                ]
            ),
            "sources[0]: unknown field(s) splt",
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
