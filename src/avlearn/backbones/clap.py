"""CLAP towers: the HTS-AT audio encoder and the RoBERTa text encoder, on ``transformers``' ``Clap*`` classes.

Papers: Chen et al., "HTS-AT: A Hierarchical Token-Semantic Audio Transformer", ICASSP 2022 (arXiv:2202.00874);
Wu et al., "Large-scale Contrastive Language-Audio Pretraining (CLAP)", ICASSP 2023 (arXiv:2211.06687).
Weights: CLAP folders, e.g. ``laion/clap-htsat-unfused`` / ``laion/clap-htsat-fused`` (the fused one is what DG-SCT's
few/zero-shot code loads as ``630k-audioset-fusion-best.pt``). ``htsat_base`` is the same HTS-AT architecture with
DG-SCT's 32 kHz features and no projection; its original checkpoint (``HTSAT_AudioSet_Saved_1.ckpt``) is a Lightning
file, not a ``transformers`` folder, and needs converting first (not provided yet).
Input: a log-mel ``spectrogram`` (B, T, F), or (B, 4, T, F) with ``is_longer`` (B, 1) for fused models, as
``avlearn.audio`` computes it from ``preprocess``; HTS-AT stretches T to 1024 and folds it into a 256x256 image.
Differs: ``forward_features`` returns the final tokens in ``transformers``' (frequency, time) grouping, flattened to
(B, N, C); the pooled embedding is their mean (``pooler_output``), ``project`` maps it to the joint space.
Stage loop: 4 Swin stages (``hidden.grid`` is the token grid, ``end_stage`` the patch merging), as DG-SCT interleaves
them with Swin-V2. Text tower: every RoBERTa layer is a stage of one block; pooled: RoBERTa's tanh pooler.
Training mode: ``transformers``' block has drop-path on the attention residual only and dropout
(``hidden_dropout_prob``, 0.1) after the MLP; HTS-AT's own block has drop-path on both residuals and no such dropout.
``seed_blocks`` (default for ``htsat_base``) gives HTS-AT's; the test sizes keep ``transformers``' (their learning
tests were tuned with it). ``spec_augment`` (off unless a method sets it, as DG-SCT's ``method.spec_augment``) masks
the normalised log-mel in training, as HTS-AT does, before it is folded into an image.
Parity: ``tests/unit/backbones/test_zoo.py`` (stage loop == model forward), ``tests/reference/`` (the seed's HTS-AT).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from avlearn.audio.specaugment import SpecAugment
from avlearn.backbones.base import (
    Backbone,
    Hidden,
    dummy_text_inputs,
    load_hf_model,
    load_tokenizer,
    tokenize,
)
from avlearn.backbones.preprocess import AudioPreprocess, TextPreprocess
from avlearn.errors import AvlearnError
from avlearn.registry import BACKBONES

_AUDIO_FIELDS = ("patch_embeds_hidden_size", "depths", "num_attention_heads", "window_size", "spec_size")
_TEXT_FIELDS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "projection_dim")
# Feature settings: CLAP's feature extractor (48 kHz) and DG-SCT's HTS-AT config (esc_config.py, 32 kHz).
_CLAP_FEATURES = {"sample_rate": 48_000, "n_fft": 1024, "hop_length": 480, "win_length": 1024}
_HTSAT_FEATURES = {"sample_rate": 32_000, "n_fft": 1024, "hop_length": 320, "win_length": 1024}


def htsat_segment_waveform() -> AudioPreprocess:
    """One-second 32 kHz waveform segments, the input of HTS-AT's own front end applied by the model (DG-SCT's
    ``method.audio_frontend: seed``, through ``avlearn.audio.htsat_segment_input``)."""
    rate = _HTSAT_FEATURES["sample_rate"]
    return AudioPreprocess(rate, "waveform", num_mel_bins=1, num_frames=rate, n_fft=1, hop_length=1, win_length=1)


class HTSAT(Backbone):
    """HTS-AT: ``spectrogram`` (B, T, F) log-mel -> tokens (B, N, C); pooled: token mean.

    Args:
        config: ``ClapAudioConfig`` fields of the registered size.
        features: Sample rate and STFT settings of the log-mel input (see ``AudioPreprocess``).
        pretrained: ``None`` (random init), a local folder, or a Hugging Face id in the local cache.
        with_projection: Build CLAP's audio projection (``project``) on top.
        seed_blocks: Drop-path on the MLP residual and no dropout after the MLP, as HTS-AT's own blocks (training).
    """

    def __init__(
        self,
        config: dict[str, Any],
        features: dict[str, int],
        pretrained: str | None = None,
        with_projection: bool = True,
        seed_blocks: bool = False,
    ) -> None:
        # Imported here, not with the module: importing transformers takes seconds.
        from transformers import ClapAudioConfig, ClapAudioModel, ClapAudioModelWithProjection

        model_class = ClapAudioModelWithProjection if with_projection else ClapAudioModel
        model = load_hf_model(model_class, ClapAudioConfig, config, pretrained, _AUDIO_FIELDS)
        cfg = model.config
        frames = 1 + 10 * features["sample_rate"] // features["hop_length"]  # 10 s clips, centred STFT
        preprocess = AudioPreprocess(
            features="log_mel", num_mel_bins=cfg.num_mel_bins, num_frames=frames, f_min=50.0, f_max=14_000.0, **features
        )
        super().__init__(model, "audio", cfg.patch_embeds_hidden_size * 2 ** (len(cfg.depths) - 1), preprocess)
        self.proj_dim = cfg.projection_dim if with_projection else None
        self.spec_augment: SpecAugment | None = None  # set by a method that trains with HTS-AT's masking
        if seed_blocks:
            _use_seed_blocks(self.encoder)

    def _audio_model(self) -> nn.Module:
        return self.model.audio_model if self.proj_dim is not None else self.model

    @property
    def encoder(self) -> nn.Module:
        """The ``ClapAudioEncoder`` (stem, stages, final norm); a property, so its weights are not listed twice."""
        return self._audio_model().audio_encoder

    @staticmethod
    def _channels(spectrogram: torch.Tensor) -> torch.Tensor:
        return spectrogram.unsqueeze(1) if spectrogram.ndim == 3 else spectrogram  # (B, 1 or 4, T, F)

    def forward_features(self, spectrogram: torch.Tensor, is_longer: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, T, F)`` (or ``(B, 4, T, F)`` fused) -> ``(B, N, C)`` in (frequency, time) order."""
        out = self._audio_model()(input_features=self._channels(spectrogram), is_longer=is_longer)
        return out.last_hidden_state.flatten(2).transpose(1, 2)  # (B, C, F', T') -> (B, F'T', C)

    def inputs_from_wave(self, wave: torch.Tensor, sample_rate: int) -> dict[str, torch.Tensor]:
        """Waveforms ``(B, N)`` at any rate -> this model's inputs, by ``avlearn.audio``'s CLAP or HTS-AT front end.

        CLAP towers get ``clap_input`` (``"fusion"`` views and ``is_longer`` for fused models, else a random crop of
        clips over 10 s); ``htsat_base`` gets ``htsat_input`` (DG-SCT's 32 kHz log-mel).
        """
        from avlearn.audio import clap_input, htsat_input

        rate = self.preprocess.sample_rate
        if rate == _HTSAT_FEATURES["sample_rate"]:
            return {"spectrogram": htsat_input(wave, sample_rate)}
        if rate != _CLAP_FEATURES["sample_rate"]:
            raise AvlearnError(f"avlearn.audio has no front end for a {rate} Hz HTS-AT; compute its log-mel directly")
        fused = self.encoder.enable_fusion
        features, is_longer = clap_input(wave, sample_rate, "fusion" if fused else "rand_trunc")  # (B, 4 or 1, T, F)
        return {"spectrogram": features, "is_longer": is_longer} if fused else {"spectrogram": features}

    def pool(self, tokens: torch.Tensor, **inputs: Any) -> torch.Tensor:
        """Mean over tokens ``(B, C)`` (``transformers``' ``pooler_output``)."""
        return tokens.mean(dim=1)

    def project(self, pooled: torch.Tensor) -> torch.Tensor:
        """``(B, C)`` -> ``(B, proj_dim)`` audio embedding in CLAP's joint space."""
        if self.proj_dim is None:
            return super().project(pooled)
        return self.model.audio_projection(pooled)

    def dummy_inputs(self, batch_size: int = 2) -> dict[str, torch.Tensor]:
        """Random log-mel ``(B, T, F)``; fused models get 4 channels and ``is_longer`` (all rows: the fusion block's
        batch norm needs two long clips in train mode)."""
        shape = (self.preprocess.num_frames, self.preprocess.num_mel_bins)
        if not self.encoder.enable_fusion:
            return {"spectrogram": torch.randn(batch_size, *shape, device=self._device())}
        is_longer = torch.ones(batch_size, 1, dtype=torch.bool, device=self._device())
        return {"spectrogram": torch.randn(batch_size, 4, *shape, device=self._device()), "is_longer": is_longer}

    def embed(self, spectrogram: torch.Tensor, is_longer: torch.Tensor | None = None) -> Hidden:
        """Batch norm over mel bins, fold to a square image, patch embedding -> ``(B, N, C)`` on its grid."""
        enc = self.encoder
        x = enc.batch_norm(self._channels(spectrogram).transpose(1, 3)).transpose(1, 3)  # (B, ch, T, F)
        if self.spec_augment is not None:
            x = self.spec_augment(x)  # (B, ch, T, F), masked in training only
        longer_index = torch.where(is_longer.reshape(-1))[0] if enc.enable_fusion else None
        image = enc.reshape_mel2img(x)  # (B, ch, S, S)
        tokens = enc.patch_embed(image, longer_index)
        return Hidden(tokens, tuple(enc.input_resolutions[0]), extra={"image_height": image.shape[2]})

    def stage_blocks(self, i: int) -> Sequence[nn.Module]:
        """The Swin blocks of stage ``i``."""
        return self.encoder.layers[i].blocks

    def run_block(self, i: int, j: int, hidden: Hidden) -> Hidden:
        """One shifted-window block on the ``(H, W)`` grid."""
        tokens = self.stage_blocks(i)[j](hidden.tokens, hidden.grid)[0]
        return Hidden(tokens, hidden.grid, hidden.attention_mask, hidden.extra)

    def end_stage(self, i: int, hidden: Hidden) -> Hidden:
        """Patch merging (stages 1-3): 2x2 tokens -> 1, width doubled."""
        stage = self.encoder.layers[i]
        if stage.downsample is None:
            return hidden
        height, width = hidden.grid
        tokens = stage.downsample(hidden.tokens, (height, width))  # (B, N/4, 2C)
        return Hidden(tokens, ((height + 1) // 2, (width + 1) // 2), hidden.attention_mask, hidden.extra)

    def head(self, hidden: Hidden) -> torch.Tensor:
        """Final LayerNorm, then HTS-AT's regrouping of the folded time chunks into (frequency, time) order."""
        enc = self.encoder
        tokens = enc.norm(hidden.tokens)  # (B, N, C)
        batch, _, channels = tokens.shape
        side = hidden.extra["image_height"] // 2 ** (len(enc.depths) - 1)
        freq, time = side // enc.patch_stride[0], side // enc.patch_stride[1]
        grid = tokens.transpose(1, 2).reshape(batch, channels, freq, time)  # (B, C, F', T')
        # The image stacks freq_ratio time chunks along frequency; put them back side by side along time.
        bins = freq // enc.freq_ratio
        grid = grid.reshape(batch, channels, freq // bins, bins, time).transpose(2, 3)  # (B, C, bins, chunks, T')
        return grid.reshape(batch, channels, freq * time).transpose(1, 2)  # (B, N, C)

    def head_modules(self) -> list[nn.Module]:
        """The final LayerNorm and the projection, if any."""
        return [self.encoder.norm] + ([self.model.audio_projection] if self.proj_dim is not None else [])

    def _layers(self) -> nn.ModuleList:
        return self.encoder.layers


def _use_seed_blocks(encoder: nn.Module) -> None:
    """HTS-AT's block regularisation on ``transformers``' blocks: the MLP output goes through the block's drop-path
    (stochastic depth, the same rate as its attention residual) instead of ``hidden_dropout_prob`` dropout."""
    for stage in encoder.layers:
        for block in stage.blocks:
            block.output.dropout = block.drop_path


class ClapText(Backbone):
    """CLAP text tower (RoBERTa): ``input_ids`` + ``attention_mask`` (B, L) -> tokens (B, L, C); pooled: tanh pooler.

    Args:
        config: ``ClapTextConfig`` fields of the registered size.
        pretrained: ``None`` (random init, no tokenizer), a local folder, or a Hugging Face id in the local cache.
    """

    def __init__(self, config: dict[str, Any], pretrained: str | None = None) -> None:
        # Imported here, not with the module: importing transformers takes seconds.
        from transformers import ClapTextConfig, ClapTextModelWithProjection

        model = load_hf_model(ClapTextModelWithProjection, ClapTextConfig, config, pretrained, _TEXT_FIELDS)
        cfg = model.config
        super().__init__(model, "text", cfg.hidden_size, TextPreprocess(cfg.max_position_embeddings - 2))
        self.proj_dim = cfg.projection_dim
        self.tokenizer = load_tokenizer(pretrained)

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Texts -> ``input_ids`` and ``attention_mask`` ``(B, L)``."""
        return tokenize(self.tokenizer, texts, self.preprocess.max_length, self._device())

    def forward_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, L)`` ids -> ``(B, L, C)``."""
        return self.model.text_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def pool(self, tokens: torch.Tensor, **inputs: Any) -> torch.Tensor:
        """RoBERTa's pooler (dense + tanh on the first token) ``(B, C)``, the input of CLAP's projection."""
        return self.model.text_model.pooler(tokens)

    def project(self, pooled: torch.Tensor) -> torch.Tensor:
        """``(B, C)`` -> ``(B, proj_dim)`` text embedding in CLAP's joint space."""
        return self.model.text_projection(pooled)

    def dummy_inputs(self, batch_size: int = 2) -> dict[str, torch.Tensor]:
        """Random ids, the last row padded after its first half."""
        cfg = self.model.config
        return dummy_text_inputs(batch_size, 8, cfg.vocab_size, cfg.eos_token_id, self._device())

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> Hidden:
        """Word + position embedding (positions skip padding, as RoBERTa); the padding mask for the blocks."""
        from transformers.masking_utils import create_bidirectional_mask

        text = self.model.text_model
        tokens = text.embeddings(input_ids=input_ids)
        mask = create_bidirectional_mask(config=text.config, inputs_embeds=tokens, attention_mask=attention_mask)
        return Hidden(tokens, attention_mask=mask)

    def head(self, hidden: Hidden) -> torch.Tensor:
        """RoBERTa's layers are post-norm: nothing follows the last one."""
        return hidden.tokens

    def head_modules(self) -> list[nn.Module]:
        """The pooler and the projection."""
        return [self.model.text_model.pooler, self.model.text_projection]

    def _layers(self) -> nn.ModuleList:
        return self.model.text_model.encoder.layer


@BACKBONES.register("clap_audio_htsat")
def clap_audio_htsat(pretrained: str | None = None, **overrides: Any) -> HTSAT:
    """CLAP's HTS-AT audio tower, 48 kHz log-mel, 768 wide, 512-d joint space; weights e.g. laion/clap-htsat-unfused."""
    return HTSAT(overrides, _CLAP_FEATURES, pretrained)


@BACKBONES.register("clap_audio_htsat_fused")
def clap_audio_htsat_fused(pretrained: str | None = None, **overrides: Any) -> HTSAT:
    """CLAP's HTS-AT with feature fusion for long clips (4-channel input); weights e.g. laion/clap-htsat-fused."""
    base = {"enable_fusion": True, "fusion_type": "aff_2d"}
    return HTSAT({**base, **overrides}, _CLAP_FEATURES, pretrained)


@BACKBONES.register("htsat_base")
def htsat_base(pretrained: str | None = None, seed_blocks: bool = True, **overrides: Any) -> HTSAT:
    """HTS-AT as in DG-SCT: 32 kHz log-mel, dims 96-768, depths 2-2-6-2, window 8, no projection (28 M); drop-path
    0.1 on both residuals of every block in training and no MLP dropout (``seed_blocks``), as HTS-AT's own code."""
    base = {"drop_path_rate": 0.1}
    return HTSAT({**base, **overrides}, _HTSAT_FEATURES, pretrained, with_projection=False, seed_blocks=seed_blocks)


@BACKBONES.register("clap_text_roberta")
def clap_text_roberta(pretrained: str | None = None, **overrides: Any) -> ClapText:
    """CLAP's RoBERTa-base text tower with its 512-d projection; weights e.g. laion/clap-htsat-unfused."""
    return ClapText(overrides, pretrained)


_TINY_AUDIO = {
    "spec_size": 64,
    "num_mel_bins": 32,
    "window_size": 2,  # transformers' HTS-AT needs the last grid (2x2 here) to be at least one window
    "patch_embeds_hidden_size": 16,
    "depths": [1, 2, 1, 1],
    "num_attention_heads": [1, 2, 2, 4],
    "hidden_size": 128,
    "projection_dim": 16,
}
_TINY_FEATURES = {"sample_rate": 1_600, "n_fft": 256, "hop_length": 160, "win_length": 256}  # 101 frames per 10 s


@BACKBONES.register("htsat_tiny")
def htsat_tiny(pretrained: str | None = None, seed_blocks: bool = False, **overrides: Any) -> HTSAT:
    """Test-size HTS-AT: 32 mel bins folded to 64x64, dims 16-128, no projection (random init); ``transformers``'
    block regularisation unless ``seed_blocks`` (the tiny recipes' learning tests were tuned with it)."""
    return HTSAT({**_TINY_AUDIO, **overrides}, _TINY_FEATURES, pretrained, with_projection=False,
                 seed_blocks=seed_blocks)  # fmt: skip


@BACKBONES.register("clap_audio_fused_tiny")
def clap_audio_fused_tiny(pretrained: str | None = None, **overrides: Any) -> HTSAT:
    """Test-size fused CLAP audio tower: as htsat_tiny, with fusion and a 16-d projection (random init)."""
    fused = {"enable_fusion": True, "fusion_type": "aff_2d"}
    return HTSAT({**_TINY_AUDIO, **fused, **overrides}, _TINY_FEATURES, pretrained)


@BACKBONES.register("clap_text_tiny")
def clap_text_tiny(pretrained: str | None = None, **overrides: Any) -> ClapText:
    """Test-size CLAP text tower: 100-token vocabulary, 2 layers of width 32, 16-d projection (random init)."""
    base = {"vocab_size": 100, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2}
    size = {"intermediate_size": 64, "projection_dim": 16, "max_position_embeddings": 34}
    return ClapText({**base, **size, **overrides}, pretrained)
