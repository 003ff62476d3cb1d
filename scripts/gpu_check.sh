#!/usr/bin/env bash
# The whole magec chain at 1024 px with random weights on a CUDA machine: one markdown table of seconds and
# peak memory per step (scripts/gpu_check.py; options pass through: --device, --resolution, --quick,
# --precision, --out DIR, --paper-samples N, --batches 1,8 ...). Needs torch, numpy, scipy, scikit-learn,
# safetensors, pillow, tqdm, onnx, torchdiffeq and scikit-image; dlib is optional (--align is skipped without it).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
python="${PYTHON:-python3}"
if [ -x "$root/.venv/bin/python" ] && [ -z "${PYTHON:-}" ]; then python="$root/.venv/bin/python"; fi
export PYTHONPATH="$root/src${PYTHONPATH:+:$PYTHONPATH}"
exec "$python" "$here/gpu_check.py" "$@"
