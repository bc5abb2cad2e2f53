"""The dataset card: ``<out>/README.md`` in the style of Hugging Face dataset cards.

YAML front matter (licenses, task categories, size category, and ``configs`` that point at the
Parquet shards, so ``datasets.load_dataset(<out>)`` reads the corpus as it is),
then the usual sections: summary, sources and licenses, structure, splits, how to load, creation,
considerations. Built from ``summary.json`` alone; the same summary always gives the same bytes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import yaml

from clap_corpus.core.layout import Layout
from clap_corpus.core.schema import field_table
from clap_corpus.pipeline.outputs.summary import COVERAGE_HEADER, coverage_rows
from clap_corpus.pipeline.outputs.summary_model import RunSummary
from clap_corpus.transforms import storage

# License ids the Hugging Face Hub knows, that corpus sources use.
HF_LICENSES = frozenset(
    {
        "apache-2.0",
        "mit",
        "cc0-1.0",
        "odc-by",
        "pddl",
        *(
            f"cc-{kind}-{v}"
            for kind in ("by", "by-sa", "by-nc", "by-nd", "by-nc-sa", "by-nc-nd")
            for v in ("2.0", "2.5", "3.0", "4.0")
        ),
    }
)
_CC_URL = re.compile(r"creativecommons\.org/licenses/([a-z-]+)/(\d\.\d)")
_SPLIT_OK = re.compile(r"^\w+(\.\w+)*$")  # what `datasets` accepts as a split name


def hf_license(text: str | None) -> str:
    """A per-sample license string (SPDX id, Creative Commons URL or name) as a Hub license id.

    Anything not recognised is "other" (the card lists the original strings); no license is "unknown".
    """
    if text is None or not text.strip() or text.strip().lower() == "unknown":
        return "unknown"
    t = " ".join(text.strip().lower().split())
    if "publicdomain/zero" in t or t in {"cc0", "cc0 1.0", "cc0-1.0", "creative commons 0"}:
        return "cc0-1.0"
    m = _CC_URL.search(t)
    if m:
        cand = f"cc-{m.group(1)}-{m.group(2)}"
        return cand if cand in HF_LICENSES else "other"
    cand = re.sub(r"[\s_]+", "-", t)
    cand = re.sub(r"^creative-commons-(attribution|by)", "cc-by", cand)
    cand = re.sub(r"^cc-?by", "cc-by", cand)
    return cand if cand in HF_LICENSES else "other"


def size_category(n: int) -> str:
    for limit, name in (
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
        (10_000_000, "1M<n<10M"),
        (100_000_000, "10M<n<100M"),
    ):
        if n < limit:
            return name
    return "100M<n<1B"


def front_matter(summary: RunSummary) -> dict[str, Any]:
    licenses = sorted(
        {
            hf_license(lic)
            for counts in summary.distributions.get("licenses_by_source", {}).values()
            for lic in counts
        }
    ) or ["unknown"]
    splits = [s for s in split_order(summary.splits) if _SPLIT_OK.match(s)]
    configs = []
    # Paths relative to the card's folder, with forward slashes, as the Hub and `datasets` expect.
    if summary.outputs.parquet is not None and splits:
        configs.append(
            {
                "config_name": "default",
                "data_files": [{"split": s, "path": f"parquet/{s}/*.parquet"} for s in splits],
            }
        )
    # One config only: `datasets` picks one builder for the whole card from the first config's
    # files, so a config pointing at the tars would be read as Parquet. The tars load with
    # load_dataset("webdataset", data_files=...), as the card says.
    return {
        "pretty_name": f"{summary.corpus} (audio-caption pairs for CLAP)",
        "license": licenses,
        "task_categories": ["audio-classification", "zero-shot-classification", "text-to-audio"],
        "tags": ["audio", "audio-text", "clap", "webdataset"],
        "size_categories": [size_category(summary.samples)],
        **({"configs": configs} if configs else {}),
    }


def split_order(splits: Iterable[str]) -> list[str]:
    """train first, then validation, then test, then the rest by name (the order cards use)."""
    rank = {"train": 0, "valid": 1, "validation": 1, "dev": 1, "test": 2, "eval": 2}
    return sorted(splits, key=lambda s: (rank.get(s, 3), s))


def _rel(path: str) -> str:
    return path.replace("\\", "/").removeprefix("./")


def _table(header: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, int) and not isinstance(v, bool):
            return f"{v:,}"
        if isinstance(v, float):
            return f"{v:,.2f}"
        return "" if v is None else str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def render_card(summary: RunSummary) -> str:
    corpus = summary.corpus
    layout = Layout(".", corpus)
    dist = summary.distributions
    licenses = dist.get("licenses_by_source", {})
    samples = summary.samples
    k2c = summary.k2c_captions
    splits = {k: summary.splits[k] for k in split_order(summary.splits)}
    first_split = next(iter(splits), "train")
    wds_dir = _rel(layout.webdataset_dir(first_split))
    fm = yaml.safe_dump(front_matter(summary), sort_keys=False, allow_unicode=True, width=1000)
    out = [f"---\n{fm}---\n", f"# Dataset card for `{corpus}`\n"]
    out.append("## Dataset summary\n")
    out.append(
        f"{samples:,} audio-caption pairs, {summary.hours:,.2f} hours of audio, from "
        f"{len(summary.sources)} source(s), in the format LAION-CLAP trains on: WebDataset "
        "shards (`<key>.flac` + `<key>.json` + `<key>.mel.npy`, a `sizes.json` per split) and the same "
        "samples as Parquet with a Hugging Face `Audio` column. Audio is mono 48 kHz 16-bit FLAC. "
        f"Built by clap-corpus from the spec `{summary.spec}` "
        f"(fingerprint `{summary.spec_fingerprint[:16]}`).\n"
    )
    guards = {
        name: s.rejects_before_sharding["guard_only"]
        for name, s in summary.sources.items()
        if s.rejects_before_sharding.get("guard_only")
    }
    if guards:  # guard-only sources: read to keep their clips out of training, never written
        out.append(
            "Training clips that overlap these evaluation sets (by id, decoded audio and, with CLAP "
            "scoring, audio embedding) were removed; the sets themselves are not part of this dataset: "
            + ", ".join(f"`{name}` ({n:,} clips)" for name, n in guards.items())
            + ".\n"
        )
    out.append("## Sources and licenses\n")
    out.append(
        "Every sample carries its own `license` and `attribution` fields; the licenses below are counted "
        "over the samples of each source. Reusing a sample means following its license.\n"
    )
    rows = []
    for name, s in summary.sources.items():
        lic = licenses.get(name, {})
        rows.append(
            [
                name,
                s.samples,
                s.hours,
                s.rejects,
                "; ".join(f"{k} ({v:,})" for k, v in lic.items()),
                ", ".join(sorted({hf_license(k) for k in lic})),
            ]
        )
    out.append(
        _table(["source", "samples", "hours", "rejected inputs", "licenses (samples)", "Hub id"], rows)
    )
    covered = coverage_rows(summary.sources)
    if covered:
        out.append("\n### Coverage of the official lists\n")
        out.append(
            "Sources built from a mirror, against the official list each is meant to cover; the rows the "
            "mirror lacks are listed in `rejects/manifest/<source>.jsonl` (code `not_in_mirror`).\n"
        )
        out.append(_table(COVERAGE_HEADER, covered))
    excluded = summary.stages.get("exclude")
    if excluded:
        by = "; ".join(f"`{k}` ({v:,})" for k, v in excluded.get("removed_by_list", {}).items()) or "none"
        out.append("\n### Exclusion lists\n")
        out.append(
            f"{excluded['removed']:,} clips were left out because an exclusion list names them (their "
            f"rejects have code `excluded`): {by}. Lists applied: "
            + ", ".join(f"`{f}`" for f in excluded.get("lists", []))
            + ".\n"
        )
    out.append("\n## Dataset structure\n")
    out.append(
        f"- `{wds_dir.rsplit('/', 1)[0]}/<split>/<shard>.tar` and `sizes.json`: WebDataset, for LAION-CLAP "
        "and the `webdataset` library.\n"
        "- `parquet/<split>/<shard>.parquet`: the same samples; `audio` is `{bytes, path}` (FLAC) and "
        "loads as `Audio(sampling_rate=48000)` in `datasets`.\n"
        "- `summary.json`, `report/` (run report), `rejects/` (every input that gave no sample, with the "
        "reason), `stats/` (per shard).\n"
    )
    out.append("### Data fields\n")
    features = ("clap",) if "clap" in summary.stages else ()  # CLAP scoring's fields
    out.append(_table(["field", "type", "meaning"], [list(f) for f in field_table(features)]))
    out.append("\n### Data splits\n")
    out.append(
        _table(
            ["split", "shards", "samples"],
            [[k, v.shards, v.samples] for k, v in splits.items()],
        )
    )
    out.append("\n## How to load\n")
    out.append(
        "```python\n"
        "import io, json, soundfile, datasets, webdataset as wds\n\n"
        "# Parquet (this card's config; on the Hub, the repository id): `audio` is Audio(48 kHz).\n"
        "# Decoding it inside datasets needs torchcodec + FFmpeg's shared libraries; the FLAC bytes with\n"
        "# soundfile do not, and sampling_rate=48000 keeps the rate in the features.\n"
        'ds = datasets.load_dataset("path/to/this/folder")\n'
        'raw = ds.cast_column("audio", datasets.Audio(sampling_rate=48000, decode=False))\n'
        f'audio, rate = soundfile.read(io.BytesIO(raw["{first_split}"][0]["audio"]["bytes"]))\n\n'
        "# WebDataset, as LAION-CLAP reads it: shard list from sizes.json, soundfile on the FLAC.\n"
        f'sizes = json.load(open("{wds_dir}/sizes.json"))\n'
        f'urls = ["{wds_dir}/" + name for name, n in sizes.items() if n]\n'
        "for sample in wds.WebDataset(urls, shardshuffle=False):\n"
        '    audio, rate = soundfile.read(io.BytesIO(sample["flac"]))\n'
        '    captions = json.loads(sample["json"])["text"]\n\n'
        "# The same tars through `datasets`: name the features (the inferred ones type the FLAC as Audio,\n"
        "# and keep only the JSON keys the first few samples have).\n"
        "F = datasets.Features({\n"
        '    "__key__": datasets.Value("string"), "__url__": datasets.Value("string"),\n'
        '    "flac": datasets.Value("binary"), "json": datasets.Json(),\n'
        '    "mel.npy": datasets.Array3D((4, 1001, 64), "float16"),\n'
        "})\n"
        f'tars = datasets.load_dataset("webdataset", data_files={{"{first_split}": urls}}, features=F)\n\n'
        "import pandas as pd\n"
        f'df = pd.read_parquet("parquet/{first_split}")\n'
        "```\n"
    )
    out.append("## Dataset creation\n")
    kinds = dist.get("caption_kinds", {})
    out.append(
        "Each input was decoded (FFmpeg through PyAV), mixed down to mono, resampled to 48 kHz, quantised "
        "to 16 bits and stored as FLAC, with LAION-CLAP's four mel views precomputed from crop starts "
        "seeded by the sample key. Inputs that could not be used are listed in `rejects/` with the "
        f"reason; this build has {summary.rejects:,} of them "
        f"({', '.join(f'{k} {v:,}' for k, v in summary.rejects_by_code.items()) or 'none'}).\n\n"
        f"Captions by origin: {', '.join(f'{k} {v:,}' for k, v in kinds.items()) or 'n/a'}. "
        f"{k2c:,} samples ({100 * k2c / samples if samples else 0:.1f}%) carry a caption generated from "
        "keywords by a T5 model (keyword-to-caption), after a gender-debiasing pass.\n"
    )
    if summary.stages:
        out.append(
            "Record stages of this build: "
            + ", ".join(f"`{name}`" for name in summary.stages)
            + " (details in "
            "`summary.json` and `report/`).\n"
        )
    out.append("## Considerations\n")
    out.append(
        "- Generated (K2C) and template captions describe labels or keywords, not what is audible; "
        "they can be wrong or generic.\n"
        "- Licenses differ per clip, including non-commercial ones: filter on `license` for your use.\n"
        "- Splits follow the sources' official splits where they have them; clips without one are "
        "split by a stable hash of their key.\n"
    )
    return "\n".join(out)


def write_card(summary: RunSummary) -> str:
    layout = Layout(summary.output, summary.corpus)
    storage.write_bytes_atomic(layout.card_path(), render_card(summary).encode())
    return layout.card_path()
