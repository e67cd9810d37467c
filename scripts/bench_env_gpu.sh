#!/usr/bin/env bash
# The GPU part of the simulator benchmark (issue 5): N = 65,536 users on one CUDA device.
#
# Target: >= 10,000,000 user-steps/s on the torch path on one H200 (the KV-cache reads bound it near
# 80M). Also measures N = 4,096 and 16,384, the SB3 adapter, step time against history length at
# N = 65,536, and the ratio to a SyncVectorEnv of single CPU envs (measured at N = 64 in the same run).
# Takes ~2-3 minutes; `timeout` stops it at 5. Writes the `bench_env_cuda` section of BENCHMARKS.md.
#
# Usage: scripts/bench_env_gpu.sh [extra bench_env.py flags]   (PYTHON=... to pick the interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
if ! "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "bench_env_gpu.sh: torch sees no CUDA device with $PYTHON; scripts/bench_env.py runs the CPU part" >&2
    exit 2
fi
exec timeout 300 "$PYTHON" scripts/bench_env.py --device cuda --threads 4 --sizes 4096 16384 65536 \
    --sync-cap 64 --seconds 5 --history-n 65536 "$@"
