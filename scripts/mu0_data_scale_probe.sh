#!/usr/bin/env bash
# Session 36's probe: does μ0 get better with more pretraining data, and do 10-demo Stack `trace` experts on it?
# Sessions 34-35 found μ0's gripper forecast on the states failing 10-demo experts visit about as far off as "no
# motion", while `gt-trace` @10 is far above `trace` on Stack (RESULTS.md): the forecast is the bottleneck. DART
# noise and takeover demos moved it by a tenth at most. The one input μ0 never got more of is plain data: 21
# training demos per task x robot. Here the shipped recipe (same steps, settings and seed; Kinova3 held out) is
# trained on three times the demos, the only change:
#   1. data/mu0_scale (scripts/mu0_scale_data.sh): the five training robots' files extended to 96 collect attempts,
#      TraceExtract on their first 90 demos (63 train, 9 validation, 18 `seen_robots`); Kinova3's stay at 30;
#   2. μ0 with `mu0sim pretrain --models mu0` on them (and WAYPOINT=1: the waypoint regressor beside it, then
#      `mu0sim eval-traces` of it and of the shipped checkpoint on this split's anchors, for issue 5);
#   3. 10-demo `trace` experts of Stack/Panda and Stack/UR5e on it (the study recipe, demos 0-9 of
#      data/scripted_success, tuning seeds 2000-2049), beside session 35's experts on the shipped μ0 in
#      runs/mu0takeover (run scripts/mu0_takeover_stack_probe.sh's first step if that folder is missing);
#   4. the gripper forecast error of both μ0s on the experts' own episodes (scripts/forecast_error.py).
# Needs data/scripted_success (bash scripts/mu0_pretrain_data.sh with EPISODES=30, Stack's Panda and UR5e files with
# 40 demos). Every step resumes.
# Usage: [WAYPOINT=1] bash scripts/mu0_data_scale_probe.sh
set -euo pipefail
data=data/mu0_scale
mu0=runs/mu0-scale90
out=runs/mu0takeover

bash scripts/mu0_scale_data.sh
DATA=$(for t in Lift Stack PickPlaceCan Door; do for r in Panda Sawyer IIWA UR5e Kinova3 XArm7; do
  printf '%s/%s_%s.hdf5 ' "$data" "$t" "$r"; done; done)
mu0sim pretrain --data $DATA --out "$mu0" --holdout-robot Kinova3 --steps 4000 --workers 2 --models mu0 \
  --model.history_dropout=0.25

OUT=$out bash scripts/stack_trace_experts_10demos.sh "$mu0" trace-mu0scale90
if [ "${WAYPOINT:-0}" = 1 ]; then
  mu0sim pretrain --data $DATA --out "$mu0" --holdout-robot Kinova3 --steps 4000 --workers 2 --models mu0,waypoint \
    --model.history_dropout=0.25
  mu0sim eval-traces --ckpt "$mu0" --data $DATA --out "$mu0/report.json"
  # the shipped μ0 and its baselines on the same anchors (this split's `seen_robots` demos 72-89: neither μ0 saw them)
  mu0sim eval-traces --ckpt checkpoints/mu0-sim --data $DATA --out runs/mu0-shipped-on-scale90/report.json
fi
