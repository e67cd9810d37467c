#!/usr/bin/env bash
# RL agent vs classic baselines on long-horizon return, on the synthetic world and on ml-100k.
#
# For each dataset: prepare it (once), train the Transformer user model and calibrate the simulator to
# the logs (once), then train the agent
# (default MaskablePPO, RecSim-LongTerm-v0) for at most MAX_MINUTES of wall-clock time and evaluate it
# with Random, MostPopular, Greedy and OracleGreedy on one fixed evaluation population. Finally the
# table goes into BENCHMARKS.md (section train_agents).
#
# Usage: bash scripts/train_agents.sh            (full run: 30 min of training per dataset)
# Environment knobs (defaults in brackets):
#   OUT [out/train_agents]  PYTHON [.venv/bin/python, else python3]  ALGO [maskable_ppo]
#   ENV_ID [RecSim-LongTerm-v0]  MAX_MINUTES [30]  EPISODES [500]  THREADS [1] (MaskablePPO's small
#   networks: 587 env steps/s on 1 torch thread beside another run, 421 on 2 threads alone; measured)
#   ML100K [$RECSIM_ML100K, else ../shared/data/ml-100k]  USER_MODEL_EPOCHS [""]
#   SYNTH_ARGS ["--users 2000 --items 1000 --seed 0"]
#   DATASETS ["synthetic ml-100k"]  ML100K_CONSUMPTION_RATE [0.5]
#   INIT_ITEM_EMBEDDINGS [true]: start the agent's item embeddings from the training logs' co-occurrence
#   (agents/item_features.py says what that does and does not leak); false learns them from scratch.
# The ml-100k run is skipped with a message when the raw data is absent (its licence forbids
# redistribution: bring your own copy).
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-out/train_agents}
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
ALGO=${ALGO:-maskable_ppo}
ENV_ID=${ENV_ID:-RecSim-LongTerm-v0}
MAX_MINUTES=${MAX_MINUTES:-30}
EPISODES=${EPISODES:-500}
THREADS=${THREADS:-1}
ML100K=${ML100K:-${RECSIM_ML100K:-../shared/data/ml-100k}}
SYNTH_ARGS=${SYNTH_ARGS:---users 2000 --items 1000 --seed 0}  # the world scripts/offline_eval.py uses
USER_MODEL_EPOCHS=${USER_MODEL_EPOCHS:-}
DATASETS=${DATASETS:-synthetic ml-100k}
# ML-100k's timestamps cannot give a step length: half of the within-session gaps are 0 s (ratings were
# entered in bursts), so calibration needs the logged consumption rate (events per simulated step) as an
# explicit assumption. 0.5 means a shown slate leads to a rating every other step; change it here.
ML100K_CONSUMPTION_RATE=${ML100K_CONSUMPTION_RATE:-0.5}
INIT_ITEM_EMBEDDINGS=${INIT_ITEM_EMBEDDINGS:-true}
export OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS

recsim() { "$PYTHON" -m recsim_env.cli "$@"; }

mkdir -p "$OUT"
results=()
for name in $DATASETS; do
    data="$OUT/$name/data"
    model="$OUT/$name/user_model"
    calibrate_args=()
    case "$name" in
        synthetic)
            # shellcheck disable=SC2086
            [[ -d "$data" ]] || recsim data synth --out "$data" $SYNTH_ARGS
            ;;
        ml-100k)
            if [[ ! -d "$data" && ! -d "$ML100K" ]]; then
                echo "train_agents: skipping ml-100k: no raw data at $ML100K (set ML100K or RECSIM_ML100K)" >&2
                continue
            fi
            [[ -d "$data" ]] || recsim data prepare --dataset ml-100k --data-dir "$ML100K" --out "$data"
            calibrate_args=(--consumption-rate "$ML100K_CONSUMPTION_RATE")
            ;;
        *) echo "train_agents: unknown dataset $name" >&2; exit 2 ;;
    esac
    if [[ ! -f "$model/config.json" ]]; then
        epochs=()
        [[ -n "$USER_MODEL_EPOCHS" ]] && epochs=(--epochs "$USER_MODEL_EPOCHS")
        recsim user-model train --data "$data" --out "$model" "${epochs[@]}" --no-progress
    fi
    # Choice temperature, no-choice logit and session ends fitted to the logs (see recsim env calibrate).
    calibration="$OUT/$name/calibration.json"
    [[ -f "$calibration" ]] || recsim env calibrate --model "$model" --data "$data" --out "$calibration" \
        --report "$OUT/$name/calibration.md" "${calibrate_args[@]}"
    "$PYTHON" scripts/train_agents.py run --name "$name" --model "$model" --data "$data" \
        --out "$OUT/$name/agent" --algo "$ALGO" --env-id "$ENV_ID" --max-minutes "$MAX_MINUTES" \
        --episodes "$EPISODES" --greedy-model "$OUT/$name/greedy" --no-progress \
        --hyperparams "env_kwargs.calibration=$calibration" "features.init_item_embeddings=$INIT_ITEM_EMBEDDINGS"
    results+=("$OUT/$name/agent/results.json")
done

if [[ ${#results[@]} -gt 0 ]]; then
    "$PYTHON" scripts/train_agents.py report "${results[@]}" \
        --shown-command "ALGO=$ALGO THREADS=$THREADS MAX_MINUTES=$MAX_MINUTES EPISODES=$EPISODES INIT_ITEM_EMBEDDINGS=$INIT_ITEM_EMBEDDINGS bash scripts/train_agents.sh"
fi
