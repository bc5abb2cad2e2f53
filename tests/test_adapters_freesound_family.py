"""Clotho, FSD50K and Freesound-style adapters on copies of the real files (tests/fixtures_sources.py)."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
from fixtures_sources import FS_LEAK_FSD

from clap_corpus.core.audio_ref import LocalFile
from clap_corpus.core.records import Record, Reject
from clap_corpus.manifests.clotho import read_clotho
from clap_corpus.manifests.freesound import read_freesound
from clap_corpus.manifests.fsd50k import read_fsd50k
from clap_corpus.manifests.source import SourceSpec


def _split(items):
    items = list(items)
    return [i for i in items if isinstance(i, Record)], [i for i in items if isinstance(i, Reject)]


def _clotho(root, split, metadata=True):
    d = root / "clotho"
    options = {"metadata": str(d / f"clotho_metadata_{split}.csv")} if metadata else {}
    return SourceSpec(
        name="clotho",
        adapter="clotho",
        manifest=str(d / f"clotho_captions_{split}.csv"),
        audio_root=str(d / split),
        options=options,
    )


def test_clotho_captions_metadata_and_license(clap_data):
    records, rejects = _split(read_clotho(_clotho(clap_data, "development")))
    assert not rejects and [r.source_id for r in records] == [
        "Distorted AM Radio noise.wav",
        "Footsteps on gravel.wav",
        "Not downloaded.wav",  # missing on disk: the shard writer rejects it (missing_file)
    ]
    radio, steps, _ = records
    assert radio.split == "train" and len(radio.captions) == 5
    assert radio.captions[0] == "Caption 1 of Distorted AM Radio noise.wav, with a comma"
    assert radio.keywords == ("radio", "noise", "am") and radio.origin_ids == ("freesound:66083",)
    assert radio.license == "http://creativecommons.org/licenses/by/3.0/"
    # the metadata file is ISO-8859-1: read as such, the uploader's name survives
    assert (
        radio.attribution
        == "Distorted AM Radio noise.wav by José (https://freesound.org/people/José/sounds/66083/)"
    )
    assert radio.original["start_end_samples"] == "[0, 1323000]"
    assert steps.origin_ids == () and steps.license is None  # "Not found": no Freesound id
    assert radio.audio == LocalFile(
        str(clap_data / "clotho" / "development" / "Distorted AM Radio noise.wav")
    )


def test_clotho_splits_are_not_swapped(clap_data):
    assert _split(read_clotho(_clotho(clap_data, "validation")))[0][0].split == "valid"
    ev = _split(read_clotho(_clotho(clap_data, "evaluation", metadata=False)))[0][0]
    assert ev.split == "test" and ev.origin_ids == () and ev.keywords == ()


def _fsd(root, csv="dev", audio="dev", **options):
    d = root / "fsd50k"
    return SourceSpec(
        name="fsd",
        adapter="fsd50k",
        manifest=str(d / "FSD50K.ground_truth" / f"{csv}.csv"),
        audio_root=str(d / f"FSD50K.{audio}_audio"),
        options={
            "vocabulary": str(d / "FSD50K.ground_truth" / "vocabulary.csv"),
            "clips_info": str(d / "FSD50K.metadata" / f"{csv}_clips_info_FSD50K.json"),
            **options,
        },
    )


def test_fsd50k_ground_truth_vocabulary_and_clip_info(clap_data):
    records, rejects = _split(read_fsd50k(_fsd(clap_data)))
    assert [(r.source_id, r.split) for r in records] == [
        ("64760", "train"),
        ("16399", "train"),
        ("55123", "valid"),
    ]
    guitar = records[0]
    assert guitar.labels == ("Electric guitar", "Guitar", "Music") and guitar.keywords == (
        "guitar",
        "electric",
    )
    assert guitar.origin_ids == ("freesound:64760",) and str(guitar.audio).endswith(
        "FSD50K.dev_audio/64760.wav"
    )
    assert guitar.license == "http://creativecommons.org/licenses/by/3.0/"
    assert guitar.attribution == "guitar riff.wav by strummer (https://freesound.org/s/64760/)"
    assert [(j.row, j.code) for j in rejects] == [(3, "unknown_label")] and "/m/00nope" in rejects[0].reason


def test_fsd50k_include_splits_and_eval(clap_data):
    train, rejects = _split(read_fsd50k(_fsd(clap_data, include_splits=["train"])))
    assert [r.source_id for r in train] == ["64760", "16399"] and len(rejects) == 1
    val, _ = _split(read_fsd50k(_fsd(clap_data, include_splits=["val"])))
    assert [r.source_id for r in val] == ["55123"]
    ev, _ = _split(read_fsd50k(_fsd(clap_data, "eval", "eval")))
    assert [(r.source_id, r.split, r.labels) for r in ev] == [(FS_LEAK_FSD, "test", ("Dog",))]


def test_fsd50k_without_vocabulary_uses_label_names(clap_data):
    src = _fsd(clap_data)
    src = SourceSpec(**{**src.__dict__, "options": {}})
    records, rejects = _split(read_fsd50k(src))
    assert records[2].labels == ("Bark", "Nonsense") and not rejects and records[0].license is None


def test_laion_released_freesound_csv(clap_data):
    d = clap_data / "freesound"
    src = SourceSpec(
        name="fs",
        adapter="freesound",
        manifest=str(d / "freesound_no_overlap_meta.csv"),
        audio_root=str(d / "audio"),
    )
    records, rejects = _split(read_freesound(src))
    assert not rejects and len(records) == 4
    kettle = records[0]
    assert kettle.captions == ("Kettle whistling on the stove.", "A kettle whistles.")
    assert kettle.origin_ids == ("freesound:2394",) and kettle.audio == LocalFile(
        str(d / "audio" / "2394.flac")
    )
    assert kettle.license == "http://creativecommons.org/licenses/by/3.0/"
    assert kettle.attribution == "2394 by teamaker (https://freesound.org/people/teamaker/sounds/2394/)"
    assert records[1].captions == ("Typing on an old keyboard.",)  # empty caption_2 dropped


def test_freesound_api_style_json_document(tmp_path):
    audio = tmp_path / "audio"
    audio.mkdir()
    (audio / "1234_joe_kettle.wav").write_bytes(b"x")  # downloads named <id>_<user>_<title>
    (audio / "99.mp3").write_bytes(b"x")
    doc = {
        "1234": {
            "name": "kettle_boiling_loop.wav",
            "description": "<p>Recorded in my <b>kitchen</b>. Zoom H4n, 44.1 kHz.</p>",
            "tags:": "kettle,boiling,water",
            "username": "joe",
            "license": "http://creativecommons.org/publicdomain/zero/1.0/",
            "duration": 12.5,
            "download_url": "https://freesound.org/s/1234/",
        },
        "99": {"name": "", "description": "", "tags:": "", "username": "ann", "license": None},
        "5": {"name": "never downloaded"},
        "7": "not an object",
    }
    m = tmp_path / "freesound.json"
    m.write_text(json.dumps(doc))
    src = SourceSpec(name="fs", adapter="freesound", manifest=str(m), audio_root=str(audio), license="CC0")
    records, rejects = _split(read_freesound(src))
    kettle = records[0]
    # LAION's rule: the title (extension stripped, '_' as space) and the description's first sentence
    assert kettle.captions == ("kettle boiling loop", "Recorded in my kitchen.")
    assert kettle.keywords == ("kettle", "boiling", "water") and kettle.expected_duration_s == 12.5
    assert kettle.audio == LocalFile(str(audio / "1234_joe_kettle.wav")) and kettle.license.endswith(
        "zero/1.0/"
    )
    assert records[1].captions == () and records[1].license == "CC0"  # the captions stage decides
    assert [(j.row, j.code) for j in rejects] == [(3, "missing_audio"), (4, "malformed_row")]


def test_epidemic_and_audiostock_released_lists(clap_data):
    d = clap_data / "epidemic_sound"
    src = SourceSpec(
        name="ep",
        adapter="freesound",
        manifest=str(d / "Epidemic_all.csv"),
        audio_root=str(d / "audio"),
        options={"origin": ""},
    )
    records, rejects = _split(read_freesound(src))
    assert not rejects and records[0].source_id == "1001" and records[0].origin_ids == ()
    assert records[0].captions == ("Door Knock", "the sounds of door, knock, and wood.")
    assert records[0].original["caption_t5"] == "A person knocks on a wooden door."  # LAION's K2C kept aside
    assert "" not in records[0].original  # pandas' unnamed index column
    d = clap_data / "audiostock"
    src = SourceSpec(
        name="st",
        adapter="freesound",
        manifest=str(d / "audiostock_all.csv"),
        audio_root=str(d / "audio"),
        options={"file_from_url": True, "origin": ""},
    )
    records, rejects = _split(read_freesound(src))
    assert [str(r.audio) for r in records] == [
        str(d / "audio" / "12345.mp3"),
        str(d / "audio" / "Clock tick 67890.wav"),
    ]
    assert records[1].captions == ("Wall clock ticking",) and not rejects


def test_freesound_parquet_with_renamed_columns(tmp_path):
    (tmp_path / "a").mkdir()
    m = tmp_path / "meta.parquet"
    pq.write_table(
        pa.table(
            {"sid": [1, 2], "what": ["A cat purrs", None], "kw": [["cat"], []], "file": ["c.wav", "../x.wav"]}
        ),
        m,
    )
    src = SourceSpec(
        name="p",
        adapter="freesound",
        manifest=str(m),
        audio_root=str(tmp_path / "a"),
        options={"columns": {"id": "sid", "title": "what", "tags": "kw", "file": "file"}},
    )
    records, rejects = _split(read_freesound(src))
    assert records[0].captions == ("A cat purrs",) and records[0].keywords == ("cat",)
    assert records[0].origin_ids == ("freesound:1",)
    assert [(j.row, j.code) for j in rejects] == [(2, "outside_root")]
