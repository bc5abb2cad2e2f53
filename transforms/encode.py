"""Encoding float samples into real audio files (mp3, ogg, opus, m4a, flac, wav) with the FFmpeg inside
PyAV, deterministically: the encoders run with FFmpeg's bitexact flags, so the same samples give the same
bytes on every run of the pinned PyAV.

The demo and the tests make their files with it (pipeline/demo/synth.py); CLAP scoring makes the
calibration copy of a clip and the report's excerpts with it (scoring/stage.py).
"""

from __future__ import annotations

import io

import av
import numpy as np
from av.audio.stream import AudioStream

FORMATS = ("mp3", "ogg", "opus", "m4a", "flac", "wav")

# fmt -> (muxer, encoder, codec options). FFmpeg's native vorbis encoder is the only vorbis encoder in
# PyAV's wheel (no libvorbis) and is flagged experimental, so it needs strict=experimental. "ipod" is
# FFmpeg's muxer for .m4a (mp4 with the iTunes brand). AAC uses the "fast" coder: the default
# "twoloop" one left glitches as large as the signal in a pure 0.5 sine at the default bitrate.
_ENCODERS: dict[str, tuple[str, str, dict[str, str]]] = {
    "mp3": ("mp3", "libmp3lame", {}),
    "ogg": ("ogg", "vorbis", {"strict": "experimental"}),
    "opus": ("ogg", "libopus", {}),
    "m4a": ("ipod", "aac", {"aac_coder": "fast"}),
    "flac": ("flac", "flac", {}),
    "wav": ("wav", "pcm_s16le", {}),
}

# Sample formats chosen explicitly where the encoder offers several: 16-bit for the lossless ones
# (FFmpeg would otherwise be free to pick 32-bit storage for FLAC); libopus's float API for Opus, so
# nothing is rounded to 16 bits before the lossy encoder.
_SAMPLE_FORMATS = {"flac": "s16", "wav": "s16", "opus": "flt"}


def _layout(channels: int) -> str:
    # FFmpeg's default layout for N channels ("1c" -> mono, "2c" -> stereo, "6c" -> 5.1)
    return f"{channels}c"


def encode_audio(samples: np.ndarray, rate: int, fmt: str) -> bytes:
    """Encode float32 ``samples`` ((n,) or (channels, n), values in [-1, 1]) as a ``fmt`` file.

    Returns the whole file's bytes, made in memory. Where the encoder cannot take ``rate`` (Opus:
    48/24/16/12/8 kHz; MP3 and AAC: their standard rates), the signal is resampled to 48 kHz first.
    FFmpeg's vorbis encoder only writes stereo, so mono input becomes two identical channels in "ogg".
    """
    if fmt not in _ENCODERS:
        raise ValueError(f"unknown format {fmt!r}: expected one of {FORMATS}")
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim == 1:
        x = x[np.newaxis, :]
    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f"samples must be (n,) or (channels, n), got shape {np.shape(samples)}")
    if x.shape[1] == 0:
        # some encoders (FFmpeg's vorbis) never finish flushing when they were given no audio
        raise ValueError("cannot encode an empty signal")
    if fmt == "ogg" and x.shape[0] == 1:
        x = np.repeat(x, 2, axis=0)
    channels = x.shape[0]
    layout = _layout(channels)

    muxer, encoder, codec_options = _ENCODERS[fmt]
    codec = av.Codec(encoder, "w")
    out_rate = rate
    if codec.audio_rates and rate not in codec.audio_rates:
        out_rate = 48_000 if 48_000 in codec.audio_rates else max(codec.audio_rates)

    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(x), format="fltp", layout=layout)
    frame.sample_rate = rate
    frame.pts = 0
    frames = [frame]

    buf = io.BytesIO()
    # bitexact: no encoder version strings or dates in the file, so bytes depend only on the input
    with av.open(buf, "w", format=muxer, container_options={"fflags": "+bitexact"}) as out:
        stream = out.add_stream(
            encoder, rate=out_rate, layout=layout, options={**codec_options, "flags": "+bitexact"}
        )
        assert isinstance(stream, AudioStream)  # the encoder is an audio codec's (the types say any)
        if fmt in _SAMPLE_FORMATS:
            stream.format = _SAMPLE_FORMATS[fmt]
        if out_rate != rate:
            resampler = av.AudioResampler(format="fltp", layout=layout, rate=out_rate)
            frames = [*resampler.resample(frame), *resampler.resample(None)]
        for f in frames:
            for packet in stream.encode(f):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()
