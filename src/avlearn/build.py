"""From a run config to objects: the task's data splits and the task (backbones -> method -> task head).

Nothing here trains and nothing here reads a dataset: names are looked up in the registries and the pieces wired
together. What a task reads comes from its registration (``TASKS.spec``: pipeline, AVSynth part, report).
"""

from __future__ import annotations

import inspect
from typing import Any

from omegaconf import DictConfig, OmegaConf
from torch import nn

from avlearn.errors import ConfigError
from avlearn.registry import BACKBONES, METHODS, TASKS


def build_splits(cfg: DictConfig, audio_pre: Any) -> Any:  # avlearn.data.pipelines.Splits
    """Read the task's dataset and decode each split into tensors, with the pipeline the task registered."""
    pipeline = TASKS.spec(cfg.task.name).pipeline
    if pipeline is None:
        with_pipeline = [name for name in TASKS.names() if TASKS.spec(name).pipeline is not None]
        raise ConfigError(f"task={cfg.task.name!r} has no data pipeline; available: {', '.join(with_pipeline)}")
    from avlearn.data.lazy import preload_mode

    preload_mode(cfg.data.get("preload", "auto"))  # an invalid value is an error whichever pipeline runs
    splits = pipeline(cfg, audio_pre)
    if cfg.data.get("store") and not splits.from_store:
        raise ConfigError(
            f"data.store={cfg.data.store!r}: task={cfg.task.name}'s pipeline does not read a clip store (the segment "
            "pipeline does: ave, ave_cls, pretrain_captions, zeroshot, zeroshot_cls); drop data.store"
        )
    return splits


def _backbone(name: str, data: DictConfig, pretrained: str | None) -> nn.Module:
    """Build a registered backbone, passing the data settings its builder accepts."""
    builder = BACKBONES.get(name)
    offered = {"size": data.frame_size, "sample_rate": data.sample_rate, "n_mels": data.n_mels, "hop_ms": data.hop_ms,
               "pretrained": pretrained}  # fmt: skip
    accepted = inspect.signature(builder).parameters
    return builder(**{k: v for k, v in offered.items() if k in accepted and v is not None})


def _schema_instance(cls: type, node: DictConfig) -> Any:
    return cls(**OmegaConf.to_container(node, resolve=True))


def build_task(cfg: DictConfig, info: Any) -> nn.Module:
    """Backbones -> method -> task, with the pairing of method and task checked."""
    from avlearn.methods.base import check_pairing

    shared = cfg.backbone.get("pretrained")
    visual_weights, audio_weights = (cfg.backbone.get(f"{m}_pretrained") or shared for m in ("visual", "audio"))
    visual = _backbone(cfg.backbone.visual, cfg.data, visual_weights).freeze(cfg.backbone.freeze)
    audio = _backbone(cfg.backbone.audio, cfg.data, audio_weights).freeze(cfg.backbone.freeze)
    method_cls, task_cls = METHODS.get(cfg.method.name), TASKS.get(cfg.task.name)
    method = method_cls(_schema_instance(method_cls.Config, cfg.method), visual, audio)
    check_pairing(cfg.method.name, method.produces, cfg.task.name, task_cls.needs)  # fields may depend on backbones
    return task_cls(_schema_instance(task_cls.Config, cfg.task), method, info)


def segment_preprocess(pre: Any, data: DictConfig) -> Any:
    """The one-second log-mel input for an audio backbone whose front end is ``pre``.

    Every pipeline cuts a clip into one-second segments. A front end of about one second (the CNN encoders) is kept;
    one that covers a whole clip (HTS-AT, CLAP: 10 s; DG-SCT tiles the segment ``method.audio_tile`` times to fill
    it) becomes a one-second log-mel with the backbone's mel bins at ``data.sample_rate`` and ``data.hop_ms``.
    """
    from avlearn.backbones.cnn import log_mel_input

    if pre.num_frames * pre.hop_length <= 1.5 * pre.sample_rate:
        return pre
    return log_mel_input(data.sample_rate, pre.num_mel_bins, data.hop_ms)


def audio_preprocess(cfg: DictConfig) -> Any:
    """The one-second audio input of the configured audio backbone (built once, cheaply, to read its settings);
    32 kHz waveforms for a method with HTS-AT's own front end (DG-SCT's ``method.audio_frontend: seed``)."""
    if cfg.method.get("audio_frontend") == "seed":
        from avlearn.backbones.clap import htsat_segment_waveform

        return htsat_segment_waveform()
    return segment_preprocess(_backbone(cfg.backbone.audio, cfg.data, None).preprocess, cfg.data)
