#!/usr/bin/env python
"""The ceiling of a SynthTalk tree: how much of each factor a network can read off one frame.

Trains the SynthTalk factor net (stage ``synthtalk_factor_net``, ``configs/train/factor_net_ceiling.yaml``)
on the tree's train split and writes its held-out R² per factor on the test split (whole speakers it
never saw) to ``OUT/ceiling.json``: mouth_open, mouth_width, mouth_round, yaw, pitch, roll, tx, ty,
scale, brow_raise, brow_furrow, eyelid, cheek, corner_curve, corner_asym, blink.  The run lives in
``OUT/run`` and resumes from its last checkpoint when called again (a run stopped by ``--max-minutes``
goes on; a finished one is only evaluated again).  ``OUT/ceiling_run.json`` records the tree, split,
steps, seed and time.

    python -m edtalk synthtalk --out /tmp/st --kind mead --speakers 120 --emotions neutral,happy,sad,surprised \\
        --levels 1,3 --frames 32 --size 64 --no-mel --seed 7 --quiet
    python scripts/factor_ceiling.py --tree /tmp/st/mead --out /tmp/st/ceiling      # 3000 steps, ~7 CPU-minutes

Budget: 3000 steps of batch 32 by default (``--steps``), about 0.13 s a step on one core of the
2-core CPU at 64² (~7 minutes, plus a minute to decode the frames once).  ``--into-tree`` also
copies ceiling.json to ``TREE/ceiling.json``, where :class:`edtalk.eval.probes.TrainingProbe` (so
every trainer probe record of that tree) picks it up and reports each R² as a fraction of it.
"""
import argparse
import json
import shutil
import sys
from pathlib import Path

from edtalk.errors import exit_code_of


def run(args) -> int:
    import torch

    from edtalk.train.factor_net import CEILING_FILE, CEILING_RUN_FILE, measure_ceiling

    torch.set_num_threads(max(1, int(args.threads)))
    ceiling = measure_ceiling(args.tree, args.out, steps=args.steps, seed=args.seed, config=args.config,
                              overrides=args.overrides, split=args.split, max_minutes=args.max_minutes,
                              progress=not args.quiet)
    out = Path(args.out)
    meta = json.loads((out / CEILING_RUN_FILE).read_text())
    for name, value in ceiling.items():
        print(f"{name:<14} {value:7.3f}")
    state = "" if meta["complete"] else f" (stopped at step {meta['step']} of {meta['max_steps']}: rerun to finish)"
    print(f"ceiling of {args.tree} ({meta['split']}: {meta['clips']} clips, {meta['frames']} frames, "
          f"{meta['size']}²) after {meta['step']} steps{state} → {out / CEILING_FILE}")
    if args.into_tree:
        shutil.copyfile(out / CEILING_FILE, Path(args.tree) / CEILING_FILE)
        print(f"copied to {Path(args.tree) / CEILING_FILE}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="factor_ceiling.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tree", required=True, help="a SynthTalk tree (e.g. /tmp/st/mead) with train and test splits")
    p.add_argument("--out", required=True,
                   help="folder for ceiling.json, ceiling_run.json, the run and the frame cache")
    p.add_argument("--steps", type=int, default=None, help="training steps (default: the config's, 3000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split", default="test", help="the held-out split (default test)")
    p.add_argument("--config", default=None, help="factor-net config (default configs/train/factor_net_ceiling.yaml)")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="stop after this long and checkpoint; rerun to go on")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--into-tree", action="store_true", help="also copy ceiling.json into the tree for the probes")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.batch_size=64")
    args = p.parse_args(argv)
    return exit_code_of(run, args)


if __name__ == "__main__":
    sys.exit(main())
