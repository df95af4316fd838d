#!/usr/bin/env bash
# SyncNet expert (spec §2.10) then audio-to-lip (spec §8.4) on SynthTalk, measured on held-out speakers.
#
#   bash scripts/train_audio2lip_synthtalk.sh             # the documented run (about a CPU hour)
#   SHORT=1 bash scripts/train_audio2lip_synthtalk.sh     # a few minutes: checks the pipeline only
#
# Steps (each skips what is done; WORK=data/a2l_proof by default):
#   1. a SynthTalk MEAD tree (neutral + happy, a quarter of the speakers held out) + LMDB;
#   2. a lip-pose generator: S1_RUN (an existing stage-1 run) or a stage-1 run trained here;
#   3. its mouth/pose weights cached for every clip (`edtalk extract-motion`): the audio-to-lip targets;
#   4. the SyncNet expert (configs/train/syncnet_synthtalk*.yaml);
#   5. audio-to-lip with that expert in the sync loss (configs/train/audio2lip_synthtalk*.yaml);
#   6. targets, each next to an untrained baseline (same architecture, random weights):
#        - SyncNet: in-sync window scored above the ±5-frame shifted ones on ≥ 90 % of held-out windows;
#        - audio-to-lip: a linear probe (least squares, fitted on the train speakers) from the predicted
#          mouth weights to SynthTalk's true mouth opening reaches R² ≥ 0.7 on the held-out speakers.
#      Writes WORK/audio2lip_probe.json and prints a table.
set -euo pipefail
cd "$(dirname "$0")/.."

WORK=${WORK:-data/a2l_proof}
THREADS=${THREADS:-2}
if [[ "${SHORT:-0}" == 1 ]]; then
  SPEAKERS=${SPEAKERS:-4}; FRAMES=${FRAMES:-24}; S1_STEPS=${S1_STEPS:-100}; SYNC_STEPS=${SYNC_STEPS:-150}
  A2L_STEPS=${A2L_STEPS:-60}
  S1_CONFIG=configs/train/stage1_synthtalk_tiny.yaml
  SYNC_CONFIG=configs/train/syncnet_synthtalk_tiny.yaml
  A2L_CONFIG=configs/train/audio2lip_synthtalk_tiny.yaml
else
  SPEAKERS=${SPEAKERS:-16}; FRAMES=${FRAMES:-48}; S1_STEPS=${S1_STEPS:-3000}; SYNC_STEPS=${SYNC_STEPS:-3000}
  A2L_STEPS=${A2L_STEPS:-2000}
  S1_CONFIG=configs/train/stage1_synthtalk.yaml
  SYNC_CONFIG=configs/train/syncnet_synthtalk.yaml
  A2L_CONFIG=configs/train/audio2lip_synthtalk.yaml
fi
SYNC_ARGS=${SYNC_ARGS:-}     # extra key=value overrides of each run
A2L_ARGS=${A2L_ARGS:-}
TREE=$WORK/synth/mead
S1_RUN=${S1_RUN:-$WORK/stage1}
SYNC_RUN=$WORK/syncnet
A2L_RUN=$WORK/audio2lip

# 1. data
if [[ ! -f $TREE/test.json ]]; then
  python -m edtalk.data.synthtalk --out "$WORK/synth" --kind mead --speakers "$SPEAKERS" --emotions neutral,happy \
    --levels 1 --clips-per 2 --frames "$FRAMES" --size 64 --no-mel --seed 3 --quiet --overwrite
fi
[[ -e $TREE/frames.lmdb ]] || python -m edtalk.data.store --root "$TREE" --quiet

# 2. lip-pose generator
if ! ls "$S1_RUN"/export/*.pt >/dev/null 2>&1; then
  python -m edtalk.cli train --config "$S1_CONFIG" data.root="$TREE" run.dir="$S1_RUN" \
    train.max_steps="$S1_STEPS" train.threads="$THREADS" run.progress=false
fi
GEN=$(ls "$S1_RUN"/export/*.pt | tail -1)

# 3. targets
python -m edtalk.cli extract-motion --checkpoint "$GEN" --data "$TREE" --parts mouth,pose

# 4. SyncNet expert
[[ -d $SYNC_RUN/export/model ]] || python -m edtalk.cli train --config "$SYNC_CONFIG" data.root="$TREE" \
  run.dir="$SYNC_RUN" train.max_steps="$SYNC_STEPS" train.threads="$THREADS" run.progress=false $SYNC_ARGS

# 5. audio-to-lip
[[ -f $A2L_RUN/export/Audio2Lip.pt ]] || python -m edtalk.cli train --config "$A2L_CONFIG" data.root="$TREE" \
  model.generator="$GEN" model.syncnet="$SYNC_RUN/export/model" run.dir="$A2L_RUN" \
  train.max_steps="$A2L_STEPS" train.threads="$THREADS" run.progress=false $A2L_ARGS

# 6. targets on the held-out speakers
python - "$TREE" "$SYNC_RUN" "$A2L_RUN" "$WORK/audio2lip_probe.json" "$THREADS" <<'PY'
import json, sys
from pathlib import Path

import numpy as np
import torch

from edtalk.config import Audio2LipConfig
from edtalk.data import layout
from edtalk.data.audio_datasets import SyncNetPairs, clip_mels
from edtalk.data.synthtalk import load_factors
from edtalk.networks.audio2lip import Audio2Lip
from edtalk.networks.syncnet import SyncNet, load_syncnet
from edtalk.train.config import load_train_config
from edtalk.train.motion import load_motion
from edtalk.train.stages.syncnet import sync_preference

tree, sync_run, a2l_run, out, threads = sys.argv[1:6]
torch.set_num_threads(int(threads))


def untrained(run, build):
    """The run's architecture with random weights (seeded like the run)."""
    cfg = load_train_config(str(Path(run, "config.yaml")))
    torch.manual_seed(int(cfg.seed))
    return build(cfg)


@torch.no_grad()
def predicted_mouth(model, split):
    names = layout.read_split(tree, split)
    alpha = [model(torch.from_numpy(clip_mels(tree, n))[:, None]).numpy() for n in names]
    truth, _, _ = load_factors(tree, names)
    n = min(len(np.concatenate(alpha)), len(truth["mouth"]))
    return np.concatenate(alpha)[:n], truth["mouth"][:n, 0]  # column 0 = jaw opening


def cached_targets(split):
    """The audio-to-lip targets themselves: the generator's α_m of the frames (motion cache)."""
    names = layout.read_split(tree, split)
    return np.concatenate([load_motion(tree, n, "mouth") for n in names]), load_factors(tree, names)[0]["mouth"][:, 0]


def probe_r2(model=None):
    """Least-squares probe (with bias) fitted on the train speakers, R² on the held-out ones
    (model None: probe the cached targets α_m, the ceiling the audio model is trained towards)."""
    if model is None:
        (x_tr, y_tr), (x_te, y_te) = cached_targets("train"), cached_targets("test")
    else:
        x_tr, y_tr = predicted_mouth(model.eval(), "train")
        x_te, y_te = predicted_mouth(model, "test")
    add = lambda x: np.hstack([x, np.ones((len(x), 1))])  # noqa: E731
    w, *_ = np.linalg.lstsq(add(x_tr), y_tr, rcond=None)
    res = y_te - add(x_te) @ w
    return float(1 - (res ** 2).sum() / ((y_te - y_te.mean()) ** 2).sum())


held_out = SyncNetPairs(tree, split="test")
sync_base = untrained(sync_run, lambda c: SyncNet(load_syncnet(Path(sync_run, "export", "model")).config))
sync = {"trained": sync_preference(load_syncnet(Path(sync_run, "export", "model")), held_out),
        "untrained": sync_preference(sync_base, held_out)}
a2l = Audio2Lip.from_official(Path(a2l_run, "export", "Audio2Lip.pt"))
a2l_base = untrained(a2l_run, lambda c: Audio2Lip(Audio2LipConfig(channels=tuple(c.model.audio_channels))))
r2 = {"trained": probe_r2(a2l), "untrained": probe_r2(a2l_base), "targets": probe_r2()}
result = {"sync_preferred_over_pm5": sync, "mouth_open_probe_r2": r2,
          "sync_target_met": sync["trained"]["preferred"] >= 0.9, "r2_target_met": r2["trained"] >= 0.7}
Path(out).write_text(json.dumps(result, indent=1))
print(f"{'held-out speakers':<40}{'untrained':>10}{'trained':>10}{'target':>8}")
print(f"{'SyncNet: in sync > ±5 shift':<40}{sync['untrained']['preferred']:>10.3f}{sync['trained']['preferred']:>10.3f}"
      f"{'0.90':>8}   ({sync['trained']['comparisons']} comparisons)")
print(f"{'audio-to-lip: mouth-open probe R²':<40}{r2['untrained']:>10.3f}{r2['trained']:>10.3f}{'0.70':>8}")
print(f"(the targets α_m of the generator, probed the same way: R² {r2['targets']:.3f})")
print(f"wrote {out}")
PY
