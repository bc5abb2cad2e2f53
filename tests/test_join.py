"""A metadata table joined by id (`options.join`, any adapter): LAION's freesound_no_overlap_meta.csv
giving license and uploader to the clips of its tars, and the same join from Parquet and JSON."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from fixtures_sources import FS_NOT_IN_META, build_hub_copies

from clap_corpus.core.records import Record
from clap_corpus.manifests.notes import SourceNotes
from clap_corpus.manifests.registry import read_source
from clap_corpus.pipeline.spec.corpus import SpecError, load_spec


def _spec(tmp_path, hub, join: dict) -> str:
    doc = {
        "corpus": "j",
        "sources": [
            {
                "name": "fs",
                "adapter": "webdataset",
                "audio_root": str(hub / "CLAP_freesound"),
                "options": {"pattern": "freesound_no_overlap/*/*.tar", "join": join},
            }
        ],
    }
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(doc))
    return str(tmp_path / "spec.yaml")


@pytest.fixture
def hub(tmp_path):
    return build_hub_copies(tmp_path)[0]


def _read(path: str) -> tuple[dict[str, Record], SourceNotes]:
    notes = SourceNotes()
    spec = load_spec(path)
    records = {r.origin_ids[0]: r for r in read_source(spec.sources[0], notes=notes) if isinstance(r, Record)}
    return records, notes


def test_laion_meta_csv_gives_license_attribution_and_captions(tmp_path, hub):
    csv = str(hub / "CLAP_freesound" / "freesound_no_overlap_meta.csv")
    join = {
        "files": csv,
        "key": "freesound_id",
        "origin": "freesound",
        "license": "license",
        "attribution": "sound {freesound_id} by {username} ({freesound_url})",
        "captions": ["caption_1"],
    }
    records, notes = _read(_spec(tmp_path, hub, join))
    one = records["freesound:282776"]
    assert one.license == "http://creativecommons.org/licenses/by/3.0/"
    assert (
        one.attribution
        == "sound 282776 by user282776 (https://freesound.org/people/user282776/sounds/282776/)"
    )
    # the tar's own captions first, then the table's (a repeat said once)
    assert one.captions == ("Sound number 282776", "A recording numbered 282776.")
    # a clip the table has no row for keeps what its tar gave it
    assert records[f"freesound:{FS_NOT_IN_META}"].license is None
    assert (notes.joined, notes.not_joined) == (5, 1)
    # replace_captions: the table's captions only
    records, _ = _read(_spec(tmp_path, hub, {**join, "replace_captions": True}))
    assert records["freesound:282776"].captions == ("Sound number 282776",)


def test_parquet_and_json_tables_by_stem(tmp_path, hub):
    """Without origin a row meets the record whose id has its stem (2394.flac <- .../train_1/0/2394)."""
    table = pa.table({"audio_filename": ["2394.flac", "2395.flac"], "lic": ["CC0", "CC-BY-4.0"]})
    pq.write_table(table, tmp_path / "meta.parquet")
    join = {"files": str(tmp_path / "meta.parquet"), "key": "audio_filename", "license": "lic"}
    records, notes = _read(_spec(tmp_path, hub, join))
    assert records["freesound:282776"].license == "CC0" and records["freesound:158824"].license == "CC-BY-4.0"
    assert (notes.joined, notes.not_joined) == (2, 4)
    (tmp_path / "meta.json").write_text(json.dumps({"2394": {"lic": "CC0"}}))  # an object keyed by id
    join = {"files": str(tmp_path / "meta.json"), "key": "id", "license": "lic"}
    records, _ = _read(_spec(tmp_path, hub, join))
    assert records["freesound:282776"].license == "CC0"


def test_columns_are_checked_at_spec_load(tmp_path, hub):
    csv = str(hub / "CLAP_freesound" / "freesound_no_overlap_meta.csv")
    with pytest.raises(SpecError, match=r"options\.join: .* has no column 'licence'"):
        load_spec(_spec(tmp_path, hub, {"files": csv, "key": "freesound_id", "license": "licence"}))
    with pytest.raises(SpecError, match=r"has no column 'user'"):
        load_spec(_spec(tmp_path, hub, {"files": csv, "key": "freesound_id", "attribution": "by {user}"}))
