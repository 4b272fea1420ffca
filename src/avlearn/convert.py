"""Weights in other code bases' layouts -> avlearn backbone folders (``transformers`` config + safetensors), and a
DG-SCT seed task checkpoint -> an avlearn run folder.

Formats (``FORMATS``):

- ``timm_swinv2``: a timm 0.6 Swin-V2 state dict (``timm.create_model("swinv2_large_window12_192_22k")``, or
  Microsoft's release ``swinv2_large_patch4_window12_192_22k.pth``, which DG-SCT loads through timm), into
  ``swinv2_large_192``. Each fused ``qkv`` weight is split into query, key and value (timm keeps the query and value
  biases apart and has no key bias, as ``transformers``).
- ``video_swin``: an official Video Swin Transformer checkpoint (SwinTransformer/Video-Swin-Transformer, e.g.
  ``swin_base_patch244_window877_kinetics600_22k.pth``: a ``state_dict`` whose backbone keys start with
  ``backbone.``), into ``video_swin_b`` (VALOR-B's tower). Names change only below the blocks
  (``relative_position_bias_table`` -> ``position_bias``, ``mlp.fc1/fc2`` -> ``mlp.0/2``) and ``layers`` ->
  ``stages``; ``cls_head`` is dropped. The seed loads the same weights at temporal stride 1 (one frame padded), as
  avlearn's tower does; the kernel is unchanged. ``video_swin_bare``: the same without the prefix (the bare state
  dicts of VALOR's ``pretrained_weights``, e.g. ``videoswin_base_k600_22k.pth``).
- ``htsat``: the original HTS-AT checkpoint (``HTSAT_AudioSet_Saved_1.ckpt``, a Lightning file whose ``state_dict``
  keys start with ``sed_model.``), into ``htsat_base``. Each ``qkv`` weight and bias is split in three.
- ``mae_vit`` / ``audiomae_vit``: DeepAVFusion's initial tower weights, an MAE / AudioMAE pretraining checkpoint in
  the timm ViT layout (MAE's ``mae_pretrain_vit_base.pth``, AudioMAE's AS-2M ``vitbase_audiomae_as2m.pth``), into
  ``vit_mae_base`` / ``vit_mae_audio_base`` (``convert_mae_vit_state_dict``), as the seed's ``ViT.load_checkpoint``
  reads them: the decoder and mask token dropped, the checkpoint's position table replaced by the model's own fixed
  sin-cos table, the patch embedding copied as it is (AudioMAE's kernel, trained on (time, frequency) fbanks, then
  reads (frequency, time) log-mels: used transposed, as the seed uses it).

Dropped on purpose (listed in the returned report): the classification heads (timm ``head``, HTS-AT ``head`` and
``tscam_conv``, Video Swin ``cls_head``), HTS-AT's fixed STFT and mel matrices (``avlearn.audio.htsat_input``
computes the same front end), and buffers both sides derive from the architecture (``attn_mask``,
``relative_position_index``, ``relative_coords_table``). Every other tensor must map to exactly one tensor of the
avlearn model, with its shape; anything unmapped, missing or mis-shaped is an error. The output folder loads with
``backbone.pretrained`` (both towers), ``backbone.visual_pretrained`` or ``backbone.audio_pretrained``.

Run formats (``RUN_FORMATS``): ``dgsct_ave``, the seed's trained AVE ``MMIL_Net`` (towers, the 48 adapters, and its
``TemporalAttention`` + ``CMBS`` head as ``task.head=cmbs``; ``convert_dgsct_ave_state_dict``), written as a run
folder by ``avlearn.engine.trained.convert_dgsct_ave_run``. The seed's unused modules are dropped and listed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
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


def _video_swin_block(rest: str, tensor: torch.Tensor) -> dict[str, torch.Tensor]:
    """One Video Swin block tensor (official / VALOR layout) -> ``Block3D`` tensors (names below the block)."""
    names = {"norm1": "norm1", "norm2": "norm2", "attn.qkv": "attn.qkv", "attn.proj": "attn.proj",
             "attn.relative_position_bias_table": "attn.position_bias", "mlp.fc1": "mlp.0",
             "mlp.fc2": "mlp.2"}  # fmt: skip
    return _renamed(rest, tensor, names)


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
    """A source layout: its avlearn backbone, key prefix to strip, dropped names, and the per-tensor mapping of a
    Swin layout (``top``, ``block``, ``block_prefix``) or a whole-state converter (``convert``)."""

    backbone: str
    strip: str
    dropped: tuple[str, ...] = ()
    top: dict[str, str] = field(default_factory=dict)  # source prefix -> avlearn prefix, outside the blocks
    block: Callable[[str, torch.Tensor], dict[str, torch.Tensor]] | None = None
    block_prefix: str = ""  # avlearn name of ``layers.{i}.blocks.{j}``, formatted with i, j
    convert: Callable[[dict[str, torch.Tensor], torch.nn.Module], Conversion] | None = None  # (state, target model)


# Source prefix -> avlearn prefix, outside the blocks.
_SWINV2_TOP = {"patch_embed.proj": "embeddings.patch_embeddings.projection", "patch_embed.norm": "embeddings.norm",
               "norm": "layernorm", "layers": "encoder.layers"}  # fmt: skip
_HTSAT_TOP = {"bn0": "audio_encoder.batch_norm", "patch_embed": "audio_encoder.patch_embed",
              "norm": "audio_encoder.norm", "layers": "audio_encoder.layers"}  # fmt: skip

FORMATS: dict[str, Format] = {
    "video_swin": Format(
        backbone="video_swin_b",
        strip="backbone.",
        dropped=("cls_head",),
        top={
            "patch_embed": "patch_embed",
            "norm": "norm",
            **{f"layers.{i}.downsample": f"stages.{i}.downsample" for i in range(3)},
        },  # fmt: skip
        block=_video_swin_block,
        block_prefix="stages.{}.blocks.{}.",
    ),
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
}  # and the MAE formats (``mae_vit``, ``audiomae_vit``), added with their converter below


# The same tensors without the ``backbone.`` prefix: the bare state dicts VALOR's pretrained_weights bundle holds
# (``videoswin_base_k600_22k.pth``, loaded strict into its SwinTransformer3D).
FORMATS["video_swin_bare"] = replace(FORMATS["video_swin"], strip="")

RUN_FORMATS = ("dgsct_ave",)  # seed task checkpoints -> run folders (``avlearn.engine.trained``)


def convert_state_dict(fmt: str, state: dict[str, torch.Tensor], model: torch.nn.Module | None = None
                       ) -> Conversion:  # fmt: skip
    """Map a source state dict (prefix already stripped) to the names of the avlearn backbone's ``model`` (the
    target model itself is needed by the MAE formats, whose position table is made for its patch grid).

    Raises:
        DataError: ``fmt`` is unknown, or a tensor maps to nothing.
    """
    spec = _format(fmt)
    if spec.convert is not None:
        if model is None:
            raise DataError(f"{fmt}: the conversion needs the target model (its patch grid)")
        return spec.convert(state, model)
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
# :class:`avlearn.tasks.ave.AVETask` with ``task.head=cmbs`` (seed prefix -> avlearn prefix).
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
    and adapters, ``head.*`` for ``task.head=cmbs``).

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

    model = BACKBONES.build(backbone or _format(fmt).backbone).model
    conversion = convert_state_dict(fmt, read_state_dict(source, fmt), model)
    load_converted(model, conversion, str(source))
    model.save_pretrained(str(Path(output).expanduser()))
    return conversion


# ---- VALOR
# The seed's (TXH-mercury/VALOR) checkpoint names (spec section 5.1) -> avlearn.methods.valor.VALOR's, outside the
# per-layer blocks. The CLIP tower is the VALOR-L one (OpenAI layout below ``clip_model.visual``).
_CLIP = "visual_backbone.model.vision_model."
_VALOR_TOP = {
    "clip_model.visual.conv1.weight": _CLIP + "embeddings.patch_embedding.weight",
    "clip_model.visual.class_embedding": _CLIP + "embeddings.class_embedding",
    "clip_model.visual.positional_embedding": _CLIP + "embeddings.position_embedding.weight",
    "clip_model.visual.ln_pre": _CLIP + "pre_layrnorm", "clip_model.visual.ln_post": _CLIP + "post_layernorm",
    "audio_embeddings.first_conv": "audio_backbone.model.embeddings.patch_embeddings.projection",
    "audio_embeddings.cls_token": "audio_backbone.model.embeddings.cls_token",
    "audio_encoder.last_layernorm": "audio_backbone.model.layernorm",
    "multimodal_encoder.embeddings": "text_backbone.model.embeddings",
    "contra_head_t.linear": "contra_text", "contra_head_v.linear": "contra_video",
    "contra_head_a.linear": "contra_audio",
    "text_fine_weight": "weight_text", "video_fine_weight": "weight_video", "audio_fine_weight": "weight_audio",
    "hidden_trans_video_multimodal": "video_proj", "hidden_trans_audio_multimodal": "audio_proj",
    "cls.dense": "lm_transform.0", "cls.layernorm": "lm_transform.2", "cls.decoder.bias": "lm_bias",
}  # fmt: skip
# Per-layer names: (seed pattern, avlearn prefix, seed -> avlearn names below the layer).
_VALOR_LAYERS = (
    (re.compile(r"^clip_model\.visual\.transformer\.resblocks\.(\d+)\.(.+)$"), _CLIP + "encoder.layers.{}.",
     {"attn.out_proj": "self_attn.out_proj", "ln_1": "layer_norm1", "ln_2": "layer_norm2", "mlp.c_fc": "mlp.fc1",
      "mlp.c_proj": "mlp.fc2"}),
    (re.compile(r"^audio_encoder\.layer\.(\d+)\.(.+)$"), "audio_backbone.model.layers.{}.",
     {"attention.linears.0": "attention.q_proj", "attention.linears.1": "attention.k_proj",
      "attention.linears.2": "attention.v_proj", "attention.linears.3": "attention.o_proj",
      "ff_layer.linear1": "mlp.fc1", "ff_layer.linear2": "mlp.fc2", "layernorm1": "layernorm_before",
      "layernorm2": "layernorm_after"}),
    (re.compile(r"^multimodal_encoder\.encoder\.layer\.(\d+)\.cross_attn\.(.+)$"), "cross.{}.",
     {"cross.query": "query", "cross.key": "key", "cross.value": "value", "output.dense": "dense",
      "output.LayerNorm": "norm"}),
    (re.compile(r"^multimodal_encoder\.encoder\.layer\.(\d+)\.(.+)$"), "text_backbone.model.encoder.layer.{}.",
     {name: name for name in ("attention", "intermediate", "output")}),
)  # fmt: skip
# Kept by the seed but never used by VALOR (txt_encoder: the same module as multimodal_encoder; the CLIP text
# tower and its prompt embedding; the tied output weight; BERT's pooler).
_VALOR_DROPPED = ("txt_encoder", "clip_model.transformer", "clip_model.token_embedding",
                  "clip_model.positional_embedding", "clip_model.ln_final", "clip_model.text_projection",
                  "clip_model.prompt_embedding", "cls.decoder.weight", "multimodal_encoder.pooler")  # fmt: skip
# The seed's prompt segment embedding (QA's question, VALOR-L's task prompts), a one-row table: avlearn's is BERT's
# second token-type row, which the seed never uses (its token types are all 0).
_VALOR_PROMPT = "multimodal_encoder.embeddings.prompt_embedding.weight"
_VALOR_TOKEN_TYPES = "multimodal_encoder.embeddings.token_type_embeddings.weight"


_VALOR_EMBEDDINGS = {"video_frame_embedding": "video_frame_embedding", "audio_frame_embedding": "audio_clip_embedding",
                     "video_type_embeddings": "video_type_embedding",
                     "audio_type_embeddings": "audio_type_embedding"}  # fmt: skip
_VALOR_TEMPERATURES = ("clip_model.logit_scale", "contra_temp")  # VALOR-L uses CLIP's, other variants their own


def _valor_special(name: str, tensor: torch.Tensor) -> dict[str, torch.Tensor] | None:
    """The seed tensors whose layout changes (not only their name); None for the others."""
    if name.endswith("attn.in_proj_weight") or name.endswith("attn.in_proj_bias"):  # CLIP's fused q, k, v
        layer, kind = name.split(".")[4], name.rsplit("_", 1)[1]
        names = (f"{_CLIP}encoder.layers.{layer}.self_attn.{p}_proj.{kind}" for p in "qkv")
        return dict(zip(names, _split(tensor, 3), strict=True))
    if name == "clip_model.visual.proj":  # (C, D): unused by VALOR; transposed into the tower's projection
        return {"visual_backbone.model.visual_projection.weight": tensor.T}
    if name == "audio_embeddings.position_embeddings.weight":  # (1 + N, C): AST's layout adds a distillation row
        return {"audio_backbone.model.embeddings.position_embeddings": torch.cat([tensor[:1], 0 * tensor[:1],
                                                                                  tensor[1:]])[None],
                "audio_backbone.model.embeddings.distillation_token": 0 * tensor[None, :1]}  # fmt: skip
    if name in _VALOR_EMBEDDINGS:  # (1, 32, C) / (1, 1, C)
        return {_VALOR_EMBEDDINGS[name]: tensor[0, 0] if name.endswith("type_embeddings") else tensor[0]}
    return None


def _valor_prompt_row(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The seed's token-type table ``(2, C)`` with its prompt embedding ``(1, C)`` as row 1 (``_VALOR_PROMPT``)."""
    types = state[_VALOR_TOKEN_TYPES].clone()
    types[1:2] = state[_VALOR_PROMPT]
    return {_VALOR_TOKEN_TYPES: types}


def convert_valor_state_dict(state: dict[str, torch.Tensor]) -> Conversion:
    """A seed VALOR state dict (``module.`` stripped; VALOR-L, VALOR-B or the same models at any width) -> the state
    dict of :class:`avlearn.methods.valor.VALOR` with a CLIP or Video Swin tower, AST and BERT.

    Changed layouts: CLIP's fused ``in_proj`` split into q, k, v; ``visual.proj`` transposed; VALOR-B's
    ``video_encoder.*`` (the seed's ``SwinTransformer3D``) renamed as the ``video_swin`` format does; AST's position
    table gets back the distillation row the seed drops (zeros, like the distillation token: VALOR uses neither); the
    frame and type embeddings lose their leading unit axes; the temperature is ``exp(-logit_scale)`` of the CLIP
    tower (VALOR-L), else ``contra_temp``; the prompt embedding becomes BERT's second token-type row. Dropped: the
    names in ``_VALOR_DROPPED``, the unused temperature and the Video Swin's derived ``relative_position_index``.

    Raises:
        DataError: a tensor that maps to nothing.
    """
    clip = any(_under(k, "clip_model.visual") for k in state)
    swin = _valor_video_swin(state)
    out, dropped, unmapped = swin.tensors, swin.dropped, []
    if _VALOR_PROMPT in state:
        state = {**{k: v for k, v in state.items() if k != _VALOR_PROMPT}, **_valor_prompt_row(state)}
    for name, tensor in state.items():
        if _under(name, _VALOR_SWIN):
            continue
        if any(_under(name, prefix) for prefix in _VALOR_DROPPED):
            dropped.append(name)
            continue
        if name in _VALOR_TEMPERATURES:
            if (name == _VALOR_TEMPERATURES[0]) == clip:
                out["temperature"] = (-tensor).exp() if clip else tensor
            else:
                dropped.append(name)
            continue
        mapped = _valor_special(name, tensor)
        if mapped is None:
            mapped = _valor_layer(name, tensor) or _renamed(name, tensor, _VALOR_TOP)
        unmapped += [] if mapped else [name]
        out.update(mapped)
    if unmapped:
        raise DataError(f"VALOR: {len(unmapped)} tensors have no avlearn counterpart, e.g. {unmapped[:3]}")
    return Conversion(out, dropped)


_VALOR_SWIN = "video_encoder"  # VALOR-B's vision tower, the seed's SwinTransformer3D


def _valor_video_swin(state: dict[str, torch.Tensor]) -> Conversion:
    """VALOR-B's ``video_encoder.*`` tensors -> the Video Swin tower's (``visual_backbone.model.*``) and the dropped
    source names (empty for VALOR-L).

    Raises:
        DataError: a ``video_encoder`` tensor that maps to nothing (named below ``video_encoder.``).
    """
    tower = {k[len(_VALOR_SWIN) + 1 :]: v for k, v in state.items() if _under(k, _VALOR_SWIN)}
    if not tower:
        return Conversion({})
    swin = convert_state_dict("video_swin", tower)
    tensors = {f"visual_backbone.model.{k}": v for k, v in swin.tensors.items()}
    return Conversion(tensors, [f"{_VALOR_SWIN}.{k}" for k in swin.dropped])


def _valor_layer(name: str, tensor: torch.Tensor) -> dict[str, torch.Tensor]:
    """A tensor inside one of the seed's per-layer blocks, renamed (``{}`` when no block pattern matches)."""
    for pattern, prefix, names in _VALOR_LAYERS:
        match = pattern.match(name)
        if match:
            return {prefix.format(match[1]) + k: v for k, v in _renamed(match[2], tensor, names).items()}
    return {}


# ---- CMG
_CMG_MODALITY = {"video": "visual", "audio": "audio", "text": "text"}
# Seed prefix -> avlearn prefix, per part of the seed's checkpoint (its keys, spec section 6); {m}: the seed's
# modality name, {o}: avlearn's.
_CMG_ENCODER = {"Video_encoder.conv_stack.5.stack.0.res_block": "specific.visual.convs.5.block",
                "Video_encoder.conv_stack": "specific.visual.convs", "Audio_encoder.audio_linear": "specific.audio.0",
                "Video_encoder.feed_forward": "specific.visual.project", "Text_encoder.text_linear": "specific.text.0",
                "Cross_quantizer.unactivated_count": "codebook.unused", "Cross_quantizer": "codebook",
                "video_semantic_encoder.se_layer": "visual_pool.se",
                "video_semantic_encoder.affine_video_ave": "visual_pool.query_mean",
                "video_semantic_encoder.affine_video_self": "visual_pool.query_self",
                "video_semantic_encoder.ave_v_att": "visual_pool.score",
                **{f"{m}_self_att.affine_matrix": f"semantic.{o}.proj" for m, o in _CMG_MODALITY.items()},
                **{f"{m}_self_att.encoder.layers": f"semantic.{o}.encoder.layers"
                   for m, o in _CMG_MODALITY.items()}}  # fmt: skip
_CMG_DECODER = {"Video_decoder.inverse_conv_block.1.stack.0.res_block": "decoder.visual.deconvs.1.block",
                "Video_decoder.inverse_conv_block": "decoder.visual.deconvs",
                "Video_decoder.video_linear": "decoder.visual.code",
                "Audio_decoder.audio_rec": "decoder.audio.out", "Audio_decoder.audio_linear": "decoder.audio.code",
                "Text_decoder.text_rec": "decoder.text.out",
                "Text_decoder.text_linear": "decoder.text.code"}  # fmt: skip
_CMG_CPC = {**{f"{m}_ar_lstm": f"cpc.lstm.{o}" for m, o in _CMG_MODALITY.items()},
            **{f"{m}_predictors.0": f"cpc.predict.{o}" for m, o in _CMG_MODALITY.items()}}  # fmt: skip
_CMG_PARTS = {"Encoder_parameters": _CMG_ENCODER, "Decoder_parameters": _CMG_DECODER, "CPC_parameters": _CMG_CPC,
              "Text_ar_lstm_parameters": {"": "text_lstm"},
              **{f"{m.capitalize()}_mi_net_parameters": {"p_mu": f"club.{o}.mu", "p_logvar": f"club.{o}.logvar"}
                 for m, o in _CMG_MODALITY.items()}}  # fmt: skip
# Seed tensors with no avlearn counterpart: the transformers' never-run template layers and the unused 141-way heads.
_CMG_UNUSED = re.compile(r"^(\w+_self_att\.encoder_layer\.|\w+_semantic_decoder\.)")


def convert_cmg_state_dict(checkpoint: dict[str, dict[str, torch.Tensor]]) -> Conversion:
    """A seed CMG checkpoint (``pretrain.py``'s dict: ``Encoder_parameters``, ``Decoder_parameters``,
    ``CPC_parameters``, ``Text_ar_lstm_parameters``, ``{Video,Audio,Text}_mi_net_parameters``; parts may be absent)
    -> the state-dict names of :class:`avlearn.methods.cmg.CMG` (dtypes kept: the seed saves float64, and
    ``load_state_dict`` casts to the model's).

    The template ``encoder_layer`` of each temporal transformer and the unused ``*_semantic_decoder`` heads come back
    in ``dropped``; the codebook's step counter (avlearn's own) is not in the seed and keeps its value.

    Raises:
        DataError: a tensor of a known part that maps to nothing.
    """
    out, dropped = {}, []
    for part, tensors in checkpoint.items():
        if part not in _CMG_PARTS:
            dropped.append(part)
            continue
        for name, tensor in tensors.items():
            if _CMG_UNUSED.match(name):
                dropped.append(f"{part}.{name}")
                continue
            prefixes = _CMG_PARTS[part]
            renamed = {prefixes[""] + "." + name: tensor} if "" in prefixes else _renamed(name, tensor, prefixes)
            if not renamed:
                raise DataError(f"CMG checkpoint: {part}.{name} maps to no avlearn parameter")
            out.update(renamed)
    return Conversion(out, dropped)


# ---- Cross-Modal Adaptation
def convert_cma_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The seed's head (a ``LogitHead`` around ``nn.Linear`` or ``Sequential(Adapter, Linear)``) as avlearn's parameter
    dict: ``[head.]weight`` or ``[head.]1.weight`` -> ``weight``, ``[head.]0.fc.0.weight`` -> ``down``,
    ``[head.]0.fc.2.weight`` -> ``up``. A key of any other name (a bias, a partial encoder's) is an error."""
    names = {"weight": "weight", "1.weight": "weight", "0.fc.0.weight": "down", "0.fc.2.weight": "up"}
    converted = {}
    for key, tensor in state.items():
        short = key.removeprefix("head.")
        if short not in names:
            raise DataError(f"CMA seed head: unexpected key {key!r}; expected {', '.join(sorted(names))} "
                            "(optionally under head.)")  # fmt: skip
        converted[names[short]] = tensor.detach().clone()
    return converted


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


_MAE_DROPPED = ("decoder", "mask_token", "pos_embed")  # the pretraining decoder; the table made for the target grid


def convert_mae_vit_state_dict(state: dict[str, torch.Tensor], model: torch.nn.Module) -> Conversion:
    """An MAE or AudioMAE pretraining checkpoint (timm ViT: ``cls_token``, ``pos_embed``, ``patch_embed.proj``,
    ``blocks.{i}``, ``norm``, and the ``decoder_*`` / ``mask_token`` of pretraining) -> the names of ``model`` (a
    ``ViTMAEModel``), as the seed's ``ViT.load_checkpoint`` takes them: the decoder and mask token dropped, the
    checkpoint's position table replaced by MAE's fixed sin-cos table for the model's patch grid (AudioMAE's is for
    its own 64 x 8 fbank grid; a zero CLS row in front), each fused ``qkv`` split into query, key and value, the CLS
    token kept (DeepAVFusion does not use it), the patch-embedding kernel copied unchanged (on DeepAVFusion's
    (frequency, time) log-mels an AudioMAE kernel, trained on (time, frequency) fbanks, is used transposed, as in
    the seed).

    Raises:
        DataError: a tensor maps to nothing (e.g. a fine-tuned checkpoint's ``head`` / ``fc_norm``).
    """
    from avlearn.backbones.vit_mae import sincos_position_table

    patches = model.embeddings.patch_embeddings
    grid = (patches.image_size[0] // patches.patch_size[0], patches.image_size[1] // patches.patch_size[1])
    table = sincos_position_table(grid, model.config.hidden_size).unsqueeze(0)  # (1, N, C)
    out = _timm_vit("pos_embed", table)  # with the zero CLS row (and a zero CLS token, replaced below)
    dropped, unmapped = [], []
    for name, tensor in state.items():
        if any(name.startswith(prefix) for prefix in _MAE_DROPPED):
            dropped.append(name)
            continue
        mapped = {"embeddings.cls_token": tensor} if name == "cls_token" else _timm_vit(name, tensor)
        unmapped += [] if mapped else [name]
        out.update(mapped)
    if unmapped:
        raise DataError(f"MAE ViT: {len(unmapped)} tensors have no avlearn counterpart, e.g. {unmapped[:3]}")
    return Conversion(out, dropped)


FORMATS |= {"mae_vit": Format("vit_mae_base", "", convert=convert_mae_vit_state_dict),
            "audiomae_vit": Format("vit_mae_audio_base", "", convert=convert_mae_vit_state_dict)}  # fmt: skip


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
