"""Hub dataset repositories as `hf download --repo-type dataset` leaves them, built here in each layout."""

import json
from pathlib import Path

import pytest
import webdataset as wds
import yaml
from datasets import Audio, Dataset, Features, Value

from clap_corpus.core.audio_ref import ArchiveMember, EmbeddedCell, LocalFile
from clap_corpus.core.records import Record, Reject
from clap_corpus.manifests.hf_datasets import read_hf_dataset
from clap_corpus.manifests.source import SourceSpec
from clap_corpus.pipeline import synth
from clap_corpus.pipeline.run import run_corpus
from clap_corpus.pipeline.spec import SpecError, load_spec


def _clip(freq: float) -> bytes:
    return synth.encode_audio(synth.tone(freq, 1.0, 16000), 16000, "flac")


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
            "audio": [{"bytes": _clip(r[1]), "path": f"{r[0]}.flac"} for r in rows],
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
                w.write({"__key__": str(i), "flac": _clip(f), "json": json.dumps(doc).encode()})


def test_audiofolder_snapshot(tmp_path):
    """audio files + metadata.csv (datasets' AudioFolder), the config's pattern matching both."""
    root = tmp_path / "clotho"
    _readme(
        root, [{"config_name": "default", "data_files": [{"split": "validation", "path": "validation/**"}]}]
    )
    (root / "validation" / "audio").mkdir(parents=True)
    (root / "validation" / "audio" / "Rain.flac").write_bytes(_clip(330.0))
    (root / "validation" / "audio" / "Wind.flac").write_bytes(_clip(440.0))
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
