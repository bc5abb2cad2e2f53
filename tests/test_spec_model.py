"""The spec's model (pipeline/spec/corpus.py and the parts it is built from): one problem per line, closest
names, values that pickle and compare by value, and docs/spec.md's spec block held to the defaults."""

from __future__ import annotations

import dataclasses
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from apache_beam.internal import pickler
from docs_text import block_after, docs_page
from pydantic import ValidationError

from clap_corpus.k2c.config import K2CConfig
from clap_corpus.manifests.source import SourceSpec
from clap_corpus.pipeline.spec.corpus import (
    CorpusOptions,
    CorpusSpec,
    SourceCheck,
    SpecError,
    _document_fields,
    parse_spec,
)
from clap_corpus.transforms.sample import SampleOptions

ROOT = Path(__file__).resolve().parents[1]


def _source(**over) -> dict:
    return {"name": "s", "adapter": "generic", "manifest": __file__, "audio_root": ".", **over}


def _spec(tmp_path, **over) -> dict:
    return {"corpus": "c", "sources": [_source()], **over}


def _problems(doc, file) -> list[str]:
    with pytest.raises(SpecError) as e:
        parse_spec(doc, file)
    return str(e.value).splitlines()


def test_every_problem_of_every_part_on_its_own_line_in_document_order(tmp_path):
    file = str(tmp_path / "spec.yaml")
    doc = {
        "corpus": "c",
        "options": {"shard_size": 0, "store_mel": "yes", "k2c": {"model": "tiny", "mode": "swap"}},
        "sources": [
            _source(name="a", adapter="nope"),
            _source(name="b"),
            _source(name="c", split_map={"val": "../up"}, allow_empty="no", expected_count="10"),
            "not a mapping",
        ],
    }
    lines = _problems(doc, file)
    assert lines == [
        f"{file}: options.shard_size: must be at least 1, got 0",
        f"{file}: options.store_mel: expected true/false, got str ('yes')",
        f"{file}: options.k2c.mode: must be one of replace, join, off, got 'swap'",
        f"{file}: sources[0].adapter: unknown adapter 'nope' (known: {lines[3].split('(known: ')[1]}",
        f"{file}: sources[2].split_map.val: split name '../up' must be " + lines[4].split("must be ", 1)[1],
        f"{file}: sources[2].expected_count: expected an integer, got str ('10')",
        f"{file}: sources[2].allow_empty: expected true/false, got str ('no')",
        f"{file}: sources[3]: expected a mapping, got str ('not a mapping')",
    ]
    assert "generic" in lines[3] and "letters" in lines[4]


@pytest.mark.parametrize(
    ("where", "doc", "line"),
    [
        ("top", {"corpsu": "c"}, "spec.corpsu: unknown field (did you mean 'corpus'?)"),
        ("options", {"options": {"max_duraton_s": 3}}, "options.max_duraton_s: unknown field (did you mean"),
        ("options", {"options": {"cross_split": "report"}}, "(did you mean 'cross_split_duplicates'?)"),
        (
            "source",
            {"sources": [_source(licence="CC0")]},
            "sources[0].licence: unknown field (did you mean 'license'?)",
        ),
        ("source check", {"sources": [_source(allow_empt=True)]}, "(did you mean 'allow_empty'?)"),
        (
            "k2c",
            {"options": {"k2c": {"model": "tiny", "dedupe": True}}},
            "options.k2c.dedupe: unknown field (did you mean 'dedup'?)",
        ),
        (
            "generation",
            {"options": {"k2c": {"model": "tiny", "generation": {"num_beam": 2}}}},
            "options.k2c.generation.num_beam: unknown field (did you mean 'num_beams'?)",
        ),
        ("nothing close", {"options": {"zzz": 1}}, "options.zzz: unknown field"),
        # set by the loader, never written: unknown, not silently taken
        ("derived", {"path": "/elsewhere"}, "spec.path: unknown field"),
        ("derived", {"options": {"sample": {}}}, "options.sample: unknown field"),
        (
            "derived",
            {"options": {"k2c": {"model": "tiny", "is_local": True}}},
            "options.k2c.is_local: unknown field",
        ),
    ],
)
def test_unknown_fields_name_the_closest_known_one(tmp_path, where, doc, line):
    file = str(tmp_path / "spec.yaml")
    lines = _problems({**_spec(tmp_path), **doc}, file)
    assert len(lines) == 1 and lines[0].startswith(f"{file}: ") and line in lines[0], where
    if "did you mean" not in line:
        assert "did you mean" not in lines[0]


def test_an_empty_field_means_its_default(tmp_path):
    spec = parse_spec(
        {**_spec(tmp_path), "options": {"shard_size": None, "k2c": {"model": "tiny", "dedup": None}}},
        str(tmp_path / "spec.yaml"),
    )
    assert spec.options.shard_size == 512 and spec.options.k2c.dedup is True


def _loaded(tmp_path) -> CorpusSpec:
    return parse_spec(
        {
            "corpus": "c",
            "options": {
                "store_mel": False,
                "split_proportions": {"train": 0.5, "test": 0.5},
                "k2c": {"model": "tiny"},
            },
            "sources": [
                _source(split_map={"val": "valid"}, allow_empty=True, options={"list_separator": "|"})
            ],
        },
        str(tmp_path / "spec.yaml"),
    )


def test_loaded_values_pickle_and_compare_by_value(tmp_path):
    spec = _loaded(tmp_path)
    assert spec == _loaded(tmp_path)
    for dumps, loads in ((pickle.dumps, pickle.loads), (pickler.dumps, pickler.loads)):  # Beam ships these
        for value in (spec, spec.options, spec.options.sample, spec.options.k2c, spec.sources[0]):
            copy = loads(dumps(value))
            assert copy == value and type(copy) is type(value)
        assert loads(dumps(spec)).fingerprint() == spec.fingerprint()
    assert spec.check("s") == SourceCheck(min_audio_found=0.5, allow_empty=True)
    assert spec.options.split_proportions == (("train", 0.5), ("test", 0.5))


def test_the_fingerprint_is_the_same_in_another_process(tmp_path):
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(_spec(tmp_path)))
    code = (
        "import sys; from clap_corpus.pipeline.spec.corpus import load_spec; "
        "print(load_spec(sys.argv[1]).fingerprint())"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": "123"}
    other = subprocess.run(
        [sys.executable, "-c", code, str(spec_file)], env=env, capture_output=True, text=True
    )
    from clap_corpus.pipeline.spec.corpus import load_spec

    assert other.stdout.strip() == load_spec(str(spec_file)).fingerprint()


def test_objects_built_in_code_get_types_checked_and_replace_revalidates():
    with pytest.raises(ValidationError):
        SampleOptions(max_duration_s="long")
    with pytest.raises(ValidationError):
        SampleOptions(on_incomplete="drop")
    with pytest.raises(ValidationError):
        SampleOptions(store_mel=True, stor_mel=False)
    with pytest.raises(ValidationError):
        dataclasses.replace(SampleOptions(), min_peak_dbfs=3.0)
    assert SampleOptions(max_duration_s=5).max_duration_s == 5.0
    # A spec's name rules are the spec's: code may build a source an adapter must still refuse
    # (tests do, to show the adapter's own check), and a toy adapter the registry does not know.
    src = SourceSpec(name="s", adapter="toy", audio_root="a", split_map={"x": "../up"})
    assert dataclasses.replace(src, options={"k": 1}).option("k") == 1
    cfg = K2CConfig(model="tiny", model_path="/m", is_local=True, preset="k2t")
    assert dataclasses.replace(cfg, dedup=False).model_path == "/m"


def test_corpus_options_defaults_are_written_once():
    # The corpus's default for the sources' min_audio_found fills a source that sets none.
    assert SourceCheck().min_audio_found is None
    assert CorpusOptions().min_audio_found == 0.5 and CorpusOptions().formats == ("webdataset", "parquet")
    opts = CorpusOptions(min_audio_found=0.2, source_checks=(("a", SourceCheck()), ("b", SourceCheck(0.7))))
    assert dict(opts.source_checks) == {"a": SourceCheck(0.2), "b": SourceCheck(0.7)}
    assert CorpusOptions(formats=("parquet", "webdataset")).formats == ("webdataset", "parquet")


def _readme_spec() -> dict:
    return yaml.safe_load(block_after(docs_page("spec.md"), "# The corpus spec", "yaml"))


def test_readme_spec_block_loads_and_states_the_model_defaults(tmp_path):
    doc = _readme_spec()
    written = set(doc["options"])
    # every option but k2c, fetch and clap (each has its own docs page) is shown, and nothing the
    # model does not have
    assert written == set(_document_fields(CorpusOptions)) - {"k2c", "fetch", "clap"}
    assert set(doc["sources"][0]) <= set(_document_fields(SourceSpec))
    missing: list[tuple[str, str]] = []  # the example's files do not exist: only the start check minds
    spec = parse_spec(doc, str(tmp_path / "spec.yaml"), missing=missing)
    defaults = parse_spec({**doc, "options": {}}, str(tmp_path / "spec.yaml"), missing=[])
    assert spec.options == defaults.options, "docs/spec.md's options block must state the defaults"
    assert [name for name, _ in missing] == ["mysounds"]
