"""`edtalk` command line: argument parsing and wiring only (the work lives in edtalk.pipelines)."""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import List, Optional

from .errors import EDTalkError, InputError, exit_code_of

GENERATE_EPILOG = """\
modes (picked from what you give):
  audio-driven   --source face.png --audio speech.wav [--pose pose.mp4|fixed] [--exp happy|exp.mp4|none]
  video-driven   --source face.png --lip talking.mp4 [--pose pose.mp4] [--exp exp.mp4|happy]
  dubbing        --source talking_head.mp4 --audio new_speech.wav      (new lips on an existing video)
  lip + pose     --source face.png --lip lip.mp4 --pose pose.mp4 --exp none --checkpoint checkpoints/EDTalk_lip_pose.pt

expression (--exp):
  a preset: angry contempt disgusted fear happy neutral sad surprised (scaled by --exp-intensity),
  a blend: "happy:0.7+surprised:0.3", a video or image of a face, an .npy of weights [10]/[T,10],
  or none (keep the source's expression; uses EDTalk_lip_pose.pt when it is in --checkpoint-dir).
  predicted: --exp audio (from the speech) and/or --exp-text "I am so happy" (needs an audio2exp export).
pose from speech: --pose audio [--pose-temperature 0.7 --seed 0] (needs a pose_flow export).

length: audio modes give duration x 25 frames; video-driven gives the mouth video's frame count.
Shorter pose/expression drivers are extended by ping-pong (forward, then backward, ...).
Video inputs are resampled to 25 fps by their timestamps; photos and videos are turned upright
(EXIF orientation, rotation metadata). The output keeps the driving sound's own quality.
examples:
  edtalk generate --source examples/source.png --audio examples/speech.wav --pose examples/pose.mp4 --exp happy --out results/happy.mp4
"""


def _add_generate_args(p: argparse.ArgumentParser, batch: bool = False) -> None:
    """generate's flags; `batch`: the same flags as defaults for every job of `edtalk batch` (none required)."""
    io = p.add_argument_group("job defaults (any generate flag; a job's own values win)" if batch
                              else "inputs and output")
    io.add_argument("--source", required=not batch, help="identity: a face image (or a video, for dubbing)")
    io.add_argument("--lip", help="video whose mouth motion drives the lips (video-driven mode)")
    io.add_argument("--audio", help="speech that drives the lips (any format ffmpeg reads); also the output's sound, "
                    "kept at its own sample rate and channels")
    io.add_argument("--pose", default="fixed", help="video driving head pose, 'fixed' (the source's pose; default), "
                    "or 'audio' (sampled from the speech by the audio-to-pose flow); not in dubbing, where each "
                    "source frame gives the pose")
    io.add_argument("--pose-temperature", type=float, default=0.7,
                    help="--pose audio: sampling temperature (default 0.7; 0 = the most likely path)")
    io.add_argument("--seed", type=int, default=0, help="--pose audio: sampling seed (default 0)")
    io.add_argument("--exp", default=None, help="expression: preset name, blend, video/image, .npy, 'audio' "
                    "(predicted from the speech), or none (default)")
    io.add_argument("--exp-text", metavar="SENTENCE", default=None,
                    help="predict the expression from what is said (offline emotion lexicon); with --exp audio "
                         "both the speech and the text are used")
    io.add_argument("--exp-intensity", type=float, default=1.0,
                    help="preset strength: 0 = neutral, 1 = the preset (default), >1 exaggerates")
    io.add_argument("--presets", metavar="DIR", default=None,
                    help="take --exp presets from DIR/<name>.npy (e.g. from `edtalk make-presets`; default: the "
                         "presets/ folder beside the generator, e.g. checkpoints/synthtalk/presets, else "
                         "$EDTALK_PRESETS, else the official presets)")
    io.add_argument("--out", default=None if batch else "results/edtalk.mp4",
                    help="output MP4 (default: results/edtalk.mp4); - streams a fragmented MP4 to stdout "
                         "(e.g. | ffplay -)")
    io.add_argument("--save-frames", metavar="DIR", help="also write every frame as PNG into DIR")

    mdl = p.add_argument_group("checkpoints")
    mdl.add_argument("--checkpoint", help="generator: EDTalk.pt / EDTalk_lip_pose.pt or a saved edtalk model folder")
    mdl.add_argument("--audio2lip-checkpoint", help="Audio2Lip.pt (default: <checkpoint-dir>/Audio2Lip.pt)")
    mdl.add_argument("--checkpoint-dir", default="checkpoints", help="where default checkpoints live (default: checkpoints)")
    mdl.add_argument("--pose-flow-checkpoint", help="--pose audio: a pose_flow export (default: <checkpoint-dir>/pose_flow)")
    mdl.add_argument("--exp-predictor-checkpoint",
                     help="--exp audio / --exp-text: an audio2exp export (default: <checkpoint-dir>/audio2exp)")

    pre = p.add_argument_group("preprocessing")
    pre.add_argument("--no-crop", dest="crop", action="store_false",
                     help="inputs are already aligned 256x256 face crops: skip face detection")
    pre.add_argument("--paste-back", action="store_true", help="paste the generated face back into the full frame")
    pre.add_argument("--face-backend", default="dlib", choices=["dlib", "face_alignment", "mediapipe"],
                     help="face detector + 68-point landmarks (default: dlib, ships its weights)")
    pre.add_argument("--face-sr", action="store_true",
                     help="restore the faces with GFPGAN, x2 (256 -> 512); needs pip install 'edtalk[face-sr]'")
    pre.add_argument("--face-sr-weights", metavar="FILE",
                     help="local GFPGAN weights, e.g. GFPGANv1.4.pth (default: $EDTALK_GFPGAN_WEIGHTS; never downloaded)")

    run = p.add_argument_group("execution")
    run.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    run.add_argument("--dtype", default="fp32", choices=["fp32", "fp16", "bf16"], help="fp16/bf16 for GPUs (default fp32)")
    run.add_argument("--batch-size", type=int, default=None,
                     help="frames rendered per batch (default: 2 on CPU, where it measured fastest; 8 on GPU)")
    run.add_argument("--smoothing", default="edge", choices=["edge", "official", "none"],
                     help="temporal smoothing of audio mouth weights: edge-padded (default), official zero-padded, none")
    run.add_argument("--legacy-normalize", action="store_true",
                     help="official per-clip min-max pixel mapping instead of clamping (contrast varies by clip)")
    run.add_argument("--parity", action="store_true",
                     help="official per-demo behaviour: zero-padded smoothing; EDTalk-A/V hold the pose video's "
                          "last frame (lip-pose and dubbing ping-pong)")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_engine_args(run)


def _add_engine_args(group) -> None:
    group.add_argument("--engine", default="torch", choices=["torch", "onnx"],
                       help="run the networks with torch (default) or onnxruntime (needs --onnx-dir)")
    group.add_argument("--onnx-dir", metavar="DIR", default=None,
                       help="--engine onnx: a folder made by `edtalk export-onnx`")


BATCH_EPILOG = """\
JOBS.jsonl, one job a line (generate's option names, with - or _; relative paths are relative to the file):
  {"source": "faces/ann.png", "audio": "speech/1.wav", "exp": "happy", "out": "out/ann_1.mp4"}
  {"source": "faces/bob.png", "lip": "talk.mp4", "pose": "pose.mp4", "no_crop": true, "out": "out/bob.mp4"}
Flags after JOBS.jsonl are defaults for every job (relative to the working folder), e.g.
  edtalk batch jobs.jsonl --checkpoint-dir checkpoints/synthtalk --no-crop --exp-intensity 1.2
A job whose "out" exists is skipped, so running it again resumes. A failed job is one line on stderr and
the list goes on; a summary comes last; the exit code is 1 if any job failed.
Many processes, one or many machines (each job runs once, on rank = job index mod world size):
  torchrun --nproc_per_node 4 -m edtalk batch jobs.jsonl
  torchrun --nnodes 2 --node_rank R --master_addr HOST --nproc_per_node 8 -m edtalk batch jobs.jsonl
"""

EVALUATE_EPILOG = """\
  edtalk evaluate --pred results/pred --gt data/mead --out results/eval        (gt: a layout tree or a folder of videos)
  edtalk evaluate --checkpoint checkpoints/EDTalk.pt --data data/mead --split test --mode video --out results/eval
metric networks are local files (flag or environment variable); a missing one skips its metric with the reason
in the table. A value marked with a dagger differs from its reference in the steps its footnote names
(--protocol eat reproduces the reference inputs); see docs/evaluation.md.
"""


def _add_evaluate_args(p: argparse.ArgumentParser) -> None:
    from .eval.metrics.registry import WEIGHT_SOURCES
    from .eval.protocol import PROTOCOL_CHOICES

    io = p.add_argument_group("videos")
    io.add_argument("--pred", metavar="DIR", help="generated videos, named like their ground truth (<name>.mp4)")
    io.add_argument("--gt", metavar="DIR", help="ground truth: a folder of videos or a MEAD/HDTF layout tree")
    io.add_argument("--out", default="results/eval", help="report folder (default: results/eval)")
    io.add_argument("--label", help="name of this run's row in the table")
    io.add_argument("--clip-list", metavar="FILE",
                    help="evaluate exactly these clips: names one a line, a JSON list, or EAT's .npy "
                         "(rand_sample_ours_mead100.npy; EAT names are converted)")
    gen = p.add_argument_group("generate a layout split first")
    gen.add_argument("--checkpoint", help="generator (EDTalk.pt / EDTalk_lip_pose.pt / saved folder)")
    gen.add_argument("--audio2lip-checkpoint", help="Audio2Lip for --mode audio (default: beside --checkpoint)")
    gen.add_argument("--data", metavar="TREE", help="MEAD/HDTF layout tree whose split is generated and evaluated")
    gen.add_argument("--split", default="test", help="split list of the tree (--data, or --gt as a tree; default: test)")
    gen.add_argument("--mode", default="video", choices=["video", "audio"],
                     help="EDTalk-V: the clip drives the mouth (default); EDTalk-A: its audio does")
    gen.add_argument("--limit", type=int, help="only the first N clips of the split")
    met = p.add_argument_group("protocol and metric networks (local files; never downloaded)")
    met.add_argument("--protocol", default="auto", choices=PROTOCOL_CHOICES,
                     help="eat: each metric's reference inputs (EAT's 128² crops, 5 FID frames a clip, face chips, "
                          "syncnet_python LSE); native: full frames as generated; auto (default): eat for "
                          "MEAD/HDTF names, native otherwise")
    for w in WEIGHT_SOURCES.values():
        met.add_argument(w.flag, dest=f"weights_{w.name}", metavar="PATH", help=f"{w.what} [env {w.env}]")
    met.add_argument("--metrics", help="comma-separated subset, e.g. psnr,ssim,m_lmd (default: all)")
    met.add_argument("--max-offset", type=int, default=15, help="SyncNet offsets searched, ± frames (default 15)")
    met.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    met.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_extract_motion_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="EDTalk .pt / EDTalk_lip_pose.pt or a saved model folder")
    p.add_argument("--data", required=True, help="layout tree (MEAD or HDTF style)")
    p.add_argument("--parts", default=None,
                   help="comma list of mouth,pose,exp (default: all the model has; exp needs EDTalk)")
    p.add_argument("--split", default="all", help="train, test or all (default)")
    p.add_argument("--batch-size", type=int, default=32, help="frames per forward pass (default 32)")
    p.add_argument("--overwrite", action="store_true", help="recompute clips that already have files")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_make_presets_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="EDTalk (full) .pt or saved model folder (for the α_e cache)")
    p.add_argument("--data", required=True, help="MEAD-style tree")
    p.add_argument("--levels", default="3", help="levels of the emotional clips: 3 (default), a list like 2,3, or all")
    p.add_argument("--split", default="train", help="split to average (default train)")
    p.add_argument("--out", required=True, help="folder for <emotion>.npy and presets.json")
    p.add_argument("--batch-size", type=int, default=32, help="frames per forward pass when extracting")
    p.add_argument("--overwrite", action="store_true", help="re-extract α_e even where the cache has it "
                   "(use after changing the checkpoint)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_synthtalk_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="output folder (trees go to OUT/mead and OUT/hdtf)")
    p.add_argument("--kind", choices=("mead", "hdtf", "both"), default="both")
    p.add_argument("--size", type=int, default=64, help="frame size in pixels (256 = training size; default 64)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--speakers", type=int, default=2, help="MEAD speakers (default 2: 1 train, 1 test)")
    p.add_argument("--emotions", default="all", help="comma list of MEAD emotions or 'all'")
    p.add_argument("--levels", default="1,2,3", help="comma list of intensity levels (default 1,2,3)")
    p.add_argument("--clips-per", type=int, default=1, help="clips per speaker × emotion × level")
    p.add_argument("--frames", default="32", help="MEAD clip length: N or LO-HI frames (default 32)")
    p.add_argument("--neutral-levels", action="store_true", help="neutral at every level (MEAD has level 1 only)")
    p.add_argument("--pose-drift", type=float, default=1.0,
                   help="MEAD: scale of the head motion within a clip (default 1; 32-frame clips barely move)")
    p.add_argument("--pose-range", type=float, default=1.0, metavar="K",
                   help="MEAD: widen the head motion within a clip around its mean pose: yaw, pitch, roll, tx and ty "
                        "deviations ×K (multiplies with --pose-drift; the clip's mean is moved inwards so the wider "
                        "motion stays inside the pose limits; default 1 = unchanged)")
    p.add_argument("--exp-change", type=float, default=0.0, metavar="P",
                   help="MEAD: probability that a non-neutral clip changes part-way to another emotion/level of the "
                        "tree (smooth 4-8 frame transition; per-frame expression factors follow it; default 0)")
    p.add_argument("--exp-scale", type=float, default=1.0, metavar="S",
                   help="MEAD: draw every expression S times larger (brows, lids, mouth corners, blush; the factors "
                        "files keep the expression values; default 1 = unchanged, at most 5)")
    p.add_argument("--shared-motion", action="store_true",
                   help="MEAD: every clip of a speaker reuses the speaker's mouth, head-pose and blink tracks, so "
                        "frame t of two of its clips differs only in expression (exact expression-only pairs: "
                        "stage 0's data.same_frame_rate)")
    p.add_argument("--emotional-voice", action="store_true",
                   help="MEAD: colour each clip's voice by its emotion and level (pitch, intonation, timbre, "
                        "tremor, breath); off, every voice is neutral and the audio carries no emotion")
    p.add_argument("--turn-cues", action="store_true",
                   help="render head turns as turns: ears, the side of the head and the back hair move against the "
                        "face and a fixed light shades the turned face (yaw/pitch read better at 64²; factors, "
                        "landmarks and frontal frames unchanged; off by default: the shipped models were trained "
                        "without it)")
    p.add_argument("--videos", type=int, default=2, help="HDTF source videos (default 2)")
    p.add_argument("--seconds", type=float, default=7.0, help="HDTF video length in seconds (default 7: clips of 5 s + 2 s)")
    p.add_argument("--test-fraction", type=float, default=0.25)
    p.add_argument("--no-mel", action="store_true", help="skip mel/<name>.npy")
    p.add_argument("--no-validate", action="store_true", help="skip the final layout validation")
    p.add_argument("--overwrite", action="store_true", help="replace an existing SynthTalk tree")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_store_args(p: argparse.ArgumentParser) -> None:
    from .data.store import JPEG_QUALITY, STORE_NAME

    p.add_argument("--root", required=True, help="tree in the edtalk.data.layout format")
    p.add_argument("--out", default=None, help=f"LMDB folder (default: ROOT/{STORE_NAME})")
    p.add_argument("--size", type=int, default=None, help="frame side in pixels (default: the tree's own)")
    p.add_argument("--quality", type=int, default=JPEG_QUALITY, help="JPEG quality (default 75)")
    p.add_argument("--workers", type=int, default=None, help="decode threads (default min(4, CPUs))")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_prepare_data_args(p: argparse.ArgumentParser) -> None:
    from .data.layout import KINDS
    from .data.preprocess_real import CROP_SIZE

    p.add_argument("--dataset", required=True, choices=KINDS, help="raw layout: mead or hdtf")
    p.add_argument("--raw", required=True, help="MEAD: folder of <ID>/video/front/...; HDTF: folder of <video>.mp4")
    p.add_argument("--out", required=True, help="output tree (created; an existing one is resumed)")
    p.add_argument("--workers", type=int, default=None, help="parallel processes (default: all CPU cores)")
    p.add_argument("--size", type=int, default=CROP_SIZE, help="frame side of the written clips (default 256)")
    p.add_argument("--lmdb", action="store_true", help="also build OUT/frames.lmdb (python -m edtalk store)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


TRAIN_EPILOG = """\
overrides are dotted config keys, e.g.  data.root=data/synth/mead run.dir=runs/s1 train.max_steps=500
train.batch_size=8 (global batch, split over processes) loss.perceptual.backbone=none train.ema=0.999

multi-process (gradients averaged over ranks; gloo on CPU, NCCL on GPU):
  torchrun --nproc_per_node 2 -m edtalk.cli train --config configs/train/stage1_synthtalk_tiny.yaml data.root=...
a run resumes from the latest checkpoint in run.dir (run.resume=auto|none|PATH).
"""


def _add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="training config (YAML), e.g. configs/train/stage1_synthtalk_tiny.yaml")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")


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


def _add_export_onnx_args(p: argparse.ArgumentParser) -> None:
    from .onnx.export import OPSET

    p.add_argument("--checkpoint-dir", default="checkpoints",
                   help="folder with EDTalk/EDTalk_lip_pose/Audio2Lip (files or saved folders), pose_flow/, "
                        "audio2exp/ and presets/ (default: checkpoints)")
    p.add_argument("--checkpoint", default=None, help="export this generator only (a .pt or saved folder)")
    p.add_argument("--audio2lip-checkpoint", default=None, help="Audio2Lip to export (default: the folder's)")
    p.add_argument("--out", required=True, help="the export folder (new, empty, or an earlier export: replaced)")
    p.add_argument("--opset", type=int, default=OPSET, help=f"ONNX opset (default {OPSET})")
    p.add_argument("--quiet", action="store_true", help="print only the result")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edtalk",
        description="EDTalk talking-head generation: one face image; mouth, pose and expression each from its own source.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    gen = sub.add_parser("generate", help="make a talking-head video",
                         description="Make a talking-head video from one face image.",
                         epilog=GENERATE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_generate_args(gen)

    dl = sub.add_parser("download", help="fetch the released checkpoints into checkpoints/")
    dl.add_argument("--dest", default="checkpoints", help="target folder (default: checkpoints)")
    dl.add_argument("--from", dest="from_folder", metavar="FOLDER", help="copy from a local folder instead of downloading")
    dl.add_argument("--force", action="store_true", help="replace files that are already there")

    pr = sub.add_parser("presets", help="list the expression presets")
    pr.add_argument("--checkpoint-dir", default="checkpoints",
                    help="the model folder whose presets/ are listed (default: checkpoints)")
    pr.add_argument("--presets", metavar="DIR", default=None, help="list the presets of DIR (default: the model "
                    "folder's presets/, else $EDTALK_PRESETS, else the official ones)")

    bt = sub.add_parser("batch", help="many generations from a JSON-lines file (resumable; torchrun shards it)",
                        description="Run every job of JOBS.jsonl: one JSON object a line, with generate's option "
                                    "names. Models load once per process.",
                        epilog=BATCH_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    bt.add_argument("jobs", metavar="JOBS.jsonl", help="one JSON object a line, e.g. "
                    '{"source": "face.png", "audio": "a.wav", "exp": "happy", "out": "out/a.mp4"}')
    _add_generate_args(bt, batch=True)

    ex = sub.add_parser("examples", help="(re)generate the bundled example inputs")
    ex.add_argument("--out", default="examples", help="folder (default: examples)")

    tr = sub.add_parser("train", help="train a stage (stage0, stage1, ...) from a YAML config",
                        description="Train an EDTalk stage from a YAML config with key=value overrides.",
                        epilog=TRAIN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_train_args(tr)

    em = sub.add_parser("extract-motion", help="cache per-frame mouth/pose/expression weights of a training tree",
                        description="Write <tree>/EDTalk_{lip,pose,exp}_feature/<clip>.npy (docs/design.md §8.8); resumable.")
    _add_extract_motion_args(em)
    mp = sub.add_parser("make-presets", help="expression presets = mean α_e per emotion of a MEAD-style tree",
                        description="Average α_e per emotion over a MEAD tree's train split (docs/design.md §8.8) into "
                                    "<emotion>.npy (1,10) files usable with `generate --exp NAME --presets DIR`.")
    _add_make_presets_args(mp)

    ev = sub.add_parser("evaluate", help="the paper's metrics (PSNR, SSIM, LPIPS, LMD, FID, LSE, Acc_emo, CSIM)",
                        description="Evaluate generated videos against ground truth (docs/design.md §9): per-clip CSV, JSON "
                                    "summary, markdown table in the paper's layout, PNG plots.",
                        epilog=EVALUATE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_evaluate_args(ev)

    web = sub.add_parser("webui", help="serve a web page (Gradio) for every generation mode",
                         description="Serve the EDTalk web page: upload inputs, pick options, watch and download results.")
    web.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    web.add_argument("--port", type=int, default=7860, help="port (default: 7860)")
    web.add_argument("--share", action="store_true", help="also open a temporary public gradio.live link")
    web.add_argument("--checkpoint-dir", default="checkpoints", help="where the checkpoints are (default: checkpoints)")
    web.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    web.add_argument("--examples", metavar="DIR", help="example inputs shown on the page (default: the repository's examples/)")
    web.add_argument("--presets", metavar="DIR", help="expression presets from a folder of <name>.npy "
                                                       "(default: the model folder's presets/, else "
                                                       "$EDTALK_PRESETS, else the official 8)")

    st = sub.add_parser("synthtalk", help="write SynthTalk training trees (procedural faces, known factors)",
                        description="Write SynthTalk MEAD/HDTF-style trees with ground-truth factors.")
    _add_synthtalk_args(st)

    sto = sub.add_parser("store", help="a tree's frames as JPEGs in one LMDB, for training",
                         description="Store a MEAD/HDTF tree's frames as JPEGs in an LMDB (docs/design.md §7.3).")
    _add_store_args(sto)

    pd = sub.add_parser("prepare-data", help="raw MEAD/HDTF videos into a training tree (resumable)",
                        description="Raw MEAD/HDTF videos → an EDTalk training tree (docs/design.md §7.2–7.3).")
    _add_prepare_data_args(pd)

    ox = sub.add_parser("export-onnx", help="export the networks to ONNX for onnxruntime (generate --engine onnx)",
                        description=EXPORT_DESCRIPTION, epilog=EXPORT_EPILOG,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_export_onnx_args(ox)
    return parser


def generate_options(args):
    """generate's parsed flags → GenerateOptions (also each job of `edtalk batch`)."""
    from .pipelines.generate import GenerateOptions

    if args.batch_size is not None and args.batch_size < 1:
        raise EDTalkError("--batch-size must be at least 1")
    if args.presets:
        from .presets import load_preset_dir

        load_preset_dir(args.presets)  # a bad folder fails before any work
    return GenerateOptions(
        source=args.source, out=args.out, lip=args.lip, audio=args.audio, pose=args.pose, exp=args.exp,
        exp_intensity=args.exp_intensity, presets=args.presets, checkpoint=args.checkpoint,
        audio2lip_checkpoint=args.audio2lip_checkpoint,
        checkpoint_dir=args.checkpoint_dir, device=args.device, dtype=args.dtype, batch_size=args.batch_size,
        crop=args.crop, paste_back=args.paste_back, legacy_normalize=args.legacy_normalize, smoothing=args.smoothing,
        parity=args.parity, save_frames=args.save_frames, face_backend=args.face_backend, progress=not args.quiet,
        face_sr=args.face_sr, face_sr_weights=args.face_sr_weights,
        pose_temperature=args.pose_temperature, seed=args.seed, pose_flow_checkpoint=args.pose_flow_checkpoint,
        exp_text=args.exp_text, exp_predictor_checkpoint=args.exp_predictor_checkpoint,
        engine=args.engine, onnx_dir=args.onnx_dir,
    )


def _cmd_generate(args) -> int:
    from .pipelines.generate import call_arguments, pipeline_for
    from .runtime import keep_freed_memory

    opts = generate_options(args)
    pipe = pipeline_for(opts)  # the EDTalkPipeline of --checkpoint-dir / --engine, loading what the call needs
    keep_freed_memory()  # reuse activation buffers across frames (glibc); ~15% faster on CPU
    if opts.out == "-":  # a fragmented MP4 on stdout, for a pipe; every message goes to stderr
        from .video import stdout_for_video

        with stdout_for_video() as video:
            result = pipe.write(video, save_frames=opts.save_frames, **call_arguments(opts))
        print(f"wrote {result.num_frames} frames at 25 fps to stdout ({result.mode} mode, {result.variant} model)",
              file=sys.stderr)
        return 0
    result = pipe.write(opts.out, save_frames=opts.save_frames, **call_arguments(opts))
    print(f"wrote {result.path} ({result.num_frames} frames at 25 fps, {result.mode} mode, {result.variant} model)")
    return 0


def _cmd_batch(args) -> int:
    from .pipelines.batch import run_batch

    job_parser = argparse.ArgumentParser(prog="edtalk batch", add_help=False)
    _add_generate_args(job_parser, batch=True)
    return run_batch(args.jobs, defaults=args, flags=job_parser._actions, to_options=generate_options)


def _cmd_export_onnx(args) -> int:
    from .onnx.export import export_onnx

    metadata = export_onnx(args.checkpoint_dir, args.out, checkpoint=args.checkpoint,
                           audio2lip=args.audio2lip_checkpoint, opset=args.opset,
                           log=(lambda message: None) if args.quiet else print)
    print(f"wrote {args.out}: {', '.join(metadata['models'])} (opset {metadata['opset']})")
    return 0


def _cmd_download(args) -> int:
    from .hub import download

    download(args.dest, from_folder=args.from_folder, force=args.force)
    return 0


def _cmd_presets(args) -> int:
    from .pipelines.generate import model_part
    from .presets import choose_preset_dir, describe_preset_dir, preset_names, presets_from

    folder = Path(args.checkpoint_dir)
    generator = model_part(folder, "EDTalk.pt") or folder / "EDTalk.pt"  # presets/ sits beside it
    with presets_from(choose_preset_dir(args.presets, generator)) as chosen:
        print(f"expression presets ({describe_preset_dir(chosen)}): " + " ".join(preset_names()))
    print('blend with e.g. --exp "happy:0.7+surprised:0.3"; scale with --exp-intensity')
    return 0


def _cmd_train(args) -> int:
    from .train.config import load_train_config

    cfg = load_train_config(args.config, args.overrides)
    if args.print_config:
        from omegaconf import OmegaConf

        print(OmegaConf.to_yaml(cfg), end="")
        return 0
    from .train.trainer import train

    result = train(cfg)
    if result.exports:
        print(f"trained {cfg.stage} to step {result.step}; exports: {', '.join(result.exports)}")
    return 0


def _cmd_examples(args) -> int:
    from .examples import make_examples

    for name, value in make_examples(args.out).items():
        print(f"{name}: {value}")
    return 0


def _cmd_webui(args) -> int:
    from .webui import serve

    if args.presets:
        from .presets import load_preset_dir

        load_preset_dir(args.presets)  # a bad folder fails before the server starts
    serve(host=args.host, port=args.port, share=args.share, checkpoint_dir=args.checkpoint_dir, device=args.device,
          examples_dir=args.examples, presets=args.presets)
    return 0


def _cmd_extract_motion(args) -> int:
    from .train.motion import run_extract_motion

    print(run_extract_motion(args.checkpoint, args.data, args.parts, args.split, args.batch_size, args.overwrite,
                             args.device, progress=not args.quiet))
    return 0


def _cmd_make_presets(args) -> int:
    from .train.motion import run_make_presets

    print(run_make_presets(args.checkpoint, args.data, args.out, args.levels, args.split, args.batch_size,
                           args.overwrite, args.device, progress=not args.quiet))
    return 0


def _evaluate_request(args):
    """An EvaluateRequest from parsed flags; EDTalkError (one line, exit 2) on bad usage."""
    from .eval.metrics import METRICS, MetricSettings
    from .eval.metrics.registry import WEIGHT_SOURCES
    from .eval.protocol import EvaluateRequest, GenerationPlan
    from .pipelines.generate import resolve_device

    only = None
    if args.metrics:
        only = tuple(m.strip().lower().replace("-", "_") for m in args.metrics.split(",") if m.strip())
        unknown = [m for m in only if m not in METRICS]
        if unknown:
            raise EDTalkError(f"unknown metric(s) {', '.join(unknown)}; choose from {', '.join(METRICS)}")
    if args.limit is not None and args.limit < 1:
        raise EDTalkError("--limit must be at least 1")
    if args.max_offset < 0:
        raise EDTalkError("--max-offset must be 0 or more")
    device = str(resolve_device(args.device))
    settings = MetricSettings(paths={n: getattr(args, f"weights_{n}", None) for n in WEIGHT_SOURCES}, only=only,
                              device=device, max_offset=args.max_offset)
    plan = None
    if args.checkpoint or args.data:
        if not (args.checkpoint and args.data):
            raise EDTalkError("generating first needs both --checkpoint and --data")
        if args.pred or args.gt:
            raise EDTalkError("give either --pred/--gt (evaluate existing videos) or --checkpoint/--data, not both")
        plan = GenerationPlan(checkpoint=args.checkpoint, data=args.data, out=args.out, split=args.split, mode=args.mode,
                              audio2lip_checkpoint=args.audio2lip_checkpoint, device=device, limit=args.limit,
                              progress=not args.quiet)
    elif args.limit is not None:
        raise EDTalkError("--limit applies when generating (--checkpoint/--data); use --clip-list to choose clips")
    return EvaluateRequest(out=args.out, pred=args.pred, gt=args.gt, generation=plan, settings=settings,
                           label=args.label, split=args.split, progress=not args.quiet,
                           protocol=args.protocol, clip_list=args.clip_list)


def _cmd_evaluate(args) -> int:
    from .eval.protocol import run_evaluate

    result, files = run_evaluate(_evaluate_request(args))
    print(files["table"].read_text())
    print(f"{len(result.rows)} clip(s), {result.protocol} protocol; wrote " + ", ".join(str(p) for p in files.values()))
    return 0


def _comma_levels(text: str) -> tuple:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise InputError(f"--levels must be a comma list of 1, 2, 3, got {text!r}") from None


def _cmd_synthtalk(args) -> int:
    import time

    from .data import layout, synthtalk

    emotions = layout.EMOTIONS if args.emotions == "all" else tuple(e.strip() for e in args.emotions.split(",") if e.strip())
    levels = _comma_levels(args.levels)
    if args.size < 16:
        raise InputError(f"--size must be at least 16, got {args.size}")
    if not synthtalk.mel_available() and not args.no_mel:
        warnings.warn("edtalk.audio is not available: mel/ side files are skipped")
    stats: dict = {}
    t0 = time.perf_counter()
    reports = synthtalk.generate(
        args.out, kind=args.kind, size=args.size, seed=args.seed, speakers=args.speakers, emotions=emotions,
        levels=levels, clips_per=args.clips_per, frames=args.frames, neutral_levels=args.neutral_levels,
        pose_drift=args.pose_drift, pose_range=args.pose_range, exp_change=args.exp_change,
        exp_scale=args.exp_scale, emotional_voice=args.emotional_voice, turn_cues=args.turn_cues,
        shared_motion=args.shared_motion,
        videos=args.videos, seconds=args.seconds, test_fraction=args.test_fraction, mel=not args.no_mel,
        overwrite=args.overwrite, validate=not args.no_validate, quiet=args.quiet, stats=stats)
    wall = time.perf_counter() - t0
    parts = []
    for kind, rep in reports.items():
        root = Path(args.out) / kind
        if rep is None:
            parts.append(f"{kind.upper()} {root} ({len(layout.list_clips(root))} clips)")
        else:
            parts.append(f"{kind.upper()} {root} ({rep.num_clips} clips: {len(rep.train)} train / {len(rep.test)} test, "
                         f"{rep.num_frames} frames)")
    frames = stats.get("frames", 0)
    render = stats.get("render_s", 0.0)
    status = "not validated" if args.no_validate else "layout validated"
    print(f"SynthTalk: wrote {' and '.join(parts)} at {args.size}×{args.size} in {wall:.1f} s "
          f"(pixel rendering {frames / max(render, 1e-9):.0f} frames/s, end to end {frames / max(wall, 1e-9):.0f} frames/s); "
          f"{status}")
    return 0


def _cmd_store(args) -> int:
    from .data.store import FrameStore, build_frame_store

    path = build_frame_store(args.root, out=args.out, size=args.size, quality=args.quality, progress=not args.quiet,
                             workers=args.workers)
    print(f"{path}: {len(FrameStore(path).names)} clips")
    return 0


def _cmd_prepare_data(args) -> int:
    """Exit 0 when every source is complete, 1 when some failed (listed), 2 on a usage error."""
    from .data.preprocess_real import prepare

    summary = prepare(args.dataset, args.raw, args.out, workers=args.workers, size=args.size, lmdb=args.lmdb,
                      progress=not args.quiet)
    print(summary)
    return 1 if summary.failed else 0


COMMANDS = {"evaluate": _cmd_evaluate, "generate": _cmd_generate, "batch": _cmd_batch, "download": _cmd_download,
            "presets": _cmd_presets, "examples": _cmd_examples, "train": _cmd_train, "webui": _cmd_webui,
            "extract-motion": _cmd_extract_motion, "make-presets": _cmd_make_presets, "export-onnx": _cmd_export_onnx,
            "synthtalk": _cmd_synthtalk, "store": _cmd_store,
            "prepare-data": _cmd_prepare_data}


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    previous_format = warnings.formatwarning
    warnings.formatwarning = lambda msg, cat, *a, **k: f"edtalk: warning: {msg}\n"
    try:
        return exit_code_of(COMMANDS[args.command], args)
    finally:
        warnings.formatwarning = previous_format


if __name__ == "__main__":
    sys.exit(main())
