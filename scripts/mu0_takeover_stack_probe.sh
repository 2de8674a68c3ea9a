#!/usr/bin/env bash
# Session 35's probe, the step session 34 named (RESULTS.md, "Where μ0's forecast goes wrong in closed loop"): on the
# states a failing 10-demo Stack expert visits, μ0's gripper forecast is about as far off as "no motion", and a μ0
# that also saw DART demos (noise around the expert's own path) did not change that. Here μ0 also sees the failing
# policies' own states, each labelled with the demonstrator's continuation from it (DAgger-style takeover demos:
# `mu0sim collect --takeover-policy`, the 10-demo `trace` expert plays 10-180 steps, then the scripted expert takes
# over and only its continuation is recorded). Then: do 10-demo `trace` experts on that μ0 forecast better there,
# and succeed more?
#   1. the study-recipe 10-demo `trace` and `no-trace` experts of Stack/Panda and Stack/UR5e on the shipped μ0,
#      evaluated on tuning seeds 2000-2049 (the baseline, side by side);
#   2. 50 takeover demos per robot from those `trace` experts (seeds 300000+: no tuning or report seed), sim-mode
#      TraceExtract;
#   3. μ0 retrained with the shipped recipe (μ0 only) on its 24 files plus the two takeover files;
#   4. 10-demo `trace` experts on it, the same demos 0-9 and recipe, the same seeds; forecast errors of both μ0s.
# Needs data/scripted_success (bash scripts/mu0_pretrain_data.sh, or the model card's commands; Stack's Panda and
# UR5e files with 40 demos for the forecast reference demos 30-39). Every step resumes.
# TAKEOVER=150 (the dose probe) collects 150 takeover demos per robot instead of 50 (a file of its own; its first 50
# are the same attempts as the 50-demo file's) and names its μ0 and experts with the count.
# Usage: [TAKEOVER=50] bash scripts/mu0_takeover_stack_probe.sh [OUT=runs/mu0takeover]
set -euo pipefail
out=${1:-runs/mu0takeover}
n=${TAKEOVER:-50}
if [ "$n" = 50 ]; then data=data/takeover_stack; mu0=runs/mu0-takeover-stack; name=trace-mu0takeover
else data=data/takeover_stack/n$n; mu0=runs/mu0-takeover$n-stack; name=trace-mu0takeover$n; fi
recipe=(--wrist_points=16 --pooling=per-label --image_feature=false --wrist_features=false --wrist_moments=true
        --grip_clock=true --episodes 10)

expert() {  # expert ROBOT VARIANT MU0 NAME: train (once), evaluate on the tuning seeds
  local policy="$out/policies/Stack_$1_$4_10demos"
  [ -f "$policy/config.json" ] || mu0sim train-policy --data "data/scripted_success/Stack_$1.hdf5" --mu0 "$3" \
    --variant "$2" --out "$policy" "${recipe[@]}"
  mu0sim eval --policy "$policy" --mu0 "$3" --task Stack --robots "$1" --episodes 50 --seed-start 2000 --workers 2 \
    --out "$out/eval_$1_$4" | tail -3
}

for robot in Panda UR5e; do
  expert "$robot" trace checkpoints/mu0-sim trace
  expert "$robot" no-trace checkpoints/mu0-sim no-trace
done
for robot in Panda UR5e; do
  mu0sim collect --task Stack --robot "$robot" --episodes "$n" --out "$data/Stack_$robot.hdf5" \
    --seed 300000 --workers 2 --takeover-policy "$out/policies/Stack_${robot}_trace_10demos" \
    --takeover-steps 10-180 | tail -1
done
for robot in Panda UR5e; do echo "$data/Stack_$robot.hdf5"; done |
  xargs -P 2 -I{} sh -c "mu0sim extract {} --mode sim --camera agentview --episodes $n | tail -1"
DATA=$(for t in Lift Stack PickPlaceCan Door; do for r in Panda Sawyer IIWA UR5e Kinova3 XArm7; do
  printf 'data/scripted_success/%s_%s.hdf5 ' "$t" "$r"; done; done)
mu0sim pretrain --data $DATA "$data/Stack_Panda.hdf5" "$data/Stack_UR5e.hdf5" --out "$mu0" \
  --holdout-robot Kinova3 --steps 4000 --workers 2 --models mu0 --model.history_dropout=0.25
for robot in Panda UR5e; do
  expert "$robot" trace "$mu0" "$name"
done
for robot in Panda UR5e; do
  for expert_name in trace "$name"; do
    ckpt=checkpoints/mu0-sim; [ "$expert_name" = trace ] || ckpt=$mu0
    python scripts/forecast_error.py --policy "$out/policies/Stack_${robot}_${expert_name}_10demos" --mu0 "$ckpt" \
      --seeds 2000-2019 --demos "data/scripted_success/Stack_$robot.hdf5" --demo-range 30-39 \
      --out "runs/forecast_error/stack_${robot,,}_${expert_name}_10demos.jsonl"
  done
done
