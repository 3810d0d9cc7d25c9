"""Audio in and out: decode anything ffmpeg (PyAV) reads to 16 kHz mono float32, write WAV.

Decoding goes through faster-whisper's `decode_audio` (PyAV bundles the FFmpeg
libraries, so no system ffmpeg is needed). Errors are typed so that the CLI
prints one line and services answer 400/413/415: a missing or empty file is
`InvalidInput`, bytes no decoder understands are `AudioDecodeError`, audio
above the duration cap is `TooLarge`: checked from the container header before
decoding when it states a duration, and counted sample by sample while decoding, so a
file whose header carries no length (a 180 KB FLAC can hold an hour of silence) is cut
off at the cap instead of being decoded whole first.
"""

from __future__ import annotations

import gc
import io
import itertools
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from cascade.types import AudioDecodeError, Cancelled, InvalidInput, TooLarge

logger = logging.getLogger(__name__)

AudioSource = str | Path | bytes

SAMPLE_RATE = 16000


def _describe(source: AudioSource) -> str:
    return f"{len(source)} bytes of upload" if isinstance(source, bytes) else str(source)


def _open_source(source: AudioSource) -> str | BinaryIO:
    """A path string or a file object for PyAV, after the checks that need no decoder."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise InvalidInput("empty audio: 0 bytes", param="file")
        return io.BytesIO(bytes(source))
    path = Path(source).expanduser()
    if not path.exists():
        raise InvalidInput(f"file not found: {path}", param="file")
    if path.is_dir():
        raise InvalidInput(f"{path} is a directory, not an audio file", param="file")
    if path.stat().st_size == 0:
        raise InvalidInput(f"empty file: {path}", param="file")
    return str(path)


def probe_duration(source: AudioSource) -> float | None:
    """Duration in seconds as the container header states it (None when it does not say)."""
    import av

    handle = _open_source(source)
    try:
        with av.open(handle, mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise AudioDecodeError(f"{_describe(source)} is not audio (no audio stream in it)", param="file")
            stream = container.streams.audio[0]
            if stream.duration is not None and stream.time_base is not None:
                return float(stream.duration * stream.time_base)
            return container.duration / 1e6 if container.duration else None
    except av.FFmpegError as exc:
        raise AudioDecodeError(f"{_describe(source)} is not audio that ffmpeg can decode ({exc.strerror or exc})", param="file") from exc


def _check_duration(seconds: float | None, cap: float | None, source: AudioSource) -> None:
    if cap is not None and seconds is not None and seconds > cap:
        raise TooLarge(f"{_describe(source)}: audio is {seconds:.0f} s long, above the {cap:.0f} s limit", param="file")


def load_audio(
    source: AudioSource, *, sample_rate: int = SAMPLE_RATE, max_duration_s: float | None = None,
    cancel: threading.Event | None = None,
) -> np.ndarray:
    """Decode a path or encoded bytes to mono float32 at `sample_rate` (stereo is averaged).

    At most `max_duration_s` of audio is ever held: decoding stops with TooLarge as soon as
    the count passes it. `cancel` (set by a caller that gave up) stops decoding with Cancelled.
    A decodable file with no samples gives an empty array (callers treat it like silence).
    """
    import av

    _check_duration(probe_duration(source), max_duration_s, source)
    handle = _open_source(source)
    cap = None if max_duration_s is None else int(max_duration_s * sample_rate) + 1
    try:
        pcm = _decode_bounded(handle, sample_rate, cap, cancel)
    except _OverCap as over:
        raise TooLarge(f"{_describe(source)}: audio is longer than the {max_duration_s:.0f} s limit "
                       f"(stopped decoding at {over.samples / sample_rate:.0f} s)", param="file") from None
    except av.FFmpegError as exc:
        raise AudioDecodeError(f"{_describe(source)} is corrupt or not audio ({exc.strerror or exc})", param="file") from exc
    except (IndexError, ValueError) as exc:  # PyAV raises these on streams without decodable frames
        raise AudioDecodeError(f"{_describe(source)} holds no decodable audio ({exc})", param="file") from exc
    logger.debug("decoded %s: %.2f s", _describe(source), len(pcm) / sample_rate)
    return pcm.astype(np.float32) / 32768.0


class _OverCap(Exception):
    def __init__(self, samples: int):
        self.samples = samples


def _valid_frames(frames: Iterator) -> Iterator:
    """Skip frames the decoder rejects (as faster-whisper's decode_audio does)."""
    import av

    while True:
        try:
            yield next(frames)
        except StopIteration:
            return
        except av.error.InvalidDataError:
            continue


def _decode_bounded(handle: str | BinaryIO, sample_rate: int, cap: int | None,
                    cancel: threading.Event | None) -> np.ndarray:
    """16-bit mono PCM at `sample_rate`, frame by frame; raises _OverCap once `cap` samples are passed."""
    import av

    resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate)
    chunks: list[np.ndarray] = []
    total = 0
    with av.open(handle, mode="r", metadata_errors="ignore") as container:
        for frame in itertools.chain(_valid_frames(container.decode(audio=0)), [None]):
            if cancel is not None and cancel.is_set():
                raise Cancelled("the client went away: decoding stopped")
            for out in resampler.resample(frame):
                chunk = out.to_ndarray().reshape(-1)
                total += chunk.size
                if cap is not None and total > cap:
                    raise _OverCap(total)
                chunks.append(chunk)
        if not chunks and not container.streams.audio[0].codec_context.sample_rate:
            # a container opened by its extension alone (text named .flac): a real empty file still has a rate
            raise ValueError("its audio stream has no sample rate")
    del resampler
    gc.collect()  # PyAV's resampler keeps buffers until collected (faster-whisper issue 390)
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)


def to_float32(samples: np.ndarray) -> np.ndarray:
    """Float32 in [-1, 1] from int16 or float arrays (mono expected)."""
    if samples.dtype == np.int16:
        return samples.astype(np.float32) / 32768.0
    return np.asarray(samples, dtype=np.float32)


def to_pcm16(samples: np.ndarray) -> np.ndarray:
    """Little-endian int16 from float (clipped) or int16 samples."""
    if samples.dtype == np.int16:
        return samples
    clipped = np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0)
    return (clipped * 32767.0).round().astype("<i2")


def write_wav(path: str | Path, samples: np.ndarray, sample_rate: int) -> Path:
    """Write mono 16-bit PCM WAV; float input is clipped to [-1, 1]."""
    import soundfile as sf

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), to_pcm16(np.asarray(samples).reshape(-1)), sample_rate, subtype="PCM_16", format="WAV")
    return path


# --------------------------------------------------------------------------- encoders (TTS helper appends below)

ENCODINGS = ("wav", "flac", "mp3", "opus", "aac", "pcm")
"""Output formats of `encode_audio`; "pcm" is raw little-endian 16-bit mono with no header."""
COMPRESSED = {"mp3": ("mp3", "libmp3lame"), "opus": ("ogg", "libopus"), "aac": ("adts", "aac")}
"""Lossy formats (container, FFmpeg encoder) that PyAV encodes; each streams (concatenable frames/pages)."""


def resample(samples: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Mono float32 at `target_sr` (libswresample through PyAV, the same FFmpeg that decodes)."""
    import av

    samples = to_float32(np.asarray(samples).reshape(-1))
    if orig_sr == target_sr or samples.size == 0:
        return samples
    if orig_sr <= 0 or target_sr <= 0:
        raise InvalidInput(f"sample rates must be positive (got {orig_sr} -> {target_sr})", param="sample_rate")
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples.reshape(1, -1)), format="flt", layout="mono")
    frame.sample_rate = orig_sr
    resampler = av.AudioResampler(format="flt", layout="mono", rate=target_sr)
    frames = list(resampler.resample(frame)) + list(resampler.resample(None))
    return np.concatenate([f.to_ndarray().reshape(-1) for f in frames]).astype(np.float32)


class StreamResampler:
    """Mono float32 pieces from `orig_sr` to `target_sr` as they arrive (one libswresample state carried across
    pieces, so the joins are seamless, unlike `resample` per piece); `flush()` returns what it still holds."""

    def __init__(self, orig_sr: int, target_sr: int):
        import av

        self.orig_sr, self.target_sr = orig_sr, target_sr
        self._pts = 0
        self._resampler = av.AudioResampler(format="flt", layout="mono", rate=target_sr) if orig_sr != target_sr else None

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        samples = to_float32(np.asarray(samples).reshape(-1))
        if self._resampler is None or samples.size == 0:
            return samples
        import av

        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples.reshape(1, -1)), format="flt", layout="mono")
        frame.sample_rate, frame.pts = self.orig_sr, self._pts
        self._pts += samples.size
        return self._join(self._resampler.resample(frame))

    def flush(self) -> np.ndarray:
        return self._join(self._resampler.resample(None)) if self._resampler is not None else np.zeros(0, np.float32)

    @staticmethod
    def _join(frames: list) -> np.ndarray:
        if not frames:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate([f.to_ndarray().reshape(-1) for f in frames]).astype(np.float32)


class _Sink:
    """A write-only file for PyAV: the muxer cannot seek back, so bytes can leave as soon as they are written."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data, self.parts = b"".join(self.parts), []
        return data


class StreamEncoder:
    """mp3, Opus (in Ogg) or AAC (ADTS) encoded chunk by chunk through PyAV (FFmpeg's encoders).

    `encode(pcm16)` returns the bytes muxed so far, so a sentence's audio can be sent before the
    next one is synthesized; `finish()` flushes the encoder. `streaming=False` writes to a seekable
    buffer instead (all bytes at finish): the mp3 muxer then records the encoder delay and padding, so
    decoders return exactly the input's length. Input at a rate the codec does not take
    (Opus: 8/12/16/24/48 kHz only) is resampled by PyAV to the next rate up (22.05 -> 24 kHz).
    """

    def __init__(self, fmt: str, sample_rate: int, *, streaming: bool = True):
        import av

        if fmt not in COMPRESSED:
            raise InvalidInput(f"no streaming encoder for {fmt!r} (choose from {', '.join(COMPRESSED)})",
                               param="response_format")
        container, codec = COMPRESSED[fmt]
        rates = sorted(av.Codec(codec, "w").audio_rates or [sample_rate])
        self.output_rate = sample_rate if sample_rate in rates else next((r for r in rates if r > sample_rate), rates[-1])
        self._sink = _Sink() if streaming else io.BytesIO()
        self._out = av.open(self._sink, "w", format=container)
        self._stream = self._out.add_stream(codec, rate=self.output_rate, layout="mono")
        self.sample_rate, self._pts = sample_rate, 0

    def encode(self, pcm: bytes | np.ndarray) -> bytes:
        import av

        samples = np.frombuffer(pcm, dtype="<i2") if isinstance(pcm, bytes) else to_pcm16(np.asarray(pcm).reshape(-1))
        if samples.size:
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples.reshape(1, -1)), format="s16", layout="mono")
            frame.sample_rate, frame.pts = self.sample_rate, self._pts
            self._pts += samples.size
            for packet in self._stream.encode(frame):
                self._out.mux(packet)
        return self._sink.take() if isinstance(self._sink, _Sink) else b""

    def finish(self) -> bytes:
        for packet in self._stream.encode(None):
            self._out.mux(packet)
        self._out.close()
        return self._sink.take() if isinstance(self._sink, _Sink) else self._sink.getvalue()


def encode_audio(samples: np.ndarray, sample_rate: int, fmt: str) -> bytes:
    """Encode mono samples as wav/flac (16-bit, libsndfile), mp3/opus/aac (PyAV) or raw pcm."""
    import soundfile as sf

    pcm = to_pcm16(np.asarray(samples).reshape(-1))
    if fmt == "pcm":
        return pcm.astype("<i2").tobytes()
    if fmt not in ENCODINGS:
        raise InvalidInput(f"unknown audio format {fmt!r} (choose from {', '.join(ENCODINGS)})", param="response_format")
    if fmt in COMPRESSED:
        encoder = StreamEncoder(fmt, sample_rate, streaming=False)
        return encoder.encode(pcm) + encoder.finish()
    buf = io.BytesIO()
    sf.write(buf, pcm, sample_rate, format=fmt.upper(), subtype="PCM_16")
    return buf.getvalue()
