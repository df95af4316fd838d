#!/usr/bin/env bash
# Audio/text-to-expression (spec §8.6) on SynthTalk, measured on held-out speakers next to an
# untrained predictor: 8-way emotion accuracy from audio, from text and from both (target ≥ 80%),
# and the MSE of the predicted α_e.
#
#   bash scripts/train_audio2exp_synthtalk.sh            # the documented run
#   SHORT=1 bash scripts/train_audio2exp_synthtalk.sh    # a few minutes: checks the pipeline only
#
# Steps (each skips what is done; WORK=data/audio2exp_proof by default):
#   1. a SynthTalk MEAD tree, all 8 emotions, levels 1–3 (a quarter of the speakers held out);
#   2. the α_e cache: GEN=<EDTalk checkpoint> (edtalk extract-motion), else the SynthTalk expression
#      factors (6-d, padded to 10);
#   3. the frozen audio encoder: A2L=<audio2lip run or Audio2Lip.pt>, else a random official-width one;
#   4. audio2exp training (configs/train/audio2exp_synthtalk.yaml);
#   5. proof: scripts/proof_audio_drivers.py audio2exp → WORK/audio2exp_report.json.
# Transcripts are SYNTHETIC (edtalk.text_emotion.synthetic_transcript: a template sentence with an
# emotion word chosen from the clip's label), so text accuracy here checks the pipeline, not real
# speech.  SynthTalk voices are neutral unless SYNTH_ARGS=--emotional-voice: without it audio-only
# accuracy stays near chance (1/8); with it the voices carry the emotion (README has both runs).
set -euo pipefail
cd "$(dirname "$0")/.."

WORK=${WORK:-data/audio2exp_proof}
THREADS=${THREADS:-2}
if [[ "${SHORT:-0}" == 1 ]]; then
  SPEAKERS=${SPEAKERS:-4}; FRAMES=${FRAMES:-24}; STEPS=${STEPS:-400}
else
  SPEAKERS=${SPEAKERS:-16}; FRAMES=${FRAMES:-32}; STEPS=${STEPS:-4000}
fi
CONFIG=${CONFIG:-configs/train/audio2exp_synthtalk.yaml}
ARGS=${ARGS:-}            # extra training overrides; SYNTH_ARGS: extra SynthTalk options (e.g. --emotional-voice)
TREE=$WORK/synth/mead
RUN=$WORK/audio2exp
# shellcheck source=scripts/audio_driver_proof_steps.sh
source scripts/audio_driver_proof_steps.sh
run_audio_driver_proof audio2exp exp audio2exp --levels 1,2,3 --clips-per 2 --seed 4
