"""16-bit FLAC in memory, the audio member of every corpus sample (48 kHz mono, 16-bit:
FFmpeg would pick 24-bit for lossy sources unless told, twice the bytes for nothing).

The bytes must depend only on the samples: shards are compared and deduplicated by content, and a
rerun must write identical tars. FFmpeg's bitexact flags keep its version string and any date out
of the file (the Vorbis-comment vendor field becomes plain "ffmpeg"); the PyAV (hence FFmpeg) version
is pinned in setup.py because a different encoder build may choose different (equally valid) bytes.
"""

from __future__ import annotations

import io

import av
import numpy as np

from clap_corpus.core.audio import SAMPLE_RATE
from clap_corpus.core.rejects import Code
from clap_corpus.transforms.decode import DecodeError


def encode_flac(samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> bytes:
    """Encode int16 mono ``samples`` (as ``core.audio.quantize_int16`` gives them) as FLAC."""
    x = np.asarray(samples)
    if x.dtype != np.int16 or x.ndim != 1:
        raise ValueError(f"expected a 1-D int16 array, got {x.dtype} with shape {x.shape}")
    if x.size == 0:
        raise ValueError("cannot encode an empty signal")
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(x)[np.newaxis, :], format="s16", layout="mono")
    frame.sample_rate = sample_rate
    frame.pts = 0
    buf = io.BytesIO()
    # No 8 KiB PADDING block (FFmpeg reserves one for later tag edits): ~1 % of a 10 s clip, for nothing.
    options = {"fflags": "+bitexact", "metadata_header_padding": "0"}
    with av.open(buf, "w", format="flac", container_options=options) as out:
        stream = out.add_stream("flac", rate=sample_rate, layout="mono", options={"flags": "+bitexact"})
        # 16-bit samples stated, not left to the encoder default (which may be 32-bit: twice the bytes)
        stream.format = "s16"
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def decode_flac(data: bytes) -> tuple[np.ndarray, int]:
    """Read a FLAC written by :func:`encode_flac`: (int16 samples, sample rate).

    Mono gives shape (n,); a multichannel FLAC gives (channels, n). Raises :class:`DecodeError` for
    bytes that are not a readable 16-bit FLAC.
    """
    if len(data) == 0:
        raise DecodeError(Code.EMPTY_FILE, "the file is empty (0 bytes)")
    if not data.startswith(b"fLaC"):
        # forced to the FLAC demuxer, FFmpeg would otherwise scan any bytes for frame headers
        raise DecodeError(Code.NOT_AUDIO, "not a FLAC file (no fLaC marker)")
    chunks: list[np.ndarray] = []
    try:
        # Only the FLAC demuxer, and no protocols: the same locks as transforms.decode.
        with av.open(
            io.BytesIO(data), mode="r", format="flac", container_options={"protocol_whitelist": "none"}
        ) as container:
            if not container.streams.audio:
                raise DecodeError(Code.NO_AUDIO_STREAM, "the FLAC file has no audio stream")
            stream = container.streams.audio[0]
            rate = int(stream.codec_context.sample_rate)
            channels = int(stream.codec_context.channels)
            for frame in container.decode(stream):
                if frame.format.name not in ("s16", "s16p"):
                    raise DecodeError(
                        Code.CORRUPT, f"expected 16-bit FLAC, got samples as {frame.format.name}"
                    )
                arr = frame.to_ndarray()
                # packed s16 arrives as (1, n * channels), planar as (channels, n)
                chunks.append(arr.reshape(-1, channels).T if not frame.format.is_planar else arr)
    except DecodeError:
        raise
    except Exception as exc:
        raise DecodeError(Code.CORRUPT, f"not a readable FLAC file ({type(exc).__name__})") from None
    samples = np.concatenate(chunks, axis=1) if chunks else np.zeros((channels, 0), dtype=np.int16)
    if channels == 1:
        samples = samples[0]
    return np.ascontiguousarray(samples, dtype=np.int16), rate
