"""Hub dataset repositories as `hf download --repo-type dataset` leaves them, built here in each layout."""

import json
from pathlib import Path

import pytest
import webdataset as wds
import yaml
from datasets import Audio, Dataset, Features, Value
from helpers.audio import tone_bytes

from clap_corpus.core.audio_ref import ArchiveMember, EmbeddedCell, LocalFile
from clap_corpus.core.records import Record, Reject
from clap_corpus.manifests.hf_datasets import read_hf_dataset
from clap_corpus.manifests.source import SourceSpec
from clap_corpus.pipeline.launch.run import run_corpus
from clap_corpus.pipeline.spec.corpus import SpecError, load_spec


def _split(items):
    items = list(items)
    return [i for i in items if isinstance(i, Record)], [i for i in items if isinstance(i, Reject)]


def _readme(root: Path, configs: list[dict]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    front = yaml.safe_dump({"license": "cc-by-4.0", "configs": configs}, sort_keys=False)
    (root / "README.md").write_text(f"---\n{front}---\n\n# A dataset card\n\nText the adapter ignores.\n")


def _parquet(path: Path, rows: list[tuple[str, float, str]]) -> None:
    feats = Features(
        {
            "video_id": Value("string"),
            "audio": {"bytes": Value("binary"), "path": Value("string")},
            "caption": Value("string"),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    Dataset.from_dict(
        {
            "video_id": [r[0] for r in rows],
            "audio": [{"bytes": tone_bytes(r[1]), "path": f"{r[0]}.flac"} for r in rows],
            "caption": [r[2] for r in rows],
        },
        features=feats,
    ).cast_column("audio", Audio(decode=False)).to_parquet(str(path))


@pytest.fixture
def parquet_snapshot(tmp_path) -> Path:
    """agkphysics/AudioSet-like: configs `balanced` and `unbalanced`, each with train and test."""
    root = tmp_path / "AudioSet"
    _readme(
        root,
        [
            {
                "config_name": "balanced",
                "data_files": [
                    {"split": "train", "path": "data/bal_train/*.parquet"},
                    {"split": "test", "path": "data/eval/*.parquet"},
                ],
            },
            {
                "config_name": "unbalanced",
                "data_files": [{"split": "train", "path": "data/unbal_train/*.parquet"}],
            },
        ],
    )
    _parquet(
        root / "data" / "bal_train" / "00.parquet",
        [("aaaaaaaaaaa", 330.0, "Bal one"), ("bbbbbbbbbbb", 440.0, "Bal two")],
    )
    _parquet(root / "data" / "eval" / "00.parquet", [("ccccccccccc", 550.0, "Eval one")])
    _parquet(root / "data" / "unbal_train" / "00.parquet", [("ddddddddddd", 660.0, "Unbal one")])
    return root


def test_parquet_snapshot_config_and_split_by_name(parquet_snapshot):
    def read(**options):
        spec = SourceSpec(name="as", adapter="hf_datasets", audio_root=str(parquet_snapshot), options=options)
        return _split(read_hf_dataset(spec))

    records, rejects = read(config="balanced", id_column="video_id", origin="youtube")
    assert not rejects
    assert [(r.source_id, r.split, r.captions, r.origin_ids) for r in records] == [
        ("aaaaaaaaaaa", "train", ("Bal one",), ("youtube:aaaaaaaaaaa",)),
        ("bbbbbbbbbbb", "train", ("Bal two",), ("youtube:bbbbbbbbbbb",)),
        ("ccccccccccc", "test", ("Eval one",), ("youtube:ccccccccccc",)),
    ]
    assert isinstance(records[0].audio, EmbeddedCell)
    records, _ = read(config="unbalanced", id_column="video_id")
    assert [r.source_id for r in records] == ["ddddddddddd"]
    records, _ = read(config="balanced", splits=["test"], id_column="video_id")
    assert [r.source_id for r in records] == ["ccccccccccc"]


def test_no_matching_config_is_a_clear_error_at_start(parquet_snapshot, tmp_path):
    def spec_with(options: dict) -> Path:
        doc = {
            "corpus": "c",
            "sources": [
                {
                    "name": "as",
                    "adapter": "hf_datasets",
                    "audio_root": str(parquet_snapshot),
                    "options": options,
                }
            ],
        }
        path = tmp_path / "spec.yaml"
        path.write_text(yaml.safe_dump(doc))
        return path

    with pytest.raises(
        SpecError, match=r"no config 'full' in the snapshot's README.md \(configs: balanced, unbalanced\)"
    ):
        load_spec(str(spec_with({"config": "full"})))
    with pytest.raises(
        SpecError, match=r"several configs \(balanced, unbalanced\): choose one with options.config"
    ):
        load_spec(str(spec_with({})))
    with pytest.raises(SpecError, match=r"config 'unbalanced' has no split 'test' \(splits: train\)"):
        load_spec(str(spec_with({"config": "unbalanced", "splits": ["test"]})))
    assert load_spec(str(spec_with({"config": "balanced"}))).sources[0].options["config"] == "balanced"


def _tar_snapshot(root: Path) -> None:
    """Meranti/CLAP_freesound-like: WebDataset tars per split, named by the README's config."""
    _readme(
        root,
        [
            {
                "config_name": "default",
                "data_files": [
                    {"split": "train", "path": "freesound/train/*.tar"},
                    {"split": "test", "path": "freesound/test/*.tar"},
                ],
            }
        ],
    )
    for split, freqs in (("train", [330.0, 440.0]), ("test", [550.0])):
        (root / "freesound" / split).mkdir(parents=True)
        with wds.TarWriter(str(root / "freesound" / split / "0.tar")) as w:
            for i, f in enumerate(freqs):
                doc = {"text": [f"{split} tone {i}"], "tag": ["tone"], "original_data": {"id": 10 + i}}
                w.write({"__key__": str(i), "flac": tone_bytes(f), "json": json.dumps(doc).encode()})


def test_audiofolder_snapshot(tmp_path):
    """audio files + metadata.csv (datasets' AudioFolder), the config's pattern matching both."""
    root = tmp_path / "clotho"
    _readme(
        root, [{"config_name": "default", "data_files": [{"split": "validation", "path": "validation/**"}]}]
    )
    (root / "validation" / "audio").mkdir(parents=True)
    (root / "validation" / "audio" / "Rain.flac").write_bytes(tone_bytes(330.0))
    (root / "validation" / "audio" / "Wind.flac").write_bytes(tone_bytes(440.0))
    (root / "validation" / "metadata.csv").write_text(
        "file_name,caption\n"
        "audio/Rain.flac,Rain falls on a roof.\n"
        'audio/Wind.flac,"Wind, then silence."\n'
        ",No file.\n"
    )
    records, rejects = _split(
        read_hf_dataset(SourceSpec(name="cl", adapter="hf_datasets", audio_root=str(root)))
    )
    assert [(r.source_id, r.split, r.captions) for r in records] == [
        ("validation/audio/Rain.flac", "validation", ("Rain falls on a roof.",)),
        ("validation/audio/Wind.flac", "validation", ("Wind, then silence.",)),
    ]
    assert records[0].audio == LocalFile(str(root / "validation" / "audio" / "Rain.flac"))
    assert [(r.code, r.row) for r in rejects] == [("missing_path", 3)]


def test_webdataset_snapshot_end_to_end(tmp_path):
    root = tmp_path / "CLAP_freesound"
    _tar_snapshot(root)
    records, rejects = _split(
        read_hf_dataset(SourceSpec(name="fs", adapter="hf_datasets", audio_root=str(root)))
    )
    assert not rejects
    assert [(r.source_id, r.split, r.row) for r in records] == [
        ("freesound/train/0/0", "train", 1),
        ("freesound/train/0/1", "train", 2),
        ("freesound/test/0/0", "test", 3),
    ]
    assert isinstance(records[0].audio, ArchiveMember)
    spec = {
        "corpus": "hubtars",
        "options": {"shard_size": 8, "store_mel": False},
        "sources": [{"name": "fs", "adapter": "hf_datasets", "audio_root": "CLAP_freesound"}],
    }
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    s = run_corpus(str(tmp_path / "spec.yaml"), str(tmp_path / "out"), ["--runner=FnApiRunner"])
    assert s["accounting_ok"] and s["sources"]["fs"]["samples"] == 3
    assert {k: v["samples"] for k, v in s["splits"].items()} == {"test": 1, "train": 2}


def _audioset_16k(tmp_path: Path) -> Path:
    from fixtures_sources import build_hub_copies

    hub, _ = build_hub_copies(tmp_path)
    return hub / "AudioSet16k"


def test_webdataset_snapshot_applies_the_column_options(tmp_path):
    """A snapshot of WebDataset tars whose JSON has the YouTube id and ontology ids only: id_column,
    label_column and origin name JSON fields, and plan predicts what run makes."""
    from clap_corpus.manifests.plan import plan_spec

    root = _audioset_16k(tmp_path)
    options = {"id_column": "video_id", "label_column": "mids", "origin": "youtube"}
    records, rejects = _split(
        read_hf_dataset(SourceSpec(name="as16", adapter="hf_datasets", audio_root=str(root), options=options))
    )
    assert not rejects
    assert [(r.source_id, r.labels, r.origin_ids, r.split) for r in records] == [
        ("wdsaudioset", ("Speech", "Bark"), ("youtube:wdsaudioset",), "train"),
        ("wdsaudiose2", ("Speech", "Bark"), ("youtube:wdsaudiose2",), "train"),
    ]
    # without label_column nothing in the JSON is text: plan says no_text as the run does
    for opts, samples, no_text in ((options, 2, 0), ({"id_column": "video_id"}, 0, 2)):
        doc = {
            "corpus": "as16",
            "options": {"shard_size": 8, "store_mel": False},
            "sources": [
                {
                    "name": "as16",
                    "adapter": "hf_datasets",
                    "audio_root": str(root),
                    "options": opts,
                    "allow_empty": True,
                    "min_audio_found": 0.0,
                }
            ],
        }
        spec = tmp_path / "spec.yaml"
        spec.write_text(yaml.safe_dump(doc))
        plan = plan_spec(load_spec(str(spec)))
        s = run_corpus(str(spec), str(tmp_path / f"out{samples}"), ["--runner=FnApiRunner"])
        assert s["sources"]["as16"]["samples"] == plan["sources"]["as16"]["records"] == samples
        assert (
            plan["sources"]["as16"]["rejects_by_code"]
            == s["rejects_by_code"]
            == ({"no_text": no_text} if no_text else {})
        )
    doc["sources"][0]["options"] = {"origin": "youtube"}
    spec.write_text(yaml.safe_dump(doc))
    with pytest.raises(SpecError, match="origin: the snapshot's files are WebDataset tars"):
        load_spec(str(spec))


def test_ontology_ids_are_named_never_captioned(tmp_path):
    """agkphysics/AudioSet without label_column: its `labels` are ontology ids; the captions use the
    names, and an id the ontology lacks rejects its clip."""
    from fixtures_sources import build_hub_copies

    from clap_corpus.transforms.captions import render_captions

    hub, _ = build_hub_copies(tmp_path)
    spec = SourceSpec(
        name="as",
        adapter="hf_datasets",
        audio_root=str(hub / "AudioSet"),
        options={"config": "balanced", "id_column": "video_id"},
    )
    records, _ = _split(read_hf_dataset(spec))
    assert [(r.source_id, r.labels) for r in records] == [
        ("balbalbal01", ("Speech",)),
        ("evalevalev1", ("Dog", "Bark")),
    ]
    assert render_captions(records[1]).text == ("The sounds of dog and bark.",)
    root = tmp_path / "odd"
    (root / "t").mkdir(parents=True)
    with wds.TarWriter(str(root / "t" / "0.tar")) as w:
        w.write(
            {
                "__key__": "a",
                "flac": tone_bytes(330.0),
                "json": json.dumps({"labels": ["/m/zzzzzz"]}).encode(),
            }
        )
    _, rejects = _split(
        read_hf_dataset(
            SourceSpec(
                name="o",
                adapter="hf_datasets",
                audio_root=str(root),
                options={"files": [str(root / "t" / "0.tar")], "label_column": "labels"},
            )
        )
    )
    assert [(r.code, r.reason) for r in rejects] == [
        ("unknown_label", "label id(s) /m/zzzzzz not in the AudioSet ontology")
    ]


def test_a_mirror_folder_never_downloaded_obtains_nothing(tmp_path):
    """A list of 4 ids against a folder that does not exist: 0 of 4 obtained, the folder named."""
    from clap_corpus.manifests.plan import plan_spec

    (tmp_path / "eval_segments.csv").write_text(
        "# Segments csv\n# num_ytids=4\n# YTID, start_seconds, end_seconds, positive_labels\n"
        + "".join(f'ytid0000{i}xx, 0.000, 10.000, "/m/09x0r"\n' for i in range(4))
    )
    root = tmp_path / "hub" / "AudioSet"
    doc = {
        "corpus": "c",
        "sources": [
            {
                "name": "as",
                "adapter": "hf_datasets",
                "audio_root": str(root),
                "options": {
                    "id_column": "video_id",
                    "wanted": {"files": "eval_segments.csv", "origin": "youtube"},
                },
            }
        ],
    }
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(doc))
    plan = plan_spec(load_spec(str(tmp_path / "spec.yaml")))
    assert plan["sources"]["as"]["coverage"] == {
        "wanted": 4,
        "obtained": 0,
        "missing": 4,
        "obtained_pct": 0.0,
        "not_listed": 0,
    }
    items = list(read_hf_dataset(load_spec(str(tmp_path / "spec.yaml")).sources[0]))
    assert [(r.code, r.path, r.reason) for r in items] == [
        (
            "unreadable_metadata",
            str(root),
            f"the audio root {root} does not exist (not downloaded, or a wrong path?)",
        )
    ]
