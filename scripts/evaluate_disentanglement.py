#!/usr/bin/env python
"""How disentangled is a model? Probe its mouth/pose/expression weights on a SynthTalk tree.

    python -m edtalk synthtalk --out data/synth --size 256 --speakers 6 --kind mead
    python scripts/evaluate_disentanglement.py --checkpoint checkpoints/EDTalk.pt --data data/synth/mead

`--probes` adds the numbers a training run records (edtalk.eval.probes: per-factor R² of the
weights and of the encoder's wa, and the cross-driving probe read by the SynthTalk factor net) on
the `--split` clips.
"""
import argparse
import json
import sys

from edtalk import EDTalk, EDTalkError
from edtalk.eval.disentangle import format_report
from edtalk.eval.probes import TrainingProbe, evaluate_model


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="EDTalk.pt / EDTalk_lip_pose.pt or a saved model folder")
    p.add_argument("--data", required=True, help="a SynthTalk tree (e.g. data/synth/mead)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", help="also write the report as JSON")
    p.add_argument("--probes", action="store_true", help="also run the training probes (edtalk.eval.probes)")
    p.add_argument("--split", default="test", help="the split the --probes read (default test)")
    p.add_argument("--factor-net", help="saved factor net for the cross-driving probe (default: the shipped one)")
    p.add_argument("--max-clips", type=int, default=48, help="clips the --probes read (default 48)")
    p.add_argument("--triples", type=int, default=16, help="cross-driving triples (default 16)")
    args = p.parse_args()
    try:
        loader = EDTalk.from_pretrained if not args.checkpoint.endswith(".pt") else EDTalk.from_official
        model = loader(args.checkpoint).to(args.device)
        report = evaluate_model(model, args.data)
        if args.probes:
            probe = TrainingProbe(args.data, split=args.split, factor_net=args.factor_net, max_clips=args.max_clips,
                                  triples=args.triples)
            report["probes"] = probe(model, 0)
    except EDTalkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_report(report))
    for key, value in report.get("probes", {}).items():
        print(f"{key:<32} {value:8.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2, default=float)
    return 0


if __name__ == "__main__":
    sys.exit(main())
