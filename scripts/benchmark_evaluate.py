#!/usr/bin/env python3
"""Per-frame cost of each evaluation metric on 256² face frames (prints numbers; no assertions).

Frames: the bundled examples/source.png face, moved a few pixels per frame (GT) and once more
(generated).  Metrics whose weights are not configured (flags/env of `edtalk evaluate`) are left
out; LPIPS/FID/Acc_emo need real weight files, so by default this times PSNR, SSIM, dlib
landmarks (M-/F-LMD), dlib CSIM and a random-weight SyncNet expert (LSE).
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edtalk.eval.metrics import Clip, MetricSettings, MetricSuite  # noqa: E402
from edtalk.eval.metrics.sync import SyncExpertScorer  # noqa: E402
from edtalk.networks.syncnet import SyncNet  # noqa: E402


def face_frames(n: int, seed: int) -> np.ndarray:
    face = np.asarray(Image.open(Path(__file__).resolve().parents[1] / "examples" / "source.png").convert("RGB"))
    shifts = np.random.default_rng(seed).integers(-3, 4, (n, 2))
    return np.stack([np.roll(face, tuple(s), axis=(0, 1)) for s in shifts])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--frames", type=int, default=50)
    args = ap.parse_args()
    torch.manual_seed(0)
    gt, pred = face_frames(args.frames, 0), face_frames(args.frames, 1)
    wav = np.random.default_rng(0).normal(0, 0.1, args.frames * 640).astype(np.float32)
    print(f"{args.frames} frames 256x256, torch threads {torch.get_num_threads()}")
    timings = {}
    for keys in (("psnr",), ("ssim",), ("m_lmd", "f_lmd"), ("csim",), ("lse_c", "lse_d")):
        networks = {"sync": (SyncExpertScorer(SyncNet()), "random SyncNet expert", False)}
        suite = MetricSuite(MetricSettings(only=keys), networks=networks)
        clip = Clip("M003#happy#level_1#001", pred, gt, wav=wav)
        if keys[0] in ("csim", "lse_c"):
            clip.track("pred"), clip.track("source")  # landmarks are shared with LMD: time them there
        start = time.perf_counter()
        row = suite.row(clip)
        timings["/".join(keys)] = (time.perf_counter() - start) / args.frames * 1000
        value = ", ".join(f"{k}={row.get(k):.3f}" for k in keys if row.get(k) is not None)
        print(f"{'/'.join(keys):12s} {timings['/'.join(keys)]:7.1f} ms/frame   ({value})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
