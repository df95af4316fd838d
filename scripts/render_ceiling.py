#!/usr/bin/env python
"""Can a generator render an expression at all?  (edtalk.eval.render_ceiling)

Takes `--pairs` level-3 expression-only pairs from a SynthTalk `--shared-motion` tree (neutral frame t,
emotional frame t of one speaker) and fits a free latent per pair (`--what latent`), a free α_e per
pair (`--what exp`, a full model) or every weight
of the model on those pairs alone (`--what weights`).  Prints the L1 on the pixels the expression
changed, before and after, next to copying the source, as one JSON line per model.

    python -m edtalk synthtalk --out /tmp/sh --kind mead --speakers 16 --emotions neutral,happy,sad,surprised \\
        --levels 1,3 --frames 48 --size 64 --no-mel --seed 23 --exp-scale 2 --shared-motion --quiet
    python scripts/render_ceiling.py --tree /tmp/sh/mead --model checkpoints/synthtalk/EDTalk_lip_pose --what latent
    python scripts/render_ceiling.py --tree /tmp/sh/mead --scratch 128 4:64,8:64,16:64,32:32,64:16 --what weights

Budget: 600 steps of 16 pairs take about 2 minutes on one core of the 2-core CPU at the recipe's width.
"""
import argparse
import json
import sys

from edtalk.errors import EDTalkError


def build_model(args):
    from edtalk.config import EDTalkConfig
    from edtalk.model import EDTalk
    from edtalk.train.init import init_generator

    if args.model:
        return EDTalk.from_pretrained(args.model)
    latent, channels = args.scratch
    try:
        ch = {int(k): int(v) for k, v in (kv.split(":") for kv in channels.split(","))}
        config = EDTalkConfig(size=args.size, latent_dim=int(latent), channels=ch, exp_dim=0)
    except ValueError as exc:
        raise EDTalkError(f"--scratch LATENT CHANNELS: e.g. 128 4:64,8:64,16:64,32:32,64:16 ({exc})") from None
    return init_generator("scratch", None, config, args.seed, "identity")[0]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="render_ceiling.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tree", required=True, help="a SynthTalk --shared-motion MEAD tree")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="a saved generator folder (e.g. checkpoints/synthtalk/EDTalk_lip_pose)")
    src.add_argument("--scratch", nargs=2, metavar=("LATENT", "CHANNELS"),
                     help="a generator from scratch (flows start at zero), e.g. 128 4:64,8:64,16:64,32:32,64:16")
    p.add_argument("--size", type=int, default=64, help="--scratch: image size (default 64)")
    p.add_argument("--what", choices=("latent", "exp", "weights"), default="weights")
    p.add_argument("--pairs", type=int, default=16)
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--lr", type=float, default=None, help="default 0.05 (latent, exp) / 1e-3 (weights)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)

    import torch

    from edtalk.eval.render_ceiling import expression_pairs, render_ceiling

    torch.set_num_threads(max(1, args.threads))
    torch.manual_seed(args.seed)
    try:
        model = build_model(args)
        source, target = expression_pairs(args.tree, args.pairs, args.seed, size=model.config.size)
        result = render_ceiling(model, source, target, args.what, args.steps, args.lr)
    except EDTalkError as exc:
        print(f"render_ceiling.py: error: {exc}", file=sys.stderr)
        return 2
    result["model"] = args.model or f"scratch {' '.join(args.scratch)}"
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
