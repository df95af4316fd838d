# Shared steps of the audio-driver proof scripts (train_pose_flow_synthtalk.sh, train_audio2exp_synthtalk.sh);
# sourced, not run.  The caller sets WORK, TREE, RUN, CONFIG, SPEAKERS, FRAMES, STEPS, THREADS, ARGS (and
# optionally GEN, A2L, SYNTH_ARGS), then calls
#   run_audio_driver_proof PROOF PART EXPORT [SynthTalk options of its tree...]
# PROOF: the scripts/proof_audio_drivers.py command; PART: the motion cache (pose | exp); EXPORT: the
# stage's export folder.  Each step skips what is done.

run_audio_driver_proof() {
  local proof=$1 part=$2 export_dir=$3
  shift 3
  mkdir -p "$WORK"

  # 1. a SynthTalk MEAD tree (a quarter of the speakers held out) + its frame store
  if [[ ! -f $TREE/test.json ]]; then
    python -m edtalk.data.synthtalk --out "$WORK/synth" --kind mead --speakers "$SPEAKERS" --emotions all \
      --frames "$FRAMES" --size 64 --no-mel --quiet --overwrite "$@" ${SYNTH_ARGS:-}
  fi
  [[ -e $TREE/frames.lmdb ]] || python -m edtalk.data.store --root "$TREE" --quiet

  # 2. the α cache: from the generator GEN, else the SynthTalk factors themselves
  if [[ -n "${GEN:-}" ]]; then
    python -m edtalk.cli extract-motion --checkpoint "$GEN" --data "$TREE" --parts "$part" --split all
  elif [[ ! -d $TREE/EDTalk_${part}_feature ]]; then
    python scripts/proof_audio_drivers.py factors-cache "$TREE"
  fi

  # 3. the frozen audio encoder: A2L, else a random official-width one
  if [[ -z "${A2L:-}" ]]; then
    A2L=$WORK/audio2lip_random.pt
    [[ -f $A2L ]] || python scripts/proof_audio_drivers.py random-audio2lip "$A2L"
  fi

  # 4. training (resumes from its latest checkpoint)
  if [[ ! -f $RUN/export/$export_dir/model.safetensors ]]; then
    python -m edtalk.cli train --config "$CONFIG" data.root="$TREE" model.audio2lip="$A2L" run.dir="$RUN" \
      train.max_steps="$STEPS" train.threads="$THREADS" run.progress=false $ARGS
  fi

  # 5. the held-out proof
  THREADS=$THREADS python scripts/proof_audio_drivers.py "$proof" "$TREE" "$RUN" "$CONFIG" "$WORK"
}
