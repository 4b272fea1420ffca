"""The run behind ``avlearn train task=cma`` (and ``recipe=cma_*``): Cross-Modal Adaptation (Lin et al., CVPR 2023)
end to end on a frozen tri-modal encoder, and its ``--dry-run``.

1. The encoder: a ``pretrain_captions`` run (``task.encoder``), rebuilt for the target dataset's classes with its
   best checkpoint (its class prompts are not saved, so they are the target classes' prompts).
2. The target clips (``data``, read by the zero-shot pipeline: ``task.classes``, all splits) embedded once:
   per clip the visual and audio embeddings in the text space (mean over its event segments); per class its prompt.
   With ``data.benchmark=imagenet_esc`` (AVSynth only) the ImageNet-ESC part instead: the sounds' audio and the
   images' visual embeddings (two sets of clips, class k of both the same class), the ImageNet-ESC names' prompts.
3. The protocol (``avlearn.methods.cma.protocol``): for each shots x seed the whole grid trained at once, selection
   on the few-shot validation samples, test accuracy; mean +- std over seeds. The encoder runs on ``train.device``;
   the embeddings are kept, and the grids trained, on the CPU (a few hundred clips: not worth a transfer).
4. The run folder (``out/<name>/<timestamp>/``): ``config.yaml``, ``results.json`` (zero-shot accuracy, per shots
   the summary and per seed the selected configuration with its accuracies) and ``table.md``, also printed.

CoOp's images and ImageNet-ESC's real data are refused with one line: their encoders (CLIP RN50 with attention
pooling, AudioCLIP's ESResNeXt) and the feature caching of the seed are not built (docs/methods/cma.md).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import nn

from avlearn.errors import ConfigError

REAL_PROTOCOLS = ("coop", "imagenet_esc")  # data.benchmark values of the paper's real protocols (not built)
# AVSynth's ImageNet-ESC part (data.benchmark=imagenet_esc): the benchmark read for each modality
ESC_PARTS = {"audio": "imagenet_esc", "visual": "imagenet_esc_image"}
INPUT_KEYS = ("frame_size", "n_mels", "hop_ms", "sample_rate")  # data keys that shape the encoder's inputs


def _task_settings(cfg: DictConfig) -> Any:
    from avlearn.tasks.cma import CMAConfig, protocol_settings

    return protocol_settings(CMAConfig(**OmegaConf.to_container(cfg.task, resolve=True)))


def check_source(cfg: DictConfig) -> Path:
    """The encoder run folder of ``cfg``, checked; the paper's real protocols are refused (one line each)."""
    if cfg.data.name != "avsynth" and cfg.data.benchmark in REAL_PROTOCOLS:
        raise ConfigError(f"data.benchmark={cfg.data.benchmark}: task=cma on real {cfg.data.benchmark} data needs the "
                          "seed's encoders (CLIP RN50, AudioCLIP) and feature caching, not built yet; use data=avsynth "
                          "with a pretrain_captions encoder (docs/methods/cma.md)")  # fmt: skip
    if cfg.data.benchmark in ESC_PARTS.values() and (cfg.data.benchmark != "imagenet_esc" or cfg.task.classes):
        raise ConfigError(f"data.benchmark={cfg.data.benchmark}, task.classes={list(cfg.task.classes)}: AVSynth's "
                          "ImageNet-ESC part is read as data.benchmark=imagenet_esc (sounds and images together) "
                          "with all its classes (task.classes=[])")  # fmt: skip
    if not cfg.task.encoder:
        raise ConfigError("task.encoder is empty: expected a pretrain_captions run folder (e.g. one made by "
                          "`avlearn train recipe=cma_encoder_tiny`)")  # fmt: skip
    run = Path(cfg.task.encoder).expanduser()
    if not (run / "config.yaml").is_file() or not (run / "checkpoint").is_dir():
        raise ConfigError(f"task.encoder={cfg.task.encoder}: expected a run folder with config.yaml and checkpoint/")
    return run


def _target_config(cfg: DictConfig, encoder_cfg: DictConfig) -> DictConfig:
    """The encoder's config reading the target data: the run's ``data`` and ``task.classes``; the data keys that
    shape the encoder's inputs must be the encoder's own."""
    if encoder_cfg.task.name != "pretrain_captions":
        raise ConfigError(f"task.encoder={cfg.task.encoder}: a task={encoder_cfg.task.name} run; expected a "
                          "pretrain_captions run (its text-space projections are the encoder)")  # fmt: skip
    for key in INPUT_KEYS:
        if cfg.data[key] != encoder_cfg.data[key]:
            raise ConfigError(f"data.{key}={cfg.data[key]}: the encoder was trained with {encoder_cfg.data[key]}; "
                              "expected the same input settings")  # fmt: skip
    target = OmegaConf.create(OmegaConf.to_container(encoder_cfg, resolve=True))
    target.data = OmegaConf.to_container(cfg.data, resolve=True)
    target.task.classes = list(cfg.task.classes)
    return target


def load_encoder(run: Path, info: Any, device: torch.device) -> nn.Module:
    """The encoder run's task built for ``info``'s classes with its checkpoint's weights (strict), in eval mode."""
    from avlearn.build import build_task
    from avlearn.engine.checkpoint import load_weights

    encoder = build_task(OmegaConf.load(run / "config.yaml"), info)
    encoder.load_state_dict(load_weights(run / "checkpoint"))
    return encoder.to(device).eval()


@torch.no_grad()
def clip_embeddings(encoder: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A text-space encoder's clip embeddings of a batch: ``visual`` and ``audio`` (B, Ct), each the L2-normalised
    mean over the clip's event segments (all segments if none), and ``labels`` (B,): the class of its first event
    segment (-100 without an event)."""
    from avlearn.metrics.ave import clip_class
    from avlearn.tasks.zeroshot import masked_mean

    visual, audio, _ = encoder.embed(batch)  # (B, S, Ct) each
    event = batch["labels"] < encoder.info.num_classes  # (B, S)
    return {"visual": masked_mean(visual, event), "audio": masked_mean(audio, event),
            "labels": clip_class(batch["labels"], encoder.info.num_classes)}  # fmt: skip


def embed_split(encoder: nn.Module, data: Any, device: torch.device, batch_size: int = 64) -> dict[str, torch.Tensor]:
    """``clip_embeddings`` of every clip of a split with an event, on the CPU: ``visual`` / ``audio`` (N, Ct) and
    ``labels`` (N,)."""
    from torch.utils.data import DataLoader

    parts: dict[str, list[torch.Tensor]] = {"visual": [], "audio": [], "labels": []}
    for batch in DataLoader(data, batch_size=batch_size):
        out = clip_embeddings(encoder, {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()})
        keep = out["labels"] >= 0
        for key in parts:
            parts[key].append(out[key][keep].cpu())
    return {key: torch.cat(value) for key, value in parts.items()}


def protocol_features(cfg: DictConfig, device: torch.device) -> Any:
    """The target clips' embeddings (both modalities, three splits) and the class prompts' by the encoder: the event
    clips of ``data``, or with ``data.benchmark=imagenet_esc`` AVSynth's ImageNet-ESC part (``esc_features``)."""
    from avlearn.build import audio_preprocess
    from avlearn.data.pipelines.captions import zeroshot_splits
    from avlearn.methods.cma.protocol import ProtocolFeatures, SplitFeatures

    run = check_source(cfg)
    if cfg.data.benchmark in ESC_PARTS.values():
        return esc_features(cfg, run, device)
    target = _target_config(cfg, OmegaConf.load(run / "config.yaml"))
    splits = zeroshot_splits(target, audio_preprocess(target))
    encoder = load_encoder(run, splits.info, device)
    emb = {name: embed_split(encoder, getattr(splits, name), device) for name in ("train", "val", "test")}
    names = ("train", "val", "test")
    modalities = {m: SplitFeatures(*(t for name in names for t in (emb[name][m], emb[name]["labels"])))
                  for m in ("visual", "audio")}  # fmt: skip
    k = splits.info.num_classes
    text = F.normalize(encoder.prompts[:k].float(), dim=-1).cpu()  # (K, Ct): one prompt per class
    return ProtocolFeatures(modalities, text, torch.arange(k), tuple(splits.info.class_names))


@torch.no_grad()
def embed_clips(
    encoder: nn.Module, clips: Any, modality: str, device: torch.device, batch_size: int = 64
) -> tuple[torch.Tensor, torch.Tensor]:
    """``modality``'s embedding of every clip of a ``ClipSet`` (the L2-normalised mean over its segments) (N, Ct) and
    its class (N,), on the CPU."""
    from torch.utils.data import DataLoader

    embeddings, labels = [], []
    for batch in DataLoader(clips, batch_size=batch_size):
        visual, audio, _ = encoder.embed({k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()})
        segments = visual if modality == "visual" else audio  # (B, S, Ct)
        embeddings.append(F.normalize(segments.mean(dim=1), dim=-1).cpu())
        labels.append(batch["label"])
    return torch.cat(embeddings), torch.cat(labels)


def esc_features(cfg: DictConfig, run: Path, device: torch.device) -> Any:
    """AVSynth's ImageNet-ESC part (docs/avsynth.md): the audio embeddings of its sounds (``imagenet_esc``, test
    fold ``data.fold``) and the visual embeddings of its images (``imagenet_esc_image``), class k of both being
    ImageNet-ESC class k and AVSynth class k; the classes with clips (the first ``data.num_classes``), prompted by
    their ImageNet-ESC names in the encoder's template."""
    from avlearn.build import audio_preprocess
    from avlearn.data.pipelines.clips import SPLITS, clip_splits
    from avlearn.data.schema import DatasetInfo
    from avlearn.methods.cma.protocol import ProtocolFeatures, SplitFeatures

    encoder_cfg = OmegaConf.load(run / "config.yaml")
    parts = {}
    for modality, bench in ESC_PARTS.items():
        part = _target_config(cfg, encoder_cfg)
        part.data.benchmark, part.shots = bench, 0
        parts[modality] = clip_splits(part, audio_preprocess(part))
    num = 1 + max(int(getattr(p, s).targets["label"].max()) for p in parts.values() for s in SPLITS)
    names = tuple(parts["audio"].info.class_names[:num])
    encoder = load_encoder(run, DatasetInfo(names), device)
    modalities = {}
    for modality, splits in parts.items():
        pairs = [embed_clips(encoder, getattr(splits, s), modality, device) for s in SPLITS]
        modalities[modality] = SplitFeatures(*(t for pair in pairs for t in pair))
    text = F.normalize(encoder.prompts[:num].float(), dim=-1).cpu()  # (K, Ct): one prompt per class
    return ProtocolFeatures(modalities, text, torch.arange(num), names)


def _results_json(rows: list, zero_shot: float, seconds: float) -> dict:
    """Per shots: the summary (fractions) and per seed the selected configuration with its accuracies."""
    out = {"zero_shot_test_acc": zero_shot, "seconds": seconds, "shots": {}}
    for row in rows:
        seeds = [{"config": r.configs[r.selected], "val_acc": float(r.best_acc[r.selected]),
                  "best_step": int(r.best_step[r.selected]), "test_acc": float(r.test_acc[r.selected]),
                  "wise_acc": float(r.wise_acc[r.selected])} for r in row.results]  # fmt: skip
        out["shots"][str(row.shots)] = {"summary": {k: list(v) for k, v in row.summary.items()}, "seeds": seeds}
    return out


def run_cma(cfg: DictConfig) -> dict:
    """The whole run (module docstring); returns ``{"test": {"accuracy_<K>shot": percent}, ...}``."""
    from avlearn.config import save_config
    from avlearn.engine.env import setup
    from avlearn.engine.run import make_run_dir
    from avlearn.files import atomic_write_text
    from avlearn.methods.cma.protocol import format_table, run_protocol, zero_shot_accuracy

    started = time.perf_counter()
    protocol, head, sched, grid = _task_settings(cfg)
    env = setup(cfg.train.device, cfg.train.threads, cfg.seed, cfg.train.deterministic)
    feats = protocol_features(cfg, env.device)
    run_dir = make_run_dir(cfg.out, cfg.name or "cma")
    save_config(cfg, run_dir)
    zero_shot = zero_shot_accuracy(feats, protocol.target)
    rows = run_protocol(feats, protocol, head, sched, grid)
    title = (f"CMA on {cfg.data.name}: target {protocol.target}, extra {protocol.extra or '-'}, {head.head} head, "
             f"{head.init} init, {head.modality}; test accuracy (%), mean +- std over seeds "
             f"{protocol.seeds}")  # fmt: skip
    table = format_table(rows, title, zero_shot)
    seconds = time.perf_counter() - started
    atomic_write_text(run_dir / "results.json", json.dumps(_results_json(rows, zero_shot, seconds), indent=1))
    atomic_write_text(run_dir / "table.md", table + "\n")
    print(f"{table}\n\ntime {seconds:.1f}s   run folder {run_dir}", flush=True)
    test = {f"accuracy_{row.shots}shot": 100 * row.summary["test_acc"][0] for row in rows}
    return {"test": test, "zero_shot": 100 * zero_shot, "run_dir": str(run_dir), "seconds": seconds}


def dry_run_cma(cfg: DictConfig) -> str:
    """``--dry-run`` of a cma run: the resolved config and the protocol's plan; nothing is read or trained."""
    protocol, head, sched, grid = _task_settings(cfg)
    configs = len(grid.lrs) * len(grid.wds) * len(grid.batch_sizes)
    try:
        source = f"encoder {check_source(cfg)}"
    except ConfigError as err:
        source = f"cannot run as configured: {err}"
    stop = f"early stop after {sched.patience} validations" if sched.patience else "no early stop"
    return "\n".join([
        OmegaConf.to_yaml(cfg).rstrip(),
        "",
        f"dry run: task=cma ({source})",
        f"protocol: target {protocol.target}, extra {protocol.extra or '-'}, shots {protocol.shots} x seeds "
        f"{protocol.seeds}: {len(protocol.shots) * len(protocol.seeds)} grids",
        f"head: {head.head}, {head.init} init, {head.modality}, logit scale {head.scale:g}, WiSE-FT {head.wiseft:g}",
        f"grid: lr {list(grid.lrs)} x wd {list(grid.wds)} x batch {list(grid.batch_sizes)} (up to {configs} "
        f"configurations, trained at once), {sched.iters} steps, validation every {sched.eval_every}, {stop}"
        f"{', the seed schedule (faithful)' if sched.faithful else ''}",
        "nothing was trained (--dry-run)",
    ])  # fmt: skip
