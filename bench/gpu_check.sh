#!/usr/bin/env bash
# The prepared real-GPU check (see bench/gpu_check.py for the checks, the time budget and the outputs).
#
#   bench/gpu_check.sh              on a machine with one NVIDIA GPU, PyTorch and JAX: ~4-6 minutes
#   bench/gpu_check.sh --cpu-only   the same sweep and checks on the CPU devices (GPU lines: "not run")
#
# From a plain checkout: no pip install, no network, no TensorFlow needed. Output in $OUT if set, else
# results/gpu-check-<UTC time>/. Exit 0 all checks that ran passed, 1 a check failed, 2 the sweep could not
# run, 3 no GPU (nothing run). PYTHON chooses the interpreter (default: python3).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-python3}" bench/gpu_check.py "$@"
