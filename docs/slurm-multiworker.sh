#!/usr/bin/env bash
# Multi-worker training from a Slurm allocation: one task (worker) per node.
#   sbatch --nodes=2 --ntasks-per-node=1 --gpus-per-node=4 docs/slurm-multiworker.sh
# Data and run directory must be on storage every node sees; BACKEND=jax for JAX.
# Not run in this project's CI (no cluster here); tests/test_multiworker.py runs the same
# launch with two processes on 127.0.0.1.
#SBATCH --job-name=boneage-train
#SBATCH --time=12:00:00
set -euo pipefail
DATA=${DATA:-/shared/data/rsna}
OUT=${OUT:-/shared/runs/$SLURM_JOB_ID}
PORT=${PORT:-12345}
BACKEND=${BACKEND:-tensorflow}
mapfile -t HOSTS < <(scontrol show hostnames "$SLURM_JOB_NODELIST")

# srun starts one copy per node; each builds its own TF_CONFIG / JAX flags from SLURM_PROCID.
srun --kill-on-bad-exit=1 bash -c '
  set -euo pipefail
  i=$SLURM_PROCID
  if [ "'"$BACKEND"'" = tensorflow ]; then
    workers=$(printf "\"%s:'"$PORT"'\"," '"${HOSTS[*]}"' | sed "s/,$//")
    export TF_CONFIG="{\"cluster\": {\"worker\": [$workers]}, \"task\": {\"type\": \"worker\", \"index\": $i}}"
    exec python -m boneage.train --data "'"$DATA"'" --out "'"$OUT"'" --distribute multi-worker "$@"
  else
    export KERAS_BACKEND=jax
    exec python -m boneage.train --data "'"$DATA"'" --out "'"$OUT"'" --distribute multi-worker \
      --coordinator "'"${HOSTS[0]}"':'"$PORT"'" --num-processes "$SLURM_NTASKS" --process-id "$i" "$@"
  fi
' _ "$@"
# After a failure or preemption, resubmit with --resume (all workers restart together).
