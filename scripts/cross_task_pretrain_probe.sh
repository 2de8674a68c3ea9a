#!/usr/bin/env bash
# Session 30's probe (RESULTS.md, "Pretraining on the robot's other task"): Stack/Panda at 10 demos, trace and
# no-trace alike pretrained on the same robot's 50 PickPlaceCan demos (pooled, 3,000 steps) before 3,000 steps on
# the ten Stack demos; Stack's study recipe otherwise. action-pretrained / trace-pretrained are the variants whose
# training pools pretraining files first; here those files are another task's, not other robots'.
# Evaluated on the tuning seeds 2000-2049. Usage: scripts/cross_task_pretrain_probe.sh [OUT=runs/xtask]
set -euo pipefail
out=${1:-runs/xtask}
recipe=(--wrist_points=16 --pooling=per-label --image_feature=false --wrist_features=false --wrist_moments=true
        --grip_clock=true --pretrain_episodes=50)
for variant in trace-pretrained action-pretrained; do
  mu0sim train-policy --data data/scripted_success/Stack_Panda.hdf5 --mu0 checkpoints/mu0-sim --variant "$variant" \
    --episodes 10 --pretrain-data data/scripted_success/PickPlaceCan_Panda.hdf5 \
    --out "$out/policies/Stack_Panda_${variant}-xtask_10demos" "${recipe[@]}"
done
mu0sim eval --policy "$out/policies/Stack_Panda_trace-pretrained-xtask_10demos" \
  "$out/policies/Stack_Panda_action-pretrained-xtask_10demos" --task Stack --robots Panda --episodes 50 \
  --seed-start 2000 --workers 2 --out "$out/eval"
