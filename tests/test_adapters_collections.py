"""Caption files (MACS, WavText5K, BBC) and filename-as-caption collections."""

from pathlib import Path

import pytest

from clap_corpus.core.audio_ref import LocalFile
from clap_corpus.core.records import Record, Reject
from clap_corpus.manifests.captionfiles import read_captionfiles
from clap_corpus.manifests.filenames import caption_from_name, read_filenames
from clap_corpus.manifests.source import SourceSpec


def _split(items):
    items = list(items)
    return [i for i in items if isinstance(i, Record)], [i for i in items if isinstance(i, Reject)]


def test_macs_yaml_one_sample_per_file_with_every_annotation(clap_data):
    d = clap_data / "macs"
    src = SourceSpec(
        name="macs", adapter="captionfiles", manifest=str(d / "MACS.yaml"), audio_root=str(d / "audio")
    )
    records, rejects = _split(read_captionfiles(src))
    airport = records[0]
    assert airport.source_id == "airport-barcelona-0-0-a.wav" and airport.row == 1
    assert airport.captions == (
        "Adults talking and footsteps in a busy hall.",
        "People walk and talk in a large space.",
    )
    assert airport.keywords == ("adults talking", "footsteps", "announcement speech")
    assert airport.original == {"file": "airport-barcelona-0-0-a.wav", "annotator_ids": [133, 80]}
    assert airport.audio == LocalFile(str(d / "audio" / "airport-barcelona-0-0-a.wav"))
    assert [(j.row, j.code) for j in rejects] == [(3, "missing_path")]


def test_unreadable_yaml_is_one_reject(tmp_path):
    m = tmp_path / "MACS.yaml"
    m.write_text("files: [unclosed\n")
    items = list(
        read_captionfiles(SourceSpec(name="m", adapter="captionfiles", manifest=str(m), audio_root="."))
    )
    assert [(i.code, i.row) for i in items] == [("unreadable_metadata", None)]


def test_wavtext5k_and_bbc_tables(clap_data):
    d = clap_data / "wavtext5k"
    src = SourceSpec(
        name="wt",
        adapter="captionfiles",
        manifest=str(d / "WavText5K.csv"),
        audio_root=str(d / "download"),
        options={
            "file_column": "fname",
            "caption_columns": ["description", "title"],
            "keyword_columns": ["tags"],
        },
    )
    records, rejects = _split(read_captionfiles(src))
    assert [r.captions for r in records] == [
        ("Birds singing, drive away, fly.", "Forest"),
        ("Wilhelm scream",),
    ]
    assert (
        records[0].original["view_link"] == "https://bigsoundbank.com/detail-0100-forest.html" and not rejects
    )
    d = clap_data / "bbc_sound_effects"
    src = SourceSpec(
        name="bbc",
        adapter="captionfiles",
        manifest=str(d / "BBCSoundEffects.csv"),
        audio_root=str(d),
        options={"file_column": "location", "keyword_columns": ["category"], "duration_column": "secs"},
        license="RemArc",
    )
    records, rejects = _split(read_captionfiles(src))
    assert records[0].captions == ("Rain, heavy, on car roof.",)  # default caption column: description
    assert records[0].keywords == ("Weather",) and records[0].expected_duration_s == 1.0
    assert records[0].license == "RemArc" and records[0].original["CDName"] == "Rain"
    assert [(j.row, j.code) for j in rejects] == [(3, "missing_path")]


def test_caption_rows_of_one_file_are_grouped(tmp_path):
    m = tmp_path / "caps.csv"
    m.write_text(
        "file_name,caption,tags,license,split\n"
        "a.wav,First caption,dog|bark,CC0,val\n"
        "b.wav,Other file,,,\n"
        'a.wav,"Second caption, same file",bark,,val\n'
        "../up.wav,Escapes the root,,,\n"
    )
    src = SourceSpec(
        name="c",
        adapter="captionfiles",
        manifest=str(m),
        audio_root=str(tmp_path),
        split_map={"val": "valid"},
        options={
            "keyword_columns": ["tags"],
            "keyword_separator": "|",
            "license_column": "license",
            "split_column": "split",
        },
    )
    records, rejects = _split(read_captionfiles(src))
    a = records[0]
    assert a.captions == ("First caption", "Second caption, same file") and a.keywords == ("dog", "bark")
    assert a.license == "CC0" and a.split == "valid" and a.row == 1
    assert records[1].split is None and [(j.row, j.code) for j in rejects] == [(4, "outside_root")]


@pytest.mark.parametrize(
    ("name", "caption"),
    [
        ("Door_Wood_Creak_01.wav", "Door Wood Creak"),
        ("DoorCreak_take2.wav", "Door Creak"),
        ("07070001 Rain on roof.wav", "Rain on roof"),
        ("IMPACT_METAL_HEAVY_v2.flac", "Impact metal heavy"),
        ("LaserBlast+Echo.ogg", "Laser Blast Echo"),
        ("Whoosh Fast 3.wav", "Whoosh Fast"),
        ("Car-Pass-By_#4.mp3", "Car Pass By"),
        ("0001.wav", ""),
    ],
)
def test_caption_from_file_name(name, caption):
    assert caption_from_name(name) == caption


def test_filename_collection(clap_data):
    d = clap_data / "sonniss"
    src = SourceSpec(name="son", adapter="filenames", audio_root=str(d), split="train", license="Sonniss")
    records, rejects = _split(read_filenames(src))
    assert not rejects
    assert [(r.source_id, r.captions, r.keywords) for r in records] == [
        ("Foley/DoorCreak_take2.wav", ("Door Creak",), ("Foley",)),
        ("Impacts/IMPACT_METAL_HEAVY_v2.flac", ("Impact metal heavy",), ("Impacts",)),
    ]  # readme.txt is not audio
    assert all(r.split == "train" and r.license == "Sonniss" for r in records)
    src = SourceSpec(name="son", adapter="filenames", audio_root=str(d), options={"folder_keywords": False})
    assert all(r.keywords == () and r.split is None for r in read_filenames(src))


def test_evaluation_set_tables_give_freesound_ids_and_paths_from_their_columns(clap_data):
    from clap_corpus.manifests.captionfiles import Options
    from clap_corpus.manifests.options import OptionError

    d = clap_data / "UrbanSound8K"
    options = {
        "file_pattern": "fold{fold}/{slice_file_name}",
        "keyword_columns": ["class"],
        "origin": "freesound",
        "origin_column": "fsID",
    }
    src = SourceSpec(
        name="us8k",
        adapter="captionfiles",
        manifest=str(d / "metadata" / "UrbanSound8K.csv"),
        audio_root=str(d / "audio"),
        options=options,
    )
    records, rejects = _split(read_captionfiles(src))
    assert not rejects
    assert [(r.source_id, r.origin_ids, r.keywords) for r in records] == [
        ("fold5/100263-2-0-117.wav", ("freesound:100263",), ("children playing",)),
        ("fold10/7061-6-0-0.wav", ("freesound:7061",), ("gun shot",)),
    ]
    assert all(isinstance(r.audio, LocalFile) and Path(r.audio.path).is_file() for r in records)
    # a column the pattern names that the table lacks: a reject naming it, not a crash
    src = SourceSpec(
        name="us8k",
        adapter="captionfiles",
        manifest=str(d / "metadata" / "UrbanSound8K.csv"),
        audio_root=str(d / "audio"),
        options={**options, "file_pattern": "fold{folder}/{slice_file_name}"},
    )
    records, rejects = _split(read_captionfiles(src))
    assert not records and {(j.code, "folder" in j.reason) for j in rejects} == {("missing_path", True)}
    with pytest.raises(OptionError, match="origin_column needs origin"):
        Options.check({"origin_column": "fsID"}, str)
