#!/usr/bin/env python
"""Training-data loading speed: LMDB frame store vs MP4 decoding, and the data-wait fraction of training.

Prints numbers only (a benchmark, not a test: wall-clock time depends on the machine and its load).

1. random-access frames/s: FrameStore.frame (LMDB JPEGs) vs VideoFrames.frame (MP4 decode, LRU of 4 clips);
2. Stage1Items items/s (6 images + 2 mouth swaps each) from both readers, one process;
3. data-wait fraction: a DataLoader timed against a fixed 0.26 s step, and (when edtalk.train is
   installed) the fraction a tiny-config stage-1 training run reports, with each reader.

    python scripts/benchmark_loader.py                       # SynthTalk HDTF-style tree at 256², made in a temp dir
    python scripts/benchmark_loader.py --root TREE --workers 2 --steps 40
"""
import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from edtalk.data import layout
from edtalk.data.datasets import Stage1Items
from edtalk.data.store import STORE_NAME, FrameStore, VideoFrames, build_frame_store

FIXED_STEP_S = 0.26


def make_tree(out: Path, size: int, seconds: float, videos: int) -> Path:
    from edtalk.data import synthtalk

    synthtalk.generate_hdtf(out / "hdtf", videos=videos, seconds=seconds, size=size, seed=0, validate=False,
                            test_fraction=0.0, quiet=False)
    return out / "hdtf"


def random_refs(reader, names, count: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    picks = rng.integers(len(names), size=count)
    return [(names[k], int(rng.integers(reader.num_frames(names[k])))) for k in picks]


def frames_per_second(reader, refs) -> float:
    reader.frame(*refs[0])  # open / warm
    t0 = time.perf_counter()
    for name, i in refs:
        reader.frame(name, i)
    return len(refs) / (time.perf_counter() - t0)


def items_per_second(root: Path, reader, size: int, count: int) -> float:
    ds = Stage1Items(root, size=size, store=reader, length=count)
    ds[0]
    t0 = time.perf_counter()
    for i in range(count):
        ds[i]
    return count / (time.perf_counter() - t0)


def loader_wait_fraction(root: Path, reader, size: int, batch: int, workers: int, steps: int) -> float:
    """Fallback without the trainer: time spent waiting for batches against a fixed step."""
    ds = Stage1Items(root, size=size, store=reader, length=batch * steps)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, num_workers=workers, shuffle=True)
    wait = 0.0
    it = iter(loader)
    next(it)  # worker start-up is not steady state
    for _ in range(steps - 1):
        t0 = time.perf_counter()
        next(it)
        wait += time.perf_counter() - t0
        time.sleep(FIXED_STEP_S)
    return wait / (wait + FIXED_STEP_S * (steps - 1))


def trainer_wait_fraction(root: Path, workers: int, steps: int, run_dir: Path):
    """data_wait_frac reported by a tiny stage-1 training run, or None without edtalk.train."""
    try:
        from edtalk.train.config import load_train_config
        from edtalk.train.trainer import train
    except ImportError:
        return None
    config = Path(__file__).resolve().parent.parent / "configs" / "train" / "stage1_synthtalk_tiny.yaml"
    cfg = load_train_config(str(config), [f"data.root={root}", f"run.dir={run_dir}", f"train.max_steps={steps}",
                                          f"run.log_every={steps}", "run.sample_every=0",
                                          f"run.checkpoint_every={steps}", f"data.num_workers={workers}",
                                          "run.progress=false", "run.export=false"])
    result = train(cfg)
    return result.last_logs.get("time/data_wait_frac"), result.last_logs.get("time/step_s")


def without_store(root: Path):
    """Context: hide the tree's frames.lmdb so open_frames falls back to MP4 decoding."""
    class Hidden:
        def __enter__(self):
            self.src, self.dst = root / STORE_NAME, root / (STORE_NAME + ".hidden")
            os.replace(self.src, self.dst)

        def __exit__(self, *exc):
            os.replace(self.dst, self.src)
    return Hidden()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=None, help="a layout tree (default: a SynthTalk HDTF-style tree in a temp dir)")
    p.add_argument("--tree-size", type=int, default=256, help="frame size of the generated tree")
    p.add_argument("--seconds", type=float, default=15.0, help="length of each generated video")
    p.add_argument("--videos", type=int, default=4)
    p.add_argument("--size", type=int, default=64, help="item size (the tiny model's 64)")
    p.add_argument("--reads", type=int, default=400, help="random frame reads per reader")
    p.add_argument("--items", type=int, default=40, help="Stage1Items per reader")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers for the wait fraction")
    p.add_argument("--steps", type=int, default=30, help="training steps per wait-fraction run")
    p.add_argument("--batch", type=int, default=4, help="batch of the fallback DataLoader run")
    args = p.parse_args()
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    tmp = Path(tempfile.mkdtemp(prefix="edtalk_loader_bench_"))
    try:
        root = Path(args.root) if args.root else make_tree(tmp, args.tree_size, args.seconds, args.videos)
        names = layout.read_split(root, "train")
        t0 = time.perf_counter()
        build_frame_store(root)
        build_s = time.perf_counter() - t0
        store, videos = FrameStore(root / STORE_NAME), VideoFrames(root)
        total = sum(store.num_frames(n) for n in names)
        frame_shape = store.frame(names[0], 0).shape
        print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}; "
              f"tree {root}: {len(names)} train clips, {total} frames of {frame_shape[1]}x{frame_shape[0]}; "
              f"LMDB built in {build_s:.1f} s ({total / build_s:.0f} frames/s)")
        refs = random_refs(store, names, args.reads)
        print("| reader | random frames/s | Stage1Items/s (size %d) |" % args.size)
        print("|---|---:|---:|")
        for label, reader in (("LMDB (JPEG q75)", store), ("MP4 decode (LRU 4 clips)", videos)):
            fps = frames_per_second(reader, refs)
            ips = items_per_second(root, reader, args.size, args.items)
            print(f"| {label} | {fps:.0f} | {ips:.1f} |")
        print()
        print("| reader | setting | data-wait fraction | step s |")
        print("|---|---|---:|---:|")
        for label, hide in (("LMDB", False), ("MP4 decode", True)):
            reader = VideoFrames(root) if hide else store
            frac = loader_wait_fraction(root, reader, args.size, args.batch, args.workers, args.steps)
            print(f"| {label} | DataLoader, {args.workers} workers, batch {args.batch}, fixed step | {frac:.3f} | "
                  f"{FIXED_STEP_S} |")
            run_dir = tmp / f"run_{label.split()[0]}"
            if hide:
                with without_store(root):
                    res = trainer_wait_fraction(root, args.workers, args.steps, run_dir)
            else:
                res = trainer_wait_fraction(root, args.workers, args.steps, run_dir)
            if res is not None:
                print(f"| {label} | tiny stage-1 training (edtalk.train), {args.workers} workers, {args.steps} steps | "
                      f"{res[0]:.3f} | {res[1]:.3f} |")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
