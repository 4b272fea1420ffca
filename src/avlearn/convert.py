"""Weights in other code bases' layouts -> avlearn backbone folders (``transformers`` config + safetensors).

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


# ---- DeepAVFusion
# The seed's timm ViT (``models/vits.py``) -> a ``ViTMAEModel`` (avlearn.backbones.vit_mae), below ``blocks.{i}``.
_TIMM_VIT_BLOCK = {"norm1": "layernorm_before", "norm2": "layernorm_after", "attn.proj": "attention.o_proj",
                   "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2"}  # fmt: skip
# The seed's ``FusionBlock_FactorizedAVInteractions`` -> :class:`avlearn.methods.deepavfusion.FusionBlock`.
_FUSION_BLOCK = {"norm1_mm": "norm_fused", "norm1_img": "norm_visual", "norm1_aud": "norm_audio",
                 "attn.attn_v": "attn_visual", "attn.attn_a": "attn_audio", "attn.q": "q", "attn.k": "k",
                 "attn.v": "v", "attn.proj": "proj", "norm2": "norm2", "mlp": "mlp"}  # fmt: skip
# The seed's decoder modules (``models/avmae.py``, per modality) -> :class:`avlearn.methods.deepavfusion.Decoder`.
_DECODER = {"decoder_embed": "embed", "decoder_mask_token": "mask_token", "decoder_pos_embed": "pos_embed",
            "decoder_norm": "norm", "decoder_pred": "pred"}  # fmt: skip
_DECODER_BLOCK = {"norm1": "norm1", "attn.qkv": "qkv", "attn.proj": "proj", "norm2": "norm2", "mlp": "mlp"}
_SEED_SLOTS = {"image": "visual", "audio": "audio"}


def _timm_vit(name: str, tensor: torch.Tensor) -> dict[str, torch.Tensor]:
    """One tensor of the seed's ViT (``patch_embed``, ``pos_embed``, ``blocks.{i}.*``, ``norm``) -> ``ViTMAEModel``
    names; the fixed position table gets MAE's (zero) CLS row in front, and the unused CLS token comes with it."""
    block = re.match(r"^blocks\.(\d+)\.(.+)$", name)
    if name == "pos_embed":  # (1, N, C) -> (1, 1 + N, C)
        zero = tensor.new_zeros(1, 1, tensor.shape[-1])
        return {"embeddings.position_embeddings": torch.cat([zero, tensor], dim=1), "embeddings.cls_token": zero}
    if block and block[2].startswith("attn.qkv."):
        kind = block[2].rsplit(".", 1)[1]
        parts = zip(("q_proj", "k_proj", "v_proj"), _split(tensor, 3), strict=True)
        return {f"layers.{block[1]}.attention.{n}.{kind}": t for n, t in parts}
    if block:
        return {f"layers.{block[1]}.{k}": v for k, v in _renamed(block[2], tensor, _TIMM_VIT_BLOCK).items()}
    return _renamed(name, tensor, {"patch_embed.proj": "embeddings.patch_embeddings.projection", "norm": "layernorm"})


def _deepavfusion_tensor(name: str, tensor: torch.Tensor) -> dict[str, torch.Tensor]:
    """One seed tensor (``encoder.`` already stripped) -> DeepAVFusion method names; ``{}`` when none fits."""
    head, _, rest = name.partition(".")
    if head in _SEED_SLOTS:
        return {f"{_SEED_SLOTS[head]}_backbone.model.{k}": v for k, v in _timm_vit(rest, tensor).items()}
    fusion = re.match(r"^fusion_blocks\.(\d+)\.(.+)$", name)
    if fusion:
        return {f"fusion_blocks.{fusion[1]}.{k}": v for k, v in _renamed(fusion[2], tensor, _FUSION_BLOCK).items()}
    decoder = re.match(r"^(image|audio)_(decoder_\w+?)(?:\.(\d+))?(?:\.(.+))?$", name)
    if decoder and decoder[2] == "decoder_blocks":
        renamed = _renamed(decoder[4], tensor, _DECODER_BLOCK)
        return {f"decoders.{_SEED_SLOTS[decoder[1]]}.blocks.{decoder[3]}.{k}": v for k, v in renamed.items()}
    if decoder and decoder[2] in _DECODER:
        leaf = f".{decoder[4]}" if decoder[4] else ""
        return {f"decoders.{_SEED_SLOTS[decoder[1]]}.{_DECODER[decoder[2]]}{leaf}": tensor}
    return {name: tensor} if name in ("fusion_tokens", "fusion_norm.weight", "fusion_norm.bias") else {}


def convert_deepavfusion_state_dict(state: dict[str, torch.Tensor]) -> Conversion:
    """A seed DeepAVFusion state dict -> the names of :class:`avlearn.methods.deepavfusion.DeepAVFusion`.

    Takes the pretraining model (``AVMAE``: ``encoder.*`` and the ``{image,audio}_decoder_*`` of ``pretrain: true``)
    or the bare encoder (``image.*``, ``audio.*``, ``fusion_*``). Each ViT's fused ``qkv`` is split into query, key
    and value; its fixed position table gets MAE's zero CLS row (``transformers`` keeps one) and the unused CLS
    token is zero. Tensors of the downstream heads come back in ``dropped``.

    Raises:
        DataError: no encoder tensor in ``state``.
    """
    out, dropped = {}, []
    for name, tensor in state.items():
        mapped = _deepavfusion_tensor(name.removeprefix("encoder."), tensor)
        dropped += [] if mapped else [name]
        out.update(mapped)
    if "fusion_tokens" not in out:
        raise DataError(f"not a DeepAVFusion state dict (no fusion_tokens among {len(state)} tensors)")
    return Conversion(out, dropped)
