"""Every reason an input can fail to become a sample, declared once: stages, codes, the one error type.

A reject file, ``summary.json``'s ``rejects_by_code`` and the README's table all use these codes.
They are :class:`enum.StrEnum` members, so they are written as the same plain strings they always
were and compare equal to them; an unknown string fails when a :class:`core.records.Reject` is built.
Adding a code means adding one line to :class:`Code` and pasting ``python -m core.rejects`` (the
tables) into the README's "Reject codes" section; tests/test_rejects.py fails until they agree.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class Stage(StrEnum):
    """Where in the run an input failed."""

    meaning: str

    def __new__(cls, value: str, meaning: str) -> Stage:
        member = str.__new__(cls, value)
        member._value_ = value
        member.meaning = meaning
        return member

    MANIFEST = "manifest", "an adapter or the adapter registry refused a manifest row (before sharding)"
    CAPTIONS = "captions", "the clip's captions could not be rendered (before sharding)"
    FETCH = "fetch", "the audio URL could not be downloaded (the fetch status table has the detail)"
    EXCLUDE = "exclude", "an exclusion list (`exclude`) names the clip's origin id: it must not be trained on"
    DUPLICATE = "duplicate", "duplicate removal (`duplicates`: `keep_first` or `drop_all`) removed this copy"
    LEAKAGE = "leakage", "a train sample that is also in a held-out split was removed"
    CLAP = "clap", "CLAP scoring (`options.clap`) removed the pair: its audio and caption disagree"
    SHARD = "shard", "the shard writer refused the record before reading it"
    READ = "read", "the audio file could not be read"
    DECODE = "decode", "the audio could not be decoded into a usable clip"
    LEVEL = "level", "the decoded clip is too quiet"
    VIEWS = "views", "the mel views could not be computed"
    ENCODE = "encode", "the clip could not be encoded as FLAC"
    PROCESS = "process", "an unexpected error (a bug: the log has the traceback)"
    GUARD = "guard", "a guard-only source's clip was checked against and not written (`guard: true`)"


# Short names keep every code's declaration on one line.
_M, _C, _D, _L, _SH, _R = Stage.MANIFEST, Stage.CAPTIONS, Stage.DECODE, Stage.LEAKAGE, Stage.SHARD, Stage.READ
_F = Stage.FETCH


class Code(StrEnum):
    """A stable snake_case reason, for counting; the reject's ``reason`` says the specifics."""

    stages: tuple[Stage, ...]
    meaning: str

    def __new__(cls, value: str, stages: tuple[Stage, ...], meaning: str) -> Code:
        member = str.__new__(cls, value)
        member._value_ = value
        member.stages = stages
        member.meaning = meaning
        return member

    # manifest rows
    UNREADABLE_METADATA = "unreadable_metadata", (_M,), "a metadata file is missing or cannot be parsed"
    MALFORMED_ROW = "malformed_row", (_M,), "the row cannot be parsed (wrong number of fields, not a mapping)"
    BROKEN_QUOTING = "broken_quoting", (_M,), "the CSV line's quoting cannot be parsed"
    MISSING_ID = "missing_id", (_M,), "the row has no clip id"
    BAD_ID = "bad_id", (_M,), "the clip id is not in the source's form (an 11-character YouTube id ...)"
    BAD_TIMESTAMPS = "bad_timestamps", (_M,), "the segment's times are not times, or not 0 <= start < end"
    CONFLICTING_SEGMENT = "conflicting_segment", (_M,), "another row starts the same clip at another time"
    MISSING_PATH = "missing_path", (_M,), "the row has no audio path"
    MISSING_AUDIO = "missing_audio", (_M,), "no audio file (or embedded audio) for the row's id"
    NO_AUDIO_COLUMN = "no_audio_column", (_M,), "the Hugging Face dataset has no Audio column"
    BAD_PATH = "bad_path", (_M,), "the audio path cannot be a path (a NUL byte)"
    OUTSIDE_ROOT = "outside_root", (_M, _R), "the audio path leads outside the source's audio root"
    SCHEME_NOT_ALLOWED = (
        "scheme_not_allowed",
        (_M,),
        "a URL scheme the spec does not list (`allowed_schemes`)",
    )
    HOST_NOT_ALLOWED = "host_not_allowed", (_M,), "a URL host the spec does not list (`allowed_hosts`)"
    EMPTY_CAPTION = "empty_caption", (_M,), "the caption column is empty"
    CAPTION_NOT_TEXT = "caption_not_text", (_M,), "a caption is not text"
    TAG_NOT_TEXT = "tag_not_text", (_M,), "a label or keyword is not text"
    NO_LABELS = "no_labels", (_M,), "the row has no label"
    UNKNOWN_LABEL = "unknown_label", (_M,), "a label id is not in the class index (vocabulary)"
    BAD_SPLIT = "bad_split", (_M,), "the split name cannot be a folder name (`../x`)"
    BAD_KEY = "bad_key", (_M,), "the adapter made a key that cannot be a file name (an adapter bug)"
    BAD_SOURCE = "bad_source", (_M,), "the adapter named another source (an adapter bug)"
    BAD_MEMBER = (
        "bad_member",
        (_M,),
        "an archive member named outside its sample (`../x`), or a link or device member",
    )
    TRUNCATED_ARCHIVE = "truncated_archive", (_M,), "the archive ends inside this sample (a cut download)"
    NOT_IN_MIRROR = (
        "not_in_mirror",
        (_M,),
        "a row of the source's official list that its mirror does not hold (`wanted`)",
    )
    # captions
    NO_TEXT = "no_text", (_C,), "no caption, label or non-technical keyword to write a caption from"
    CAPTION_TOO_LONG = "caption_too_long", (_C,), "a caption is longer than `max_caption_chars`"
    # removals
    EXCLUDED = (
        "excluded",
        (Stage.EXCLUDE,),
        "an exclusion list (`exclude`) names the clip (the reason names the list)",
    )
    DUPLICATE_AUDIO = "duplicate_audio", (Stage.DUPLICATE,), "the same decoded audio as a sample that is kept"
    NEAR_DUPLICATE_AUDIO = (
        "near_duplicate_audio",
        (Stage.DUPLICATE,),
        "the audio embedding is near another source's sample (`options.clap.near_duplicate_threshold`)",
    )
    EVAL_OVERLAP = "eval_overlap", (_L,), "the clip's id is also in a held-out split"
    EVAL_OVERLAP_AUDIO = "eval_overlap_audio", (_L,), "the same decoded audio as a sample of a held-out split"
    EVAL_OVERLAP_CONTENT = (
        "eval_overlap_content",
        (_L,),
        "the audio embedding is near a held-out sample's (`options.clap.content_threshold`)",
    )
    LOW_CLAP_SCORE = (
        "low_clap_score",
        (Stage.CLAP,),
        "the best caption's CLAP score is under `min_clap_score`, or outside `keep_top_fraction`",
    )
    GUARD_ONLY = (
        "guard_only",
        (Stage.GUARD,),
        "a clip of a guard-only source: training clips were checked against it, it is never written",
    )
    DUPLICATE_KEY = "duplicate_key", (_SH,), "another row of the source has the same id"
    # fetching (the status table, fetch/status/<source>/<shard>.parquet, has the HTTP code and the error)
    URL_GONE = "url_gone", (_F,), "HTTP 404 or 410: nothing at the URL"
    HTTP_ERROR = "http_error", (_F,), "another HTTP error status, after the retries (401, 403, 500 ...)"
    RATE_LIMITED = "rate_limited", (_F,), "HTTP 429 on every attempt (`Retry-After` honoured)"
    NETWORK_ERROR = "network_error", (_F,), "timeouts, resets, refused connections, after the retries"
    REDIRECT_REFUSED = (
        "redirect_refused",
        (_F,),
        "a redirect to a scheme or host the source does not allow, or too many redirects (a loop)",
    )
    VIDEO_UNAVAILABLE = "video_unavailable", (_F,), "YouTube: the video is removed, unavailable or private"
    AGE_RESTRICTED = "age_restricted", (_F,), "YouTube: the video needs a signed-in adult (`cookies_file`)"
    BOT_CHECK = (
        "bot_check",
        (_F,),
        "YouTube asked to sign in to prove it is not a bot (`cookies_file`, `proxy`)",
    )
    GEO_BLOCKED = "geo_blocked", (_F,), "YouTube: not available in the fetching machine's country (`proxy`)"
    DOWNLOAD_CAP = (
        "download_cap",
        (_F,),
        "not fetched: the daily download cap (Freesound's) was reached; a rerun tomorrow fetches it",
    )
    FETCH_FAILED = "fetch_failed", (_F,), "another download failure (the status table has the error)"
    BAD_URL = (
        "bad_url",
        (_M, _F),
        "a web URL not read one way only (a backslash, white space or a percent sign in its host ...)",
    )
    PRIVATE_ADDRESS = (
        "private_address",
        (_F,),
        "the host resolves to a loopback, private or link-local address (`allow_private_networks`)",
    )
    # reading
    MISSING_FILE = "missing_file", (_R,), "the audio file does not exist"
    READ_ERROR = "read_error", (_R,), "the audio file exists but could not be read"
    TOO_LARGE = (
        "too_large",
        (_F, _R, _D),
        "over `max_file_bytes` (never read; a download stops there), or decoding ran out of memory",
    )
    # decoding
    EMPTY_FILE = "empty_file", (_D,), "the file is empty (0 bytes)"
    NOT_AUDIO = "not_audio", (_D,), "text or garbage: not an audio file in an accepted format"
    FORMAT_NOT_ALLOWED = (
        "format_not_allowed",
        (_D,),
        "a format FFmpeg knows that is not accepted audio (playlists, file lists, video containers, images)",
    )
    TRACKER_MODULE = "tracker_module", (_D,), "a tracker module (.it/.s3m/.xm/.mod): no renderer is built in"
    NO_AUDIO_STREAM = "no_audio_stream", (_D,), "the container holds no audio stream"
    UNSUPPORTED_CODEC = "unsupported_codec", (_D,), "no decoder for the audio stream's codec"
    CORRUPT = "corrupt", (_D,), "the file is cut inside its header or most of its packets fail to decode"
    TOO_MANY_CHANNELS = "too_many_channels", (_D,), "more channels than `max_channels`"
    BAD_SAMPLE_RATE = "bad_sample_rate", (_D,), "an absurd sample rate in the header"
    NON_FINITE = "non_finite", (_D,), "NaN or infinite sample values"
    TOO_SHORT = "too_short", (_D,), "shorter than `min_duration_s` (or no sample decoded at all)"
    TIME_LIMIT = "time_limit", (_D,), "decoding took longer than `decode_time_limit_s`"
    INCOMPLETE = "incomplete", (_D,), "decoded less than `min_complete_fraction` of the declared length"
    # after decoding
    SILENT = "silent", (Stage.LEVEL,), "digital silence, or peak / RMS under `min_peak_dbfs` / `min_rms_dbfs`"
    VIEWS_FAILED = "views_failed", (Stage.VIEWS,), "the mel views could not be computed"
    FLAC_FAILED = "flac_failed", (Stage.ENCODE,), "the FLAC encoder failed"
    INTERNAL_ERROR = "internal_error", (Stage.PROCESS,), "an unexpected exception (a bug: see the log)"


del _M, _C, _D, _L, _SH, _R, _F

# The manifest codes that say a row's audio cannot be found or may not be read (the start check counts
# them as "not found"), as opposed to a row that is bad otherwise.
PATH_CODES = frozenset(
    {
        Code.MISSING_AUDIO,
        Code.MISSING_PATH,
        Code.BAD_PATH,
        Code.OUTSIDE_ROOT,
        Code.SCHEME_NOT_ALLOWED,
        Code.HOST_NOT_ALLOWED,
        Code.BAD_URL,
    }
)


class RejectError(Exception):
    """The one error for an input that cannot become a sample: where it failed, why, in words.

    Raised by every per-input step (path checks, reading, decoding, the sample builder) and turned
    into a :class:`core.records.Reject` by whoever holds the record."""

    def __init__(self, stage: Stage | str, code: Code | str, reason: str):
        self.stage, self.code, self.reason = Stage(stage), Code(code), reason
        super().__init__(f"{self.code}: {reason}")

    def __reduce__(self) -> tuple[Any, ...]:
        # Exceptions pickle through self.args (the formatted message only), and subclasses take other
        # constructor arguments; Beam pickles exceptions.
        return (_rebuild, (type(self), self.stage, self.code, self.reason))


def _rebuild(cls: type[RejectError], stage: Stage, code: Code, reason: str) -> RejectError:
    error = cls.__new__(cls)
    RejectError.__init__(error, stage, code, reason)
    return error


def stages_table() -> str:
    """The Markdown table of the stages, in the order a record meets them (the README shows it)."""
    lines = ["| stage | where the input failed |", "| --- | --- |"]
    lines += [f"| `{stage}` | {stage.meaning} |" for stage in Stage]
    return "\n".join(lines) + "\n"


def codes_table() -> str:
    """The Markdown table of every code, in declaration order (the README shows it)."""
    lines = ["| code | stage | meaning |", "| --- | --- | --- |"]
    lines += [f"| `{code}` | {', '.join(f'`{s}`' for s in code.stages)} | {code.meaning} |" for code in Code]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(stages_table() + "\n" + codes_table(), end="")
