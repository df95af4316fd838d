#!/usr/bin/env python
"""ms/frame and GFLOP/frame per generation mode: ours vs the official per-frame call pattern.

Same synthetic weights, same inputs, same process; prints a Markdown table for the README.
    python scripts/benchmark_inference.py --frames 16 --batch-size 8
    python scripts/benchmark_inference.py --tiny            # seconds, for a smoke run
"""
import argparse
import platform

import torch

from edtalk.config import EDTalkConfig
from edtalk.model import EDTalk
from edtalk.pipelines.benchmark import HEADER, SCENARIOS, run_benchmark
from edtalk.testing import official_like_state_dict


def build(config: EDTalkConfig, device, dtype) -> EDTalk:
    model = EDTalk(config)
    model.load_state_dict(official_like_state_dict(model, seed=0))
    return model.to(device, dtype).eval().requires_grad_(False)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=None, help="default: 1 on CPU, 8 on GPU (as edtalk generate)")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "fp16", "bf16"])
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--tiny", action="store_true", help="64x64 tiny models (smoke run, numbers meaningless)")
    p.add_argument("--modes", nargs="*", choices=[s.name for s in SCENARIOS])
    args = p.parse_args()
    from edtalk.runtime import keep_freed_memory

    keep_freed_memory()  # as `edtalk generate` does; applies to both paths alike
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
    device = torch.device(args.device)
    make = EDTalkConfig.tiny if args.tiny else EDTalkConfig
    models = {"edtalk": build(make(), device, dtype), "lip_pose": build(make(exp_dim=0), device, dtype)}
    print(f"# device={device} dtype={args.dtype} threads={torch.get_num_threads()} frames={args.frames} "
          f"batch={args.batch_size or 'auto'} torch={torch.__version__} cpu={platform.processor() or platform.machine()}")
    print(HEADER)
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    from edtalk.pipelines.generate import default_batch_size

    run_benchmark(models, args.frames, args.batch_size or default_batch_size(device), args.repeats, args.modes)


if __name__ == "__main__":
    main()
