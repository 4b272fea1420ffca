"""Media I/O on PyAV: decoding video and audio files into ``Clip``s, and writing mp4 and wav files."""

from avlearn.io.errors import MediaError
from avlearn.io.read import HELD_NOTE, Audio, Clip, HeldFrameWarning, read_audio, read_clip
from avlearn.io.write import write_video, write_wav

__all__ = ["HELD_NOTE", "Audio", "Clip", "HeldFrameWarning", "MediaError", "read_audio", "read_clip", "write_video",
           "write_wav"]  # fmt: skip
