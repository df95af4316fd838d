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
# shellcheck source=scripts/audio_driver_proof_steps.sh
source scripts/audio_driver_proof_steps.sh
run_audio_driver_proof pose-flow pose pose_flow --levels 3 --seed 3
