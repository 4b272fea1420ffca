"""AVSynth: the embedded synthetic audio-visual dataset, written as real media in the benchmarks' formats.

``generate(out, SynthConfig(...))`` renders clips (H.264 + AAC mp4 files under ``videos/``) and writes the
annotation files of AVE, LLP/AVVP, AVSBench S4/MS3, MUSIC-AVQA, VGGSound, VGGSound-AVEL40K and VALOR-style
captions (see ``formats.py`` for the layouts), of AudioSet, UCF101, MSR-VTT and VALOR question-answer pairs from
the same event clips, of ESC-50 and ImageNet-ESC's sounds (audio-only ``sounds``) and of a CoOp image set and
ImageNet-ESC's images (``images``; see ``benchmarks.py``), plus ``avsynth.json`` with the config, the class table
and the counts.

The same config and seed give identical annotations and identical decoded frames: every clip draws from its own
generator seeded by (seed, flavour, index), and the encoder is single-threaded and given frames it converts
the same way whatever the process did before (``avlearn.io.write``). The folder is written under a
temporary name and renamed when complete, so an interrupted run never leaves a folder that looks finished.
"""

from __future__ import annotations

import json
import os
import shutil
import wave
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from avlearn.data.parallel import parallel_map
from avlearn.data.synth.benchmarks import ESC_AUDIO, coop_image, esc_filename, write_clip_benchmarks
from avlearn.data.synth.classes import MAX_CLASSES, class_table, class_table_json
from avlearn.data.synth.formats import (
    avs_paths,
    write_ave,
    write_avqa,
    write_avs_meta,
    write_llp,
    write_vggsound_and_captions,
    write_vggsound_avel40k,
)
from avlearn.data.synth.mixtures import write_mixtures as write_mixtures  # the separate task's lists, on first read
from avlearn.data.synth.render import render_audio, render_frame, render_mask
from avlearn.data.synth.scene import FLAVOURS, Scene, sample_scene
from avlearn.errors import DataError

FORMAT_VERSION = 4  # 2: VGGSound-AVEL40K labels; 3: AudioSet, UCF101, MSR-VTT, VALOR QA, ESC-50, CoOp;
# 4: ImageNet-ESC's images
AVS_FRAMES = 5  # AVSBench: one frame (and mask) per second over 5 s
ESC_SECONDS = 5  # ESC-50 clips are 5 s long
LATER_DEFAULTS = {"sound_background": 0.0, "event_distractors": "half", "extra_test_clips": 0}  # options added after
# format 4, at the value that renders format 4
EVENT_DISTRACTORS = ("half", "both")
_PREFIX = {"events": "ev", "s4": "s4", "ms3": "ms", "avqa": "", "sounds": "sd", "images": "im"}


@dataclass(frozen=True)
class SynthConfig:
    """What AVSynth renders. ``clips`` is the number of event clips (AVE, LLP, VGGSound, AudioSet, UCF101,
    captions); the AVSBench and AVQA subsets get ``avs_clips`` / ``avqa_clips`` each, the ESC-50 sounds
    ``sound_clips`` and the CoOp images ``image_clips`` (-1: a quarter of ``clips``)."""

    clips: int = 400
    seed: int = 0
    num_classes: int = 10
    size: int = 64
    seconds: int = 10
    fps: int = 4
    sample_rate: int = 16000
    avs_clips: int = -1
    avqa_clips: int = -1
    sound_clips: int = -1
    image_clips: int = -1
    # Probability that an ESC-50 sound also holds a background sound of another class, heard over a random part of
    # it (as an event clip's audio-only distractor); 0 renders format 4's clean sounds (docs/avsynth.md).
    sound_background: float = 0.0
    # The event clips' single-modality distractors: ``half`` (format 4: one, only seen or only heard, in half the
    # clips) or ``both`` (every clip: an object of a second class only seen and a sound of a third class only heard,
    # so one modality alone names the class in half the clips at best; docs/avsynth.md).
    event_distractors: str = "half"
    # Event clips rendered after the ``clips`` ones, all into the test split: the first ``clips`` are split 80/10/10
    # as without them (the same clips, the same splits), so a larger test split leaves training and validation as
    # they are (docs/avsynth.md, "Splits").
    extra_test_clips: int = 0

    def params(self) -> dict:
        """The parameters that name and check a folder: every field, but an option added after format 4 only when
        it is not its default, so the folders made before it keep their cache key and their ``avsynth.json``."""
        return {k: v for k, v in asdict(self).items() if k not in LATER_DEFAULTS or v != LATER_DEFAULTS[k]}

    def count(self, flavour: str) -> int:
        """Number of clips of ``flavour``."""
        if flavour == "events":
            return self.clips + self.extra_test_clips
        extra = {"s4": self.avs_clips, "ms3": self.avs_clips, "avqa": self.avqa_clips, "sounds": self.sound_clips,
                 "images": self.image_clips}[flavour]  # fmt: skip
        return self.clips // 4 if extra < 0 else extra

    def split(self, flavour: str, index: int) -> str:
        """The split of clip ``index`` of ``flavour``: 80/10/10 by index over ``count(flavour)``, or for the event
        clips over the first ``clips`` of them, the ``extra_test_clips`` after those being test clips."""
        return split_of(index, self.clips if flavour == "events" else self.count(flavour))

    def validate(self) -> None:
        """Raise a one-line DataError for values AVSynth cannot render."""
        checks = [
            (self.clips >= 0, "clips must be >= 0"),
            (self.extra_test_clips >= 0, "extra_test_clips must be >= 0"),
            (2 <= self.num_classes <= MAX_CLASSES, f"num_classes must be in [2, {MAX_CLASSES}]"),
            (self.size >= 16 and self.size % 2 == 0, "size must be an even number >= 16"),
            (self.seconds >= AVS_FRAMES, f"seconds must be >= {AVS_FRAMES}"),
            (1 <= self.fps <= 60, "fps must be in [1, 60]"),
            (8000 <= self.sample_rate <= 48000, "sample_rate must be in [8000, 48000]"),
            (0.0 <= self.sound_background <= 1.0, "sound_background must be in [0, 1]"),
            (self.event_distractors in EVENT_DISTRACTORS, f"event_distractors must be one of {EVENT_DISTRACTORS}"),
            (self.event_distractors == "half" or self.num_classes >= 3, "event_distractors='both' needs 3+ classes"),
        ]
        bad = [msg for ok, msg in checks if not ok]
        if bad:
            raise DataError(f"bad AVSynth parameters: {'; '.join(bad)} (got {asdict(self)})")


def split_of(index: int, total: int) -> str:
    """80/10/10 train/val/test by index over ``total`` clips (every split gets a clip once ``total`` >= 3); an index
    past ``total`` is a test clip."""
    n_val = max(1, total // 10) if total >= 3 else 0
    n_train = total - 2 * n_val
    return "train" if index < n_train else "val" if index < n_train + n_val else "test"


def clip_id(flavour: str, index: int) -> str:
    """The clip's id: ``ev000012`` for events; 8 digits for AVQA, as MUSIC-AVQA's ids."""
    return f"{index:08d}" if flavour == "avqa" else f"{_PREFIX[flavour]}{index:06d}"


def _seconds(cfg: SynthConfig, flavour: str) -> int:
    return {"s4": AVS_FRAMES, "ms3": AVS_FRAMES, "sounds": ESC_SECONDS, "images": 1}.get(flavour, cfg.seconds)


def _write_wav(path: Path, samples: np.ndarray, sample_rate: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pcm = np.round(np.clip(samples, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())


def _write_avs_files(root: Path, scene: Scene, split: str, cfg: SynthConfig, audio: np.ndarray) -> None:
    from PIL import Image

    classes = class_table(cfg.num_classes)
    paths = avs_paths(root, scene, split, classes)
    # AVSBench S4 supervises only the first frame in training, and publishes only that mask.
    mask_frames = 1 if (scene.flavour == "s4" and split == "train") else AVS_FRAMES
    for i in range(AVS_FRAMES):
        t = i + 0.5
        frame_path = Path(str(paths["frame"]).format(i=i + 1))
        frame_path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(render_frame(scene, classes, t, cfg.size)).save(frame_path)
        if i < mask_frames:
            mask_path = Path(str(paths["mask"]).format(i=i + 1))
            mask_path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(render_mask(scene, classes, t, cfg.size).astype(np.uint8) * 255).save(mask_path)
    _write_wav(paths["wav"], audio, cfg.sample_rate)


def _render_clip(root: Path, cfg: SynthConfig, flavour: str, index: int) -> tuple[Scene, str]:
    from avlearn.io.write import write_video

    rng = np.random.default_rng([cfg.seed, FLAVOURS.index(flavour), index])
    seconds = _seconds(cfg, flavour)
    scene = sample_scene(flavour, clip_id(flavour, index), rng, seconds, cfg.num_classes, index, cfg.sound_background,
                         cfg.event_distractors)  # fmt: skip
    classes = class_table(cfg.num_classes)
    split = cfg.split(flavour, index)
    if flavour == "sounds":  # audio only, in ESC-50's folder
        audio = render_audio(scene, classes, cfg.sample_rate, seed=int(rng.integers(2**31)))
        _write_wav(root / ESC_AUDIO / esc_filename(scene, cfg.num_classes), audio, cfg.sample_rate)
        return scene, split
    if flavour == "images":  # one image, in the CoOp image folder
        from PIL import Image

        path = root / coop_image(scene, classes)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(render_frame(scene, classes, 0.5, cfg.size)).save(path)
        return scene, split
    times = np.arange(seconds * cfg.fps) / cfg.fps
    frames = np.stack([render_frame(scene, classes, t, cfg.size) for t in times])  # (T, H, W, 3)
    audio = render_audio(scene, classes, cfg.sample_rate, seed=int(rng.integers(2**31)))
    write_video(root / "videos" / f"{scene.clip_id}.mp4", frames, cfg.fps, audio, cfg.sample_rate)
    if flavour in ("s4", "ms3"):
        _write_avs_files(root, scene, split, cfg, audio)
    return scene, split


def _render_one(job: tuple) -> tuple[Scene, str]:
    return _render_clip(*job)


def _render_all(root: Path, cfg: SynthConfig, workers: int, progress: Callable | None) -> dict[str, list]:
    jobs = [(root, cfg, f, i) for f in FLAVOURS for i in range(cfg.count(f))]
    by_flavour: dict[str, list] = {f: [] for f in FLAVOURS}
    for scene, split in parallel_map(_render_one, jobs, workers, progress=progress):
        by_flavour[scene.flavour].append((scene, split))
    return by_flavour


def _write_annotations(root: Path, cfg: SynthConfig, by_flavour: dict[str, list]) -> None:
    classes = class_table(cfg.num_classes)
    write_ave(root, by_flavour["events"], classes)
    write_llp(root, by_flavour["events"], classes)
    write_vggsound_and_captions(root, by_flavour["events"], classes)
    write_vggsound_avel40k(root, by_flavour["events"], classes)
    write_avs_meta(root, by_flavour["s4"], classes, "s4")
    write_avs_meta(root, by_flavour["ms3"], classes, "ms3")
    write_avqa(root, by_flavour["avqa"], classes, cfg.seed)
    write_clip_benchmarks(root, by_flavour, classes)
    counts = {
        f: {s: sum(sp == s for _, sp in items) for s in ("train", "val", "test")} for f, items in by_flavour.items()
    }
    meta = {
        "format": FORMAT_VERSION,
        "config": cfg.params(),
        "classes": class_table_json(cfg.num_classes),
        "counts": counts,
    }
    (root / "avsynth.json").write_text(json.dumps(meta, indent=1))


def read_meta(root: str | Path) -> dict | None:
    """``avsynth.json`` of a finished AVSynth folder, or None if ``root`` holds none."""
    path = Path(root) / "avsynth.json"
    return json.loads(path.read_text()) if path.is_file() else None


def check_existing(out: Path, cfg: SynthConfig) -> bool:
    """True if ``out`` already holds AVSynth made with ``cfg``; raise if it holds anything else."""
    if not out.exists():
        return False
    meta = read_meta(out)
    if meta is None:
        raise DataError(f"{out} exists and is not an AVSynth folder (no avsynth.json); choose an empty or new folder")
    if meta["format"] != FORMAT_VERSION:
        raise DataError(
            f"{out} holds AVSynth of format {meta['format']}, not this avlearn's {FORMAT_VERSION} (files differ "
            "between formats); delete it or choose another folder"
        )
    asked = cfg.params()
    if meta["config"] != asked:
        diff = {k: (meta["config"].get(k), asked.get(k)) for k in {*meta["config"], *asked}
                if meta["config"].get(k) != asked.get(k)}  # fmt: skip
        raise DataError(
            f"{out} holds AVSynth made with other parameters (folder vs asked: {diff}); "
            "delete it or choose another folder"
        )
    return True


def generate(out: str | Path, cfg: SynthConfig, workers: int | None = None, progress: Callable | None = None) -> Path:
    """Write AVSynth for ``cfg`` into ``out`` (or reuse it if it was made with the same ``cfg``).

    Args:
        out: The dataset folder to create.
        cfg: What to render.
        workers: Processes for rendering (default: the CPU count, at most 8).
        progress: Called with 1 after each clip (e.g. a tqdm bar's ``update``).

    Returns:
        ``out`` as a Path.
    """
    cfg.validate()
    out = Path(out).expanduser().absolute()
    if check_existing(out, cfg):
        return out
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    try:
        (tmp / "videos").mkdir(parents=True)
    except OSError as err:
        raise DataError(f"cannot write AVSynth to {out.parent}: {err.strerror}; choose a writable folder") from None
    try:
        by_flavour = _render_all(tmp, cfg, workers or min(8, os.cpu_count() or 1), progress)
        _write_annotations(tmp, cfg, by_flavour)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


__all__ = ["SynthConfig", "generate", "check_existing", "read_meta", "split_of", "clip_id", "class_table"]
