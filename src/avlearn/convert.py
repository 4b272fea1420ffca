"""Weights in other code bases' layouts -> avlearn backbone folders (``transformers`` config + safetensors), and a
DG-SCT seed task checkpoint -> an avlearn run folder.

Formats (``FORMATS``):

- ``timm_swinv2``: a timm 0.6 Swin-V2 state dict (``timm.create_model("swinv2_large_window12_192_22k")``, or
  Microsoft's release ``swinv2_large_patch4_window12_192_22k.pth``, which DG-SCT loads through timm), into
  ``swinv2_large_192``. Each fused ``qkv`` weight is split into query, key and value (timm keeps the query and value
  biases apart and has no key bias, as ``transformers``).
- ``htsat``: the original HTS-AT checkpoint (``HTSAT_AudioSet_Saved_1.ckpt``, a Lightning file whose ``state_dict``
  keys start with ``sed_model.``), into ``htsat_base``. Each ``qkv`` weight and bias is split in three.

Dropped on purpose (listed in the returned report): the classification heads (timm ``head``, HTS-AT ``head`` and
``tscam_conv``), HTS-AT's fixed STFT and mel matrices (``avlearn.audio.htsat_input`` computes the same front end),
and buffers both sides derive from the architecture (``attn_mask``, ``relative_position_index``,
``relative_coords_table``). Every other tensor must map to exactly one tensor of the avlearn model, with its shape;
anything unmapped, missing or mis-shaped is an error. The output folder loads with ``backbone.pretrained`` (both
towers), ``backbone.visual_pretrained`` or ``backbone.audio_pretrained``.

Run formats (``RUN_FORMATS``): ``dgsct_ave``, the seed's trained AVE ``MMIL_Net`` (towers, the 48 adapters, and its
``TemporalAttention`` + ``CMBS`` head as ``task.head=cmbs_seed``; ``convert_dgsct_ave_state_dict``), written as a run
folder by ``avlearn.engine.trained.convert_dgsct_ave_run``. The seed's unused modules are dropped and listed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from avlearn.errors import DataError

_DERIVED = ("attn_mask", "relative_position_index", "relative_coords_table")  # recomputed from the architecture
_BLOCK = re.compile(r"^layers\.(\d+)\.blocks\.(\d+)\.(.+)$")
# Swin block names shared by timm / HTS-AT (left) and transformers (right), below ``layers.{i}.blocks.{j}``.
_COMMON_BLOCK = {"norm1": "layernorm_before", "norm2": "layernorm_after", "attn.proj": "attention.output.dense",
                 "mlp.fc1": "intermediate.dense", "mlp.fc2": "output.dense"}  # fmt: skip


@dataclass
class Conversion:
    """What a conversion did: the mapped tensors (avlearn names), and the source names it dropped on purpose."""

    tensors: dict[str, torch.Tensor]
    dropped: list[str] = field(default_factory=list)


def _split(tensor: torch.Tensor, parts: int) -> tuple[torch.Tensor, ...]:
    """A fused ``(parts * C, ...)`` projection -> ``parts`` tensors ``(C, ...)`` (query, key, value order)."""
    return tuple(t.clone() for t in tensor.chunk(parts, dim=0))


def _swinv2_block(rest: str, tensor: torch.Tensor) -> dict[str, torch.Tensor]:
    """One timm Swin-V2 block tensor -> ``Swinv2Layer`` tensors (names below the block)."""
    simple = {**_COMMON_BLOCK, "attn.logit_scale": "attention.self.logit_scale",
              "attn.cpb_mlp": "attention.self.continuous_position_bias_mlp",
              "attn.q_bias": "attention.self.query.bias", "attn.v_bias": "attention.self.value.bias"}  # fmt: skip
    if rest == "attn.qkv.weight":
        names = ("query", "key", "value")
        return {f"attention.self.{n}.weight": t for n, t in zip(names, _split(tensor, 3), strict=True)}
    return _renamed(rest, tensor, simple)


def _htsat_block(rest: str, tensor: torch.Tensor) -> dict[str, torch.Tensor]:
    """One HTS-AT (Swin-V1) block tensor -> ``ClapAudioLayer`` tensors (names below the block)."""
    simple = {**_COMMON_BLOCK, "attn.relative_position_bias_table": "attention.self.relative_position_bias_table"}
    if rest in ("attn.qkv.weight", "attn.qkv.bias"):
        kind = rest.rsplit(".", 1)[1]
        names = ("query", "key", "value")
        return {f"attention.self.{n}.{kind}": t for n, t in zip(names, _split(tensor, 3), strict=True)}
    return _renamed(rest, tensor, simple)


def _under(name: str, prefix: str) -> bool:
    """Whether the dotted ``name`` is ``prefix`` or lies below it."""
    return name == prefix or name.startswith(prefix + ".")


def _renamed(name: str, tensor: torch.Tensor, prefixes: dict[str, str]) -> dict[str, torch.Tensor]:
    """Rename by the longest matching dotted prefix; ``{}`` when none matches (reported as unmapped)."""
    for old in sorted(prefixes, key=len, reverse=True):
        if _under(name, old):
            return {prefixes[old] + name[len(old) :]: tensor}
    return {}


@dataclass(frozen=True)
class Format:
    """A source layout: its avlearn backbone, key prefix to strip, dropped names, and the per-tensor mapping."""

    backbone: str
    strip: str
    dropped: tuple[str, ...]
    top: dict[str, str]  # source prefix -> avlearn prefix, outside the blocks
    block: Callable[[str, torch.Tensor], dict[str, torch.Tensor]]
    block_prefix: str  # avlearn name of ``layers.{i}.blocks.{j}``, formatted with i, j


# Source prefix -> avlearn prefix, outside the blocks.
_SWINV2_TOP = {"patch_embed.proj": "embeddings.patch_embeddings.projection", "patch_embed.norm": "embeddings.norm",
               "norm": "layernorm", "layers": "encoder.layers"}  # fmt: skip
_HTSAT_TOP = {"bn0": "audio_encoder.batch_norm", "patch_embed": "audio_encoder.patch_embed",
              "norm": "audio_encoder.norm", "layers": "audio_encoder.layers"}  # fmt: skip

FORMATS: dict[str, Format] = {
    "timm_swinv2": Format(
        backbone="swinv2_large_192",
        strip="",
        dropped=("head",),
        top=_SWINV2_TOP,
        block=_swinv2_block,
        block_prefix="encoder.layers.{}.blocks.{}.",
    ),
    "htsat": Format(
        backbone="htsat_base",
        strip="sed_model.",
        dropped=("head", "tscam_conv", "spectrogram_extractor", "logmel_extractor"),
        top=_HTSAT_TOP,
        block=_htsat_block,
        block_prefix="audio_encoder.layers.{}.blocks.{}.",
    ),
}


RUN_FORMATS = ("dgsct_ave",)  # seed task checkpoints -> run folders (``avlearn.engine.trained``)


def convert_state_dict(fmt: str, state: dict[str, torch.Tensor]) -> Conversion:
    """Map a source state dict (prefix already stripped) to the names of the avlearn backbone's ``model``.

    Raises:
        DataError: ``fmt`` is unknown, or a tensor maps to nothing.
    """
    spec = _format(fmt)
    out, dropped, unmapped = {}, [], []
    for name, tensor in state.items():
        leaf = name.rsplit(".", 1)[-1]
        if leaf in _DERIVED or any(_under(name, prefix) for prefix in spec.dropped):
            dropped.append(name)
            continue
        block = _BLOCK.match(name)
        if block:
            mapped = spec.block(block[3], tensor)
            mapped = {spec.block_prefix.format(block[1], block[2]) + k: v for k, v in mapped.items()}
        else:
            mapped = _renamed(name, tensor, spec.top)
        unmapped += [] if mapped else [name]
        out.update(mapped)
    if unmapped:
        raise DataError(f"{fmt}: {len(unmapped)} tensors have no avlearn counterpart, e.g. {unmapped[:3]}")
    return Conversion(out, dropped)


def _format(fmt: str) -> Format:
    if fmt not in FORMATS:
        raise DataError(f"unknown weight format {fmt!r}; expected one of {', '.join(FORMATS)}")
    return FORMATS[fmt]


# The seed's ``VisualAdapter`` (every DG-SCT task file) -> :class:`avlearn.methods.dgsct.DGSCTAdapter`.
ADAPTER_NAMES = {"conv_adapter": "token_align", "fc": "width_align", "my_tokens": "latents", "gate_av": "latent_gate",
                 "fc_affine_audio_1": "channel_other", "fc_affine_video_1": "channel_own",
                 "fc_affine_bottleneck": "channel_mid", "fc_affine_v_c_att": "channel_out",
                 "fc_affine_video_2": "spatial_own", "fc_affine_audio_2": "spatial_other",
                 "fc_affine_v_s_att": "spatial_out", "ln_before": "norm_in", "ln_post": "norm_out",
                 "down_sampler": "down", "up_sampler": "up", "bn1": "bn_down", "bn2": "bn_up",
                 "gate": "gate"}  # fmt: skip
# Allocated by the seed's adapters but never used in their forward, per variant (avlearn does not create them).
ADAPTER_UNUSED = {"ave": ("gate_tk",), "avqa": (), "avs_ms3": ("ln_before", "temporal_gated"),
                  "avs_s4": ("conv_adapter", "ln_before", "temporal_gated")}  # fmt: skip


def convert_adapter_state_dict(state: dict[str, torch.Tensor], variant: str = "ave") -> dict[str, torch.Tensor]:
    """One seed ``VisualAdapter``'s tensors -> a ``DGSCTAdapter``'s (``method.adapter_variant`` = ``variant``):
    renamed, the 1x1 ``Conv2d`` kernels ``(out, in, 1, 1)`` of the seed's ``(B, C, N, 1)`` layout squeezed to
    ``Conv1d`` kernels ``(out, in, 1)``, and the variant's unused tensors (``ADAPTER_UNUSED``) left out.

    Raises:
        DataError: an unknown variant, or a tensor the seed adapter does not have.
    """
    if variant not in ADAPTER_UNUSED:
        raise DataError(f"unknown DG-SCT adapter variant {variant!r}; expected one of {', '.join(ADAPTER_UNUSED)}")
    out = {}
    for name, tensor in state.items():
        if any(_under(name, unused) for unused in ADAPTER_UNUSED[variant]):
            continue
        mapped = _renamed(name, tensor, ADAPTER_NAMES)
        if not mapped:
            raise DataError(f"seed adapter tensor {name!r} has no avlearn counterpart")
        ((new, value),) = mapped.items()
        out[new] = value[..., 0] if value.ndim == 4 else value  # (out, in, 1, 1) -> (out, in, 1)
    return out


# A seed DG-SCT model (AVE's ``MMIL_Net`` and the other tasks' nets): ``swin.*`` (timm), ``htsat.*`` (HTS-AT) and
# four adapter lists, one adapter per paired block, in pairing order.
_SEED_ADAPTER = re.compile(r"^(audio|vis)_adapter_blocks_(p[12])\.(\d+)\.(.+)$")
_SEED_TOWERS = {"swin.": ("timm_swinv2", "visual_backbone.model."), "htsat.": ("htsat", "audio_backbone.model.")}


def convert_dgsct_state_dict(state: dict[str, torch.Tensor], variant: str = "ave") -> Conversion:
    """A seed DG-SCT model's towers and adapters -> the names of :class:`avlearn.methods.dgsct.DGSCT`
    (``visual_backbone.model.*``, ``audio_backbone.model.*``, ``pairs.{k}.{audio,visual}_{p1,p2}.*``).

    Tensors of neither (the task head: CMBS, MGN ...; ``adapter_token_downsampler``, which the seed allocates and
    never uses) come back in ``dropped``, for the caller.

    Raises:
        DataError: a tower or adapter tensor that maps to nothing.
    """
    towers: dict[str, dict[str, torch.Tensor]] = {prefix: {} for prefix in _SEED_TOWERS}
    adapters: dict[str, dict[str, torch.Tensor]] = {}
    dropped = []
    for name, tensor in state.items():
        tower = next((p for p in _SEED_TOWERS if name.startswith(p)), None)
        match = _SEED_ADAPTER.match(name)
        if tower:
            towers[tower][name[len(tower) :]] = tensor
        elif match:
            side = "visual" if match[1] == "vis" else "audio"
            adapters.setdefault(f"pairs.{match[3]}.{side}_{match[2]}.", {})[match[4]] = tensor
        else:
            dropped.append(name)
    out = {}
    for prefix, (fmt, ours) in _SEED_TOWERS.items():
        done = convert_state_dict(fmt, towers[prefix])
        out.update({ours + k: v for k, v in done.tensors.items()})
        dropped += [prefix + k for k in done.dropped]
    for ours, tensors in adapters.items():
        out.update({ours + k: v for k, v in convert_adapter_state_dict(tensors, variant).items()})
    return Conversion(out, dropped)


# The seed's AVE head (``TemporalAttention`` + ``CMBS`` of ``DG-SCT/AVE/nets/net_trans.py``) -> the ``head.*`` of
# :class:`avlearn.tasks.ave.AVETask` with ``task.head=cmbs_seed`` (seed prefix -> avlearn prefix).
_T, _D = "temporal_attn.", "decoder.layers.0."
_SEED_AVE_HEAD = {
    _T + "a_fc": "temporal.audio_in", _T + "v_fc": "temporal.visual_in.0",
    _T + "audio_visual_rnn_layer.audio_rnn": "temporal.audio_rnn",
    _T + "audio_visual_rnn_layer.visual_rnn": "temporal.visual_rnn",
    **{f"{_T}{seed}_encoder.affine_matrix": f"temporal.{ours}_key.0" for seed, ours in (("audio", "audio"),
                                                                                      ("video", "visual"))},
    **{f"{_T}{seed}_encoder.encoder.layers": f"temporal.{ours}_key.1.layers" for seed, ours in (("audio", "audio"),
                                                                                              ("video", "visual"))},
    **{f"{_T}{seed}_decoder.{src}": f"temporal.{ours}_{dst}" for seed, ours in (("audio", "audio"), ("video", "visual"))
       for src, dst in (("affine_matrix", "query"), (_D + "multihead_attn", "decoder.attn"),
                        (_D + "linear1", "decoder.ffn.0"), (_D + "linear2", "decoder.ffn.3"),
                        (_D + "norm1", "decoder.norm1"), (_D + "norm2", "decoder.norm2"))},
    _T + "audio_gated.0": "temporal.audio_gate", _T + "video_gated.0": "temporal.visual_gate",
    "CMBS.audio_cas": "audio_cas", "CMBS.video_cas": "visual_cas",
    "CMBS.localize_module.classifier": "is_event", "CMBS.localize_module.event_classifier": "event",
}  # fmt: skip
# Allocated by the seed's AVE head but never used in its forward: the layer templates its encoders and decoders
# were cloned from, the decoders' self-attention, CMBS's discarded cross-modal blocks and norms.
_SEED_AVE_UNUSED = (*(f"{_T}{side}_{kind}.{kind}_layer" for side in ("audio", "video")
                      for kind in ("encoder", "decoder")),
                    *(f"{_T}{side}_decoder.{_D}self_attn" for side in ("audio", "video")),
                    "CMBS.AVInter", "CMBS.VAInter", "CMBS.video_norm", "CMBS.audio_norm")  # fmt: skip


def convert_dgsct_ave_state_dict(state: dict[str, torch.Tensor]) -> Conversion:
    """A seed AVE ``MMIL_Net`` state dict -> :class:`avlearn.tasks.ave.AVETask` names (``method.*`` for the towers
    and adapters, ``head.*`` for ``task.head=cmbs_seed``).

    Raises:
        DataError: a head tensor that maps to nothing (other than the seed's unused modules).
    """
    done = convert_dgsct_state_dict(state)
    out = {"method." + k: v for k, v in done.tensors.items()}
    dropped, unmapped = [], []
    for name in done.dropped:
        mapped = _renamed(name, state[name], _SEED_AVE_HEAD) if name.startswith(("CMBS.", _T)) else {}
        out.update({"head." + k: v for k, v in mapped.items()})
        if not mapped and name.startswith(("CMBS.", _T)) and not any(_under(name, u) for u in _SEED_AVE_UNUSED):
            unmapped.append(name)
        dropped += [] if mapped else [name]
    if unmapped:
        raise DataError(f"seed AVE head: {len(unmapped)} tensors have no avlearn counterpart, e.g. {unmapped[:3]}")
    return Conversion(out, dropped)


def read_state_dict(path: str | Path, fmt: str) -> dict[str, torch.Tensor]:
    """The tensors of a ``.pth`` / ``.ckpt`` / ``.safetensors`` file: unwrapped from ``state_dict`` / ``model``
    (Lightning, timm releases), with the format's prefix (``sed_model.``) or DataParallel's ``module.`` removed."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"{path}: no such weight file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 (torch raises several kinds for foreign pickles)
            raise DataError(f"{path}: not a readable torch checkpoint ({type(err).__name__}: {err})") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    prefix = _format(fmt).strip
    if prefix and not any(k.startswith(prefix) for k in state):
        raise DataError(f"{path}: no '{prefix}' keys; is it an {fmt} checkpoint?")
    if prefix:
        state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    return {k.removeprefix("module."): v for k, v in state.items() if isinstance(v, torch.Tensor)}


def load_converted(model: torch.nn.Module, conversion: Conversion, source: str) -> None:
    """Load converted tensors into a ``transformers`` model; buffers derived from the architecture keep the model's
    own values. Every other tensor must be present with its shape.

    Raises:
        DataError: missing, unexpected or mis-shaped tensors (named).
    """
    own = model.state_dict()
    derived = {k for k in own if k.rsplit(".", 1)[-1] in _DERIVED}
    missing = sorted(set(own) - set(conversion.tensors) - derived)
    unexpected = sorted(set(conversion.tensors) - set(own))
    wrong = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in conversion.tensors.items()
             if k in own and v.shape != own[k].shape]  # fmt: skip
    if missing or unexpected or wrong:
        raise DataError(
            f"{source}: does not fit the model: missing {missing[:3]} ({len(missing)}), "
            f"unexpected {unexpected[:3]} ({len(unexpected)}), shapes {wrong[:3]} ({len(wrong)})"
        )
    model.load_state_dict({**{k: own[k] for k in derived}, **conversion.tensors})


def convert(fmt: str, source: str | Path, output: str | Path, backbone: str | None = None) -> Conversion:
    """Convert the weight file ``source`` in format ``fmt`` into an avlearn backbone folder ``output``.

    Args:
        fmt: A key of ``FORMATS``.
        source: The weight file.
        output: Folder to write (``config.json`` and ``model.safetensors``); created if needed.
        backbone: Registered avlearn backbone whose architecture the weights have (default: the format's).

    Returns:
        The conversion (mapped tensors, dropped source names).
    """
    import avlearn.backbones  # noqa: F401  (registers the backbones)
    from avlearn.registry import BACKBONES

    conversion = convert_state_dict(fmt, read_state_dict(source, fmt))
    model = BACKBONES.build(backbone or _format(fmt).backbone).model
    load_converted(model, conversion, str(source))
    model.save_pretrained(str(Path(output).expanduser()))
    return conversion
