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
    spec = TASKS.spec(cfg.task.name)
    if spec.pipeline is None:
        with_pipeline = [name for name in TASKS.names() if TASKS.spec(name).pipeline is not None]
        raise ConfigError(f"task={cfg.task.name!r} has no data pipeline; available: {', '.join(with_pipeline)}")
    _check_stores(cfg, spec.stores)
    from avlearn.data.lazy import preload_mode

    preload_mode(cfg.data.get("preload", "auto"))  # an invalid value is an error whichever pipeline runs
    return spec.pipeline(cfg, audio_pre)


def _check_stores(cfg: DictConfig, stores: tuple[str, ...]) -> None:
    """Refuse, before anything is decoded, a store the task's pipeline does not read (``TaskSpec.stores``)."""
    towers = cfg.get("backbone") or {}
    cached = [m for m in ("visual", "audio") if towers.get(m) == "features"]
    if cached and "features" not in stores:
        readers = ", ".join(TASKS.reading("features"))
        raise ConfigError(f"backbone.{cached[0]}=features: task={cfg.task.name}'s pipeline decodes media and cannot "
                          f"read a feature store (these tasks can: {readers})")  # fmt: skip
    if cfg.data.get("store") and "clips" not in stores:
        raise ConfigError(f"data.store={cfg.data.store!r}: task={cfg.task.name}'s pipeline does not read a clip store "
                          f"(these tasks do: {', '.join(TASKS.reading('clips'))}); drop data.store")  # fmt: skip


def _backbone(name: str, data: DictConfig, pretrained: str | None, **extra: Any) -> nn.Module:
    """Build a registered backbone, passing the data settings (and ``extra`` arguments) its builder accepts."""
    builder = BACKBONES.get(name)
    offered = {"size": data.frame_size, "sample_rate": data.sample_rate, "n_mels": data.n_mels, "hop_ms": data.hop_ms,
               "pretrained": pretrained, **extra}  # fmt: skip
    accepted = inspect.signature(builder).parameters
    return builder(**{k: v for k, v in offered.items() if k in accepted and v is not None})


def _store_tower(store: str | None, slot: str) -> dict[str, Any]:
    """The ``features`` tower's arguments for ``slot``: its modality and the width and layout ``backbone.store``
    (a store made by ``avlearn extract --features``) holds."""
    from avlearn.data.store import ClipStore
    from avlearn.errors import DataError

    if not store:
        raise ConfigError(f"backbone.{slot}=features reads cached features: set backbone.store=<a folder made by "
                          "`avlearn extract --features`>")  # fmt: skip
    try:
        settings = ClipStore(store, kind="features").settings
    except DataError as err:
        raise ConfigError(f"backbone.store={store!r}: {err}") from None
    if slot not in settings:
        raise ConfigError(f"backbone.store={store!r} holds no {slot} features (it has: "
                          f"{', '.join(s for s in ('visual', 'audio') if s in settings)})")  # fmt: skip
    return {"modality": slot, "num_features": settings[slot]["num_features"], "tokens": settings["output"] == "tokens"}


def _tower(cfg: DictConfig, slot: str) -> nn.Module:
    """The ``backbone.<slot>`` tower (visual, audio or text), frozen by ``backbone.freeze``."""
    name = cfg.backbone[slot]
    # A tower's own weights (``backbone.<slot>_pretrained``), else the shared ``backbone.pretrained`` (visual, audio).
    own = cfg.backbone.get(f"{slot}_pretrained")
    pretrained = own if slot == "text" else own or cfg.backbone.get("pretrained")
    extra = _store_tower(cfg.backbone.store, slot) if name == "features" else {}
    return _backbone(name, cfg.data, pretrained, **extra).freeze(cfg.backbone.freeze)


def _schema_instance(cls: type, node: DictConfig) -> Any:
    return cls(**OmegaConf.to_container(node, resolve=True))


def build_task(cfg: DictConfig, info: Any) -> nn.Module:
    """Towers (visual, audio, optional text) -> method -> task, with the pairing of method and task checked."""
    from avlearn.methods.base import check_pairing

    visual, audio = _tower(cfg, "visual"), _tower(cfg, "audio")
    text = _tower(cfg, "text") if cfg.backbone.text else None
    method_cls, task_cls = METHODS.get(cfg.method.name), TASKS.get(cfg.task.name)
    method = method_cls(_schema_instance(method_cls.Config, cfg.method), visual, audio, text)
    check_pairing(cfg.method.name, method.produces, cfg.task.name, task_cls.needs)  # fields may depend on towers
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
    if cfg.backbone.audio == "features":
        return None  # nothing to decode: the audio features come from the store
    return segment_preprocess(_backbone(cfg.backbone.audio, cfg.data, None).preprocess, cfg.data)
