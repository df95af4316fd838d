#!/usr/bin/env python
"""Generation in fp32 / bf16 / fp16 against the official-parity reference (spec §9 tolerances for fp32).

The parity set's models (deterministic weights) render its four EDTalk cases and three lip-pose cases on
the chosen device in each precision; the table gives the mean and max |difference| to the official
float32 CPU tensors and the PSNR (images in [-1, 1]).  Speed per precision: scripts/benchmark_inference.py.
    python scripts/benchmark_precision.py --device cuda                 # fp32, bf16, fp16
    python scripts/benchmark_precision.py --device cpu --dtypes fp32 bf16
"""
import argparse
import copy
import json
import math
from pathlib import Path

import torch

from edtalk import EDTalk
from edtalk.testing import find_parity_dir, load_recipe

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def render_cases(model: EDTalk, ref: dict, device, dtype) -> dict:
    """Every rendered output of the parity set for one model, on `device` in `dtype`."""
    def x(key):
        return ref[key].to(device, dtype)

    prefix = model.variant
    with torch.no_grad():
        latent, feats = model.encode(x("source"))
        feats = model.prepare_source(feats)
        mouth = model.motion_weights(x("lip_frames"))["mouth"]
        pose = model.motion_weights(x("pose_frames"))["pose"]
        if prefix == "lip_pose":
            return {"lip_pose.out_video_driven": model.render(latent, feats, mouth, pose),
                    "lip_pose.out_audio_driven": model.render(latent, feats, x("alpha_lip_in"), pose),
                    "lip_pose.out_reconstruct": model(x("source"), x("lip_frames"))}
        exp = model.motion_weights(x("exp_frames"))["exp"]
        return {"edtalk.out_video_driven": model.render(latent, feats, mouth, pose, exp),
                "edtalk.out_video_driven_exp_weights": model.render(latent, feats, mouth, pose, x("alpha_exp_in")),
                "edtalk.out_audio_driven": model.render(latent, feats, x("alpha_lip_in"), pose, exp),
                "edtalk.out_audio_driven_exp_weights": model.render(latent, feats, x("alpha_lip_in"), pose,
                                                                    x("alpha_exp_in"))}


def compare(out: torch.Tensor, ref: torch.Tensor) -> dict:
    diff = (out.float().cpu() - ref).abs()
    mse = float((diff ** 2).mean())
    return {"mean_abs": float(diff.mean()), "max_abs": float(diff.max()),
            "psnr_db": float("inf") if mse == 0 else 10 * math.log10(4.0 / mse)}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--dtypes", nargs="+", choices=list(DTYPES), default=None,
                   help="default: fp32 bf16 fp16 (fp16 on GPUs only)")
    p.add_argument("--parity-dir", default=None, help="default: $EDTALK_PARITY_DIR or ../shared/reference/official_parity")
    p.add_argument("--json", default=None, help="also write the numbers here")
    args = p.parse_args()
    parity = Path(args.parity_dir) if args.parity_dir else find_parity_dir()
    if parity is None:
        raise SystemExit("error: official parity set not found (--parity-dir)")
    device = torch.device(args.device)
    dtypes = args.dtypes or (["fp32", "bf16", "fp16"] if device.type == "cuda" else ["fp32", "bf16"])
    ref = torch.load(parity / "reference.pt", weights_only=True)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"# device={device} ({name}) torch={torch.__version__}")
    print("| model | dtype | mean abs | max abs | PSNR dB (worst case) |\n|---|---|---:|---:|---:|")
    results = {}
    for variant in ("edtalk", "lip_pose"):
        base = EDTalk.from_official(load_recipe(parity, variant)).eval()
        for dtype_name in dtypes:
            model = copy.deepcopy(base).to(device, DTYPES[dtype_name])  # .to() is in place: keep fp32 weights
            numbers = {k: compare(v, ref[k]) for k, v in render_cases(model, ref, device, DTYPES[dtype_name]).items()}
            results[f"{variant}/{dtype_name}"] = numbers
            worst = {"mean_abs": max(n["mean_abs"] for n in numbers.values()),
                     "max_abs": max(n["max_abs"] for n in numbers.values()),
                     "psnr_db": min(n["psnr_db"] for n in numbers.values())}
            print(f"| {variant} | {dtype_name} | {worst['mean_abs']:.2e} | {worst['max_abs']:.2e} | {worst['psnr_db']:.1f} |",
                  flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"device": name, "torch": torch.__version__, "results": results}, indent=1))


if __name__ == "__main__":
    main()
