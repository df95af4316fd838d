"""`edtalk train` (also under torchrun: `-m edtalk.cli train`): parse `--config FILE [key=value ...]` and run the trainer."""
from __future__ import annotations

import argparse
from typing import List, Optional

from ..errors import exit_code_of

TRAIN_EPILOG = """\
overrides are dotted config keys, e.g.  data.root=data/synth/mead run.dir=runs/s1 train.max_steps=500
train.batch_size=8 (global batch, split over processes) loss.perceptual.backbone=none train.ema=0.999

multi-process (gradients averaged over ranks; gloo on CPU, NCCL on GPU):
  torchrun --nproc_per_node 2 -m edtalk.cli train --config configs/train/stage1_synthtalk_tiny.yaml data.root=...
a run resumes from the latest checkpoint in run.dir (run.resume=auto|none|PATH).
"""


def add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="training config (YAML), e.g. configs/train/stage1_synthtalk_tiny.yaml")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")


def run_train(args) -> int:
    from .config import load_train_config

    cfg = load_train_config(args.config, args.overrides)
    if args.print_config:
        from omegaconf import OmegaConf

        print(OmegaConf.to_yaml(cfg), end="")
        return 0
    from .trainer import train

    result = train(cfg)
    if result.exports:
        print(f"trained {cfg.stage} to step {result.step}; exports: {', '.join(result.exports)}")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="train.py", description="Train an EDTalk stage.", epilog=TRAIN_EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_train_args(parser)
    args = parser.parse_args(argv)
    return exit_code_of(run_train, args)
