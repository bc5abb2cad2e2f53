"""The sample schema of core/schema.py against the libraries that read it."""

from __future__ import annotations

import json

import datasets
import pytest

from clap_corpus.core.schema import (
    FIELDS,
    JSON_FIELDS,
    PARQUET_COLUMNS,
    PARQUET_SCHEMA,
    check_document,
    hf_features,
)


def test_parquet_schema_is_what_datasets_makes_of_the_features():
    features = datasets.Features.from_dict(hf_features())
    assert features.arrow_schema.remove_metadata().equals(PARQUET_SCHEMA.remove_metadata())
    ours = json.loads(PARQUET_SCHEMA.metadata[b"huggingface"])
    assert ours == json.loads(features.arrow_schema.metadata[b"huggingface"])
    assert isinstance(features["audio"], datasets.Audio) and features["audio"].sampling_rate == 48_000


def test_fields_are_declared_once_and_partitioned():
    names = [f.name for f in FIELDS]
    assert len(names) == len(set(names))
    assert set(PARQUET_COLUMNS) | JSON_FIELDS == set(names)
    assert "audio" not in JSON_FIELDS and "text_augment_all" not in PARQUET_COLUMNS


def test_check_document_names_missing_and_undeclared_fields():
    doc = {f.name: None for f in FIELDS if f.json and not f.optional}
    check_document(doc)
    with pytest.raises(ValueError, match=r"missing \['text'\].*undeclared \['txet'\]"):
        check_document({**{k: v for k, v in doc.items() if k != "text"}, "txet": []})
