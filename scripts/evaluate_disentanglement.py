#!/usr/bin/env python
"""How disentangled is a model? Probe its mouth/pose/expression weights on a SynthTalk tree.

    python -m edtalk.data.synthtalk --out data/synth --size 256 --speakers 6 --kind mead
    python scripts/evaluate_disentanglement.py --checkpoint checkpoints/EDTalk.pt --data data/synth/mead
"""
import argparse
import json
import sys

from edtalk import EDTalk, EDTalkError
from edtalk.eval.disentangle import format_report
from edtalk.eval.model_probe import evaluate_model


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="EDTalk.pt / EDTalk_lip_pose.pt or a saved model folder")
    p.add_argument("--data", required=True, help="a SynthTalk tree (e.g. data/synth/mead)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", help="also write the report as JSON")
    args = p.parse_args()
    try:
        loader = EDTalk.from_pretrained if not args.checkpoint.endswith(".pt") else EDTalk.from_official
        model = loader(args.checkpoint).to(args.device)
        report = evaluate_model(model, args.data)
    except EDTalkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_report(report))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2, default=float)
    return 0


if __name__ == "__main__":
    sys.exit(main())
