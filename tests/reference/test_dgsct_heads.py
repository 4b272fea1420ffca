"""DG-SCT's seed heads against avlearn's options, at the paper's widths: the AVE ``TemporalAttention`` + ``CMBS``
(``DG-SCT/AVE/nets/net_trans.py``; 1536-wide visual and 768-wide audio segment embeddings, 28 events) against
``task.head=cmbs``, random weights moved by ``avlearn.convert.convert_dgsct_ave_state_dict``; fp32, eval mode,
10 segments. Compared: the per-segment event score, the clip class logits, the top-k class scores and the gate.
And the AVVP ``MGN_Net`` head (``DG-SCT/AVVP/nets/mgn.py``, ``grouping.py``) against ``task.head=mgn``; the AVQA
``AVQA_Fusion_Net`` head against ``task.head=avst`` and the AVS S4 ``Pred_endecoder`` decoder against
``task.head=tpavi``, both by running the seed's own ``forward`` on stub backbones that pass features through."""

from __future__ import annotations

import re

import oracles
import torch
from oracles import assert_parity, randomise

from avlearn.convert import convert_dgsct_ave_state_dict
from avlearn.tasks.ave import AVEConfig, CMBSHead
from avlearn.tasks.avqa import AVSTSeedHead
from avlearn.tasks.avs import AVSConfig, SeedAVSDecoder
from avlearn.tasks.avvp import AVVPConfig, MGNHead


def test_cmbs_head_matches_the_seed() -> None:
    net_trans = oracles.seed_module("AVE", "nets.net_trans")
    torch.manual_seed(0)  # the seed modules' default initialisation, which randomise perturbs
    seed = torch.nn.ModuleDict({"temporal_attn": net_trans.TemporalAttention(), "CMBS": net_trans.CMBS(None)})
    randomise(seed)
    seed.eval()
    head = CMBSHead(768, 1536, 28, AVEConfig(head="cmbs"), seed=True).eval()
    done = convert_dgsct_ave_state_dict(seed.state_dict())
    head.load_state_dict({k.removeprefix("head."): v for k, v in done.tensors.items()})  # strict: every tensor
    assert all(n.startswith(("CMBS.AVInter", "CMBS.VAInter", "CMBS.audio_norm", "CMBS.video_norm"))
               or "_layer." in n or ".self_attn." in n for n in done.dropped)  # fmt: skip

    generator = torch.Generator().manual_seed(0)
    visual, audio = torch.randn(2, 10, 1536, generator=generator), torch.randn(2, 10, 768, generator=generator)
    with torch.no_grad():
        video_feature, audio_feature, gate = seed["temporal_attn"](visual, audio)  # (S, B, d), (S, B, 1)
        is_event, event, av_score = seed["CMBS"](video_feature, audio_feature)
        ours = head(audio, visual)
    assert_parity(ours["is_event"], is_event[..., 0].transpose(0, 1), "is_event")
    assert_parity(ours["event"], event, "clip class logits")
    assert_parity(ours["av_score"], av_score, "top-k class scores")
    assert_parity(ours["gate"], gate[..., 0].transpose(0, 1), "gate")


# The seed ``MGN_Net`` head's names -> ``task.head=mgn``'s (prefixes; the rest of each name is the same).
_MGN_NAMES = {
    "fc_a.": "audio_in.", "fc_v.": "visual_in.", "audio_token": "audio_tokens", "visual_token": "visual_tokens",
    "audio_cug.": "audio.", "visual_cug.": "visual.", "av_mcg.": "cross_modal.",
    "fc_prob.": "video_prob.", "fc_prob_a.": "audio_prob.", "fc_prob_v.": "visual_prob.", "fc_cls.": "classify_tokens.",
    "temporal_attn.audio_visual_rnn_layer.audio_rnn.": "temporal.audio_rnn.",
    "temporal_attn.audio_encoder.affine_matrix.": "temporal.audio_key.0.",
    "temporal_attn.audio_encoder.encoder.": "temporal.audio_key.1.",
    "temporal_attn.audio_gated.0.": "temporal.audio_gate.",
}  # fmt: skip
_MGN_UNUSED = (
    "temporal_attn.audio_visual_rnn_layer.visual_rnn.", "temporal_attn.video_encoder.", "temporal_attn.video_gated.",
    "temporal_attn.audio_encoder.encoder_layer.", "fc_st.", "fc_fusion.",
)  # fmt: skip


def _mgn_state(seed: torch.nn.Module, dim: int) -> dict[str, torch.Tensor]:
    """The seed head's tensors under ``MGNHead`` names; ``fc_fusion([v; fc_st(0)])`` folds into
    ``visual_fuse`` (its 2D half, the 3D half times ``fc_st``'s bias added to the bias)."""
    state, out = seed.state_dict(), {}
    for name, tensor in state.items():
        prefix = [p for p in _MGN_NAMES if name.startswith(p)]
        assert prefix or name.startswith(_MGN_UNUSED), name
        if prefix:
            out[_MGN_NAMES[prefix[0]] + name[len(prefix[0]) :]] = tensor
    fusion = state["fc_fusion.weight"]  # (dim, 2 dim)
    out["visual_fuse.weight"] = fusion[:, :dim]
    out["visual_fuse.bias"] = state["fc_fusion.bias"] + fusion[:, dim:] @ state["fc_st.bias"]
    return out


def _seed_mgn(grouping: object, mgn: object, dim: int) -> torch.nn.Module:
    """The seed ``MGN_Net``'s head modules under its own names (``train.sh``: depths 3/3/6, soft assignment)."""
    shell = torch.nn.Module()
    shell.fc_a, shell.fc_v = torch.nn.Linear(768, dim), torch.nn.Linear(1536, dim)
    shell.fc_st, shell.fc_fusion = torch.nn.Linear(512, dim), torch.nn.Linear(2 * dim, dim)
    shell.audio_token = torch.nn.Parameter(torch.zeros(25, dim))
    shell.visual_token = torch.nn.Parameter(torch.zeros(25, dim))
    common = {"num_heads": 8, "qkv_bias": True, "drop_path": 0.1, "out_dim_grouping": dim, "num_heads_grouping": 8,
              "num_group_tokens": 25, "num_output_groups": 25, "hard_assignment": False}  # fmt: skip
    shell.audio_cug = grouping.ModalityTrans(dim, depth=3, use_han=True, **common)
    shell.visual_cug = grouping.ModalityTrans(dim, depth=3, use_han=False, **common)
    shell.av_mcg = grouping.ModalityTrans(dim, depth=6, use_han=False, **common)
    shell.fc_prob, shell.fc_prob_a, shell.fc_prob_v = (torch.nn.Linear(dim, 1) for _ in range(3))
    shell.fc_cls = torch.nn.Linear(dim, 25)
    shell.temporal_attn = mgn.TemporalAttention()
    return shell


def _seed_mgn_forward(seed: torch.nn.Module, audio: torch.Tensor, visual: torch.Tensor) -> dict[str, torch.Tensor]:
    """``MGN_Net.forward`` after the backbones (the seed's lines from ``fc_a`` on), with a zero R(2+1)D input."""
    audio_0 = seed.fc_a(audio)  # (B, S, dim)
    visual_2d, _ = seed.temporal_attn(seed.fc_v(visual), audio_0)  # the seed discards the gated audio
    visual_3d = seed.fc_st(visual.new_zeros(*visual.shape[:2], 512))
    visual_0 = seed.fc_fusion(torch.cat([visual_2d, visual_3d], dim=-1))
    visual_g, visual_attn, _ = seed.visual_cug(visual_0, seed.visual_token, return_attn=True)
    audio_g, audio_attn, _ = seed.audio_cug(audio_0, seed.audio_token, visual_0, return_attn=True)
    joint, _, _ = seed.av_mcg(audio_g, visual_g, return_attn=True)
    audio_prob, visual_prob = seed.fc_prob_a(audio_g).sigmoid(), seed.fc_prob_v(visual_g).sigmoid()  # (B, 25, 1)
    return {
        "video": seed.fc_prob(joint).sigmoid().sum(dim=-1),
        "audio": audio_prob.sum(dim=-1),
        "visual": visual_prob.sum(dim=-1),
        "audio_segments": audio_prob * audio_attn["soft"].squeeze(1),  # (B, 25, S); the seed then permutes
        "visual_segments": visual_prob * visual_attn["soft"].squeeze(1),
        "audio_tokens": seed.fc_cls(seed.audio_token),
        "visual_tokens": seed.fc_cls(seed.visual_token),
    }


def test_mgn_head_matches_the_seed() -> None:
    """The seed AVVP head (``DG-SCT/AVVP/nets/mgn.py`` ``MGN_Net`` after the backbones, ``grouping.py``) against
    ``task.head=mgn`` at the seed's widths (768 / 1536 inputs, dim 128, 25 classes, 10 segments), random
    weights moved by the prefix map above; eval mode, float64: in float32 the seed's own result is 4.4e-5 / 9.5e-5
    (video / visual probability) of the scale from its float64 one with these random weights, so float32 cannot
    tell a mapping error from rounding (docs/methods/dgsct.md)."""
    grouping, mgn = oracles.seed_module("AVVP", "nets.grouping"), oracles.seed_module("AVVP", "nets.mgn")
    torch.manual_seed(0)
    seed = _seed_mgn(grouping, mgn, 128)
    randomise(seed)
    seed.eval().double()
    head = MGNHead(768, 1536, 25, AVVPConfig(head="mgn")).eval().double()
    head.load_state_dict(_mgn_state(seed, 128))  # strict: every tensor

    generator = torch.Generator().manual_seed(0)
    audio = torch.randn(2, 10, 768, generator=generator, dtype=torch.float64)
    visual = torch.randn(2, 10, 1536, generator=generator, dtype=torch.float64)
    with torch.no_grad():
        expected, ours = _seed_mgn_forward(seed, audio, visual), head(audio, visual)
    assert set(ours) == set(expected)
    for key, value in expected.items():
        assert_parity(ours[key], value, key)


# The seed ``AVQA_Fusion_Net`` head's names -> ``task.head=avst``'s (prefixes; the rest of each name is the same).
_AVST_NAMES = {
    "fc_a1.": "audio.0.", "fc_a2.": "audio.2.", "fc_gl.": "fc_gl.",
    "fc1.": "match.0.", "fc2.": "match.2.", "fc3.": "match.4.", "fc4.": "match.6.",
    "question_encoder.word2vec.": "question.embed.", "question_encoder.lstm.": "question.lstm.",
    "question_encoder.fc.": "question.out.",
    "attn_v.": "attend_visual.attn.", "linear11.": "attend_visual.ffn.0.", "linear12.": "attend_visual.ffn.3.",
    "norm1.": "attend_visual.norm.",
    "attn_a.": "attend_audio.attn.", "linear21.": "attend_audio.ffn.0.", "linear22.": "attend_audio.ffn.3.",
    "norm2.": "attend_audio.norm.",
    "fc_fusion.": "fusion.", "fc_ans.": "answer.",
}  # fmt: skip
_AVST_HEAD = {  # the seed's head modules at its sizes (``net_avst.py`` ``AVQA_Fusion_Net.__init__``)
    "fc_a1": (768, 1536), "fc_a2": (1536, 1536), "fc_gl": (3072, 1536), "fc1": (3072, 512), "fc2": (512, 256),
    "fc3": (256, 128), "fc4": (128, 2), "linear11": (1536, 1536), "linear12": (1536, 1536),
    "linear21": (1536, 1536), "linear22": (1536, 1536), "fc_fusion": (3072, 1536), "fc_ans": (1536, 42),
}  # fmt: skip


class _Call(torch.nn.Module):
    """A stub sub-module of the seed's backbones: ``fn`` as its forward."""

    def __init__(self, fn, **attributes: object) -> None:  # noqa: ANN001
        super().__init__()
        self.fn = fn
        self.__dict__.update(attributes)

    def forward(self, *args: torch.Tensor) -> object:
        return self.fn(*args)


def _tokens(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(2).transpose(1, 2)  # (B', C, H, W) -> (B', H*W, C)


def _seed_avst(net_avst: object) -> torch.nn.Module:
    """The seed's ``AVQA_Fusion_Net`` with its own head modules and its backbones replaced by stubs that hand the
    given features through: Swin's patch embedding and ``forward_features`` turn the (B*T, C, 6, 6) maps into
    tokens, one block pair whose attention/MLP add 0 and whose adapters add 0 and pool the one audio token; HTS-AT's
    front end turns each (768,) "waveform" row into that one token. So the seed's own ``forward`` runs its head on
    pooled audio (B, T, 768) and visual maps (B, T, 1536, 6, 6), positive and negative."""
    seed = object.__new__(net_avst.AVQA_Fusion_Net)
    torch.nn.Module.__init__(seed)
    for name, (n_in, n_out) in _AVST_HEAD.items():
        setattr(seed, name, torch.nn.Linear(n_in, n_out))
    seed.norm1, seed.norm2 = torch.nn.LayerNorm(1536), torch.nn.LayerNorm(1536)
    seed.dropout1, seed.dropout2, seed.dropout3, seed.dropout4 = (torch.nn.Dropout(0.1) for _ in range(4))
    seed.attn_a, seed.attn_v = torch.nn.MultiheadAttention(1536, 4, 0.1), torch.nn.MultiheadAttention(1536, 4, 0.1)
    seed.question_encoder = net_avst.QstEncoder(93, 1536, 1536, 1, 1536)
    seed.tanh, seed.avgpool = torch.nn.Tanh(), torch.nn.AdaptiveAvgPool2d((1, 1))
    zero, identity = _Call(torch.zeros_like), torch.nn.Identity()
    block = _Call(torch.zeros_like, _attn=zero, mlp=zero, norm1=identity, norm2=identity, drop_path1=identity,
                  drop_path2=identity)  # fmt: skip
    seed.swin = _Call(_tokens, patch_embed=_Call(_tokens), forward_features=_tokens, norm=identity,
                      layers=[_Call(None, blocks=[block], downsample=identity)])  # fmt: skip
    seed.htsat = _Call(None, spectrogram_extractor=identity, logmel_extractor=_Call(lambda a: a[:, None, :, None]),
                       bn0=identity, training=False, freq_ratio=10**9, spec_size=1, reshape_wav2img=identity,
                       patch_embed=_Call(lambda a: a.flatten(1)[:, None]), ape=False, pos_drop=identity,
                       layers=[_Call(None, blocks=[_Call(lambda a: (a, None))], downsample=None)])  # fmt: skip
    adapter = _Call(lambda x, _: (torch.zeros_like(x), x.new_ones(x.shape[0], 1, 1)))  # residual 0; pool token 0
    seed.audio_adapter_blocks_p1 = seed.audio_adapter_blocks_p2 = [adapter]
    seed.vis_adapter_blocks_p1 = seed.vis_adapter_blocks_p2 = [adapter]
    return seed


def _avst_state(seed: torch.nn.Module) -> dict[str, torch.Tensor]:
    out = {}
    for name, tensor in seed.state_dict().items():
        prefix = [p for p in _AVST_NAMES if name.startswith(p)]
        assert prefix, name
        out[_AVST_NAMES[prefix[0]] + name[len(prefix[0]) :]] = tensor
    return out


def test_avst_head_matches_the_seed() -> None:
    """The seed's AVST head (``DG-SCT/AVQA/net_grd_avst/net_avst.py`` ``AVQA_Fusion_Net.forward``, run on stubbed
    backbones that pass the features through) against ``task.head=avst`` at the seed's widths (768 audio,
    1536 visual on a 6x6 grid, 10 segments, 93 words, 42 answers), random weights moved by the prefix map above,
    eval mode, float32: answer logits and the positive and negative match logits."""
    net_avst = oracles.seed_module("AVQA/net_grd_avst", "net_avst")
    torch.manual_seed(0)
    seed = _seed_avst(net_avst)
    randomise(seed)
    seed.eval()
    head = AVSTSeedHead(768, 1536, 93, 42, heads=4, dropout=0.1).eval()
    head.load_state_dict(_avst_state(seed))  # strict: every tensor

    generator = torch.Generator().manual_seed(0)
    audio = torch.randn(3, 10, 768, generator=generator)
    positive, negative = (torch.randn(3, 10, 1536, 6, 6, generator=generator) for _ in range(2))
    question = torch.randint(0, 93, (3, 14), generator=generator)  # the seed's 14 words, no padding
    with torch.no_grad():
        logits, match_positive, match_negative = seed(audio, positive, negative, question, None)
        tokens = lambda maps: maps.flatten(3).transpose(2, 3)  # noqa: E731  (B, T, C, 6, 6) -> (B, T, 36, C)
        audio_ours, grounded = head.encode(audio, tokens(positive))  # (B, T, 1536) each
        ours = head(head.question(question, torch.ones_like(question)), audio_ours, grounded)
        grounded_negative = head.ground(tokens(negative).flatten(0, 1), audio_ours.flatten(0, 1))  # (B*T, 1536)
        pairs = (torch.cat([audio_ours.flatten(0, 1), v], dim=-1) for v in (grounded.flatten(0, 1), grounded_negative))
        match = [head.match(pair) for pair in pairs]  # positive, negative: (B*T, 2) each
    assert_parity(ours["logits"], logits, "answer logits")
    assert_parity(match[0], match_positive, "positive match logits")
    assert_parity(match[1], match_negative, "negative match logits")


# The seed ``Pred_endecoder`` head's names -> ``task.head=tpavi``'s decoder (regular expressions, in order).
_AVS_NAMES = (
    (r"x(\d)_linear_\.", lambda m: f"project.{int(m[1]) - 1}."),
    (r"tpavi_b(\d)\.", lambda m: f"tpavi.{int(m[1]) - 1}."),
    (r"path(\d)\.resConfUnit(\d)\.conv(\d)\.",
     lambda m: f"fusion.{int(m[1]) - 1}.{'skip' if m[2] == '1' else 'out'}.body.{2 * int(m[3]) - 1}."),
    (r"temporal_attn\.v_fc\.(\d)\.", r"gates.\1.visual_in.0."),
    (r"temporal_attn\.audio_visual_rnn_layer\.(\d)\.(audio|visual)_rnn\.", r"gates.\1.\2_rnn."),
    (r"temporal_attn\.audio_encoder\.(\d)\.affine_matrix\.", r"gates.\1.audio_key.0."),
    (r"temporal_attn\.audio_encoder\.(\d)\.encoder\.", r"gates.\1.audio_key.1."),
    (r"temporal_attn\.video_encoder\.(\d)\.affine_matrix\.", r"gates.\1.visual_key.0."),
    (r"temporal_attn\.video_encoder\.(\d)\.encoder\.", r"gates.\1.visual_key.1."),
    (r"temporal_attn\.audio_gated\.(\d)\.0\.", r"gates.\1.audio_gate."),
    (r"temporal_attn\.video_gated\.(\d)\.0\.", r"gates.\1.visual_gate."),
    (r"align_channel\.", "align."), (r"norm_layer\.", "norm."), (r"W_z\.", "w_z."),
    (r"audio_linear\.", "audio_in."), (r"output_conv\.", "head."),
)  # fmt: skip
# Built by the seed, never in its forward: the temporal decoders, the encoders' layer templates, path4's skip unit.
_AVS_UNUSED = r"temporal_attn\.(audio|video)_decoder\.|.*\.encoder_layer\.|path4\.resConfUnit1\."


def _avs_seed_state(seed: torch.nn.Module) -> dict[str, torch.Tensor]:
    out = {}
    for name, tensor in seed.state_dict().items():
        if re.match(_AVS_UNUSED, name):
            continue
        for pattern, replacement in _AVS_NAMES:
            name = re.sub(pattern, replacement, name)
        out[name] = tensor
    return out


_SWIN_STAGES = ((2304, 192), (576, 384), (144, 768), (36, 1536))  # Swin-V2-L at 192 px: tokens, width per stage


def _seed_avs(model: object, stages: list[torch.Tensor]) -> torch.nn.Module:
    """The seed's S4 ``Pred_endecoder`` with its own head modules (channel 256, TPAVI at stages 0-3) and stub
    backbones: Swin's patch embedding and patch mergings hand out the given stage tokens (B*T, N_i, C_i), one block
    per stage adds 0, the adapters add 0 and pool the one audio token, HTS-AT's front end turns each (768,) row of
    the "waveform" into that token. So the seed's own ``forward`` runs its decoder on those stage tokens and on
    pooled audio (B, T, 768)."""
    seed = object.__new__(model.Pred_endecoder)
    torch.nn.Module.__init__(seed)
    seed.tpavi_stages, seed.tpavi_vv_flag, seed.tpavi_va_flag = [0, 1, 2, 3], False, True
    for i, (_, width) in enumerate(_SWIN_STAGES):
        setattr(seed, f"x{i + 1}_linear_", torch.nn.Linear(width, 256))
        setattr(seed, f"tpavi_b{i + 1}", model.TPAVIModule(in_channels=256, mode="dot"))
        setattr(seed, f"path{i + 1}", model.FeatureFusionBlock(256))
    seed.audio_linear, seed.temporal_attn = torch.nn.Linear(768, 128), model.TemporalAttention()
    seed.output_conv = torch.nn.Sequential(
        torch.nn.Conv2d(256, 128, 3, padding=1), model.Interpolate(scale_factor=2, mode="bilinear"),
        torch.nn.Conv2d(128, 32, 3, padding=1), torch.nn.ReLU(True), torch.nn.Conv2d(32, 1, 1),
    )  # fmt: skip
    zero, identity = _Call(torch.zeros_like), torch.nn.Identity()
    block = _Call(torch.zeros_like, _attn=zero, mlp=zero, norm1=identity, norm2=identity, drop_path1=identity,
                  drop_path2=identity)  # fmt: skip
    merge = [_Call(lambda _, s=s: s) for s in stages[1:]] + [identity]  # stage i's merging hands out stage i+1
    layers = [_Call(None, blocks=[block], downsample=m) for m in merge]
    seed.swin = _Call(None, patch_embed=_Call(lambda _: stages[0]), norm=identity, layers=layers)
    audio_layers = [_Call(None, blocks=[_Call(lambda a: (a, None))], downsample=None) for _ in stages]
    seed.htsat = _Call(None, spectrogram_extractor=identity, logmel_extractor=_Call(lambda a: a[:, None, :, None]),
                       bn0=identity, training=False, freq_ratio=10**9, spec_size=1, reshape_wav2img=identity,
                       patch_embed=_Call(lambda a: a.flatten(1)[:, None]), ape=False, pos_drop=identity,
                       layers=audio_layers)  # fmt: skip
    adapter = _Call(lambda x, _: (torch.zeros_like(x), x.new_ones(x.shape[0], 1, 1)))  # residual 0; pool token 0
    seed.audio_adapter_blocks_p1 = seed.audio_adapter_blocks_p2 = [adapter] * 4
    seed.vis_adapter_blocks_p1 = seed.vis_adapter_blocks_p2 = [adapter] * 4
    return seed


def test_tpavi_decoder_matches_the_seed(monkeypatch) -> None:  # noqa: ANN001
    """The seed's AVS S4 decoder (``DG-SCT/AVS/avs_scripts/avs_s4/model/PVT_AVSModel.py`` ``Pred_endecoder.forward``
    after the backbones, ``TPAVI.py``), run on stubbed backbones, against ``task.head=tpavi``'s decoder at the
    seed's sizes (Swin-V2-L stage tokens at 192 px, 768-wide audio, channel 256, 224 px masks, 5 frames), random
    weights moved by the name map above, eval mode, float32: mask logits, the stage maps it returns (the KL term's
    input) and TPAVI's audio features. One clip: TPAVI's first stage forms a 15680^2 affinity (1 GB)."""
    model = oracles.seed_module("AVS/avs_scripts/avs_s4", "model.PVT_AVSModel")
    monkeypatch.setattr(torch.Tensor, "cuda", lambda self, *_, **__: self)  # the seed's ``zeros_like(...).cuda()``
    generator = torch.Generator().manual_seed(0)
    stages = [torch.randn(5, n, c, generator=generator) for n, c in _SWIN_STAGES]  # (B*T, N_i, C_i)
    audio = torch.randn(1, 5, 768, generator=generator)
    torch.manual_seed(0)
    seed = _seed_avs(model, stages)
    randomise(seed)
    seed.eval()
    decoder = SeedAVSDecoder(tuple(c for _, c in _SWIN_STAGES), 768, AVSConfig(head="tpavi", dim=256)).eval()
    decoder.load_state_dict(_avs_seed_state(seed))  # strict: every tensor

    pyramid = [t.unflatten(1, (int(t.shape[1] ** 0.5),) * 2).movedim(-1, 1) for t in stages]  # (B*T, C_i, h, w)
    with torch.no_grad():
        logits, maps, audio_feats = seed(torch.zeros(1, 5, 3, 8, 8), audio)
        ours, our_maps, our_audio = decoder(pyramid, audio, (224, 224), torch.arange(5))
    assert_parity(ours, logits[:, 0], "mask logits")
    for i in range(4):
        assert_parity(our_maps[i], maps[i], f"stage {i} map")
        assert_parity(our_audio[i], audio_feats[i].flatten(0, 1), f"stage {i} TPAVI audio")
