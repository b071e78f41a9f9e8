#!/usr/bin/env bash
# The GPU job (issue: GPU training and evaluation on the real RSNA images).
#
# Here (once, with network):  bash benches/gpu/prepare.sh
#   builds the abi3 wheel, fetches Keras and its small deps as cp312 wheels into .whl/,
#   and copies the first 10,000 train100 images plus test299 and labels.csv into .gpudata/
#   (both folders are git-ignored; together with the repo they stay under 64 MiB).
# On the GPU machine (device tool, carry [".whl", ".gpudata"]):
#   bash benches/gpu/run.sh
# On a CPU, as a rehearsal:  bash benches/gpu/run.sh --tiny --rsna ../shared/data/rsna
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-runs/gpu}
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
export KERAS_BACKEND=${KERAS_BACKEND:-jax} PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3
RSNA=.gpudata
ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --rsna) RSNA=$2; shift 2 ;;
    *) ARGS+=("$1"); shift ;;
  esac
done
set -o pipefail
python3 benches/gpu/gpu_job.py --rsna "$RSNA" --out "$OUT/results" "${ARGS[@]}" 2>&1 | tee "$OUT.log"
