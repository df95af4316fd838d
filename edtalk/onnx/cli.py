"""Command-line pieces of the ONNX engine: `edtalk export-onnx` and generate's `--engine` / `--onnx-dir`
(the entry point, edtalk.cli, calls these)."""
from __future__ import annotations

import argparse

EXPORT_DESCRIPTION = """\
Export the networks of a checkpoint folder to ONNX (torch's dynamo exporter, float32, dynamic batch):
the generator (encoder, motion heads, EEM terms, decoder with its flow warp; full and lip-pose
models), Audio2Lip, and, where the folder has them, the audio-to-pose flow (one sampling step) and
audio2exp. The expression presets are copied. `edtalk generate --engine onnx --onnx-dir OUT` runs
them with onnxruntime. The opset and versions are written to OUT/edtalk_onnx.json."""

EXPORT_EPILOG = """\
examples:
  edtalk export-onnx --checkpoint-dir checkpoints/synthtalk --out onnx/synthtalk
  edtalk generate --engine onnx --onnx-dir onnx/synthtalk --source examples/source.png --audio examples/speech.wav --out results/onnx.mp4
"""


def add_export_onnx_arguments(p: argparse.ArgumentParser) -> None:
    from .export import OPSET

    p.add_argument("--checkpoint-dir", default="checkpoints",
                   help="folder with EDTalk/EDTalk_lip_pose/Audio2Lip (files or saved folders), pose_flow/, "
                        "audio2exp/ and presets/ (default: checkpoints)")
    p.add_argument("--checkpoint", default=None, help="export this generator only (a .pt or saved folder)")
    p.add_argument("--audio2lip-checkpoint", default=None, help="Audio2Lip to export (default: the folder's)")
    p.add_argument("--out", required=True, help="the export folder (new, empty, or an earlier export: replaced)")
    p.add_argument("--opset", type=int, default=OPSET, help=f"ONNX opset (default {OPSET})")
    p.add_argument("--quiet", action="store_true", help="print only the result")


def export_onnx_command(args) -> int:
    from .export import export_onnx

    metadata = export_onnx(args.checkpoint_dir, args.out, checkpoint=args.checkpoint,
                           audio2lip=args.audio2lip_checkpoint, opset=args.opset,
                           log=(lambda message: None) if args.quiet else print)
    print(f"wrote {args.out}: {', '.join(metadata['models'])} (opset {metadata['opset']})")
    return 0


def add_engine_arguments(group) -> None:
    group.add_argument("--engine", default="torch", choices=["torch", "onnx"],
                       help="run the networks with torch (default) or onnxruntime (needs --onnx-dir)")
    group.add_argument("--onnx-dir", metavar="DIR", default=None,
                       help="--engine onnx: a folder made by `edtalk export-onnx`")
