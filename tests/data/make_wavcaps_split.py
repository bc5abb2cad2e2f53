"""Makes tests/data/wavcaps/: WavCaps' FreeSound subset in miniature, its audio in a zip split in parts
exactly as WavCaps ships it (made by Info-ZIP's own `zip -s`, Zip64 records as large archives have).

    python tests/data/make_wavcaps_split.py        # needs Info-ZIP's zip (apt-get install zip)

Writes FreeSound.z01 and FreeSound.zip (Info-ZIP's smallest part size is 64 KiB: eleven FLAC tones,
about 7 KB a second once deflated, make one full part and the last one, with one member running across
the two and one wholly in the last) and members.json
(each member's SHA-256, what the reader must give back). The committed files are this script's output
with Info-ZIP 3.0; the tests read them and need no `zip` (tests/test_split_zips.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # the repository, for clap_corpus when run as a script

# WavCaps FreeSound ids (fsd_final.json's "id"); each clip a tone of its own pitch
CLIPS = {str(180913 + i): 330.0 * 2 ** (i / 6) for i in range(11)}
LONG = {"180922": 2.5}  # seconds; the others 1 s: this one starts in the first part and ends in the last
STAMP = 1_600_000_000  # every file's mtime, so the archive's timestamps do not depend on the day


def main() -> None:
    from clap_corpus.pipeline.demo import synth

    out = HERE / "wavcaps" / "Zip_files" / "FreeSound"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "FreeSound_flac"
        folder.mkdir()
        for sound_id, freq in CLIPS.items():
            path = folder / f"{sound_id}.flac"
            seconds = LONG.get(sound_id, 1.0)
            path.write_bytes(synth.encode_audio(synth.tone(freq, seconds, 16000), 16000, "flac"))
            os.utime(path, (STAMP, STAMP))
        os.utime(folder, (STAMP, STAMP))
        # -X: no extra attributes (uid/gid); -fz: Zip64 records; -s 64k: parts of 64 KiB. The files
        # are named in order (not -r), so the members' order does not depend on the file system.
        names = ["FreeSound_flac/", *(f"FreeSound_flac/{i}.flac" for i in CLIPS)]
        subprocess.run(
            ["zip", "-q", "-X", "-fz", "-s", "64k", "FreeSound.zip", *names],
            cwd=tmp,
            check=True,
            env={**os.environ, "TZ": "UTC"},
        )
        for old in out.glob("FreeSound.z*"):
            old.unlink()
        for part in sorted(Path(tmp).glob("FreeSound.z*")):
            shutil.copyfile(part, out / part.name)
        digests = {
            f"FreeSound_flac/{p.name}": hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.iterdir())
        }
    (HERE / "wavcaps" / "members.json").write_text(json.dumps(digests, indent=1) + "\n")
    print("\n".join(f"{p.name} {p.stat().st_size}" for p in sorted(out.iterdir())))


if __name__ == "__main__":
    main()
