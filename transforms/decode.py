"""Decode untrusted audio bytes in-process with PyAV (the FFmpeg bundled in its wheel).

Output is always float32 mono at 48 kHz (``core.audio.SAMPLE_RATE``). Every failure becomes a
:class:`DecodeError` with a stable ``code``; nothing from PyAV/FFmpeg escapes.

Decisions, written down so callers can rely on them:

- **Security.** The pipeline reads files from the open internet, so FFmpeg may only use the demuxers in
  :data:`ALLOWED_DEMUXERS` (``format_whitelist``: audio file formats that name no other file; a
  format FFmpeg recognises outside it is ``format_not_allowed``), and may open no protocol at all
  (``protocol_whitelist`` names none that exists): the input is read from memory and nothing a file
  says can make FFmpeg open another file. That shuts out HLS playlists and ffconcat lists (which
  FFmpeg would otherwise follow to local files) by two independent locks.
- **Downmix.** Mono is kept, two channels are averaged (0.5/0.5, which is also FFmpeg's normalised
  stereo matrix), and more channels are mixed with FFmpeg's default matrix for their layout
  (:func:`downmix_weights`: what ``ffmpeg -ac 1`` does, LFE left out), scaled so the weights sum
  to at most 1: nothing clips. Channels in an unspecified order (a WAV without a channel mask) get
  the layout FFmpeg guesses for their count, as the ffmpeg command line does (6: 5.1, 8: 7.1 ...);
  a count it has no guess for (9, 11, 13 ...) is averaged. Done in numpy before resampling, one
  channel at a time in float64 and rounded once: the same bits on every CPU (a BLAS product sums in
  an order that depends on the CPU).
- **Resampling.** swresample (default filter, through the filter graph ``av.AudioResampler`` builds,
  on one thread) to 48 kHz in blocks of about half a second of input; a 48 kHz source is not
  resampled at all. FFmpeg's SIMD paths round differently from each other, so they are pinned to one
  instruction-set level first (:mod:`transforms.ffmpeg_cpu`).
- **Damaged files.** A packet the decoder rejects is skipped, as the ffmpeg CLI does. The file is
  ``corrupt`` when more than ``max(2, 2 %)`` of its packets were rejected, when a rejected packet
  left no audio at all, or when a container that looks like audio cannot be opened (an MP4 whose
  index is missing). A file that is merely cut short returns the audio that decoded before the cut
  (if any did); :meth:`DecodedAudio.incomplete` compares it with the length the file declares.
- **Chained Ogg.** Each chained stream (a new beginning-of-stream page after data pages) is decoded
  on its own and the results are joined; FFmpeg's demuxer would stop at the first that differs.
- **Duration cap.** Decoding stops as soon as more than ``max_duration_s`` of output exists; the
  result is cut to exactly ``round(max_duration_s * 48000)`` samples and ``truncated`` is set. Memory
  holds at most the cap plus one block.
"""

from __future__ import annotations

import errno
import functools
import io
import math
import time
from dataclasses import dataclass, replace
from typing import Any

import av
import av.filter
import av.logging
import numpy as np
from av.audio.stream import AudioStream
from av.error import FFmpegError  # where it is defined: `av` re-exports it without declaring so

from clap_corpus.core.audio import SAMPLE_RATE
from clap_corpus.core.rejects import Code, RejectError, Stage
from clap_corpus.transforms import ffmpeg_cpu

# PyAV's default already drops FFmpeg's log lines; set it explicitly so that a library that turned
# logging on does not flood worker logs with one line per damaged packet.
av.logging.set_level(None)

# Names as FFmpeg's demuxers report them; av_match_list matches any comma-separated part, so "mov"
# admits "mov,mp4,m4a,3gp,3g2,mj2" and "matroska" admits "matroska,webm". Every audio file format the
# bundled FFmpeg (PyAV's wheel) reads and that names no other file: tests/test_codecs.py checks that
# each exists there as a demuxer and decodes a real file of the common ones. Left out on purpose:
# REFUSED_DEMUXERS, video-first containers (avi, flv, mpegts, ...), images, subtitles and text
# formats that synthesize sound (sbg). Tracker modules (.it/.s3m/.xm/.mod) need libopenmpt, which
# the wheel lacks: they are refused with their own code.
ALLOWED_DEMUXERS: tuple[str, ...] = (
    # general containers and PCM files
    *("ogg", "mov", "mp4", "m4a", "3gp", "3g2", "mj2", "matroska", "webm", "asf", "caf", "rm"),
    *("wav", "w64", "aiff", "au", "voc", "ircam", "nistsphere", "sox", "avr", "epaf", "iff", "rso"),
    # elementary streams: MPEG audio (mp1/mp2/mp3), ADTS/LOAS AAC, Dolby, DTS, AMR
    *("mp3", "aac", "loas", "ac3", "eac3", "truehd", "mlp", "dts", "dtshd", "amr", "amrnb", "amrwb"),
    # lossless and other audio codecs in their own file formats
    *("flac", "wv", "tta", "ape", "tak", "shn", "mpc", "mpc8", "dsf", "wsd", "oma", "xwma", "qcp"),
    *("spdif", "rka", "osq", "qoa", "bonk", "laf", "vqf", "daud", "mmf", "wavarc"),
)
_ALLOWED_SET = frozenset(ALLOWED_DEMUXERS)

# Demuxers that read other files or open connections: never allowed, whatever a file claims to be.
REFUSED_DEMUXERS: tuple[str, ...] = (
    *("hls", "concat", "dash", "webm_dash_manifest", "image2", "lavfi", "vobsub"),
    *("sdp", "rtp", "rtsp", "rtp_mpegts"),
)

SAFE_INPUT_OPTIONS = {
    "format_whitelist": ",".join(ALLOWED_DEMUXERS),
    # No protocol is called "none": every nested open (playlist entry, concat item, mov reference)
    # fails. The main input needs no protocol because PyAV reads it through our BytesIO.
    "protocol_whitelist": "none",
    # The WAV demuxer re-probes up to 32 packets of 16-bit PCM for hidden DTS/AC3, running every
    # prober over a growing buffer: 15-27 ms per file, more than decoding 30 s of it. Four packets is
    # what FFmpeg used to do and still catches a bitstream at the start of the data.
    "max_probe_packets": "4",
}

MIN_SAMPLE_RATE = 1_000
MAX_SAMPLE_RATE = 768_000

# Half a second of source audio per resampler call: large enough that per-call overhead vanishes,
# small enough that the duration cap overshoots by little.
_BLOCK_SECONDS = 0.5

_BAD_PACKETS_ALLOWED = 2
_BAD_PACKET_FRACTION = 0.02

_DTYPES = {
    "u8": np.uint8,
    "s16": np.int16,
    "s32": np.int32,
    "s64": np.int64,
    "flt": np.float32,
    "dbl": np.float64,
}

# Divisors that map each integer sample format to [-1, 1).
_INT_SCALE = {"u8": 128.0, "s16": 32768.0, "s32": 2147483648.0, "s64": 9223372036854775808.0}

# Leading bytes of the containers we accept: a file that starts like one but fails to open is
# reported as corrupt rather than "not audio".
_AUDIO_MAGIC = (
    *(b"RIFF", b"RF64", b"BW64", b"riff", b"FORM", b"fLaC", b"OggS", b"ID3", b"caff", b"\x1aE\xdf\xa3"),
    b"0&\xb2u\x8ef\xcf\x11",  # ASF header GUID (WMA)
    *(b"wvpk", b"TTA1", b"MAC ", b"#!AMR", b".snd", b"Creative Voice File", b"DSD ", b"tBaK", b"ajkg"),
    *(b"\x0bw", b"\x7f\xfe\x80\x01"),  # AC-3 / E-AC-3 and DTS frame sync
)

# Tracker modules: note sequences plus instrument samples, which FFmpeg only renders through
# libopenmpt (absent from PyAV's wheel). (offset, signature); MOD's four-byte tag sits at 1080.
_TRACKER_MAGIC = ((0, b"IMPM"), (0, b"Extended Module: "), (44, b"SCRM"))
_MOD_TAGS = frozenset({b"M.K.", b"M!K!", b"M&K!", b"FLT4", b"FLT8", b"4CHN", b"6CHN", b"8CHN", b"CD81"})


def _looks_like_tracker_module(data: bytes) -> bool:
    if any(data[at : at + len(sig)] == sig for at, sig in _TRACKER_MAGIC):
        return True
    tag = data[1080:1084]
    # "xxCH" / "xxCN": FastTracker's 10..32-channel MODs
    return tag in _MOD_TAGS or (tag[:2].isdigit() and tag[2:] in (b"CH", b"CN"))


class DecodeError(RejectError):
    """Raised for input that cannot become a sample: a ``decode`` reject with its code
    (:class:`core.rejects.Code`) and a short readable sentence."""

    def __init__(self, code: Code | str, reason: str):
        super().__init__(Stage.DECODE, code, reason)


# eq=False: the generated __eq__ would compare numpy arrays inside a tuple and raise.
@dataclass(frozen=True, eq=False)
class DecodedAudio:
    samples: np.ndarray  # float32, mono, 48 kHz, shape (n,), C-contiguous
    source_rate: int
    source_channels: int
    codec: str
    container: str
    truncated: bool
    source_duration_s: float | None
    # The length the file itself states (a FLAC STREAMINFO, a WAV data size, an MP3 Xing header, an
    # Ogg's last granule ...); None where FFmpeg could only guess from the bitrate (raw AAC, AC-3,
    # MP3 without a VBR header), whose guess shrinks with a cut file and says nothing.
    declared_duration_s: float | None = None
    chains_dropped: int = 0  # chained Ogg streams after the first that could not be decoded

    @property
    def duration_s(self) -> float:
        return len(self.samples) / SAMPLE_RATE

    def incomplete(self, min_fraction: float = 0.9) -> bool:
        """The decode ended well short of what the file declares: a partial download, a cut file.

        A decode we cut ourselves (``truncated``) is never incomplete."""
        if self.chains_dropped:
            return True
        if self.truncated or self.declared_duration_s is None:
            return False
        return self.duration_s < min_fraction * self.declared_duration_s


def _looks_like_playlist(data: bytes) -> bool:
    head = data[:64].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return head.startswith((b"#extm3u", b"ffconcat", b"[playlist]", b"<?xml", b"<mpd"))


# RIFF and IFF also wrap video and images (AVI, WebP, ILBM): only their audio forms count.
_RIFF_AUDIO = {
    b"RIFF": (b"WAVE",),
    b"RF64": (b"WAVE",),
    b"BW64": (b"WAVE",),
    b"FORM": (b"AIFF", b"AIFC", b"8SVX"),
}


def _looks_like_audio(data: bytes) -> bool:
    forms = _RIFF_AUDIO.get(data[:4])
    if forms is not None and len(data) >= 12:
        return data[8:12] in forms
    if data.startswith(_AUDIO_MAGIC) or data[4:8] == b"ftyp":
        return True
    # MPEG audio / ADTS frame sync
    return len(data) >= 2 and data[0] == 0xFF and (data[1] & 0xE0) == 0xE0


def _open_failure(data: bytes, exc: BaseException) -> DecodeError:
    if _looks_like_playlist(data):
        # A format FFmpeg knows (HLS, ffconcat, DASH ...) that we refuse: it would open other files.
        return DecodeError(
            Code.FORMAT_NOT_ALLOWED, "a playlist or file list; the files it names are never read"
        )
    if _looks_like_tracker_module(data):
        return DecodeError(
            Code.TRACKER_MODULE, "a tracker module (IT/S3M/XM/MOD): no renderer for it is built in"
        )
    if _looks_like_audio(data):
        return DecodeError(Code.CORRUPT, f"the audio container could not be read ({_describe(exc)})")
    # FFmpeg recognised the format and the whitelist refused it: that is the only EINVAL opening
    # returns with our fixed options (unrecognised bytes give AVERROR_INVALIDDATA).
    if isinstance(exc, FFmpegError) and exc.errno == errno.EINVAL:
        return DecodeError(
            Code.FORMAT_NOT_ALLOWED, "a format FFmpeg recognises but this pipeline does not accept"
        )
    return DecodeError(Code.NOT_AUDIO, f"not an audio file in an accepted format ({_describe(exc)})")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, FFmpegError) and exc.strerror:
        return str(exc.strerror)
    return type(exc).__name__


@functools.lru_cache(maxsize=64)
def downmix_weights(layout: str) -> tuple[float, ...] | None:
    """Per-channel weights of FFmpeg's default downmix of ``layout`` (a layout name) to mono.

    The matrix is swresample's own (what ``ffmpeg -ac 1`` and ``av.AudioResampler(layout="mono")``
    use: centre 1, front pair -3 dB, surround pairs -6 dB, LFE 0 ...), read back by rematrixing one
    impulse per channel, then scaled so the weights' absolute values sum to at most 1, as
    swresample does for integer output: a full-scale input cannot clip. A layout whose channel
    order is unspecified ("6 channels") is read as the layout FFmpeg guesses for that many channels
    (``av_channel_layout_default``, which ``ffmpeg -ac 1`` applies: "6c" is 5.1); None where FFmpeg
    has no guess or the channels are user-defined: those are averaged.
    """
    info = av.AudioLayout(layout)
    n = info.nb_channels
    if all(c.name == "NONE" for c in info.channels):
        try:
            info = av.AudioLayout(f"{n}c")  # FFmpeg's default layout for n channels
        except ValueError:
            return None
        if info.nb_channels != n:
            return None
        layout = info.name
    if any(c.name in ("NONE", "USR") or c.name.startswith("USR") for c in info.channels):
        return None
    # Packed input: PyAV's from_ndarray mishandles planar frames of 8 or more channels.
    impulses = av.AudioFrame.from_ndarray(
        np.eye(n, dtype=np.float64).reshape(1, -1), format="dbl", layout=layout
    )
    impulses.sample_rate = SAMPLE_RATE
    impulses.pts = 0
    resampler = av.AudioResampler(format="dbl", layout="mono", rate=SAMPLE_RATE)
    out = [*resampler.resample(impulses), *resampler.resample(None)]
    weights = np.concatenate([f.to_ndarray().reshape(-1) for f in out])
    if weights.shape != (n,):
        return None
    total = float(np.abs(weights).sum())
    if total > 1.0:
        weights = weights / total
    return tuple(float(w) for w in weights)


def _to_mono(
    raw: np.ndarray, fmt: str, planar: bool, channels: int, mix: tuple[float, ...] | None
) -> np.ndarray:
    """Decoded samples -> float32 mono in [-1, 1].

    ``raw`` is (channels, n) for a planar sample format and (1, n * channels) interleaved for a
    packed one, in the decoder's own dtype. ``mix`` holds the downmix weights; None: the average.
    """
    base = fmt[:-1] if planar else fmt
    if base in ("flt", "dbl"):
        x = raw
        scale = 1.0
    elif base in _INT_SCALE:
        x = raw.astype(np.float32)
        scale = 1.0 / _INT_SCALE[base]
    else:
        raise DecodeError(Code.UNSUPPORTED_CODEC, f"the decoder produced sample format {fmt!r}")
    rows = x if planar else x.reshape(-1, channels).T  # (channels, n), a view
    if channels == 1:
        mono = x.reshape(-1)
        if scale != 1.0:
            mono = mono * np.float32(scale)
    elif channels == 2:
        # The plain average (FFmpeg's normalised stereo matrix is 0.5/0.5 too): one rounded sum, then
        # a power of two, which is exact; the bits BLAS's 0.5/0.5 product gave.
        mono = rows[0] + rows[1]
        mono *= np.asarray(scale / 2, dtype=mono.dtype)
    else:
        # Channel by channel in float64, rounded once: a BLAS product would sum in an order that
        # depends on the CPU, and so would the stored audio.
        weights = [scale / channels] * channels if mix is None else [w * scale for w in mix]
        acc = rows[0] * np.float64(weights[0])
        for row, weight in zip(rows[1:], weights[1:], strict=True):
            acc += row * np.float64(weight)
        mono = acc
    mono = mono.astype(np.float32, copy=False)
    if base == "u8":
        # unsigned 8-bit is centred on 128: subtract what the weights made of 128
        mono -= np.float32(1.0 if mix is None or channels <= 2 else sum(mix))
    return mono


class _Resampler:
    """``av.AudioResampler("flt", "mono", 48000)``, built the same way but on a graph with one thread.

    A filter graph starts a pool of one thread per core by default, and audio filters never use it:
    creating and joining it cost ~2 % of decoding here (2 cores), more on larger workers.
    """

    def __init__(self) -> None:
        self.graph: Any = None

    def resample(self, frame: av.AudioFrame | None) -> list[av.AudioFrame]:
        if self.graph is None:
            if frame is None:
                return []
            graph = av.filter.Graph()
            graph.threads = 1
            extra = {} if frame.time_base is None else {"time_base": f"{frame.time_base}"}
            src = graph.add(
                "abuffer",
                sample_rate=f"{frame.sample_rate}",
                sample_fmt=frame.format.name,
                channel_layout=frame.layout.name,
                **extra,
            )
            fmt = graph.add(
                "aformat", sample_rates=f"{SAMPLE_RATE}", sample_fmts="flt", channel_layouts="mono"
            )
            sink = graph.add("abuffersink")
            src.link_to(fmt)
            fmt.link_to(sink)
            graph.configure()
            self.graph = graph
        self.graph.push(frame)
        out = []
        while True:
            try:
                out.append(self.graph.pull())
            except EOFError:
                break
            except FFmpegError as e:
                if e.errno != errno.EAGAIN:
                    raise
                break
        return out


class _Accumulator:
    """Collects decoded frames, converts them to mono in blocks, resamples to 48 kHz."""

    def __init__(self) -> None:
        self.out: list[np.ndarray] = []
        self.total = 0  # samples in self.out
        # One list of arrays per plane: planar formats have a plane per channel, packed ones one.
        self._pending: list[list[np.ndarray]] = []
        self._pending_n = 0
        self._key: tuple[str, int, int] | None = None  # (sample format, channels, rate)
        self._layout = ""
        self._mix: tuple[float, ...] | None = None
        self._planar = False
        self._dtype: np.dtype = np.dtype(np.float32)
        self._resampler: _Resampler | None = None
        self._pts = 0

    def add(self, frame: av.AudioFrame) -> None:
        fmt = frame.format
        layout = frame.layout
        key = (fmt.name, layout.nb_channels, frame.sample_rate)
        # Two layouts of the same width (5.1 and 6.0) mix differently; the name is only looked up
        # for more than two channels, so mono and stereo pay nothing for it.
        if key != self._key or (key[1] > 2 and layout.name != self._layout):
            # Chained Ogg streams and MP3s can change rate or channels mid-file.
            self._convert_pending()
            planar = fmt.is_planar
            base = fmt.name[:-1] if planar else fmt.name
            if base not in _DTYPES:
                raise DecodeError(Code.UNSUPPORTED_CODEC, f"the decoder produced sample format {fmt.name!r}")
            if self._key is None or key[2] != self._key[2]:
                self._drain_resampler()
                self._resampler = None if key[2] == SAMPLE_RATE else _Resampler()
                self._pts = 0
            self._key = key
            self._layout = layout.name if key[1] > 2 else ""
            self._mix = downmix_weights(self._layout) if key[1] > 2 else None
            self._planar = planar
            self._dtype = np.dtype(_DTYPES[base])
            self._pending = [[] for _ in range(key[1] if planar else 1)]
        n = frame.samples
        count = n if self._planar else n * key[1]
        # Views on the frame's own buffers (they keep the frame alive): to_ndarray would copy and
        # stack every frame, which costs more than everything else we do per frame.
        for plane, chunks in zip(frame.planes, self._pending, strict=True):
            # (through a memoryview: the buffer protocol numpy's stubs know before Python 3.12)
            chunks.append(np.frombuffer(memoryview(plane), dtype=self._dtype, count=count))
        self._pending_n += n
        if self._pending_n >= key[2] * _BLOCK_SECONDS:
            self._convert_pending()

    def finish(self) -> None:
        self._convert_pending()
        self._drain_resampler()

    def _convert_pending(self) -> None:
        if not self._pending_n:
            return
        assert self._key is not None
        fmt, channels, rate = self._key
        n = self._pending_n
        raw = np.empty((len(self._pending), n * (1 if self._planar else channels)), dtype=self._dtype)
        for row, chunks in zip(raw, self._pending, strict=True):
            np.concatenate(chunks, out=row)
            chunks.clear()
        self._pending_n = 0
        mono = _to_mono(raw, fmt, self._planar, channels, self._mix)
        if self._resampler is None:
            self._emit(mono)
            return
        frame = av.AudioFrame.from_ndarray(mono[np.newaxis, :], format="flt", layout="mono")
        frame.sample_rate = rate
        frame.pts = self._pts
        self._pts += n
        for out in self._resampler.resample(frame):
            self._emit(out.to_ndarray()[0])

    def _drain_resampler(self) -> None:
        if self._resampler is not None:
            for out in self._resampler.resample(None):
                self._emit(out.to_ndarray()[0])
            self._resampler = None

    def _emit(self, mono: np.ndarray) -> None:
        if mono.size:
            self.out.append(mono)
            self.total += mono.size


def _check_format(rate: int, channels: int, max_channels: int) -> None:
    if channels > max_channels:
        raise DecodeError(
            Code.TOO_MANY_CHANNELS, f"{channels} channels, more than the {max_channels} allowed"
        )
    if rate and not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise DecodeError(
            Code.BAD_SAMPLE_RATE, f"sample rate {rate} Hz is outside {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz"
        )


def _source_duration(container: Any, stream: Any) -> float | None:
    seconds: float | None = None
    if stream.duration is not None and stream.time_base is not None:
        seconds = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        seconds = container.duration / av.time_base
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


# Elementary-stream demuxers: FFmpeg estimates their duration from the bitrate and the file size.
_ESTIMATED_DURATION = frozenset(
    {"aac", "loas", "ac3", "eac3", "dts", "dtshd", "truehd", "mlp", "amr", "amrnb", "amrwb", "spdif"}
)


def _mp3_has_length_header(data: bytes) -> bool:
    """A Xing/Info (LAME) or VBRI header in the first frame: the file states its frame count."""
    start = 0
    if data.startswith(b"ID3") and len(data) >= 10:
        size = (data[6] & 0x7F) << 21 | (data[7] & 0x7F) << 14 | (data[8] & 0x7F) << 7 | (data[9] & 0x7F)
        start = 10 + size + (10 if data[5] & 0x10 else 0)
    head = data[start : start + 4096]
    sync = next((i for i in range(len(head) - 1) if head[i] == 0xFF and head[i + 1] & 0xE0 == 0xE0), -1)
    if sync < 0:
        return False
    frame = head[sync : sync + 200]
    return b"Xing" in frame or b"Info" in frame or b"VBRI" in frame


# A WAV header's `data` size that means "unknown" (FFmpeg writes these when it cannot seek back).
_WAV_SIZE_UNKNOWN = (0, 0xFFFFFFFF)


def _wav_declared_seconds(data: bytes) -> float | None:
    """What a RIFF/WAVE header says the data chunk holds, in seconds; None if it does not say.

    FFmpeg clamps the data size to the bytes actually present, so a WAV cut short (the commonest
    partial download) looks whole to it; the header still says how long the file was meant to be.
    Only the chunk headers are walked, and only within the first 64 KiB."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    pos, byte_rate = 12, 0
    while pos + 8 <= min(len(data), 65536):
        chunk, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        if chunk == b"fmt " and size >= 16 and pos + 20 <= len(data):
            byte_rate = int.from_bytes(data[pos + 16 : pos + 20], "little")  # nAvgBytesPerSec
        elif chunk == b"data":
            if size in _WAV_SIZE_UNKNOWN or byte_rate <= 0:
                return None
            return size / byte_rate
        pos += 8 + size + (size & 1)  # chunks are padded to an even length
    return None


def _declared_duration(container_name: str, seconds: float | None, data: bytes) -> float | None:
    names = set(container_name.split(","))
    if "wav" in names:
        declared = _wav_declared_seconds(data)
        if declared is not None:
            return max(declared, seconds or 0.0)
    if seconds is None or names & _ESTIMATED_DURATION:
        return None
    if "mp3" in names and not _mp3_has_length_header(data):
        return None
    return seconds


def _ogg_chain_starts(data: bytes) -> list[int]:
    """Offsets where each chained stream of an Ogg file begins ([0] for an ordinary file).

    A chain starts with beginning-of-stream pages (several, for a multiplexed one) after a page
    that was not one. Walks the page headers only; stops at the first byte that is not a page."""
    starts = [0]
    pos, previous_bos = 0, True
    while pos + 27 <= len(data) and data[pos : pos + 4] == b"OggS":
        segments = data[pos + 26]
        header = 27 + segments
        if pos + header > len(data):
            break
        bos = bool(data[pos + 5] & 0x02)
        if bos and not previous_bos:
            starts.append(pos)
        previous_bos = bos
        pos += header + sum(data[pos + 27 : pos + header])
    return starts


def too_short(samples: int, min_duration_s: float = 0.0) -> str | None:
    """The duration rule, stated once: why ``samples`` decoded samples (48 kHz) are too short to be a
    clip under ``min_duration_s`` (nothing decoded always is), or None."""
    if samples < 1:
        return f"{samples} samples decoded, fewer than the 1 required"
    seconds = samples / SAMPLE_RATE
    if seconds < min_duration_s:
        return f"clip is {seconds:.3f} s, under the {min_duration_s:g} s minimum"
    return None


def decode_audio(
    data: bytes,
    *,
    max_duration_s: float = 300.0,
    min_duration_s: float = 0.0,
    time_limit_s: float | None = 60.0,
    max_channels: int = 32,
) -> DecodedAudio:
    """Decode an encoded audio file held in memory to float32 mono at 48 kHz.

    ``max_duration_s`` caps the output (longer input is cut, ``truncated=True``); a clip shorter
    than ``min_duration_s`` (or empty) is ``too_short`` (:func:`too_short`); ``time_limit_s``
    bounds wall time (None: unbounded). The caller bounds the input's size (``storage.read_bytes``
    reads at most ``max_file_bytes``). Raises :class:`DecodeError` for anything that cannot become a
    sample.
    """
    started = time.monotonic()
    ffmpeg_cpu.pin()  # one set of FFmpeg's SIMD paths, whatever this CPU has (once per process)
    if not isinstance(data, bytes | bytearray):
        data = bytes(data)  # memoryview and friends: the sniffing below needs startswith
    if not max_duration_s > 0:
        raise ValueError("max_duration_s must be positive")
    if len(data) == 0:
        raise DecodeError(Code.EMPTY_FILE, "the file is empty (0 bytes)")
    deadline = None if time_limit_s is None else started + time_limit_s
    try:
        decoded = _decode(data, _Limits(max_duration_s, deadline, time_limit_s, max_channels))
        short = too_short(len(decoded.samples), min_duration_s)
        if short:
            raise DecodeError(Code.TOO_SHORT, short)
        return decoded
    except DecodeError:
        raise
    except MemoryError:
        raise DecodeError(Code.TOO_LARGE, "decoding ran out of memory") from None
    except Exception as exc:
        # Includes av.error.ExitError from the interrupt callback when the deadline passes inside
        # FFmpeg, and anything else PyAV raises on hostile input.
        if deadline is not None and time.monotonic() >= deadline:
            raise DecodeError(Code.TIME_LIMIT, f"decoding took longer than {time_limit_s} s") from None
        raise DecodeError(Code.CORRUPT, f"decoding failed ({_describe(exc)})") from None


# A later chained Ogg stream that fails with one of these fails the whole file: they are limits and
# refusals, not damage; a damaged chain is dropped (and counted) instead.
_FATAL_IN_ANY_CHAIN = frozenset(
    {Code.TIME_LIMIT, Code.TOO_MANY_CHANNELS, Code.BAD_SAMPLE_RATE, Code.NON_FINITE}
)


@dataclass(frozen=True)
class _Limits:
    """The bounds one decode runs under (see :func:`decode_audio`)."""

    max_duration_s: float
    deadline: float | None  # time.monotonic() value
    time_limit_s: float | None  # for the message
    max_channels: int


def _decode(data: bytes, limits: _Limits) -> DecodedAudio:
    starts = _ogg_chain_starts(data) if data.startswith(b"OggS") else [0]
    if len(starts) == 1:
        return _decode_one(data, limits)
    # FFmpeg's Ogg demuxer stops at a chain whose stream differs from the first (PATCHWELCOME), so
    # each chain is decoded as the file it once was and the results are joined.
    parts: list[DecodedAudio] = []
    dropped = 0
    remaining = limits.max_duration_s
    for begin, end in zip(starts, [*starts[1:], len(data)], strict=True):
        try:
            part = _decode_one(data[begin:end], replace(limits, max_duration_s=remaining))
            if not len(part.samples):  # a chain with nothing in it counts as one that failed
                raise DecodeError(Code.TOO_SHORT, str(too_short(0)))
        except DecodeError as e:
            if not parts or e.code in _FATAL_IN_ANY_CHAIN:
                raise
            dropped += 1
            continue
        parts.append(part)
        remaining -= part.duration_s
        if part.truncated or remaining <= 0:
            break
    first = parts[0]
    samples = np.concatenate([p.samples for p in parts])  # every part holds at least one sample
    declared = [p.declared_duration_s for p in parts]
    return DecodedAudio(
        samples=samples,
        source_rate=first.source_rate,
        source_channels=max(p.source_channels for p in parts),
        codec=first.codec,
        container=first.container,
        truncated=any(p.truncated for p in parts),
        source_duration_s=sum(p.source_duration_s or 0.0 for p in parts),
        declared_duration_s=None if None in declared else sum(d or 0.0 for d in declared),
        chains_dropped=dropped,
    )


def _decode_one(data: bytes, limits: _Limits) -> DecodedAudio:
    max_duration_s, deadline, time_limit_s, max_channels = (
        limits.max_duration_s,
        limits.deadline,
        limits.time_limit_s,
        limits.max_channels,
    )

    def check_time() -> None:
        if deadline is not None and time.monotonic() >= deadline:
            raise DecodeError(Code.TIME_LIMIT, f"decoding took longer than {time_limit_s} s")

    try:
        container = av.open(
            io.BytesIO(data),
            mode="r",
            container_options=SAFE_INPUT_OPTIONS,
            metadata_errors="replace",
            # interrupts FFmpeg itself if opening (probing, stream analysis) or one read stalls
            timeout=time_limit_s,
        )
    except Exception as exc:
        check_time()
        raise _open_failure(data, exc) from None

    with container:
        check_time()
        container_name = container.format.name
        # Belt and braces: the whitelist already enforced this inside FFmpeg.
        if not _ALLOWED_SET.intersection(container_name.split(",")):
            raise DecodeError(Code.FORMAT_NOT_ALLOWED, f"container format {container_name!r} is not accepted")
        stream = container.streams.best("audio")
        if not isinstance(stream, AudioStream):  # None (best("audio") finds no other kind)
            raise DecodeError(Code.NO_AUDIO_STREAM, f"the {container_name} file has no audio stream")
        ctx = stream.codec_context
        if ctx is None or ctx.codec is None:
            raise DecodeError(Code.UNSUPPORTED_CODEC, "no decoder for the audio stream's codec")
        codec = ctx.codec.canonical_name
        source_rate = int(ctx.sample_rate or 0)
        source_channels = int(ctx.channels or 0)
        _check_format(source_rate, source_channels, max_channels)

        cap = round(max_duration_s * SAMPLE_RATE)
        acc = _Accumulator()
        packets = 0
        bad_packets = 0
        cut_short = False
        over_cap = False

        def take(frames: list[av.AudioFrame]) -> None:
            nonlocal source_rate, source_channels
            for frame in frames:
                if frame.samples == 0:
                    continue
                rate = frame.sample_rate
                channels = frame.layout.nb_channels
                _check_format(rate, channels, max_channels)
                if not source_rate:
                    source_rate = rate
                if not source_channels:
                    source_channels = channels
                acc.add(frame)

        demux = container.demux(stream)
        while acc.total <= cap:
            check_time()
            try:
                packet = next(demux)
            except StopIteration:
                break
            except FFmpegError:
                # The container broke off part-way (typically a download cut short): keep what decoded.
                cut_short = True
                break
            packets += 1
            try:
                frames = packet.decode()
            except (FFmpegError, ValueError):
                bad_packets += 1
                if bad_packets > 100 and bad_packets * 2 > packets:
                    raise DecodeError(Code.CORRUPT, "most packets fail to decode") from None
                continue
            take(frames)

        over_cap = acc.total > cap
        if not over_cap:
            if cut_short:
                try:
                    take(ctx.decode(None))
                except (FFmpegError, ValueError):
                    bad_packets += 1
            check_time()
            acc.finish()
            over_cap = acc.total > cap
        check_time()
        source_duration_s = _source_duration(container, stream)

    if bad_packets > max(_BAD_PACKETS_ALLOWED, _BAD_PACKET_FRACTION * packets) or (
        bad_packets and acc.total == 0
    ):
        raise DecodeError(Code.CORRUPT, f"{bad_packets} of {packets} audio packets failed to decode")
    if cut_short and acc.total == 0:
        raise DecodeError(Code.CORRUPT, "the file ends before any audio could be decoded")

    samples = np.zeros(0, dtype=np.float32) if not acc.out else np.concatenate(acc.out)
    if over_cap:
        samples = samples[:cap]
    samples = np.ascontiguousarray(samples, dtype=np.float32)
    if not np.isfinite(samples).all():
        raise DecodeError(Code.NON_FINITE, "the audio contains NaN or infinite sample values")
    return DecodedAudio(
        samples=samples,
        source_rate=source_rate,
        source_channels=source_channels,
        codec=codec,
        container=container_name,
        truncated=over_cap,
        source_duration_s=source_duration_s,
        declared_duration_s=_declared_duration(container_name, source_duration_s, data),
    )
