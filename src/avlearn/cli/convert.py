"""``avlearn convert``: another code base's weight file -> an avlearn backbone folder (``avlearn.convert``)."""

from __future__ import annotations

import argparse

HELP = "convert timm Swin-V2 or original HTS-AT weights into an avlearn backbone folder"
DESCRIPTION = (
    "Maps every tensor of a weight file onto an avlearn backbone and writes a folder (config.json +\n"
    "model.safetensors) that backbone.pretrained / backbone.visual_pretrained / backbone.audio_pretrained load.\n"
    "Formats:\n"
    "  timm_swinv2  timm 0.6 Swin-V2 state dict (e.g. swinv2_large_window12_192_22k) -> swinv2_large_192\n"
    "  htsat        HTS-AT Lightning checkpoint (HTSAT_AudioSet_Saved_1.ckpt, sed_model. keys) -> htsat_base\n"
    "Classification heads, HTS-AT's fixed STFT/mel matrices and architecture-derived buffers are dropped;\n"
    "anything else that does not map is an error.\n"
    "Example: avlearn convert htsat HTSAT_AudioSet_Saved_1.ckpt weights/htsat"
)


FORMATS = ("htsat", "timm_swinv2")  # avlearn.convert.FORMATS, listed here so that `avlearn --help` imports no torch


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("format", choices=FORMATS, help="layout of the source file")
    parser.add_argument("source", help="weight file (.pth, .ckpt or .safetensors)")
    parser.add_argument("output", help="folder to write")
    parser.add_argument("--backbone", default=None, help="avlearn backbone of that architecture (default: per format)")


def run(args: argparse.Namespace) -> int:
    from avlearn.convert import convert

    done = convert(args.format, args.source, args.output, args.backbone)
    print(f"{args.output}: {len(done.tensors)} tensors written; dropped {len(done.dropped)} (heads, fixed front end, "
          f"derived buffers)")  # fmt: skip
    return 0
