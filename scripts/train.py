#!/usr/bin/env python
"""Train an EDTalk stage: the same as `edtalk train`, and the entry point for torchrun.

    python scripts/train.py --config configs/train/stage1_synthtalk_tiny.yaml data.root=data/synth/mead
    torchrun --nproc_per_node 2 scripts/train.py --config configs/train/stage1_synthtalk_tiny.yaml data.root=...
"""
import sys

from edtalk.train.cli import main

if __name__ == "__main__":
    sys.exit(main())
