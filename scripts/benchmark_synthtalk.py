#!/usr/bin/env python
"""SynthTalk rendering speed (frames/s) per frame size: the issue asks >= 200 frames/s at 64² on 2 cores.

Prints numbers only (a benchmark, not a test: wall-clock time depends on the machine and its load).
    python scripts/benchmark_synthtalk.py                 # 128 frames at 32, 64 and 128 px, best of 3
    python scripts/benchmark_synthtalk.py --sizes 64 --frames 256 --repeats 5
"""
import argparse
import platform
import time

import numpy as np
import torch

from edtalk.data import synthtalk as st
from edtalk.data import synthtalk_render as render


def frames_per_second(size: int, frames: int, repeats: int) -> float:
    ident = st.sample_identity(np.random.default_rng(0))
    f = st.sample_factors(np.random.default_rng(0), frames, "happy", 2)
    args = (ident, f["mouth"], f["pose"], f["expression"], f["blink"])
    render.render_frames(*(a[:4] if isinstance(a, np.ndarray) else a for a in args), size=size)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        render.render_frames(*args, size=size)
        best = min(best, time.perf_counter() - start)
    return frames / best


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 128])
    p.add_argument("--frames", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    print(f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"{args.frames} frames, best of {args.repeats}")
    print("| size | frames/s |\n|---|---|")
    for size in args.sizes:
        print(f"| {size} | {frames_per_second(size, args.frames, args.repeats):.0f} |")


if __name__ == "__main__":
    main()
