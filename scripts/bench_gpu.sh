#!/usr/bin/env bash
# The GPU benchmarks (issues 5 and 17) on one CUDA device, in one prepared run of under 8 minutes:
#
# 1. the simulator (scripts/bench_env.py): N = 4,096 / 16,384 / 65,536 / 262,144 users, the torch path
#    eager (b), with the core step compiled as one graph and CUDA-graphed where the shapes allow (d), the
#    SB3 adapter (c), step time against history length at N = 65,536, and the ratio to a SyncVectorEnv
#    of single CPU envs (at N = 64). Targets: >= 10M (issue 5) and >= 20M (issue 17) user-steps/s at
#    N = 65,536. Writes the `bench_env_cuda` section of BENCHMARKS.md.
# 2. the on-device PPO (scripts/bench_train.py --algos torch_ppo): a fixed number of env steps on
#    RecSim-LongTerm-v0 over the synthetic world with N = 65,536 users, then its test return against
#    Random. Target: >= 1M env steps/s of training. Writes the `bench_train_cuda` section.
#
# Usage: scripts/bench_gpu.sh        (PYTHON=... picks the interpreter; OUT=... the working directory)
# Without CUDA it stops at once with exit status 2 and says so (the CPU parts: scripts/bench_env.py and
# scripts/bench_train.py).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
OUT="${OUT:-out/bench_gpu}"
if ! "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "bench_gpu.sh: torch sees no CUDA device with $PYTHON; nothing measured (the CPU benchmarks are" \
        "scripts/bench_env.py and scripts/bench_train.py)" >&2
    exit 2
fi
export OMP_WAIT_POLICY=PASSIVE
start=$SECONDS
# Each part has its own time limit, so the whole run stays under 8 minutes (260 s + 200 s).
timeout 260 "$PYTHON" scripts/bench_env.py --device cuda --threads 4 --sizes 4096 16384 65536 262144 \
    --compile reduce-overhead --sync-cap 64 --seconds 1 --history-n 65536
timeout 200 "$PYTHON" scripts/bench_train.py --device cuda --threads 4 --algos torch_ppo \
    --timesteps 30000000 --minutes 1.5 --episodes 2000 --out "$OUT/train" --no-progress \
    --torch-hyperparams n_envs=65536 batch_size=65536 n_steps=16 eval_freq=5000000 n_eval_episodes=2048
echo "bench_gpu.sh: done in $((SECONDS - start)) s; sections bench_env_cuda and bench_train_cuda of BENCHMARKS.md"
