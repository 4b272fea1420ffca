"""``avlearn convert``: another code base's weight file -> an avlearn backbone folder, or a DG-SCT seed task checkpoint
-> an avlearn run folder (``avlearn.convert``)."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = (
    "convert timm Swin-V2 / Video Swin / HTS-AT / MAE / AudioMAE weights or a DG-SCT seed AVE checkpoint into avlearn"
    " folders"
)
DESCRIPTION = (
    "Maps every tensor of a weight file onto an avlearn model and writes a folder.\n"
    "Backbone formats (config.json + model.safetensors, which backbone.pretrained / backbone.visual_pretrained /\n"
    "backbone.audio_pretrained load):\n"
    "  timm_swinv2  timm 0.6 Swin-V2 state dict (e.g. swinv2_large_window12_192_22k) -> swinv2_large_192\n"
    "  video_swin   official Video Swin checkpoint (e.g. swin_base_patch244_window877_kinetics600_22k.pth,\n"
    "               backbone. keys) -> video_swin_b (VALOR-B's vision tower)\n"
    "  video_swin_bare  the same without the backbone. prefix (VALOR's pretrained_weights/videoswin_*.pth)\n"
    "  htsat        HTS-AT Lightning checkpoint (HTSAT_AudioSet_Saved_1.ckpt, sed_model. keys) -> htsat_base\n"
    "  mae_vit      MAE pretraining checkpoint (mae_pretrain_vit_base.pth) -> vit_mae_base (DeepAVFusion's image\n"
    "               tower)\n"
    "  audiomae_vit AudioMAE checkpoint (vitbase_audiomae_as2m.pth) -> vit_mae_audio_base (DeepAVFusion's audio\n"
    "               tower; its patch kernel reads (frequency, time) log-mels: transposed, as the seed uses it)\n"
    "Run formats (config.yaml + checkpoint/, which `avlearn eval` and `avlearn predict` load):\n"
    "  dgsct_ave    DG-SCT's trained AVE model (MMIL_Net, e.g. best_82.18.pt) -> recipe=dgsct_ave_paper with\n"
    "               task.head=cmbs; --classes names the events in the seed's label order; trailing\n"
    "               key=value overrides set the data (data.root=...) or another architecture\n"
    "Classification heads, HTS-AT's fixed STFT/mel matrices, MAE decoders, architecture-derived buffers and modules\n"
    "the seed never uses are dropped; anything else that does not map is an error.\n"
    "Examples: avlearn convert htsat HTSAT_AudioSet_Saved_1.ckpt weights/htsat\n"
    "          avlearn convert dgsct_ave best_82.18.pt runs/dgsct_ave_seed --classes classes.txt data.root=AVE/"
)


# avlearn.convert's formats, here so `avlearn --help` imports no torch
FORMATS = ("audiomae_vit", "dgsct_ave", "htsat", "mae_vit", "timm_swinv2", "video_swin", "video_swin_bare")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("format", choices=FORMATS, help="layout of the source file")
    parser.add_argument("source", help="weight file (.pth, .pt, .ckpt or .safetensors)")
    parser.add_argument("output", help="folder to write")
    parser.add_argument("--backbone", default=None, help="avlearn backbone of that architecture (default: per format)")
    parser.add_argument("--classes", default=None, help="run formats: a file with one class name a line, or a,b,c")
    parser.add_argument("overrides", nargs="*", help="run formats: config overrides (key=value)")


def _class_names(value: str | None) -> list[str]:
    from avlearn.errors import ConfigError

    if not value:
        raise ConfigError("avlearn convert dgsct_ave: --classes is required (a file with one name a line, or a,b,c)")
    path = Path(value).expanduser()
    names = path.read_text(encoding="utf-8").splitlines() if path.is_file() else value.split(",")
    return [n.strip() for n in names if n.strip()]


def run(args: argparse.Namespace) -> int:
    from avlearn.errors import ConfigError

    if args.format == "dgsct_ave":
        from avlearn.engine.trained import convert_dgsct_ave_run

        done = convert_dgsct_ave_run(args.source, args.output, _class_names(args.classes), args.overrides)
        print(f"{args.output}: run folder with {len(done.tensors)} tensors; dropped {len(done.dropped)} (unused seed "
              f"modules, heads of the towers, fixed front end, derived buffers)")  # fmt: skip
        return 0
    if args.classes or args.overrides:
        raise ConfigError(f"avlearn convert {args.format}: --classes and overrides are for run formats (dgsct_ave)")
    from avlearn.convert import convert

    done = convert(args.format, args.source, args.output, args.backbone)
    print(f"{args.output}: {len(done.tensors)} tensors written; dropped {len(done.dropped)} (heads, fixed front end, "
          f"derived buffers)")  # fmt: skip
    return 0
