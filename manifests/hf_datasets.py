"""A Hugging Face ``datasets`` dataset with an Audio column, read from local files.

``audio_root`` is the dataset: a folder written by ``Dataset.save_to_disk`` (``state.json`` + Arrow
files) or ``DatasetDict.save_to_disk`` (``dataset_dict.json`` + one folder per split), or a folder of
Parquet / Arrow files as the Hub stores them (``data/train-00000-of-00002.parquet``; the split comes
from the ``<split>-NNNNN-of-NNNNN`` name). ``options.files`` lists the files explicitly instead.

A local snapshot of a Hub dataset repository, as ``hf download <id> --repo-type dataset --local-dir D``
leaves it, is read through its ``README.md``: the YAML front matter's ``configs`` (each a
``config_name`` and ``data_files``: a pattern, a list, or ``{split, path}`` entries) say which files
make each config and split. ``options.config`` picks the config (default: ``default``, or the only one)
and ``options.splits`` the native splits to read (default: all); a name the README does not have
stops the run at start, naming the ones it has. A config's files may be Parquet / Arrow with an
Audio column (read as below), WebDataset tars (read as the ``webdataset`` adapter reads them, the
config's split as their native split, the column options naming fields of the samples' JSON:
:func:`tar_options`; ``origin`` without ``id_column`` is refused there at spec load, as tars have no id
column of their own) or audio files with a ``metadata.csv`` / ``metadata.jsonl``
(``datasets``' AudioFolder: ``file_name`` names the audio, relative to the metadata file, the other
columns take the roles below). A hub id instead of a folder goes through ``hf download`` first: the
adapter reads files, never the network.

Columns come from the features that ``datasets`` writes into every file's schema (metadata key
``huggingface``): the Audio column is the one typed ``Audio`` (or ``options.audio_column``);
ClassLabel ids become their names. Other roles are found by name or set in options:
captions (caption, captions, text, sentence, description), labels (label, labels), keywords (tags,
keywords), id, split, license, attribution (attribution, author, username, uploader), duration.

Audio is either embedded bytes or a path. Embedded audio is not copied anywhere: the record's
audio is a :class:`core.audio_ref.EmbeddedCell` (file, column, row) that
:func:`transforms.audio_source.read_audio_bytes` reads when the shard is written. Reading the
metadata never touches the audio bytes (Arrow files are memory-mapped and only the bytes column's
validity is looked at; Parquet files are read without that column). A row whose audio is only a
path reads that file, relative to ``audio_root`` and under the same path rules as every other
source. Random access costs: Arrow (``save_to_disk``) files are memory-mapped and cost nothing
extra; a Parquet row is read with its whole row group (``datasets`` writes 100-row groups for
audio), so prefer ``save_to_disk`` folders for large sets.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

import yaml
from pydantic import Field

from clap_corpus.core.audio_ref import EmbeddedCell
from clap_corpus.core.records import Reject
from clap_corpus.core.rejects import Code
from clap_corpus.manifests.base import Adapter, NativeRow
from clap_corpus.manifests.common import missing_root_reason, parse_float
from clap_corpus.manifests.options import AdapterOptions, SpecPaths
from clap_corpus.manifests.source import PathRejected, resolve_audio_path
from clap_corpus.manifests.tables import NotText, RowError, jsonable, read_rows, text_list, text_value
from clap_corpus.transforms import storage

DEFAULT_DURATION_S = 10.0  # no general figure for an arbitrary dataset: an assumption, set mean_duration_s


class Options(AdapterOptions):
    files: SpecPaths | None = None  # Parquet/Arrow files of the dataset (default: found under audio_root)
    config: str | None = (
        None  # a Hub snapshot's config (README.md `configs`); default: `default` or the only one
    )
    splits: list[str] | None = None  # the native splits to read (default: every split)
    audio_column: str | None = None
    caption_columns: list[str] = Field(default_factory=list)
    label_column: str | None = None
    keyword_columns: list[str] = Field(default_factory=list)
    id_column: str | None = None
    split_column: str | None = None
    license_column: str | None = None
    attribution_column: str | None = None
    duration_column: str | None = None
    origin: str | None = None  # origin id prefix for the id column's values, e.g. 'freesound'


BATCH_ROWS = 1024
ROLES: dict[str, tuple[str, ...]] = {
    "captions": ("caption", "captions", "text", "sentence", "description"),
    "label": ("label", "labels"),
    "keywords": ("tags", "keywords"),
    "id": ("id", "audio_id", "file_id", "fname", "filename"),
    "split": ("split",),
    "license": ("license",),
    "attribution": ("attribution", "author", "username", "uploader"),
    "duration": ("duration", "length"),
}
_HUB_NAME_RE = re.compile(r"^([a-z][a-z0-9_]*?)-\d{5}-of-\d{5}$")


def dataset_files(root: str) -> list[tuple[str | None, str]]:
    """(native split or None, file) for every data file of the dataset under ``root``, in order."""
    root = root.rstrip("/")
    dd = storage.join(root, "dataset_dict.json")
    if storage.exists(dd):
        splits = json.loads(storage.read_text(dd)).get("splits", [])
        return [(s, f) for s in splits for _, f in _saved_files(storage.join(root, s), s)]
    if storage.exists(storage.join(root, "state.json")):
        return _saved_files(root, None)
    pattern_hits = storage.match(storage.join(root, "**"))
    files = sorted(p for p in pattern_hits if p.endswith((".parquet", ".arrow")))
    return [(_split_of_file(f), f) for f in files]


class HubLayoutError(ValueError):
    """A Hub snapshot's README does not have the config or split the spec names."""


def hub_configs(root: str) -> dict[str, list[tuple[str, list[str]]]] | None:
    """config name -> [(split, file patterns)] from a snapshot's README.md front matter; None when the
    folder has no README with ``configs``."""
    readme = storage.join(root.rstrip("/"), "README.md")
    if not storage.exists(readme):
        return None
    text = storage.read_text(readme).lstrip("\ufeff")
    if not text.startswith("---"):
        return None
    end = text.find("\n---", 3)
    try:
        front = yaml.safe_load(text[3:end] if end > 0 else "")
    except yaml.YAMLError as e:
        raise HubLayoutError(f"README.md front matter is not YAML: {str(e)[:200]}") from None
    configs = front.get("configs") if isinstance(front, dict) else None
    if not isinstance(configs, list):
        return None
    out: dict[str, list[tuple[str, list[str]]]] = {}
    for c in configs:
        if isinstance(c, dict):
            out[str(c.get("config_name", "default"))] = _data_files(c.get("data_files"))
    return out


def _data_files(value: Any) -> list[tuple[str, list[str]]]:
    if isinstance(value, str):
        return [("train", [value])]
    if isinstance(value, dict):  # {split: pattern(s)}
        return [(str(k), [v] if isinstance(v, str) else [str(x) for x in v]) for k, v in value.items()]
    if isinstance(value, list):
        if all(isinstance(v, str) for v in value):
            return [("train", list(value))]
        out = []
        for v in value:
            if isinstance(v, dict) and "path" in v:
                path = v["path"]
                out.append((str(v.get("split", "train")), [path] if isinstance(path, str) else list(path)))
        return out
    return []


def choose_config(
    configs: Mapping[str, list[tuple[str, list[str]]]], config: str | None, splits: list[str] | None
) -> tuple[str, list[tuple[str, list[str]]]]:
    """The config and its (split, patterns) the options name; raises :class:`HubLayoutError`."""
    names = ", ".join(sorted(configs)) or "none"
    if config is None:
        if "default" in configs:
            config = "default"
        elif len(configs) == 1:
            config = next(iter(configs))
        else:
            raise HubLayoutError(
                f"the snapshot has several configs ({names}): choose one with options.config"
            )
    if config not in configs:
        raise HubLayoutError(f"no config {config!r} in the snapshot's README.md (configs: {names})")
    parts = configs[config]
    if splits is not None:
        have = [s for s, _ in parts]
        missing = [s for s in splits if s not in have]
        if missing:
            raise HubLayoutError(
                f"config {config!r} has no split {', '.join(map(repr, missing))} (splits: {', '.join(have)})"
            )
        parts = [(s, p) for s, p in parts if s in splits]
    return config, parts


def hub_files(root: str, config: str | None, splits: list[str] | None) -> list[tuple[str | None, str]] | None:
    """(native split, file) of the chosen config of a Hub snapshot, or None when ``root`` is not one."""
    configs = hub_configs(root)
    if configs is None:
        if config is not None:
            raise HubLayoutError(f"options.config is {config!r} but {root} has no README.md with `configs`")
        return None
    _, parts = choose_config(configs, config, splits)
    out: list[tuple[str | None, str]] = []
    for split, patterns in parts:
        found: dict[str, None] = {}
        for pattern in patterns:
            full = storage.join(root.rstrip("/"), pattern)
            hits = storage.match(full) if any(c in pattern for c in "*?[") else [full]
            found.update((h, None) for h in sorted(hits) if _readable_kind(h))
        out += [(split, f) for f in found]
    return out


def _readable_kind(path: str) -> bool:
    name = path.lower().rsplit("/", 1)[-1]
    return name.endswith((".parquet", ".arrow", ".tar")) or name in METADATA_FILES


METADATA_FILES = ("metadata.csv", "metadata.jsonl")


# The column options as the webdataset adapter's JSON field options: a tar's JSON member is its row.
_TAR_FIELDS = {
    "id_column": "id_field",
    "split_column": "split_field",
    "license_column": "license_field",
    "attribution_column": "attribution_field",
    "duration_column": "duration_field",
}


def tar_options(opts: Options) -> dict[str, Any]:
    """The webdataset options that read a snapshot's tars as ``opts`` reads its Parquet: each column
    option names a field of the samples' JSON (``id_column: video_id`` -> ``id_field: video_id``), the
    Audio column is the audio member's extension, and ``origin`` makes the id field's values origin ids."""
    out: dict[str, Any] = {tar: getattr(opts, col) for col, tar in _TAR_FIELDS.items() if getattr(opts, col)}
    if opts.caption_columns:
        out["caption_fields"] = list(opts.caption_columns)
    if opts.label_column:
        out["label_fields"] = [opts.label_column]
    if opts.keyword_columns:
        out["keyword_fields"] = list(opts.keyword_columns)
    if opts.audio_column:
        out["audio_extensions"] = [opts.audio_column]
    if opts.origin and opts.id_column:
        out["origin_fields"] = {opts.id_column: opts.origin}
    return out


def check_source(source: Any) -> None:
    """At spec load: a Hub snapshot must have the config and splits the options name, and options that
    cannot apply to its files are refused rather than ignored."""
    opts = Options.read_back(source.options)
    if opts.files:
        files = list(opts.files)
    elif storage.is_url(source.audio_root) or not os.path.isdir(source.audio_root):
        return
    else:
        found = hub_files(source.audio_root, opts.config, opts.splits)
        files = [f for _, f in found] if found is not None else []
    if any(f.lower().endswith(".tar") for f in files) and opts.origin and not opts.id_column:
        raise ValueError(
            "origin: the snapshot's files are WebDataset tars, whose ids are <tar>/<key>: name the JSON "
            "field that holds the clip's id with id_column (its values become the origin ids)"
        )


def _saved_files(folder: str, split: str | None) -> list[tuple[str | None, str]]:
    state = json.loads(storage.read_text(storage.join(folder, "state.json")))
    names = [d["filename"] for d in state.get("_data_files", [])]
    return [(split or state.get("_split"), storage.join(folder, n)) for n in names]


def _split_of_file(path: str) -> str | None:
    stem = posixpath.basename(path.replace("\\", "/")).rsplit(".", 1)[0]
    m = _HUB_NAME_RE.match(stem)
    return m.group(1) if m else None


def features_of(schema: Any) -> dict[str, Any]:
    meta = schema.metadata or {}
    raw = meta.get(b"huggingface")
    if not raw:
        return {}
    try:
        return dict(json.loads(raw).get("info", {}).get("features", {}))
    except (ValueError, AttributeError):
        return {}


def audio_column_of(schema: Any, features: Mapping[str, Any]) -> str | None:
    for name, feat in features.items():
        if isinstance(feat, dict) and feat.get("_type") == "Audio":
            return name
    import pyarrow as pa

    for f in schema:
        if pa.types.is_struct(f.type) and {c.name for c in f.type} >= {"bytes", "path"}:
            return f.name
    return None


class HFDatasetAdapter(Adapter):
    Options = Options
    options: Options

    def rows(self) -> Iterator[NativeRow | Reject]:
        given, opts = self.options.files, self.options
        files = [(_split_of_file(f), f) for f in given] if given else None
        try:
            if files is None:
                files = hub_files(self.source.audio_root, opts.config, opts.splits)
            files = files if files is not None else dataset_files(self.source.audio_root)
            if opts.splits is not None:
                files = [(n, f) for n, f in files if n in opts.splits]
        except (OSError, ValueError, KeyError) as e:
            yield self.reject(
                None,
                Code.UNREADABLE_METADATA,
                f"cannot read the dataset folder {self.source.audio_root}: {str(e)[:300]}",
                path=self.source.audio_root,
            )
            return
        if not files:
            reason, root = missing_root_reason(self.source.audio_root, "no .arrow, .parquet or .tar file")
            yield self.reject(None, Code.UNREADABLE_METADATA, reason, path=root)
            return
        rows_before = 0  # rows are numbered across the dataset's files, 1-based
        for native, path in files:
            name = path.lower().rsplit("/", 1)[-1]
            if name.endswith(".tar"):
                rows = self._tar_rows(native, path, rows_before)
            elif name in METADATA_FILES:
                rows = self._folder_rows(native, path, rows_before)
            else:
                rows = self._file_rows(native, path, rows_before)
            for item in rows:
                if isinstance(item, NativeRow) or item.row is not None:
                    rows_before += 1
                yield item

    def _tar_rows(self, native: str | None, path: str, rows_before: int) -> Iterator[NativeRow | Reject]:
        """A WebDataset tar of the snapshot, read by the webdataset adapter; the config's split wins."""
        from clap_corpus.manifests.webdataset import WebDatasetAdapter

        root = self.source.audio_root.rstrip("/")
        rel = path[len(root) + 1 :] if path.startswith(root + "/") else path
        options = {"pattern": rel, **tar_options(self.options)}
        tars = WebDatasetAdapter(replace(self.source, options=options), not self.no_scan)
        for item in tars.rows():
            if isinstance(item, NativeRow):
                yield replace(item, row=rows_before + item.row, split=native or item.split)
            else:
                yield item if item.row is None else replace(item, row=rows_before + item.row)

    def _folder_rows(self, native: str | None, path: str, rows_before: int) -> Iterator[NativeRow | Reject]:
        """``datasets``' AudioFolder: audio files next to a metadata file whose ``file_name`` names them."""
        folder = posixpath.dirname(path)
        root = self.source.audio_root.rstrip("/")
        prefix = folder[len(root) + 1 :] + "/" if folder.startswith(root + "/") else ""
        opts = self.options
        for item in read_rows(path, "jsonl" if path.endswith(".jsonl") else "csv"):
            if isinstance(item, RowError):
                yield self.reject(rows_before + item.row, Code.MALFORMED_ROW, item.reason, path=path)
                continue
            n, values = item
            names = list(values)
            cols = {
                role: getattr(opts, f"{role}_column", None) or next((c for c in cands if c in names), None)
                for role, cands in ROLES.items()
            }
            file_name = text_value(values.get("file_name"))
            if file_name is None:
                yield self.reject(rows_before + n, Code.MISSING_PATH, "no file_name", path=path)
                continue
            caption_cols = opts.caption_columns or ([cols["captions"]] if cols["captions"] else [])
            rel = prefix + posixpath.basename(path)
            layout = _Layout(path, rel, "file_name", cols, caption_cols, opts.keyword_columns, None)
            row = self._row(native, layout, (rows_before + n, n - 1), values, prefix + file_name, False)
            if isinstance(row, NativeRow) and not cols["id"]:
                row = replace(row, id=prefix + file_name)  # the file is the clip's identity here
            yield row

    def _file_rows(self, native: str | None, path: str, rows_before: int) -> Iterator[NativeRow | Reject]:
        source, opts = self.source, self.options
        try:
            resolve_audio_path(source, path)
        except PathRejected as e:
            yield self.reject(None, e.code, f"dataset file {path}: {e.reason}", path=path)
            return
        try:
            batches = _batches(opts.audio_column, path)
            schema, audio_col, features = next(batches)
        except Exception as e:  # a broken file is one reject, not a failed run
            yield self.reject(
                None, Code.UNREADABLE_METADATA, f"cannot read {path}: {str(e)[:300]}", path=path
            )
            return
        if audio_col is None:
            yield self.reject(None, Code.NO_AUDIO_COLUMN, "no Audio column in the dataset", path=path)
            return
        names = [f.name for f in schema if f.name != audio_col]
        cols = {
            role: getattr(opts, f"{role}_column", None) or next((c for c in cands if c in names), None)
            for role, cands in ROLES.items()
        }
        caption_cols = opts.caption_columns or ([cols["captions"]] if cols["captions"] else [])
        keyword_cols = opts.keyword_columns or ([cols["keywords"]] if cols["keywords"] else [])
        label_names = (features.get(cols["label"]) or {}).get("names") if cols["label"] else None
        rel = (
            os.path.relpath(path, source.audio_root).replace(os.sep, "/")
            if not storage.is_url(path)
            else path
        )
        layout = _Layout(path, rel, audio_col, cols, caption_cols, keyword_cols, label_names)
        index = 0
        for rows, paths, has_bytes in batches:
            for values, apath, embedded in zip(rows, paths, has_bytes, strict=True):
                yield self._row(native, layout, (rows_before + index + 1, index), values, apath, embedded)
                index += 1

    def _row(
        self,
        native: str | None,
        f: _Layout,
        position: tuple[int, int],  # (row across the dataset, 1-based; index inside this file)
        values: Mapping[str, Any],
        apath: str | None,
        embedded: bool,
    ) -> NativeRow | Reject:
        row, index = position
        cols = f.cols
        sid = text_value(values.get(cols["id"])) if cols["id"] else None
        source_id = sid or f"{f.rel}:{index}"
        if not embedded and not apath:
            return self.reject(
                row,
                Code.MISSING_AUDIO,
                "the row's audio has neither bytes nor a path",
                path=f.path,
                source_id=source_id,
            )
        problem = None
        captions: tuple[str, ...] = ()
        keywords: tuple[str, ...] = ()
        try:
            captions = tuple(c for col in f.caption_cols for c in text_list(values.get(col), separator=None))
            keywords = tuple(
                k for col in f.keyword_cols for k in text_list(values.get(col), separator=",", strict=False)
            )
        except NotText as e:
            problem = (Code.CAPTION_NOT_TEXT, str(e))
        labels: tuple[str, ...] = ()
        if cols["label"]:
            raw = values.get(cols["label"])
            ids = raw if isinstance(raw, list) else [raw]
            names = f.label_names
            labels = tuple(
                names[i] if names and isinstance(i, int) and 0 <= i < len(names) else str(i)
                for i in ids
                if i is not None and i != -1  # -1: ClassLabel's "no label"
            )
        used = {c for c in cols.values() if c} | set(f.caption_cols) | set(f.keyword_cols)
        origin = self.options.origin
        audio: EmbeddedCell | str
        if embedded:
            audio = EmbeddedCell(f.path, f.audio_col, index)
        else:
            assert apath  # a row with neither bytes nor a path was refused above
            audio = apath
        return NativeRow(
            row=row,
            id=source_id,
            audio=audio,
            split=text_value(values.get(cols["split"])) if cols["split"] else native,
            captions=captions,
            labels=labels,
            keywords=keywords,
            license=text_value(values.get(cols["license"])) if cols["license"] else None,
            attribution=text_value(values.get(cols["attribution"])) if cols["attribution"] else None,
            origin_ids=(f"{origin}:{sid}",) if origin and sid else (),
            expected_duration_s=parse_float(values.get(cols["duration"])) if cols["duration"] else None,
            original={
                "dataset_file": f.rel,
                "dataset_row": index,
                **({"audio_path": apath} if apath else {}),
                **{k: jsonable(v) for k, v in sorted(values.items()) if k not in used},
            },
            reject_path=f.path,
            problem=problem,
        )


read_hf_dataset = HFDatasetAdapter.read


@dataclass(frozen=True)
class _Layout:
    """Where one dataset file keeps each role."""

    path: str
    rel: str
    audio_col: str
    cols: Mapping[str, str | None]
    caption_cols: list[str]
    keyword_cols: list[str]
    label_names: list[str] | None


def _batches(audio_column: str | None, path: str) -> Iterator[Any]:
    """First (schema, audio column, features); then (rows without audio, audio paths, has-bytes flags)."""
    if path.endswith(".parquet"):
        yield from _parquet_batches(audio_column, path)
    else:
        yield from _arrow_batches(audio_column, path)


def _parquet_batches(audio_column: str | None, path: str) -> Iterator[Any]:
    import pyarrow.parquet as pq

    with storage.open_read(path) as f:
        pf = pq.ParquetFile(f)
        schema = pf.schema_arrow
        features = features_of(schema)
        audio = audio_column or audio_column_of(schema, features)
        yield schema, audio, features
        if audio is None:
            return
        others = [n for n in schema.names if n != audio]
        leaf = {pf.schema.column(i).path: i for i in range(len(pf.schema))}
        for g in range(pf.num_row_groups):
            rg = pf.metadata.row_group(g)
            stats = rg.column(leaf[f"{audio}.bytes"]).statistics if f"{audio}.bytes" in leaf else None
            if stats is not None and stats.has_null_count and stats.null_count in (0, rg.num_rows):
                flags: list[bool] = [stats.null_count == 0] * rg.num_rows
            else:  # mixed or unknown: read the validity (this reads the bytes of this row group once)
                t = pf.read_row_group(g, columns=[f"{audio}.bytes"])
                flags = t.column(audio).combine_chunks().field("bytes").is_valid().to_pylist()
            start = 0
            for batch in pf.iter_batches(
                batch_size=BATCH_ROWS, row_groups=[g], columns=[*others, f"{audio}.path"]
            ):
                n = batch.num_rows
                paths = batch.column(audio).field("path").to_pylist()
                rows = batch.drop_columns([audio]).to_pylist()
                yield rows, paths, flags[start : start + n]
                start += n


def _arrow_batches(audio_column: str | None, path: str) -> Iterator[Any]:
    import pyarrow as pa

    stream = pa.memory_map(path) if not storage.is_url(path) else storage.open_read(path)
    try:
        try:
            reader: Any = pa.ipc.open_stream(stream)
            batches = iter(reader)
        except pa.ArrowInvalid:
            stream.seek(0)
            reader = pa.ipc.open_file(stream)
            batches = (reader.get_batch(i) for i in range(reader.num_record_batches))
        schema = reader.schema
        features = features_of(schema)
        audio = audio_column or audio_column_of(schema, features)
        yield schema, audio, features
        if audio is None:
            return
        for batch in batches:
            col = batch.column(audio)
            # Only the validity bitmap of the bytes child is read: the audio pages stay on disk.
            flags = col.field("bytes").is_valid().to_pylist()
            paths = col.field("path").to_pylist()
            yield batch.drop_columns([audio]).to_pylist(), paths, flags
    finally:
        stream.close()
