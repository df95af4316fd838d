#!/usr/bin/env python
"""Paste-back speed (ms/frame) at a few frame sizes: one mask for all frames vs a mask per frame.

Prints numbers only. The face is the astronaut test image scaled so it fills about a third of
the frame height; faces are pasted two frames per call, as generation streams them.
    python scripts/benchmark_paste.py
    python scripts/benchmark_paste.py --heights 720 1080 2160 --frames 16
"""
import argparse
import platform
import time

import numpy as np
from PIL import Image
from skimage import data

from edtalk.face import crop_image, paste_back
from edtalk.face import paste as paste_module


def clear_caches():
    paste_module._PLAN_CACHE.clear()
    paste_module._GEOMETRY_CACHE.clear()


def ms_per_frame(frames, faces, params, landmarks=None, batch=2) -> float:
    start = time.perf_counter()
    for s in range(0, len(faces), batch):
        paste_back(frames[s:s + batch], faces[s:s + batch], params,
                   landmarks=None if landmarks is None else landmarks[s:s + batch])
    return 1000 * (time.perf_counter() - start) / len(faces)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--heights", type=int, nargs="+", default=[720, 1080])
    p.add_argument("--frames", type=int, default=8)
    args = p.parse_args()
    print(f"{platform.processor() or platform.machine()}, {args.frames} frames of 256² faces, 2 per call")
    print("| frame | first call (plan) ms | one mask, ms/frame | a mask per frame, ms/frame |\n|---|---|---|---|")
    for height in args.heights:
        width = height * 16 // 9
        image = np.asarray(Image.fromarray(data.astronaut()).resize((height * 2, height * 2)))[:height, :width]
        image = np.ascontiguousarray(np.pad(image, ((0, 0), (0, max(0, width - image.shape[1])), (0, 0)), "edge"))
        crop, params = crop_image(image)
        frames, faces = np.repeat(image[None], args.frames, 0), np.repeat(crop[None], args.frames, 0)
        landmarks = paste_module.default_landmarks(params, 256)
        moving = np.stack([landmarks + 0.01 * i for i in range(args.frames)])  # a different mask each frame
        clear_caches()
        first = ms_per_frame(frames[:1], faces[:1], params, batch=1)
        shared = ms_per_frame(frames, faces, params)
        per_frame = ms_per_frame(frames, faces, params, moving)
        print(f"| {width}x{height} | {first:.0f} | {shared:.0f} | {per_frame:.0f} |")


if __name__ == "__main__":
    main()
