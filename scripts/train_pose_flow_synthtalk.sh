#!/usr/bin/env bash
# Audio-to-pose flow (spec §8.5) on SynthTalk, measured on held-out speakers next to the untrained flow.
#
#   bash scripts/train_pose_flow_synthtalk.sh            # the documented run (about a CPU hour)
#   SHORT=1 bash scripts/train_pose_flow_synthtalk.sh    # a few minutes: checks the pipeline only
#
# Steps (each skips what is done; WORK=data/pose_flow_proof by default):
#   1. a SynthTalk MEAD tree (a quarter of the speakers held out) + LMDB;
#   2. the α_p cache: from a generator with GEN=<stage-1/EDTalk checkpoint> (edtalk extract-motion),
#      else the SynthTalk pose factors themselves (6-d, what a perfect pose head would give);
#   3. the frozen audio encoder: A2L=<audio2lip run or Audio2Lip.pt>, else a random official-width one;
#   4. pose_flow training (configs/train/pose_flow_synthtalk.yaml);
#   5. proof (scripts/proof_audio_drivers.py pose-flow): held-out NLL per frame (trained vs
#      untrained), sampled (τ=0.7) per-dim mean/std vs the held-out α_p (target: within 20%), and
#      WORK/pose_velocity_spectrum.png.  Writes WORK/pose_flow_report.json.
# Note: SynthTalk's head pose does not depend on the audio, so this measures the pose dynamics
# the flow learns (autoregressive part), not audio→pose correlation.
set -euo pipefail
cd "$(dirname "$0")/.."

WORK=${WORK:-data/pose_flow_proof}
THREADS=${THREADS:-2}
if [[ "${SHORT:-0}" == 1 ]]; then
  SPEAKERS=${SPEAKERS:-4}; FRAMES=${FRAMES:-32-50}; STEPS=${STEPS:-300}
else
  SPEAKERS=${SPEAKERS:-16}; FRAMES=${FRAMES:-60-100}; STEPS=${STEPS:-600}  # later steps overfit the audio
fi
CONFIG=${CONFIG:-configs/train/pose_flow_synthtalk.yaml}
ARGS=${ARGS:-}
TREE=$WORK/synth/mead
RUN=$WORK/pose_flow
mkdir -p "$WORK"

# 1. data
if [[ ! -f $TREE/test.json ]]; then
  python -m edtalk.data.synthtalk --out "$WORK/synth" --kind mead --speakers "$SPEAKERS" --emotions all \
    --levels 3 --frames "$FRAMES" --size 64 --no-mel --seed 3 --quiet --overwrite
fi
[[ -e $TREE/frames.lmdb ]] || python -m edtalk.data.store --root "$TREE" --quiet

# 2. α_p cache
if [[ -n "${GEN:-}" ]]; then
  python -m edtalk.cli extract-motion --checkpoint "$GEN" --data "$TREE" --parts pose --split all
elif [[ ! -d $TREE/EDTalk_pose_feature ]]; then
  python scripts/proof_audio_drivers.py factors-cache "$TREE"
fi

# 3. audio encoder
if [[ -z "${A2L:-}" ]]; then
  A2L=$WORK/audio2lip_random.pt
  [[ -f $A2L ]] || python scripts/proof_audio_drivers.py random-audio2lip "$A2L"
fi

# 4. training (resumes from its latest checkpoint)
if [[ ! -f $RUN/export/pose_flow/model.safetensors ]]; then
  python -m edtalk.cli train --config "$CONFIG" data.root="$TREE" model.audio2lip="$A2L" run.dir="$RUN" \
    train.max_steps="$STEPS" train.threads="$THREADS" run.progress=false $ARGS
fi

# 5. proof
THREADS=$THREADS python scripts/proof_audio_drivers.py pose-flow "$TREE" "$RUN" "$CONFIG" "$WORK"
