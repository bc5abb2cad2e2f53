"""The adapter contract: an adapter reads its native format, :class:`Adapter` makes the records.

A subclass implements :meth:`Adapter.rows`, yielding one :class:`NativeRow` per clip (what the metadata
says, in its own terms), a :class:`~manifests.tables.RowError` for a row that could not be parsed, or a
:class:`Reject` (made with :meth:`Adapter.reject`) for a row its format rules refuse. Everything else
is done here, the same way for every adapter, in :meth:`Adapter.records`:

- a ``RowError`` becomes a ``malformed_row`` reject naming the manifest and the row;
- the native split goes through the spec's ``split``, its ``split_map`` and the adapter's
  :attr:`~Adapter.split_defaults` (:func:`~manifests.common.corpus_split`); a name that cannot be a
  folder is a ``bad_split`` reject;
- the audio name is resolved under the source's root by the path rules
  (:func:`~manifests.source.resolve_audio_path`: ``outside_root``, ``scheme_not_allowed`` ...), or
  looked up by id (``file_pattern`` or one listing of the root, ``missing_audio``), and becomes a
  typed :mod:`core.audio_ref` reference;
- a problem with the row's content that the adapter found (``caption_not_text`` ...) is reported
  only once the clip is placed, so a clip whose audio is missing says so first;
- labels and keywords that are AudioSet ontology ids (``/m/09x0r``) become the class names
  (:mod:`manifests.ontology`); an id the ontology does not have is ``unknown_label``;
- the key is :func:`~core.records.make_key` of source name and id, and a clip whose row names no
  license gets the source's.

:func:`manifests.registry.read_source` then holds every record to the output-path rules, so even a
reader written without this class cannot place a file outside the output folder.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from clap_corpus.core.audio_ref import AudioRef, file_ref
from clap_corpus.core.records import Record, Reject, make_key
from clap_corpus.core.rejects import Code, Stage
from clap_corpus.manifests import ontology
from clap_corpus.manifests.common import AudioFinder, audio_path, corpus_split
from clap_corpus.manifests.notes import SourceNotes
from clap_corpus.manifests.options import AdapterOptions
from clap_corpus.manifests.source import PathRejected, SourceSpec
from clap_corpus.manifests.tables import RowError


@dataclass(frozen=True)
class Lookup:
    """Audio named by an id rather than a path: found by ``options.file_pattern`` (formatted with
    ``fields``) or in one listing of the audio root indexed by :meth:`Adapter.index_key`."""

    id: str
    fields: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NativeRow:
    """One clip as its metadata describes it."""

    row: int  # 1-based data row in the manifest (rejects point back at it)
    id: str  # the clip's id inside its source
    # A name relative to the audio root (or a URL) that the path rules check, a Lookup, or a reference
    # the adapter built itself (audio embedded in the metadata file).
    audio: str | Lookup | AudioRef
    split: str | None = None  # the native split, before the spec's mapping
    captions: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    license: str | None = None  # None: the source's license
    attribution: str | None = None
    origin_ids: tuple[str, ...] = ()
    expected_duration_s: float | None = None
    original: Mapping[str, Any] = field(default_factory=dict)
    reject_path: str | None = None  # what a reject of this row names; None -> the manifest
    problem: tuple[Code, str] | None = None  # (code, reason): the row's content is unusable


class Adapter:
    """Base of the source adapters; see the module docstring for the rules it applies."""

    Options: ClassVar[type[AdapterOptions]] = AdapterOptions
    split_defaults: ClassVar[Mapping[str, str]] = {}  # native split -> corpus split, before split_map

    def __init__(self, source: SourceSpec, scan_audio: bool = True, notes: SourceNotes | None = None):
        self.source = source
        self.notes = notes if notes is not None else SourceNotes()  # native splits seen ...
        # scan_audio False (`clapcorpus plan`): metadata only, no audio folder listed, no file looked at;
        # audio paths are placeholders that nobody reads.
        self.no_scan = not scan_audio
        self.options = self.Options.read_back(source.options)
        self._finder: AudioFinder | None = None

    @classmethod
    def read(
        cls, source: SourceSpec, scan_audio: bool = True, notes: SourceNotes | None = None
    ) -> Iterator[Record | Reject]:
        """Every record and reject of ``source`` (the registry's reader); ``notes`` gets the counts."""
        return cls(source, scan_audio, notes).records()

    def rows(self) -> Iterator[NativeRow | RowError | Reject]:
        raise NotImplementedError

    def index_key(self, stem: str) -> str | None:
        """The id a listed audio file's stem stands for (None: the file is no clip's)."""
        return stem

    def records(self) -> Iterator[Record | Reject]:
        for item in self.rows():
            if isinstance(item, RowError):
                yield self.reject(item.row, Code.MALFORMED_ROW, item.reason)
            elif isinstance(item, Reject):
                yield item
            else:
                yield self.build(item)

    def reject(
        self,
        row: int | None,
        code: Code,
        reason: str,
        *,
        path: str | None = None,
        source_id: str | None = None,
    ) -> Reject:
        """A manifest-stage reject of this source; ``path`` (None: the manifest) says what it names."""
        return Reject(
            self.source.name,
            Stage.MANIFEST,
            code,
            reason,
            path=(self.source.manifest or "") if path is None else path,
            row=row,
            source_id=source_id,
        )

    def unknown_labels(
        self,
        row: int | None,
        unknown: list[str],
        index: str,
        *,
        path: str | None = None,
        source_id: str | None = None,
    ) -> Reject:
        """The reject of a row whose label ids ``index`` does not have (naming the first five)."""
        return self.reject(
            row,
            Code.UNKNOWN_LABEL,
            f"label id(s) {', '.join(unknown[:5])} not in {index}",
            path=path,
            source_id=source_id,
        )

    def build(self, native: NativeRow) -> Record | Reject:
        source = self.source
        source_id = native.id or None
        if native.split is not None and str(native.split).strip():
            self.notes.native_splits[str(native.split).strip()] += 1
        try:
            # The split first: it costs no file-system call, and a split map that refuses every
            # clip is then reported as such, not as missing audio.
            split = corpus_split(source, native.split, self.split_defaults)
            audio = self.locate(native.audio)
        except PathRejected as e:
            return self.reject(native.row, e.code, e.reason, path=native.reject_path, source_id=source_id)
        except ValueError as e:  # corpus_split: not a usable split folder
            return self.reject(
                native.row, Code.BAD_SPLIT, str(e), path=native.reject_path, source_id=source_id
            )
        if native.problem is not None:
            code, reason = native.problem
            return self.reject(native.row, code, reason, path=native.reject_path, source_id=source_id)
        # labels or keywords given as AudioSet ontology ids become the class names: a caption is
        # never written from "/m/0838f"
        labels, unknown = ontology.named(native.labels)
        keywords, unknown_kw = ontology.named(native.keywords)
        if unknown or unknown_kw:
            return self.unknown_labels(
                native.row,
                [*unknown, *unknown_kw],
                "the AudioSet ontology",
                path=native.reject_path,
                source_id=source_id,
            )
        return Record(
            key=make_key(source.name, native.id),
            source=source.name,
            source_id=native.id,
            audio=audio,
            row=native.row,
            split=split,
            captions=native.captions,
            labels=labels,
            keywords=keywords,
            license=native.license or source.license,
            attribution=native.attribution,
            origin_ids=native.origin_ids,
            expected_duration_s=native.expected_duration_s,
            original=native.original,
        )

    def locate(self, audio: str | Lookup | AudioRef) -> AudioRef:
        """The reference to read a row's audio from; raises :class:`PathRejected`."""
        if isinstance(audio, str):
            return file_ref(audio_path(self.source, audio, no_scan=self.no_scan))
        if isinstance(audio, Lookup):
            return file_ref(self.finder.find(audio.id, audio.fields))
        return audio

    @property
    def finder(self) -> AudioFinder:
        if self._finder is None:
            pattern = getattr(self.options, "file_pattern", None)
            self._finder = AudioFinder(self.source, pattern, self.index_key, placeholder=self.no_scan)
        return self._finder
