"""Oracles for the reference tier: the seed repositories' own modules, imported at test time only.

``../shared/reference`` (next to the repository) holds the seeds' code; the tier skips, saying why, when it is
absent. The DG-SCT seed imports packages avlearn never depends on: timm 0.6.13 and torchlibrosa are used from their
wheels, unpacked into a cache folder (``AVLEARN_REFERENCE_CACHE``, default ``~/.cache/avlearn/reference``; fetched
with ``pip download --no-deps`` on first use, or skipped when that fails). torchvision, h5py, ipdb and loralib are
imported by the seed but never called by the modules compared, so they are stubbed only while the seed imports.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import math
import os
import subprocess
import sys
import types
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO.parent / "shared" / "reference"
DGSCT = REFERENCE / "haoyi-duan__DG-SCT" / "DG-SCT"
CACHE = Path(os.environ.get("AVLEARN_REFERENCE_CACHE", Path.home() / ".cache" / "avlearn" / "reference"))
WHEELS = {"timm": "0.6.13", "torchlibrosa": "0.1.0"}
_STUBBED = ("torchvision", "h5py", "ipdb", "loralib")


def require_reference() -> Path:
    """The DG-SCT seed folder, or skip the test."""
    if not DGSCT.is_dir():
        pytest.skip(f"reference code not found at {DGSCT} (the reference tier needs ../shared/reference)")
    return DGSCT


def _unpacked(package: str) -> Path:
    """The folder holding ``package``'s wheel, unpacked (downloaded once with pip), or skip."""
    version = WHEELS[package]
    folder = CACHE / f"{package}-{version}"
    if (folder / package).is_dir():
        return folder
    CACHE.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", f"{package}=={version}", "-d", str(CACHE)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wheels = sorted(CACHE.glob(f"{package}-{version}-*.whl"))
    if not wheels:
        pytest.skip(f"{package}=={version} wheel unavailable for the reference oracle: {done.stderr.strip()[-200:]}")
    with zipfile.ZipFile(wheels[0]) as wheel:
        wheel.extractall(folder)
    return folder


class _Constants(type):
    """Metaclass of stub classes: any class attribute is its own name (enum-like constants such as
    ``InterpolationMode.NEAREST``)."""

    def __getattr__(cls, name: str) -> str:
        if name.startswith("__"):
            raise AttributeError(name)
        return name


class _Anything(types.ModuleType):
    """A stub module: every attribute is a fresh stub class."""

    def __getattr__(self, name: str) -> type:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Constants(name, (), {})


@contextlib.contextmanager
def _stubs_and_path(paths: list[Path], modules: dict[str, types.ModuleType] | None = None) -> Iterator[None]:
    """Stub modules for packages the seed imports but the compared code never calls (and ``modules``, given ones),
    and ``paths`` on sys.path; all removed afterwards (the imported modules keep their references)."""
    names = ["torchvision.transforms.functional", "torchvision.transforms", "torchvision.datasets",
             "torchvision.ops.misc", "torchvision.ops", "torchvision.models.feature_extraction", "torchvision.models",
             *_STUBBED]  # fmt: skip
    from transformers.utils import import_utils

    import_utils.is_torchvision_available()  # cached before the stubs exist: transformers must not see them
    importlib.import_module("transformers.activations")  # imported by the seed; imports torchvision checks
    added = [n for n in names if n not in sys.modules]
    for name in added:
        sys.modules[name] = _Anything(name)
    given = [n for n in modules or {} if n not in sys.modules]
    sys.modules.update({n: modules[n] for n in given})
    added += given
    for name in names:  # submodules are attributes of their parents
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(sys.modules[parent], child, sys.modules[name])
    sys.path[:0] = [str(p) for p in paths]
    try:
        yield
    finally:
        del sys.path[: len(paths)]
        for name in added:
            sys.modules.pop(name, None)


def timm() -> types.ModuleType:
    """timm 0.6.13 (what the seed was written against), from the unpacked wheel."""
    require_reference()
    if "timm" in sys.modules:
        return sys.modules["timm"]
    with _stubs_and_path([_unpacked("timm")]):
        return importlib.import_module("timm")


def seed_module(task_dir: str, module: str) -> types.ModuleType:
    """``<task_dir>/<module>`` of the DG-SCT seed (e.g. ``"AVE", "nets.net_trans"``), imported with its own
    top-level names (``nets``, ``model``, ``utils`` ...), which several tasks share: modules of those names imported
    earlier are set aside meanwhile and put back afterwards."""
    root = require_reference() / task_dir
    timm()
    return _import_isolated(root, [module], [_unpacked("torchlibrosa")])[0]


def _import_isolated(
    root: Path, modules: list[str], paths: list[Path], stubs: dict[str, types.ModuleType] | None = None
) -> list[types.ModuleType]:
    """``modules`` of the seed folder ``root``, imported with its own top-level names (``nets``, ``model``,
    ``utils`` ...), which several seeds share: modules of those names imported earlier are set aside meanwhile and
    put back afterwards."""
    local = {p.stem for p in root.iterdir() if p.suffix == ".py" or p.is_dir()}

    def ours(name: str) -> bool:
        return name.split(".")[0] in local

    saved = {k: sys.modules.pop(k) for k in list(sys.modules) if ours(k)}
    try:
        with _stubs_and_path([root, *paths], stubs):
            loaded = [importlib.import_module(m) for m in modules]
    finally:
        for k in [k for k in sys.modules if ours(k)]:
            del sys.modules[k]
        sys.modules.update(saved)
    return loaded


def seed_ave_model(opt: object, swin: dict, htsat: dict) -> torch.nn.Module:
    """The seed's AVE ``MMIL_Net(opt)`` (``DG-SCT/AVE/nets/net_trans.py``) at another size, random weights: the
    seed builds ``swinv2_large_window12_192_22k`` through timm (here ``SwinTransformerV2(**swin)``) and HTS-AT from
    its ``esc_config`` (here with the ``htsat`` fields), and loads HTS-AT's AudioSet checkpoint (skipped); all
    three are put back afterwards."""
    net_trans = seed_module("AVE", "nets.net_trans")
    timm_module, config, model_class = timm(), net_trans.esc_config, net_trans.HTSAT_Swin_Transformer
    from timm.models.swin_transformer_v2 import SwinTransformerV2

    saved = {k: getattr(config, k) for k in htsat}
    create, load, load_state = timm_module.create_model, torch.load, model_class.load_state_dict
    built = SwinTransformerV2(**swin)
    timm_module.create_model = lambda *args, **kwargs: built
    torch.load = lambda *args, **kwargs: {"state_dict": {}}  # the seed's HTS-AT checkpoint file
    model_class.load_state_dict = lambda self, state, strict=True: None
    for k, v in htsat.items():
        setattr(config, k, v)
    try:
        return net_trans.MMIL_Net(opt)
    finally:
        timm_module.create_model, torch.load, model_class.load_state_dict = create, load, load_state
        for k, v in saved.items():
            setattr(config, k, v)


def randomise(module: torch.nn.Module, seed: int = 0, keep: tuple[str, ...] = ()) -> None:
    """Give every parameter and floating batch-norm statistic a random value (no branch stays at its zero or one
    initialisation, so a wrongly mapped tensor changes the output); variances stay positive. Names starting with
    one of ``keep`` (fixed front-end matrices) are left alone."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict(keep_vars=True).items():
            fixed = name.endswith(("relative_position_index", "attn_mask")) or name.startswith(keep)
            if not tensor.is_floating_point() or fixed:
                continue
            noise = torch.randn(tensor.shape, generator=generator) * 0.2
            tensor.copy_(tensor.abs() * 0.5 + 0.5 + noise.abs() if name.endswith("running_var") else tensor + noise)


def file_module(path: Path, name: str) -> types.ModuleType:
    """A seed's module that imports only torch and numpy, loaded from its file ``path`` as ``name``, or skip."""
    if not path.is_file():
        pytest.skip(f"reference code not found at {path} (the reference tier needs ../shared/reference)")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def assert_parity(ours: torch.Tensor, reference: torch.Tensor, what: str) -> float:
    """Max abs difference within 1e-5 of the reference's scale (its max abs value); returns the relative error."""
    assert ours.shape == reference.shape, f"{what}: shape {tuple(ours.shape)} vs {tuple(reference.shape)}"
    scale = reference.abs().max().item()
    error = (ours - reference).abs().max().item() / scale
    assert error <= 1e-5, f"{what}: max abs difference {error:.2e} of the output scale {scale:.3g}"
    print(f"{what}: max abs difference {error:.2e} of the output scale {scale:.3g}")  # shown with pytest -s
    return error


VALOR = REFERENCE / "TXH-mercury__VALOR"


def valor_modules(*modules: str) -> list[types.ModuleType]:
    """Modules of the VALOR seed (e.g. ``"model.pretrain"``), imported together, or skip. apex's ``FusedLayerNorm``
    is torch's LayerNorm (what its fused kernel computes); tensorboardX, easydict, boto3 and the SCST scorer are stubbed
    (imported at module level, never called by the compared code)."""
    if not VALOR.is_dir():
        pytest.skip(f"reference code not found at {VALOR} (the reference tier needs ../shared/reference)")
    fused = types.ModuleType("apex.normalization.fused_layer_norm")
    fused.FusedLayerNorm = torch.nn.LayerNorm
    names = ("apex", "apex.normalization", "tensorboardX", "easydict", "scorer", "scorer.scorer", "boto3",
             "botocore", "botocore.exceptions")  # fmt: skip
    stubs = {**{n: _Anything(n) for n in names}, fused.__name__: fused}
    return _import_isolated(VALOR, list(modules), [], stubs)


@dataclass(frozen=True)
class ValorSize:
    """The sizes of a VALOR built twice, from the seed's modules and from avlearn's towers: CLIP ``image`` px in
    ``patch`` px patches, ``visual_width`` x ``visual_layers``; AST, BERT and decoder ``width`` x ``layers`` with
    ``heads`` heads (one width, as in the seed; BERT over the 30522 WordPiece ids); MGA space ``contra``; AST input
    ``mel_bins`` x ``audio_frames`` in 16 x 16 patches at stride 16."""

    image: int = 32
    patch: int = 8
    visual_width: int = 48
    visual_layers: int = 2
    width: int = 32
    layers: int = 2
    heads: int = 2
    contra: int = 16
    mel_bins: int = 32
    audio_frames: int = 160


class _ValorClip(nn.Module):
    """The part of the seed's CLIP that VALOR-L uses: the image tower and the logit scale."""

    def __init__(self, clip: types.ModuleType, size: ValorSize) -> None:
        super().__init__()
        heads = size.visual_width // 16
        self.visual = clip.VisionTransformer(size.image, size.patch, size.visual_width, size.visual_layers, heads,
                                             size.contra)  # fmt: skip
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.05)))

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.visual(pixels)


def valor_seed(size: ValorSize) -> tuple[nn.Module, types.ModuleType]:
    """The seed's ``VALOR`` (VALOR-L structure: CLIP frames, AST clips, a cross-attention BERT shared as text encoder
    and decoder, fine-grained MGA, unimlm MGC) assembled from its own modules at ``size`` (its ``__init__`` loads
    every backbone from ``./pretrained_weights``), random weights, eval mode; and its ``model.pretrain`` module."""
    pretrain, modeling, bert, transformer, clip = valor_modules(
        "model.pretrain", "model.modeling", "model.bert", "model.transformer", "model.clip"
    )
    seed = pretrain.VALOR.__new__(pretrain.VALOR)
    nn.Module.__init__(seed)
    c, cv, d = size.width, size.visual_width, size.contra
    vars(seed).update({"video_encoder_type": "clip_vit_base_16", "txt_encoder_type": "bert_base_uncased",
                       "multimodal_encoder_type": "bert_base_uncased", "audio_encoder_type": "ast",
                       "contra_type": "fine", "caption_type": "unimlm", "full_masker": False, "use_task_prompt": False,
                       "late_fusion": False, "fineweight_type": "two", "contra_loss_ratio": 1.5,
                       "max_generation_len": 30, "beam_size": 1, "multimodal_use_cross_attn": True, "bos_token": 101,
                       "eos_token": 102, "text_mask_token": 103, "multimodal_dim": c, "video_dim": cv,
                       "audio_dim": c, "label_smoothing": 0})  # fmt: skip
    seed.clip_model = _ValorClip(clip, size)
    layers = SimpleNamespace(hidden_size=c, num_attention_heads=size.heads, intermediate_size=4 * c,
                             num_hidden_layers=size.layers, attention_dropout=0.1, hidden_dropout=0.1,
                             checkpointing=False)  # fmt: skip
    audio = SimpleNamespace(audio_patch_size=16, audio_melbins=size.mel_bins, audio_target_length=size.audio_frames)
    seed.audio_embeddings = modeling.AudioEmbeddings(layers, audio)
    seed.audio_encoder = transformer.TransformerEncoder(layers, mode="prenorm")
    config = bert.BertConfig(30522, hidden_size=c, num_hidden_layers=size.layers, num_attention_heads=size.heads,
                             intermediate_size=4 * c)  # fmt: skip
    config.has_cross_attn, config.cross_attn_type, config.checkpointing = True, "va_concate", False
    seed.multimodal_encoder = bert.BertModel(config)
    seed.txt_encoder = seed.multimodal_encoder  # share_txt_and_multimodal
    seed.cls = modeling.BERTPredictionHead(seed.multimodal_encoder.embeddings.word_embeddings.weight)
    seed.text_masker = modeling.TokenMasker(mask_token=103, range_start=106, range_end=30522)
    seed.contra_head_t, seed.contra_head_v, seed.contra_head_a = (pretrain.Contra_head(w, d) for w in (c, cv, c))
    for name in ("text", "video", "audio"):
        setattr(seed, f"{name}_fine_weight", nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, 1)))
    seed.fine_weight_mapper = {n: getattr(seed, f"{n}_fine_weight") for n in ("text", "video", "audio")}
    seed.contra_temp = nn.Parameter(torch.tensor(0.07))
    for name, rows in (("video_type_embeddings", 1), ("audio_type_embeddings", 1), ("video_frame_embedding", 32),
                       ("audio_frame_embedding", 32)):  # fmt: skip
        setattr(seed, name, nn.Parameter(0.02 * torch.randn(1, rows, c)))
    projection = None if cv == c else nn.Sequential(nn.Linear(cv, c), nn.LayerNorm(c, eps=1e-12))
    seed.hidden_trans_video_multimodal, seed.hidden_trans_audio_multimodal = projection, None
    randomise(seed)
    return seed.eval(), pretrain


def valor_ours(size: ValorSize, **cfg: object) -> nn.Module:
    """avlearn's ``VALOR`` at ``size`` (``cfg``: ``VALORConfig`` fields), random weights, eval mode."""
    import avlearn.backbones  # noqa: F401  (registers the backbones)
    from avlearn.methods.valor import VALOR, VALORConfig
    from avlearn.registry import BACKBONES

    heads = size.visual_width // 16
    visual = BACKBONES.build("clip_vit_tiny", image_size=size.image, patch_size=size.patch,
                             hidden_size=size.visual_width, num_hidden_layers=size.visual_layers,
                             num_attention_heads=heads, intermediate_size=4 * size.visual_width)  # fmt: skip
    width = {"hidden_size": size.width, "num_hidden_layers": size.layers, "num_attention_heads": size.heads,
             "intermediate_size": 4 * size.width}  # fmt: skip
    audio = BACKBONES.build("ast_valor_tiny", num_mel_bins=size.mel_bins, max_length=size.audio_frames, **width)
    text = BACKBONES.build("minilm_tiny", **width)
    return VALOR(VALORConfig(**{"contra_dim": size.contra, **cfg}), visual, audio, text).eval()


CMG = REFERENCE / "haihuangcode__CMG" / "code" / "src"


def cmg_modules() -> dict[str, types.ModuleType]:
    """The CMG seed's ``model.main_model_2``, ``model.CPC`` and ``model.CLUB`` (``info_nce``, imported but unused,
    stubbed), under the keys ``main``, ``cpc``, ``club``; skips without the seed. Earlier modules named ``model`` are
    set aside meanwhile."""
    if not CMG.is_dir():
        pytest.skip(f"reference code not found at {CMG} (the reference tier needs ../shared/reference)")
    saved = {k: sys.modules.pop(k) for k in list(sys.modules) if k.split(".")[0] in ("model", "info_nce")}
    sys.modules["info_nce"] = _Anything("info_nce")
    sys.path.insert(0, str(CMG))
    try:
        names = {"main": "model.main_model_2", "cpc": "model.CPC", "club": "model.CLUB"}
        return {key: importlib.import_module(name) for key, name in names.items()}
    finally:
        sys.path.remove(str(CMG))
        for k in [k for k in sys.modules if k.split(".")[0] in ("model", "info_nce")]:
            del sys.modules[k]
        sys.modules.update(saved)


# ---- Cross-Modal Adaptation
CMA = REFERENCE / "linzhiqiu__cross_modal_adaptation"
_CMA_STUBBED = ("features", "engine.config", "engine.datasets", "engine.datasets.utils")


class _SchedulerWithVerbose(torch.optim.lr_scheduler.LRScheduler):
    """``_LRScheduler`` as the CMA seed calls it, ``(optimizer, last_epoch, verbose)``: torch 2.13 dropped ``verbose``
    (the seed's warm-up schedulers pass it positionally), which is ignored here."""

    def __init__(self, optimizer: torch.optim.Optimizer, last_epoch: int = -1, verbose: bool = False) -> None:
        super().__init__(optimizer, last_epoch)


def cma_train() -> types.ModuleType:
    """The CMA seed's ``train.py`` (its ``train`` and ``validate`` loop), with ``engine.model`` (heads) and
    ``engine.optimizer`` (AdamW, warm-up schedule) as they are. Stubbed while it imports, never called by the loop:
    ``features`` (CLIP), ``engine.config`` (argparse over the dataset registry) and ``engine.datasets``
    (torchvision). ``train.py`` sets 4 torch threads on import; the count is restored. The seed's generic module
    names (``engine``, ``features``, ``train``) are imported aside and removed again."""
    if not CMA.is_dir():
        pytest.skip(f"reference code not found at {CMA} (the reference tier needs ../shared/reference)")
    local = {"engine", "features", "train"}

    def ours(name: str) -> bool:
        return name.split(".")[0] in local

    saved = {k: sys.modules.pop(k) for k in list(sys.modules) if ours(k)}
    threads, scheduler = torch.get_num_threads(), torch.optim.lr_scheduler._LRScheduler
    try:
        with _stubs_and_path([CMA]):
            for name in _CMA_STUBBED:
                sys.modules[name] = _Anything(name)
            torch.optim.lr_scheduler._LRScheduler = _SchedulerWithVerbose
            loaded = importlib.import_module("train")
    finally:
        torch.optim.lr_scheduler._LRScheduler = scheduler
        torch.set_num_threads(threads)
        for k in [k for k in sys.modules if ours(k)]:
            del sys.modules[k]
        sys.modules.update(saved)
    return loaded


DEEPAVFUSION = REFERENCE / "stoneMo__DeepAVFusion"


def deepavfusion_modules() -> tuple[types.ModuleType, types.ModuleType, types.ModuleType]:
    """The DeepAVFusion seed's ``models.vits``, ``models.deepavfusion`` and ``models.avmae``, on timm 0.6.13.

    The seed pins timm 0.9.2; the one difference its compared modules reach is the blocks' ``proj_drop`` argument
    (0.6.13 calls it ``drop``), renamed by a ``Block`` subclass while the seed imports. (A second timm version in
    the same process clashes in torch.jit's overload registry.) Its Swin decoder (``models.swin``, unused by the
    plain decoders compared, needs timm >= 0.9) is a stub. The seed's top-level names (``models``, ``util``) are
    set aside meanwhile and put back afterwards.
    """
    if not DEEPAVFUSION.is_dir():
        pytest.skip(f"reference code not found at {DEEPAVFUSION} (the reference tier needs ../shared/reference)")
    timm()
    vision_transformer = sys.modules["timm.models.vision_transformer"]
    original = vision_transformer.Block

    class Block(original):
        def __init__(self, *args: object, proj_drop: float = 0.0, **kwargs: object) -> None:
            super().__init__(*args, drop=proj_drop, **kwargs)

    def seeds(name: str) -> bool:
        return name.split(".")[0] in ("models", "util")

    saved = {k: sys.modules.pop(k) for k in list(sys.modules) if seeds(k)}
    vision_transformer.Block = Block
    sys.modules["models.swin"] = _Anything("models.swin")
    try:
        with _stubs_and_path([DEEPAVFUSION]):
            return tuple(importlib.import_module(f"models.{m}") for m in ("vits", "deepavfusion", "avmae"))
    finally:
        vision_transformer.Block = original
        for k in [k for k in sys.modules if seeds(k)]:
            del sys.modules[k]
        sys.modules.update(saved)
