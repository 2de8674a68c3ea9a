#!/usr/bin/env bash
# μ0 v2 (checkpoints/mu0-sim-v2/MODEL_CARD.md): the x-prediction, D = 7 recipe on three times the pretraining demos,
# its two learned baselines on the identical split, and the evaluation report of all of them (plus, on the same
# anchors, checkpoints/mu0-sim and its baselines). Data: scripts/mu0_scale_data.sh. Every step resumes.
# The flags after --models only change μ0 (num_control and flow_prediction are μ0's), so its baselines are trained
# as checkpoints/mu0-sim's were.
set -euo pipefail
bash scripts/mu0_scale_data.sh
DATA=$(for t in Lift Stack PickPlaceCan Door; do for r in Panda Sawyer IIWA UR5e Kinova3 XArm7; do
  printf 'data/mu0_scale/%s_%s.hdf5 ' "$t" "$r"; done; done)
mu0sim pretrain --data $DATA --out checkpoints/mu0-sim-v2 --holdout-robot Kinova3 --steps 4000 --workers 2 \
  --models mu0,waypoint,token-ar --model.history_dropout=0.25 --model.flow_prediction=sample --model.num_control=7
mu0sim eval-traces --ckpt checkpoints/mu0-sim-v2 --data $DATA --out results/mu0-sim-v2/report.json
mu0sim eval-traces --ckpt checkpoints/mu0-sim --data $DATA --out results/mu0-sim-on-v2-split/report.json
