#!/usr/bin/env bash
# Stage 2 (expression decoupling, spec §8.3) on SynthTalk, measured on held-out speakers.
#
#   bash scripts/train_stage2_synthtalk.sh                 # the documented run (about a CPU hour)
#   SHORT=1 bash scripts/train_stage2_synthtalk.sh         # a few minutes: checks the pipeline only
#
# Steps (each skips what is done, so a killed run continues; WORK=data/stage2_proof by default):
#   1. a SynthTalk MEAD tree (8 emotions, levels 1 and 3; a quarter of the speakers held out) + LMDB;
#   2. stage 1 (mouth/pose) unless S1_RUN names an existing stage-1 run;
#   3. stage 2 from it (W10 appended, identity start, only exp_fc/W10/EEM conv2+norm2 learn);
#   4. probe (edtalk.eval.model_probe.evaluate_model) on the held-out speakers:
#        - the untrained baseline: the stage-1 model + a random expression head (no identity start),
#        - the trained stage-2 export;
#      targets: expression own R² ≥ 0.6; mouth/pose bases bit-identical to stage 1; mouth/pose R²
#      unchanged.  Writes WORK/stage2_probe.json and prints a table.
set -euo pipefail
cd "$(dirname "$0")/.."

WORK=${WORK:-data/stage2_proof}
THREADS=${THREADS:-2}          # torch threads per run (1 is faster on a busy shared machine)
if [[ "${SHORT:-0}" == 1 ]]; then
  SPEAKERS=${SPEAKERS:-4}; FRAMES=${FRAMES:-16}; S1_STEPS=${S1_STEPS:-150}; S2_STEPS=${S2_STEPS:-150}
  S1_CONFIG=${S1_CONFIG:-configs/train/stage1_synthtalk_tiny.yaml}
  S2_CONFIG=${S2_CONFIG:-configs/train/stage2_synthtalk_tiny.yaml}
  # like stage2_synthtalk.yaml: no GAN term, Adam with momentum (a few hundred steps of reconstruction)
  S2_ARGS=${S2_ARGS:-loss.adv=0 optim.gen.betas=[0.9,0.99] optim.gen.lr=0.002}
else
  SPEAKERS=${SPEAKERS:-16}; FRAMES=${FRAMES:-32}; S1_STEPS=${S1_STEPS:-3000}; S2_STEPS=${S2_STEPS:-2000}
  S1_CONFIG=${S1_CONFIG:-configs/train/stage1_synthtalk.yaml}
  S2_CONFIG=${S2_CONFIG:-configs/train/stage2_synthtalk.yaml}
fi
S1_ARGS=${S1_ARGS:-}          # extra key=value overrides of each run
S2_ARGS=${S2_ARGS:-}
TREE=$WORK/synth/mead
S1_RUN=${S1_RUN:-$WORK/stage1}
S2_RUN=$WORK/stage2

# 1. data
if [[ ! -f $TREE/test.json ]]; then
  python -m edtalk.data.synthtalk --out "$WORK/synth" --kind mead --speakers "$SPEAKERS" --emotions all \
    --levels 1,3 --frames "$FRAMES" --size 64 --no-mel --seed 2 --quiet --overwrite
fi
[[ -e $TREE/frames.lmdb ]] || python -m edtalk.data.store --root "$TREE" --quiet

# 2. stage 1 (skipped when its export exists)
if ! ls "$S1_RUN"/export/*.pt >/dev/null 2>&1; then
  python -m edtalk.cli train --config "$S1_CONFIG" data.root="$TREE" run.dir="$S1_RUN" \
    train.max_steps="$S1_STEPS" train.threads="$THREADS" run.progress=false $S1_ARGS
fi

# 3. stage 2 (resumes from its latest checkpoint)
if ! ls "$S2_RUN"/export/*.pt >/dev/null 2>&1; then
  python -m edtalk.cli train --config "$S2_CONFIG" data.root="$TREE" model.init_path="$S1_RUN" \
    run.dir="$S2_RUN" train.max_steps="$S2_STEPS" train.threads="$THREADS" run.progress=false $S2_ARGS
fi

# 4. probe on the held-out speakers
python - "$TREE" "$S1_RUN" "$S2_RUN" "$WORK/stage2_probe.json" "$S2_CONFIG" "$THREADS" <<'EOF'
import json, sys
from pathlib import Path

import torch

torch.set_num_threads(int(sys.argv[6]))

from edtalk.eval.model_probe import evaluate_model
from edtalk.model import EDTalk
from edtalk.train.config import load_train_config
from edtalk.train.stages.stage2 import add_expression_branch

tree, s1_run, s2_run, out, s2_config = sys.argv[1:6]
cfg = load_train_config(s2_config, [f"data.root={tree}"])
stage1 = EDTalk.from_official(sorted(Path(s1_run, "export").glob("*.pt"))[-1])
stage2 = EDTalk.from_official(sorted(Path(s2_run, "export").glob("*.pt"))[-1])
baseline = add_expression_branch(stage1, adain_hidden=int(cfg.model.adain_hidden), seed=int(cfg.seed),
                                 start_as_identity=False).eval()
reports = {name: evaluate_model(m, tree, split="test", progress=False)
           for name, m in (("stage1", stage1), ("baseline", baseline), ("stage2", stage2))}
with torch.no_grad():
    bases_kept = bool(torch.equal(stage2.bases()[:, :26], add_expression_branch(stage1).bases()[:, :26]))
rows = {name: {g: rep["own"].get(g) for g in ("mouth", "pose", "expression")} for name, rep in reports.items()}
result = {"own_r2": rows, "leak": {n: r["leak"] for n, r in reports.items()}, "bases_bit_identical": bases_kept,
          "mouth_pose_r2_unchanged": all(rows["stage2"][g] == rows["stage1"][g] for g in ("mouth", "pose")),
          "expression_target_met": (rows["stage2"]["expression"] or 0) >= 0.6}
Path(out).write_text(json.dumps(result, indent=1))
print(f"{'held-out own R²':<28}{'mouth':>8}{'pose':>8}{'expression':>12}")
for name, label in (("stage1", "stage 1 (lip-pose)"), ("baseline", "untrained expression head"),
                    ("stage2", "stage 2 (trained)")):
    r = rows[name]
    exp = "-" if r["expression"] is None else f"{r['expression']:.3f}"
    print(f"{label:<28}{r['mouth']:>8.3f}{r['pose']:>8.3f}{exp:>12}")
print(f"mouth/pose bases bit-identical: {bases_kept}; mouth/pose R² unchanged: {result['mouth_pose_r2_unchanged']}; "
      f"expression own R² >= 0.6: {result['expression_target_met']}")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

events = EventAccumulator(str(Path(s2_run, "tb")))
events.Reload()
l1 = [e.value for e in events.Scalars("loss/rec_l1")] if "loss/rec_l1" in events.Tags()["scalars"] else []
if l1:
    result["stage2_rec_l1_first_last"] = [l1[0], l1[-1]]
    Path(out).write_text(json.dumps(result, indent=1))
    print(f"stage-2 training reconstruction L1: {l1[0]:.4f} (first log) -> {l1[-1]:.4f} (last log)")
print(f"wrote {out}")
EOF
