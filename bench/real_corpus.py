"""A benchmark corpus of real recordings, built from Debian's packages and espeak-ng.

Synthetic tones and noise compress and decode unlike recordings, so ``clapcorpus bench --corpus``
is meant to run on real ones. This script gathers a reproducible set from what Debian ships: game and
desktop sound effects, game music, and sentences spoken by espeak-ng in several languages, and
re-encodes a fixed share of them into the codecs people actually meet (MP3, AAC, WMA, MP2, Speex,
ALAC, mu-law, 24-bit and float WAV, ...), so the corpus spans a dozen codecs, rates from 8 to 96 kHz,
mono and stereo, and clips from a tenth of a second to several minutes.

Needs the packages below and the ``ffmpeg`` and ``espeak-ng`` programs (benchmark only; the product
needs neither)::

    apt-get install ffmpeg espeak-ng sound-theme-freedesktop oxygen-sounds frozen-bubble-data \\
        pingus-data lincity-ng-data extremetuxracer-data lbreakout2-data chromium-bsu-data \\
        wesnoth-1.16-music warzone2100-music
    python -m bench.real_corpus OUT_DIR
    clapcorpus bench --corpus OUT_DIR

The same packages give the same corpus: files are taken in sorted order, and which file goes to which
codec is decided by its position, not by chance. ``OUT_DIR/corpus.json`` describes what was built.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections import Counter

# (package, how many of its audio files to take: None = all). Warzone 2100's soundtrack alone is
# 4 h of Opus: eight tracks keep the corpus near four hours with music still about half of it.
PACKAGES: tuple[tuple[str, int | None], ...] = (
    ("sound-theme-freedesktop", None),
    ("oxygen-sounds", None),
    ("frozen-bubble-data", None),
    ("pingus-data", None),
    ("lincity-ng-data", None),
    ("extremetuxracer-data", None),
    ("lbreakout2-data", None),
    ("chromium-bsu-data", None),
    ("wesnoth-1.16-music", None),
    ("warzone2100-music", 8),
)
SUFFIXES = (".wav", ".ogg", ".oga", ".opus", ".flac", ".mp3")

# Re-encodings, given in turn to every other short file (sound effects and speech; music keeps its
# Ogg/Opus): suffix and ffmpeg output arguments.
RECODES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (".mp3", ("-c:a", "libmp3lame", "-b:a", "128k")),
    (".m4a", ("-c:a", "aac", "-b:a", "96k")),
    (".wma", ("-c:a", "wmav2", "-b:a", "96k", "-ar", "44100")),  # WMA stops at 48 kHz
    (".mp2", ("-c:a", "mp2", "-b:a", "192k", "-ar", "32000")),
    (".spx", ("-c:a", "libspeex", "-ar", "16000", "-ac", "1")),
    (".caf", ("-c:a", "alac")),
    (".au", ("-c:a", "pcm_mulaw", "-ar", "8000", "-ac", "1")),
    (
        ".aiff",
        (
            "-c:a",
            "pcm_s16be",
        ),
    ),
    (".flac", ("-c:a", "flac", "-sample_fmt", "s32", "-ar", "96000")),
    (".wav", ("-c:a", "pcm_f32le", "-ar", "44100", "-ac", "2")),
    (".webm", ("-c:a", "libopus", "-b:a", "64k")),
    (".mka", ("-c:a", "libvorbis", "-q:a", "4")),
)

# espeak-ng: sentences in several languages and voices, at a few speeds.
SENTENCES = (
    ("en", "A dog barks twice in the distance while rain falls on a tin roof."),
    ("en", "The train doors close with a hiss, and the carriage starts to move."),
    ("en-us", "Please leave a message after the tone, and I will call you back."),
    ("en-us", "Wind rushes through the tall grass as thunder rolls far away."),
    ("de", "Die Glocken der Kirche läuten am Sonntagmorgen über dem Marktplatz."),
    ("fr", "Un oiseau chante dans le jardin pendant que la bouilloire siffle."),
    ("es", "El motor del coche arranca y se aleja por la calle mojada."),
    ("it", "Le onde del mare si infrangono sugli scogli al tramonto."),
    ("nl", "De fietsbel klinkt twee keer voordat de brug opengaat."),
    ("pt", "A multidão aplaude quando a banda começa a tocar."),
    ("sv", "Isen knakar under skridskorna på den frusna sjön."),
    ("pl", "Zegar na wieży wybija północ nad uśpionym miastem."),
)
VARIANTS = ("", "+f3", "+m3", "+f5", "+whisper", "+klatt")
SPEEDS = (120, 150, 180, 220)


def _run(cmd: list[str]) -> None:
    done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed: {done.stderr.strip()}")


def package_files(package: str) -> list[str]:
    listing = subprocess.run(["dpkg", "-L", package], check=True, capture_output=True, text=True).stdout
    return sorted(p for p in listing.splitlines() if p.lower().endswith(SUFFIXES) and os.path.isfile(p))


def speech(out: str) -> list[str]:
    """espeak-ng's sentences as 22.05 kHz WAV files, every sentence in every variant and speed."""
    made = []
    for i, (lang, text) in enumerate(SENTENCES):
        for j, variant in enumerate(VARIANTS):
            for speed in SPEEDS:
                path = os.path.join(out, f"speech_{i:02d}_{j}_{speed}.wav")
                _run(["espeak-ng", "-v", lang + variant, "-s", str(speed), "-w", path, text])
                made.append(path)
    return made


def build(out: str) -> dict:
    missing = [tool for tool in ("ffmpeg", "espeak-ng", "dpkg") if shutil.which(tool) is None]
    if missing:
        raise SystemExit(f"needs {', '.join(missing)} (see this script's docstring)")
    staging = os.path.join(out, ".staging")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(staging)
    short: list[tuple[str, str]] = []  # (group, path) of files that may be re-encoded
    taken: list[tuple[str, str]] = []  # (group, path) kept as distributed
    for package, limit in PACKAGES:
        try:
            files = package_files(package)
        except subprocess.CalledProcessError:
            raise SystemExit(f"package {package} is not installed (see this script's docstring)") from None
        files = files[:limit] if limit else files
        (taken if package.endswith("-music") else short).extend((package, f) for f in files)
    short.extend(("espeak-ng", f) for f in speech(staging))
    for n, (group, path) in enumerate(short):
        if n % 2:
            taken.append((group, path))
            continue
        suffix, args = RECODES[(n // 2) % len(RECODES)]
        dst = os.path.join(staging, f"recode_{n:04d}{suffix}")
        _run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", path, "-vn", *args, dst])
        taken.append((group, dst))
    rows = []
    for n, (group, path) in enumerate(taken):
        name = f"{group}__{n:04d}_{os.path.basename(path)}"
        shutil.copyfile(path, os.path.join(out, name))
        rows.append({"file": name, "group": group, "from": path if not path.startswith(staging) else None})
    shutil.rmtree(staging)
    info = {
        "files": len(rows),
        "by_group": dict(sorted(Counter(r["group"] for r in rows).items())),
        "by_suffix": dict(sorted(Counter(os.path.splitext(r["file"])[1] for r in rows).items())),
        "rows": rows,
    }
    with open(os.path.join(out, "corpus.json"), "w", encoding="utf-8") as f:
        json.dump(info, f, indent=1)
    return info


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", help="folder to (re)create with the corpus")
    args = p.parse_args(argv)
    info = build(args.out)
    print(f"{info['files']} files in {args.out}")
    print("by group: " + ", ".join(f"{k} {v}" for k, v in info["by_group"].items()))
    print("by suffix: " + ", ".join(f"{k} {v}" for k, v in info["by_suffix"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
