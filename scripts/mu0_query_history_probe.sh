#!/usr/bin/env bash
# Session 37's probe. In closed loop (and in the feature replays behaviour cloning trains on) μ0 was queried
# without its query points' history: fresh keypoints every chunk, no past positions, although pretraining gives it
# 8 past steps on 75% of samples and eval-traces scores it with them. `query_history` (Mu0TraceObservation) tracks
# each query point on the MuJoCo body it lies on through the last 8 steps' body poses, as TraceExtract's sim-mode
# tracks do for the pretraining samples. Here:
#   1. μ0's forecast error with history, measured on the same 10-demo `trace` experts and seeds as sessions 34-36
#      (trained without it; scripts/forecast_error.py --query-history on);
#   2. 10-demo `trace` experts trained and evaluated with history (the study's Stack recipe, demos 0-9, tuning
#      seeds 2000-2049), beside session 35's `trace` and `no-trace` experts in the same folder;
#   3. the new experts' forecast errors, as trained.
# Needs runs/mu0takeover's study-recipe experts (bash scripts/mu0_takeover_stack_probe.sh, its first block) and
# data/scripted_success with Stack's Panda and UR5e files at 40 demos. Every step resumes.
# Usage: bash scripts/mu0_query_history_probe.sh [OUT=runs/mu0takeover]
set -euo pipefail
out=${1:-runs/mu0takeover}
forecast() {  # forecast ROBOT EXPERT HISTORY(on|as-trained) SUFFIX
  python scripts/forecast_error.py --policy "$out/policies/Stack_$1_$2_10demos" --query-history "$3" \
    --seeds 2000-2019 --demos "data/scripted_success/Stack_$1.hdf5" --demo-range 30-39 \
    --out "runs/forecast_error/stack_${1,,}_$2_10demos$4.jsonl" | tail -14
}
for robot in Panda UR5e; do
  forecast "$robot" trace on _history
done
OUT=$out bash scripts/stack_trace_experts_10demos.sh checkpoints/mu0-sim trace-history --query_history=true
