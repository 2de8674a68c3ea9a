#!/usr/bin/env bash
# Session 34's probe (RESULTS.md, "Where μ0's forecast goes wrong in closed loop"): μ0 learnt its futures from clean
# scripted demos only, and on the states of a failing Stack episode its gripper forecast is barely better than "no
# motion" (scripts/forecast_error.py). Does a μ0 that has also seen recoveries (DART demos: the scripted expert's
# action plus Gaussian noise 0.1 on the arm executed, so the recorded futures steer back) forecast better there,
# and do 10-demo trace experts on it do better? Same recipe as the shipped μ0 (scripts/pretrain_mu0.sh, μ0 only)
# plus 30 DART Stack demos of each seen robot. Experts: `trace` with the study's Stack recipe on the same clean demos
# 0-9 as the study-recipe cells of runs/ablations/tuning_stack_grip_clock (`clock`), tuning seeds 2000-2049 (`no-trace`
# reads nothing μ0's trace expert computes: its cells there stand). Every step resumes.
# Usage: bash scripts/mu0_dart_stack_probe.sh [OUT=runs/mu0dart]
set -euo pipefail
out=${1:-runs/mu0dart}
for robot in Panda Sawyer IIWA UR5e XArm7; do
  mu0sim collect --task Stack --robot "$robot" --episodes 30 --out "data/dart_stack/Stack_$robot.hdf5" \
    --seed 100000 --workers 2 --execution-noise-std 0.1 | tail -1
done
for robot in Panda Sawyer IIWA UR5e XArm7; do echo "data/dart_stack/Stack_$robot.hdf5"; done |
  xargs -P 2 -I{} sh -c 'mu0sim extract {} --mode sim --camera agentview --episodes 30 | tail -1'
DATA=$(for t in Lift Stack PickPlaceCan Door; do for r in Panda Sawyer IIWA UR5e Kinova3 XArm7; do
  printf 'data/scripted_success/%s_%s.hdf5 ' "$t" "$r"; done; done)
DART=$(for r in Panda Sawyer IIWA UR5e XArm7; do printf 'data/dart_stack/Stack_%s.hdf5 ' "$r"; done)
mu0sim pretrain --data $DATA $DART --out runs/mu0-dart-stack --holdout-robot Kinova3 --steps 4000 --workers 2 \
  --models mu0 --model.history_dropout=0.25
recipe=(--wrist_points=16 --pooling=per-label --image_feature=false --wrist_features=false --wrist_moments=true
        --grip_clock=true --episodes 10)
for robot in Panda UR5e; do
  policy="$out/policies/Stack_${robot}_trace-mu0dart_10demos"
  [ -f "$policy/config.json" ] || mu0sim train-policy --data "data/scripted_success/Stack_$robot.hdf5" \
    --mu0 runs/mu0-dart-stack --variant trace --out "$policy" "${recipe[@]}"
  mu0sim eval --policy "$policy" --mu0 runs/mu0-dart-stack --task Stack --robots "$robot" --episodes 50 \
    --seed-start 2000 --workers 2 --out "$out/eval_$robot"
  python scripts/forecast_error.py --policy "$policy" --mu0 runs/mu0-dart-stack --seeds 2000-2019 \
    --demos "data/scripted_success/Stack_$robot.hdf5" --demo-range 30-39 \
    --out "runs/forecast_error/stack_${robot,,}_trace_mu0dart_10demos.jsonl"
done
