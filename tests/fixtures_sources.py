"""Small copies of the real downloads, laid out as their distributors ship them.

``build_clap_data(root)`` writes, under one folder (what ``$CLAP_DATA`` points at in the shipped
specs), every source of the 2.5 M set and of LAION-Audio-630K: real file names, real column names,
real quirks (AudioSet's comment header and quoted label lists, Clotho's ISO-8859-1 metadata and
"Not found" ids, FSD50K's header-less vocabulary, pandas' unnamed index column in LAION's released
CSVs, the "Y" prefix of AudioSet downloads), a few bad rows per source, and real encoded audio
(1 s tones, each at its own pitch, so that no two clips decode alike unless a test says so).

The facts tests check are in :data:`FACTS`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from clap_corpus.pipeline.demo import synth

RATE = 16_000


@dataclass
class _Audio:
    """Writes real encoded tones, a new pitch for every file."""

    count: int = 0
    written: dict[str, bytes] = field(default_factory=dict)

    def write(self, path: Path, seconds: float = 1.0) -> bytes:
        self.count += 1
        freq = 170.0 + 41.0 * self.count
        data = synth.encode_audio(synth.tone(freq, seconds, RATE), RATE, path.suffix[1:].lower())
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self.written[str(path)] = data
        return data


def _text(path: Path, text: str, encoding: str = "utf-8") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))


# YouTube ids (11 characters). The two LEAK ids are AudioCaps test clips that are also listed in
# AudioSet's unbalanced train segments: the leakage guard must take them out of training.
AS_TRAIN = ["--PJHxphWEs", "-0RWZT-miFs", "0FMdORf5iGs", "Yb0RFKhbpFJ"]
LEAK = ["leakCapsT01", "leakCapsT02"]
AS_EVAL = ["evalAS00001", "evalAS00002"]
# Freesound ids shared between the Freesound source (train) and held-out Clotho / FSD50K clips.
FS_LEAK_CLOTHO = "310101"
FS_LEAK_FSD = "310202"
FS_IN_ESC50 = "5501"  # a Freesound train clip that ESC-50 (a guard) holds too: removed by its id

FACTS = {
    # source -> (inputs, samples, rejects) the shipped 2.5 M spec gives on this tree
    "counts": {
        "audioset_unbalanced": (11, 4, 7),  # 2 leaked + 5 bad rows
        "audioset_eval": (2, 2, 0),
        "bbc_sound_effects": (3, 2, 1),
        "audiocaps_train": (6, 2, 4),  # 3 clips (one audio missing) + 3 bad rows
        "audiocaps_val": (1, 1, 0),
        "audiocaps_test": (3, 3, 0),
        "clotho_development": (3, 2, 1),  # one audio file missing on disk
        "clotho_validation": (1, 1, 0),
        "clotho_evaluation": (1, 1, 0),
        "free_to_use_sounds": (2, 2, 0),
        "sonniss": (2, 2, 0),
        "we_sound_effects": (1, 1, 0),
        "paramount_motion": (1, 1, 0),
        "fsd50k": (3, 2, 1),  # unknown label id
        "fsd50k_val": (1, 1, 0),
        "fsd50k_eval": (1, 1, 0),
        "audiostock": (2, 2, 0),
        "macs": (3, 2, 1),
        "freesound": (4, 1, 3),  # leaked into held-out Clotho / FSD50K, and ESC-50 by Freesound id
        "wavtext5k": (2, 2, 0),
        "epidemic_sound": (2, 2, 0),
        "esc50": (2, 0, 2),  # a guard: read and checked against, never written (guard_only)
        "urbansound8k": (2, 0, 2),  # a guard too: files in the fold folders its table names
    },
    # the byte-identical pair (Sonniss ships a file Free To Use Sounds has too)
    "duplicate_files": (
        "free_to_use_sounds/Doors/Door_Wood_Creak_01.wav",
        "sonniss/Foley/DoorCreak_take2.wav",
    ),
}


def build_clap_data(root: Path) -> Path:
    """Write the whole tree under ``root``; returns ``root``."""
    audio = _Audio()
    _audioset(root / "audioset", audio)
    _audiocaps(root / "audiocaps", audio)
    _clotho(root / "clotho", audio)
    _fsd50k(root / "fsd50k", audio)
    _bbc(root / "bbc_sound_effects", audio)
    _filename_libraries(root, audio)
    _audiostock(root / "audiostock", audio)
    _macs(root / "macs", audio)
    _freesound(root / "freesound", audio)
    _wavtext5k(root / "wavtext5k", audio)
    _epidemic(root / "epidemic_sound", audio)
    _esc50(root / "esc50", audio)
    _urbansound8k(root / "UrbanSound8K", audio)
    return root


CLASS_INDEX = """index,mid,display_name
0,/m/09x0r,"Speech"
1,/m/05zppz,"Male speech, man speaking"
2,/m/0jbk,"Animal"
3,/m/0bt9lr,"Dog"
4,/m/05tny_,"Bark"
5,/m/04rlf,"Music"
6,/t/dd00088,"Gush"
"""


def _audioset(d: Path, audio: _Audio) -> None:
    _text(d / "class_labels_indices.csv", CLASS_INDEX)
    header = (
        "# Segments csv created Sun Mar  5 10:54:31 2017\n"
        "# num_ytids={n}, num_segs={n}, num_unique_labels=7, num_positive_labels={n}\n"
        "# YTID, start_seconds, end_seconds, positive_labels\n"
    )
    rows = [
        '--PJHxphWEs, 30.000, 40.000, "/m/09x0r,/t/dd00088"',
        '-0RWZT-miFs, 420.000, 430.000, "/m/0jbk,/m/0bt9lr,/m/05tny_"',
        '0FMdORf5iGs, 0.000, 10.000, "/m/04rlf"',
        'Yb0RFKhbpFJ, 12.500, 22.500, "/m/05zppz,/m/09x0r"',
        f'{LEAK[0]}, 0.000, 10.000, "/m/0bt9lr"',
        f'{LEAK[1]}, 20.000, 30.000, "/m/04rlf"',
        ', 30.000, 40.000, "/m/09x0r"',  # missing id
        'unknownLbl1, 0.000, 10.000, "/m/09x0r,/m/zzzzz"',  # unknown label id
        'badTimes001, 40.000, 30.000, "/m/09x0r"',  # end before start
        'brokenQuot, 0.000, 10.000, "/m/09x0r,/m/04rlf',  # the closing quote is missing
        'noAudio0001, 0.000, 10.000, "/m/04rlf"',  # listed, never downloaded
    ]
    _text(d / "unbalanced_train_segments.csv", header.format(n=len(rows)) + "\n".join(rows) + "\n")
    _text(
        d / "eval_segments.csv",
        header.format(n=2) + "".join(f'{y}, 0.000, 10.000, "/m/0bt9lr,/m/05tny_"\n' for y in AS_EVAL),
    )
    train = d / "audio" / "unbalanced_train"
    # downloaders name files with or without the "Y", with or without the segment times
    audio.write(train / "Y--PJHxphWEs.wav")
    audio.write(train / "-0RWZT-miFs_420.000_430.000.flac", seconds=3.0)  # long enough for K2C (2 s)
    audio.write(train / "0FMdORf5iGs.mp3")
    audio.write(train / "YYb0RFKhbpFJ.wav")  # an id that itself starts with "Y"
    for y in LEAK:
        audio.write(train / f"Y{y}.wav")
    for y in ("unknownLbl1", "badTimes001"):
        audio.write(train / f"Y{y}.wav")
    for y in AS_EVAL:
        audio.write(d / "audio" / "eval" / f"Y{y}.flac")


def _audiocaps(d: Path, audio: _Audio) -> None:
    _text(
        d / "dataset" / "train.csv",
        "audiocap_id,youtube_id,start_time,caption\n"
        "91139,r1nicOVtvkQ,130,A woman talks nearby as water pours\n"
        '58146,UDGBjjwyaqE,20,"Multiple clanging and clanking sounds, then a man speaks"\n'
        "11542,UDGBjjwyaqE,20,Metal clanks while a man talks\n"
        "107094,missingAud1,0,A dog barks in the distance\n"
        ",,30,A row without a video id\n"
        "44001,badStartT01,soon,A start time that is not a number\n"
        "44002,emptyCapt01,10,\n",
    )
    audio.write(d / "audio" / "train" / "r1nicOVtvkQ.wav")
    audio.write(d / "audio" / "train" / "YUDGBjjwyaqE.flac")
    _text(
        d / "dataset" / "val.csv",
        "audiocap_id,youtube_id,start_time,caption\n"
        + "".join(f"{97151 + i},valClip0001,30,Val caption number {i + 1} of one clip\n" for i in range(5)),
    )
    audio.write(d / "audio" / "val" / "valClip0001.wav")
    test_rows = []
    for n, y in enumerate([*LEAK, "testClip001"]):
        test_rows += [
            f"{103500 + 5 * n + i},{y},{10 * n},Test caption {i + 1} for clip {y}\n" for i in range(5)
        ]
        audio.write(d / "audio" / "test" / f"{y}.wav")
    _text(d / "dataset" / "test.csv", "audiocap_id,youtube_id,start_time,caption\n" + "".join(test_rows))


def _clotho(d: Path, audio: _Audio) -> None:
    meta_header = "file_name,keywords,sound_id,sound_link,start_end_samples,manufacturer,license\n"
    caps_header = "file_name,caption_1,caption_2,caption_3,caption_4,caption_5\n"

    def caps(name: str, n: int) -> str:
        return f"{name}," + ",".join(f'"Caption {i} of {name}, with a comma"' for i in range(1, n + 1)) + "\n"

    dev = ["Distorted AM Radio noise.wav", "Footsteps on gravel.wav", "Not downloaded.wav"]
    _text(d / "clotho_captions_development.csv", caps_header + "".join(caps(n, 5) for n in dev))
    _text(
        d / "clotho_metadata_development.csv",
        meta_header
        + "Distorted AM Radio noise.wav,radio;noise;am,66083,https://freesound.org/people/José/sounds/66083/,"
        '"[0, 1323000]",José,http://creativecommons.org/licenses/by/3.0/\n'
        "Footsteps on gravel.wav,footsteps;gravel,Not found,,,,\n"
        "Not downloaded.wav,missing,12345,https://freesound.org/s/12345/,,someone,"
        "http://creativecommons.org/publicdomain/zero/1.0/\n",
        encoding="iso-8859-1",  # as Clotho v2.1 ships it
    )
    for n in dev[:2]:
        audio.write(d / "development" / n)
    _text(d / "clotho_captions_validation.csv", caps_header + caps("Rain on a tin roof.wav", 5))
    _text(
        d / "clotho_metadata_validation.csv",
        meta_header + "Rain on a tin roof.wav,rain;roof,77001,https://freesound.org/s/77001/,,rainer,"
        "http://creativecommons.org/licenses/by/3.0/\n",
        encoding="iso-8859-1",
    )
    audio.write(d / "validation" / "Rain on a tin roof.wav")
    _text(d / "clotho_captions_evaluation.csv", caps_header + caps("Church bells.wav", 5))
    _text(
        d / "clotho_metadata_evaluation.csv",
        meta_header
        + f"Church bells.wav,bells;church,{FS_LEAK_CLOTHO},https://freesound.org/s/{FS_LEAK_CLOTHO}/,"
        ",bellringer,http://creativecommons.org/licenses/by-nc/3.0/\n",
        encoding="iso-8859-1",
    )
    audio.write(d / "evaluation" / "Church bells.wav")


def _fsd50k(d: Path, audio: _Audio) -> None:
    gt = d / "FSD50K.ground_truth"
    _text(
        gt / "vocabulary.csv",
        "0,Electric_guitar,/m/02sgy\n1,Guitar,/m/0342h\n2,Dog,/m/0bt9lr\n3,Bark,/m/05tny_\n4,Music,/m/04rlf\n",
    )
    _text(
        gt / "dev.csv",
        "fname,labels,mids,split\n"
        '64760,"Electric_guitar,Guitar,Music","/m/02sgy,/m/0342h,/m/04rlf",train\n'
        '16399,"Dog,Bark","/m/0bt9lr,/m/05tny_",train\n'
        '21000,"Bark,Nonsense","/m/05tny_,/m/00nope",train\n'
        '55123,"Music","/m/04rlf",val\n',
    )
    _text(gt / "eval.csv", f'fname,labels,mids\n{FS_LEAK_FSD},"Dog","/m/0bt9lr"\n')
    info = {
        "64760": {
            "title": "guitar riff.wav",
            "description": "A riff",
            "tags": ["guitar", "electric"],
            "license": "http://creativecommons.org/licenses/by/3.0/",
            "uploader": "strummer",
        },
        "16399": {
            "title": "dog.wav",
            "description": "Barking",
            "tags": ["dog", "bark"],
            "license": "http://creativecommons.org/publicdomain/zero/1.0/",
            "uploader": "walker",
        },
        "55123": {
            "title": "tune",
            "description": "",
            "tags": ["music"],
            "license": "http://creativecommons.org/licenses/by/3.0/",
            "uploader": "player",
        },
    }
    _text(d / "FSD50K.metadata" / "dev_clips_info_FSD50K.json", json.dumps(info))
    _text(
        d / "FSD50K.metadata" / "eval_clips_info_FSD50K.json",
        json.dumps(
            {
                FS_LEAK_FSD: {
                    "title": "dog 2",
                    "tags": ["dog"],
                    "uploader": "barker",
                    "license": "http://creativecommons.org/licenses/by/3.0/",
                }
            }
        ),
    )
    for f in ("64760", "16399", "21000", "55123"):
        audio.write(d / "FSD50K.dev_audio" / f"{f}.wav")
    audio.write(d / "FSD50K.eval_audio" / f"{FS_LEAK_FSD}.wav")


def _bbc(d: Path, audio: _Audio) -> None:
    _text(
        d / "BBCSoundEffects.csv",
        "location,description,secs,category,CDNumber,CDName,tracknum\n"
        '07070001.wav,"Rain, heavy, on car roof.",1,Weather,EC17D,Rain,1\n'
        "07070002.wav,Big Ben strikes twelve.,1,Bells,EC3B,Bells,4\n"
        ",A row without a file,3,Misc,X,Y,1\n",
    )
    audio.write(d / "07070001.wav")
    audio.write(d / "07070002.wav")


def _filename_libraries(root: Path, audio: _Audio) -> None:
    data = audio.write(root / "free_to_use_sounds" / "Doors" / "Door_Wood_Creak_01.wav")
    audio.write(root / "free_to_use_sounds" / "Nature" / "BirdsMorningChorus.mp3")
    audio.write(root / "sonniss" / "Impacts" / "IMPACT_METAL_HEAVY_v2.flac")
    # the same recording in two libraries: the duplicates report must find it
    dup = root / "sonniss" / "Foley" / "DoorCreak_take2.wav"
    dup.parent.mkdir(parents=True, exist_ok=True)
    dup.write_bytes(data)
    audio.write(root / "we_sound_effects" / "Whoosh Fast 3.wav")
    audio.write(root / "paramount_motion" / "Sci-Fi" / "LaserBlast+Echo.ogg")
    _text(root / "sonniss" / "Impacts" / "readme.txt", "not audio: not a clip\n")


def _audiostock(d: Path, audio: _Audio) -> None:
    # LAION's released list: pandas wrote its index as a first, unnamed column
    _text(
        d / "audiostock_all.csv",
        ",url,caption\n"
        "0,https://audiostock.net/se/12345/download/12345.mp3,Cheerful game coin sound\n"
        "1,https://audiostock.net/se/67890/download/Clock%20tick%2067890.wav,Wall clock ticking\n",
    )
    audio.write(d / "audio" / "12345.mp3")
    audio.write(d / "audio" / "Clock tick 67890.wav")


def _macs(d: Path, audio: _Audio) -> None:
    doc = {
        "files": [
            {
                "filename": "airport-barcelona-0-0-a.wav",
                "annotations": [
                    {
                        "annotator_id": 133,
                        "sentence": "Adults talking and footsteps in a busy hall.",
                        "tags": ["adults_talking", "footsteps"],
                    },
                    {
                        "annotator_id": 80,
                        "sentence": "People walk and talk in a large space.",
                        "tags": ["adults_talking", "announcement_speech"],
                    },
                ],
            },
            {
                "filename": "street_traffic-london-271-8243-a.wav",
                "annotations": [
                    {"annotator_id": 7, "sentence": "Cars pass by on a wet road.", "tags": ["traffic"]}
                ],
            },
            {"annotations": [{"annotator_id": 1, "sentence": "An entry without a file name."}]},
        ]
    }
    _text(d / "MACS.yaml", yaml.safe_dump(doc, sort_keys=False))
    audio.write(d / "audio" / "airport-barcelona-0-0-a.wav")
    audio.write(d / "audio" / "street_traffic-london-271-8243-a.wav")


def _freesound(d: Path, audio: _Audio) -> None:
    # LAION's released metadata (Hugging Face card): audio_filename, caption_i, freesound_id, ...
    header = "audio_filename,caption_1,caption_2,freesound_id,username,freesound_url,license\n"
    rows = [
        (
            "2394",
            "Kettle whistling on the stove.",
            "A kettle whistles.",
            "teamaker",
            "http://creativecommons.org/licenses/by/3.0/",
        ),
        (
            FS_IN_ESC50,
            "Typing on an old keyboard.",
            "",
            "typist",
            "http://creativecommons.org/publicdomain/zero/1.0/",
        ),
        (
            FS_LEAK_CLOTHO,
            "Church bells ringing.",
            "",
            "bellringer",
            "http://creativecommons.org/licenses/by-nc/3.0/",
        ),
        (FS_LEAK_FSD, "A dog barking.", "", "barker", "http://creativecommons.org/licenses/by/3.0/"),
    ]
    text = header + "".join(
        f'{i}.flac,"{c1}","{c2}",{i},{u},https://freesound.org/people/{u}/sounds/{i}/,{lic}\n'
        for i, c1, c2, u, lic in rows
    )
    _text(d / "freesound_no_overlap_meta.csv", text)
    _text(d / "freesound_meta.csv", text)
    for i, *_ in rows:
        audio.write(d / "audio" / f"{i}.flac")


def _wavtext5k(d: Path, audio: _Audio) -> None:
    _text(
        d / "WavText5K.csv",
        "view_link,download_link,title,description,fname,tags\n"
        "https://bigsoundbank.com/detail-0100-forest.html,https://bigsoundbank.com/UPLOAD/wav/0100.wav,"
        'Forest,"Birds singing, drive away, fly.",0100.wav,\n'
        "https://bigsoundbank.com/detail-0477-wilhelm-scream.html,https://bigsoundbank.com/UPLOAD/wav/0477.wav,"
        "Wilhelm scream,,0477.wav,\n",
    )
    audio.write(d / "download" / "0100.wav")
    audio.write(d / "download" / "0477.wav")


def _epidemic(d: Path, audio: _Audio) -> None:
    _text(
        d / "Epidemic_all.csv",
        ",url,caption1,caption2,caption_t5,epidemic_id\n"
        '0,https://cdn.epidemicsound.com/sfx/1001.mp3,Door Knock,"the sounds of door, knock, and wood.",'
        "A person knocks on a wooden door.,1001\n"
        "1,https://cdn.epidemicsound.com/sfx/1002.mp3,Thunder Rumble,"
        '"the sounds of thunder, and storm.",,1002\n',
    )
    audio.write(d / "audio" / "1001.mp3")
    audio.write(d / "audio" / "1002.mp3")


# --- the copies that exist today (manifests/specs/laion_clap_2m5_hub.yaml, README "Sources as they are
# distributed today"): Hub snapshots as `hf download --repo-type dataset --local-dir` leaves them, LAION's
# Freesound tars, WavCaps' JSON + split zips + blacklists, and the official lists ($LISTS).

SPLIT_ZIP = (
    Path(__file__).resolve().parent / "data" / "wavcaps"
)  # made by Info-ZIP (data/make_wavcaps_split.py)
# Freesound ids: a LAION train clip that is Clotho's evaluation clip (FS_LEAK_CLOTHO), one on WavCaps'
# test blacklist, one the metadata CSV has no row for
FS_LAION = {"train_1": ["282776", "158824", "5501"], "train_2": [FS_LEAK_CLOTHO, "91001"], "test": ["77701"]}
FS_BLACKLISTED = "5501"
FS_NOT_IN_META = "91001"
WAVCAPS_FS_BLACKLISTED = "180915"  # a WavCaps FreeSound clip on the same list
AS_UNBAL = ["unbalunbal1", "unbalunbal2", "unbalunbal3"]  # the third is on WavCaps' AudioSet blacklist
AS_UNBAL_LISTED = [*AS_UNBAL, "gonegonegon"]  # the official list names one clip no copy has
AS_WDS = ["wdsaudioset", "wdsaudiose2"]  # the 16 kHz WebDataset mirror (hf_datasets over tars)


def _hub_readme(root: Path, configs: dict[str, dict[str, str]] | None, front: dict | None = None) -> None:
    root.mkdir(parents=True, exist_ok=True)
    doc = dict(front or {})
    if configs is not None:
        doc["configs"] = [
            {"config_name": name, "data_files": [{"split": s, "path": p} for s, p in splits.items()]}
            for name, splits in configs.items()
        ]
    (root / "README.md").write_text(f"---\n{yaml.safe_dump(doc, sort_keys=False)}---\n# A dataset card\n")


def _hub_parquet(path: Path, audio: _Audio, rows: list[dict], sequences: tuple[str, ...] = ()) -> None:
    """A Parquet file as `datasets` writes it: an Audio column of FLAC bytes, the schema's features."""
    from datasets import Audio, Dataset, Features, Sequence, Value

    path.parent.mkdir(parents=True, exist_ok=True)
    names = [k for k in rows[0] if k != "_freq"]
    feats = Features(
        {
            **{k: Sequence(Value("string")) if k in sequences else Value("string") for k in names},
            "audio": {"bytes": Value("binary"), "path": Value("string")},
        }
    )
    tmp = path.parent / f".{path.name}.flac"
    data = {k: [r[k] for r in rows] for k in names}
    data["audio"] = [{"bytes": audio.write(tmp), "path": f"{r[names[0]]}.flac"} for r in rows]
    tmp.unlink()
    Dataset.from_dict(data, features=feats).cast_column("audio", Audio(decode=False)).to_parquet(str(path))


def _laion_tar(path: Path, audio: _Audio, samples: list[tuple[str, dict]]) -> None:
    """A tar as LAION wrote its WebDataset shards: <key>.flac then <key>.json, plain tar."""
    import io
    import tarfile

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / ".clip.flac"
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as t:
        for key, doc in samples:
            for name, data in ((f"{key}.flac", audio.write(tmp)), (f"{key}.json", json.dumps(doc).encode())):
                info = tarfile.TarInfo(name)
                info.size, info.mtime = len(data), 1_660_000_000
                t.addfile(info, io.BytesIO(data))
    tmp.unlink()


def _freesound_doc(sound_id: str, title: str, description: str, user: str, tags: list[str]) -> dict:
    """One JSON member of LAION's Freesound tars (LAION-AI/audio-dataset, data_card/freesound.md)."""
    return {
        "text": [title.rsplit(".", 1)[0].replace("_", " "), description],
        "tag": tags,
        "original_data": {
            "tags": tags,
            "description": description,
            "username": user,
            "download_url": f"https://freesound.org/apiv2/sounds/{sound_id}/download/",
            "title": title,
            "id": int(sound_id),
        },
    }


def build_hub_copies(root: Path) -> tuple[Path, Path]:
    """$HUB and $LISTS under ``root``: each copy with a few clips, each list naming one clip more."""
    audio = _Audio()
    hub, lists = root / "hub", root / "lists"
    lists.mkdir(parents=True, exist_ok=True)
    header = (
        "# Segments csv created Sun Mar  5 10:54:31 2017\n# num_ytids\n"
        "# YTID, start_seconds, end_seconds, positive_labels\n"
    )

    # agkphysics/AudioSet: Parquet, video_id + labels (ontology ids) + human_labels (their names)
    _hub_readme(
        hub / "AudioSet",
        {
            "balanced": {"train": "data/bal_train/*.parquet", "test": "data/eval/*.parquet"},
            "unbalanced": {"train": "data/unbal_train/*.parquet"},
        },
    )
    mids = {
        "Speech": "/m/09x0r",
        "Dog": "/m/0bt9lr",
        "Music": "/m/04rlf",
        "Rain": "/m/06mb1",
        "Bark": "/m/05tny_",
    }

    def as_row(ytid: str, *names: str) -> dict:
        return {"video_id": ytid, "labels": [mids[n] for n in names], "human_labels": list(names)}

    a = hub / "AudioSet" / "data"
    seq = ("labels", "human_labels")
    _hub_parquet(a / "bal_train" / "00.parquet", audio, [as_row("balbalbal01", "Speech")], seq)
    _hub_parquet(a / "eval" / "00.parquet", audio, [as_row("evalevalev1", "Dog", "Bark")], seq)
    _hub_parquet(
        a / "unbal_train" / "00.parquet",
        audio,
        [as_row(AS_UNBAL[0], "Music"), as_row(AS_UNBAL[1], "Rain"), as_row(AS_UNBAL[2], "Speech")],
        seq,
    )
    _text(
        lists / "unbalanced_train_segments.csv",
        header + "".join(f'{y}, 0.000, 10.000, "/m/09x0r"\n' for y in AS_UNBAL_LISTED),
    )
    _text(lists / "eval_segments.csv", header + 'evalevalev1, 0.000, 10.000, "/m/0bt9lr"\n')

    # an AudioSet WebDataset mirror at 16 kHz: tars whose JSON holds the YouTube id and ontology ids only
    _hub_readme(hub / "AudioSet16k", {"default": {"train": "unbalanced/*.tar"}})
    _laion_tar(
        hub / "AudioSet16k" / "unbalanced" / "000000.tar",
        audio,
        [(y, {"video_id": y, "mids": ["/m/09x0r", "/m/05tny_"], "start_time": 30.0}) for y in AS_WDS],
    )

    # Meranti/CLAP_freesound: LAION's tars per split folder, sizes.json, and the metadata CSVs at the top
    fs = hub / "CLAP_freesound"
    _hub_readme(fs, None, {"task_categories": ["audio-classification"], "pretty_name": "freesound"})
    meta = ["audio_filename,caption_1,caption_2,freesound_id,username,freesound_url,license\n"]
    key = 2394
    for folder, ids in FS_LAION.items():
        samples = []
        for sound_id in ids:
            user = f"user{sound_id}"
            title, text = f"Sound_number_{sound_id}.wav", f"A recording numbered {sound_id}."
            samples.append((str(key), _freesound_doc(sound_id, title, text, user, ["field-recording"])))
            if sound_id != FS_NOT_IN_META:
                meta.append(
                    f"{key}.flac,Sound number {sound_id},{text},{sound_id},{user},"
                    f"https://freesound.org/people/{user}/sounds/{sound_id}/,"
                    "http://creativecommons.org/licenses/by/3.0/\n"
                )
            key += 1
        _laion_tar(fs / "freesound_no_overlap" / folder / "0.tar", audio, samples)
        _text(fs / "freesound_no_overlap" / folder / "sizes.json", json.dumps({"0.tar": len(samples)}))
    _text(fs / "freesound_no_overlap_meta.csv", "".join(meta))

    # cvssp/WavCaps: JSON per subset, FreeSound's zip split in parts (Info-ZIP), BBC's in one, blacklists
    w = hub / "WavCaps"
    zips = w / "Zip_files" / "FreeSound"
    zips.mkdir(parents=True, exist_ok=True)
    for part in sorted((SPLIT_ZIP / "Zip_files" / "FreeSound").iterdir()):
        (zips / part.name).write_bytes(part.read_bytes())
    members = json.loads((SPLIT_ZIP / "members.json").read_text())
    entries = [
        {
            "id": m.rsplit("/", 1)[1].split(".")[0],
            "file_name": f"{m.rsplit('/', 1)[1].split('.')[0]}.wav",
            "caption": f"A tone, clip {m.rsplit('/', 1)[1].split('.')[0]}.",
            "author": "tone_maker",
            "duration": 1.0,
            "download_link": "https://freesound.org/people/tone_maker/sounds/"
            + m.rsplit("/", 1)[1].split(".")[0]
            + "/download/",
        }
        for m in members
    ]
    _text(
        w / "json_files" / "FreeSound" / "fsd_final.json",
        json.dumps({"num_captions_per_audio": 1, "data": entries}),
    )
    bbc = {
        "id": "07070114",
        "description": "Birds at dawn.",
        "caption": "Birds chirp at dawn.",
        "duration": 1.0,
    }
    _text(w / "json_files" / "BBC_Sound_Effects" / "bbc_final.json", json.dumps({"data": [bbc]}))
    import zipfile

    (w / "Zip_files" / "BBC_Sound_Effects").mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(w / "Zip_files" / "BBC_Sound_Effects" / "BBC_Sound_Effects.zip", "w") as z:
        tmp = w / ".bbc.flac"
        z.writestr("BBC_Sound_Effects_flac/07070114.flac", audio.write(tmp))
        tmp.unlink()
    blacklist = w / "json_files" / "blacklist"
    _text(
        blacklist / "blacklist_exclude_test_ac.json",
        json.dumps(
            {
                "AudioSet": [f"Y{AS_UNBAL[2]}.wav", "YvfY_TJq7n_U.wav"],
                "FreeSound": [FS_BLACKLISTED, "166426"],
            },
            indent=4,
        ),
    )
    _text(
        blacklist / "blacklist_exclude_ub8k_esc50_vggsound.json",
        json.dumps({"AudioSet": ["Ytw76HGONaKg.wav"], "FreeSound": [WAVCAPS_FS_BLACKLISTED]}, indent=4),
    )

    # Hub copies of AudioCaps and Clotho with an Audio column
    _hub_readme(
        hub / "AudioCaps", {"default": {s: f"data/{s}-*.parquet" for s in ("train", "validation", "test")}}
    )
    for split, yid in (("train", "capcapcap01"), ("validation", "capcapval01"), ("test", "capcaptest1")):
        rows = [{"youtube_id": yid, "caption": f"A {split} caption."}]
        _hub_parquet(hub / "AudioCaps" / "data" / f"{split}-00000-of-00001.parquet", audio, rows)
    _text(
        lists / "train.csv",
        "audiocap_id,youtube_id,start_time,caption\n1,capcapcap01,0,x\n2,capmissing1,0,y\n",
    )
    _text(
        lists / "val.csv", "audiocap_id,youtube_id,start_time,caption\n3,capcapval01,0,a\n4,capcapval01,0,b\n"
    )
    _text(lists / "test.csv", "audiocap_id,youtube_id,start_time,caption\n5,capcaptest1,0,c\n")
    _hub_readme(
        hub / "Clotho",
        {"default": {s: f"{s}/*.parquet" for s in ("development", "validation", "evaluation")}},
    )
    for split in ("development", "validation", "evaluation"):
        name = f"{split} sound.wav"
        _hub_parquet(
            hub / "Clotho" / split / "0.parquet", audio, [{"file_name": name, "caption": f"{split}."}]
        )
        _text(lists / f"clotho_captions_{split}.csv", f"file_name,caption_1\n{name},A sound.\n")
    return hub, lists


def _esc50(d: Path, audio: _Audio) -> None:
    # ESC-50 as its repository ships it: meta/esc50.csv, audio/<fold>-<freesound id>-<take>-<target>.wav
    _text(
        d / "meta" / "esc50.csv",
        "filename,fold,target,category,esc10,src_file,take\n"
        "1-100032-A-0.wav,1,0,dog,True,100032,A\n"
        f"1-{FS_IN_ESC50}-A-32.wav,1,32,keyboard_typing,False,{FS_IN_ESC50},A\n",
    )
    audio.write(d / "audio" / "1-100032-A-0.wav")
    audio.write(d / "audio" / f"1-{FS_IN_ESC50}-A-32.wav")


def _urbansound8k(d: Path, audio: _Audio) -> None:
    # UrbanSound8K as its archive unpacks: metadata/UrbanSound8K.csv, audio/fold<N>/<fsID>-<class>-...wav
    _text(
        d / "metadata" / "UrbanSound8K.csv",
        "slice_file_name,fsID,start,end,salience,fold,classID,class\n"
        "100263-2-0-117.wav,100263,58.5,62.5,1,5,2,children_playing\n"
        "7061-6-0-0.wav,7061,0.0,2.5,1,10,6,gun_shot\n",
    )
    audio.write(d / "audio" / "fold5" / "100263-2-0-117.wav")
    audio.write(d / "audio" / "fold10" / "7061-6-0-0.wav")
