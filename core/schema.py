"""The sample schema, declared once: every field a sample ships with, its type and its meaning.

From :data:`FIELDS` come the ``<key>.json`` document's field set, the Parquet schema with its Hugging
Face ``datasets`` features (so ``load_dataset("parquet")`` gives an ``Audio`` column at 48 kHz without a
cast), the Parquet row of a sample, the columns the trainer reads and the field table of the dataset
card. The features are written as ``datasets`` itself writes them (a test builds
``datasets.Features`` from them and compares its Arrow schema with ours); ``datasets`` is not imported
here because it costs every process that touches a shard about 1.3 s of start-up.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from clap_corpus.core.audio import SAMPLE_RATE
from clap_corpus.core.encoding import dumps_json
from clap_corpus.core.layout import FLAC, member_name

# kind -> (Arrow type in Parquet, Hugging Face feature, type name for people)
_STRING = {"dtype": "string", "_type": "Value"}
KINDS: dict[str, tuple[pa.DataType | None, dict[str, Any] | None, str]] = {
    "string": (pa.string(), _STRING, "string"),
    "strings": (pa.list_(pa.string()), {"feature": _STRING, "_type": "List"}, "list of strings"),
    "float": (pa.float64(), {"dtype": "float64", "_type": "Value"}, "float"),
    "floats": (
        pa.list_(pa.float64()),
        {"feature": {"dtype": "float64", "_type": "Value"}, "_type": "List"},
        "list of floats",
    ),
    "int": (pa.int32(), {"dtype": "int32", "_type": "Value"}, "int"),
    "bool": (pa.bool_(), {"dtype": "bool", "_type": "Value"}, "bool"),
    # an object in the JSON document, its JSON text (core.encoding) in Parquet
    "json": (pa.string(), _STRING, "JSON"),
    "audio": (
        pa.struct([("bytes", pa.binary()), ("path", pa.string())]),
        {"_type": "Audio", "sampling_rate": SAMPLE_RATE},
        "audio (FLAC bytes + member name)",
    ),
}


@dataclass(frozen=True)
class Field:
    name: str
    kind: str  # a key of KINDS
    doc: str
    json: bool = True  # in the <key>.json document
    parquet: bool = True  # a Parquet column
    optional: bool = False  # in the JSON document only when the sample has it (K2C fields)
    # A feature the spec switches on ("clap": options.clap): the field, JSON and Parquet column alike,
    # exists only in corpora built with it, so a corpus built without it keeps its schema to the byte.
    feature: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"field {self.name}: unknown kind {self.kind!r}")


# In Parquet column order. LAION-CLAP reads `text`, `tag` and `text_augment_*` from the JSON document;
# `original_data` is its name for the free-form source metadata.
FIELDS: tuple[Field, ...] = (
    Field("key", "string", "the sample key; tar members are `<key>.flac`, `<key>.json`, `<key>.mel.npy`"),
    Field("audio", "audio", "mono 48 kHz 16-bit FLAC (the tar's `<key>.flac`)", json=False),
    Field("text", "strings", "captions; LAION-CLAP draws one per epoch"),
    Field("tag", "strings", "labels then keywords (LAION's singular `tag`)"),
    Field("labels", "strings", "class labels of the source"),
    Field("keywords", "strings", "free keywords / tags of the source"),
    Field("caption_kind", "string", "source, template, k2c or mixed"),
    Field("text_augment_t5", "string", "keyword-to-caption (T5) caption, when generated", optional=True),
    Field(
        "text_augment_all",
        "strings",
        "original captions plus the generated one, when generated",
        parquet=False,
        optional=True,
    ),
    Field("source", "string", "the source's name in the corpus spec"),
    Field("source_id", "string", "the clip's id inside its source"),
    Field("split", "string", "the split the sample belongs to"),
    Field("license", "string", "per clip, as the source states it"),
    Field("attribution", "string", "per clip, as the source states it"),
    Field("origin_ids", "strings", "cross-source identities (youtube:..., freesound:...)"),
    Field("duration", "float", "seconds, after decoding (at most the spec's max_duration_s)"),
    Field("sample_rate", "int", "always 48000", parquet=False),
    Field("truncated", "bool", "the file was longer than max_duration_s"),
    Field("incomplete", "bool", "the decode ended well before the length the file declares"),
    Field("declared_duration", "float", "the length the file's header declares, when it does"),
    Field("peak_dbfs", "float", "peak level of the stored audio, dB relative to int16 full scale"),
    Field("rms_dbfs", "float", "RMS level of the stored audio, dBFS"),
    Field("silent_fraction", "float", "share of 20 ms frames under -60 dBFS"),
    Field("original_sample_rate", "int", "of the file"),
    Field("original_channels", "int", "of the file"),
    Field("original_codec", "string", "of the file"),
    Field("longer", "bool", "LAION-CLAP fusion: the clip is longer than 10 s"),
    Field("view_plan", "json", "LAION-CLAP fusion views: mode and crop starts"),
    Field("original_data", "json", "free-form source metadata"),
    Field(
        "clap_score",
        "float",
        "CLAP cosine of the audio and its best caption (options.clap)",
        optional=True,
        feature="clap",
    ),
    Field(
        "clap_scores",
        "floats",
        "CLAP cosine of the audio and each caption of `text`, in order (options.clap)",
        optional=True,
        feature="clap",
    ),
)

FEATURES = frozenset(f.feature for f in FIELDS if f.feature)
JSON_FIELDS = frozenset(f.name for f in FIELDS if f.json)
REQUIRED_JSON_FIELDS = frozenset(f.name for f in FIELDS if f.json and not f.optional)
PARQUET_COLUMNS = tuple(f.name for f in FIELDS if f.parquet and not f.feature)
# Dictionary-encoded Parquet columns: few distinct values per shard.
DICTIONARY_COLUMNS = ("source", "split", "license", "caption_kind", "original_codec")


def fields_with(features: frozenset[str] | tuple[str, ...] = ()) -> tuple[Field, ...]:
    """The fields of a corpus built with ``features`` on (``()``: the default schema)."""
    unknown = set(features) - FEATURES
    if unknown:
        raise ValueError(f"unknown schema features {sorted(unknown)} (known: {sorted(FEATURES)})")
    return tuple(f for f in FIELDS if not f.feature or f.feature in features)


def hf_features(features: frozenset[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """The Parquet columns as Hugging Face ``datasets`` features (``Features.to_dict()`` form)."""
    return {f.name: KINDS[f.kind][1] for f in fields_with(features) if f.parquet}


def parquet_schema(features: frozenset[str] | tuple[str, ...] = ()) -> pa.Schema:
    """The Parquet schema of a corpus built with ``features`` on."""
    return pa.schema(
        [(f.name, KINDS[f.kind][0]) for f in fields_with(features) if f.parquet],
        # sort_keys: the metadata's bytes must not depend on dict order
        metadata={
            b"huggingface": json.dumps({"info": {"features": hf_features(features)}}, sort_keys=True).encode()
        },
    )


PARQUET_SCHEMA = parquet_schema()


def check_document(doc: Mapping[str, Any]) -> None:
    """Raise ValueError unless ``doc`` holds every required JSON field and nothing undeclared."""
    missing = REQUIRED_JSON_FIELDS - set(doc)
    extra = set(doc) - JSON_FIELDS
    if missing or extra:
        raise ValueError(f"sample document: missing {sorted(missing)}, undeclared {sorted(extra)}")


def parquet_row(
    key: str, flac: bytes, doc: Mapping[str, Any], features: frozenset[str] | tuple[str, ...] = ()
) -> dict[str, Any]:
    """The Parquet row of a sample from its FLAC bytes and its JSON document."""
    row: dict[str, Any] = {}
    for f in fields_with(features):
        if not f.parquet:
            continue
        if f.kind == "audio":
            row[f.name] = {"bytes": flac, "path": member_name(key, FLAC)}
        elif f.kind == "json":
            row[f.name] = dumps_json(doc[f.name]).decode()
        else:
            row[f.name] = doc.get(f.name) if f.optional else doc[f.name]
    return row


def field_table(features: frozenset[str] | tuple[str, ...] = ()) -> list[tuple[str, str, str]]:
    """(name, type, meaning) per field, for people (the dataset card)."""
    out = []
    for f in fields_with(features):
        where = "" if f.json and f.parquet else (" (JSON only)" if f.json else " (Parquet only)")
        out.append((f.name, KINDS[f.kind][2], f.doc + where))
    return out
