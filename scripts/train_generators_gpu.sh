#!/usr/bin/env bash
# Stage 1 and stage 2 of the SynthTalk model on one GPU inside a wall-clock budget, three stage-1
# recipes side by side (a 64x64 model leaves most of the GPU idle, so three runs cost little more
# than one), each followed by its stage 2.  Used for the numbers in README "Training on a GPU".
#
#   TREE=data/synthtalk_model/synth/mead WORK=runs/gpu S1_MINUTES=4.5 S2_MINUTES=1.3 \
#       bash scripts/train_generators_gpu.sh
#
# Variants (stage1_synthtalk.yaml plus):  b8 = batch 8 (the CPU recipe)   b32 = batch 32
#                                         b32bf16 = batch 32 with bf16 autocast (train.amp)
# Each run stops at train.max_minutes with a checkpoint and its export; rerunning continues it.
# Afterwards: the chain (scripts/train_synthtalk_model.py) takes a variant's runs as its stage1/stage2.
set -uo pipefail
cd "$(dirname "$0")/.."
TREE=${TREE:?set TREE to a SynthTalk MEAD tree with frames.lmdb}
WORK=${WORK:-runs/gpu}
S1_MINUTES=${S1_MINUTES:-4.5}
S2_MINUTES=${S2_MINUTES:-1.3}
VARIANTS=${VARIANTS:-"b8 b32 b32bf16"}
WORKERS=${WORKERS:-3}
PY=${PYTHON:-python3}
mkdir -p "$WORK"

variant_overrides() {
  case "$1" in
    b8) echo "train.batch_size=8" ;;
    b32) echo "train.batch_size=32" ;;
    b32bf16) echo "train.batch_size=32 train.amp=bf16" ;;
    *) echo "unknown variant $1" >&2; return 1 ;;
  esac
}

# Long epochs: the trainer makes a new DataLoader (and its workers) every epoch.
COMMON="data.root=$TREE train.device=${DEVICE:-cuda} train.max_steps=1000000 data.length=200000 data.num_workers=$WORKERS
        train.threads=2 run.progress=false run.log_every=100 run.sample_every=2000 run.checkpoint_every=2000"

train_variant() {
  local v=$1 extra
  extra=$(variant_overrides "$v") || return 1
  $PY -m edtalk.cli train --config configs/train/stage1_synthtalk.yaml $COMMON $extra \
      run.dir="$WORK/$v/stage1" train.max_minutes="$S1_MINUTES" > "$WORK/$v/stage1.log" 2>&1 || {
    echo "[$v] stage 1 failed:"; tail -5 "$WORK/$v/stage1.log"; return 1; }
  echo "[$v] stage 1: $(grep -o 'max_minutes reached at step [0-9]*' "$WORK/$v/stage1.log" || echo finished)"
  $PY -m edtalk.cli train --config configs/train/stage2_synthtalk.yaml $COMMON $extra \
      model.init_path="$WORK/$v/stage1" run.dir="$WORK/$v/stage2" train.max_minutes="$S2_MINUTES" \
      > "$WORK/$v/stage2.log" 2>&1 || { echo "[$v] stage 2 failed:"; tail -5 "$WORK/$v/stage2.log"; return 1; }
  echo "[$v] stage 2: $(grep -o 'max_minutes reached at step [0-9]*' "$WORK/$v/stage2.log" || echo finished)"
}

for v in $VARIANTS; do
  mkdir -p "$WORK/$v"
  train_variant "$v" &
done
wait
echo "runs in $WORK: $(ls "$WORK")"
