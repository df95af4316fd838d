#!/usr/bin/env bash
# Installs everything edtalk needs (Python packages; ffmpeg and the landmark model ship as wheels).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! $PY -c "import torch, torchvision" >/dev/null 2>&1; then
  $PY -m pip install --quiet torch==2.14.1 torchvision==0.29.1
fi
$PY -m pip install --quiet -e ".[test]"
# espeak-ng only makes the bundled example speech nicer; everything works without it.
if ! command -v espeak-ng >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && apt-get install -y -qq espeak-ng) >/dev/null 2>&1 || echo "note: espeak-ng not installed (optional)"
fi
$PY -c "import edtalk, torch; print(f'edtalk {edtalk.__version__} ready (torch {torch.__version__})')"
