"""Writing media with PyAV: an H.264 mp4 with an AAC audio track, from numpy frames and a waveform; and mono
16-bit wav files (the standard library's ``wave``).

Used by AVSynth and by tests that need real media files. The same frames always give the same bytes: the encoder
runs single-threaded (x264 frame-threading can change decisions between runs), and each RGB frame is converted to
yuv420p here, by a swscale context of its own (``VideoFrame.reformat``). (Handing x264 the RGB
frames, for PyAV's encoder to convert with the context it keeps across frames, gave different bytes for the same
frames depending on what the process had done before: 2-3 variants per clip over 15 encodes, decoded pixels off
by up to 10; AVSynth of one seed then differed between ``workers=1`` and ``workers=2``.) On a CPU with AVX-512,
x264's code is capped at AVX2 (``asm=AVX2``): with its AVX-512 code the same frames encoded to different bytes in
different processes (11 of 1000 AVSynth videos between two generations, decoded pixels off by up to 14; 0 of 1000 with
the cap). Elsewhere x264 picks its code itself, which then is AVX2 at most already.
"""

from __future__ import annotations

import functools
from fractions import Fraction
from pathlib import Path

import numpy as np


def write_video(
    path: str | Path,
    frames: np.ndarray,
    fps: int,
    wave: np.ndarray | None = None,
    sample_rate: int = 16000,
    crf: int = 18,
) -> None:
    """Encode ``frames`` (T, H, W, 3) uint8 at ``fps`` and, if given, ``wave`` (N,) or (N, C) float in [-1, 1].

    H and W must be even (yuv420p). The audio is AAC at ``sample_rate``; mono for (N,), C channels for (N, C).
    """
    import av

    frames = np.ascontiguousarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    _, height, width, _ = frames.shape
    if height % 2 or width % 2:
        raise ValueError(f"H.264 with yuv420p needs even height and width, got {height}x{width}")
    with av.open(str(path), mode="w", format="mp4") as container:
        options = {"crf": str(crf), "preset": "veryfast", **x264_cpu_cap()}
        video = container.add_stream("libx264", rate=fps, options=options)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.codec_context.thread_count = 1
        audio = _add_audio_stream(container, wave, sample_rate) if wave is not None else None
        for image in frames:
            container.mux(video.encode(_yuv420p(image)))
        container.mux(video.encode(None))
        if audio is not None:
            _encode_audio(container, audio, wave, sample_rate)


@functools.cache
def x264_cpu_cap() -> dict[str, str]:
    """``{"x264-params": "asm=AVX2"}`` on a CPU with AVX-512 (numpy's CPU detection), else ``{}``.

    x264 takes ``asm`` as the instruction sets to use, not checked against the CPU, so the cap is set only where
    AVX-512 (and with it AVX2) is there.
    """
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features
    except ImportError:  # numpy < 2
        from numpy.core._multiarray_umath import __cpu_features__ as features
    return {"x264-params": "asm=AVX2"} if features.get("AVX512F") else {}


def _yuv420p(image: np.ndarray):  # noqa: ANN202 (av.VideoFrame)
    """(H, W, 3) uint8 RGB -> a new yuv420p ``av.VideoFrame``, converted by a swscale context of its own."""
    import av

    return av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")


def _add_audio_stream(container, wave: np.ndarray, sample_rate: int):  # noqa: ANN001, ANN202 (PyAV types)
    channels = 1 if wave.ndim == 1 else wave.shape[1]
    # The "fast" AAC coder is 2x faster than the default two-loop search, at no audible cost for our use.
    layout = "mono" if channels == 1 else "stereo"
    stream = container.add_stream("aac", rate=sample_rate, layout=layout, options={"aac_coder": "fast"})
    stream.codec_context.thread_count = 1
    return stream


def _encode_audio(container, stream, wave: np.ndarray, sample_rate: int) -> None:  # noqa: ANN001
    import av

    planar = np.ascontiguousarray(np.atleast_2d(wave.T if wave.ndim == 2 else wave), dtype=np.float32)  # (C, N)
    # One frame for the whole track: PyAV cuts it into the codec's frame size itself.
    frame = av.AudioFrame.from_ndarray(planar, format="fltp", layout="mono" if len(planar) == 1 else "stereo")
    frame.sample_rate = sample_rate
    frame.pts = 0
    frame.time_base = Fraction(1, sample_rate)
    container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


def write_wav(path: str | Path, wave: np.ndarray, sample_rate: int) -> Path:
    """Write ``wave`` (N,) float in [-1, 1] as a mono 16-bit PCM wav file (values outside are clipped)."""
    import wave as wavfile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pcm = np.round(np.clip(np.asarray(wave, dtype=np.float64), -1, 1) * 32767).astype("<i2")  # (N,)
    with wavfile.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())
    return path
