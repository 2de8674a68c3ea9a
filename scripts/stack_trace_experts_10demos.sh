#!/usr/bin/env bash
# The closed-loop half of the μ0 probes of sessions 36-37: 10-demo Stack `trace` experts of Panda and UR5e on a
# given μ0 (the study's Stack recipe, demos 0-9 of data/scripted_success), evaluated on tuning seeds 2000-2049 into
# OUT/eval_ROBOT_NAME (beside session 35's shipped-μ0 cells in runs/mu0takeover), then μ0's forecast error on their
# states and on demos 30-39 (scripts/forecast_error.py, seeds 2000-2019). Every step resumes.
# Usage: bash scripts/stack_trace_experts_10demos.sh MU0 NAME [TRAIN-POLICY SETTINGS ...]   (OUT=runs/mu0takeover)
set -euo pipefail
mu0=$1 name=$2
shift 2
out=${OUT:-runs/mu0takeover}
recipe=(--wrist_points=16 --pooling=per-label --image_feature=false --wrist_features=false --wrist_moments=true
        --grip_clock=true --episodes 10)
for robot in Panda UR5e; do
  policy="$out/policies/Stack_${robot}_${name}_10demos"
  [ -f "$policy/config.json" ] || mu0sim train-policy --data "data/scripted_success/Stack_$robot.hdf5" --mu0 "$mu0" \
    --variant trace --out "$policy" "${recipe[@]}" "$@"
  mu0sim eval --policy "$policy" --mu0 "$mu0" --task Stack --robots "$robot" --episodes 50 --seed-start 2000 \
    --workers 2 --out "$out/eval_${robot}_${name}" | tail -3
done
for robot in Panda UR5e; do
  python scripts/forecast_error.py --policy "$out/policies/Stack_${robot}_${name}_10demos" --mu0 "$mu0" \
    --seeds 2000-2019 --demos "data/scripted_success/Stack_$robot.hdf5" --demo-range 30-39 \
    --out "runs/forecast_error/stack_${robot,,}_${name}_10demos.jsonl" | tail -14
done
